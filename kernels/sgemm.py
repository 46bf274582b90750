"""float32 GEMM against weights packed once: ``C[m, n] = bias[n] + sum_k A[m, k] * W[n, k]``.

Why not BLAS.  A linear layer's weights are constant, but BLAS repacks ``W`` on every call.
For the few rows of one sentence that repacking costs more than the arithmetic (OpenBLAS:
~60 GFLOP/s at 17 rows against ~100 at 4096), and BLAS's blocking depends on ``M``, so a
row's result can change with its batch-mates.  Here ``W`` is packed at load time and every
output element is one chain of fused multiply-adds over ``k = 0, 1, ..., K-1`` starting from
zero, whatever the tile, the row block or the thread it lands in: a row's result is bitwise
the same alone or in any batch.

Why not AMX (which the int8 GEMMs use).  The tile unit multiplies bfloat16: three split
products miss the float32 parity bound and six are no faster than this kernel (figures in
docs/ARCHITECTURE.md; commit eb8bd96).

Packed layout.  Output columns are split into *panels* of ``PANEL = 16`` (two 8-lane float32
vectors); one panel is ``K`` consecutive 64-byte rows::

    packed[p, k, j] = W[p * PANEL + j, k]     (zero where p * PANEL + j >= N)

so ``packed`` is float32 ``(ceil(N / 16), K, 16)``.  The micro-kernel (LLVM IR through
``numba.extending.intrinsic``) keeps an ``mr x 16`` tile of ``C`` in registers, ``mr <= 6``,
broadcasting one ``A`` element per row and step; ``M`` is cut into near-equal tiles of at most
6 rows (17 rows: 6 + 6 + 5), so no tile is a lone slow row.  Where the CPU has AVX-512
(``isa.avx512``, :mod:`cpu`) the tile is ``mr x 32``, ``mr <= 12``: one 16-lane vector from each of
two panels, the same chains of fused multiply-adds, so bitwise the same ``C``.  Edge columns of
the last panel are stored with masked stores: nothing outside ``(M, N)`` is written.

:func:`gemm_reference` (unpack, numpy matmul) is the readable spec and the test oracle; it
agrees to float32 rounding, not bitwise (BLAS sums in another order).
"""
import numpy as np

from ._numba_env import pool_threads  # (must precede the numba import)
from . import ir, reference
from .buffers import empty_aligned
from .cpu import ISA
from .tasks import address, keep_alive, n_tasks, plan_tasks, task_bounds
from numba import njit, prange
from numba.core import cgutils

__all__ = ["PANEL", "pack_weights", "unpack_weights", "gemm", "gemm_reference", "block"]

PANEL = 16
"""Output columns per packed panel."""
MR = 6
"""Most rows of ``A`` per micro-kernel tile (12 accumulators + 2 weight vectors + 1 broadcast
fit the 16 vector registers of AVX2)."""
MR_WIDE = 12
"""The same with AVX-512: 24 accumulators of 16 lanes + 2 weight vectors of its 32 registers."""
L1_PREFETCH_ROWS = 8
"""Packed rows ahead of the one being multiplied that the micro-kernel prefetches into L1."""
PARALLEL_MIN_FLOPS = 1 << 21
"""Multiply-adds below which a product stays on the calling thread."""

_JIT = dict(cache=True, nogil=True, boundscheck=False)


