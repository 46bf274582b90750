"""numba twins of :mod:`quant` (same names, signatures and bitwise results).

No fast-math on the elementwise arithmetic: contracting ``a * b + c`` into an FMA would make
these kernels differ from their numpy twins in the last bit.  Only the row min/max scan
allows ``nnan``/``nsz`` so that LLVM vectorises it (a min/max is exact in any order).

Each kernel has a serial core over rows ``[lo, hi)`` and a ``prange`` driver used when the
work is large enough to repay waking the thread pool.
"""
import numpy as np

from ._numba_env import may_run_parallel  # noqa: F401  (must precede the numba import)
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import ir
from .quant import U8_LEVELS
from .tasks import address, chunk_rows, keep_alive, n_chunks, row_chunk

JIT = dict(cache=True, nogil=True, boundscheck=False, error_model="numpy")
PJIT = dict(JIT, parallel=True)
SCAN_JIT = dict(JIT, fastmath={"nnan", "nsz"})


# ----------------------------------------------------------------------------------------------
# Eight lanes at a time in LLVM IR: numba's scalar float min/max (NaN semantics) does not
# vectorise.  Each intrinsic covers the whole 8-lane groups of a row; the numba code
# finishes the rest with the same scalar operations, so results are bitwise unchanged.

_V8F32 = ir.vec(ir.F32, 8)
_LANES = 8


def _vectors(builder, count):
    return builder.ashr(count, ir.c64(3))


def _load8(builder, base, i):
    return ir.load(builder, builder.add(base, builder.mul(i, ir.c64(32))), _V8F32)


@intrinsic
def _scan8(typingctx, x_addr, mask_addr, n):
    """(min(0, x * mask), max(0, x * mask)) over the first ``8 * (n // 8)`` float32 at the addresses."""
    if not all(isinstance(t, types.Integer) for t in (x_addr, mask_addr, n)):
        return None
    sig = types.UniTuple(types.float32, 2)(types.int64, types.int64, types.int64)

    def codegen(context, builder, sig, args):
        xa, ma, count = args
        zero = ir.Constant(_V8F32, [0.0] * 8)
        lo = cgutils.alloca_once_value(builder, zero)
        hi = cgutils.alloca_once_value(builder, zero)
        with cgutils.for_range(builder, _vectors(builder, count)) as loop:
            v = builder.fmul(_load8(builder, xa, loop.index), _load8(builder, ma, loop.index))
            builder.store(ir.vmin(builder, builder.load(lo), v), lo)
            builder.store(ir.vmax(builder, builder.load(hi), v), hi)
        lo_v, hi_v = builder.load(lo), builder.load(hi)
        lanes = [ir.c32(j) for j in range(_LANES)]
        lo_s = builder.extract_element(lo_v, lanes[0])
        hi_s = builder.extract_element(hi_v, lanes[0])
        for j in lanes[1:]:
            lo_s = ir.vmin(builder, lo_s, builder.extract_element(lo_v, j))
            hi_s = ir.vmax(builder, hi_s, builder.extract_element(hi_v, j))
        return context.make_tuple(builder, sig.return_type, [lo_s, hi_s])

    return sig, codegen


