"""Row-wise numba kernels: embeddings, bias + GELU, bias + residual + LayerNorm, pooling, L2
norm, and elementwise erf / exp.  Each is the twin of the function of that name in :mod:`reference`.

Each row-wise kernel has a serial core ``_x_rows(..., lo, hi)`` and a ``prange`` driver over
chunks of rows (:func:`tasks.row_chunk`); the public function picks the driver only when the
work is large enough to repay waking the thread pool, so one short text never pays for threads.
A row's result never depends on the chunk it lands in.
"""
import math

import numpy as np

from ._numba_env import may_run_parallel  # noqa: F401  (must precede the numba import)
from numba import njit, prange

from .polynomials import ERF_P, ERF_Q, EXP_LN2_HI, EXP_LN2_LO, EXP_LOG2E, EXP_MIN, EXP_POLY
from .tasks import PARALLEL_MIN_ELEMENTS, chunk_rows, n_chunks, row_chunk

# reassoc lets LLVM vectorise the row reductions (sums in LayerNorm); contract allows FMA.
JIT = dict(cache=True, fastmath={"reassoc", "contract", "nsz"}, nogil=True, boundscheck=False,
           error_model="numpy")
PJIT = dict(JIT, parallel=True)
# No fast-math: a sum whose order must not depend on the CPU (see _sum_of_squares).
ORDERED_JIT = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")

# The erf polynomial in float32 (branch-free, so it vectorises unlike libm's erf; float32
# halves the cost of float64).
P0, P1, P2, P3, P4, P5, P6 = (np.float32(c) for c in ERF_P)
Q0, Q1, Q2, Q3, Q4 = (np.float32(c) for c in ERF_Q)
SQRT_HALF = np.float32(1.0 / math.sqrt(2.0))
E0, E1, E2, E3, E4, E5 = (np.float32(c) for c in EXP_POLY)
_LOG2E, _LN2_HI, _LN2_LO = np.float32(EXP_LOG2E), np.float32(EXP_LN2_HI), np.float32(EXP_LN2_LO)


@njit(inline="always", **JIT)
def _erf(x):
    """erf of a float32 ``x``, in float32."""
    x = min(max(x, np.float32(-4.0)), np.float32(4.0))
    x2 = x * x
    p = ((((((P0 * x2 + P1) * x2 + P2) * x2 + P3) * x2 + P4) * x2 + P5) * x2 + P6)
    q = ((((Q0 * x2 + Q1) * x2 + Q2) * x2 + Q3) * x2 + Q4)
    return x * p / q


@njit(**JIT)
def erf(x):
    """Error function, elementwise; float32 ``(n,)`` in, float32 ``(n,)`` out."""
    out = np.empty_like(x)
    for i in range(x.size):
        out.flat[i] = np.float32(_erf(np.float64(x.flat[i])))
    return out


@njit(inline="always", **JIT)
def _exp_into(x, n, out, bits):
    """out[:n] = exp(x[:n]) for x <= 88 (:data:`polynomials.EXP_POLY`); ``bits`` is int32 scratch."""
    for j in range(n):
        v = max(x[j], np.float32(EXP_MIN))
        fx = np.floor(v * _LOG2E + np.float32(0.5))
        r = v - fx * _LN2_HI - fx * _LN2_LO
        z = r * r
        y = ((((E0 * r + E1) * r + E2) * r + E3) * r + E4) * r + E5
        out[j] = y * z + r + np.float32(1.0)
        bits[j] = (np.int32(fx) + np.int32(127)) << np.int32(23)
    scale = bits.view(np.float32)
    for j in range(n):
        out[j] *= scale[j]


@njit(**JIT)
def exp(x):
    """Exponential, elementwise; float32 ``(n,)`` in, float32 ``(n,)`` out (x <= 88)."""
    out = np.empty_like(x)
    bits = np.empty(x.size, np.int32)
    _exp_into(x, x.size, out, bits)
    return out


@njit(**JIT)
def _gather_rows(token_ids, position_ids, type_ids, word_table, position_table, type_table, out, lo, hi):
    width = out.shape[1]
    for t in range(lo, hi):
        w = word_table[token_ids[t]]
        p = position_table[position_ids[t]]
        y = type_table[type_ids[t]]
        for c in range(width):
            out[t, c] = (w[c] + y[c]) + p[c]


@njit(**PJIT)
def _gather_parallel(token_ids, position_ids, type_ids, word_table, position_table, type_table, out, chunk):
    for c in prange(n_chunks(out.shape[0], chunk)):
        _gather_rows(token_ids, position_ids, type_ids, word_table, position_table, type_table, out,
                     *chunk_rows(c, out.shape[0], chunk))


@njit(**JIT)
def _bias_gelu_rows(x, bias, lo, hi):
    width = x.shape[1]
    for t in range(lo, hi):
        for c in range(width):
            v = x[t, c] + bias[c]
            x[t, c] = np.float32(0.5) * v * (np.float32(1.0) + _erf(v * SQRT_HALF))


