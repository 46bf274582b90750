"""The int8 GEMMs on the AMX tile unit (``tdpbusd`` / ``tdpbssd``), in LLVM IR, and their block drivers.

All eight tile registers are configured 16 rows x 64 bytes: tmm0-3 hold up to 2 x 2 int32
result tiles (16 x 16 each), tmm4-5 two 16-row strips of A (64 k each), tmm6-7 two weight
tiles.  The u8s8 packed panel layout *is* the tile unit's B layout (one 64-byte row per group
of four k, the 16 columns' four bytes side by side), so a weight tile is 16 consecutive groups
of a panel, loaded with a 64-byte stride.  Products need ``K % 64 == 0``.

u8s8 kernel(shape, a_addr, lda, w_addr, n_kt, w2_off, c_addr, ldc, nrows, ncols) computes a
``(16 rt) x (16 pt)`` int32 tile over ``n_kt`` steps of 64 k, ``shape = 2 (rt - 1) + pt - 1``:
``a_addr`` A[i0, 0] (each row tile reads the rows :func:`_amx_begin` configured for it,
``nrows`` in all); ``w_addr`` a packed panel, ``w2_off`` bytes to the second (pt = 2);
``c_addr``, ``ldc``: C[i0, j0] and the bytes between C rows; ``ncols`` valid columns, the
rest of C not written (a column-edge tile goes through a scratch tile).

s16s8 (int16 ``A`` on the byte unit): ``A = 256 hi + lo`` with ``lo = A & 255`` (u8) and
``hi = A >> 8`` (s8), ``C = 256 (hi . W) + lo . W``, exact in int32 like the vector kernels;
kernel(pt, lo_addr, hi_addr, lda, w_addr, n_kt, w2_off, c_addr, ldc, nrows, ncols): one row
tile x ``pt`` panels; tmm0-1 ``lo . W``, tmm2-3 ``hi . W``, tmm4 ``lo``, tmm5 ``hi``, tmm6-7
the weights; the halves meet in a scratch tile.
"""
import numpy as np

from ._numba_env import may_run_parallel  # noqa: F401  (must precede the numba import)
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import ir
from .cpu import AMX_CAPABLE
from .int8_epilogue import dequantize_panels
from .int8_pack import PANEL
from .specialize import by_operand

MR_AMX = 32
"""Rows of ``A`` per u8s8 AMX micro-kernel call (two 16-row tiles)."""
MR_AMX_S16 = 16
"""Rows of ``A`` per s16s8 AMX micro-kernel call (one row tile, two byte planes)."""

_JIT = dict(cache=True, nogil=True, boundscheck=False)


class _AmxIR:
    """What the AMX kernels' codegen shares: the tile intrinsics, addresses, scratch tiles, and
    the copy of a scratch tile's rows to C with a column mask."""

    def __init__(self, builder):
        self.builder = builder
        p8 = ir.I8.as_pointer()

        def declare(name, *args):
            return ir.declare(builder, name, ir.VoidType(), *args)

        self.load = declare("llvm.x86.tileloadd64", ir.I8, p8, ir.I64)
        self.store = declare("llvm.x86.tilestored64", ir.I8, p8, ir.I64)
        self.zero = declare("llvm.x86.tilezero", ir.I8)
        self.dot_us = declare("llvm.x86.tdpbusd", ir.I8, ir.I8, ir.I8)
        self.dot_ss = declare("llvm.x86.tdpbssd", ir.I8, ir.I8, ir.I8)
        self.vector = ir.vec(ir.I32, 16)
        self.masked_store = ir.masked_store(builder, self.vector)

    @staticmethod
    def tile(t):
        return ir.Constant(ir.I8, t)

    def ptr(self, addr):
        return self.builder.inttoptr(addr, ir.I8.as_pointer())

    def scratch(self):
        """Address of a fresh 16 x 16 int32 stack tile (row stride 64 bytes)."""
        return self.builder.ptrtoint(cgutils.alloca_once(self.builder, ir.ArrayType(ir.I32, 256)), ir.I64)

    def scratch_row(self, scratch, row):
        b = self.builder
        return ir.load(b, b.add(scratch, b.mul(row, ir.c64(64))), self.vector)

    def store_rows(self, row_value, rows, cols, c_tile, ldc):
        """Store rows ``[0, min(rows, 16))`` of one 16-column tile to C at ``c_tile`` (row stride
        ``ldc``), row ``i`` being ``row_value(i)``; lanes at or past ``cols`` are not written."""
        b = self.builder

        def clamp16(x):
            return b.select(b.icmp_signed("<", x, ir.c64(16)), x, ir.c64(16))

        mask = ir.lanes_below(b, clamp16(cols), 16)
        with cgutils.for_range(b, clamp16(rows)) as row:
            dst = b.inttoptr(b.add(c_tile, b.mul(row.index, ldc)), self.vector.as_pointer())
            b.call(self.masked_store, [row_value(row.index), dst, ir.c32(4), mask])

    def store_result(self, t, c_tile, ldc, rows, cols, scratch):
        """Store result tile ``t`` to C: whole when all 16 columns are valid, else through ``scratch``."""
        b = self.builder
        some = b.and_(b.icmp_signed(">", rows, ir.c64(0)), b.icmp_signed(">", cols, ir.c64(0)))
        with b.if_else(b.icmp_signed(">=", cols, ir.c64(16))) as (whole, edge):
            with whole:
                b.call(self.store, [self.tile(t), self.ptr(c_tile), ldc])
            with edge:
                with b.if_then(some):
                    b.call(self.store, [self.tile(t), self.ptr(scratch), ir.c64(64)])
                    self.store_rows(lambda i: self.scratch_row(scratch, i), rows, cols, c_tile, ldc)


