"""Exact integer GEMMs for quantised linear layers: ``C[m, n] = sum_k A[m, k] * W[n, k]`` in int32.

Two kernels, each consuming weights packed once by its ``pack_weights_*`` function:

``gemm_u8s8``  (mode "w8a8")
    ``A`` uint8 with every value in ``[0, 127]``, ``W`` int8 (any value in ``[-128, 127]``).
    AVX2 inner step: ``vpmaddubsw`` (u8 x s8, adjacent pairs summed to int16) then ``vpmaddwd``
    against a vector of ones (adjacent int16 pairs summed to int32).  ``vpmaddubsw`` *saturates*
    its pair sums at int16, so the precondition ``0 <= A <= 127`` is what makes the result exact:
    ``2 * 127 * 128 = 32512 <= 32767``.  Values of ``A`` above 127 give silently wrong results
    (they are not checked: checking would cost a pass over ``A``).
``gemm_s16s8`` (mode "w8a16")
    ``A`` int16, ``W`` int8 (stored sign-extended to int16 by the packer).  AVX2 inner step:
    ``vpmaddwd`` (s16 x s16, adjacent pairs summed to int32).  Exact for every int16 ``A``.

Where the CPU has VNNI (:data:`HAVE_VNNI`: AVX-VNNI, or AVX512-VNNI with AVX512-VL) each pair of
steps above is one fused instruction on the same 256-bit registers -- ``vpdpbusd`` (u8s8) and
``vpdpwssd`` (s16s8) -- with identical int32 results (``vpdpbusd`` does not saturate, so the
``A <= 127`` precondition remains only for the AVX2 path), and the micro-kernel takes 6 rows of
``A`` instead of 4 (the freed temporaries become accumulators).

Both accumulate in int32 and wrap on overflow (as any int32 GEMM does): results are exact when
``K * max|A| * max|W| < 2**31`` -- e.g. ``|A| <= 2047``, ``|W| <= 127`` allows ``K <= 8259``;
for u8s8 (``A <= 127``) ``K <= 132104``.

Two fused layers over the same kernels, for float32 activations:

``linear_u8s8`` / ``linear_s16s8``
    ``out = x @ W.T``: each row of ``x`` quantised on its own (u8 with a zero point, or
    symmetric int16), the exact product above, and the dequantising epilogue applied strip by
    strip while each 16-column strip of ``C`` is still in L1 -- one call, bitwise equal to
    ``quant.quantize_rows_*``, the product and ``quant.dequantize_output`` run in turn (their
    numpy twins ``linear_*_reference`` do exactly that).  Per-column constants come in a
    :class:`Dequantization`, padded once.

Packed weight layout (both kernels)
-----------------------------------
Output columns are split into *panels* of ``PANEL = 16`` columns (two 8-lane int32 vectors),
the reduction axis into *groups* of ``KG`` consecutive ``k`` (4 for u8s8, 2 for s16s8), so that
one group of one ``A`` row is 4 bytes, broadcast to all eight lanes by the micro-kernel::

    packed[p, g, j, b] = W[p * PANEL + j, g * KG + b]      (zero where out of range)

    u8s8 : int8  array of shape (ceil(N / 16), ceil(K / 4), 16, 4)
    s16s8: int16 array of shape (ceil(N / 16), ceil(K / 2), 16, 2)

i.e. one panel is a contiguous run of ``ceil(K / KG)`` 64-byte blocks (two 32-byte vectors,
columns 0-7 and 8-15), each holding the group's ``KG`` weights of each of its 16 columns.  The zero padding of ``N``
and ``K`` makes every micro-kernel step full width; the kernels never write outside ``(M, N)``
(edge columns are stored with masked stores).  ``A``'s ``K`` need not be a multiple of ``KG``: a row
tail is handled by a zero-padded copy of ``A`` (no out-of-bounds reads).

Implementation selection
------------------------
:data:`HAVE_AVX2` is decided at import from the CPU numba compiles for.  With AVX2 the kernels
are numba functions around a register-tiled micro-kernel (``MR = 4`` rows of ``A``, or
``MR_VNNI = 6`` with VNNI, by two 8-column vectors of ``W``; with AVX-512 VNNI
(:data:`HAVE_VNNI512`) up to 12 rows by one 16-column zmm vector; fewer rows at an ``M`` edge)
written in LLVM IR through ``numba.extending.intrinsic``.  Without it -- or after
:func:`select` ``(False)`` -- the same packed weights go through a portable numba loop nest
(no x86 intrinsics; LLVM vectorises it for whatever CPU it runs on), several times slower but
exact and identical in result.  The numpy twins ``gemm_*_reference`` (int64 matmul of the
unpacked weights) are the readable spec.

Where the CPU has AMX-INT8 and Linux grants the tile state (:data:`HAVE_AMX`), u8s8 products
with ``K % 64 == 0`` run on the AMX tile unit instead: ``tdpbusd`` multiplies a 16-row x 64-byte
tile of ``A`` by 16 consecutive groups of a packed panel (the packed layout is the tile unit's
own ``B`` layout) into a 16 x 16 int32 tile, four such tiles per micro-kernel call (32 rows x
two panels).  Same exact int32 results; ``select(amx=False)`` or ``$MINILM_NP_AMX=0`` keeps the
vector kernels.

Large products run on numba's thread pool (``prange`` over blocks of rows and column panels);
products under :data:`PARALLEL_MIN_OPS` multiply-adds (one sentence) stay on the calling thread.
"""
import os
import sys

import numpy as np

from ._numba_env import pool_threads  # (must precede the numba import)
from ._tiles import address, cpu_has as _cpu_has, keep_alive, plan_tasks, store_tile
from . import quant_jit
from .buffers import empty_aligned
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
from llvmlite import ir

__all__ = [
    "HAVE_AVX2", "HAVE_VNNI", "PANEL", "pack_weights_u8s8", "pack_weights_s16s8", "unpack_weights",
    "gemm_u8s8", "gemm_s16s8", "gemm_u8s8_reference", "gemm_s16s8_reference", "Dequantization",
    "linear_u8s8", "linear_s16s8", "linear_u8s8_reference", "linear_s16s8_reference", "select",
    "using_avx2", "HAVE_AMX", "using_amx",
]

PANEL = 16
"""Output columns per packed panel (two 8 x int32 vectors)."""
KG_U8S8 = 4
"""Reduction elements per packed group for u8s8 (4 bytes of one ``A`` row)."""
KG_S16S8 = 2
"""Reduction elements per packed group for s16s8 (2 int16 of one ``A`` row)."""
MR = 4
"""Rows of ``A`` per micro-kernel call."""
NR = PANEL // 8
PARALLEL_MIN_OPS = 1 << 21
"""Multiply-adds (``M * N * K``) below which a product stays on the calling thread (~20 us of
single-thread work; with a warm pool two threads already win at ~1M, measured)."""
PARALLEL_MIN_OPS_AMX = 1 << 24
"""The same for u8s8 products on the AMX tiles, which finish one sentence's largest GEMM
(18 x 1536 x 384) in ~10 us on one core: split over two threads it measured slower."""

_JIT = dict(cache=True, nogil=True, boundscheck=False)


# ----------------------------------------------------------------------------------------------
# CPU detection


HAVE_AVX2 = _cpu_has("avx2") and os.environ.get("MINILM_NP_INT8_AVX2", "1") != "0"
"""Whether the AVX2 micro-kernels are usable (``$MINILM_NP_INT8_AVX2=0`` forces them off)."""

HAVE_VNNI = HAVE_AVX2 and (_cpu_has("avxvnni") or (_cpu_has("avx512vnni") and _cpu_has("avx512vl")))
"""Whether the micro-kernels multiply with ``vpdpbusd`` / ``vpdpwssd`` (one instruction for
the two or three of the AVX2 step; the same exact sums, since no u8s8 pair sum of ``A <= 127``
saturates)."""

HAVE_VNNI512 = HAVE_VNNI and _cpu_has("avx512vnni") and _cpu_has("avx512bw") and _cpu_has("avx512f")
"""Whether the VNNI micro-kernels use 16-lane (zmm) vectors: one 64-byte weight group (the
whole panel row) a step, and up to 12 rows a tile."""

MR_VNNI = 12 if HAVE_VNNI512 else 6 if HAVE_VNNI else MR
"""Rows per micro-kernel call: with VNNI (an AVX-512 host, 32 vector registers) six rows keep
twelve accumulators in flight (u8s8 measured 265 -> 285-320 GOP/s on one Zen 4 core)."""



def _amx_permitted():
    """Ask Linux for the AMX tile state (``arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)``).

    Linux hands the 8 KiB of tile registers only to processes that ask first; an AMX
    instruction without this permission is killed with SIGILL.  The permission is
    process-wide and inherited across fork.
    """
    import ctypes
    import platform
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(158, 0x1023, 18) == 0  # SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA
    except (OSError, AttributeError):  # pragma: no cover - no syscall() in this libc
        return False


