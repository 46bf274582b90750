"""The linear layers of the forward pass: one protocol, one class per kind of weight.

Every linear the forward pass calls is a :class:`Linear`:

- :class:`DenseLinear`: float32 weights multiplied by numpy's BLAS (the numpy backend);
- :class:`PackedLinear`: float32 weights packed once for minilm-np's own GEMM (the numba backend);
- :class:`minilm_np.quantize.linear.QuantizedLinear`: int8 weights (every int8 mode).

The kind is chosen once, when the weights are loaded (:func:`minilm_np.weights.load_weights`,
:mod:`minilm_np.quantize`); :mod:`minilm_np.model` calls :meth:`Linear.matmul` and never asks which.
"""
from typing import Protocol

import numpy as np

from .mapped import release_pages


class Linear(Protocol):
    """``out = x @ W.T + bias``, then GELU when asked, for a weight ``W`` of ``shape`` ``(out, in)``."""

    shape: tuple
    """``(out_features, in_features)``."""

    def matmul(self, x, out, bias=None, gelu=False):
        """``out = x @ W.T (+ bias)``, then ``GELU(out)`` if ``gelu``.

        Parameters
        ----------
        x : ndarray of float32, (M, in_features)
        out : ndarray of float32, (M, out_features), written
        bias : ndarray of float32, (out_features,), optional
            Added after the product: the same bits whether the GEMM adds it in its pass or not.
        gelu : bool

        Returns
        -------
        out
        """


class DenseLinear:
    """A float32 weight multiplied by BLAS (``numpy.matmul``); GELU by the numpy kernel.

    The ``(out, in)`` matrix is kept in Fortran order: ``weight.T`` is then C-contiguous
    ``(in, out)`` and ``x @ weight.T`` a plain NN GEMM, which OpenBLAS runs up to 2.8x faster
    than the NT form for a few rows (it repacks a transposed B on every call).
    """

    def __init__(self, weight):
        self.weight = np.asfortranarray(weight)
        self.shape = tuple(weight.shape)

    def matmul(self, x, out, bias=None, gelu=False):
        np.matmul(x, self.weight.T, out=out)
        if gelu:
            from .kernels import reference

            return reference.bias_gelu(out, bias)
        if bias is not None:
            out += bias
        return out

    @property
    def size(self):
        """Number of weights, ``out * in``."""
        return self.shape[0] * self.shape[1]

    def __repr__(self):
        return f"DenseLinear(shape={self.shape})"


class PackedLinear:
    """A float32 weight packed once for :func:`minilm_np.kernels.sgemm.gemm`.

    BLAS repacks constant weights on every call, which for one sentence's few rows costs more
    than the arithmetic; packed once, the GEMM also gives every row the same bits alone or in
    any batch, and applies GELU to each tile in its epilogue.
    """

    def __init__(self, weight):
        from .kernels import sgemm

        self._gemm = sgemm.gemm
        self.shape = tuple(weight.shape)
        self.packed = sgemm.pack_weights(weight)
        release_pages(weight)  # the packed copy is all the GEMM reads

    def matmul(self, x, out, bias=None, gelu=False):
        return self._gemm(x, self.packed, self.shape[0], bias=bias, out=out, gelu=gelu)

    @property
    def size(self):
        """Number of weights, ``out * in``."""
        return self.shape[0] * self.shape[1]

    def __repr__(self):
        return f"PackedLinear(shape={self.shape})"
