"""Arrays whose data start on a 64-byte cache line, for the kernels' vector loads and stores.

numpy aligns its allocations to 16 bytes (numba's to 32), so a 64-byte AVX-512 vector of such
an array, and every row of it whose length is a multiple of 64 bytes, straddles two cache
lines: each load or store of it touches both (the packed float32 GEMM ran 6-14% slower so;
figures in docs/ARCHITECTURE.md).
"""
import numpy as np

CACHE_LINE = 64


def _aligned(allocate, shape, dtype):
    dtype = np.dtype(dtype)
    shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = allocate(size + CACHE_LINE, np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start:start + size].view(dtype).reshape(shape)


def empty_aligned(shape, dtype=np.float32):
    """:func:`numpy.empty` with the first element at a multiple of 64 bytes."""
    return _aligned(np.empty, shape, dtype)


def zeros_aligned(shape, dtype=np.float32):
    """:func:`numpy.zeros` with the first element at a multiple of 64 bytes (pages still
    mapped lazily, as numpy's calloc does)."""
    return _aligned(np.zeros, shape, dtype)
