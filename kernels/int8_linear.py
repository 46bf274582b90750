"""The fused int8 linear layers the model calls: quantise each row, multiply exactly, dequantise.

``linear_u8s8`` / ``linear_s16s8``
    ``out = x @ W.T (+ bias)``: each row of ``x`` quantised on its own (u8 with a zero point,
    or symmetric int16; :mod:`quant_jit`), the exact integer product (:mod:`int8_gemm`), and the
    dequantising epilogue (:mod:`int8_epilogue`) applied strip by strip while each 16-column
    strip of ``C`` is still in L1 -- one call, bitwise equal to ``quant.quantize_rows_*``, the
    product, ``quant.dequantize_output`` and ``out += bias`` run in turn (their numpy twins
    ``linear_*_reference`` do exactly that).  Per-column constants come in a
    :class:`Dequantization`, padded once.

:func:`linear` is the same without the argument checks, for a layer that checked at load;
:func:`pack` packs a layer's weights the way :func:`linear` will want them.
"""
import numpy as np

from ._numba_env import may_run_parallel  # noqa: F401  (must precede the numba import)
from numba import njit

from . import quant, quant_jit
from .cpu import ISA
from .int8_epilogue import Dequantization, descriptor
from .int8_gemm import AMX, PORTABLE, entry, path_for, portable, threads_for
from .int8_pack import (INT8, INT16, KG_S16S8, KG_U8S8, check, pack_weights_s16s8, pack_weights_u8s8,
                        reference_product, unpack_weights)
from .tasks import keep_alive, row_chunk

__all__ = ["Dequantization", "linear", "linear_u8s8", "linear_s16s8", "linear_u8s8_reference",
           "linear_s16s8_reference", "pack"]

_JIT = dict(cache=True, nogil=True, boundscheck=False)


def pack(w, max_code=None, isa=None):
    """Pack int8 weights ``(N, K)`` for :func:`linear` with codes ``max_code`` (None: u8s8):
    int16 pairs for s16 codes, except where they will run on the AMX tiles (byte fours)."""
    bytes_packed = max_code is None or path_for(isa, True, w.shape[1]) == AMX
    return pack_weights_u8s8(w) if bytes_packed else pack_weights_s16s8(w)


@njit(**_JIT)
def _finish(path, codes, packed, n, out, threads, x, scale, zero, col_scale, col_sum, outlier_index, outlier_weight,
            bias):
    epi = descriptor(x, scale, zero, col_scale, col_sum, outlier_index, outlier_weight, bias)
    entry(path, codes, packed, n, out, threads, epi)
    keep_alive(scale)
    keep_alive(zero)
    keep_alive(bias)


@njit(**_JIT)
def _linear_u8(path, x, mask, packed, n, out, threads, chunk, col_scale, col_sum, outlier_index, outlier_weight,
               bias, codes, scale, zero):
    """``out``: the int32 view of the float32 result (unit column stride); see :func:`linear_u8s8`."""
    quant_jit.quantize_u8_into(x, mask, codes, scale, zero, chunk)
    _finish(path, codes, packed, n, out, threads, x, scale, zero, col_scale, col_sum, outlier_index, outlier_weight,
            bias)


@njit(**_JIT)
def _linear_s16(path, x, mask, max_code, packed, n, out, threads, chunk, col_scale, outlier_index, outlier_weight,
                bias, codes, scale):
    """As :func:`_linear_u8`, symmetric int16 codes up to ``max_code`` (no zero points: the s16s8
    strip reads neither ``zero`` nor ``col_sum``)."""
    quant_jit.quantize_s16_into(x, mask, max_code, codes, scale, chunk)
    _finish(path, codes, packed, n, out, threads, x, scale, scale, col_scale, col_scale, outlier_index,
            outlier_weight, bias)