@njit(**PJIT)
def _bias_gelu_parallel(x, bias, chunk):
    for c in prange(n_chunks(x.shape[0], chunk)):
        _bias_gelu_rows(x, bias, *chunk_rows(c, x.shape[0], chunk))


@njit(**JIT)
def _layer_norm_rows(x, bias, residual, gamma, beta, eps, lo, hi):
    width = x.shape[1]
    for t in range(lo, hi):
        row = x[t]
        if bias is not None:
            for c in range(width):
                row[c] += bias[c]
        if residual is not None:
            for c in range(width):
                row[c] += residual[t, c]
        total = 0.0
        for c in range(width):
            total += np.float64(row[c])
        mean = np.float32(total / width)
        sq = 0.0
        for c in range(width):
            row[c] -= mean
            sq += np.float64(row[c]) * np.float64(row[c])
        inv = np.float32(1.0 / math.sqrt(sq / width + eps))
        for c in range(width):
            row[c] = row[c] * inv * gamma[c] + beta[c]


@njit(**PJIT)
def _layer_norm_parallel(x, bias, residual, gamma, beta, eps, chunk):
    for c in prange(n_chunks(x.shape[0], chunk)):
        _layer_norm_rows(x, bias, residual, gamma, beta, eps, *chunk_rows(c, x.shape[0], chunk))


@njit(**JIT)
def _mean_pool(x, cu_seqlens, out):
    width = x.shape[1]
    for s in range(len(cu_seqlens) - 1):
        start, stop = cu_seqlens[s], cu_seqlens[s + 1]
        acc = np.zeros(width, np.float32)
        for t in range(start, stop):
            for c in range(width):
                acc[c] += x[t, c]
        inv = np.float32(stop - start)
        for c in range(width):
            out[s, c] = acc[c] / inv


@njit(**JIT)
def _max_pool(x, cu_seqlens, out):
    width = x.shape[1]
    for s in range(len(cu_seqlens) - 1):
        start, stop = cu_seqlens[s], cu_seqlens[s + 1]
        for c in range(width):
            out[s, c] = x[start, c]
        for t in range(start + 1, stop):
            for c in range(width):
                out[s, c] = max(out[s, c], x[t, c])


@njit(**ORDERED_JIT)
def _sum_of_squares(row, lanes):
    """``sum(row ** 2)`` of a float32 row in float32, in ``len(lanes)`` (a power of two)
    interleaved partial sums folded pairwise: one order, written out, so the same bits on every
    CPU (under ``reassoc`` LLVM picks the order per target). ``lanes`` is scratch."""
    width = len(lanes)
    lanes[:] = 0.0
    for c in range(row.shape[0]):
        lanes[c % width] += row[c] * row[c]
    half = width // 2
    while half:
        for j in range(half):
            lanes[j] += lanes[j + half]
        half //= 2
    return lanes[0]


@njit(**JIT)
def _l2_normalize(x, out):
    lanes = np.empty(16, np.float32)
    for i in range(x.shape[0]):
        norm = max(np.float32(math.sqrt(_sum_of_squares(x[i], lanes))), np.float32(1e-12))
        for c in range(x.shape[1]):
            out[i, c] = x[i, c] / norm


def gather_embeddings(token_ids, position_ids, type_ids, word_table, position_table, type_table, out):
    chunk = row_chunk(*out.shape)
    if chunk:
        _gather_parallel(token_ids, position_ids, type_ids, word_table, position_table, type_table, out, chunk)
    else:
        _gather_rows(token_ids, position_ids, type_ids, word_table, position_table, type_table, out, 0, out.shape[0])
    return out


def bias_gelu(x, bias):
    # erf costs ~10x a LayerNorm element: worth the pool from a quarter of the usual work
    chunk = row_chunk(*x.shape, min_elements=PARALLEL_MIN_ELEMENTS // 4)
    if chunk:
        _bias_gelu_parallel(x, bias, chunk)
    else:
        _bias_gelu_rows(x, bias, 0, x.shape[0])
    return x


def bias_residual_layer_norm(x, bias, residual, gamma, beta, eps):
    chunk = row_chunk(*x.shape)
    if chunk:
        _layer_norm_parallel(x, bias, residual, gamma, beta, float(eps), chunk)
    else:
        _layer_norm_rows(x, bias, residual, gamma, beta, float(eps), 0, x.shape[0])
    return x


def mean_pool(x, cu_seqlens, out):
    _mean_pool(x, cu_seqlens, out)
    return out


def max_pool(x, cu_seqlens, out):
    _max_pool(x, cu_seqlens, out)
    return out


def first_token_pool(x, cu_seqlens, out):
    out[:] = x[cu_seqlens[:-1]]
    return out


def l2_normalize(x, out):
    _l2_normalize(x, out)
    return out


