"""Choose numba's cache directory and threading layer before numba is imported.

numba writes its on-disk cache beside the source file by default; a read-only site-packages
would then recompile every kernel in every process. We point it at a user cache directory
instead (``NUMBA_CACHE_DIR`` wins when set). The threading layer defaults to ``workqueue``:
OpenMP's spin-waiting threads fight OpenBLAS's own pool when GEMMs and numba-parallel kernels
alternate (measured 8x slower on 2 cores), and workqueue threads do not spin.

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
    os.environ.setdefault("NUMBA_CACHE_DIR", default_cache_dir())
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

CACHE_DIR = os.environ.get("NUMBA_CACHE_DIR", default_cache_dir())