def _make_round8(kind):
    """``q[c] = code(rint(x[c] * mask[c] * inv) (+ zp))`` clamped to [lo, hi], over whole 8-lane groups."""
    out_type = ir.I8 if kind == "u8" else ir.I16

    def codegen(context, builder, sig, args):
        xa, ma, count, inv, offset, low, high, qa = args
        rint = ir.declare(builder, "llvm.rint.v8f32", _V8F32, _V8F32)
        inv_v, offset_v, low_v, high_v = (ir.splat(builder, a, _V8F32) for a in (inv, offset, low, high))
        vec_out = ir.vec(out_type, 8)
        with cgutils.for_range(builder, _vectors(builder, count)) as loop:
            v = builder.fmul(builder.fmul(_load8(builder, xa, loop.index), _load8(builder, ma, loop.index)), inv_v)
            v = builder.call(rint, [v])
            if kind == "u8":
                v = builder.fadd(v, offset_v)
            v = ir.vmin(builder, ir.vmax(builder, v, low_v), high_v)
            codes = builder.trunc(builder.fptosi(v, ir.vec(ir.I32, 8)), vec_out)
            step = ir.c64(8 * out_type.width // 8)
            builder.store(codes, builder.inttoptr(builder.add(qa, builder.mul(loop.index, step)),
                                                  vec_out.as_pointer()), align=1)
        return context.get_dummy_value()

    def round8(typingctx, x_addr, mask_addr, n, inv, offset, low, high, q_addr):
        if not all(isinstance(t, types.Integer) for t in (x_addr, mask_addr, n, q_addr)):
            return None
        return types.void(types.int64, types.int64, types.int64, types.float32, types.float32, types.float32,
                          types.float32, types.int64), codegen

    round8.__name__ = round8.__qualname__ = f"_round8_{kind}"
    return intrinsic(round8)


_round8_u8 = _make_round8("u8")
_round8_s16 = _make_round8("s16")


@njit(**JIT)
def _vector_ok(x, mask, q):
    """Whether rows of ``x``, ``mask`` and rows of ``q`` are unit-stride (the 8-lane paths)."""
    return x.strides[1] == 4 and mask.strides[0] == 4 and q.strides[1] == q.itemsize


@njit(**SCAN_JIT)
def _row_range(x, mask, i, vector):
    lo = np.float32(0.0)
    hi = np.float32(0.0)
    start = 0
    if vector:
        start = x.shape[1] // 8 * 8
        lo, hi = _scan8(address(x) + i * x.strides[0], address(mask), x.shape[1])
    for c in range(start, x.shape[1]):
        v = x[i, c] * mask[c]
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi


@njit(**JIT)
def _quantize_rows(x, mask, top, q, scale, zero, lo_row, hi_row):
    """Rows ``[lo_row, hi_row)``: u8 codes in ``[0, top]`` with zero points (``zero`` an array),
    or symmetric codes in ``[-top, top]`` (``zero`` None; numba compiles each case apart)."""
    levels = np.float32(top)
    vector = _vector_ok(x, mask, q)
    for i in range(lo_row, hi_row):
        lo, hi = _row_range(x, mask, i, vector)
        extent = hi - lo if zero is not None else max(hi, -lo)
        if extent > 0:
            inv = levels / extent
            scale[i] = extent / levels
        else:
            inv = np.float32(0.0)
            scale[i] = 0.0
        if zero is not None:
            zp = np.rint(-lo * inv)
            zero[i] = np.int32(zp)
            low = np.float32(0.0)
        else:
            zp = np.float32(0.0)
            low = -levels
        start = x.shape[1] // 8 * 8 if vector else 0
        if vector and zero is not None:
            _round8_u8(address(x) + i * x.strides[0], address(mask), x.shape[1], inv, zp, low, levels,
                       address(q) + i * q.strides[0])
        elif vector:
            _round8_s16(address(x) + i * x.strides[0], address(mask), x.shape[1], inv, zp, low, levels,
                        address(q) + i * q.strides[0])
        for c in range(start, x.shape[1]):
            v = np.rint((x[i, c] * mask[c]) * inv)
            if zero is not None:
                v += zp
            q[i, c] = min(max(v, low), levels)
    keep_alive(x)
    keep_alive(mask)
    keep_alive(q)


@njit(**PJIT)
def _quantize_parallel(x, mask, top, q, scale, zero, chunk):
    for c in prange(n_chunks(x.shape[0], chunk)):
        _quantize_rows(x, mask, top, q, scale, zero, *chunk_rows(c, x.shape[0], chunk))


@njit(**JIT)
def _quantize(x, mask, top, q, scale, zero, chunk):
    if chunk:
        _quantize_parallel(x, mask, top, q, scale, zero, chunk)
    else:
        _quantize_rows(x, mask, top, q, scale, zero, 0, x.shape[0])


@njit(**JIT)
def quantize_u8_into(x, mask, codes, scale, zero, chunk):
    """:func:`quantize_rows_u8` on ``chunk`` rows a parallel task (0: serial); for the fused
    int8 linears, which call it from numba."""
    _quantize(x, mask, U8_LEVELS, codes, scale, zero, chunk)


@njit(**JIT)
def quantize_s16_into(x, mask, max_code, codes, scale, chunk):
    """:func:`quantize_rows_s16`; as :func:`quantize_u8_into`."""
    _quantize(x, mask, max_code, codes, scale, None, chunk)


@njit(**JIT)
def _dequantize_rows(acc, out, x, scale, zero, col_scale, col_sum, outlier_index, outlier_weight,
                     lo_row, hi_row):
    n = out.shape[1]
    # acc is usually out's own memory: LLVM's run-time overlap check would then fail and leave
    # every loop scalar, so each row is worked on in local buffers.
    ints = np.empty(n, dtype=np.int32)
    steps = np.empty(n, dtype=np.float32)
    row = np.empty(n, dtype=np.float32)
    for i in range(lo_row, hi_row):
        rs = scale[i]
        if zero is None:
            for j in range(n):
                ints[j] = acc[i, j]
        else:
            zp = zero[i]
            for j in range(n):
                # int32 arithmetic (|result| < 2**31 by construction), then one rounding
                ints[j] = np.int32(acc[i, j] - np.int32(zp * col_sum[j]))
        for j in range(n):
            steps[j] = rs * col_scale[j]
        for j in range(n):
            row[j] = np.float32(ints[j]) * steps[j]
        for p in range(outlier_index.shape[0]):
            xv = x[i, outlier_index[p]]
            weights = outlier_weight[p]
            for j in range(n):
                row[j] += xv * weights[j]
        for j in range(n):
            out[i, j] = row[j]


@njit(**PJIT)
def _dequantize_parallel(acc, out, x, scale, zero, col_scale, col_sum, outlier_index, outlier_weight, chunk):
    for c in prange(n_chunks(out.shape[0], chunk)):
        _dequantize_rows(acc, out, x, scale, zero, col_scale, col_sum, outlier_index, outlier_weight,
                         *chunk_rows(c, out.shape[0], chunk))


@njit(**JIT)
def _dequantize_weight_rows(q, col_scale, outlier_index, outlier_weight, out, lo_row, hi_row):
    for r in range(lo_row, hi_row):
        s = col_scale[r]
        for c in range(q.shape[1]):
            out[r, c] = np.float32(q[r, c]) * s
        for p in range(outlier_index.shape[0]):
            out[r, outlier_index[p]] = outlier_weight[p, r]


@njit(**PJIT)
def _dequantize_weights_parallel(q, col_scale, outlier_index, outlier_weight, out, chunk):
    for c in prange(n_chunks(q.shape[0], chunk)):
        _dequantize_weight_rows(q, col_scale, outlier_index, outlier_weight, out, *chunk_rows(c, q.shape[0],
                                chunk))


@njit(**JIT)
def _dequantize_packed_panels(q, col_scale, outlier_index, outlier_weight, out, lo_panel, hi_panel):
    n, k = q.shape
    width = out.shape[2]
    for p in range(lo_panel, hi_panel):
        for j in range(width):
            r = p * width + j
            if r >= n:
                for c in range(k):
                    out[p, c, j] = 0.0
                continue
            s = col_scale[r]
            for c in range(k):
                out[p, c, j] = np.float32(q[r, c]) * s
            for i in range(outlier_index.shape[0]):
                out[p, outlier_index[i], j] = outlier_weight[i, r]


@njit(**PJIT)
def _dequantize_packed_parallel(q, col_scale, outlier_index, outlier_weight, out, chunk):
    for c in prange(n_chunks(out.shape[0], chunk)):
        _dequantize_packed_panels(q, col_scale, outlier_index, outlier_weight, out, *chunk_rows(c,
                                  out.shape[0], chunk))


@njit(**JIT)
def _gather_rows(q_table, row_scale, ids, out):
    for t in range(ids.shape[0]):
        r = ids[t]
        s = row_scale[r]
        for c in range(q_table.shape[1]):
            out[t, c] = np.float32(q_table[r, c]) * s


def quantize_rows_u8(x, mask, q, scale, zero):
    _quantize(x, mask, U8_LEVELS, q, scale, zero, row_chunk(*x.shape))


def quantize_rows_s16(x, mask, qmax, q, scale):
    _quantize(x, mask, int(qmax), q, scale, None, row_chunk(*x.shape))


def dequantize_output(acc, out, x, scale, zero, col_scale, col_sum, outlier_index, outlier_weight):
    chunk = row_chunk(*out.shape)
    if chunk:
        _dequantize_parallel(acc, out, x, scale, zero, col_scale, col_sum, outlier_index, outlier_weight, chunk)
    else:
        _dequantize_rows(acc, out, x, scale, zero, col_scale, col_sum, outlier_index, outlier_weight,
                         0, out.shape[0])
    return out


def dequantize_weights(q, col_scale, outlier_index, outlier_weight, out):
    chunk = row_chunk(*q.shape)
    if chunk:
        _dequantize_weights_parallel(q, col_scale, outlier_index, outlier_weight, out, chunk)
    else:
        _dequantize_weight_rows(q, col_scale, outlier_index, outlier_weight, out, 0, q.shape[0])
    return out


def dequantize_weights_packed(q, col_scale, outlier_index, outlier_weight, out):
    chunk = row_chunk(*q.shape)
    if chunk:
        _dequantize_packed_parallel(q, col_scale, outlier_index, outlier_weight, out, max(1, chunk // out.shape[2]))
    else:
        _dequantize_packed_panels(q, col_scale, outlier_index, outlier_weight, out, 0, out.shape[0])
    return out


def gather_rows(q_table, row_scale, ids, out):
    _gather_rows(q_table, row_scale, ids, out)
    return out


for _twin in (quantize_rows_u8, quantize_rows_s16, dequantize_output, dequantize_weights,
              dequantize_weights_packed, gather_rows):
    from . import quant as _reference
    _twin.__doc__ = getattr(_reference, _twin.__name__).__doc__
