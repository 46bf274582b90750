"""Kernel micro-benchmarks (pytest-benchmark): each numba kernel beside its numpy twin.

In the normal test run (``--benchmark-disable``, set in pyproject.toml) every case runs once
and only checks that the kernel agrees with its twin.  Timed:

    python -m pytest tests/test_kernel_benchmarks.py --benchmark-enable --benchmark-group-by=group

Shapes are one forward chunk of all-MiniLM-L6-v2 (hidden 384, 12 heads of 32, FFN 1536) on
mixed-length texts, but the kernels know nothing of the model.
"""
import numpy as np
import pytest

from minilm_np.kernels import jit, reference, sgemm

HIDDEN, HEADS, HEAD_DIM, FFN = 384, 12, 32, 1536
LENGTHS = [12, 25, 31, 58, 112, 256, 18, 40, 9, 77]  # tokens per text: median ~35, one at max length
BACKENDS = {"numba": jit, "numpy": reference}


@pytest.fixture(scope="module")
def chunk():
    rng = np.random.default_rng(0)
    cu_seqlens = np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int64)
    n = int(cu_seqlens[-1])
    return dict(
        cu_seqlens=cu_seqlens,
        qkv=rng.standard_normal((n, 3 * HIDDEN)).astype(np.float32),
        hidden=rng.standard_normal((n, HIDDEN)).astype(np.float32),
        residual=rng.standard_normal((n, HIDDEN)).astype(np.float32),
        ffn=rng.standard_normal((n, FFN)).astype(np.float32),
        bias=rng.standard_normal(HIDDEN).astype(np.float32) * 0.1,
        ffn_bias=rng.standard_normal(FFN).astype(np.float32) * 0.1,
        gamma=(1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32),
        beta=(0.1 * rng.standard_normal(HIDDEN)).astype(np.float32),
        weight=(rng.standard_normal((FFN, HIDDEN)) / np.sqrt(HIDDEN)).astype(np.float32),
    )


def _run(benchmark, group, backend, fn, *args):
    """Benchmark ``fn(*args)`` (inputs copied before each call) and return its result."""
    benchmark.group = group
    benchmark.extra_info["backend"] = backend
    return benchmark.pedantic(lambda copies: fn(*copies), setup=lambda: (([a.copy(order="K") if isinstance(a, np.ndarray)
                                                                             else a for a in args],), {}),
                              rounds=20, warmup_rounds=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_attention(benchmark, backend, chunk):
    out = np.zeros_like(chunk["hidden"])
    got = _run(benchmark, "attention", backend, BACKENDS[backend].attention, chunk["qkv"], chunk["cu_seqlens"],
               HEADS, HEAD_DIM, out)
    want = reference.attention(chunk["qkv"], chunk["cu_seqlens"], HEADS, HEAD_DIM, np.zeros_like(out))
    np.testing.assert_allclose(got, want, atol=2e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bias_gelu(benchmark, backend, chunk):
    got = _run(benchmark, "gelu", backend, BACKENDS[backend].bias_gelu, chunk["ffn"], chunk["ffn_bias"])
    want = reference.bias_gelu(chunk["ffn"].copy(), chunk["ffn_bias"])
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bias_residual_layer_norm(benchmark, backend, chunk):
    args = (chunk["hidden"], chunk["bias"], chunk["residual"], chunk["gamma"], chunk["beta"], 1e-12)
    got = _run(benchmark, "layer_norm", backend, BACKENDS[backend].bias_residual_layer_norm, *args)
    want = reference.bias_residual_layer_norm(chunk["hidden"].copy(), *args[1:])
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mean_pool(benchmark, backend, chunk):
    out = np.zeros((len(LENGTHS), HIDDEN), np.float32)
    got = _run(benchmark, "mean_pool", backend, BACKENDS[backend].mean_pool, chunk["hidden"], chunk["cu_seqlens"],
               out)
    want = np.stack([chunk["hidden"][a:b].mean(0) for a, b in zip(chunk["cu_seqlens"][:-1], chunk["cu_seqlens"][1:])])
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("backend", ["numba-packed", "numpy-blas"])
def test_ffn_in_gemm(benchmark, backend, chunk):
    x, weight = chunk["hidden"], chunk["weight"]
    out = np.empty((x.shape[0], FFN), np.float32)
    if backend == "numba-packed":
        got = _run(benchmark, "gemm", backend, sgemm.gemm, x, sgemm.pack_weights(weight), FFN, None, out)
    else:
        got = _run(benchmark, "gemm", backend, np.matmul, x, np.asfortranarray(weight).T, out)
    np.testing.assert_allclose(got, x @ weight.T, rtol=1e-4, atol=1e-4)
