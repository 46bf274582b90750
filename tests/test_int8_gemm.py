"""int8 GEMM kernels (minilm_np.kernels.int8_gemm, int8_linear): bit-exact against an int64 numpy matmul.

Every kernel test runs on each path: the AMX tiles and the AVX2/VNNI micro-kernels (skipped on
CPUs without them) and the portable numba loops, chosen by the ``isa=`` each call is given.
"""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minilm_np.kernels import cpu
from minilm_np.kernels import int8_gemm as g
from minilm_np.kernels import int8_linear as lin

IMPLS = [pytest.param(cpu.isa(), id="amx", marks=pytest.mark.skipif(not cpu.ISA.amx, reason="no AMX")),
         pytest.param(cpu.isa(amx=False), id="avx2",
                      marks=pytest.mark.skipif(not cpu.ISA.int8_vector, reason="no AVX2")),
         pytest.param(cpu.isa(int8_vector=False), id="portable")]
HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
GUARD = -0x5A5A5A5A

# (a low, a high) per kernel; u8s8's precondition is 0 <= a <= 127, s16s8 takes any int16
# (K is kept small enough below that the int32 accumulator cannot overflow).
KINDS = {
    "u8s8": dict(pack=g.pack_weights_u8s8, gemm=g.gemm_u8s8, ref=g.gemm_u8s8_reference,
                 dtype=np.uint8, lo=0, hi=127),
    "s16s8": dict(pack=g.pack_weights_s16s8, gemm=g.gemm_s16s8, ref=g.gemm_s16s8_reference,
                  dtype=np.int16, lo=-32768, hi=32767),
}


@pytest.fixture(params=IMPLS)
def impl(request):
    """The :class:`cpu.Isa` the kernels are called with."""
    return request.param


@pytest.fixture
def force_parallel(monkeypatch):
    """Run every product through the parallel driver, on at least two threads."""
    monkeypatch.setattr(g, "PARALLEL_MIN_OPS", 0)
    monkeypatch.setattr(g, "PARALLEL_MIN_OPS_AMX", 0)
    threads = numba.get_num_threads()
    numba.set_num_threads(max(2, min(threads, numba.config.NUMBA_NUM_THREADS)))
    yield
    numba.set_num_threads(threads)


def oracle(a, w):
    """Independent spec: int64 matmul of the unpacked operands, wrapped to int32."""
    return (a.astype(np.int64) @ w.astype(np.int64).T).astype(np.int32)


def draw_operands(kind, m, k, n, pattern, seed):
    spec = KINDS[kind]
    rng = np.random.default_rng(seed)
    lo, hi = spec["lo"], spec["hi"]
    if pattern == "random":
        a = rng.integers(lo, hi + 1, (m, k))
        w = rng.integers(-128, 128, (n, k))
    elif pattern == "max":  # largest positive products
        a = np.full((m, k), hi)
        w = np.full((n, k), 127)
    elif pattern == "min":  # largest negative products (|w| = 128 too)
        a = np.full((m, k), hi)
        w = np.full((n, k), -128)
    elif pattern == "neg127":
        a = np.full((m, k), hi)
        w = np.full((n, k), -127)
    elif pattern == "zero":
        a = np.zeros((m, k))
        w = rng.integers(-128, 128, (n, k))
    else:  # "extremes": every entry at an end of its range
        a = rng.choice([lo, hi], (m, k))
        w = rng.choice([-128, -127, 127], (n, k))
    return a.astype(spec["dtype"]), w.astype(np.int8)


def run_case(kind, a, w, isa, out=None):
    spec = KINDS[kind]
    n = w.shape[0]
    packed = spec["pack"](w)
    got = spec["gemm"](a, packed, n, out=out, isa=isa)
    expected = oracle(a, w)
    assert got.dtype == np.int32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(spec["ref"](a, packed, n), expected)
    return got


K_SMALL = st.one_of(st.integers(1, 200), st.sampled_from([64, 128, 192]))
"""Reduction lengths; multiples of 64 are the ones the AMX tiles take (others use the vector kernels)."""
PATTERNS = st.sampled_from(["random", "random", "random", "max", "min", "neg127", "zero", "extremes"])


