"""Choose numba's cache directory and threading layer before numba is imported.

numba writes its on-disk cache beside the source file by default; a read-only site-packages
would then recompile every kernel in every process. We point it at a user cache directory
instead (``NUMBA_CACHE_DIR`` wins when set).

Threading layer: OpenMP first, then workqueue (``NUMBA_THREADING_LAYER`` /
``NUMBA_THREADING_LAYER_PRIORITY`` win when set). A forward pass launches a few dozen
parallel regions; measured here, an empty launch costs 2 us on OpenMP's pool and 100 us on
workqueue's, which made two threads slower than one for a short sentence. The kernels no
longer alternate with BLAS (the numba backend runs its own GEMM), so OpenMP's spinning
threads have no BLAS pool to fight. GNU OpenMP is not fork-safe: numba terminates a forked
child that launches on a pool its parent started, so such a child runs every kernel on its
calling thread (:func:`may_run_parallel`).

Import this module before the first ``import numba`` anywhere in the package.
"""
import os
import sys


def default_cache_dir() -> str:
    """Return the per-user directory where compiled kernels are cached."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "minilm-np", "numba")


if "numba" not in sys.modules:
    from . import _cache

    os.environ.setdefault("NUMBA_CACHE_DIR", default_cache_dir())
    _cache.set_portable_target()
    _cache.use_locator()
    os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp workqueue tbb")

CACHE_DIR = os.environ.get("NUMBA_CACHE_DIR", default_cache_dir())

_forked_after_openmp = False


def _after_fork_in_child():
    global _forked_after_openmp
    numba = sys.modules.get("numba")
    if numba is None or _forked_after_openmp:
        return
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel launch yet: the child may start its own pool
        return
    _forked_after_openmp = layer == "omp"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def may_run_parallel() -> bool:
    """False in a process forked after its parent used numba's OpenMP pool (launching would abort it)."""
    return not _forked_after_openmp


def pool_threads() -> int:
    """Threads a parallel launch from this thread would use (1: run serially).

    numba's count is per calling thread; asking for it costs ~0.5 us (it takes a lock), so callers
    ask only for work big enough to share out.
    """
    if _forked_after_openmp:
        return 1
    import numba

    return numba.get_num_threads()
