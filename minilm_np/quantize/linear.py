"""A linear layer with int8 weights (every int8 mode): :class:`QuantizedLinear`, and the weight quantiser."""
import threading

import numpy as np

from ..kernels.quant import row_codes
from ..mapped import release_pages
from .modes import WEIGHT_LEVELS, check_mode, resolve_backend, row_kernels, s16_max_code


class _Scratch(threading.local):
    """Grow-only per-thread buffers (activation codes, row scales), reused between calls."""

    def __init__(self):
        self.buffers = {}

    def get(self, name, shape, dtype):
        size = shape[0] * shape[1] if len(shape) == 2 else int(np.prod(shape))
        buf = self.buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = np.empty(max(size, 1), dtype)
            self.buffers[name] = buf
        return buf[:size].reshape(shape)


_scratch = _Scratch()


def quantize_matrix(w, outliers=()):
    """Symmetric int8 weights, one step per output channel, ``outliers`` columns kept in float32.

    Parameters
    ----------
    w : ndarray of float32, (N, K)
        ``(out_features, in_features)``.
    outliers : sequence of int
        Input channels to keep exactly.

    Returns
    -------
    qweight : ndarray of int8, (N, K)
        Codes in [-127, 127]; zero in the outlier columns.
    scale : ndarray of float32, (N,)
        ``W ~= qweight * scale[:, None]`` outside the outlier columns.
    outlier_index : ndarray of int64, (P,), sorted
    outlier_weight : ndarray of float32, (P, N)
        ``W[:, outlier_index].T``.
    """
    w = np.asarray(w, np.float32)
    index = np.array(sorted(int(c) for c in outliers), dtype=np.int64)
    rest = w.copy()
    rest[:, index] = 0
    amax = np.abs(rest).max(axis=1)
    scale = (amax / np.float32(WEIGHT_LEVELS)).astype(np.float32)
    inv = np.divide(np.float32(WEIGHT_LEVELS), amax, out=np.zeros_like(amax), where=amax > 0)
    qweight = np.clip(np.rint(rest * inv[:, None]), -WEIGHT_LEVELS, WEIGHT_LEVELS).astype(np.int8)
    return qweight, scale, index, np.ascontiguousarray(w[:, index].T)


class QuantizedLinear:
    """A linear layer's int8 weights: a :class:`minilm_np.linear.Linear`.

    Parameters
    ----------
    mode : {"w8", "w8a16", "w8a8"}
    qweight : ndarray of int8, (N, K)
    scale : ndarray of float32, (N,)
    outlier_index : ndarray of int64, (P,)
    outlier_weight : ndarray of float32, (P, N)
    backend : {"numba", "numpy"} or None
        numba: the AVX2 (or portable) integer kernels; numpy: the twins (float64 BLAS,
        exact on integers).  None: numba when it can be imported.
    """

    def __init__(self, mode, qweight, scale, outlier_index, outlier_weight, backend=None):
        self.mode = check_mode(mode)
        self.backend = resolve_backend(backend)
        self.shape = tuple(qweight.shape)
        n, k = self.shape
        self.scale = np.ascontiguousarray(scale, np.float32)
        self.outlier_index = np.ascontiguousarray(outlier_index, np.int64)
        self.outlier_weight = np.ascontiguousarray(outlier_weight, np.float32).reshape(len(self.outlier_index), n)
        self.mask = np.ones(k, np.float32)
        self.mask[self.outlier_index] = 0
        self.col_sum = qweight.sum(axis=1, dtype=np.int64).astype(np.int32)
        self.s16_max = s16_max_code(k)
        self._k = row_kernels(self.backend)
        from ..kernels.backend import load_backend

        self._bias_gelu = load_backend(self.backend).bias_gelu
        self._packed = None
        self._qweight = np.ascontiguousarray(qweight, np.int8)
        if self.backend == "numba" and mode != "w8":
            from ..kernels import int8_linear

            self._max_code = None if mode == "w8a8" else self.s16_max
            self._packed = int8_linear.pack(self._qweight, self._max_code)
            release_pages(qweight)  # a mapped file's pages: the packed copy replaces them
            self._linear = int8_linear.linear
            self._columns = int8_linear.Dequantization(self.scale, self.col_sum, self.outlier_index,
                                                       self.outlier_weight)
            self._qweight = None  # the packed copy is all the kernel needs

    @property
    def qweight(self):
        """The int8 codes, ``(N, K)`` (unpacked on demand)."""
        if self._qweight is not None:
            return self._qweight
        from ..kernels.int8_pack import unpack_weights

        return unpack_weights(self._packed, *self.shape)

    @property
    def size(self):
        """Number of weights, ``N * K``."""
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self):
        """Bytes held by the layer's arrays."""
        held = self._packed if self._packed is not None else self._qweight
        return int(held.nbytes + self.scale.nbytes + self.outlier_index.nbytes + self.outlier_weight.nbytes
                   + self.mask.nbytes + self.col_sum.nbytes)

    def __repr__(self):
        return (f"QuantizedLinear({self.mode}, shape={self.shape}, outliers={len(self.outlier_index)}, "
                f"backend={self.backend})")

    def matmul(self, x, out, bias=None, gelu=False):
        """``out = x @ W.T (+ bias)``, then GELU if ``gelu`` (the backend's ``bias_gelu`` kernel).

        Parameters
        ----------
        x : ndarray of float32, (M, K)
            One token per row; each row is quantised on its own.
        out : ndarray of float32, (M, N), written
        bias : ndarray of float32, (N,), optional
            Added last (bitwise the same as a separate ``out += bias``).
        gelu : bool

        Returns
        -------
        out
        """
        if gelu:
            return self._bias_gelu(self.matmul(x, out), bias)
        if not out.flags.c_contiguous:
            tmp = np.empty(out.shape, np.float32)
            out[...] = self.matmul(x, tmp, bias)
            return out
        m, k = x.shape
        if m == 0:
            return out
        if self._packed is not None:  # quantise, multiply, dequantise and add the bias in one kernel call
            return self._linear(x, self.mask, self._max_code, self._packed, self.shape[0], out, self._columns,
                                bias, scratch=_scratch.get)
        self._matmul(x, out)
        if bias is not None:
            out += bias
        return out

    def _matmul(self, x, out):
        m, k = x.shape
        if self.mode == "w8" and self.backend == "numba":  # the packed float32 GEMM, no BLAS
            from ..kernels import sgemm

            n_panels = -(-self.shape[0] // sgemm.PANEL)
            w = self._k.dequantize_weights_packed(self._qweight, self.scale, self.outlier_index, self.outlier_weight,
                                                  _scratch.get("w8", (n_panels, k, sgemm.PANEL), np.float32))
            return sgemm.gemm(x, w, self.shape[0], out=out)
        if self.mode == "w8":
            w = self._k.dequantize_weights(self._qweight, self.scale, self.outlier_index, self.outlier_weight,
                                           _scratch.get("w8", self.shape, np.float32))
            return np.matmul(x, w.T, out=out)
        codes, scale, zero = row_codes(m, k, None if self.mode == "w8a8" else self.s16_max, _scratch.get)
        if zero is not None:
            self._k.quantize_rows_u8(x, self.mask, codes, scale, zero)
            col_sum = self.col_sum
        else:
            col_sum = None
            self._k.quantize_rows_s16(x, self.mask, self.s16_max, codes, scale)
        acc = self._k.gemm_int(codes, self._qweight, out.view(np.int32))
        return self._k.dequantize_output(acc, out, x, scale, zero, self.scale, col_sum, self.outlier_index,
                                         self.outlier_weight)