AMX_CAPABLE = HAVE_VNNI512 and _cpu_has("amx-tile") and _cpu_has("amx-int8") and _amx_permitted()
"""Whether numba's target CPU has AMX-INT8 and Linux granted this process its tile state (the
AMX micro-kernels are compiled only then)."""

HAVE_AMX = AMX_CAPABLE and os.environ.get("MINILM_NP_AMX", "1") != "0"
"""Whether u8s8 products with ``K % 64 == 0`` run on the AMX tile unit (``tdpbusd``, 16 x 16
int32 results from 16 x 64 bytes of ``A`` and 64 x 16 of ``W`` per instruction;
``$MINILM_NP_AMX=0`` turns it off)."""

_use_avx2 = HAVE_AVX2
_use_amx = HAVE_AMX


def select(avx2=None, amx=None):
    """Choose the implementation behind :func:`gemm_u8s8` / :func:`gemm_s16s8`.

    Parameters
    ----------
    avx2 : bool or None
        ``True`` for the AVX2 micro-kernels (only honoured when :data:`HAVE_AVX2`), ``False``
        for the portable numba loops, ``None`` to restore the import-time default.

    Returns
    -------
    amx : bool or None
        ``True`` for the AMX tiles in u8s8 products (only honoured when :data:`HAVE_AMX`
        and the AVX2 kernels are selected), ``False`` for the vector kernels, ``None`` for the
        import-time default.

    Returns
    -------
    tuple of bool
        The previous ``(avx2, amx)``, so tests can restore them with ``select(*previous)``.
    """
    global _use_avx2, _use_amx
    previous = _use_avx2, _use_amx
    _use_avx2 = HAVE_AVX2 if avx2 is None else bool(avx2) and HAVE_AVX2
    _use_amx = (HAVE_AMX if amx is None else bool(amx) and HAVE_AMX) and _use_avx2
    return previous


def using_avx2():
    """True when the public GEMMs currently run the AVX2 micro-kernels."""
    return _use_avx2


def using_amx():
    """True when u8s8 products with ``K % 64 == 0`` currently run on the AMX tiles."""
    return _use_amx


# ----------------------------------------------------------------------------------------------
# Packing


