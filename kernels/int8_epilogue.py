"""The fused linears' epilogue: an int32 strip of C becomes float32 while it is still in L1.

:class:`Dequantization` holds a layer's per-column constants padded to whole panels;
:func:`descriptor` packs the addresses of one call's arrays into an int64 vector the IR reads;
``dequantize_strip_u8s8`` / ``dequantize_strip_s16s8`` (intrinsics) rewrite rows ``[r0, r1)``
of one 16-column strip of C in place, with the formula and operation order of
``quant.dequantize_output`` (so the fused result is bitwise that of the separate steps)::

    C[i, j] = float32(acc - zero[i] * col_sum[j]) * (scale[i] * col_scale[j])
              + x[i, outlier_index[0]] * outlier_weight[0, j] + ...   (in order, no FMA)
              (+ bias[j])

``strip(c_addr, ldc, ncols, epi_addr, r0, r1, j0)``: ``c_addr`` the address of ``C[0, j0]``,
``ldc`` bytes between rows, ``ncols`` valid columns (the rest neither read nor written).
"""
import numpy as np

from ._numba_env import may_run_parallel  # noqa: F401  (must precede the numba import)
from numba import njit
from numba.core import cgutils

from . import ir
from .int8_pack import PANEL
from .specialize import by_operand
from .tasks import address

EPI_FIELDS = ("zero", "scale", "col_scale", "col_sum", "x", "ldx", "outlier_index", "n_outliers",
              "outlier_weight", "ldo", "bias")
"""The int64 fields of an epilogue descriptor, in order."""
NO_EPILOGUE = np.empty(0, dtype=np.int64)
"""The descriptor of a raw int32 product (no epilogue)."""

_NR = PANEL // 8


def _make_strip(with_zero):
    """The ``strip`` intrinsic; ``with_zero``: per-row zero points (u8s8)."""
    v8f, v8i = ir.vec(ir.F32, 8), ir.vec(ir.I32, 8)

    def codegen(context, builder, sig, args):
        c_addr, ldc, ncols, epi_addr, r0, r1, j0 = args

        def load(addr, typ, align=4):
            return ir.load(builder, addr, typ, align)

        def column_vectors(field, typ):
            return [load(builder.add(f[field], builder.add(col4, ir.c64(32 * v))), typ) for v in range(_NR)]

        f = {name: load(builder.add(epi_addr, ir.c64(8 * k)), ir.I64, 8) for k, name in enumerate(EPI_FIELDS)}
        col4 = builder.mul(j0, ir.c64(4))
        col_scale = column_vectors("col_scale", v8f)
        if with_zero:
            col_sum = column_vectors("col_sum", v8i)
        has_bias = builder.icmp_signed("!=", f["bias"], ir.c64(0))
        bias_slots = [cgutils.alloca_once_value(builder, ir.fconst(v8f, 0.0)) for _ in range(_NR)]
        with builder.if_then(has_bias):
            for slot, value in zip(bias_slots, column_vectors("bias", v8f)):
                builder.store(value, slot)
        bias = [builder.load(slot) for slot in bias_slots]
        full = builder.icmp_signed(">=", ncols, ir.c64(PANEL))
        ints = [cgutils.alloca_once(builder, v8i) for _ in range(_NR)]
        row = [[cgutils.alloca_once(builder, v8f) for _ in range(_NR)]]
        with cgutils.for_range_slice(builder, r0, r1, ir.c64(1)) as (i, _):
            crow = builder.add(c_addr, builder.mul(i, ldc))
            with builder.if_else(full) as (whole, edge):
                with whole:
                    for v in range(_NR):
                        builder.store(load(builder.add(crow, ir.c64(32 * v)), v8i), ints[v])
                with edge:  # only the valid columns are read (C may end right after them)
                    for v in range(_NR):
                        builder.store(ir.Constant(v8i, [0] * 8), ints[v])
                        for lane in range(8):
                            with builder.if_then(builder.icmp_signed(">", ncols, ir.c64(8 * v + lane))):
                                value = load(builder.add(crow, ir.c64(32 * v + 4 * lane)), ir.I32)
                                builder.store(builder.insert_element(builder.load(ints[v]), value, ir.c32(lane)),
                                              ints[v])
            r4 = builder.mul(i, ir.c64(4))
            step = ir.splat(builder, load(builder.add(f["scale"], r4), ir.F32), v8f)
            if with_zero:
                zero = ir.splat(builder, load(builder.add(f["zero"], r4), ir.I32), v8i)
            for v in range(_NR):
                q = builder.load(ints[v])
                if with_zero:
                    q = builder.sub(q, builder.mul(zero, col_sum[v]))
                builder.store(builder.fmul(builder.sitofp(q, v8f), builder.fmul(step, col_scale[v])), row[0][v])
            xrow = builder.add(f["x"], builder.mul(i, f["ldx"]))
            with cgutils.for_range(builder, f["n_outliers"]) as loop:
                p = loop.index
                channel = load(builder.add(f["outlier_index"], builder.mul(p, ir.c64(8))), ir.I64, 8)
                xv = ir.splat(builder, load(builder.add(xrow, builder.mul(channel, ir.c64(4))), ir.F32), v8f)
                wrow = builder.add(builder.add(f["outlier_weight"], builder.mul(p, f["ldo"])), col4)
                for v in range(_NR):
                    w = load(builder.add(wrow, ir.c64(32 * v)), v8f)
                    builder.store(builder.fadd(builder.load(row[0][v]), builder.fmul(xv, w)), row[0][v])
            with builder.if_then(has_bias):
                for v in range(_NR):
                    builder.store(builder.fadd(builder.load(row[0][v]), bias[v]), row[0][v])
            ir.store_tile(builder, row, crow, ldc, ncols, ir.F32)
        return context.get_dummy_value()

    return ir.int_intrinsic(f"_dequantize_strip_{'u8s8' if with_zero else 's16s8'}", 7, codegen)


