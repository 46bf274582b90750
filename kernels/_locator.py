"""numba's side of :mod:`._cache`: the cache locator for minilm-np's kernels and the compile notice.

This module imports numba; :mod:`._cache` sets numba's environment before that import.
"""
import os
import sys

from ._numba_env import CACHE_DIR  # noqa: F401  (must precede the numba import)
from numba.core import config, event
from numba.core.caching import UserProvidedCacheLocator

from ._cache import SHARED_DIR, SUBDIR, seed_from

_KERNEL_DIR = os.path.dirname(os.path.realpath(__file__))


def is_kernel_file(path):
    """True for a source file of this kernels folder (under either of its import names)."""
    return os.path.dirname(os.path.realpath(path)) == _KERNEL_DIR


class KernelCacheLocator(UserProvidedCacheLocator):
    """minilm-np's kernels in ``$NUMBA_CACHE_DIR/minilm_np_kernels`` whatever their install path,
    seeded from :data:`._cache.SHARED_DIR`; other files are left to numba's own locators."""

    _seeded = False

    @classmethod
    def get_suitable_cache_subpath(cls, py_file):
        return SUBDIR

    @classmethod
    def from_function(cls, py_func, py_file):
        if not config.CACHE_DIR or not is_kernel_file(py_file):
            return None
        if not KernelCacheLocator._seeded:
            KernelCacheLocator._seeded = True
            shared = os.path.join(SHARED_DIR, SUBDIR)
            user = os.path.join(config.CACHE_DIR, SUBDIR)
            if os.path.realpath(shared) != os.path.realpath(user):
                seed_from(shared, user)
        return super().from_function(py_func, py_file)


compiles = 0
"""minilm-np kernels numba compiled in this process (cache misses; loads from the cache do not count)."""


class _CompileNotice(event.Listener):
    """Counts compiles of minilm-np kernels and prints one line at the first."""

    def on_start(self, ev):
        global compiles
        dispatcher = (ev.data or {}).get("dispatcher")
        code = getattr(getattr(dispatcher, "py_func", None), "__code__", None)
        if code is None or not is_kernel_file(code.co_filename):
            return
        compiles += 1
        if compiles == 1:
            print("minilm-np: compiling the numba kernels for this CPU (first use of this kernel set; cached in "
                  f"{config.CACHE_DIR or 'numba default'}; `minilm-np warmup` does it ahead of time)",
                  file=sys.stderr, flush=True)

    def on_end(self, ev):
        pass


# once per process, even where this folder is imported under a second name (``kernels``, in a checkout)
if not any(type(listener).__name__ == "_CompileNotice" for listener in event._registered["numba:compile"]):
    event.register("numba:compile", _CompileNotice())
