"""Exact integer GEMMs for quantised linear layers: ``C[m, n] = sum_k A[m, k] * W[n, k]`` in int32.

``gemm_u8s8``  (mode "w8a8")
    ``A`` uint8 with every value in ``[0, 127]`` (the AVX2 step saturates above; not checked:
    checking would cost a pass over ``A``), ``W`` int8, packed by :func:`int8_pack.pack_weights_u8s8`.
``gemm_s16s8`` (mode "w8a16")
    ``A`` int16, ``W`` int8 packed (sign-extended) by :func:`int8_pack.pack_weights_s16s8`.

Both accumulate in int32 and wrap on overflow (as any int32 GEMM does): results are exact when
``K * max|A| * max|W| < 2**31`` -- e.g. ``|A| <= 2047``, ``|W| <= 127`` allows ``K <= 8259``;
for u8s8 (``A <= 127``) ``K <= 132104``.

One driver, three paths (``path``, from the call's :class:`cpu.Isa` by :func:`path_for`), all
giving the same exact int32 ``C``:

- :data:`VECTOR`: the AVX2/VNNI micro-kernels (:mod:`int8_vector`);
- :data:`AMX`: the tile unit (:mod:`int8_amx`), for products on u8s8-packed weights with
  ``K % 64 == 0`` (int16 ``A`` split into byte planes);
- :data:`PORTABLE`: plain numba loops (:mod:`int8_portable`).

``A``'s ``K`` need not be a multiple of the packing's group: a row tail is handled by a
zero-padded copy of ``A`` (:func:`pad_k`; no out-of-bounds reads).  Large products run on
numba's thread pool (``prange`` over the tasks of :func:`tasks.plan_tasks`); products under
:data:`PARALLEL_MIN_OPS` multiply-adds (one sentence) stay on the calling thread.  The numpy
twins ``gemm_*_reference`` (int64 matmul of the unpacked weights) are the readable spec.  The
fused quantise-multiply-dequantise layers over this driver are in :mod:`int8_linear`.
"""
import numpy as np

from ._numba_env import pool_threads  # (must precede the numba import)
from numba import njit, prange

from . import int8_amx, int8_portable, int8_vector
from .cpu import AMX_CAPABLE, ISA
from .int8_epilogue import NO_EPILOGUE
from .int8_pack import (INT8, INT16, KG_S16S8, KG_U8S8, UINT8, PANEL, check, pack_weights_s16s8,  # noqa: F401
                        pack_weights_u8s8, reference_product, unpack_weights)
from .tasks import address, keep_alive, n_tasks, plan_tasks, task_bounds

__all__ = ["PANEL", "pack_weights_u8s8", "pack_weights_s16s8", "unpack_weights", "gemm_u8s8", "gemm_s16s8",
           "gemm_u8s8_reference", "gemm_s16s8_reference", "path_for", "PORTABLE", "VECTOR", "AMX"]

PORTABLE, VECTOR, AMX = 0, 1, 2
"""The three paths of :func:`entry`."""
PARALLEL_MIN_OPS = 1 << 21
"""Multiply-adds (``M * N * K``) below which a product stays on the calling thread (~20 us of
single-thread work; with a warm pool two threads already win at ~1M)."""
PARALLEL_MIN_OPS_AMX = 1 << 24
"""The same on the AMX tiles, which finish one sentence's largest GEMM in ~10 us on one core
(split over two threads it was slower)."""

_JIT = dict(cache=True, nogil=True, boundscheck=False)


def path_for(isa, bytes_packed, k):
    """The path a product of ``K = k`` on weights packed for u8s8 (``bytes_packed``) or s16s8 takes."""
    isa = isa or ISA
    if not isa.int8_vector:
        return PORTABLE
    return AMX if isa.amx and bytes_packed and k % 64 == 0 else VECTOR


