"""float32 packed GEMM (minilm_np.kernels.sgemm) against its numpy twin, and its bitwise batch invariance."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minilm_np.kernels import sgemm

HYP = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
GUARD = np.float32(-7.5)


def _operands(m, n, k, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    return a, w, bias


def test_pack_round_trips_and_pads_with_zeros():
    w = np.arange(35 * 3, dtype=np.float32).reshape(35, 3)
    packed = sgemm.pack_weights(w)
    assert packed.shape == (3, 3, 16) and packed.flags.c_contiguous
    assert np.array_equal(sgemm.unpack_weights(packed, 35), w)
    assert not packed[2, :, 3:].any()  # columns 35..47 are padding
    assert packed.ctypes.data % 64 == 0  # each packed row one cache line (kernels.buffers)


@HYP
@given(m=st.integers(0, 40), n=st.integers(1, 70), k=st.integers(1, 90), bias=st.booleans(), gelu=st.booleans(),
       seed=st.integers(0, 2**16))
def test_matches_the_numpy_twin_on_any_shape(m, n, k, bias, gelu, seed):
    a, w, b = _operands(m, n, k, seed)
    packed = sgemm.pack_weights(w)
    want = sgemm.gemm_reference(a, packed, n, b if bias else None, gelu=gelu)
    got = sgemm.gemm(a, packed, n, b if bias else None, gelu=gelu)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.sqrt(k))


@pytest.mark.parametrize("n,stride", [(64, 1), (64, 3), (40, 1), (40, 2)])
def test_bias_read_in_place_or_padded(n, stride):
    """A contiguous bias of whole panel pairs is read where it lies; any other is copied first."""
    a, w, b = _operands(13, n, 24, 5)
    strided = np.repeat(b, stride)[::stride]
    assert np.array_equal(strided, b) and strided.strides[0] == 4 * stride
    want = sgemm.gemm_reference(a, sgemm.pack_weights(w), n, b)
    np.testing.assert_allclose(sgemm.gemm(a, sgemm.pack_weights(w), n, strided), want, rtol=1e-5, atol=1e-5)


def test_gelu_epilogue_is_the_exact_gelu():
    """GELU in the epilogue: within 1e-6 of x/2 (1 + erf(x / sqrt 2)) in float64 from -10 to 10,
    0 far left, x far right."""
    x = np.linspace(-10, 10, 4001, dtype=np.float32)[:, None]
    got = sgemm.gemm(x, sgemm.pack_weights(np.ones((1, 1), np.float32)), 1, gelu=True)[:, 0]
    want = [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x[:, 0].astype(np.float64)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@HYP
@given(m=st.integers(1, 40), n=st.integers(1, 90), k=st.integers(1, 90), bias=st.booleans(), gelu=st.booleans(),
       threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_avx512_and_avx2_kernels_agree_bitwise(m, n, k, bias, gelu, threads, seed):
    """The 16-lane kernels (two panels a tile, a lone last panel paired with itself) run the
    same fused multiply-add chains as the 8-lane ones; on a host without AVX-512 LLVM splits
    their vectors, so the comparison holds (and runs) everywhere."""
    a, w, b = _operands(m, n, k, seed)
    packed = sgemm.pack_weights(w)
    outs = []
    for wide in (True, False):
        out = np.full((m, n + 5), GUARD, np.float32)
        sgemm._entry(a, packed, n, b if bias else sgemm._NO_BIAS, bias, out[:, :n], threads, wide, int(gelu))
        outs.append(out)
    assert np.array_equal(outs[0], outs[1])
    assert (outs[0][:, n:] == GUARD).all()


@HYP
@given(m=st.integers(1, 30), n=st.integers(1, 50), k=st.integers(1, 60), seed=st.integers(0, 2**16))
def test_writes_inside_a_strided_view_only(m, n, k, seed):
    """Edge panels are stored lane by lane: the guard columns around ``out`` stay untouched."""
    a, w, b = _operands(m, n, k, seed)
    big = np.full((m + 2, n + 9), GUARD, np.float32)
    out = big[1:m + 1, 4:n + 4]
    sgemm.gemm(a, sgemm.pack_weights(w), n, b, out)
    np.testing.assert_allclose(out, a @ w.T + b, rtol=1e-5, atol=1e-5 * np.sqrt(k))
    outside = big.copy()
    outside[1:m + 1, 4:n + 4] = GUARD
    assert (outside == GUARD).all()


@pytest.mark.parametrize("k,n", [(384, 1152), (1536, 384), (32, 37)])
def test_every_row_is_bitwise_the_same_alone_and_in_any_batch(k, n):
    a, w, b = _operands(700, n, k, 7)  # 700 rows: parallel, several row blocks
    packed = sgemm.pack_weights(w)
    whole = sgemm.gemm(a, packed, n, b)
    for lo, hi in [(0, 1), (5, 6), (3, 20), (17, 29), (100, 700), (699, 700)]:
        assert np.array_equal(sgemm.gemm(a[lo:hi], packed, n, b), whole[lo:hi]), (lo, hi)


def test_bad_arguments_name_the_problem():
    a, w, b = _operands(3, 20, 8, 0)
    packed = sgemm.pack_weights(w)
    with pytest.raises(ValueError, match="K=9"):
        sgemm.gemm(np.zeros((3, 9), np.float32), packed, 20)
    with pytest.raises(ValueError, match="n=40"):
        sgemm.gemm(a, packed, 40)
    with pytest.raises(TypeError, match="float32"):
        sgemm.gemm(a.astype(np.float64), packed, 20)
    with pytest.raises(ValueError, match="bias"):
        sgemm.gemm(a, packed, 20, np.zeros(19, np.float32))
    with pytest.raises(TypeError, match="weights must be a 2-D float32"):
        sgemm.pack_weights(w.astype(np.float16))
    for gemm in (sgemm.gemm, sgemm.gemm_reference):
        with pytest.raises(TypeError, match="gelu must be a bool, got str"):
            gemm(a, packed, 20, gelu="no")
