"""numba kernels; each public function has a plain-numpy twin of the same signature in :mod:`reference`.

Layout conventions are those of :mod:`reference` (packed sequences, ``cu_seqlens`` offsets).
Every kernel writes in place into an array it is given; none allocates per-batch scratch
(attention allocates one scratch per thread, for its longest sequence's ``(L, L)`` scores).

Each row-wise kernel has a serial core ``_x_rows(..., lo, hi)`` and a parallel driver that
splits rows into chunks with ``prange``; the public function picks the parallel driver only
when the work is large enough to repay waking the thread pool, so one short text never pays
for threads.
"""
import math

import numpy as np

from ._numba_env import pool_threads  # (must precede the numba import)
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._tiles import address as _addr
from ._tiles import HAVE_AVX512, keep_alive
from ._tiles import cpu_has as _cpu_has
from .sgemm import _ERF_P, _ERF_Q, PANEL
from .sgemm import _block as _gemm_block

# reassoc lets LLVM vectorise the row reductions (sums in LayerNorm, softmax); contract allows FMA.
FASTMATH = {"reassoc", "contract", "nsz"}
JIT = dict(cache=True, fastmath=FASTMATH, nogil=True, boundscheck=False, error_model="numpy")
PJIT = dict(JIT, parallel=True)

# Work (in elements touched) below which a kernel stays on the calling thread.
PARALLEL_MIN_ELEMENTS = 1 << 16
# Floats (64 bytes) to which attention pads each row of its score matrix (see _attention_head).
SCORE_ROW_ALIGN = 16

# erf(x) ~= x * P(x^2) / Q(x^2) on [-4, 4] (coefficients in kernels.sgemm, whose GELU epilogue
# evaluates the same form): branch-free, so it vectorises unlike libm's erf.  Float32 halves
# the cost of float64: GELU took 6% of an int8 forward pass with it.
P0, P1, P2, P3, P4, P5, P6 = (np.float32(c) for c in _ERF_P)
Q0, Q1, Q2, Q3, Q4 = (np.float32(c) for c in _ERF_Q)
SQRT_HALF = np.float32(1.0 / math.sqrt(2.0))


@njit(inline="always", **JIT)
def _erf(x):
    """erf of a float32 ``x``, in float32."""
    x = min(max(x, np.float32(-4.0)), np.float32(4.0))
    x2 = x * x
    p = ((((((P0 * x2 + P1) * x2 + P2) * x2 + P3) * x2 + P4) * x2 + P5) * x2 + P6)
    q = ((((Q0 * x2 + Q1) * x2 + Q2) * x2 + Q3) * x2 + Q4)
    return x * p / q


@njit(**JIT)
def erf(x):
    """Error function, elementwise; float32 ``(n,)`` in, float32 ``(n,)`` out."""
    out = np.empty_like(x)
    for i in range(x.size):
        out.flat[i] = np.float32(_erf(np.float64(x.flat[i])))
    return out


# Cephes expf: exp(x) = 2^n * exp(r), r = x - n ln2 in two parts, exp(r) a degree-6 polynomial.
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)


@njit(inline="always", **JIT)
def _exp_into(x, n, out, bits):
    """out[:n] = exp(x[:n]) for x <= 88; ``bits`` is int32 scratch aliasing a float32 view."""
    for j in range(n):
        v = max(x[j], np.float32(-87.0))
        fx = np.floor(v * _LOG2E + np.float32(0.5))
        r = v - fx * _LN2_HI - fx * _LN2_LO
        z = r * r
        y = ((((np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)) * r
               + np.float32(8.3334519073e-3)) * r + np.float32(4.1665795894e-2)) * r
             + np.float32(1.6666665459e-1)) * r + np.float32(5.0000001201e-1)
        out[j] = y * z + r + np.float32(1.0)
        bits[j] = (np.int32(fx) + np.int32(127)) << np.int32(23)
    scale = bits.view(np.float32)
    for j in range(n):
        out[j] *= scale[j]


_F32 = ir.FloatType()
_V8F32 = ir.VectorType(_F32, 8)
_V8I32 = ir.VectorType(ir.IntType(32), 8)
_I64 = ir.IntType(64)


def _splat(builder, scalar, vector_type):
    """``scalar`` in every lane of a ``vector_type`` (LLVM IR)."""
    undef = ir.Constant(vector_type, ir.Undefined)
    v = builder.insert_element(undef, scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, undef, ir.Constant(ir.VectorType(ir.IntType(32), vector_type.count),
                                                        [0] * vector_type.count))


