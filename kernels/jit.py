"""numba kernels; each public function has a plain-numpy twin of the same signature in :mod:`reference`.

Layout conventions are those of :mod:`reference` (packed sequences, ``cu_seqlens`` offsets).
Every kernel writes in place into an array it is given; none allocates per-batch scratch
(attention allocates its ``(L, L)`` scores per sequence and head).

Each row-wise kernel has a serial core ``_x_rows(..., lo, hi)`` and a parallel driver that
splits rows into chunks with ``prange``; the public function picks the parallel driver only
when the work is large enough to repay waking the thread pool, so one short text never pays
for threads.
"""
import math

import numpy as np

from ._numba_env import may_run_parallel  # (must precede the numba import)
from numba import njit, prange

from ._tiles import address as _addr
from ._tiles import keep_alive
from .sgemm import PANEL
from .sgemm import _block as _gemm_block

# reassoc lets LLVM vectorise the row reductions (sums in LayerNorm, softmax); contract allows FMA.
FASTMATH = {"reassoc", "contract", "nsz"}
JIT = dict(cache=True, fastmath=FASTMATH, nogil=True, boundscheck=False, error_model="numpy")
PJIT = dict(JIT, parallel=True)

# Work (in elements touched) below which a kernel stays on the calling thread.
PARALLEL_MIN_ELEMENTS = 1 << 16

# erf(x) ~= x * P(x^2) / Q(x^2) on [-4, 4], evaluated in float64 (abs error < 1e-7), the
# rational form used by Eigen and XLA; branch-free, so it vectorises unlike libm's erf.
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
          -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
          -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
          -7.37332916720468e-03, -1.42647390514189e-02)
P0, P1, P2, P3, P4, P5, P6 = _ERF_P
Q0, Q1, Q2, Q3, Q4 = _ERF_Q
SQRT_HALF = 1.0 / math.sqrt(2.0)


@njit(inline="always", **JIT)
def _erf(x):
    x = min(max(x, -4.0), 4.0)
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


# Cephes expf: exp(x) = 2^n * exp(r), r = x - n ln2 in two parts, exp(r) a degree-6 polynomial.
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)


@njit(inline="always", **JIT)
def _exp_into(x, n, out, bits):
    """out[:n] = exp(x[:n]) for x <= 88; ``bits`` is int32 scratch aliasing a float32 view."""
    for j in range(n):
        v = max(x[j], np.float32(-87.0))
        fx = np.floor(v * _LOG2E + np.float32(0.5))
        r = v - fx * _LN2_HI - fx * _LN2_LO
        z = r * r
        y = ((((np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)) * r
               + np.float32(8.3334519073e-3)) * r + np.float32(4.1665795894e-2)) * r
             + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1)
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
    n = out.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        _gather_rows(token_ids, position_ids, type_ids, word_table, position_table, type_table,
                     out, c * chunk, min(n, (c + 1) * chunk))