def _trap(builder):
    builder.call(ir.declare(builder, "llvm.trap", ir.VoidType()), [])


@intrinsic
def _amx_begin(typingctx, rows0, rows1):
    """Configure this thread's tile registers (palette 1, 64 bytes a row): the first row tile of
    results and ``A`` (tmm0, tmm1, tmm4) ``rows0`` rows, the second (tmm2, tmm3, tmm5) ``rows1``,
    the weights (tmm6, tmm7) 16.  Loads and stores of a tile touch only its configured rows, so
    an ``M`` edge needs neither padding nor a scratch tile."""
    def codegen(context, builder, sig, args):
        if not AMX_CAPABLE:  # never called then; a trap rather than code LLVM cannot select
            _trap(builder)
            return context.get_dummy_value()
        config = [0] * 64
        config[0] = 1  # palette
        for t in range(8):
            config[16 + 2 * t] = 64  # bytes per row
            config[48 + t] = 16  # rows
        slot = cgutils.alloca_once(builder, ir.ArrayType(ir.I8, 64))
        builder.store(ir.Constant(ir.ArrayType(ir.I8, 64), config), slot)
        for tiles, rows in (((0, 1, 4), args[0]), ((2, 3, 5), args[1])):
            for t in tiles:
                builder.store(builder.trunc(rows, ir.I8), cgutils.gep(builder, slot, 0, 48 + t))
        ldtilecfg = ir.declare(builder, "llvm.x86.ldtilecfg", ir.VoidType(), ir.I8.as_pointer())
        builder.call(ldtilecfg, [builder.bitcast(slot, ir.I8.as_pointer())])
        return context.get_dummy_value()

    return types.void(types.int64, types.int64), codegen


@intrinsic
def _amx_end(typingctx):
    """Release this thread's tile state (so that context switches stop saving 8 KiB of it)."""
    def codegen(context, builder, sig, args):
        if AMX_CAPABLE:
            builder.call(ir.declare(builder, "llvm.x86.tilerelease", ir.VoidType()), [])
        return context.get_dummy_value()

    return types.void(), codegen


def _emit_u8s8(builder, rt, pt, args):
    a_addr, lda, w_addr, n_kt, w2_off, c_addr, ldc, nrows, ncols = args
    amx = _AmxIR(builder)
    tile, ptr = amx.tile, amx.ptr
    for r in range(rt):
        for q in range(pt):
            builder.call(amx.zero, [tile(2 * r + q)])
    a_rows = [builder.add(a_addr, builder.mul(lda, ir.c64(16 * r))) for r in range(rt)]
    panels = [w_addr, builder.add(w_addr, w2_off)][:pt]
    with cgutils.for_range(builder, n_kt) as loop:
        ka = builder.mul(loop.index, ir.c64(64))
        kw = builder.mul(loop.index, ir.c64(16 * 64))
        for r in range(rt):
            builder.call(amx.load, [tile(4 + r), ptr(builder.add(a_rows[r], ka)), lda])
        for q in range(pt):
            builder.call(amx.load, [tile(6 + q), ptr(builder.add(panels[q], kw)), ir.c64(64)])
        for r in range(rt):
            for q in range(pt):
                builder.call(amx.dot_us, [tile(2 * r + q), tile(4 + r), tile(6 + q)])
    scratch = amx.scratch()
    for r in range(rt):
        for q in range(pt):
            c_tile = builder.add(c_addr, builder.add(builder.mul(ldc, ir.c64(16 * r)), ir.c64(64 * q)))
            amx.store_result(2 * r + q, c_tile, ldc, builder.sub(nrows, ir.c64(16 * r)),
                             builder.sub(ncols, ir.c64(16 * q)), scratch)


