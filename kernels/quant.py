"""Quantisation kernels of the int8 linear layers, plain numpy: the spec, test oracle and fallback.

Each function has a numba twin of the same name and signature in :mod:`quant_jit`; both
write in place and give bitwise the same results (no fused multiply-adds, the same order of
float32 operations, round-half-to-even).  This module does not import numba.

Activations are quantised *per row* (one token), never per tensor, so that a token's
integer codes -- and therefore its output -- do not depend on the other rows of the batch.
A float32 ``mask`` (one entry per input channel, 0 or 1) removes the few *outlier channels*
that the caller handles in float32: they are left out of the row's range and quantise to
zero contribution (their weights are zero in the integer GEMM).

Layouts
-------
``x``         float32 (M, K) activations, one token per row.
``q``         uint8 (M, K) in [0, 127] (mode w8a8) or int16 (M, K) (mode w8a16).
``scale``     float32 (M,) per-row step: ``x ~= (q - zero) * scale``.
``zero``      int32 (M,) per-row zero point in [0, 127] (w8a8 only).
``acc``       int32 (M, N) integer product ``q @ Wq.T`` (may share memory with ``out``).
``col_scale`` float32 (N,) per-output-channel weight step: ``W ~= Wq * col_scale[:, None]``.
``col_sum``   int32 (N,) ``Wq.sum(axis=1)`` (w8a8's zero-point correction).
``outlier_index`` int64 (P,) and ``outlier_weight`` float32 (P, N): ``W[:, outlier_index].T``.
"""
import numpy as np

U8_LEVELS = 127
"""Largest u8 code: ``vpmaddubsw`` sums pairs of u8 x s8 products in int16, exact only for
codes <= 127 (2 * 127 * 128 <= 32767)."""


def row_ranges(x, mask):
    """Per-row minimum and maximum of ``x * mask``, both widened to include 0.

    Returns
    -------
    lo, hi : ndarray of float32, (M,)
    """
    xm = x * mask
    lo = np.minimum(xm.min(axis=1, initial=0.0), np.float32(0)).astype(np.float32)
    hi = np.maximum(xm.max(axis=1, initial=0.0), np.float32(0)).astype(np.float32)
    return lo, hi


def quantize_rows_u8(x, mask, q, scale, zero):
    """Asymmetric 7-bit per-row quantisation: ``q = clip(rint(x * mask / scale) + zero, 0, 127)``.

    The row's range ``[min(x, 0), max(x, 0)]`` is mapped onto the codes 0..127, so ``zero``
    (the code of 0.0) sits wherever the row's sign balance puts it: GELU outputs, nearly all
    positive, get almost all 128 levels.  An all-zero row gets ``scale = 0``, ``zero = 0``.

    Parameters
    ----------
    x : ndarray of float32, (M, K)
    mask : ndarray of float32, (K,)
        1 for channels quantised here, 0 for outlier channels handled in float32.
    q : ndarray of uint8, (M, K), written
    scale : ndarray of float32, (M,), written
    zero : ndarray of int32, (M,), written
    """
    lo, hi = row_ranges(x, mask)
    rng = hi - lo
    nonzero = rng > 0
    inv = np.where(nonzero, np.float32(U8_LEVELS) / np.where(nonzero, rng, 1), 0).astype(np.float32)
    scale[...] = np.where(nonzero, rng / np.float32(U8_LEVELS), 0)
    zp = np.rint(-lo * inv)
    zero[...] = zp
    codes = np.rint((x * mask) * inv[:, None]) + zp[:, None]
    q[...] = np.clip(codes, 0, U8_LEVELS)


def quantize_rows_s16(x, mask, qmax, q, scale):
    """Symmetric per-row quantisation to int16: ``q = rint(x * mask * qmax / max|x * mask|)``.

    Parameters
    ----------
    x : ndarray of float32, (M, K)
    mask : ndarray of float32, (K,)
    qmax : int
        Largest code (e.g. 8191 for 14 bits); the caller keeps ``K * qmax * 127 < 2**31``.
    q : ndarray of int16, (M, K), written
    scale : ndarray of float32, (M,), written: ``x ~= q * scale``.
    """
    lo, hi = row_ranges(x, mask)
    amax = np.maximum(hi, -lo)
    nonzero = amax > 0
    inv = np.where(nonzero, np.float32(qmax) / np.where(nonzero, amax, 1), 0).astype(np.float32)
    scale[...] = np.where(nonzero, amax / np.float32(qmax), 0)
    q[...] = np.clip(np.rint((x * mask) * inv[:, None]), -qmax, qmax)