@njit(**JIT)
def _attention_head(qkv, start, length, head, n_heads, head_dim, out):
    """softmax(Q K^T / sqrt(d)) V for one head of one sequence, as two packed GEMMs (kernels.sgemm)."""
    width = n_heads * head_dim
    q0 = head * head_dim
    k0 = width + q0
    v0 = 2 * width + q0
    scale = np.float32(1.0 / math.sqrt(head_dim))
    # K^T and V in the GEMM's packed-weight layout: panels of PANEL columns, K-major
    keys = np.zeros(((length + PANEL - 1) // PANEL, head_dim, PANEL), np.float32)
    values = np.zeros(((head_dim + PANEL - 1) // PANEL, length, PANEL), np.float32)
    for j in range(length):
        p = j // PANEL
        c = j - p * PANEL
        for d in range(head_dim):
            keys[p, d, c] = qkv[start + j, k0 + d]
            values[d // PANEL, j, d % PANEL] = qkv[start + j, v0 + d]
    scores = np.empty((length, length), np.float32)
    row = qkv.strides[0]
    _gemm_block(_addr(qkv) + start * row + q0 * 4, row, _addr(keys), head_dim, _addr(scores), length * 4,
                length, 0, 0, length, 0, keys.shape[0], length)
    bits = np.empty(length, np.int32)
    probs = np.empty(length, np.float32)
    for i in range(length):
        top = scores[i, 0]
        for j in range(1, length):
            top = max(top, scores[i, j])
        for j in range(length):
            scores[i, j] = (scores[i, j] - top) * scale
        _exp_into(scores[i], length, probs, bits)
        total = np.float32(0.0)
        for j in range(length):
            total += probs[j]
        inv = np.float32(1.0) / total
        for j in range(length):
            scores[i, j] = probs[j] * inv
    orow = out.strides[0]
    _gemm_block(_addr(scores), length * 4, _addr(values), length, _addr(out) + start * orow + q0 * 4, orow,
                head_dim, 0, 0, length, 0, values.shape[0], length)
    keep_alive(keys)  # the GEMMs read these scratch arrays by address (see keep_alive)
    keep_alive(values)
    keep_alive(scores)


@njit(**JIT)
def _attention_serial(qkv, cu_seqlens, n_heads, head_dim, out):
    for s in range(len(cu_seqlens) - 1):
        for h in range(n_heads):
            _attention_head(qkv, cu_seqlens[s], cu_seqlens[s + 1] - cu_seqlens[s], h, n_heads, head_dim, out)


@njit(**PJIT)
def _attention_parallel(qkv, cu_seqlens, n_heads, head_dim, out):
    # Head-major task order: prange hands each thread one contiguous block of tasks, and a block
    # of heads over every sequence costs the same whatever the (sorted) sequence lengths are.
    n_seqs = len(cu_seqlens) - 1
    for task in prange(n_seqs * n_heads):
        h = task // n_seqs
        s = task - h * n_seqs
        _attention_head(qkv, cu_seqlens[s], cu_seqlens[s + 1] - cu_seqlens[s], h, n_heads, head_dim, out)


@njit(**JIT)
def _bias_gelu_rows(x, bias, lo, hi):
    width = x.shape[1]
    for t in range(lo, hi):
        for c in range(width):
            v = np.float64(x[t, c] + bias[c])
            x[t, c] = np.float32(0.5 * v * (1.0 + _erf(v * SQRT_HALF)))


@njit(**PJIT)
def _bias_gelu_parallel(x, bias, chunk):
    n = x.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        _bias_gelu_rows(x, bias, c * chunk, min(n, (c + 1) * chunk))


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
    n = x.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        _layer_norm_rows(x, bias, residual, gamma, beta, eps, c * chunk, min(n, (c + 1) * chunk))


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


@njit(**JIT)
def _l2_normalize(x, out):
    for i in range(x.shape[0]):
        sq = np.float32(0.0)
        for c in range(x.shape[1]):
            sq += x[i, c] * x[i, c]
        norm = max(np.float32(math.sqrt(sq)), np.float32(1e-12))
        for c in range(x.shape[1]):
            out[i, c] = x[i, c] / norm


def _chunk(n_rows, width):
    """Rows per parallel task, or 0 when the work is too small to share out."""
    if n_rows * width < PARALLEL_MIN_ELEMENTS or not may_run_parallel():
        return 0
    return max(1, min(64, n_rows // 16))


def gather_embeddings(token_ids, position_ids, type_ids, word_table, position_table, type_table, out):
    chunk = _chunk(*out.shape)
    if chunk:
        _gather_parallel(token_ids, position_ids, type_ids, word_table, position_table, type_table, out, chunk)
    else:
        _gather_rows(token_ids, position_ids, type_ids, word_table, position_table, type_table, out, 0, out.shape[0])
    return out


def attention(qkv, cu_seqlens, n_heads, head_dim, out):
    # Attention work grows with L^2: go parallel once there is more than one sequence's worth.
    if (len(cu_seqlens) - 1) * n_heads > 1 and out.shape[0] * out.shape[1] >= PARALLEL_MIN_ELEMENTS // 4 \
            and may_run_parallel():
        _attention_parallel(qkv, cu_seqlens, n_heads, head_dim, out)
    else:
        _attention_serial(qkv, cu_seqlens, n_heads, head_dim, out)
    return out


def bias_gelu(x, bias):
    chunk = _chunk(*x.shape)
    if chunk:
        _bias_gelu_parallel(x, bias, chunk)
    else:
        _bias_gelu_rows(x, bias, 0, x.shape[0])
    return x


def bias_residual_layer_norm(x, bias, residual, gamma, beta, eps):
    chunk = _chunk(*x.shape)
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


for _twin in (gather_embeddings, attention, bias_gelu, bias_residual_layer_norm, mean_pool,
              max_pool, first_token_pool, l2_normalize):
    from . import reference as _reference
    _twin.__doc__ = getattr(_reference, _twin.__name__).__doc__