def _emit_s16s8(builder, pt, args):
    lo_addr, hi_addr, lda, w_addr, n_kt, w2_off, c_addr, ldc, nrows, ncols = args
    amx = _AmxIR(builder)
    tile, ptr = amx.tile, amx.ptr
    for q in range(pt):
        builder.call(amx.zero, [tile(q)])
        builder.call(amx.zero, [tile(2 + q)])
    panels = [w_addr, builder.add(w_addr, w2_off)][:pt]
    with cgutils.for_range(builder, n_kt) as loop:
        ka = builder.mul(loop.index, ir.c64(64))
        kw = builder.mul(loop.index, ir.c64(16 * 64))
        builder.call(amx.load, [tile(4), ptr(builder.add(lo_addr, ka)), lda])
        builder.call(amx.load, [tile(5), ptr(builder.add(hi_addr, ka)), lda])
        for q in range(pt):
            builder.call(amx.load, [tile(6 + q), ptr(builder.add(panels[q], kw)), ir.c64(64)])
        for q in range(pt):
            builder.call(amx.dot_us, [tile(q), tile(4), tile(6 + q)])
            builder.call(amx.dot_ss, [tile(2 + q), tile(5), tile(6 + q)])
    scratch_lo, scratch_hi = amx.scratch(), amx.scratch()
    eight = ir.Constant(amx.vector, [8] * 16)

    def combined(i):
        return builder.add(builder.shl(amx.scratch_row(scratch_hi, i), eight), amx.scratch_row(scratch_lo, i))

    for q in range(pt):
        cols = builder.sub(ncols, ir.c64(16 * q))
        with builder.if_then(builder.icmp_signed(">", cols, ir.c64(0))):
            builder.call(amx.store, [tile(q), ptr(scratch_lo), ir.c64(64)])
            builder.call(amx.store, [tile(2 + q), ptr(scratch_hi), ir.c64(64)])
            amx.store_rows(combined, nrows, cols, builder.add(c_addr, ir.c64(64 * q)), ldc)


def _make_kernel(name, n_args, shapes, emit):
    def codegen(context, builder, sig, args):
        if AMX_CAPABLE:
            ir.switch_on(builder, args[0], shapes, lambda shape: emit(builder, shape, args[1:]))
        else:  # never called then; a trap rather than code LLVM cannot select
            _trap(builder)
        return context.get_dummy_value()

    return ir.int_intrinsic(name, n_args, codegen)


_kernel_u8s8 = _make_kernel("_amx_u8s8", 10, range(4), lambda b, s, args: _emit_u8s8(b, s // 2 + 1, s % 2 + 1, args))
_kernel_s16s8 = _make_kernel("_amx_s16s8", 11, (1, 2), _emit_s16s8)


@njit(**_JIT)
def block_u8s8(a_addr, a2_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, i0, i1, p0, p1):
    """Rows [i0, i1) x panels [p0, p1) of a u8s8 product (K % 64 == 0) on the tiles: panels two
    at a time, rows 32 at a time; ``epi_addr``: the epilogue descriptor (0: raw int32);
    ``a2_addr`` unused (the s16s8 block's second byte plane)."""
    panel_bytes = n_groups * 64
    n_kt = n_groups // 16
    _amx_begin(16, 16)
    for i in range(i0, i1, MR_AMX):
        rows = min(MR_AMX, i1 - i)
        if rows < MR_AMX:  # the last rows: tiles of exactly those rows
            _amx_begin(min(rows, 16), max(rows - 16, 16 * (rows <= 16)))
        for p in range(p0, p1, 2):
            pair = p + 1 < p1
            ncols = min(2 * PANEL if pair else PANEL, n - p * PANEL)
            shape = 2 * (rows > 16) + pair
            _kernel_u8s8(shape, a_addr + i * lda, lda, w_addr + p * panel_bytes, n_kt, panel_bytes,
                         c_addr + p * (PANEL * 4) + i * ldc, ldc, rows, ncols)
            dequantize_panels(np.uint8(0), c_addr, ldc, n, epi_addr, i, i + rows, p, 1 + pair)
    _amx_end()


@njit(**_JIT)
def block_s16s8(lo_addr, hi_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, i0, i1, p0, p1):
    """:func:`block_u8s8` for int16 ``A`` split into byte planes (:func:`byte_planes`, row
    stride ``lda``), weights packed for u8s8; rows 16 at a time."""
    panel_bytes = n_groups * 64
    n_kt = n_groups // 16
    _amx_begin(16, 16)
    for i in range(i0, i1, MR_AMX_S16):
        rows = min(MR_AMX_S16, i1 - i)
        if rows < MR_AMX_S16:
            _amx_begin(rows, rows)
        for p in range(p0, p1, 2):
            pair = p + 1 < p1
            ncols = min(2 * PANEL if pair else PANEL, n - p * PANEL)
            _kernel_s16s8(1 + pair, lo_addr + i * lda, hi_addr + i * lda, lda, w_addr + p * panel_bytes, n_kt,
                          panel_bytes, c_addr + p * (PANEL * 4) + i * ldc, ldc, rows, ncols)
            dequantize_panels(np.int16(0), c_addr, ldc, n, epi_addr, i, i + rows, p, 1 + pair)
    _amx_end()


block = by_operand("block", block_u8s8, block_s16s8)
"""``block(a, a_addr, a2_addr, lda, ...)``: :func:`block_u8s8` for uint8 ``a``, else :func:`block_s16s8`."""


@njit(**_JIT)
def byte_planes(a):
    """int16 ``a`` (M, K) as its low bytes (uint8) and high bytes (int8), ``a = 256 hi + lo``."""
    m, k = a.shape
    lo = np.empty((m, k), dtype=np.uint8)
    hi = np.empty((m, k), dtype=np.int8)
    for i in range(m):
        for j in range(k):
            lo[i, j] = np.uint8(a[i, j] & 255)
            hi[i, j] = np.int8(a[i, j] >> 8)
    return lo, hi