def _make_softmax_row(width):
    """The intrinsic ``softmax_row(row_addr, n, scale) -> 1 / sum`` on ``width``-lane vectors (8:
    AVX2, 16: AVX-512); both widths give bitwise the same row and sum."""
    vf = ir.VectorType(_F32, width)
    vi = ir.VectorType(ir.IntType(32), width)
    shift = width.bit_length() - 1

    def softmax_row(typingctx, row_addr, n, scale):
        """``row[:n] = exp((row[:n] - max(row[:n])) * scale)`` in place, for float32 at address
        ``row_addr``; returns ``1 / sum(row[:n])`` (float32), the softmax's normalisation, which the
        caller applies to the product of the row with V (L * head_dim multiplies, not L * L).

        ``width`` lanes at a time in LLVM IR, the tail through masked loads and stores (nothing past
        ``n`` is read or written): the row max, then ``exp((x - max) * scale)`` (the Cephes
        polynomial of :func:`_exp_into`) stored and summed in one pass.  numba's own loops ran
        scalar here (its float ``max`` keeps NaN semantics), at about 1 ns an element.  ``scale``
        must be positive.
        """
        if not (isinstance(row_addr, types.Integer) and isinstance(n, types.Integer)
                and isinstance(scale, types.Float)):
            return None

        def codegen(context, builder, sig, args):
            addr, count, scale_value = args
            mod = builder.module
            ptr = vf.as_pointer()
            mask_t = ir.VectorType(ir.IntType(1), width)

            def fn(name, ret, *params):
                return cgutils.get_or_insert_function(mod, ir.FunctionType(ret, list(params)), name)

            floor = fn(f"llvm.floor.v{width}f32", vf, vf)
            scalef = fn("llvm.x86.avx512.mask.scalef.ps.512", vf, vf, vf, vf, ir.IntType(16), ir.IntType(32)) \
                if width == 16 and _cpu_has("avx512f") else None
            fmuladd = fn(f"llvm.fmuladd.v{width}f32", vf, vf, vf, vf)
            masked_load = fn(f"llvm.masked.load.v{width}f32.p0", vf, ptr, ir.IntType(32), mask_t, vf)
            masked_store = fn(f"llvm.masked.store.v{width}f32.p0", ir.VoidType(), vf, ptr, ir.IntType(32), mask_t)

            def vmax(a, b):  # vmaxps: the operands are never NaN here
                return builder.select(builder.fcmp_ordered(">", a, b, flags=("nnan",)), a, b)

            def const(x):
                return ir.Constant(vf, [float(np.float32(x))] * width)

            def at(i):
                return builder.inttoptr(builder.add(addr, builder.mul(i, ir.Constant(_I64, 4 * width))), ptr)

            n_full = builder.ashr(count, ir.Constant(_I64, shift))
            rest = builder.trunc(builder.sub(count, builder.shl(n_full, ir.Constant(_I64, shift))), ir.IntType(32))
            lanes = ir.Constant(vi, list(range(width)))
            tail = builder.icmp_signed("<", lanes, _splat(builder, rest, vi))
            has_tail = builder.icmp_signed(">", rest, ir.Constant(ir.IntType(32), 0))
            align = ir.Constant(ir.IntType(32), 4)

            def load_tail(passthru):
                return builder.call(masked_load, [at(n_full), align, tail, passthru])

            def reduce(acc, op):
                # halves folded onto each other: log2(lanes) dependent steps, not lanes - 1
                v = builder.load(acc)
                half = v.type.count // 2
                while half:
                    low = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), half),
                                                                   list(range(half))))
                    high = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), half),
                                                                    list(range(half, 2 * half))))
                    v = op(low, high)
                    half //= 2
                return builder.extract_element(v, ir.Constant(ir.IntType(32), 0))

            neg_inf = const(-np.inf)
            # four independent max chains: one chain is bound by the latency of each max
            tops = [cgutils.alloca_once_value(builder, neg_inf) for _ in range(4)]
            n_quads = builder.ashr(n_full, ir.Constant(_I64, 2))
            with cgutils.for_range(builder, n_quads) as loop:
                for u in range(4):
                    x = builder.load(at(builder.add(builder.shl(loop.index, ir.Constant(_I64, 2)), ir.Constant(_I64, u))),
                                     align=4)
                    builder.store(vmax(builder.load(tops[u]), x), tops[u])
            with cgutils.for_range_slice(builder, builder.shl(n_quads, ir.Constant(_I64, 2)), n_full,
                                         ir.Constant(_I64, 1)) as (i, _):
                builder.store(vmax(builder.load(tops[0]), builder.load(at(i), align=4)), tops[0])
            with builder.if_then(has_tail):
                builder.store(vmax(builder.load(tops[0]), load_tail(neg_inf)), tops[0])
            builder.store(vmax(vmax(builder.load(tops[0]), builder.load(tops[1])),
                               vmax(builder.load(tops[2]), builder.load(tops[3]))), tops[0])
            top_scalar = reduce(tops[0], vmax)
            scale_v = _splat(builder, scale_value, vf)
            shift_v = _splat(builder, builder.fmul(builder.fsub(ir.Constant(_F32, 0.0), top_scalar), scale_value), vf)

            def exp_shifted(x):
                v = vmax(builder.call(fmuladd, [x, scale_v, shift_v]), const(-87.0))  # (x - max) * scale
                fx = builder.call(floor, [builder.call(fmuladd, [v, const(_LOG2E), const(0.5)])])
                r = builder.call(fmuladd, [fx, const(-_LN2_HI), v])
                r = builder.call(fmuladd, [fx, const(-_LN2_LO), r])
                z = builder.fmul(r, r)
                y = const(1.9875691500e-4)
                for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
                    y = builder.call(fmuladd, [y, r, const(c)])
                y = builder.fadd(builder.call(fmuladd, [y, z, r]), const(1.0))
                if scalef is not None:  # y * 2^fx in one instruction, the same bits as below
                    return builder.call(scalef, [y, fx, ir.Constant(vf, ir.Undefined), ir.Constant(ir.IntType(16), -1),
                                                 ir.Constant(ir.IntType(32), 4)])
                bits = builder.shl(builder.add(builder.fptosi(fx, vi), ir.Constant(vi, [127] * width)),
                                   ir.Constant(vi, [23] * width))
                return builder.fmul(y, builder.bitcast(bits, vf))

            # The sum runs in 16 lanes at either width, so that both give bitwise the same row:
            # 8-lane vector i adds into lanes 0-7 when i is even, 8-15 when odd, as lanes 0-7
            # and 8-15 of 16-lane vector i / 2 do (zeros elsewhere; the terms are positive).
            sum_t = ir.VectorType(_F32, 16)
            total = cgutils.alloca_once_value(builder, ir.Constant(sum_t, [0.0] * 16))

            def accumulate(index, y):
                if width == 8:
                    zeros = ir.Constant(vf, [0.0] * 8)
                    order = ir.Constant(ir.VectorType(ir.IntType(32), 16), list(range(16)))
                    odd = builder.trunc(builder.and_(index, ir.Constant(_I64, 1)), ir.IntType(1))
                    y = builder.select(odd, builder.shuffle_vector(zeros, y, order),
                                       builder.shuffle_vector(y, zeros, order))
                builder.store(builder.fadd(builder.load(total), y), total)

            with cgutils.for_range(builder, n_full) as loop:
                y = exp_shifted(builder.load(at(loop.index), align=4))
                builder.store(y, at(loop.index), align=4)
                accumulate(loop.index, y)
            with builder.if_then(has_tail):
                y = builder.select(tail, exp_shifted(load_tail(const(0.0))), const(0.0))
                builder.call(masked_store, [y, at(n_full), align, tail])
                accumulate(n_full, y)
            return builder.fdiv(ir.Constant(_F32, 1.0), reduce(total, builder.fadd))

        return types.float32(types.int64, types.int64, types.float32), codegen

    softmax_row.__name__ = softmax_row.__qualname__ = f"_softmax_row{width}"
    return intrinsic(softmax_row)