@pytest.mark.parametrize("kind", ["u8s8", "s16s8"])
@HYP
@given(m=st.one_of(st.integers(1, 9), st.sampled_from([16, 17, 31, 33])),
       k=K_SMALL, n=st.integers(1, 70), pattern=PATTERNS, seed=st.integers(0, 2**32 - 1))
def test_exact_small_shapes(impl, kind, m, k, n, pattern, seed):
    a, w = draw_operands(kind, m, k, n, pattern, seed)
    run_case(kind, a, w, impl)


@pytest.mark.parametrize("kind", ["u8s8", "s16s8"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=st.integers(1, 40), k=st.one_of(st.integers(1, 100), st.sampled_from([64, 128])), n=st.integers(1, 90),
       pattern=PATTERNS, seed=st.integers(0, 2**32 - 1))
def test_exact_parallel_driver(impl, force_parallel, kind, m, k, n, pattern, seed):
    a, w = draw_operands(kind, m, k, n, pattern, seed)
    run_case(kind, a, w, impl)


@pytest.mark.parametrize("kind", ["u8s8", "s16s8"])
@HYP
@given(m=st.integers(1, 13), k=st.one_of(st.integers(1, 90), st.just(64)), n=st.integers(1, 50),
       pad=st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 20), st.integers(0, 3)),
       row_step=st.sampled_from([1, 2]), seed=st.integers(0, 2**32 - 1))
def test_out_view_guard_never_written(impl, kind, m, k, n, pad, row_step, seed):
    """``out`` is a view inside a guard-filled buffer: only the (M, N) window may change."""
    top, left, right, bottom = pad
    a, w = draw_operands(kind, m, k, n, "random", seed)
    buf = np.full((top + row_step * m + bottom, left + n + right), GUARD, dtype=np.int32)
    out = buf[top:top + row_step * m:row_step, left:left + n]
    got = run_case(kind, a, w, impl, out=out)
    assert got is out
    mask = np.ones(buf.shape, dtype=bool)
    mask[top:top + row_step * m:row_step, left:left + n] = False
    assert (buf[mask] == GUARD).all(), "a kernel wrote outside its output window"


@pytest.mark.parametrize("kind", ["u8s8", "s16s8"])
@pytest.mark.parametrize("m,k,n", [(1, 384, 1536), (3, 1536, 384), (37, 384, 1152), (130, 1536, 390)])
def test_exact_model_shapes(impl, kind, m, k, n):
    a, w = draw_operands(kind, m, k, n, "random", m * 7919 + n)
    if kind == "s16s8":
        a = np.clip(a, -2047, 2047).astype(np.int16)  # keeps K=1536 sums inside int32
    run_case(kind, a, w, impl)


@pytest.mark.parametrize("kind", ["u8s8", "s16s8"])
def test_model_shape_parallel_guarded(impl, force_parallel, kind):
    m, k, n = 67, 1536, 1160  # tiles and panels both ragged, K=1536 blocks the rows of A
    a, w = draw_operands(kind, m, k, n, "extremes", 3)
    if kind == "s16s8":
        a = np.clip(a, -2047, 2047).astype(np.int16)
    buf = np.full((m + 2, n + 5), GUARD, dtype=np.int32)
    run_case(kind, a, w, impl, out=buf[1:-1, 2:-3])
    assert (buf[0] == GUARD).all() and (buf[-1] == GUARD).all()
    assert (buf[:, :2] == GUARD).all() and (buf[:, -3:] == GUARD).all()


@pytest.mark.parametrize("kind", ["u8s8", "s16s8"])
def test_strided_operands(impl, kind):
    """A non-contiguous ``a`` (copied) and an ``out`` with a column stride (computed aside)."""
    m, k, n = 11, 45, 29
    a, w = draw_operands(kind, m, k + 7, n, "random", 5)
    a = a[:, 3:3 + k]
    w = np.ascontiguousarray(w[:, 3:3 + k])
    buf = np.full((m, 2 * n + 1), GUARD, dtype=np.int32)
    run_case(kind, a, w, impl, out=buf[:, ::2][:, :n])
    assert (buf[:, 1::2] == GUARD).all()