def pack_weights(w):
    """Pack ``(N, K)`` float32 weights (``torch.nn.Linear.weight`` layout) for :func:`gemm`.

    Parameters
    ----------
    w : ndarray of float32, shape (N, K)

    Returns
    -------
    ndarray of float32, shape (ceil(N / 16), K, 16), C-contiguous, 64-byte aligned
        ``packed[p, k, j] = w[16 p + j, k]``, zero-padded columns.
    """
    w = np.asarray(w)
    if w.ndim != 2 or w.dtype != np.float32:
        raise TypeError(f"weights must be a 2-D float32 array (N, K), got {w.dtype} with shape {w.shape}")
    n, k = w.shape
    n_panels = -(-n // PANEL)
    padded = np.zeros((n_panels * PANEL, k), np.float32)
    padded[:n] = w
    packed = empty_aligned((n_panels, k, PANEL))  # each packed row one cache line
    packed[...] = padded.reshape(n_panels, PANEL, k).transpose(0, 2, 1)
    return packed


def unpack_weights(packed, n):
    """Invert :func:`pack_weights`: the ``(n, K)`` float32 weights."""
    n_panels, k, panel = packed.shape
    return packed.transpose(0, 2, 1).reshape(n_panels * panel, k)[:n]


_FLOAT32 = np.dtype(np.float32)


def _check(a, packed, n, bias, out, gelu, name):
    # Comparisons against a dtype object, not the np.float32 type: this runs before each of the
    # 24 GEMMs of a forward pass, and a one-sentence pass is ~3 ms.
    if gelu is not True and gelu is not False and not isinstance(gelu, np.bool_):
        raise TypeError(f"{name}: gelu must be a bool, got {type(gelu).__name__}")
    if not isinstance(a, np.ndarray) or a.dtype != _FLOAT32 or a.ndim != 2:
        raise TypeError(f"{name}: a must be a 2-D float32 array, got {getattr(a, 'dtype', type(a))} "
                        f"with shape {getattr(a, 'shape', None)}")
    if not isinstance(packed, np.ndarray) or packed.dtype != _FLOAT32 or packed.ndim != 3 \
            or packed.shape[2] != PANEL or not packed.flags.c_contiguous:
        raise TypeError(f"{name}: packed must come from pack_weights")
    m, k = a.shape
    n_panels, packed_k = packed.shape[:2]
    if packed_k != k:
        raise ValueError(f"{name}: a has K={k} but the packed weights have K={packed_k}")
    if n < 0 or -(-n // PANEL) != n_panels:
        raise ValueError(f"{name}: n={n} does not match the {n_panels} packed panels of {PANEL}")
    if bias is not None and (not isinstance(bias, np.ndarray) or bias.dtype != _FLOAT32
                             or bias.shape != (n,)):
        raise ValueError(f"{name}: bias must be a float32 array of shape {(n,)}")
    if out is None:
        return np.empty((m, n), np.float32)
    if not isinstance(out, np.ndarray) or out.dtype != _FLOAT32 or out.shape != (m, n):
        raise ValueError(f"{name}: out must be a float32 array of shape {(m, n)}")
    return out


def gemm_reference(a, packed, n, bias=None, out=None, gelu=False):
    """numpy twin of :func:`gemm`: ``out = a @ W.T (+ bias)`` with ``W`` unpacked.

    Parameters
    ----------
    a : ndarray of float32, shape (M, K)
    packed : ndarray of float32, from :func:`pack_weights`
    n : int
        Output columns ``N``.
    bias : ndarray of float32, shape (N,), optional
    out : ndarray of float32, shape (M, N), optional
    gelu : bool
        Then ``out = GELU(out)``, the exact (erf) GELU in float64 (:func:`reference.bias_gelu`).

    Returns
    -------
    ndarray of float32, shape (M, N)
    """
    out = _check(a, packed, n, bias, out, gelu, "gemm_reference")
    np.matmul(a, unpack_weights(packed, n).T, out=out)
    if bias is not None:
        out += bias
    if gelu:
        reference.bias_gelu(out, np.zeros(n, np.float32))
    return out


# ----------------------------------------------------------------------------------------------
# Micro-kernel, emitted as LLVM IR.
#
# kernel(mr, a_addr, lda, w_addr, w2_off, k, c_addr, ldc, ncols, b_addr, pf_addr, pf_step, gelu)
# computes an (mr x 16) tile, or with 16 lanes an (mr x 32) tile over two panels:
#   a_addr: address of A[i0, 0]; lda: bytes between A rows;
#   w_addr: address of one packed panel (k rows of 64 bytes);
#   w2_off: 16 lanes only: bytes from w_addr to the second panel (0: the panel is its own pair);
#   c_addr: address of C[i0, j0]; ldc: bytes between C rows; ncols: valid columns (1..16 or 1..32);
#   b_addr: address of bias[j0] (one tile's width readable: the bias is padded), 0 for no bias;
#   pf_addr, pf_step: at step k, prefetch the line at pf_addr + k * pf_step (of each panel of
#     the pair): a share of the next panel (pair), or of this one.


def _emit_tile(builder, mr, lanes, args):
    """IR of one ``mr``-row tile (see above); every accumulator lane is the same chain of fused
    multiply-adds in either width, so the two give bitwise the same ``C``."""
    a_addr, lda, w_addr, w2_off, k, c_addr, ldc, ncols, b_addr, pf_addr, pf_step, gelu = args
    vec = ir.vec(ir.F32, lanes)
    nr = 2
    fma = ir.declare(builder, f"llvm.fma.v{lanes}f32", vec, vec, vec, vec)
    # byte offset of vector v within a packed row: the next 8 lanes of the panel, or the
    # same row of the second panel
    vstride = ir.c64(32) if lanes == 8 else w2_off
    zero = ir.fconst(vec, 0.0)
    accs = [[cgutils.alloca_once_value(builder, zero) for _ in range(nr)] for _ in range(mr)]
    rows = [builder.add(a_addr, builder.mul(lda, ir.c64(i))) for i in range(mr)]
    with cgutils.for_range(builder, k) as loop:
        kk = loop.index
        wrow = builder.add(w_addr, builder.mul(kk, ir.c64(PANEL * 4)))
        ws = [ir.load(builder, builder.add(wrow, builder.mul(vstride, ir.c64(v))), vec) for v in range(nr)]
        # row k of the panel(s) to come into L2 (they stream in from memory while these are
        # computed), and row k + L1_PREFETCH_ROWS of this panel (pair) into L1
        pfrow = builder.add(pf_addr, builder.mul(kk, pf_step))
        l1row = builder.add(wrow, ir.c64(L1_PREFETCH_ROWS * PANEL * 4))
        for row, locality in ((pfrow, 2), (l1row, 3)):
            for v in range(1 if lanes == 8 else nr):
                ir.prefetch(builder, builder.add(row, builder.mul(vstride, ir.c64(v))), locality)
        k4 = builder.mul(kk, ir.c64(4))
        for i in range(mr):
            xv = ir.splat(builder, ir.load(builder, builder.add(rows[i], k4), ir.F32), vec)
            for v in range(nr):
                builder.store(builder.call(fma, [xv, ws[v], builder.load(accs[i][v])]), accs[i][v])

    with builder.if_then(builder.icmp_signed("!=", b_addr, ir.c64(0))):
        bias = [ir.load(builder, builder.add(b_addr, ir.c64(4 * lanes * v)), vec) for v in range(nr)]
        for i in range(mr):
            for v in range(nr):
                builder.store(builder.fadd(builder.load(accs[i][v]), bias[v]), accs[i][v])
    with builder.if_then(builder.icmp_signed("!=", gelu, ir.c64(0))):
        for i in range(mr):
            for v in range(nr):
                builder.store(ir.gelu(builder, builder.load(accs[i][v]), fma), accs[i][v])
    ir.store_tile(builder, accs, c_addr, ldc, ncols, ir.F32, lanes)


def _make_kernel(lanes, mr_max):
    """The micro-kernel intrinsic for tiles of 1..``mr_max`` rows (the first argument, chosen at
    run time): ``mr x 16``, two 8-lane vectors of one panel; or (``lanes=16``, AVX-512)
    ``mr x 32``, one 16-lane vector from each of two panels (``w_addr`` and ``w_addr + w2_off``)."""
    def codegen(context, builder, sig, args):
        ir.switch_on(builder, args[0], range(1, mr_max + 1), lambda mr: _emit_tile(builder, mr, lanes, args[1:]))
        return context.get_dummy_value()

    return ir.int_intrinsic(f"_ukernel_f32_x{2 * lanes}", 13, codegen)


_kernel8 = _make_kernel(8, MR)
_kernel16 = _make_kernel(16, MR_WIDE)


@njit(**_JIT)
def block(a_addr, lda, w_addr, k, c_addr, ldc, n, b_addr, i0, i1, p0, p1, mb, wide, act=0):
    """Rows [i0, i1) x panels [p0, p1) of ``C = A W^T (+ bias)``, ``mb`` rows of A at a time
    (kept in L2 over the panels); addresses and strides in bytes, one thread.

    ``wide``: the AVX-512 kernels, two panels a tile.  A lone last panel is its own pair
    (``w2 = 0``); the pair's columns are not stored, and its bias lanes come from the padding
    (see :func:`_entry`).  ``act`` 1: GELU after the bias.  Attention calls this directly.
    """
    panel_bytes = k * PANEL * 4
    step = 2 if wide else 1
    mr_max = MR_WIDE if wide else MR
    for r0 in range(i0, i1, mb):
        r1 = min(r0 + mb, i1)
        rows = r1 - r0
        n_tiles = (rows + mr_max - 1) // mr_max
        base = rows // n_tiles
        extra = rows - base * n_tiles  # the first `extra` tiles take one row more
        for p in range(p0, p1, step):
            ncols = min(step * PANEL, n - p * PANEL)
            wp = w_addr + p * panel_bytes
            cp = c_addr + p * (PANEL * 4)
            bp = b_addr + p * (PANEL * 4) if b_addr != 0 else 0
            pf = wp + step * panel_bytes if p + step < p1 else wp
            w2 = panel_bytes if p + 1 < p1 else 0
            i = r0
            for t in range(n_tiles):
                mr = base + 1 if t < extra else base
                # the row tiles share out the prefetch of the next panel(s): tile t fetches the
                # t-th 1/n_tiles of it, spread over its k steps, so that memory stays busy while
                # the later tiles compute on the panel already in cache
                ps = (PANEL * 4) // n_tiles
                pft = pf + (t * k // n_tiles) * (PANEL * 4)
                if wide:
                    _kernel16(mr, a_addr + i * lda, lda, wp, w2, k, cp + i * ldc, ldc, ncols, bp, pft, ps, act)
                else:
                    _kernel8(mr, a_addr + i * lda, lda, wp, 0, k, cp + i * ldc, ldc, ncols, bp, pft, ps, act)
                i += mr


@njit(parallel=True, **_JIT)
def _parallel(a_addr, lda, w_addr, k, c_addr, ldc, m, n, b_addr, rb, n_panels, pb, mb, wide, act):
    for t in prange(n_tasks(m, rb, n_panels, pb)):
        i0, i1, p0, p1 = task_bounds(t, m, rb, n_panels, pb)
        block(a_addr, lda, w_addr, k, c_addr, ldc, n, b_addr, i0, i1, p0, p1, mb, wide, act)


@njit(**_JIT)
def _entry(a, packed, n, bias, use_bias, out, threads, wide, act=0):
    """a: (M, K) with unit column stride; out: (M, n) with unit column stride."""
    m, k = a.shape
    n_panels = packed.shape[0]
    b_addr = 0
    if use_bias:
        if n % (2 * PANEL) or bias.strides[0] != 4:  # the tiles read whole vectors (of a panel pair)
            padded = np.zeros((n_panels + 1) * PANEL, np.float32)
            padded[:n] = bias
        else:
            padded = bias
        b_addr = address(padded)
    lda = a.strides[0]
    rb, pb, mb, par = plan_tasks(m, n_panels, lda, threads, MR_WIDE if wide else MR)
    if wide:
        pb += pb % 2  # whole panel pairs per task
    if par:
        _parallel(address(a), lda, address(packed), k, address(out), out.strides[0], m, n, b_addr, rb, n_panels, pb,
                  mb, wide, act)
    else:
        block(address(a), lda, address(packed), k, address(out), out.strides[0], n, b_addr, 0, m, 0, n_panels, mb,
              wide, act)
    if use_bias:
        keep_alive(padded)  # the kernels read the padded bias by address


_NO_BIAS = np.zeros(1, np.float32)


def gemm(a, packed, n, bias=None, out=None, gelu=False, isa=None):
    """``out = a @ W.T (+ bias)`` for float32 ``a`` and weights packed by :func:`pack_weights`.

    Parameters
    ----------
    a : ndarray of float32, shape (M, K)
        One token per row; rows may be strided, columns must be contiguous (else copied).
    packed : ndarray of float32, shape (ceil(N / 16), K, 16)
        From :func:`pack_weights`.
    n : int
        Output columns ``N``.
    bias : ndarray of float32, shape (N,), optional
        Added to every row (after the products, so ``out`` is the same as a separate add).
    out : ndarray of float32, shape (M, N), optional
        Where to write (rows may be strided, columns contiguous).  Nothing outside it is written.
    gelu : bool
        Apply GELU(x) = x/2 (1 + erf(x / sqrt 2)) to each tile after the bias, in registers
        (float32, erf within 1.5e-7): one pass over ``out`` in memory fewer than a separate GELU.
    isa : cpu.Isa, optional
        ``isa.avx512``: 16-lane tiles (bitwise the same ``out``); default :data:`cpu.ISA`.

    Returns
    -------
    ndarray of float32, shape (M, N)
        Each element one fused multiply-add chain over ``k`` in order: bitwise independent of
        ``M`` and of the other rows.
    """
    out = _check(a, packed, n, bias, out, gelu, "gemm")
    if a.strides[1] != 4:
        a = np.ascontiguousarray(a)
    target = out if out.strides[1] == 4 else np.empty(out.shape, np.float32)
    m, k = a.shape
    if m and n:
        threads = pool_threads() if m * n * k >= PARALLEL_MIN_FLOPS else 1
        _entry(a, packed, n, _NO_BIAS if bias is None else bias, bias is not None, target, threads,
               (isa or ISA).avx512, 1 if gelu else 0)
    if target is not out:
        out[...] = target
    return out