_softmax_row8 = _make_softmax_row(8)
_softmax_row16 = _make_softmax_row(16)


def _make_transpose(width):
    """The intrinsic ``transpose(dst, dst_stride, src, src_stride, n_rows)``: a ``width x width``
    float32 block, ``dst[c, r] = src[r, c]`` (strides in bytes), rows ``r >= n_rows`` of ``src``
    not read and taken as zeros.

    log2(width) rounds of interleaving row ``i`` with row ``i + width / 2``, in registers: numba's
    scalar loops ran at a load and a store an element, strided (measured, the keys of one
    112-token head: 1.0 us in cache, 1.4 us from L3).
    """
    vf = ir.VectorType(_F32, width)
    half = width // 2
    low = [x for j in range(half) for x in (j, width + j)]
    high = [x for j in range(half, width) for x in (j, width + j)]

    def transpose(typingctx, dst, dst_stride, src, src_stride, n_rows):
        if not all(isinstance(t, types.Integer) for t in (dst, dst_stride, src, src_stride, n_rows)):
            return None

        def codegen(context, builder, sig, args):
            dst_addr, dst_step, src_addr, src_step, rows = args
            mask_t = ir.VectorType(ir.IntType(1), width)
            masked_load = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vf, [vf.as_pointer(), ir.IntType(32), mask_t, vf]),
                f"llvm.masked.load.v{width}f32.p0")
            zero = ir.Constant(vf, [0.0] * width)
            align = ir.Constant(ir.IntType(32), 4)
            v = []
            for r in range(width):
                ptr = builder.inttoptr(builder.add(src_addr, builder.mul(src_step, ir.Constant(_I64, r))),
                                       vf.as_pointer())
                # a row past n_rows may lie past the array: a masked load with no lane set
                # reads nothing
                inside = builder.icmp_signed(">", rows, ir.Constant(_I64, r))
                v.append(builder.call(masked_load, [ptr, align, _splat(builder, inside, mask_t), zero]))
            for _ in range(width.bit_length() - 1):
                v = [builder.shuffle_vector(v[i], v[i + half], ir.Constant(ir.VectorType(ir.IntType(32), width), order))
                     for i in range(half) for order in (low, high)]
            for c in range(width):
                ptr = builder.inttoptr(builder.add(dst_addr, builder.mul(dst_step, ir.Constant(_I64, c))),
                                       vf.as_pointer())
                builder.store(v[c], ptr, align=4)
            return context.get_dummy_value()

        return types.void(types.int64, types.int64, types.int64, types.int64, types.int64), codegen

    transpose.__name__ = transpose.__qualname__ = f"_transpose{width}"
    return intrinsic(transpose)