def threads_for(m, n, k, path):
    """Threads for an ``M x N x K`` product on ``path`` (1: the calling thread only)."""
    least = PARALLEL_MIN_OPS_AMX if path == AMX else PARALLEL_MIN_OPS
    return pool_threads() if m * n * k >= least else 1


@njit(**_JIT)
def pad_k(a, kp):
    """``a`` (M, K) with its columns zero-padded to ``kp`` (``a`` itself when ``K == kp``), so
    that whole-group loads stay inside it."""
    m, k = a.shape
    if kp == k:
        return a
    padded = np.zeros((m, kp), dtype=a.dtype)
    padded[:, :k] = a
    return padded


@njit(**_JIT)
def _block(a, path, a_addr, a2_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, i0, i1, p0, p1, mb):
    """Rows [i0, i1) x panels [p0, p1) on ``path`` (VECTOR or AMX); ``a``: the activations, whose
    dtype picks the kernels; ``a2_addr``: the high byte plane of an int16 ``A`` on AMX."""
    if AMX_CAPABLE and path == AMX:  # (a constant: where the CPU lacks AMX, its path is never built)
        int8_amx.block(a, a_addr, a2_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, i0, i1, p0, p1)
    else:
        int8_vector.block(a, a_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, i0, i1, p0, p1, mb)


@njit(parallel=True, **_JIT)
def _parallel(a, path, a_addr, a2_addr, lda, w_addr, n_groups, c_addr, ldc, m, n, epi_addr, rb, n_panels, pb, mb):
    for t in prange(n_tasks(m, rb, n_panels, pb)):
        i0, i1, p0, p1 = task_bounds(t, m, rb, n_panels, pb)
        _block(a, path, a_addr, a2_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, i0, i1, p0, p1, mb)


@njit(**_JIT)
def _run(a, path, a_addr, a2_addr, lda, packed, n, c_addr, ldc, threads, epi):
    m = a.shape[0]
    n_panels, n_groups = packed.shape[0], packed.shape[1]
    u8 = a.itemsize == 1
    tile = int8_vector.MR_TOP if path == VECTOR else int8_amx.MR_AMX if u8 else int8_amx.MR_AMX_S16
    rb, pb, mb, par = plan_tasks(m, n_panels, lda, threads, tile)
    if path == AMX:
        pb += pb & 1  # whole panel pairs per task
    epi_addr = address(epi) if epi.shape[0] else 0  # (epi is the caller's: alive until we return)
    if par:
        _parallel(a, path, a_addr, a2_addr, lda, address(packed), n_groups, c_addr, ldc, m, n, epi_addr, rb,
                  n_panels, pb, mb)
    else:  # the one task (its bounds as values: literal zeros would make numba build _block twice)
        i0, i1, p0, p1 = task_bounds(0, m, rb, n_panels, pb)
        _block(a, path, a_addr, a2_addr, lda, address(packed), n_groups, c_addr, ldc, n, epi_addr, i0, i1, p0, p1,
               mb)


@njit(**_JIT)
def entry(path, a, packed, n, out, threads, epi):
    """``out = a @ W.T`` (int32) on ``path`` (VECTOR or AMX), or with the epilogue descriptor
    ``epi`` (non-empty) the dequantised float32 result in ``out``'s memory.

    ``a``: C-contiguous uint8 (u8s8) or int16 (s16s8: weights packed as int16, or on AMX as
    u8s8); ``out``: int32 (M, n), any strides.  numba compiles one driver per type of ``a``,
    each holding only its kernels (:mod:`specialize`).
    """
    m = a.shape[0]
    ap = pad_k(a, packed.shape[1] * packed.shape[3])
    target = out if out.strides[1] == 4 else np.empty((m, n), dtype=np.int32)
    if AMX_CAPABLE and path == AMX and ap.itemsize == 2:
        lo, hi = int8_amx.byte_planes(ap)
        _run(ap, path, address(lo), address(hi), ap.shape[1], packed, n, address(target), target.strides[0],
             threads, epi)
        keep_alive(lo)
        keep_alive(hi)
    else:
        _run(ap, path, address(ap), 0, ap.strides[0], packed, n, address(target), target.strides[0], threads, epi)
    keep_alive(ap)
    if out.strides[1] != 4:
        out[:, :] = target