def _pack(w, kg, dtype):
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D (N, K), got shape {w.shape}")
    if w.dtype != np.int8:
        raise TypeError(f"weights must be int8, got {w.dtype}")
    n, k = w.shape
    n_panels = -(-n // PANEL)
    n_groups = -(-k // kg)
    padded = np.zeros((n_panels * PANEL, n_groups * kg), dtype=dtype)
    padded[:n, :k] = w
    packed = empty_aligned((n_panels, n_groups, PANEL, kg), dtype)  # whole cache lines (kernels.buffers)
    # (P, PANEL, G, kg) -> (P, G, PANEL, kg)
    packed[...] = padded.reshape(n_panels, PANEL, n_groups, kg).transpose(0, 2, 1, 3)
    return packed


def pack_weights_u8s8(w):
    """Pack int8 weights for :func:`gemm_u8s8`.

    Parameters
    ----------
    w : ndarray of int8, shape (N, K)
        Weights laid out like ``torch.nn.Linear.weight`` (out_features, in_features).

    Returns
    -------
    ndarray of int8, shape (ceil(N / 16), ceil(K / 4), 16, 4), C-contiguous
        ``packed[p, g, j, b] = w[16 p + j, 4 g + b]``, zero-padded.
    """
    return _pack(w, KG_U8S8, np.int8)


def pack_weights_s16s8(w):
    """Pack int8 weights for :func:`gemm_s16s8` (sign-extended to int16).

    Parameters
    ----------
    w : ndarray of int8, shape (N, K)
        Weights laid out like ``torch.nn.Linear.weight`` (out_features, in_features).

    Returns
    -------
    ndarray of int16, shape (ceil(N / 16), ceil(K / 2), 16, 2), C-contiguous
        ``packed[p, g, j, b] = w[16 p + j, 2 g + b]``, zero-padded.
    """
    return _pack(w, KG_S16S8, np.int16)


def unpack_weights(packed, n, k):
    """Invert ``pack_weights_*``: the int8 weights of shape ``(n, k)``.

    Parameters
    ----------
    packed : ndarray of int8 or int16, shape (P, G, 16, KG)
        Output of :func:`pack_weights_u8s8` or :func:`pack_weights_s16s8`.
    n, k : int
        The original ``(N, K)``.

    Returns
    -------
    ndarray of int8, shape (n, k)
    """
    p, g, panel, kg = packed.shape
    return packed.transpose(0, 2, 1, 3).reshape(p * panel, g * kg)[:n, :k].astype(np.int8)


# ----------------------------------------------------------------------------------------------
# Argument checks shared by the kernels and their twins


_UINT8, _INT8, _INT16, _INT32 = (np.dtype(t) for t in (np.uint8, np.int8, np.int16, np.int32))


def _check(a, packed, n, out, a_dtype, w_dtype, kg, name):
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if a.ndim != 2 or a.dtype != a_dtype:
        raise TypeError(f"{name}: a must be a 2-D {np.dtype(a_dtype).name} array, got "
                        f"{a.dtype} with shape {a.shape}")
    if not isinstance(packed, np.ndarray) or packed.dtype != w_dtype or packed.ndim != 4 \
            or packed.shape[2] != PANEL or packed.shape[3] != kg or not packed.flags.c_contiguous:
        raise TypeError(f"{name}: packed must come from the matching pack_weights_* function")
    m, k = a.shape
    n = int(n)
    n_panels, n_groups = packed.shape[:2]
    if -(-k // kg) != n_groups:
        raise ValueError(f"{name}: a has K={k} but the packed weights hold {n_groups} groups of {kg}")
    if n < 0 or -(-n // PANEL) != n_panels:
        raise ValueError(f"{name}: n={n} does not match the {n_panels} packed panels of {PANEL}")
    if out is None:
        out = np.empty((m, n), dtype=np.int32)
    elif not isinstance(out, np.ndarray) or out.dtype != _INT32 or out.shape != (m, n):
        raise ValueError(f"{name}: out must be an int32 array of shape {(m, n)}")
    return a, n, out


def _reference(a, packed, n, out):
    k = a.shape[1]
    w = unpack_weights(packed, n, k).astype(np.int64)
    out[...] = (a.astype(np.int64) @ w.T).astype(np.int32)  # wraps like the int32 kernels
    return out


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
    a, n, out = _check(a, packed, n, out, _UINT8, _INT8, KG_U8S8, "gemm_u8s8_reference")
    return _reference(a, packed, n, out)


def gemm_s16s8_reference(a, packed, n, out=None):
    """numpy twin of :func:`gemm_s16s8` (int64 matmul of the unpacked weights, cast to int32).

    Parameters
    ----------
    a : ndarray of int16, shape (M, K)
    packed : ndarray of int16, from :func:`pack_weights_s16s8`
    n : int
        Number of output columns ``N``.
    out : ndarray of int32, shape (M, N), optional

    Returns
    -------
    ndarray of int32, shape (M, N)
    """
    a, n, out = _check(a, packed, n, out, _INT16, _INT16, KG_S16S8, "gemm_s16s8_reference")
    return _reference(a, packed, n, out)


# ----------------------------------------------------------------------------------------------
# AVX2 micro-kernel, emitted as LLVM IR
#
# kernel(a_addr, lda, w_addr, n_groups, c_addr, ldc, ncols, pf_addr) computes an (mr x 16)
# int32 tile:
#   a_addr: address of A[i0, 0]; lda: bytes between A rows (each group reads 4 bytes of a row);
#   w_addr: address of one packed panel (n_groups blocks of 64 bytes);
#   c_addr: address of C[i0, j0]; ldc: bytes between C rows; ncols: valid columns (1..16),
#   columns >= ncols are not written;
#   pf_addr: address of a panel to prefetch line by line (the next one), or of this one.
#
# strip(c_addr, ldc, ncols, epi_addr, r0, r1, j0) dequantises rows [r0, r1) of one 16-column
# strip of C in place, int32 -> float32, right after the micro-kernels wrote it (the
# formula and operation order of ``quant.dequantize_output``):
#     C[i, j] = float32(acc - zero[i] * col_sum[j]) * (scale[i] * col_scale[j])
#               + x[i, outlier_index[0]] * outlier_weight[0, j] + ...   (in order, no FMA)
#   c_addr: address of C[0, j0]; epi_addr: an int64 descriptor (``_EPI_FIELDS``) of the
#   arrays' addresses (per-column arrays padded to whole panels).

_EPI_FIELDS = ("zero", "scale", "col_scale", "col_sum", "x", "ldx", "outlier_index", "n_outliers",
               "outlier_weight", "ldo", "bias")

_I8, _I16, _I32, _I64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
_F32 = ir.FloatType()
_V32I8, _V16I16, _V8I32 = ir.VectorType(_I8, 32), ir.VectorType(_I16, 16), ir.VectorType(_I32, 8)
_V8F32 = ir.VectorType(_F32, 8)


def _splat(builder, scalar, vector_type):
    v = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(vector_type, ir.Undefined), ir.Constant(_V8I32, [0] * 8))


def _make_strip(with_zero):
    """The ``strip`` intrinsic (see above); ``with_zero``: per-row zero points (u8s8)."""
    def codegen(context, builder, sig, args):
        c_addr, ldc, ncols, epi_addr, r0, r1, j0 = args

        def c64(x):
            return ir.Constant(_I64, x)

        def load(addr, typ, align=4):
            return builder.load(builder.inttoptr(addr, typ.as_pointer()), align=align)

        f = {name: load(builder.add(epi_addr, c64(8 * k)), _I64, 8) for k, name in enumerate(_EPI_FIELDS)}
        col4 = builder.mul(j0, c64(4))
        col_scale = [load(builder.add(f["col_scale"], builder.add(col4, c64(32 * v))), _V8F32) for v in range(NR)]
        if with_zero:
            col_sum = [load(builder.add(f["col_sum"], builder.add(col4, c64(32 * v))), _V8I32) for v in range(NR)]
        has_bias = builder.icmp_signed("!=", f["bias"], c64(0))
        bias_slots = [cgutils.alloca_once_value(builder, ir.Constant(_V8F32, [0.0] * 8)) for _ in range(NR)]
        with builder.if_then(has_bias):
            for v in range(NR):
                builder.store(load(builder.add(f["bias"], builder.add(col4, c64(32 * v))), _V8F32), bias_slots[v])
        bias = [builder.load(slot) for slot in bias_slots]
        full = builder.icmp_signed(">=", ncols, c64(PANEL))
        ints = [cgutils.alloca_once(builder, _V8I32) for _ in range(NR)]
        row = [[cgutils.alloca_once(builder, _V8F32) for _ in range(NR)]]
        with cgutils.for_range_slice(builder, r0, r1, c64(1)) as (i, _):
            crow = builder.add(c_addr, builder.mul(i, ldc))
            with builder.if_else(full) as (whole, edge):
                with whole:
                    for v in range(NR):
                        builder.store(load(builder.add(crow, c64(32 * v)), _V8I32), ints[v])
                with edge:  # only the valid columns are read (C may end right after them)
                    for v in range(NR):
                        builder.store(ir.Constant(_V8I32, [0] * 8), ints[v])
                        for lane in range(8):
                            with builder.if_then(builder.icmp_signed(">", ncols, c64(8 * v + lane))):
                                value = load(builder.add(crow, c64(32 * v + 4 * lane)), _I32)
                                builder.store(builder.insert_element(builder.load(ints[v]), value,
                                                                     ir.Constant(_I32, lane)), ints[v])
            r4 = builder.mul(i, c64(4))
            step = _splat(builder, load(builder.add(f["scale"], r4), _F32), _V8F32)
            if with_zero:
                zero = _splat(builder, load(builder.add(f["zero"], r4), _I32), _V8I32)
            for v in range(NR):
                q = builder.load(ints[v])
                if with_zero:
                    q = builder.sub(q, builder.mul(zero, col_sum[v]))
                builder.store(builder.fmul(builder.sitofp(q, _V8F32), builder.fmul(step, col_scale[v])), row[0][v])
            xrow = builder.add(f["x"], builder.mul(i, f["ldx"]))
            with cgutils.for_range(builder, f["n_outliers"]) as loop:
                p = loop.index
                channel = load(builder.add(f["outlier_index"], builder.mul(p, c64(8))), _I64, 8)
                xv = _splat(builder, load(builder.add(xrow, builder.mul(channel, c64(4))), _F32), _V8F32)
                wrow = builder.add(builder.add(f["outlier_weight"], builder.mul(p, f["ldo"])), col4)
                for v in range(NR):
                    w = load(builder.add(wrow, c64(32 * v)), _V8F32)
                    builder.store(builder.fadd(builder.load(row[0][v]), builder.fmul(xv, w)), row[0][v])
            with builder.if_then(has_bias):
                for v in range(NR):
                    builder.store(builder.fadd(builder.load(row[0][v]), bias[v]), row[0][v])
            store_tile(builder, row, crow, ldc, ncols, _F32)
        return context.get_dummy_value()

    def strip(typingctx, c_addr, ldc, ncols, epi_addr, r0, r1, j0):
        args = (c_addr, ldc, ncols, epi_addr, r0, r1, j0)
        if not all(isinstance(t, types.Integer) for t in args):
            return None
        return types.void(*([types.int64] * 7)), codegen

    strip.__name__ = strip.__qualname__ = f"_dequantize_strip_{'u8s8' if with_zero else 's16s8'}"
    return intrinsic(strip)


_dequantize_strip_u8s8 = _make_strip(with_zero=True)
_dequantize_strip_s16s8 = _make_strip(with_zero=False)


def _make_kernel(mr, kind):
    u8 = kind == "u8s8"
    vnni = HAVE_VNNI
    lanes = 16 if HAVE_VNNI512 else 8  # int32 lanes of one accumulator
    nr = PANEL // lanes
    vacc = ir.VectorType(_I32, lanes)

    def codegen(context, builder, sig, args):
        a_addr, lda, w_addr, n_groups, c_addr, ldc, ncols, pf_addr = args
        mod = builder.module
        i8p = _I8.as_pointer()
        prefetch = cgutils.get_or_insert_function(
            mod, ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32]), "llvm.prefetch.p0")
        pmaddwd = cgutils.get_or_insert_function(
            mod, ir.FunctionType(_V8I32, [_V16I16, _V16I16]), "llvm.x86.avx2.pmadd.wd")
        if u8:
            pmaddubsw = cgutils.get_or_insert_function(
                mod, ir.FunctionType(_V16I16, [_V32I8, _V32I8]), "llvm.x86.avx2.pmadd.ub.sw")
        if vnni:  # vpdpbusd / vpdpwssd: the multiply, the pair sums and the accumulation in one
            dot = cgutils.get_or_insert_function(
                mod, ir.FunctionType(vacc, [vacc, vacc, vacc]),
                f"llvm.x86.avx512.{'vpdpbusd' if u8 else 'vpdpwssd'}.{32 * lanes}")
        ones = ir.Constant(_V16I16, [1] * 16)
        operand = vacc if vnni else _V32I8 if u8 else _V16I16  # how A's broadcast and W's vector are typed

        def c64(x):
            return ir.Constant(_I64, x)

        # Few rows give few independent accumulator chains; where the add is fused into the
        # multiply (vpdpwssd on AVX-512-VNNI hosts) its latency would then bound the loop, so
        # small tiles cycle through `unroll` accumulator sets, summed at the end.
        unroll = {1: 4, 2: 2}.get(mr, 1)
        zero = ir.Constant(vacc, [0] * lanes)
        accs = [[[cgutils.alloca_once_value(builder, zero) for _ in range(nr)] for _ in range(mr)]
                for _ in range(unroll)]
        rows = [builder.add(a_addr, builder.mul(lda, c64(i))) for i in range(mr)]
        undef = ir.Constant(vacc, ir.Undefined)
        bcast = ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes)

        def step(g, acc_set):
            wbase = builder.add(w_addr, builder.mul(g, c64(PANEL * 4)))
            ws = [builder.load(builder.inttoptr(builder.add(wbase, c64(4 * lanes * v)), operand.as_pointer()),
                               align=1) for v in range(nr)]
            # group g (one cache line) of the panel to come, into L2: with few rows of A the
            # product streams its weights, and the next panel arrives while this one is used
            builder.call(prefetch, [builder.inttoptr(builder.add(pf_addr, builder.mul(g, c64(PANEL * 4))), i8p),
                                    ir.Constant(_I32, 0), ir.Constant(_I32, 2), ir.Constant(_I32, 1)])
            g4 = builder.mul(g, c64(4))
            for i in range(mr):
                x = builder.load(builder.inttoptr(builder.add(rows[i], g4), _I32.as_pointer()), align=1)
                xv = builder.insert_element(undef, x, ir.Constant(_I32, 0))
                xv = builder.bitcast(builder.shuffle_vector(xv, undef, bcast), operand)
                for v in range(nr):
                    acc = acc_set[i][v]
                    if vnni:
                        builder.store(builder.call(dot, [builder.load(acc), xv, ws[v]]), acc)
                        continue
                    if u8:
                        t = builder.call(pmaddwd, [builder.call(pmaddubsw, [xv, ws[v]]), ones])
                    else:
                        t = builder.call(pmaddwd, [xv, ws[v]])
                    builder.store(builder.add(builder.load(acc), t), acc)

        n_main = builder.udiv(n_groups, c64(unroll)) if unroll > 1 else n_groups
        with cgutils.for_range(builder, n_main) as loop:
            g0 = builder.mul(loop.index, c64(unroll))
            for u in range(unroll):
                step(builder.add(g0, c64(u)), accs[u])
        if unroll > 1:
            with cgutils.for_range_slice(builder, builder.mul(n_main, c64(unroll)), n_groups,
                                         c64(1)) as (g, _):
                step(g, accs[0])
            for u in range(1, unroll):
                for i in range(mr):
                    for v in range(nr):
                        builder.store(builder.add(builder.load(accs[0][i][v]), builder.load(accs[u][i][v])),
                                      accs[0][i][v])
        accs = accs[0]

        store_tile(builder, accs, c_addr, ldc, ncols, _I32, lanes)
        return context.get_dummy_value()

    def kernel(typingctx, a_addr, lda, w_addr, n_groups, c_addr, ldc, ncols, pf_addr):
        args = (a_addr, lda, w_addr, n_groups, c_addr, ldc, ncols, pf_addr)
        if not all(isinstance(t, types.Integer) for t in args):
            return None
        return types.void(*([types.int64] * 8)), codegen

    kernel.__name__ = kernel.__qualname__ = f"_ukernel_{kind}_{mr}x{PANEL}"
    return intrinsic(kernel)


