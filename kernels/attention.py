"""Multi-head self-attention over packed sequences, numba: the twin of :func:`reference.attention`.

Per (sequence, head): K^T and V are copied into the packed-weight layout of :mod:`sgemm` (K by
``width x width`` register transposes), the scores are one packed GEMM, each score row is
softmaxed in place by an IR kernel (:func:`_make_softmax_row`) that returns ``1 / sum``, the
product with V is a second packed GEMM, and its rows are scaled by those ``1 / sum``.  The
same FMA chains at either vector width, so 8- and 16-lane runs agree bitwise.
"""
import math

import numpy as np

from ._numba_env import pool_threads  # (must precede the numba import)
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import ir
from .cpu import AVX512F, ISA
from .polynomials import EXP_MIN
from .sgemm import PANEL, block as gemm_block
from .tasks import PARALLEL_MIN_ELEMENTS, address, keep_alive

JIT = dict(cache=True, fastmath={"reassoc", "contract", "nsz"}, nogil=True, boundscheck=False,
           error_model="numpy")

SCORE_ROW_ALIGN = 16
"""Floats (64 bytes) to which each row of a head's score matrix is padded (see _attention_head)."""


def _make_softmax_row(width):
    """The intrinsic ``softmax_row(row_addr, n, scale) -> 1 / sum`` on ``width``-lane vectors (8:
    AVX2, 16: AVX-512); both widths give bitwise the same row and sum.

    ``row[:n] = exp((row[:n] - max(row[:n])) * scale)`` in place, for float32 at address
    ``row_addr``; returns ``1 / sum(row[:n])`` (float32), the softmax's normalisation, which the
    caller applies to the product of the row with V (L * head_dim multiplies, not L * L).
    ``width`` lanes at a time, the tail through masked loads and stores (nothing past ``n`` is
    read or written): the row max, then ``exp((x - max) * scale)`` (:func:`ir.exp`) stored and
    summed in one pass.  numba's own loops ran scalar here (its float ``max`` keeps NaN
    semantics).  ``scale`` must be positive.
    """
    vf = ir.vec(ir.F32, width)
    vi = ir.vec(ir.I32, width)
    shift = width.bit_length() - 1

    def codegen(context, builder, sig, args):
        addr, count, scale_value = args
        fmuladd = ir.declare(builder, f"llvm.fmuladd.v{width}f32", vf, vf, vf, vf)
        masked_load = ir.masked_load(builder, vf)
        masked_store = ir.masked_store(builder, vf)

        def vmax(a, b):
            return ir.vmax(builder, a, b)

        def at(i):
            return builder.inttoptr(builder.add(addr, builder.mul(i, ir.c64(4 * width))), vf.as_pointer())

        n_full = builder.ashr(count, ir.c64(shift))
        rest = builder.trunc(builder.sub(count, builder.shl(n_full, ir.c64(shift))), ir.I32)
        tail = builder.icmp_signed("<", ir.Constant(vi, list(range(width))), ir.splat(builder, rest, vi))
        has_tail = builder.icmp_signed(">", rest, ir.c32(0))
        align = ir.c32(4)

        def load_tail(passthru):
            return builder.call(masked_load, [at(n_full), align, tail, passthru])

        def reduce(acc, op):
            # halves folded onto each other: log2(lanes) dependent steps, not lanes - 1
            v = builder.load(acc)
            half = v.type.count // 2
            while half:
                low = builder.shuffle_vector(v, v, ir.Constant(ir.vec(ir.I32, half), list(range(half))))
                high = builder.shuffle_vector(v, v, ir.Constant(ir.vec(ir.I32, half), list(range(half, 2 * half))))
                v = op(low, high)
                half //= 2
            return builder.extract_element(v, ir.c32(0))

        neg_inf = ir.fconst(vf, -np.inf)
        # four independent max chains: one chain is bound by the latency of each max
        tops = [cgutils.alloca_once_value(builder, neg_inf) for _ in range(4)]
        n_quads = builder.ashr(n_full, ir.c64(2))
        with cgutils.for_range(builder, n_quads) as loop:
            for u in range(4):
                x = builder.load(at(builder.add(builder.shl(loop.index, ir.c64(2)), ir.c64(u))), align=4)
                builder.store(vmax(builder.load(tops[u]), x), tops[u])
        with cgutils.for_range_slice(builder, builder.shl(n_quads, ir.c64(2)), n_full, ir.c64(1)) as (i, _):
            builder.store(vmax(builder.load(tops[0]), builder.load(at(i), align=4)), tops[0])
        with builder.if_then(has_tail):
            builder.store(vmax(builder.load(tops[0]), load_tail(neg_inf)), tops[0])
        builder.store(vmax(vmax(builder.load(tops[0]), builder.load(tops[1])),
                           vmax(builder.load(tops[2]), builder.load(tops[3]))), tops[0])
        top_scalar = reduce(tops[0], vmax)
        scale_v = ir.splat(builder, scale_value, vf)
        shift_v = ir.splat(builder, builder.fmul(builder.fsub(ir.Constant(ir.F32, 0.0), top_scalar), scale_value), vf)

        def exp_shifted(x):  # exp((x - max) * scale)
            v = vmax(builder.call(fmuladd, [x, scale_v, shift_v]), ir.fconst(vf, EXP_MIN))
            return ir.exp(builder, v, scalef=width == 16 and AVX512F)

        # The sum runs in 16 lanes at either width, so that both give bitwise the same row:
        # 8-lane vector i adds into lanes 0-7 when i is even, 8-15 when odd, as lanes 0-7
        # and 8-15 of 16-lane vector i / 2 do (zeros elsewhere; the terms are positive).
        sum_t = ir.vec(ir.F32, 16)
        total = cgutils.alloca_once_value(builder, ir.fconst(sum_t, 0.0))

        def accumulate(index, y):
            if width == 8:
                zeros = ir.fconst(vf, 0.0)
                order = ir.Constant(ir.vec(ir.I32, 16), list(range(16)))
                odd = builder.trunc(builder.and_(index, ir.c64(1)), ir.I1)
                y = builder.select(odd, builder.shuffle_vector(zeros, y, order),
                                   builder.shuffle_vector(y, zeros, order))
            builder.store(builder.fadd(builder.load(total), y, flags=ir.ORDERED), total)

        with cgutils.for_range(builder, n_full) as loop:
            y = exp_shifted(builder.load(at(loop.index), align=4))
            builder.store(y, at(loop.index), align=4)
            accumulate(loop.index, y)
        with builder.if_then(has_tail):
            y = builder.select(tail, exp_shifted(load_tail(ir.fconst(vf, 0.0))), ir.fconst(vf, 0.0))
            builder.call(masked_store, [y, at(n_full), align, tail])
            accumulate(n_full, y)
        return builder.fdiv(ir.Constant(ir.F32, 1.0), reduce(total, lambda a, b: builder.fadd(a, b, flags=ir.ORDERED)))

    def softmax_row(typingctx, row_addr, n, scale):
        if not (isinstance(row_addr, types.Integer) and isinstance(n, types.Integer)
                and isinstance(scale, types.Float)):
            return None
        return types.float32(types.int64, types.int64, types.float32), codegen

    softmax_row.__name__ = softmax_row.__qualname__ = f"_softmax_row{width}"
    return intrinsic(softmax_row)


