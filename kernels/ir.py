"""LLVM IR building blocks shared by the kernels written as ``numba.extending.intrinsic``.

Types and constants, the broadcast of a scalar (:func:`splat`), lane masks and masked
loads/stores, prefetch, the store of a register tile to C with masked right edge
(:func:`store_tile`), the erf-GELU and exp polynomials of :mod:`polynomials` on vectors, and
:func:`int_intrinsic`, the typing every address-taking intrinsic shares.  Nothing here knows
a kernel; everything here emits IR into a caller's ``builder``.
"""
import inspect

import numpy as np

from ._numba_env import may_run_parallel  # noqa: F401  (must precede the numba import)
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .polynomials import ERF_P, ERF_Q, EXP_LN2_HI, EXP_LN2_LO, EXP_LOG2E, EXP_POLY

I1, I8, I16, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
F32 = ir.FloatType()

ORDERED = ("nsz",)
"""Fast-math flags for float arithmetic whose order is part of a kernel's bits (a sum that must
come out the same at every vector width and on every CPU).  numba's fastmath pass gives its
flags (``reassoc`` lets LLVM reorder a sum, differently per target) only to instructions that
carry none; ``nsz`` alone reorders nothing."""


def vec(element, lanes):
    """The IR vector type of ``lanes`` x ``element``."""
    return ir.VectorType(element, lanes)


def c32(x):
    return ir.Constant(I32, x)


def c64(x):
    return ir.Constant(I64, x)


def fconst(vector_type, x):
    """``x`` rounded to float32, in every lane of ``vector_type``."""
    return ir.Constant(vector_type, [float(np.float32(x))] * vector_type.count)