def linear(x, mask, max_code, packed, n, out, columns, bias=None, isa=None, scratch=None):
    """:func:`linear_u8s8` (``max_code`` None) or :func:`linear_s16s8`, arguments unchecked;
    ``scratch``: see :func:`quant.row_codes`."""
    m, k = x.shape
    if not (m and n):
        return out
    if x.strides[1] != 4:
        x = np.ascontiguousarray(x)
    path = path_for(isa or ISA, packed.dtype == INT8, k)
    if max_code is not None and packed.dtype == INT8 and path != AMX:  # the vector kernels want int16 pairs
        packed = pack_weights_s16s8(unpack_weights(packed, n, k))
    threads = threads_for(m, n, k, path)
    if path == PORTABLE:
        return _linear_portable(x, mask, max_code, packed, n, out, columns, bias, threads, scratch)
    direct = out.strides[1] == 4
    acc = out.view(np.int32) if direct else np.empty((m, n), np.int32)
    chunk = row_chunk(m, k)
    padded = columns.padded_bias(bias)
    codes, scale, zero = quant.row_codes(m, k, max_code, scratch)
    if max_code is None:
        _linear_u8(path, x, mask, packed, n, acc, threads, chunk, columns.padded_col_scale, columns.padded_col_sum,
                   columns.outlier_index, columns.padded_outlier_weight, padded, codes, scale, zero)
    else:
        _linear_s16(path, x, mask, int(max_code), packed, n, acc, threads, chunk, columns.padded_col_scale,
                    columns.outlier_index, columns.padded_outlier_weight, padded, codes, scale)
    if not direct:
        out[...] = acc.view(np.float32)
    return out


def _linear_portable(x, mask, max_code, packed, n, out, columns, bias, threads, scratch):
    """:func:`linear` on the portable GEMM (no fused epilogue): the numba twins of the separate steps."""
    m, k = x.shape
    acc = out.view(np.int32) if out.strides[1] == 4 else np.empty((m, n), np.int32)
    codes, scale, zero = quant.row_codes(m, k, max_code, scratch)
    if max_code is None:
        quant_jit.quantize_rows_u8(x, mask, codes, scale, zero)
    else:
        quant_jit.quantize_rows_s16(x, mask, max_code, codes, scale)
    portable(codes, packed, n, acc, threads)
    quant_jit.dequantize_output(acc, out, x, scale, zero, columns.col_scale, columns.col_sum,
                                columns.outlier_index, columns.outlier_weight)
    if bias is not None:
        out += bias
    return out


def _check_linear(x, mask, packed, n, out, columns, name, bias, s16):
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype != np.float32:
        raise TypeError(f"{name}: x must be a 2-D float32 array, got "
                        f"{getattr(x, 'dtype', type(x).__name__)} with shape {np.shape(x)}")
    m, k = x.shape
    if not isinstance(mask, np.ndarray) or mask.dtype != np.float32 or mask.shape != (k,):
        raise ValueError(f"{name}: mask must be float32 of shape {(k,)}")
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (m, int(n)):
        raise ValueError(f"{name}: out must be a float32 array of shape {(m, int(n))}")
    if np.may_share_memory(out, x):
        raise ValueError(f"{name}: out must not overlap x")
    if not isinstance(columns, Dequantization) or columns.n != int(n):
        raise ValueError(f"{name}: columns must be a Dequantization of {int(n)} columns")
    if not s16 and columns.col_sum is None:
        raise ValueError(f"{name}: columns need col_sum (u8 codes have per-row zero points)")
    if bias is not None and (not isinstance(bias, np.ndarray) or bias.dtype != np.float32
                             or bias.shape != (int(n),)):
        raise ValueError(f"{name}: bias must be float32 of shape {(int(n),)}")
    # s16 codes take int16 pairs, or u8s8's int8 fours (the AMX byte planes)
    int16_pairs = s16 and getattr(packed, "dtype", None) != INT8
    codes = np.empty((0, k), np.int16 if s16 else np.uint8)
    check(codes, packed, n, None, codes.dtype, INT16 if int16_pairs else INT8,
          KG_S16S8 if int16_pairs else KG_U8S8, name)