_transpose8 = _make_transpose(8)
_transpose16 = _make_transpose(16)


@intrinsic
def _copy16(typingctx, dst, src):
    """Copy 16 float32 from address ``src`` to ``dst`` (one vector load and store; two on AVX2)."""
    if not (isinstance(dst, types.Integer) and isinstance(src, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        vf = ir.VectorType(_F32, 16)
        value = builder.load(builder.inttoptr(args[1], vf.as_pointer()), align=4)
        builder.store(value, builder.inttoptr(args[0], vf.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.void(types.int64, types.int64), codegen


@intrinsic
def _scale16(typingctx, addr, factor):
    """Multiply the 16 float32 at address ``addr`` by ``factor`` in place (numba's indexed loop
    ran scalar here: 2-3 us for one 112-token head's output)."""
    if not (isinstance(addr, types.Integer) and isinstance(factor, types.Float)):
        return None

    def codegen(context, builder, sig, args):
        vf = ir.VectorType(_F32, 16)
        ptr = builder.inttoptr(args[0], vf.as_pointer())
        builder.store(builder.fmul(builder.load(ptr, align=4), _splat(builder, args[1], vf)), ptr, align=4)
        return context.get_dummy_value()

    return types.void(types.int64, types.float32), codegen


@njit(**JIT)
def exp(x):
    """Exponential, elementwise; float32 ``(n,)`` in, float32 ``(n,)`` out (x <= 88)."""
    out = np.empty_like(x)
    bits = np.empty(x.size, np.int32)
    _exp_into(x, x.size, out, bits)
    return out


@njit(**JIT)
def _gather_rows(token_ids, position_ids, type_ids, word_table, position_table, type_table, out, lo, hi):
    width = out.shape[1]
    for t in range(lo, hi):
        w = word_table[token_ids[t]]
        p = position_table[position_ids[t]]
        y = type_table[type_ids[t]]
        for c in range(width):
            out[t, c] = (w[c] + y[c]) + p[c]


@njit(**PJIT)
def _gather_parallel(token_ids, position_ids, type_ids, word_table, position_table, type_table, out, chunk):
    n = out.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        _gather_rows(token_ids, position_ids, type_ids, word_table, position_table, type_table,
                     out, c * chunk, min(n, (c + 1) * chunk))


@njit(inline="always", **JIT)
def _score_stride(length):
    """Floats between rows of one head's score matrix: ``length`` rounded up to SCORE_ROW_ALIGN."""
    return (length + SCORE_ROW_ALIGN - 1) // SCORE_ROW_ALIGN * SCORE_ROW_ALIGN


@njit(**JIT)
def _attention_head(qkv, start, length, head, n_heads, head_dim, out, scratch, wide):
    """softmax(Q K^T / sqrt(d)) V for one head of one sequence, as two packed GEMMs (kernels.sgemm).

    ``scratch``: float32, at least :func:`_scratch_size` ``(length, head_dim)`` elements.
    """
    width = n_heads * head_dim
    q0 = head * head_dim
    k0 = width + q0
    v0 = 2 * width + q0
    scale = np.float32(1.0 / math.sqrt(head_dim))
    # K^T and V in the GEMM's packed-weight layout: panels of PANEL columns, K-major, the
    # columns past the edge zero
    k_panels = (length + PANEL - 1) // PANEL
    v_panels = (head_dim + PANEL - 1) // PANEL
    n_keys = k_panels * head_dim * PANEL
    n_values = v_panels * length * PANEL
    keys = scratch[:n_keys].reshape((k_panels, head_dim, PANEL))
    values = scratch[n_keys:n_keys + n_values].reshape((v_panels, length, PANEL))
    # score rows padded to whole 64-byte vectors: a row's masked tail store then never covers
    # the next row, whose loads would otherwise wait for it to retire (no store forwarding from
    # masked stores): softmax of 18- to 25-key rows 35 -> 14 ns a row
    ld = _score_stride(length)
    n_scores = length * ld
    scores = scratch[n_keys + n_values:n_keys + n_values + n_scores].reshape((length, ld))
    inverse_sums = scratch[n_keys + n_values + n_scores:n_keys + n_values + n_scores + length]
    row = qkv.strides[0]
    base = _addr(qkv) + start * row
    # keys: width x width blocks transposed in registers; dimensions past the last whole block
    # (head_dim not a multiple of the width) element by element
    lanes = 16 if wide else 8
    blocked = head_dim - head_dim % lanes
    for p in range(k_panels):
        n = min(PANEL, length - p * PANEL)
        for c0 in range(0, PANEL, lanes):
            for d0 in range(0, blocked, lanes):
                dst = _addr(keys) + ((p * head_dim + d0) * PANEL + c0) * 4
                src = base + (p * PANEL + c0) * row + (k0 + d0) * 4
                if wide:
                    _transpose16(dst, PANEL * 4, src, row, n - c0)
                else:
                    _transpose8(dst, PANEL * 4, src, row, n - c0)
        for d in range(blocked, head_dim):
            for c in range(PANEL):
                keys[p, d, c] = qkv[start + p * PANEL + c, k0 + d] if c < n else np.float32(0.0)
    if head_dim % PANEL:
        values[v_panels - 1] = 0.0
    for j in range(length):
        for p in range(head_dim // PANEL):
            _copy16(_addr(values) + (p * length + j) * (PANEL * 4), base + j * row + (v0 + p * PANEL) * 4)
        for c in range(head_dim - head_dim % PANEL, head_dim):
            values[v_panels - 1, j, c % PANEL] = qkv[start + j, v0 + c]
    _gemm_block(base + q0 * 4, row, _addr(keys), head_dim, _addr(scores), ld * 4,
                length, 0, 0, length, 0, k_panels, length, wide)
    for i in range(length):
        # 16 lanes pay off from 16 keys (measured, one head: 256 tokens 108 -> 97 us, 112 tokens
        # 27 -> 23 us); below that they would run only the masked tail.  Both widths give the
        # same bits (see _make_softmax_row).
        if wide and length >= 16:
            inverse_sums[i] = _softmax_row16(_addr(scores) + i * ld * 4, length, scale)
        else:
            inverse_sums[i] = _softmax_row8(_addr(scores) + i * ld * 4, length, scale)
    orow = out.strides[0]
    _gemm_block(_addr(scores), ld * 4, _addr(values), length, _addr(out) + start * orow + q0 * 4, orow,
                head_dim, 0, 0, length, 0, v_panels, length, wide)
    out_row = _addr(out) + start * orow + q0 * 4
    for i in range(length):
        for d in range(0, head_dim - head_dim % 16, 16):
            _scale16(out_row + i * orow + d * 4, inverse_sums[i])
        for d in range(head_dim - head_dim % 16, head_dim):
            out[start + i, q0 + d] *= inverse_sums[i]
    keep_alive(scratch)  # the GEMMs read it by address (see keep_alive)


@njit(**JIT)
def _scratch_size(length, head_dim):
    """float32 elements of one head's packed K^T, packed V, ``(length, length)`` scores (rows
    padded to :data:`SCORE_ROW_ALIGN`) and ``(length,)`` softmax normalisations."""
    return ((length + PANEL - 1) // PANEL + (head_dim + PANEL - 1) // PANEL) * PANEL * max(length, head_dim) \
        + length * _score_stride(length) + length


@njit(**JIT)
def _attention_tasks(qkv, cu_seqlens, n_heads, head_dim, out, t0, t1, wide):
    """Tasks ``t0 <= task < t1`` (numbered head-major: ``task = head * n_seqs + seq``), one scratch.

    They run sequence by sequence, each sequence's heads in turn: the rows of ``qkv`` that the
    heads of one sequence read lie together.  Measured in forward passes over the bench corpus
    (a Xeon, attention just after the QKV GEMM), against head by head over every sequence:
    0.82-0.86 -> 0.72-0.77 s a pass at 2 threads, 1.54-1.60 -> 1.46-1.47 s at 1.
    """
    n_seqs = len(cu_seqlens) - 1
    longest = 0
    for s in range(n_seqs):
        longest = max(longest, cu_seqlens[s + 1] - cu_seqlens[s])
    scratch = np.empty(_scratch_size(longest, head_dim), np.float32)
    h0 = t0 // n_seqs
    h1 = (t1 - 1) // n_seqs + 1
    for s in range(n_seqs):
        for h in range(h0, h1):
            task = h * n_seqs + s
            if t0 <= task < t1:
                _attention_head(qkv, cu_seqlens[s], cu_seqlens[s + 1] - cu_seqlens[s], h, n_heads, head_dim, out,
                                scratch, wide)


@njit(**JIT)
def _attention_serial(qkv, cu_seqlens, n_heads, head_dim, out, wide):
    _attention_tasks(qkv, cu_seqlens, n_heads, head_dim, out, 0, (len(cu_seqlens) - 1) * n_heads, wide)


@njit(**PJIT)
def _attention_parallel(qkv, cu_seqlens, n_heads, head_dim, out, n_blocks, wide):
    # Head-major task order, cut into equal contiguous blocks: a block of heads over every
    # sequence costs the same whatever the (sorted) sequence lengths are.
    n_tasks = (len(cu_seqlens) - 1) * n_heads
    for b in prange(n_blocks):
        _attention_tasks(qkv, cu_seqlens, n_heads, head_dim, out, b * n_tasks // n_blocks,
                         (b + 1) * n_tasks // n_blocks, wide)


@njit(**JIT)
def _bias_gelu_rows(x, bias, lo, hi):
    width = x.shape[1]
    for t in range(lo, hi):
        for c in range(width):
            v = x[t, c] + bias[c]
            x[t, c] = np.float32(0.5) * v * (np.float32(1.0) + _erf(v * SQRT_HALF))


@njit(**PJIT)
def _bias_gelu_parallel(x, bias, chunk):
    n = x.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        _bias_gelu_rows(x, bias, c * chunk, min(n, (c + 1) * chunk))


@njit(**JIT)
def _layer_norm_rows(x, bias, residual, gamma, beta, eps, lo, hi):
    width = x.shape[1]
    for t in range(lo, hi):
        row = x[t]
        if bias is not None:
            for c in range(width):
                row[c] += bias[c]
        if residual is not None:
            for c in range(width):
                row[c] += residual[t, c]
        total = 0.0
        for c in range(width):
            total += np.float64(row[c])
        mean = np.float32(total / width)
        sq = 0.0
        for c in range(width):
            row[c] -= mean
            sq += np.float64(row[c]) * np.float64(row[c])
        inv = np.float32(1.0 / math.sqrt(sq / width + eps))
        for c in range(width):
            row[c] = row[c] * inv * gamma[c] + beta[c]


@njit(**PJIT)
def _layer_norm_parallel(x, bias, residual, gamma, beta, eps, chunk):
    n = x.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        _layer_norm_rows(x, bias, residual, gamma, beta, eps, c * chunk, min(n, (c + 1) * chunk))


@njit(**JIT)
def _mean_pool(x, cu_seqlens, out):
    width = x.shape[1]
    for s in range(len(cu_seqlens) - 1):
        start, stop = cu_seqlens[s], cu_seqlens[s + 1]
        acc = np.zeros(width, np.float32)
        for t in range(start, stop):
            for c in range(width):
                acc[c] += x[t, c]
        inv = np.float32(stop - start)
        for c in range(width):
            out[s, c] = acc[c] / inv


@njit(**JIT)
def _max_pool(x, cu_seqlens, out):
    width = x.shape[1]
    for s in range(len(cu_seqlens) - 1):
        start, stop = cu_seqlens[s], cu_seqlens[s + 1]
        for c in range(width):
            out[s, c] = x[start, c]
        for t in range(start + 1, stop):
            for c in range(width):
                out[s, c] = max(out[s, c], x[t, c])


@njit(**JIT)
def _l2_normalize(x, out):
    for i in range(x.shape[0]):
        sq = np.float32(0.0)
        for c in range(x.shape[1]):
            sq += x[i, c] * x[i, c]
        norm = max(np.float32(math.sqrt(sq)), np.float32(1e-12))
        for c in range(x.shape[1]):
            out[i, c] = x[i, c] / norm


def _chunk(n_rows, width, min_elements=PARALLEL_MIN_ELEMENTS):
    """Rows per parallel task, or 0 when the work is too small to share out."""
    if n_rows * width < min_elements or pool_threads() < 2:
        return 0
    return max(1, min(64, n_rows // 16))


def gather_embeddings(token_ids, position_ids, type_ids, word_table, position_table, type_table, out):
    chunk = _chunk(*out.shape)
    if chunk:
        _gather_parallel(token_ids, position_ids, type_ids, word_table, position_table, type_table, out, chunk)
    else:
        _gather_rows(token_ids, position_ids, type_ids, word_table, position_table, type_table, out, 0, out.shape[0])
    return out


def attention(qkv, cu_seqlens, n_heads, head_dim, out):
    # Each (sequence, head) task costs a few microseconds even for a short text, more than a
    # launch on the pool: measured at 2 threads, one 18-token text 20.6 -> 13.4 us, 8 tokens
    # 6.8 -> 5.2 us.
    threads = pool_threads() if (len(cu_seqlens) - 1) * n_heads > 1 \
        and out.shape[0] * out.shape[1] >= PARALLEL_MIN_ELEMENTS // 32 else 1
    if threads > 1:
        _attention_parallel(qkv, cu_seqlens, n_heads, head_dim, out, threads, HAVE_AVX512)
    else:
        _attention_serial(qkv, cu_seqlens, n_heads, head_dim, out, HAVE_AVX512)
    return out


def bias_gelu(x, bias):
    # erf costs ~10x a LayerNorm element: worth the pool from 16k elements (18 x 1536 at 2
    # threads: 9.8 -> 8.2 us; 40 x 1536: 21 -> 14 us)
    chunk = _chunk(*x.shape, min_elements=PARALLEL_MIN_ELEMENTS // 4)
    if chunk:
        _bias_gelu_parallel(x, bias, chunk)
    else:
        _bias_gelu_rows(x, bias, 0, x.shape[0])
    return x


def bias_residual_layer_norm(x, bias, residual, gamma, beta, eps):
    chunk = _chunk(*x.shape)
    if chunk:
        _layer_norm_parallel(x, bias, residual, gamma, beta, float(eps), chunk)
    else:
        _layer_norm_rows(x, bias, residual, gamma, beta, float(eps), 0, x.shape[0])
    return x


def mean_pool(x, cu_seqlens, out):
    _mean_pool(x, cu_seqlens, out)
    return out


def max_pool(x, cu_seqlens, out):
    _max_pool(x, cu_seqlens, out)
    return out


def first_token_pool(x, cu_seqlens, out):
    out[:] = x[cu_seqlens[:-1]]
    return out


def l2_normalize(x, out):
    _l2_normalize(x, out)
    return out


for _twin in (gather_embeddings, attention, bias_gelu, bias_residual_layer_norm, mean_pool,
              max_pool, first_token_pool, l2_normalize):
    from . import reference as _reference
    _twin.__doc__ = getattr(_reference, _twin.__name__).__doc__
