"""The int8 GEMMs' vector micro-kernels (AVX2, or VNNI where the CPU has it), in LLVM IR.

``u8s8`` (w8a8): ``A`` uint8 in ``[0, 127]``, ``W`` int8.  AVX2 step: ``vpmaddubsw`` (u8 x s8,
adjacent pairs summed to int16, *saturating*: ``2 * 127 * 128 <= 32767`` is why ``A <= 127``)
then ``vpmaddwd`` against ones (pairs summed to int32).  ``s16s8`` (w8a16): ``A`` int16, ``W``
sign-extended to int16 by the packer; step ``vpmaddwd``.  With VNNI (:data:`cpu.VNNI`) each step
is one ``vpdpbusd`` / ``vpdpwssd`` (identical int32 results) and a tile takes 6 rows, not 4;
with AVX-512 VNNI (:data:`cpu.VNNI512`) one 16-lane zmm vector covers the panel and a tile
takes up to 12 rows.  Both wrap on int32 overflow: exact while ``K * max|A| * max|W| < 2**31``.

kernel(mr, a_addr, lda, w_addr, n_groups, c_addr, ldc, ncols, pf_addr) computes an
``mr x 16`` int32 tile (``mr`` one of :data:`TILE_ROWS`, chosen at run time):
  a_addr: address of A[i0, 0]; lda: bytes between A rows (each group reads 4 bytes of a row);
  w_addr: address of one packed panel (n_groups blocks of 64 bytes);
  c_addr: address of C[i0, j0]; ldc: bytes between C rows; ncols: valid columns (1..16),
  columns >= ncols are not written;
  pf_addr: address of a panel to prefetch line by line (the next one), or of this one.
"""
from ._numba_env import may_run_parallel  # noqa: F401  (must precede the numba import)
from numba import njit
from numba.core import cgutils

from . import ir
from .cpu import VNNI, VNNI512
from .int8_epilogue import dequantize_panels
from .int8_pack import PANEL
from .specialize import by_operand

MR = 4
"""Rows of ``A`` per AVX2 micro-kernel call."""
MR_TOP = 12 if VNNI512 else 6 if VNNI else MR
"""The tallest tile built: with VNNI the multiply's temporaries become accumulators."""
TILE_ROWS = tuple(mr for mr in (12, 6, 4, 3, 2, 1) if mr <= MR_TOP)
"""Tile heights: the tallest while they fit, then what is left."""

_JIT = dict(cache=True, nogil=True, boundscheck=False)


