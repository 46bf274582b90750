"""Packed weights of the int8 GEMMs, and the argument checks and int64 product every path shares.

Output columns are split into *panels* of ``PANEL = 16`` columns, the reduction axis into
*groups* of ``KG`` consecutive ``k`` (4 for u8s8, 2 for s16s8), so that one group of one ``A``
row is 4 bytes, broadcast to all lanes by the micro-kernels::

    packed[p, g, j, b] = W[p * PANEL + j, g * KG + b]      (zero where out of range)

    u8s8 : int8  array of shape (ceil(N / 16), ceil(K / 4), 16, 4)
    s16s8: int16 array of shape (ceil(N / 16), ceil(K / 2), 16, 2)

One panel is a contiguous run of ``ceil(K / KG)`` 64-byte blocks, each holding the group's
``KG`` weights of each of its 16 columns; for u8s8 that is also the AMX tile unit's ``B``
layout.  The zero padding of ``N`` and ``K`` makes every micro-kernel step full width.
This module does not import numba.
"""
import numpy as np

from .buffers import empty_aligned

PANEL = 16
"""Output columns per packed panel (two 8 x int32 vectors, or one 16 x int32)."""
KG_U8S8 = 4
"""Reduction elements per packed group for u8s8 (4 bytes of one ``A`` row)."""
KG_S16S8 = 2
"""Reduction elements per packed group for s16s8 (2 int16 of one ``A`` row)."""


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
    """Pack int8 weights ``(N, K)`` for :func:`gemm_s16s8`, sign-extended to int16: as
    :func:`pack_weights_u8s8` with groups of two, int16 ``(ceil(N / 16), ceil(K / 2), 16, 2)``,
    ``packed[p, g, j, b] = w[16 p + j, 2 g + b]``."""
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


UINT8, INT8, INT16, INT32 = (np.dtype(t) for t in (np.uint8, np.int8, np.int16, np.int32))


def check(a, packed, n, out, a_dtype, w_dtype, kg, name):
    """Check a GEMM's arguments (``name`` names the function in errors); returns ``(a, n, out)``,
    ``out`` allocated when None."""
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
    elif not isinstance(out, np.ndarray) or out.dtype != INT32 or out.shape != (m, n):
        raise ValueError(f"{name}: out must be an int32 array of shape {(m, n)}")
    return a, n, out


def reference_product(a, packed, n, out):
    """``out = a @ W.T`` by int64 matmul of the unpacked weights, wrapped to int32 (the spec)."""
    k = a.shape[1]
    w = unpack_weights(packed, n, k).astype(np.int64)
    out[...] = (a.astype(np.int64) @ w.T).astype(np.int32)  # wraps like the int32 kernels
    return out
