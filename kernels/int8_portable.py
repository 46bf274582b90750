"""The int8 GEMMs without target intrinsics: plain numba loops over the same packed weights.

Taken where the CPU lacks AVX2 or with ``MINILM_NP_INT8_AVX2=0`` (``isa.int8_vector`` False);
several times slower than the micro-kernels, exact and identical in result.  The loop shapes
are the ones LLVM vectorises well for whatever CPU it compiles for; the packed panel is read as
a flat row per panel.
"""
import numpy as np

from ._numba_env import may_run_parallel  # noqa: F401  (must precede the numba import)
from numba import njit, prange, types
from numba.extending import overload

from .int8_pack import KG_S16S8, KG_U8S8, PANEL
from .tasks import chunk_rows, n_chunks

_JIT = dict(cache=True, nogil=True, boundscheck=False)


@njit(inline="always", **_JIT)
def _panel_u8s8(a, i, wp, n_groups, acc):
    """``acc[j] = sum_k a[i, k] * W[j, k]`` over one packed panel ``wp`` (flat), groups of four."""
    for g in range(n_groups):
        base = g * PANEL * KG_U8S8
        xs = a[i, g * KG_U8S8:(g + 1) * KG_U8S8]
        for j in range(PANEL):
            s = np.int32(0)
            for b in range(KG_U8S8):
                s += np.int32(xs[b]) * np.int32(wp[base + j * KG_U8S8 + b])
            acc[j] += s


@njit(inline="always", **_JIT)
def _panel_s16s8(a, i, wp, n_groups, acc):
    """As :func:`_panel_u8s8` for int16 pairs: ``acc[2 j + b]`` sums column ``j``'s parity ``b``,
    folded into ``acc[j]`` at the end."""
    for g in range(n_groups):
        base = g * PANEL * KG_S16S8
        x0 = np.int32(a[i, 2 * g])
        x1 = np.int32(a[i, 2 * g + 1])
        for jb in range(PANEL * KG_S16S8):
            acc[jb] += (x0 if jb % 2 == 0 else x1) * np.int32(wp[base + jb])
    for j in range(PANEL):
        acc[j] = acc[2 * j] + acc[2 * j + 1]


def _panel(a, i, wp, n_groups, acc):
    """One row of ``a`` against one panel: :func:`_panel_u8s8` for uint8 ``a``, :func:`_panel_s16s8`
    for int16 (chosen when numba compiles the caller, so only the one needed is compiled)."""
    raise NotImplementedError("numba-compiled only")


@overload(_panel, jit_options=_JIT)
def _panel_for(a, i, wp, n_groups, acc):
    kernel = _panel_u8s8 if a.dtype == types.uint8 else _panel_s16s8
    return lambda a, i, wp, n_groups, acc: kernel(a, i, wp, n_groups, acc)


@njit(**_JIT)
def rows(a, packed, n, out, i0, i1):
    """Rows ``[i0, i1)`` of ``out = a @ W.T``."""
    n_panels, n_groups, _, kg = packed.shape
    w = packed.reshape(n_panels, n_groups * PANEL * kg)
    acc = np.empty(PANEL * kg, dtype=np.int32)
    for i in range(i0, i1):
        for p in range(n_panels):
            acc[:] = 0
            _panel(a, i, w[p], n_groups, acc)
            j0 = p * PANEL
            for j in range(min(PANEL, n - j0)):
                out[i, j0 + j] = acc[j]


@njit(parallel=True, **_JIT)
def _parallel(a, packed, n, out, chunk):
    for c in prange(n_chunks(a.shape[0], chunk)):
        rows(a, packed, n, out, *chunk_rows(c, a.shape[0], chunk))


@njit(**_JIT)
def run(a, packed, n, out, threads):
    """``out = a @ W.T`` for ``a`` with whole groups (K padded to the packing), about four row
    chunks a thread."""
    m = a.shape[0]
    if threads > 1 and m > 1:
        _parallel(a, packed, n, out, max(1, (m + 4 * threads - 1) // (4 * threads)))
    else:
        rows(a, packed, n, out, 0, m)