def declare(builder, name, ret, *params):
    """The function (an LLVM intrinsic) ``name``, declared in the builder's module once."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, list(params)), name)


def splat(builder, scalar, vector_type):
    """``scalar`` in every lane of a ``vector_type``."""
    undef = ir.Constant(vector_type, ir.Undefined)
    v = builder.insert_element(undef, scalar, c32(0))
    return builder.shuffle_vector(v, undef, ir.Constant(vec(I32, vector_type.count), [0] * vector_type.count))


def lanes_below(builder, limit, lanes, first=0):
    """The ``i1`` mask of lanes ``first + j < limit`` (``limit`` an i64 value), ``j < lanes``."""
    return builder.icmp_signed(">", splat(builder, limit, vec(I64, lanes)),
                               ir.Constant(vec(I64, lanes), [first + j for j in range(lanes)]))


def masked_load(builder, vector_type):
    """``llvm.masked.load`` for ``vector_type``: ``call(f, [ptr, align, mask, passthru])``."""
    kind = "f32" if isinstance(vector_type.element, ir.FloatType) else f"i{vector_type.element.width}"
    return declare(builder, f"llvm.masked.load.v{vector_type.count}{kind}.p0", vector_type,
                   vector_type.as_pointer(), I32, vec(I1, vector_type.count), vector_type)


def masked_store(builder, vector_type):
    """``llvm.masked.store`` for ``vector_type``: ``call(f, [value, ptr, align, mask])``."""
    kind = "f32" if isinstance(vector_type.element, ir.FloatType) else f"i{vector_type.element.width}"
    return declare(builder, f"llvm.masked.store.v{vector_type.count}{kind}.p0", ir.VoidType(),
                   vector_type, vector_type.as_pointer(), I32, vec(I1, vector_type.count))


def prefetch(builder, addr, locality):
    """Prefetch the cache line at address ``addr`` (i64) for reading: ``locality`` 3 into L1
    (prefetcht0), 2 into L2 (prefetcht1).  Prefetches never fault."""
    i8p = I8.as_pointer()
    f = declare(builder, "llvm.prefetch.p0", ir.VoidType(), i8p, I32, I32, I32)
    builder.call(f, [builder.inttoptr(addr, i8p), c32(0), c32(locality), c32(1)])


def load(builder, addr, typ, align=4):
    """The ``typ`` value at address ``addr`` (i64)."""
    return builder.load(builder.inttoptr(addr, typ.as_pointer()), align=align)


def store_tile(builder, accs, c_addr, ldc, ncols, element, lanes=8):
    """Store an ``mr x (lanes * nr)`` tile of ``lanes``-lane accumulators (``accs[i][v]``, allocas) to C.

    Whole vectors while all columns are valid; at the right edge (``ncols`` < ``lanes * nr``)
    masked stores (``vmaskmovps`` / ``vpmaskmovd``, or an AVX-512 mask), so that nothing outside
    C's columns is written.  One masked store per vector, not a branch per lane: per-lane
    branches made LLVM take minutes over the wide kernels.  ``element`` is the IR type of one
    lane (4 bytes).
    """
    vector = vec(element, lanes)
    store = masked_store(builder, vector)
    full = builder.icmp_signed(">=", ncols, c64(lanes * len(accs[0])))
    with builder.if_else(full) as (then, otherwise):
        with then:
            for i, row in enumerate(accs):
                crow = builder.add(c_addr, builder.mul(ldc, c64(i)))
                for v, acc in enumerate(row):
                    ptr = builder.inttoptr(builder.add(crow, c64(4 * lanes * v)), vector.as_pointer())
                    builder.store(builder.load(acc), ptr, align=4)
        with otherwise:
            masks = [lanes_below(builder, ncols, lanes, lanes * v) for v in range(len(accs[0]))]
            for i, row in enumerate(accs):
                crow = builder.add(c_addr, builder.mul(ldc, c64(i)))
                for v, acc in enumerate(row):
                    ptr = builder.inttoptr(builder.add(crow, c64(4 * lanes * v)), vector.as_pointer())
                    builder.call(store, [builder.load(acc), ptr, c32(4), masks[v]])


def gelu(builder, x, fma):
    """The exact (erf) GELU of the float32 vector ``x``: ``x/2 (1 + erf(x / sqrt 2))``, erf by
    :data:`polynomials.ERF_P` / ``ERF_Q``.  ``fma`` is ``llvm.fma`` of ``x``'s type, not
    fmuladd, so that every vector width rounds alike."""
    vt = x.type

    def clamp(v, lo, hi):
        v = builder.select(builder.fcmp_ordered("<", v, fconst(vt, lo)), fconst(vt, lo), v)
        return builder.select(builder.fcmp_ordered(">", v, fconst(vt, hi)), fconst(vt, hi), v)

    t = clamp(builder.fmul(x, fconst(vt, np.sqrt(0.5))), -4.0, 4.0)
    t2 = builder.fmul(t, t)
    p, q = fconst(vt, ERF_P[0]), fconst(vt, ERF_Q[0])
    for c in ERF_P[1:]:
        p = builder.call(fma, [p, t2, fconst(vt, c)])
    for c in ERF_Q[1:]:
        q = builder.call(fma, [q, t2, fconst(vt, c)])
    erf = builder.fdiv(builder.fmul(t, p), q)
    return builder.fmul(builder.fmul(fconst(vt, 0.5), x), builder.fadd(fconst(vt, 1.0), erf))


def vmax(builder, a, b):
    """Lane-wise max of two float vectors never NaN (``vmaxps``)."""
    return builder.select(builder.fcmp_ordered(">", a, b, flags=("nnan",)), a, b)


def vmin(builder, a, b):
    """Lane-wise min of two float vectors never NaN (``vminps``)."""
    return builder.select(builder.fcmp_ordered("<", a, b, flags=("nnan",)), a, b)


def exp(builder, v, scalef=False):
    """``exp(v)`` of a float32 vector with every lane >= -87, by :data:`polynomials.EXP_POLY`
    (Cephes expf) with ``llvm.fmuladd``; ``scalef``: the final ``y * 2^n`` in one AVX-512
    ``vscalefps`` (the same bits as the integer exponent it otherwise builds)."""
    vf = v.type
    width = vf.count
    vi = vec(I32, width)
    fmuladd = declare(builder, f"llvm.fmuladd.v{width}f32", vf, vf, vf, vf)
    floor = declare(builder, f"llvm.floor.v{width}f32", vf, vf)
    fx = builder.call(floor, [builder.call(fmuladd, [v, fconst(vf, EXP_LOG2E), fconst(vf, 0.5)])])
    r = builder.call(fmuladd, [fx, fconst(vf, -EXP_LN2_HI), v])
    r = builder.call(fmuladd, [fx, fconst(vf, -EXP_LN2_LO), r])
    z = builder.fmul(r, r)
    y = fconst(vf, EXP_POLY[0])
    for c in EXP_POLY[1:]:
        y = builder.call(fmuladd, [y, r, fconst(vf, c)])
    y = builder.fadd(builder.call(fmuladd, [y, z, r]), fconst(vf, 1.0))
    if scalef:
        f = declare(builder, "llvm.x86.avx512.mask.scalef.ps.512", vf, vf, vf, vf, ir.IntType(16), I32)
        return builder.call(f, [y, fx, ir.Constant(vf, ir.Undefined), ir.Constant(ir.IntType(16), -1), c32(4)])
    bits = builder.shl(builder.add(builder.fptosi(fx, vi), ir.Constant(vi, [127] * width)),
                       ir.Constant(vi, [23] * width))
    return builder.fmul(y, builder.bitcast(bits, vf))




def int_intrinsic(name, n_args, codegen, returns=types.void):
    """An intrinsic ``name`` of ``n_args`` int64 arguments (addresses, strides, counts) whose
    body ``codegen(context, builder, sig, args)`` emits; it refuses any non-integer argument."""
    def typer(typingctx, *args):
        if len(args) != n_args or not all(isinstance(t, types.Integer) for t in args):
            return None
        return returns(*([types.int64] * n_args)), codegen

    # numba folds a call's arguments by the definition's signature: name them, no *args
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    typer.__signature__ = inspect.Signature([inspect.Parameter("typingctx", positional)]
                                            + [inspect.Parameter(f"arg{i}", positional) for i in range(n_args)])
    typer.__name__ = typer.__qualname__ = name
    return intrinsic(typer)


def switch_on(builder, value, cases, emit):
    """IR: ``emit(case)`` for the ``case`` of ``cases`` equal to the i64 ``value`` (nothing for
    any other): one intrinsic serves several compile-time shapes chosen at run time."""
    done = builder.append_basic_block("switch.done")
    switch = builder.switch(value, done)
    for case in cases:
        block = builder.append_basic_block(f"case.{case}")
        switch.add_case(c64(case), block)
        builder.position_at_end(block)
        emit(case)
        builder.branch(done)
    builder.position_at_end(done)


ArrayType, Constant, VoidType = ir.ArrayType, ir.Constant, ir.VoidType
"""llvmlite's, re-exported: the kernels need no second IR import."""