_softmax_row8 = _make_softmax_row(8)
_softmax_row16 = _make_softmax_row(16)


def _make_transpose(width):
    """The intrinsic ``transpose(dst, dst_stride, src, src_stride, n_rows)``: a ``width x width``
    float32 block, ``dst[c, r] = src[r, c]`` (strides in bytes), rows ``r >= n_rows`` of ``src``
    not read and taken as zeros.

    log2(width) rounds of interleaving row ``i`` with row ``i + width / 2``, in registers
    (numba's scalar loops ran at a load and a store an element, strided).
    """
    vf = ir.vec(ir.F32, width)
    half = width // 2
    low = [x for j in range(half) for x in (j, width + j)]
    high = [x for j in range(half, width) for x in (j, width + j)]

    def codegen(context, builder, sig, args):
        dst_addr, dst_step, src_addr, src_step, rows = args
        masked_load = ir.masked_load(builder, vf)
        v = []
        for r in range(width):
            src = builder.add(src_addr, builder.mul(src_step, ir.c64(r)))
            # a row past n_rows may lie past the array: a masked load with no lane set reads nothing
            inside = builder.icmp_signed(">", rows, ir.c64(r))
            v.append(builder.call(masked_load, [builder.inttoptr(src, vf.as_pointer()), ir.c32(4),
                                                ir.splat(builder, inside, ir.vec(ir.I1, width)), ir.fconst(vf, 0.0)]))
        for _ in range(width.bit_length() - 1):
            v = [builder.shuffle_vector(v[i], v[i + half], ir.Constant(ir.vec(ir.I32, width), order))
                 for i in range(half) for order in (low, high)]
        for c in range(width):
            ptr = builder.inttoptr(builder.add(dst_addr, builder.mul(dst_step, ir.c64(c))), vf.as_pointer())
            builder.store(v[c], ptr, align=4)
        return context.get_dummy_value()

    return ir.int_intrinsic(f"_transpose{width}", 5, codegen)