def linear_u8s8(x, mask, packed, n, out, columns, bias=None, isa=None):
    """``out = x @ W.T`` through the u8s8 GEMM: ``x`` quantised per row, product, dequantised.

    Each row of ``x`` (outlier channels masked out) becomes 7-bit codes with its own step and
    zero point (``quant.quantize_rows_u8``); the exact integer product is dequantised strip
    by strip while it is still in L1 (``quant.dequantize_output``, same operation order), so
    the result is bitwise that of those three steps run one after another.

    Parameters
    ----------
    x : ndarray of float32, (M, K)
    mask : ndarray of float32, (K,)
        0 on the outlier channels (``columns.outlier_index``), 1 elsewhere.
    packed : ndarray of int8, from :func:`int8_pack.pack_weights_u8s8`
    n : int
        Number of output columns ``N``.
    out : ndarray of float32, (M, N), written
        Must not overlap ``x``.
    columns : Dequantization
        The weights' per-column constants, with ``col_sum``.
    bias : ndarray of float32, (N,), optional
        Added last, in the same pass (bitwise the same as ``out += bias`` afterwards).
    isa : cpu.Isa, optional
        The paths allowed (default :data:`cpu.ISA`); every path gives the same ``out``.

    Returns
    -------
    out
    """
    _check_linear(x, mask, packed, n, out, columns, "linear_u8s8", bias, s16=False)
    return linear(x, mask, None, packed, int(n), out, columns, bias, isa)


def linear_s16s8(x, mask, max_code, packed, n, out, columns, bias=None, isa=None):
    """``out = x @ W.T`` through the s16s8 GEMM: ``x`` quantised per row to int16, symmetric.

    As :func:`linear_u8s8`, with codes in ``[-max_code, max_code]``
    (``quant.quantize_rows_s16``; keep ``K * max_code * 128 < 2**31``) and ``packed`` from
    :func:`int8_pack.pack_weights_s16s8`, or from :func:`int8_pack.pack_weights_u8s8` (on the
    AMX tiles when ``isa.amx`` and ``K % 64 == 0``: the codes split into byte planes, else
    repacked at each call; :func:`pack` chooses); ``columns.col_sum`` is not used.
    """
    _check_linear(x, mask, packed, n, out, columns, "linear_s16s8", bias, s16=True)
    return linear(x, mask, int(max_code), packed, int(n), out, columns, bias, isa)


def _linear_reference(x, mask, max_code, packed, n, out, columns, bias):
    m, k = x.shape
    scale = np.empty(m, np.float32)
    if max_code is None:
        codes, zero = np.empty((m, k), np.uint8), np.empty(m, np.int32)
        quant.quantize_rows_u8(x, mask, codes, scale, zero)
    else:
        codes, zero = np.empty((m, k), np.int16), None
        quant.quantize_rows_s16(x, mask, max_code, codes, scale)
    acc = reference_product(codes, packed, n, np.empty((m, n), np.int32))
    quant.dequantize_output(acc, out, x, scale, zero, columns.col_scale, columns.col_sum,
                            columns.outlier_index, columns.outlier_weight)
    if bias is not None:
        out += bias
    return out


def linear_u8s8_reference(x, mask, packed, n, out, columns, bias=None):
    """numpy twin of :func:`linear_u8s8`: ``quant.quantize_rows_u8``, the int64 reference
    product, ``quant.dequantize_output``, then the bias."""
    _check_linear(x, mask, packed, n, out, columns, "linear_u8s8_reference", bias, s16=False)
    return _linear_reference(x, mask, None, packed, int(n), out, columns, bias)


def linear_s16s8_reference(x, mask, max_code, packed, n, out, columns, bias=None):
    """numpy twin of :func:`linear_s16s8`."""
    _check_linear(x, mask, packed, n, out, columns, "linear_s16s8_reference", bias, s16=True)
    return _linear_reference(x, mask, int(max_code), packed, int(n), out, columns, bias)
