"""How kernels share work out to threads, and hand arrays to IR by address.

- :func:`row_chunk`, :func:`n_chunks`, :func:`chunk_rows`: rows per ``prange`` task for the
  row-wise kernels (0: stay serial), and each task's rows;
- :func:`plan_tasks` / :func:`task_bounds`: the packed GEMMs' split of ``M`` rows x weight
  panels into parallel tasks, with the rows each task keeps in L2;
- :func:`address` / :func:`keep_alive`: an array's address for IR kernels, and its lifetime.

Where a row lands never changes its result (each kernel computes a row, or an output element,
the same way in any task), so these rules are free to change for speed.
"""
from ._numba_env import pool_threads  # (must precede the numba import)
import glob
import os

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

PARALLEL_MIN_ELEMENTS = 1 << 16
"""Elements a row-wise kernel touches below which it stays on the calling thread."""


def row_chunk(n_rows, width, min_elements=PARALLEL_MIN_ELEMENTS):
    """Rows per parallel task of a row-wise kernel, or 0 when the work is too small to share out
    (or there is one thread): at most 64 rows, about 16 tasks."""
    if n_rows * width < min_elements or pool_threads() < 2:
        return 0
    return max(1, min(64, n_rows // 16))


@njit(cache=True, nogil=True, inline="always")
def n_chunks(n_rows, chunk):
    """Parallel tasks of ``chunk`` rows (the last may be short) that cover ``n_rows``."""
    return (n_rows + chunk - 1) // chunk


@njit(cache=True, nogil=True, inline="always")
def chunk_rows(c, n_rows, chunk):
    """Rows ``(lo, hi)`` of task ``c`` of :func:`n_chunks`."""
    return c * chunk, min(n_rows, (c + 1) * chunk)


def _l2_bytes(default=1 << 19):
    """One core's L2 cache in bytes, from Linux's sysfs; ``default`` where it cannot be read."""
    for index in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            with open(os.path.join(index, "level")) as level, open(os.path.join(index, "size")) as size:
                if level.read().strip() == "2":
                    text = size.read().strip().upper()
                    scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
                    return int(text.rstrip("KM")) * scale
        except (OSError, ValueError):
            continue
    return default


L2_A_BYTES = max(1 << 17, _l2_bytes() // 4)
"""Bytes of ``A`` rows one GEMM task keeps hot while it sweeps the weight panels: a quarter of L2.

Each sweep streams all the weights from L3 once, so the rows must be many enough to pay for it
(with 2 MiB of L2 a quarter, not 128 KiB, took the 1536 -> 384 GEMM 7% faster at 2 threads).
Frozen into the compiled kernels (numba's cache is per CPU model, which fixes the L2 size).
"""


@njit(cache=True, nogil=True)
def plan_tasks(m, n_panels, row_bytes, threads, mr):
    """How to split ``m`` rows x ``n_panels`` weight panels: ``(rb, pb, mb, parallel)``.

    ``rb`` rows x ``pb`` panels per parallel task (about four tasks per thread; one per thread
    when all the rows fit one row block), ``mb`` rows of ``A`` kept in L2 within a task; row
    blocks are multiples of the tile height ``mr``.
    """
    mb = max(mr, (L2_A_BYTES // max(row_bytes, 1)) // mr * mr)
    if threads <= 1:
        return m, n_panels, mb, False
    if m <= mb:  # few rows: split the weights only, so that each panel is read from memory once,
        # one equal share per thread (the pool hands each thread an equal run of tasks, so
        # finer tasks only add uneven ones)
        return m, (n_panels + threads - 1) // threads, mb, True
    target = 4 * threads
    rb = ((m + target - 1) // target + mr - 1) // mr * mr
    n_rt = (m + rb - 1) // rb
    pb = n_panels
    if n_rt < target:
        n_pt = min(n_panels, (target + n_rt - 1) // n_rt)
        pb = (n_panels + n_pt - 1) // n_pt
    return rb, pb, mb, True


@njit(cache=True, nogil=True, inline="always")
def n_tasks(m, rb, n_panels, pb):
    """Tasks of a :func:`plan_tasks` plan."""
    return ((m + rb - 1) // rb) * ((n_panels + pb - 1) // pb)


@njit(cache=True, nogil=True, inline="always")
def task_bounds(t, m, rb, n_panels, pb):
    """Rows ``[i0, i1)`` and panels ``[p0, p1)`` of task ``t`` of a :func:`plan_tasks` plan."""
    n_pt = (n_panels + pb - 1) // pb
    r = t // n_pt
    q = t - r * n_pt
    return r * rb, min(m, r * rb + rb), q * pb, min(n_panels, q * pb + pb)


@intrinsic
def address(typingctx, arr):
    """Address of ``arr``'s first element, as int64 (the array must outlive its use)."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.ptrtoint(ary.data, ir.IntType(64))

    return types.int64(arr), codegen


@njit(cache=True, nogil=True)
def keep_alive(arr):
    """Use ``arr`` here, after a kernel that read it by :func:`address`.

    numba frees an array right after its last use in the function; for an array handed on by
    address that is the address computation itself, so another thread's allocation could reuse
    the memory while a kernel still reads it.  A call to this after the kernel moves the last
    use there.
    """
    return arr.shape[0]