def _emit_tile(builder, mr, u8, args):
    a_addr, lda, w_addr, n_groups, c_addr, ldc, ncols, pf_addr = args
    lanes = 16 if VNNI512 else 8  # int32 lanes of one accumulator
    nr = PANEL // lanes
    vacc = ir.vec(ir.I32, lanes)
    v32i8, v16i16, v8i32 = ir.vec(ir.I8, 32), ir.vec(ir.I16, 16), ir.vec(ir.I32, 8)
    pmaddwd = ir.declare(builder, "llvm.x86.avx2.pmadd.wd", v8i32, v16i16, v16i16)
    if u8:
        pmaddubsw = ir.declare(builder, "llvm.x86.avx2.pmadd.ub.sw", v16i16, v32i8, v32i8)
    if VNNI:  # vpdpbusd / vpdpwssd: the multiply, the pair sums and the accumulation in one
        dot = ir.declare(builder, f"llvm.x86.avx512.{'vpdpbusd' if u8 else 'vpdpwssd'}.{32 * lanes}",
                         vacc, vacc, vacc, vacc)
    ones = ir.Constant(v16i16, [1] * 16)
    operand = vacc if VNNI else v32i8 if u8 else v16i16  # how A's broadcast and W's vector are typed

    # Few rows give few independent accumulator chains; where the add is fused into the
    # multiply its latency would then bound the loop, so small tiles cycle through `unroll`
    # accumulator sets, summed at the end.
    unroll = {1: 4, 2: 2}.get(mr, 1)
    zero = ir.Constant(vacc, [0] * lanes)
    accs = [[[cgutils.alloca_once_value(builder, zero) for _ in range(nr)] for _ in range(mr)]
            for _ in range(unroll)]
    rows = [builder.add(a_addr, builder.mul(lda, ir.c64(i))) for i in range(mr)]

    def step(g, acc_set):
        wbase = builder.add(w_addr, builder.mul(g, ir.c64(PANEL * 4)))
        ws = [ir.load(builder, builder.add(wbase, ir.c64(4 * lanes * v)), operand, align=1) for v in range(nr)]
        # group g (one cache line) of the panel to come, into L2: with few rows of A the
        # product streams its weights, and the next panel arrives while this one is used
        ir.prefetch(builder, builder.add(pf_addr, builder.mul(g, ir.c64(PANEL * 4))), 2)
        g4 = builder.mul(g, ir.c64(4))
        for i in range(mr):
            x = ir.load(builder, builder.add(rows[i], g4), ir.I32, align=1)
            xv = builder.bitcast(ir.splat(builder, x, vacc), operand)
            for v in range(nr):
                acc = acc_set[i][v]
                if VNNI:
                    builder.store(builder.call(dot, [builder.load(acc), xv, ws[v]]), acc)
                    continue
                if u8:
                    t = builder.call(pmaddwd, [builder.call(pmaddubsw, [xv, ws[v]]), ones])
                else:
                    t = builder.call(pmaddwd, [xv, ws[v]])
                builder.store(builder.add(builder.load(acc), t), acc)

    n_main = builder.udiv(n_groups, ir.c64(unroll)) if unroll > 1 else n_groups
    with cgutils.for_range(builder, n_main) as loop:
        g0 = builder.mul(loop.index, ir.c64(unroll))
        for u in range(unroll):
            step(builder.add(g0, ir.c64(u)), accs[u])
    if unroll > 1:
        with cgutils.for_range_slice(builder, builder.mul(n_main, ir.c64(unroll)), n_groups, ir.c64(1)) as (g, _):
            step(g, accs[0])
        for u in range(1, unroll):
            for i in range(mr):
                for v in range(nr):
                    builder.store(builder.add(builder.load(accs[0][i][v]), builder.load(accs[u][i][v])),
                                  accs[0][i][v])
    ir.store_tile(builder, accs[0], c_addr, ldc, ncols, ir.I32, lanes)


def _make_kernel(kind):
    u8 = kind == "u8s8"

    def codegen(context, builder, sig, args):
        ir.switch_on(builder, args[0], TILE_ROWS, lambda mr: _emit_tile(builder, mr, u8, args[1:]))
        return context.get_dummy_value()

    return ir.int_intrinsic(f"_ukernel_{kind}", 9, codegen)


_kernel_u8s8 = _make_kernel("u8s8")
_kernel_s16s8 = _make_kernel("s16s8")
_kernel = by_operand("kernel", _kernel_u8s8, _kernel_s16s8)


@njit(**_JIT)
def block(a, a_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, i0, i1, p0, p1, mb):
    """Rows [i0, i1) x panels [p0, p1) of C (int32, or float32 through the epilogue at
    ``epi_addr``), rows taken ``mb`` at a time so that they stay in L2 while every weight panel
    passes over them; ``a``: the activations, whose dtype picks u8s8 (uint8) or s16s8.  Addresses and strides in bytes."""
    panel_bytes = n_groups * 64
    for r0 in range(i0, i1, mb):
        r1 = min(r0 + mb, i1)
        for p in range(p0, p1):
            ncols = min(PANEL, n - p * PANEL)
            wp = w_addr + p * panel_bytes
            cp = c_addr + p * (PANEL * 4)
            pf = wp + panel_bytes if p + 1 < p1 else wp
            i = r0
            while i < r1:
                rest = r1 - i
                mr = 12 if MR_TOP == 12 and rest >= 12 else 6 if MR_TOP >= 6 and rest >= 6 else min(rest, MR)
                _kernel(a, mr, a_addr + i * lda, lda, wp, n_groups, cp + i * ldc, ldc, ncols, pf)
                i += mr
            dequantize_panels(a, c_addr, ldc, n, epi_addr, r0, r1, p, 1)