def dequantize_output(acc, out, x, scale, zero, col_scale, col_sum, outlier_index, outlier_weight):
    """The epilogue: ``out = (acc - zero * col_sum) * scale * col_scale + x[:, P] @ W[:, P].T``.

    Parameters
    ----------
    acc : ndarray of int32, (M, N)
        Integer GEMM result; may be ``out.view(np.int32)`` (each element is read before it
        is overwritten).
    out : ndarray of float32, (M, N), written
    x : ndarray of float32, (M, K)
        The float activations (for the outlier channels).
    scale : ndarray of float32, (M,)
    zero : ndarray of int32, (M,), or None (symmetric activations)
    col_scale : ndarray of float32, (N,)
    col_sum : ndarray of int32, (N,), or None with ``zero``
    outlier_index : ndarray of int64, (P,)
    outlier_weight : ndarray of float32, (P, N)
    """
    if zero is not None:
        ints = acc - zero[:, None] * col_sum[None, :]
    else:
        ints = acc
    steps = scale[:, None] * col_scale[None, :]
    out[...] = ints.astype(np.float32) * steps
    for p in range(len(outlier_index)):
        out += x[:, outlier_index[p]][:, None] * outlier_weight[p][None, :]
    return out


def dequantize_weights(q, col_scale, outlier_index, outlier_weight, out):
    """Float32 weights ``(N, K)``: ``q * col_scale[:, None]``, outlier columns exact.

    Parameters
    ----------
    q : ndarray of int8, (N, K)
    col_scale : ndarray of float32, (N,)
    outlier_index : ndarray of int64, (P,)
    outlier_weight : ndarray of float32, (P, N)
    out : ndarray of float32, (N, K), written
    """
    np.multiply(q, col_scale[:, None], out=out, dtype=np.float32)
    out[:, outlier_index] = outlier_weight.T
    return out


def dequantize_weights_packed(q, col_scale, outlier_index, outlier_weight, out):
    """:func:`dequantize_weights` written in the packed layout of :mod:`sgemm` (panels of 16 rows).

    Parameters
    ----------
    q, col_scale, outlier_index, outlier_weight : as :func:`dequantize_weights`
    out : ndarray of float32, (ceil(N / 16), K, 16), written
        ``out[p, k, j] = W[16 p + j, k]``; rows past ``N`` are zero.
    """
    n, k = q.shape
    dense = np.zeros((out.shape[0] * out.shape[2], k), np.float32)
    dequantize_weights(q, col_scale, outlier_index, outlier_weight, dense[:n])
    out[...] = dense.reshape(out.shape[0], out.shape[2], k).transpose(0, 2, 1)
    return out


def gather_rows(q_table, row_scale, ids, out):
    """Dequantised rows of an int8 table: ``out[t] = q_table[ids[t]] * row_scale[ids[t]]``.

    Parameters
    ----------
    q_table : ndarray of int8, (V, H)
    row_scale : ndarray of float32, (V,)
    ids : ndarray of int64, (T,)
    out : ndarray of float32, (T, H), written
    """
    np.multiply(q_table[ids], row_scale[ids][:, None], out=out, dtype=np.float32)
    return out


def gemm_int(a, w, out):
    """``out = a @ w.T`` exactly, in int32, for integer ``a`` (M, K) and int8 ``w`` (N, K).

    Through float64 BLAS: every product and partial sum is an integer below 2**53, so the
    result is exact whatever order the BLAS sums in (hence row-independent, like the
    integer kernels), and far faster than numpy's integer matmul.
    """
    out[...] = np.matmul(a.astype(np.float64), w.T.astype(np.float64))
    return out


def row_codes(m, k, max_code, scratch=None):
    """``(codes, scale, zero)``: where a quantised linear layer puts its activations' codes
    ``(m, k)`` (uint8 with zero points, or int16 when ``max_code`` is given: ``zero`` None) and
    row scales (:func:`quantize_rows_u8` / :func:`quantize_rows_s16` fill them).

    ``scratch(name, shape, dtype)`` lends arrays that outlive the call (None: new ones). A
    caller that keeps them saves the page faults of fresh megabytes each call where malloc
    returns large blocks to the system at once (``MALLOC_TRIM_THRESHOLD_`` set, as in a Dask
    worker; commit 9caf950).
    """
    get = scratch or (lambda name, shape, dtype: np.empty(shape, dtype))
    if max_code is None:
        return get("u8", (m, k), np.uint8), get("scale", (m,), np.float32), get("zero", (m,), np.int32)
    return get("s16", (m, k), np.int16), get("scale", (m,), np.float32), None