_k_u8s8_12 = _make_kernel(12, "u8s8")
_k_u8s8_6 = _make_kernel(6, "u8s8")
_k_u8s8_4 = _make_kernel(4, "u8s8")
_k_u8s8_3 = _make_kernel(3, "u8s8")
_k_u8s8_2 = _make_kernel(2, "u8s8")
_k_u8s8_1 = _make_kernel(1, "u8s8")
_k_s16s8_12 = _make_kernel(12, "s16s8")
_k_s16s8_6 = _make_kernel(6, "s16s8")
_k_s16s8_4 = _make_kernel(4, "s16s8")
_k_s16s8_3 = _make_kernel(3, "s16s8")
_k_s16s8_2 = _make_kernel(2, "s16s8")
_k_s16s8_1 = _make_kernel(1, "s16s8")


# AMX micro-kernels (u8s8 only: the tile unit multiplies bytes), emitted as LLVM IR.
#
# All eight tile registers are configured 16 rows x 64 bytes: tmm0-3 hold up to 2 x 2 int32
# result tiles (16 x 16 each), tmm4-5 two 16-row strips of A (64 k each), tmm6-7 two weight
# tiles.  The packed panel layout *is* the tile unit's B layout (one 64-byte row per group of
# four k, the 16 columns' four bytes side by side), so a weight tile is 16 consecutive groups
# of a panel, loaded with a 64-byte stride.
#
# kernel(a_addr, lda, w_addr, n_kt, w2_off, c_addr, ldc, nrows, ncols) computes a
# (16 rt) x (16 pt) int32 tile over n_kt steps of 64 k:
#   a_addr: address of A[i0, 0]; each row tile reads (and writes) the rows ``_amx_begin``
#   configured for it, ``nrows`` in all;
#   w_addr: address of a packed panel; w2_off: bytes from it to the second panel (pt = 2);
#   c_addr, ldc: C[i0, j0] and the bytes between C rows; ncols: valid columns of this tile,
#   the rest of C is not written (a column-edge tile goes through a scratch tile).


class _AmxIR:
    """What the AMX kernels' codegen shares: the tile intrinsics, constants, addresses, and the
    copy of a scratch tile's rows to C with a column mask."""

    def __init__(self, builder):
        self.builder = builder
        module = builder.module
        p8 = _I8.as_pointer()

        def declare(name, *args):
            return cgutils.get_or_insert_function(module, ir.FunctionType(ir.VoidType(), list(args)), name)

        self.load = declare("llvm.x86.tileloadd64", _I8, p8, _I64)
        self.store = declare("llvm.x86.tilestored64", _I8, p8, _I64)
        self.zero = declare("llvm.x86.tilezero", _I8)
        self.dot_us = declare("llvm.x86.tdpbusd", _I8, _I8, _I8)
        self.dot_ss = declare("llvm.x86.tdpbssd", _I8, _I8, _I8)
        self.vector = ir.VectorType(_I32, 16)
        self.masked_store = module.declare_intrinsic(
            "llvm.masked.store.v16i32.p0", fnty=ir.FunctionType(
                ir.VoidType(), [self.vector, self.vector.as_pointer(), _I32, ir.VectorType(ir.IntType(1), 16)]))

    @staticmethod
    def c64(x):
        return ir.Constant(_I64, x)

    @staticmethod
    def tile(t):
        return ir.Constant(_I8, t)

    def ptr(self, addr):
        return self.builder.inttoptr(addr, _I8.as_pointer())

    def scratch(self):
        """Address of a fresh 16 x 16 int32 stack tile (row stride 64 bytes)."""
        return self.builder.ptrtoint(cgutils.alloca_once(self.builder, ir.ArrayType(_I32, 256)), _I64)

    def scratch_row(self, scratch, row):
        b = self.builder
        return b.load(b.inttoptr(b.add(scratch, b.mul(row, self.c64(64))), self.vector.as_pointer()), align=4)

    def store_rows(self, row_value, rows, cols, c_tile, ldc):
        """Store rows ``[0, min(rows, 16))`` of one 16-column tile to C at ``c_tile`` (row stride
        ``ldc``), row ``i`` being ``row_value(i)``; lanes at or past ``cols`` are not written."""
        b, c64 = self.builder, self.c64

        def clamp16(x):
            return b.select(b.icmp_signed("<", x, c64(16)), x, c64(16))

        undef = ir.Constant(ir.VectorType(_I64, 16), ir.Undefined)
        limit = b.shuffle_vector(b.insert_element(undef, clamp16(cols), ir.Constant(_I32, 0)), undef,
                                 ir.Constant(ir.VectorType(_I32, 16), [0] * 16))
        mask = b.icmp_signed(">", limit, ir.Constant(ir.VectorType(_I64, 16), list(range(16))))
        with cgutils.for_range(b, clamp16(rows)) as row:
            dst = b.inttoptr(b.add(c_tile, b.mul(row.index, ldc)), self.vector.as_pointer())
            b.call(self.masked_store, [row_value(row.index), dst, ir.Constant(_I32, 4), mask])


def _trap(builder):
    builder.call(cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.trap"), [])


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
        slot = cgutils.alloca_once(builder, ir.ArrayType(_I8, 64))
        builder.store(ir.Constant(ir.ArrayType(_I8, 64), config), slot)
        for tiles, rows in (((0, 1, 4), args[0]), ((2, 3, 5), args[1])):
            for t in tiles:
                builder.store(builder.trunc(rows, _I8), cgutils.gep(builder, slot, 0, 48 + t))
        ldtilecfg = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [_I8.as_pointer()]), "llvm.x86.ldtilecfg")
        builder.call(ldtilecfg, [builder.bitcast(slot, _I8.as_pointer())])
        return context.get_dummy_value()

    return types.void(types.int64, types.int64), codegen