@pytest.mark.parametrize("kind", ["u8s8", "s16s8"])
def test_empty(impl, kind):
    spec = KINDS[kind]
    w = np.ones((5, 7), dtype=np.int8)
    assert spec["gemm"](np.zeros((0, 7), spec["dtype"]), spec["pack"](w), 5, isa=impl).shape == (0, 5)
    w0 = np.ones((0, 7), dtype=np.int8)
    assert spec["gemm"](np.zeros((3, 7), spec["dtype"]), spec["pack"](w0), 0, isa=impl).shape == (3, 0)


def test_saturation_edge_u8s8(impl):
    """a = 127 against w = -128 / 127 pairs: the largest vpmaddubsw pair sums, still exact."""
    k = 64
    a = np.full((2, k), 127, dtype=np.uint8)
    w = np.stack([np.full(k, -128), np.full(k, 127), np.tile([127, -128], k // 2)]).astype(np.int8)
    got = g.gemm_u8s8(a, g.pack_weights_u8s8(w), 3, isa=impl)
    np.testing.assert_array_equal(got, [[-127 * 128 * k, 127 * 127 * k, -127 * k // 2]] * 2)


# ----------------------------------------------------------------------------------------------
# linear_*: quantise rows, integer product, dequantise -- bitwise equal to the numpy twin


def linear_case(kind, m, k, n, n_outliers, seed, isa, out=None):
    """One product, checked bitwise against the twin; with a bias for odd seeds."""
    rng = np.random.default_rng(seed)
    bias = rng.standard_normal(n).astype(np.float32) if seed % 2 else None
    x = rng.standard_normal((m, k)).astype(np.float32)
    outliers = np.sort(rng.choice(k, min(n_outliers, k), replace=False)).astype(np.int64)
    x[:, outliers] *= 30
    if m > 2:
        x[1] = 0  # an all-zero row: scale 0
        x[2] = np.abs(x[2])  # all positive: zero point at 0
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    mask = np.ones(k, np.float32)
    mask[outliers] = 0
    columns = lin.Dequantization(rng.random(n).astype(np.float32) / 50, w.sum(1, dtype=np.int32), outliers,
                               rng.standard_normal((len(outliers), n)).astype(np.float32))
    if kind == "u8s8":
        packed = g.pack_weights_u8s8(w)
        got = lin.linear_u8s8(x, mask, packed, n, np.empty((m, n), np.float32) if out is None else out, columns,
                              bias, isa=isa)
        expected = lin.linear_u8s8_reference(x, mask, packed, n, np.empty((m, n), np.float32), columns, bias)
    else:
        packed = g.pack_weights_s16s8(w)
        got = lin.linear_s16s8(x, mask, 2047, packed, n, np.empty((m, n), np.float32) if out is None else out,
                               columns, bias, isa=isa)
        expected = lin.linear_s16s8_reference(x, mask, 2047, packed, n, np.empty((m, n), np.float32), columns,
                                            bias)
    assert got.dtype == np.float32 and got.shape == (m, n)
    np.testing.assert_array_equal(got, expected)
    assert np.isfinite(got).all()
    return got


@pytest.mark.parametrize("kind", ["u8s8", "s16s8"])
@HYP
@given(m=st.one_of(st.integers(1, 9), st.sampled_from([16, 17, 31, 33])), k=K_SMALL,
       n=st.integers(1, 70), n_outliers=st.integers(0, 5), seed=st.integers(0, 2**32 - 1))
def test_linear_matches_its_numpy_twin_bitwise(impl, kind, m, k, n, n_outliers, seed):
    linear_case(kind, m, k, n, n_outliers, seed, impl)


@pytest.mark.parametrize("kind", ["u8s8", "s16s8"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=st.integers(1, 300), k=st.one_of(st.integers(1, 400), st.sampled_from([64, 192, 384])),
       n=st.integers(1, 90), n_outliers=st.integers(0, 4), seed=st.integers(0, 2**32 - 1))
def test_linear_parallel_driver(impl, force_parallel, kind, m, k, n, n_outliers, seed):
    linear_case(kind, m, k, n, n_outliers, seed, impl)


@pytest.mark.parametrize("kind", ["u8s8", "s16s8"])
@pytest.mark.parametrize("m,k,n", [(17, 384, 1536), (130, 1536, 390), (26, 384, 1152)])
def test_linear_model_shapes_guarded(impl, kind, m, k, n):
    """The float32 result lands in its window of a guard-filled buffer and nowhere else."""
    buf = np.full((m + 2, n + 5), np.float32(-7.25), dtype=np.float32)
    linear_case(kind, m, k, n, 4, m + n, impl, out=buf[1:-1, 2:-3])  # the last case has a bias
    assert (buf[0] == -7.25).all() and (buf[-1] == -7.25).all()
    assert (buf[:, :2] == -7.25).all() and (buf[:, -3:] == -7.25).all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=st.integers(1, 70), k=st.sampled_from([64, 128, 384, 40]), n=st.integers(1, 70),
       n_outliers=st.integers(0, 4), parallel=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_linear_s16s8_on_u8s8_packing(impl, monkeypatch, m, k, n, n_outliers, parallel, seed):
    """w8a16 layers on AMX hosts hold u8s8-packed weights: the int16 codes' byte planes on the
    tiles (or, off AMX, a repack) give bitwise the int16-packed result and its numpy twin."""
    monkeypatch.setattr(g, "PARALLEL_MIN_OPS", 0 if parallel else 1 << 62)
    monkeypatch.setattr(g, "PARALLEL_MIN_OPS_AMX", 0 if parallel else 1 << 62)
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((m, k)) * rng.uniform(0.1, 20)).astype(np.float32)
    w = rng.integers(-128, 128, (n, k)).astype(np.int8)
    outliers = rng.choice(k, n_outliers, replace=False)
    mask = np.ones(k, np.float32)
    mask[outliers] = 0
    columns = lin.Dequantization(rng.random(n).astype(np.float32) / 50, None, outliers,
                               rng.standard_normal((n_outliers, n)).astype(np.float32))
    bias = rng.standard_normal(n).astype(np.float32) if seed % 2 else None
    max_code = min(8191, (2 ** 31 - 1) // (128 * k))
    got = lin.linear_s16s8(x, mask, max_code, g.pack_weights_u8s8(w), n, np.empty((m, n), np.float32), columns,
                           bias, isa=impl)
    int16_packed = lin.linear_s16s8(x, mask, max_code, g.pack_weights_s16s8(w), n, np.empty((m, n), np.float32),
                                    columns, bias, isa=impl)
    twin = lin.linear_s16s8_reference(x, mask, max_code, g.pack_weights_u8s8(w), n, np.empty((m, n), np.float32),
                                    columns, bias)
    np.testing.assert_array_equal(got, int16_packed)
    np.testing.assert_array_equal(got, twin)


def test_linear_column_strided_out(impl):
    m, k, n = 9, 40, 21
    buf = np.full((m, 2 * n), np.float32(-7.25), dtype=np.float32)
    linear_case("u8s8", m, k, n, 2, 1, impl, out=buf[:, ::2])
    assert (buf[:, 1::2] == -7.25).all()


def test_linear_argument_errors():
    w = np.ones((20, 10), dtype=np.int8)
    packed, x, mask = g.pack_weights_u8s8(w), np.ones((3, 10), np.float32), np.ones(10, np.float32)
    columns = lin.Dequantization(np.ones(20, np.float32), w.sum(1, dtype=np.int32))
    with pytest.raises(TypeError, match="x must be"):
        lin.linear_u8s8(x.astype(np.float64), mask, packed, 20, np.empty((3, 20), np.float32), columns)
    with pytest.raises(ValueError, match="out must not overlap x"):
        big = np.ones((3, 30), np.float32)
        lin.linear_u8s8(big[:, :10], mask, packed, 20, big[:, 10:], columns)
    with pytest.raises(ValueError, match="mask"):
        lin.linear_u8s8(x, np.ones(9, np.float32), packed, 20, np.empty((3, 20), np.float32), columns)
    with pytest.raises(ValueError, match="Dequantization of 20"):
        lin.linear_u8s8(x, mask, packed, 20, np.empty((3, 20), np.float32), lin.Dequantization(np.ones(19, np.float32)))
    with pytest.raises(ValueError, match="col_sum"):
        lin.linear_u8s8(x, mask, packed, 20, np.empty((3, 20), np.float32), lin.Dequantization(np.ones(20, np.float32)))
    with pytest.raises(TypeError, match="packed must come from"):  # (u8s8's packing is accepted too)
        lin.linear_s16s8(x, mask, 2047, packed.astype(np.int32), 20, np.empty((3, 20), np.float32), columns)
    with pytest.raises(ValueError, match=r"bias must be float32 of shape \(20,\)"):
        lin.linear_u8s8(x, mask, packed, 20, np.empty((3, 20), np.float32), columns, np.ones(19, np.float32))


def test_linear_bias_is_added_last():
    """With a bias the result is bitwise the product without one, plus the bias."""
    rng = np.random.default_rng(5)
    m, k, n = 7, 50, 37
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.integers(-127, 128, (n, k)).astype(np.int8)
    bias = rng.standard_normal(n).astype(np.float32)
    columns = lin.Dequantization(rng.random(n).astype(np.float32) / 50, w.sum(1, dtype=np.int32))
    packed, mask = g.pack_weights_u8s8(w), np.ones(k, np.float32)
    plain = lin.linear_u8s8(x, mask, packed, n, np.empty((m, n), np.float32), columns)
    np.testing.assert_array_equal(lin.linear_u8s8(x, mask, packed, n, np.empty((m, n), np.float32), columns, bias),
                                  plain + bias)


@pytest.mark.parametrize("pack,kg,dtype", [(g.pack_weights_u8s8, 4, np.int8),
                                           (g.pack_weights_s16s8, 2, np.int16)])
@HYP
@given(n=st.integers(1, 40), k=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_pack_layout_roundtrip(pack, kg, dtype, n, k, seed):
    w = np.random.default_rng(seed).integers(-128, 128, (n, k)).astype(np.int8)
    packed = pack(w)
    assert packed.dtype == dtype and packed.flags.c_contiguous
    assert packed.shape == (-(-n // g.PANEL), -(-k // kg), g.PANEL, kg)
    np.testing.assert_array_equal(g.unpack_weights(packed, n, k), w)
    j, kk = n - 1, k - 1  # the documented index map
    assert packed[j // g.PANEL, kk // kg, j % g.PANEL, kk % kg] == w[j, kk]
    assert packed.sum(dtype=np.int64) == w.sum(dtype=np.int64)  # the padding is zero


def test_argument_errors():
    w = np.ones((20, 10), dtype=np.int8)
    p8 = g.pack_weights_u8s8(w)
    a = np.ones((3, 10), dtype=np.uint8)
    with pytest.raises(TypeError):
        g.gemm_u8s8(a.astype(np.int16), p8, 20)
    with pytest.raises(TypeError):
        g.gemm_u8s8(a, g.pack_weights_s16s8(w), 20)
    with pytest.raises(ValueError):
        g.gemm_u8s8(np.ones((3, 13), dtype=np.uint8), p8, 20)  # K does not match the packing
    with pytest.raises(ValueError):
        g.gemm_u8s8(a, p8, 40)  # N does not match the packing
    with pytest.raises(ValueError):
        g.gemm_u8s8(a, p8, 20, out=np.empty((3, 19), dtype=np.int32))
    with pytest.raises(TypeError):
        g.pack_weights_u8s8(w.astype(np.int16))


def test_isa_never_exceeds_the_cpu():
    """``cpu.isa`` turns paths off, never on where the CPU (or the environment) lacks them."""
    assert cpu.isa() == cpu.ISA
    assert cpu.isa(int8_vector=False) == cpu.ISA._replace(int8_vector=False, amx=False)  # AMX needs the vector path
    assert cpu.isa(amx=False).amx is False and cpu.isa(avx512=False).avx512 is False
    assert cpu.ISA.int8_vector <= cpu.AVX2 and cpu.ISA.amx <= cpu.AMX_CAPABLE and cpu.ISA.avx512 <= cpu.AVX512F
    assert g.path_for(cpu.isa(int8_vector=False), True, 64) == g.PORTABLE
    assert g.path_for(cpu.isa(amx=False), True, 64) == (g.VECTOR if cpu.ISA.int8_vector else g.PORTABLE)
    assert g.path_for(cpu.ISA, True, 63) != g.AMX and g.path_for(cpu.ISA, False, 64) != g.AMX


def test_import_without_avx2_falls_back():
    """With AVX2 reported missing the module imports and computes on the portable path."""
    code = ("import numpy as np\n"
            "from minilm_np.kernels import int8_gemm as g\n"
            "from minilm_np.kernels import cpu\n"
            "assert cpu.ISA.int8_vector is False and cpu.ISA.amx is False\n"
            "w = np.arange(-60, 60, dtype=np.int8).reshape(8, 15)\n"
            "a = np.arange(45, dtype=np.uint8).reshape(3, 15)\n"
            "c = g.gemm_u8s8(a, g.pack_weights_u8s8(w), 8)\n"
            "assert (c == a.astype(np.int64) @ w.astype(np.int64).T).all()\n")
    env = dict(os.environ, MINILM_NP_INT8_AVX2="0")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)


@pytest.mark.skipif(not cpu.VNNI, reason="this host already runs the AVX2-only kernels")
def test_avx2_without_vnni_exact(tmp_path):
    """On a VNNI host, the kernels compiled for a plain AVX2 CPU (Haswell) are exact too."""
    code = ("import numpy as np\n"
            "from minilm_np.kernels import int8_gemm as g\n"
            "from minilm_np.kernels import cpu, int8_vector\n"
            "assert cpu.ISA.int8_vector and not cpu.VNNI and int8_vector.MR_TOP == int8_vector.MR\n"
            "rng = np.random.default_rng(0)\n"
            "for m, k, n in [(1, 5, 3), (3, 17, 16), (6, 384, 40), (13, 64, 33), (40, 130, 17)]:\n"
            "    w = rng.integers(-128, 128, (n, k)).astype(np.int8)\n"
            "    for a in (rng.integers(0, 128, (m, k)).astype(np.uint8), np.full((m, k), 127, np.uint8)):\n"
            "        expected = a.astype(np.int64) @ w.astype(np.int64).T\n"
            "        assert (g.gemm_u8s8(a, g.pack_weights_u8s8(w), n) == expected).all()\n"
            "    a = rng.integers(-32768, 32768, (m, k)).astype(np.int16)\n"
            "    expected = (a.astype(np.int64) @ w.astype(np.int64).T).astype(np.int32)\n"
            "    assert (g.gemm_s16s8(a, g.pack_weights_s16s8(w), n) == expected).all()\n")
    features = "+64bit,+avx,+avx2,+fma,+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+f16c,+bmi,+bmi2,+cx16"
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=features,
               NUMBA_CACHE_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)


@pytest.mark.parametrize("pack", ["pack_weights_u8s8", "pack_weights_s16s8"])
def test_packed_weights_start_on_a_cache_line(pack):
    w = np.arange(-40, 37 * 11 - 40, dtype=np.int64).reshape(37, 11).clip(-127, 127).astype(np.int8)
    packed = getattr(g, pack)(w)
    assert packed.ctypes.data % 64 == 0 and packed.flags.c_contiguous
    assert np.array_equal(g.unpack_weights(packed, 37, 11), w)