dequantize_strip_u8s8 = _make_strip(with_zero=True)
dequantize_strip_s16s8 = _make_strip(with_zero=False)
_strip = by_operand("dequantize_strip", dequantize_strip_u8s8, dequantize_strip_s16s8)


@njit(cache=True, nogil=True, boundscheck=False)
def descriptor(x, scale, zero, col_scale, col_sum, outlier_index, outlier_weight, bias):
    """The int64 epilogue descriptor (:data:`EPI_FIELDS`) of these arrays, which must outlive its
    use (``bias`` empty: none)."""
    epi = np.empty(len(EPI_FIELDS), dtype=np.int64)
    epi[0] = address(zero)
    epi[1] = address(scale)
    epi[2] = address(col_scale)
    epi[3] = address(col_sum)
    epi[4] = address(x)
    epi[5] = x.strides[0]
    epi[6] = address(outlier_index)
    epi[7] = outlier_index.shape[0]
    epi[8] = address(outlier_weight)
    epi[9] = outlier_weight.strides[0]
    epi[10] = address(bias) if bias.shape[0] else 0
    return epi


class Dequantization:
    """A layer's per-column dequantisation constants, padded once to whole panels.

    With the per-row ones made at each call (:func:`int8_linear.linear_u8s8`), they turn the
    int32 product ``acc`` into float32 (the formula of ``quant.dequantize_output``, see above).

    Parameters
    ----------
    col_scale : ndarray of float32, (N,)
    col_sum : ndarray of int32, (N,), or None
        Per-column sums of the integer weights; needed with per-row zero points (u8s8).
    outlier_index : ndarray of int64, (P,), optional
        Input channels computed in float32 outside the integer product.
    outlier_weight : ndarray of float32, (P, N), optional
        Their weights (``W[:, outlier_index].T``).
    """

    def __init__(self, col_scale, col_sum=None, outlier_index=None, outlier_weight=None):
        self.col_scale = np.ascontiguousarray(col_scale, np.float32)
        n = self.n = self.col_scale.shape[0]
        self.col_sum = None if col_sum is None else np.ascontiguousarray(col_sum, np.int32)
        self.outlier_index = np.ascontiguousarray(np.zeros(0) if outlier_index is None else outlier_index,
                                                  np.int64)
        p = self.outlier_index.shape[0]
        self.outlier_weight = np.ascontiguousarray(np.zeros((p, n)) if outlier_weight is None else outlier_weight,
                                                   np.float32).reshape(p, n)
        width = -(-n // PANEL) * PANEL  # the kernels read whole panels of the per-column arrays
        self.padded_col_scale = np.zeros(width, np.float32)
        self.padded_col_scale[:n] = self.col_scale
        self.padded_col_sum = np.zeros(width, np.int32)
        if self.col_sum is not None:
            self.padded_col_sum[:n] = self.col_sum
        self.padded_outlier_weight = np.zeros((p, width), np.float32)
        self.padded_outlier_weight[:, :n] = self.outlier_weight

    def padded_bias(self, bias):
        """``bias`` padded to whole panels (the strips read whole vectors), or an empty array for None."""
        if bias is None:
            return np.empty(0, np.float32)
        padded = np.zeros(self.padded_col_scale.shape[0], np.float32)
        padded[:self.n] = bias
        return padded


@njit(cache=True, nogil=True, boundscheck=False, inline="always")
def dequantize_panels(operand, c_addr, ldc, n, epi_addr, r0, r1, p, count):
    """Run the epilogue (if ``epi_addr``) on rows ``[r0, r1)`` of the ``count`` panels from ``p``
    of C (``c_addr``: ``C[0, 0]``): right after a micro-kernel wrote them, while in L1.
    ``operand``: the activations (uint8: the u8s8 strip, else s16s8), or a scalar of their type."""
    if epi_addr == 0:
        return
    for q in range(p, p + count):
        _strip(operand, c_addr + q * (PANEL * 4), ldc, min(PANEL, n - q * PANEL), epi_addr, r0, r1, q * PANEL)
