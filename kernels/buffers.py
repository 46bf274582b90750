"""Arrays whose data start on a 64-byte cache line, for the kernels' vector loads and stores.

numpy aligns its allocations to 16 bytes (numba's to 32), so a 64-byte AVX-512 vector of such
an array, and every row of it whose length is a multiple of 64 bytes, straddles two cache
lines: each load or store of it touches both.  Measured on a Xeon (AVX-512, 1 thread,
M = 4096), the packed float32 GEMM with its weights, A and C 16 bytes past a line against on
one: K = 384 -> N = 1152 150-161 -> 171-175 GFLOP/s, 384 -> 1536 158 -> 170-173,
1536 -> 384 185-186 -> 196-197.
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