@intrinsic
def _amx_end(typingctx):
    """Release this thread's tile state (so that context switches stop saving 8 KiB of it)."""
    def codegen(context, builder, sig, args):
        if AMX_CAPABLE:
            builder.call(cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.tilerelease"), [])
        return context.get_dummy_value()

    return types.void(), codegen


def _make_amx_kernel(rt, pt):
    def codegen(context, builder, sig, args):
        a_addr, lda, w_addr, n_kt, w2_off, c_addr, ldc, nrows, ncols = args
        if not AMX_CAPABLE:
            _trap(builder)
            return context.get_dummy_value()
        amx = _AmxIR(builder)
        c64, tile, ptr = amx.c64, amx.tile, amx.ptr

        for r in range(rt):
            for q in range(pt):
                builder.call(amx.zero, [tile(2 * r + q)])
        a_rows = [builder.add(a_addr, builder.mul(lda, c64(16 * r))) for r in range(rt)]
        panels = [w_addr, builder.add(w_addr, w2_off)][:pt]
        with cgutils.for_range(builder, n_kt) as loop:
            ka = builder.mul(loop.index, c64(64))
            kw = builder.mul(loop.index, c64(16 * 64))
            for r in range(rt):
                builder.call(amx.load, [tile(4 + r), ptr(builder.add(a_rows[r], ka)), lda])
            for q in range(pt):
                builder.call(amx.load, [tile(6 + q), ptr(builder.add(panels[q], kw)), c64(64)])
            for r in range(rt):
                for q in range(pt):
                    builder.call(amx.dot_us, [tile(2 * r + q), tile(4 + r), tile(6 + q)])

        scratch = amx.scratch()
        for r in range(rt):
            for q in range(pt):
                rows = builder.sub(nrows, c64(16 * r))
                cols = builder.sub(ncols, c64(16 * q))
                c_tile = builder.add(c_addr, builder.add(builder.mul(ldc, c64(16 * r)), c64(64 * q)))
                some = builder.and_(builder.icmp_signed(">", rows, c64(0)), builder.icmp_signed(">", cols, c64(0)))
                with builder.if_else(builder.icmp_signed(">=", cols, c64(16))) as (whole, edge):
                    with whole:
                        builder.call(amx.store, [tile(2 * r + q), ptr(c_tile), ldc])
                    with edge:
                        with builder.if_then(some):
                            builder.call(amx.store, [tile(2 * r + q), ptr(scratch), c64(64)])
                            amx.store_rows(lambda i: amx.scratch_row(scratch, i), rows, cols, c_tile, ldc)
        return context.get_dummy_value()

    def kernel(typingctx, a_addr, lda, w_addr, n_kt, w2_off, c_addr, ldc, nrows, ncols):
        args = (a_addr, lda, w_addr, n_kt, w2_off, c_addr, ldc, nrows, ncols)
        if not all(isinstance(t, types.Integer) for t in args):
            return None
        return types.void(*([types.int64] * 9)), codegen

    kernel.__name__ = kernel.__qualname__ = f"_amx_u8s8_{16 * rt}x{16 * pt}"
    return intrinsic(kernel)


_amx_u8s8_2x2 = _make_amx_kernel(2, 2)
_amx_u8s8_2x1 = _make_amx_kernel(2, 1)
_amx_u8s8_1x2 = _make_amx_kernel(1, 2)
_amx_u8s8_1x1 = _make_amx_kernel(1, 1)
MR_AMX = 32
"""Rows of ``A`` per AMX micro-kernel call (two 16-row tiles)."""


def _make_amx_s16_kernel(pt):
    """int16 ``A`` on the byte tile unit: ``A = 256 hi + lo`` with ``lo = A & 255`` (u8) and
    ``hi = A >> 8`` (s8), ``C = 256 (hi . W) + lo . W``, exact in int32 like the vector kernels.

    kernel(lo_addr, hi_addr, lda, w_addr, n_kt, w2_off, c_addr, ldc, nrows, ncols): one row tile
    (``_amx_begin(rows, rows)``) x ``pt`` panels; tmm0-1 ``lo . W``, tmm2-3 ``hi . W``, tmm4
    ``lo``, tmm5 ``hi``, tmm6-7 the weights; the halves meet in a scratch tile.
    """
    def codegen(context, builder, sig, args):
        lo_addr, hi_addr, lda, w_addr, n_kt, w2_off, c_addr, ldc, nrows, ncols = args
        if not AMX_CAPABLE:
            _trap(builder)
            return context.get_dummy_value()
        amx = _AmxIR(builder)
        c64, tile, ptr = amx.c64, amx.tile, amx.ptr

        for q in range(pt):
            builder.call(amx.zero, [tile(q)])
            builder.call(amx.zero, [tile(2 + q)])
        panels = [w_addr, builder.add(w_addr, w2_off)][:pt]
        with cgutils.for_range(builder, n_kt) as loop:
            ka = builder.mul(loop.index, c64(64))
            kw = builder.mul(loop.index, c64(16 * 64))
            builder.call(amx.load, [tile(4), ptr(builder.add(lo_addr, ka)), lda])
            builder.call(amx.load, [tile(5), ptr(builder.add(hi_addr, ka)), lda])
            for q in range(pt):
                builder.call(amx.load, [tile(6 + q), ptr(builder.add(panels[q], kw)), c64(64)])
            for q in range(pt):
                builder.call(amx.dot_us, [tile(q), tile(4), tile(6 + q)])
                builder.call(amx.dot_ss, [tile(2 + q), tile(5), tile(6 + q)])

        scratch_lo, scratch_hi = amx.scratch(), amx.scratch()
        eight = ir.Constant(amx.vector, [8] * 16)

        def combined(i):
            return builder.add(builder.shl(amx.scratch_row(scratch_hi, i), eight), amx.scratch_row(scratch_lo, i))

        for q in range(pt):
            cols = builder.sub(ncols, c64(16 * q))
            with builder.if_then(builder.icmp_signed(">", cols, c64(0))):
                builder.call(amx.store, [tile(q), ptr(scratch_lo), c64(64)])
                builder.call(amx.store, [tile(2 + q), ptr(scratch_hi), c64(64)])
                amx.store_rows(combined, nrows, cols, builder.add(c_addr, c64(64 * q)), ldc)
        return context.get_dummy_value()

    def kernel(typingctx, lo_addr, hi_addr, lda, w_addr, n_kt, w2_off, c_addr, ldc, nrows, ncols):
        args = (lo_addr, hi_addr, lda, w_addr, n_kt, w2_off, c_addr, ldc, nrows, ncols)
        if not all(isinstance(t, types.Integer) for t in args):
            return None
        return types.void(*([types.int64] * 10)), codegen

    kernel.__name__ = kernel.__qualname__ = f"_amx_s16s8_16x{16 * pt}"
    return intrinsic(kernel)


_amx_s16s8_1x2 = _make_amx_s16_kernel(2)
_amx_s16s8_1x1 = _make_amx_s16_kernel(1)


# Serial block drivers: rows [i0, i1) x panels [p0, p1), rows taken mb at a time so that those
# rows of A stay in L2 while every weight panel (L1-sized for K <= 1536) passes over them.
# All addresses and strides are in bytes; ``panel_bytes`` = n_groups * 64.

@njit(**_JIT)
def _u8s8_block(a_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, i0, i1, p0, p1, mb):
    panel_bytes = n_groups * 64
    for r0 in range(i0, i1, mb):
        r1 = min(r0 + mb, i1)
        for p in range(p0, p1):
            ncols = min(PANEL, n - p * PANEL)
            wp = w_addr + p * panel_bytes
            cp = c_addr + p * (PANEL * 4)
            pf = wp + panel_bytes if p + 1 < p1 else wp
            i = r0
            if MR_VNNI == 12:
                while i + 12 <= r1:
                    _k_u8s8_12(a_addr + i * lda, lda, wp, n_groups, cp + i * ldc, ldc, ncols, pf)
                    i += 12
            if MR_VNNI >= 6:
                while i + 6 <= r1:
                    _k_u8s8_6(a_addr + i * lda, lda, wp, n_groups, cp + i * ldc, ldc, ncols, pf)
                    i += 6
            while i + 4 <= r1:
                _k_u8s8_4(a_addr + i * lda, lda, wp, n_groups, cp + i * ldc, ldc, ncols, pf)
                i += 4
            rest = r1 - i
            if rest == 3:
                _k_u8s8_3(a_addr + i * lda, lda, wp, n_groups, cp + i * ldc, ldc, ncols, pf)
            elif rest == 2:
                _k_u8s8_2(a_addr + i * lda, lda, wp, n_groups, cp + i * ldc, ldc, ncols, pf)
            elif rest == 1:
                _k_u8s8_1(a_addr + i * lda, lda, wp, n_groups, cp + i * ldc, ldc, ncols, pf)
            if epi_addr != 0:  # while this strip of C is still in L1
                _dequantize_strip_u8s8(cp, ldc, ncols, epi_addr, r0, r1, p * PANEL)


@njit(**_JIT)
def _u8s8_amx_block(a_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, i0, i1, p0, p1, mb):
    """``_u8s8_block`` on the AMX tiles: panels two at a time, rows 32 at a time (K % 64 == 0)."""
    panel_bytes = n_groups * 64
    n_kt = n_groups // 16
    _amx_begin(16, 16)
    for i in range(i0, i1, MR_AMX):
        rows = min(MR_AMX, i1 - i)
        if rows < MR_AMX:  # the last rows: tiles of exactly those rows
            _amx_begin(min(rows, 16), max(rows - 16, 16 * (rows <= 16)))
        ai = a_addr + i * lda
        for p in range(p0, p1, 2):
            pair = p + 1 < p1
            ncols = min(2 * PANEL if pair else PANEL, n - p * PANEL)
            wp = w_addr + p * panel_bytes
            cp = c_addr + p * (PANEL * 4)
            ci = cp + i * ldc
            if rows > 16:
                if pair:
                    _amx_u8s8_2x2(ai, lda, wp, n_kt, panel_bytes, ci, ldc, rows, ncols)
                else:
                    _amx_u8s8_2x1(ai, lda, wp, n_kt, panel_bytes, ci, ldc, rows, ncols)
            elif pair:
                _amx_u8s8_1x2(ai, lda, wp, n_kt, panel_bytes, ci, ldc, rows, ncols)
            else:
                _amx_u8s8_1x1(ai, lda, wp, n_kt, panel_bytes, ci, ldc, rows, ncols)
            if epi_addr != 0:  # while this tile of C is still in L1
                _dequantize_strip_u8s8(cp, ldc, min(PANEL, n - p * PANEL), epi_addr, i, i + rows, p * PANEL)
                if pair:
                    _dequantize_strip_u8s8(cp + PANEL * 4, ldc, min(PANEL, n - (p + 1) * PANEL), epi_addr,
                                           i, i + rows, (p + 1) * PANEL)
    _amx_end()


@njit(**_JIT)
def _s16s8_amx_block(lo_addr, hi_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, i0, i1, p0, p1):
    """``_s16s8_block`` on the AMX tiles, ``A`` split into byte planes, weights packed for u8s8."""
    panel_bytes = n_groups * 64
    n_kt = n_groups // 16
    _amx_begin(16, 16)
    for i in range(i0, i1, 16):
        rows = min(16, i1 - i)
        if rows < 16:
            _amx_begin(rows, rows)
        for p in range(p0, p1, 2):
            pair = p + 1 < p1
            ncols = min(2 * PANEL if pair else PANEL, n - p * PANEL)
            wp = w_addr + p * panel_bytes
            cp = c_addr + p * (PANEL * 4)
            if pair:
                _amx_s16s8_1x2(lo_addr + i * lda, hi_addr + i * lda, lda, wp, n_kt, panel_bytes, cp + i * ldc, ldc,
                               rows, ncols)
            else:
                _amx_s16s8_1x1(lo_addr + i * lda, hi_addr + i * lda, lda, wp, n_kt, panel_bytes, cp + i * ldc, ldc,
                               rows, ncols)
            if epi_addr != 0:  # while this tile of C is still in L1
                _dequantize_strip_s16s8(cp, ldc, min(PANEL, n - p * PANEL), epi_addr, i, i + rows, p * PANEL)
                if pair:
                    _dequantize_strip_s16s8(cp + PANEL * 4, ldc, min(PANEL, n - (p + 1) * PANEL), epi_addr,
                                            i, i + rows, (p + 1) * PANEL)
    _amx_end()


@njit(parallel=True, **_JIT)
def _s16s8_amx_parallel(lo_addr, hi_addr, lda, w_addr, n_groups, c_addr, ldc, m, n, epi_addr, rb, n_panels, pb):
    n_rt = (m + rb - 1) // rb
    n_pt = (n_panels + pb - 1) // pb
    for t in prange(n_rt * n_pt):
        r = t // n_pt
        q = t - r * n_pt
        _s16s8_amx_block(lo_addr, hi_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, r * rb,
                         min(m, r * rb + rb), q * pb, min(n_panels, q * pb + pb))


@njit(**_JIT)
def _s16s8_amx_entry(a, packed, n, out, threads, epi):
    """``_s16s8_entry`` for weights packed by :func:`pack_weights_u8s8` (K % 64 == 0, AMX): ``a``
    (int16, C-contiguous) split into its low bytes (u8) and high bytes (s8); ``out`` has unit
    column stride."""
    m, k = a.shape
    lo = np.empty((m, k), dtype=np.uint8)
    hi = np.empty((m, k), dtype=np.int8)
    for i in range(m):
        for j in range(k):
            lo[i, j] = np.uint8(a[i, j] & 255)
            hi[i, j] = np.int8(a[i, j] >> 8)
    n_panels, n_groups = packed.shape[0], packed.shape[1]
    rb, pb, mb, par = plan_tasks(m, n_panels, k, threads, 16)
    pb += pb & 1
    epi_addr = address(epi) if epi.shape[0] else 0
    if par:
        _s16s8_amx_parallel(address(lo), address(hi), k, address(packed), n_groups, address(out), out.strides[0],
                            m, n, epi_addr, rb, n_panels, pb)
    else:
        _s16s8_amx_block(address(lo), address(hi), k, address(packed), n_groups, address(out), out.strides[0], n,
                         epi_addr, 0, m, 0, n_panels)
    keep_alive(lo)
    keep_alive(hi)


@njit(**_JIT)
def _s16s8_block(a_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, i0, i1, p0, p1, mb):
    panel_bytes = n_groups * 64
    for r0 in range(i0, i1, mb):
        r1 = min(r0 + mb, i1)
        for p in range(p0, p1):
            ncols = min(PANEL, n - p * PANEL)
            wp = w_addr + p * panel_bytes
            cp = c_addr + p * (PANEL * 4)
            pf = wp + panel_bytes if p + 1 < p1 else wp
            i = r0
            if MR_VNNI == 12:
                while i + 12 <= r1:
                    _k_s16s8_12(a_addr + i * lda, lda, wp, n_groups, cp + i * ldc, ldc, ncols, pf)
                    i += 12
            if MR_VNNI >= 6:
                while i + 6 <= r1:
                    _k_s16s8_6(a_addr + i * lda, lda, wp, n_groups, cp + i * ldc, ldc, ncols, pf)
                    i += 6
            while i + 4 <= r1:
                _k_s16s8_4(a_addr + i * lda, lda, wp, n_groups, cp + i * ldc, ldc, ncols, pf)
                i += 4
            rest = r1 - i
            if rest == 3:
                _k_s16s8_3(a_addr + i * lda, lda, wp, n_groups, cp + i * ldc, ldc, ncols, pf)
            elif rest == 2:
                _k_s16s8_2(a_addr + i * lda, lda, wp, n_groups, cp + i * ldc, ldc, ncols, pf)
            elif rest == 1:
                _k_s16s8_1(a_addr + i * lda, lda, wp, n_groups, cp + i * ldc, ldc, ncols, pf)
            if epi_addr != 0:  # while this strip of C is still in L1
                _dequantize_strip_s16s8(cp, ldc, ncols, epi_addr, r0, r1, p * PANEL)


@njit(parallel=True, **_JIT)
def _u8s8_parallel(a_addr, lda, w_addr, n_groups, c_addr, ldc, m, n, epi_addr, rb, n_panels, pb, mb, amx):
    n_rt = (m + rb - 1) // rb
    n_pt = (n_panels + pb - 1) // pb
    for t in prange(n_rt * n_pt):
        r = t // n_pt
        q = t - r * n_pt
        if amx:
            _u8s8_amx_block(a_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, r * rb, min(m, r * rb + rb),
                            q * pb, min(n_panels, q * pb + pb), mb)
        else:
            _u8s8_block(a_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, r * rb, min(m, r * rb + rb),
                        q * pb, min(n_panels, q * pb + pb), mb)


@njit(parallel=True, **_JIT)
def _s16s8_parallel(a_addr, lda, w_addr, n_groups, c_addr, ldc, m, n, epi_addr, rb, n_panels, pb, mb):
    n_rt = (m + rb - 1) // rb
    n_pt = (n_panels + pb - 1) // pb
    for t in prange(n_rt * n_pt):
        r = t // n_pt
        q = t - r * n_pt
        _s16s8_block(a_addr, lda, w_addr, n_groups, c_addr, ldc, n, epi_addr, r * rb, min(m, r * rb + rb),
                     q * pb, min(n_panels, q * pb + pb), mb)


@njit(**_JIT)
def _u8s8_run(a, packed, n, c_addr, ldc, threads, epi, amx):
    m = a.shape[0]
    n_panels, n_groups = packed.shape[0], packed.shape[1]
    lda = a.strides[0]
    rb, pb, mb, par = plan_tasks(m, n_panels, lda, threads, MR_AMX if amx else MR_VNNI)
    if amx:
        pb += pb & 1  # whole panel pairs per task
    epi_addr = address(epi) if epi.shape[0] else 0  # (epi is the caller's: alive until we return)
    if par:
        _u8s8_parallel(address(a), lda, address(packed), n_groups, c_addr, ldc, m, n, epi_addr, rb, n_panels,
                       pb, mb, amx)
    elif amx:
        _u8s8_amx_block(address(a), lda, address(packed), n_groups, c_addr, ldc, n, epi_addr, 0, m, 0, n_panels,
                        mb)
    else:
        _u8s8_block(address(a), lda, address(packed), n_groups, c_addr, ldc, n, epi_addr, 0, m, 0, n_panels, mb)


@njit(**_JIT)
def _s16s8_run(a, packed, n, c_addr, ldc, threads, epi):
    m = a.shape[0]
    n_panels, n_groups = packed.shape[0], packed.shape[1]
    lda = a.strides[0]
    rb, pb, mb, par = plan_tasks(m, n_panels, lda, threads, MR_VNNI)
    epi_addr = address(epi) if epi.shape[0] else 0  # (epi is the caller's: alive until we return)
    if par:
        _s16s8_parallel(address(a), lda, address(packed), n_groups, c_addr, ldc, m, n, epi_addr, rb, n_panels,
                         pb, mb)
    else:
        _s16s8_block(address(a), lda, address(packed), n_groups, c_addr, ldc, n, epi_addr, 0, m, 0, n_panels, mb)


@njit(**_JIT)
def _u8s8_entry(a, packed, n, out, threads, epi, amx):
    """a: C-contiguous uint8 (M, K); out: int32 (M, n), any strides (unit column stride with an
    epilogue descriptor ``epi``; empty ``epi``: the raw int32 product); ``amx``: use the AMX
    tiles where K allows (K % 64 == 0)."""
    m, k = a.shape
    kp = packed.shape[1] * KG_U8S8
    amx = amx and k % 64 == 0
    if kp != k:  # K tail: a zero-padded copy, so that 4-byte group loads stay inside A
        ap = np.zeros((m, kp), dtype=np.uint8)
        ap[:, :k] = a
    else:
        ap = a
    if out.strides[1] == 4:
        _u8s8_run(ap, packed, n, address(out), out.strides[0], threads, epi, amx)
    else:
        tmp = np.empty((m, n), dtype=np.int32)
        _u8s8_run(ap, packed, n, address(tmp), n * 4, threads, epi, amx)
        out[:, :] = tmp


@njit(**_JIT)
def _s16s8_entry(a, packed, n, out, threads, epi):
    """Same contract as ``_u8s8_entry``, for int16 ``a``."""
    m, k = a.shape
    kp = packed.shape[1] * KG_S16S8
    if kp != k:
        ap = np.zeros((m, kp), dtype=np.int16)
        ap[:, :k] = a
    else:
        ap = a
    if out.strides[1] == 4:
        _s16s8_run(ap, packed, n, address(out), out.strides[0], threads, epi)
    else:
        tmp = np.empty((m, n), dtype=np.int32)
        _s16s8_run(ap, packed, n, address(tmp), n * 4, threads, epi)
        out[:, :] = tmp


@njit(**_JIT)
def _descriptor(x, scale, zero, col_scale, col_sum, outlier_index, outlier_weight, bias):
    """The int64 epilogue descriptor (``_EPI_FIELDS``) of these arrays, which must outlive its use
    (``bias`` empty: none)."""
    epi = np.empty(len(_EPI_FIELDS), dtype=np.int64)
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


# ----------------------------------------------------------------------------------------------
# Portable path: plain numba loops over the same packed layout (no target intrinsics).


# The loop shapes below are the ones LLVM vectorises well (measured on AVX2: ~25 GOP/s for
# u8s8, ~13 for s16s8, single thread); the packed panel is read as a flat row per panel.

@njit(**_JIT)
def _portable_u8s8_rows(a, packed, n, out, i0, i1):
    n_panels, n_groups = packed.shape[0], packed.shape[1]
    w = packed.reshape(n_panels, n_groups * PANEL * KG_U8S8)
    for i in range(i0, i1):
        for p in range(n_panels):
            wp = w[p]
            acc = np.zeros(PANEL, dtype=np.int32)
            for g in range(n_groups):
                base = g * PANEL * KG_U8S8
                xs = a[i, g * KG_U8S8:(g + 1) * KG_U8S8]
                for j in range(PANEL):
                    s = np.int32(0)
                    for b in range(KG_U8S8):
                        s += np.int32(xs[b]) * np.int32(wp[base + j * KG_U8S8 + b])
                    acc[j] += s
            j0 = p * PANEL
            for j in range(min(PANEL, n - j0)):
                out[i, j0 + j] = acc[j]


@njit(**_JIT)
def _portable_s16s8_rows(a, packed, n, out, i0, i1):
    n_panels, n_groups = packed.shape[0], packed.shape[1]
    w = packed.reshape(n_panels, n_groups * PANEL * KG_S16S8)
    for i in range(i0, i1):
        for p in range(n_panels):
            wp = w[p]
            acc = np.zeros(PANEL * KG_S16S8, dtype=np.int32)  # acc[2 j + b]: column j, parity b
            for g in range(n_groups):
                base = g * PANEL * KG_S16S8
                x0 = np.int32(a[i, 2 * g])
                x1 = np.int32(a[i, 2 * g + 1])
                for jb in range(PANEL * KG_S16S8):
                    acc[jb] += (x0 if jb % 2 == 0 else x1) * np.int32(wp[base + jb])
            j0 = p * PANEL
            for j in range(min(PANEL, n - j0)):
                out[i, j0 + j] = acc[2 * j] + acc[2 * j + 1]


@njit(parallel=True, **_JIT)
def _portable_u8s8_parallel(a, packed, n, out, chunk):
    m = a.shape[0]
    for c in prange((m + chunk - 1) // chunk):
        _portable_u8s8_rows(a, packed, n, out, c * chunk, min(m, c * chunk + chunk))


@njit(parallel=True, **_JIT)
def _portable_s16s8_parallel(a, packed, n, out, chunk):
    m = a.shape[0]
    for c in prange((m + chunk - 1) // chunk):
        _portable_s16s8_rows(a, packed, n, out, c * chunk, min(m, c * chunk + chunk))


@njit(**_JIT)
def _portable_u8s8_entry(a, packed, n, out, threads):
    """Same contract as ``_u8s8_entry``, without target intrinsics."""
    m, k = a.shape
    kp = packed.shape[1] * KG_U8S8
    if kp != k:
        ap = np.zeros((m, kp), dtype=np.uint8)
        ap[:, :k] = a
    else:
        ap = a
    if threads > 1 and m > 1:
        _portable_u8s8_parallel(ap, packed, n, out, max(1, (m + 4 * threads - 1) // (4 * threads)))
    else:
        _portable_u8s8_rows(ap, packed, n, out, 0, m)


@njit(**_JIT)
def _portable_s16s8_entry(a, packed, n, out, threads):
    """Same contract as ``_s16s8_entry``, without target intrinsics."""
    m, k = a.shape
    kp = packed.shape[1] * KG_S16S8
    if kp != k:
        ap = np.zeros((m, kp), dtype=np.int16)
        ap[:, :k] = a
    else:
        ap = a
    if threads > 1 and m > 1:
        _portable_s16s8_parallel(ap, packed, n, out, max(1, (m + 4 * threads - 1) // (4 * threads)))
    else:
        _portable_s16s8_rows(ap, packed, n, out, 0, m)


# ----------------------------------------------------------------------------------------------
# Public kernels


_NO_EPILOGUE = np.empty(0, dtype=np.int64)


def _threads(m, n, k, amx=False):
    # the serial/parallel choice is made here (threads=1: serial)
    least = PARALLEL_MIN_OPS_AMX if amx and k % 64 == 0 else PARALLEL_MIN_OPS
    return pool_threads() if m * n * k >= least else 1


def _gemm(a, packed, n, out, entry, portable):
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    m, k = a.shape
    if m and n:
        if entry is _u8s8_entry and _use_avx2:
            entry(a, packed, n, out, _threads(m, n, k, _use_amx), _NO_EPILOGUE, _use_amx)
        elif _use_avx2:
            entry(a, packed, n, out, _threads(m, n, k), _NO_EPILOGUE)
        else:
            portable(a, packed, n, out, _threads(m, n, k))
    return out


def gemm_u8s8(a, packed, n, out=None):
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

    Returns
    -------
    ndarray of int32, shape (M, N)
        ``sum_k a[m, k] * w[n, k]`` (wrapping on int32 overflow, see the module notes).
    """
    a, n, out = _check(a, packed, n, out, _UINT8, _INT8, KG_U8S8, "gemm_u8s8")
    return _gemm(a, packed, n, out, _u8s8_entry, _portable_u8s8_entry)


def gemm_s16s8(a, packed, n, out=None):
    """``C = A @ W.T`` for int16 ``A`` and packed int8 ``W`` (stored as int16), exact in int32.

    Parameters
    ----------
    a : ndarray of int16, shape (M, K)
        Activations, one token per row (e.g. ~12-bit, ``|a| <= 2047``).  Any ``M >= 0`` and
        ``K``; best C-contiguous (otherwise copied).
    packed : ndarray of int16, shape (ceil(N / 16), ceil(K / 2), 16, 2)
        Weights from :func:`pack_weights_s16s8`.
    n : int
        Number of output columns ``N``.
    out : ndarray of int32, shape (M, N), optional
        Where to write; may be a strided view.  Nothing outside it is written.

    Returns
    -------
    ndarray of int32, shape (M, N)
        ``sum_k a[m, k] * w[n, k]`` (wrapping on int32 overflow, see the module notes).
    """
    a, n, out = _check(a, packed, n, out, _INT16, _INT16, KG_S16S8, "gemm_s16s8")
    return _gemm(a, packed, n, out, _s16s8_entry, _portable_s16s8_entry)


# ----------------------------------------------------------------------------------------------
# Fused dequantisation: the integer tile becomes float32 while it is still in registers


class Dequantization:
    """A layer's per-column dequantisation constants, padded once to whole panels.

    With the per-row ones made at each call (:func:`linear_u8s8`), they turn the
    int32 product ``acc`` into float32 (the formula of ``quant.dequantize_output``)::

        out[i, j] = float32(acc[i, j] - zero[i] * col_sum[j]) * (scale[i] * col_scale[j])
                    + x[i, outlier_index[0]] * outlier_weight[0, j] + ...   (in order, no FMA)

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
        self._col_scale = np.zeros(width, np.float32)
        self._col_scale[:n] = self.col_scale
        self._col_sum = np.zeros(width, np.int32)
        if self.col_sum is not None:
            self._col_sum[:n] = self.col_sum
        self._outlier_weight = np.zeros((p, width), np.float32)
        self._outlier_weight[:, :n] = self.outlier_weight


def _check_linear(x, mask, packed, n, out, columns, w_dtype, kg, name, bias=None, zero_points=True):
    if not isinstance(x, np.ndarray) or x.ndim != 2 or x.dtype != np.float32:
        raise TypeError(f"{name}: x must be a 2-D float32 array, got "
                        f"{getattr(x, 'dtype', type(x).__name__)} with shape {np.shape(x)}")
    m, k = x.shape
    if not isinstance(mask, np.ndarray) or mask.dtype != np.float32 or mask.shape != (k,):
        raise ValueError(f"{name}: mask must be float32 of shape {(k,)}")
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != (m, int(n)):
        raise ValueError(f"{name}: out must be a float32 array of shape {(m, int(n))}")
    if np.may_share_memory(out, x):
        raise ValueError(f"{name}: out must not overlap x")
    if not isinstance(columns, Dequantization) or columns.n != int(n):
        raise ValueError(f"{name}: columns must be a Dequantization of {int(n)} columns")
    if zero_points and columns.col_sum is None:
        raise ValueError(f"{name}: columns need col_sum (u8 codes have per-row zero points)")
    if bias is not None and (not isinstance(bias, np.ndarray) or bias.dtype != np.float32
                             or bias.shape != (int(n),)):
        raise ValueError(f"{name}: bias must be float32 of shape {(int(n),)}")
    codes = np.empty((0, k), np.uint8 if kg == KG_U8S8 else np.int16)
    _check(codes, packed, n, None, codes.dtype, w_dtype, kg, name)


@njit(**_JIT)
def _u8s8_linear_entry(x, mask, packed, n, out, threads, quantize_chunk, col_scale, col_sum, outlier_index,
                       outlier_weight, bias, amx):
    """out: the int32 view of the float32 result (unit column stride); see :func:`linear_u8s8`."""
    m, k = x.shape
    codes = np.empty((m, k), dtype=np.uint8)
    scale = np.empty(m, dtype=np.float32)
    zero = np.empty(m, dtype=np.int32)
    if quantize_chunk:
        quant_jit._quantize_u8_parallel(x, mask, codes, scale, zero, quantize_chunk)
    else:
        quant_jit._quantize_u8_rows(x, mask, codes, scale, zero, 0, m)
    epi = _descriptor(x, scale, zero, col_scale, col_sum, outlier_index, outlier_weight, bias)
    _u8s8_entry(codes, packed, n, out, threads, epi, amx)
    keep_alive(scale)
    keep_alive(zero)
    keep_alive(bias)


@njit(**_JIT)
def _s16s8_linear_entry(x, mask, max_code, packed, n, out, threads, quantize_chunk, col_scale, outlier_index,
                        outlier_weight, bias, split):
    """Same contract as ``_u8s8_linear_entry``, symmetric int16 codes up to ``max_code``."""
    m, k = x.shape
    codes = np.empty((m, k), dtype=np.int16)
    scale = np.empty(m, dtype=np.float32)
    if quantize_chunk:
        quant_jit._quantize_s16_parallel(x, mask, max_code, codes, scale, quantize_chunk)
    else:
        quant_jit._quantize_s16_rows(x, mask, max_code, codes, scale, 0, m)
    # no zero points: the s16s8 strip reads neither ``zero`` nor ``col_sum``
    epi = _descriptor(x, scale, scale, col_scale, col_scale, outlier_index, outlier_weight, bias)
    if split:  # int8 weights packed for u8s8: the AMX byte-plane path
        _s16s8_amx_entry(codes, packed, n, out, threads, epi)
    else:
        _s16s8_entry(codes, packed, n, out, threads, epi)
    keep_alive(scale)
    keep_alive(bias)


_NO_BIAS = np.empty(0, np.float32)


def _linear(x, mask, max_code, packed, n, out, columns, bias=None):
    """:func:`linear_u8s8` (``max_code`` None) or :func:`linear_s16s8`, arguments unchecked."""
    m, k = x.shape
    if not (m and n):
        return out
    if x.strides[1] != 4:
        x = np.ascontiguousarray(x)
    split = max_code is not None and packed.dtype == _INT8  # s16 codes, weights packed for u8s8
    if split and not (_use_amx and k % 64 == 0):  # the vector kernels want the int16 packing
        packed, split = pack_weights_s16s8(unpack_weights(packed, n, k)), False
    threads = _threads(m, n, k, (max_code is None or split) and _use_amx)
    chunk = quant_jit._chunk(m, k)
    direct = out.strides[1] == 4
    acc = out.view(np.int32) if direct else np.empty((m, n), np.int32)
    if not _use_avx2:
        if max_code is None:
            codes, scale, zero = np.empty((m, k), np.uint8), np.empty(m, np.float32), np.empty(m, np.int32)
            quant_jit.quantize_rows_u8(x, mask, codes, scale, zero)
            _portable_u8s8_entry(codes, packed, n, acc, threads)
        else:
            codes, scale, zero = np.empty((m, k), np.int16), np.empty(m, np.float32), None
            quant_jit.quantize_rows_s16(x, mask, max_code, codes, scale)
            _portable_s16s8_entry(codes, packed, n, acc, threads)
        quant_jit.dequantize_output(acc, out, x, scale, zero, columns.col_scale, columns.col_sum,
                                    columns.outlier_index, columns.outlier_weight)
        if bias is not None:
            out += bias
        return out
    if bias is None:
        padded = _NO_BIAS
    else:  # the strips read whole panels
        padded = np.zeros(columns._col_scale.shape[0], np.float32)
        padded[:n] = bias
    if max_code is None:
        _u8s8_linear_entry(x, mask, packed, n, acc, threads, chunk, columns._col_scale, columns._col_sum,
                           columns.outlier_index, columns._outlier_weight, padded, _use_amx)
    else:
        _s16s8_linear_entry(x, mask, int(max_code), packed, n, acc, threads, chunk, columns._col_scale,
                            columns.outlier_index, columns._outlier_weight, padded, split)
    if not direct:
        out[...] = acc.view(np.float32)
    return out


def _s16s8_packing(packed):
    """(dtype, group) of the packing ``linear_s16s8`` was handed: int16 pairs, or u8s8's int8 fours."""
    if getattr(packed, "dtype", None) == _INT8:
        return _INT8, KG_U8S8
    return _INT16, KG_S16S8


def linear_u8s8(x, mask, packed, n, out, columns, bias=None):
    """``out = x @ W.T`` through the u8s8 GEMM: ``x`` quantised per row, product, dequantised.

    Each row of ``x`` (outlier channels masked out) becomes 7-bit codes with its own step and
    zero point (``quant.quantize_rows_u8``); the exact integer product is dequantised strip
    by strip while it is still in L1 (``quant.dequantize_output``, same operation order), so
    the result is bitwise that of those three steps run one after another.

    Parameters
    ----------
    x : ndarray of float32, (M, K)
    mask : ndarray of float32, (K,)
        0 on the outlier channels (``columns.outlier_index``), 1 elsewhere.
    packed : ndarray of int8, from :func:`pack_weights_u8s8`
    n : int
        Number of output columns ``N``.
    out : ndarray of float32, (M, N), written
        Must not overlap ``x``.
    columns : Dequantization
        The weights' per-column constants, with ``col_sum``.
    bias : ndarray of float32, (N,), optional
        Added last, in the same pass (bitwise the same as ``out += bias`` afterwards).

    Returns
    -------
    out
    """
    _check_linear(x, mask, packed, n, out, columns, _INT8, KG_U8S8, "linear_u8s8", bias)
    return _linear(x, mask, None, packed, int(n), out, columns, bias)


def linear_s16s8(x, mask, max_code, packed, n, out, columns, bias=None):
    """``out = x @ W.T`` through the s16s8 GEMM: ``x`` quantised per row to int16, symmetric.

    As :func:`linear_u8s8`, with codes in ``[-max_code, max_code]``
    (``quant.quantize_rows_s16``; keep ``K * max_code * 128 < 2**31``) and ``packed`` from
    :func:`pack_weights_s16s8`, or from :func:`pack_weights_u8s8` (on the AMX tiles when
    :func:`using_amx` and ``K % 64 == 0``: the codes split into byte planes, else repacked at
    each call); ``columns.col_sum`` is not used.
    """
    _check_linear(x, mask, packed, n, out, columns, *_s16s8_packing(packed), "linear_s16s8", bias,
                  zero_points=False)
    return _linear(x, mask, int(max_code), packed, int(n), out, columns, bias)


def _linear_reference(x, mask, max_code, packed, n, out, columns, bias):
    from . import quant

    m, k = x.shape
    scale = np.empty(m, np.float32)
    if max_code is None:
        codes, zero = np.empty((m, k), np.uint8), np.empty(m, np.int32)
        quant.quantize_rows_u8(x, mask, codes, scale, zero)
    else:
        codes, zero = np.empty((m, k), np.int16), None
        quant.quantize_rows_s16(x, mask, max_code, codes, scale)
    acc = _reference(codes, packed, n, np.empty((m, n), np.int32))
    quant.dequantize_output(acc, out, x, scale, zero, columns.col_scale, columns.col_sum,
                            columns.outlier_index, columns.outlier_weight)
    if bias is not None:
        out += bias
    return out


def linear_u8s8_reference(x, mask, packed, n, out, columns, bias=None):
    """numpy twin of :func:`linear_u8s8`: ``quant.quantize_rows_u8``, the int64 reference
    product, ``quant.dequantize_output``, then the bias."""
    _check_linear(x, mask, packed, n, out, columns, _INT8, KG_U8S8, "linear_u8s8_reference", bias)
    return _linear_reference(x, mask, None, packed, int(n), out, columns, bias)


def linear_s16s8_reference(x, mask, max_code, packed, n, out, columns, bias=None):
    """numpy twin of :func:`linear_s16s8`."""
    _check_linear(x, mask, packed, n, out, columns, *_s16s8_packing(packed), "linear_s16s8_reference", bias,
                  zero_points=False)
    return _linear_reference(x, mask, int(max_code), packed, int(n), out, columns, bias)