def portable(a, packed, n, out, threads):
    """``out = a @ W.T`` (int32, any strides) on the :data:`PORTABLE` loops (:mod:`int8_portable`)."""
    int8_portable.run(pad_k(a, packed.shape[1] * packed.shape[3]), packed, n, out, threads)


def _gemm(a, packed, n, out, isa, bytes_packed):
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    m, k = a.shape
    if m and n:
        path = path_for(isa, bytes_packed, k)
        threads = threads_for(m, n, k, path)
        if path == PORTABLE:
            portable(a, packed, n, out, threads)
        else:
            entry(path, a, packed, n, out, threads, NO_EPILOGUE)
    return out


def gemm_u8s8(a, packed, n, out=None, isa=None):
    """``C = A @ W.T`` for uint8 ``A`` (values 0..127) and packed int8 ``W``, exact in int32.

    Parameters
    ----------
    a : ndarray of uint8, shape (M, K)
        Activations, one token per row; **every value must be in [0, 127]** (``vpmaddubsw``
        saturates larger pair sums; not checked).  Any ``M >= 0`` and ``K``; best
        C-contiguous (otherwise copied).
    packed : ndarray of int8, shape (ceil(N / 16), ceil(K / 4), 16, 4)
        Weights from :func:`pack_weights_u8s8`.
    n : int
        Number of output columns ``N``.
    out : ndarray of int32, shape (M, N), optional
        Where to write; may be a strided view.  Nothing outside it is written.
    isa : cpu.Isa, optional
        The paths allowed (default :data:`cpu.ISA`); every path gives the same ``C``.

    Returns
    -------
    ndarray of int32, shape (M, N)
        ``sum_k a[m, k] * w[n, k]`` (wrapping on int32 overflow, see the module notes).
    """
    a, n, out = check(a, packed, n, out, UINT8, INT8, KG_U8S8, "gemm_u8s8")
    return _gemm(a, packed, n, out, isa, True)


def gemm_s16s8(a, packed, n, out=None, isa=None):
    """``C = A @ W.T`` for int16 ``A`` and packed int8 ``W`` (stored as int16), exact in int32.

    As :func:`gemm_u8s8`, with ``a`` int16 (any values; e.g. ~12-bit, ``|a| <= 2047``) and
    ``packed`` int16 ``(ceil(N / 16), ceil(K / 2), 16, 2)`` from :func:`pack_weights_s16s8`.
    """
    a, n, out = check(a, packed, n, out, INT16, INT16, KG_S16S8, "gemm_s16s8")
    return _gemm(a, packed, n, out, isa, False)


def gemm_u8s8_reference(a, packed, n, out=None):
    """numpy twin of :func:`gemm_u8s8` (int64 matmul of the unpacked weights, cast to int32).

    Parameters
    ----------
    a : ndarray of uint8, shape (M, K)
    packed : ndarray of int8, from :func:`pack_weights_u8s8`
    n : int
        Number of output columns ``N``.
    out : ndarray of int32, shape (M, N), optional

    Returns
    -------
    ndarray of int32, shape (M, N)
    """
    a, n, out = check(a, packed, n, out, UINT8, INT8, KG_U8S8, "gemm_u8s8_reference")
    return reference_product(a, packed, n, out)


def gemm_s16s8_reference(a, packed, n, out=None):
    """numpy twin of :func:`gemm_s16s8`; arguments as :func:`gemm_u8s8_reference`, ``a`` int16
    and ``packed`` from :func:`pack_weights_s16s8`."""
    a, n, out = check(a, packed, n, out, INT16, INT16, KG_S16S8, "gemm_s16s8_reference")
    return reference_product(a, packed, n, out)