_transpose8 = _make_transpose(8)
_transpose16 = _make_transpose(16)


def _copy16_codegen(context, builder, sig, args):
    vf = ir.vec(ir.F32, 16)
    builder.store(ir.load(builder, args[1], vf), builder.inttoptr(args[0], vf.as_pointer()), align=4)
    return context.get_dummy_value()


_copy16 = ir.int_intrinsic("_copy16", 2, _copy16_codegen)
"""``_copy16(dst, src)``: copy 16 float32 from address ``src`` to ``dst`` (one vector load and store)."""


@intrinsic
def _scale16(typingctx, addr, factor):
    """Multiply the 16 float32 at address ``addr`` by ``factor`` in place (numba's indexed loop
    ran scalar here)."""
    if not (isinstance(addr, types.Integer) and isinstance(factor, types.Float)):
        return None

    def codegen(context, builder, sig, args):
        vf = ir.vec(ir.F32, 16)
        ptr = builder.inttoptr(args[0], vf.as_pointer())
        builder.store(builder.fmul(builder.load(ptr, align=4), ir.splat(builder, args[1], vf)), ptr, align=4)
        return context.get_dummy_value()

    return types.void(types.int64, types.float32), codegen


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
    # masked stores)
    ld = _score_stride(length)
    n_scores = length * ld
    scores = scratch[n_keys + n_values:n_keys + n_values + n_scores].reshape((length, ld))
    inverse_sums = scratch[n_keys + n_values + n_scores:n_keys + n_values + n_scores + length]
    row = qkv.strides[0]
    base = address(qkv) + start * row
    # keys: width x width blocks transposed in registers; dimensions past the last whole block
    # (head_dim not a multiple of the width) element by element
    lanes = 16 if wide else 8
    blocked = head_dim - head_dim % lanes
    for p in range(k_panels):
        n = min(PANEL, length - p * PANEL)
        for c0 in range(0, PANEL, lanes):
            for d0 in range(0, blocked, lanes):
                dst = address(keys) + ((p * head_dim + d0) * PANEL + c0) * 4
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
            _copy16(address(values) + (p * length + j) * (PANEL * 4), base + j * row + (v0 + p * PANEL) * 4)
        for c in range(head_dim - head_dim % PANEL, head_dim):
            values[v_panels - 1, j, c % PANEL] = qkv[start + j, v0 + c]
    gemm_block(base + q0 * 4, row, address(keys), head_dim, address(scores), ld * 4,
               length, 0, 0, length, 0, k_panels, length, wide)
    for i in range(length):
        # 16 lanes pay off from 16 keys; below that they would run only the masked tail.  Both
        # widths give the same bits (see _make_softmax_row).
        if wide and length >= 16:
            inverse_sums[i] = _softmax_row16(address(scores) + i * ld * 4, length, scale)
        else:
            inverse_sums[i] = _softmax_row8(address(scores) + i * ld * 4, length, scale)
    orow = out.strides[0]
    gemm_block(address(scores), ld * 4, address(values), length, address(out) + start * orow + q0 * 4, orow,
               head_dim, 0, 0, length, 0, v_panels, length, wide)
    out_row = address(out) + start * orow + q0 * 4
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
    heads of one sequence read lie together (faster than head by head over every sequence).
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


@njit(parallel=True, **JIT)
def _attention_parallel(qkv, cu_seqlens, n_heads, head_dim, out, n_blocks, wide):
    # Head-major task order, cut into equal contiguous blocks: a block of heads over every
    # sequence costs the same whatever the (sorted) sequence lengths are.
    n_tasks = (len(cu_seqlens) - 1) * n_heads
    for b in prange(n_blocks):
        _attention_tasks(qkv, cu_seqlens, n_heads, head_dim, out, b * n_tasks // n_blocks,
                         (b + 1) * n_tasks // n_blocks, wide)


def attention(qkv, cu_seqlens, n_heads, head_dim, out):
    """numba twin of :func:`reference.attention` (same arguments), on 16-lane transposes and
    softmax where :data:`cpu.ISA` allows (``wide``; 8 lanes give bitwise the same ``out``)."""
    # Each (sequence, head) task costs a few microseconds even for a short text, more than a
    # launch on the pool: one short text already gains from two threads.
    threads = pool_threads() if (len(cu_seqlens) - 1) * n_heads > 1 \
        and out.shape[0] * out.shape[1] >= PARALLEL_MIN_ELEMENTS // 32 else 1
    if threads > 1:
        _attention_parallel(qkv, cu_seqlens, n_heads, head_dim, out, threads, ISA.avx512)
    else:
        _attention_serial(qkv, cu_seqlens, n_heads, head_dim, out, ISA.avx512)
    return out


