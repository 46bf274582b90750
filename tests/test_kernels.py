"""Each numba kernel against its plain-numpy twin, on hypothesis-drawn packed batches."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm_np.kernels import attention, cpu, jit, reference, rows
from minilm_np.kernels.backend import load_backend

LENGTHS = st.lists(st.one_of(st.sampled_from([1, 2, 256]), st.integers(1, 80)), min_size=1, max_size=6)
SETTINGS = settings(max_examples=40, deadline=None)


def packed(lengths, width, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    cu = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=cu[1:])
    return (rng.standard_normal((int(cu[-1]), width)) * scale).astype(np.float32), cu


def test_backend_choice(monkeypatch):
    assert load_backend("numba") is jit
    assert load_backend("numpy") is reference
    monkeypatch.setenv("MINILM_NP_BACKEND", "numpy")
    assert load_backend() is reference
    with pytest.raises(ValueError, match="unknown kernel backend 'cuda'"):
        load_backend("cuda")


def test_twins_share_signatures():
    import inspect

    for name in ("gather_embeddings", "attention", "bias_gelu", "bias_residual_layer_norm", "mean_pool",
                 "max_pool", "first_token_pool", "l2_normalize"):
        assert inspect.signature(getattr(jit, name)) == inspect.signature(getattr(reference, name)), name


def test_erf_and_gelu_accuracy():
    x = np.linspace(-10, 10, 200_001).astype(np.float32)
    exact = np.array([math.erf(v) for v in x.astype(np.float64)])
    for k in (jit, reference):
        assert np.abs(k.erf(x) - exact).max() < 1.5e-7
        y = x[None, :].copy()
        k.bias_gelu(y, np.zeros(1, np.float32).repeat(y.shape[1]))
        gelu = 0.5 * x.astype(np.float64) * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x.astype(np.float64)]))
        # the numba GELU evaluates erf in float32, as torch's float32 GELU does: a few ulp of
        # 1 + erf, so up to ~1.5e-6 absolute (measured on 8M points in [-12, 12]); float64 twin 5e-7
        assert np.abs(y[0] - gelu).max() <= (2e-6 if k is jit else 1e-6)


def test_exp_accuracy():
    x = np.linspace(-87, 0, 100_001).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    assert (np.abs(jit.exp(x) - exact) / exact).max() < 5e-7


@SETTINGS
@given(lengths=LENGTHS, heads=st.sampled_from([1, 2, 12]), head_dim=st.sampled_from([8, 24, 32, 64]),
       seed=st.integers(0, 2**31))
def test_attention(lengths, heads, head_dim, seed):
    qkv, cu = packed(lengths, 3 * heads * head_dim, seed, scale=2.0)
    want = reference.attention(qkv, cu, heads, head_dim, np.full((len(qkv), heads * head_dim), np.nan, np.float32))
    got = jit.attention(qkv, cu, heads, head_dim, np.full((len(qkv), heads * head_dim), np.nan, np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # values up to ~8


@SETTINGS
@given(rows=st.integers(1, 600), width=st.sampled_from([1, 7, 384, 1536]), seed=st.integers(0, 2**31))
def test_bias_gelu(rows, width, seed):
    x, _ = packed([rows], width, seed, scale=4.0)
    bias = np.random.default_rng(seed + 1).standard_normal(width).astype(np.float32)
    # float32 erf against the float64 twin: see test_erf_and_gelu_accuracy
    np.testing.assert_allclose(jit.bias_gelu(x.copy(), bias), reference.bias_gelu(x.copy(), bias), rtol=1e-6, atol=2e-6)


@SETTINGS
@given(rows=st.integers(1, 600), width=st.sampled_from([2, 33, 384]), with_bias=st.booleans(),
       with_residual=st.booleans(), seed=st.integers(0, 2**31))
def test_layer_norm(rows, width, with_bias, with_residual, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, width)) * 3 + 1).astype(np.float32)
    bias = rng.standard_normal(width).astype(np.float32) if with_bias else None
    residual = rng.standard_normal((rows, width)).astype(np.float32) if with_residual else None
    gamma, beta = rng.standard_normal((2, width)).astype(np.float32)
    want = reference.bias_residual_layer_norm(x.copy(), bias, residual, gamma, beta, 1e-12)
    got = jit.bias_residual_layer_norm(x.copy(), bias, residual, gamma, beta, 1e-12)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)


@SETTINGS
@given(lengths=LENGTHS, width=st.sampled_from([1, 5, 384]), seed=st.integers(0, 2**31))
def test_pooling(lengths, width, seed):
    x, cu = packed(lengths, width, seed)
    for name in ("mean_pool", "max_pool", "first_token_pool"):
        want = getattr(reference, name)(x, cu, np.empty((len(lengths), width), np.float32))
        got = getattr(jit, name)(x, cu, np.empty((len(lengths), width), np.float32))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=name)


@SETTINGS
@given(rows=st.integers(1, 50), width=st.sampled_from([1, 384]), seed=st.integers(0, 2**31))
def test_l2_normalize(rows, width, seed):
    x, _ = packed([rows], width, seed)
    x[0] = 0  # a zero row stays zero, no NaN
    want = reference.l2_normalize(x, np.empty_like(x))
    got = jit.l2_normalize(x, np.empty_like(x))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.all(got[0] == 0)


@SETTINGS
@given(lengths=LENGTHS, seed=st.integers(0, 2**31))
def test_gather_embeddings(lengths, seed):
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    word, pos, typ = (rng.standard_normal((v, 16)).astype(np.float32) for v in (100, 300, 2))
    ids = rng.integers(0, 100, n)
    positions = np.concatenate([np.arange(length) for length in lengths])
    types = rng.integers(0, 2, n)
    want = reference.gather_embeddings(ids, positions, types, word, pos, typ, np.empty((n, 16), np.float32))
    got = jit.gather_embeddings(ids, positions, types, word, pos, typ, np.empty((n, 16), np.float32))
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(lengths=st.lists(st.one_of(st.sampled_from([7, 8, 15, 16, 17, 24, 31, 32, 33, 256]), st.integers(1, 120)),
                        min_size=1, max_size=5), seed=st.integers(0, 2**31))
def test_attention_is_bitwise_the_same_on_8_and_16_lanes(lengths, seed):
    """The AVX-512 path (16-lane GEMM tiles and softmax rows) and the 8-lane one give the same
    bits, so ``MINILM_NP_AVX512=0`` changes no vector; without AVX-512 LLVM splits the wide
    vectors, so the comparison holds (and runs) everywhere."""
    x, cu = packed(lengths, 384 * 3, seed, scale=3.0)
    wide, narrow = (np.empty((len(x), 384), np.float32) for _ in range(2))
    attention._attention_serial(x, cu, 12, 32, wide, True)
    attention._attention_serial(x, cu, 12, 32, narrow, False)
    assert np.array_equal(wide, narrow)


def test_parallel_paths_match_serial():
    """Large inputs take the prange drivers; their results equal the serial cores bitwise."""
    x, cu = packed([256] * 6 + [3] * 20, 384 * 3, 7)
    serial = np.empty((len(x), 384), np.float32)
    attention._attention_serial(x, cu, 12, 32, serial, cpu.ISA.avx512)
    assert np.array_equal(jit.attention(x, cu, 12, 32, np.empty_like(serial)), serial)
    y = np.ascontiguousarray(x[:, :384])
    bias = np.ones(384, np.float32)
    a, b = y.copy(), y.copy()
    rows._bias_gelu_rows(a, bias, 0, len(a))
    assert np.array_equal(jit.bias_gelu(b, bias), a)


@pytest.mark.parametrize("shape, dtype", [((3, 5), np.float32), (7, np.int8), ((4, 384), np.int16), ((0, 3), np.float32)])
def test_aligned_buffers_start_on_a_cache_line(shape, dtype):
    from minilm_np.kernels.buffers import empty_aligned, zeros_aligned

    for make in (empty_aligned, zeros_aligned):
        for _ in range(8):  # allocations land at varied offsets
            a = make(shape, dtype)
            assert a.shape == np.empty(shape).shape and a.dtype == dtype and a.flags.c_contiguous
            assert a.size == 0 or a.ctypes.data % 64 == 0
    assert not zeros_aligned(shape, dtype).any()


def test_run_state_buffers_start_on_cache_lines():
    from minilm_np.config import Config
    from minilm_np.model import RunState

    config = Config(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536, vocab_size=30522,
                    max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12)
    state = RunState(config, 37)
    for name in ("hidden", "mid", "context", "qkv", "ffn"):
        assert getattr(state, name).ctypes.data % 64 == 0, name
