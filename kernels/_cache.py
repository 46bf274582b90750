"""Where compiled kernels live, which CPU they are compiled for, and the notice when a compile starts.

Three things make one compile serve every later process:

- **A fixed cache folder.** numba names a file's cache folder after the source folder's absolute
  path, so a checkout and an installed copy, or two virtual environments, each compiled their own.
  ``_locator.KernelCacheLocator`` files minilm-np's kernels under ``$NUMBA_CACHE_DIR/minilm_np_kernels``
  whatever the path; numba still checks each entry against a hash of the source file's contents.
- **A portable target.** numba compiles for the host's exact CPU name and features, and a cached
  entry only serves that exact target. :func:`portable_target` names the x86-64 feature level of
  the host instead (``x86-64-v3`` for AVX2 machines, ``x86-64-v4`` for AVX-512), plus the int8
  extensions the kernels choose paths by (VNNI, AMX), so one build serves every machine of that tier.
  The kernels pick their ISA paths from the same feature list (``cpu.cpu_has``), so each path's
  bits are unchanged.
- **A shared, read-only seed.** ``minilm-np warmup --shared`` compiles into :data:`SHARED_DIR`,
  beside the installed package; a process whose per-user cache lacks a file copies it from there
  (numba must be able to write where it caches, which a system site-packages is not).  The
  package build runs it (``setup.py``), so an install from source arrives with its seed.

This module does not import numba: :mod:`._numba_env` calls it before numba's first import.
:mod:`._locator` holds numba's side (the locator, and the notice printed when a compile starts).
"""
import os
import shutil

SUBDIR = "minilm_np_kernels"
SHARED_DIR = os.environ.get("MINILM_NP_SHARED_CACHE") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_numba_cache")
"""Prebuilt cache that seeds every user's (``warmup --shared`` writes it): ``$MINILM_NP_SHARED_CACHE``,
else ``_numba_cache`` beside the installed package (``minilm_np/_numba_cache``)."""

# x86-64 micro-architecture levels (psABI), in LLVM's feature names; each level adds to the last.
_LEVELS = (
    ("x86-64-v2", ("64bit", "cmov", "cx8", "fxsr", "mmx", "sse", "sse2", "cx16", "sahf", "popcnt", "sse3",
                   "sse4.1", "sse4.2", "ssse3")),
    ("x86-64-v3", ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave")),
    ("x86-64-v4", ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")),
)
# Beyond the level: the features the int8 kernels choose their path by (kernels.cpu).
_EXTRAS = ("avxvnni", "avx512vnni", "amx-tile", "amx-int8")


def portable_target(host_features):
    """``(cpu_name, features)`` for numba: the host's x86-64 level plus its int8 extensions.

    Parameters
    ----------
    host_features : dict
        LLVM feature name -> bool, as ``llvmlite.binding.get_host_cpu_features()`` returns.

    Returns
    -------
    tuple of str, or None
        ``("x86-64-v4", "+64bit,...,+avx512vnni")``; None below x86-64-v3 or off x86 (numba's host
        default stays).
    """
    name, features = None, []
    for level, added in _LEVELS:
        if not all(host_features.get(f, False) for f in added):
            break
        features += added
        name = level
    if name in (None, "x86-64-v2"):
        return None
    features += [f for f in _EXTRAS if host_features.get(f, False)]
    return name, ",".join("+" + f for f in features)


AVX2_TIER = portable_target({f: True for _, added in _LEVELS[:2] for f in added})
"""The target of a plain AVX2 machine (no AVX-512, no AVX-VNNI: AMD Zen 2 and Zen 3, Intel
Haswell to Comet Lake): the package build compiles it too where the build machine can run it."""


def set_portable_target(environ=os.environ):
    """Set ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` to the host's tier unless either is set.

    ``$MINILM_NP_TARGET=host`` keeps numba's own choice (the host's exact CPU). Must run before
    numba is imported.
    """
    if "NUMBA_CPU_NAME" in environ or "NUMBA_CPU_FEATURES" in environ:
        return
    if environ.get("MINILM_NP_TARGET", "portable") == "host":
        return
    try:
        from llvmlite import binding

        target = portable_target(dict(binding.get_host_cpu_features()))
    except Exception:  # no llvmlite (numba missing: the numpy backend) or an exotic host
        return
    if target is not None:
        environ["NUMBA_CPU_NAME"], environ["NUMBA_CPU_FEATURES"] = target


def seed_from(shared, user):
    """Copy each file of ``shared`` that ``user`` lacks (both cache folders of one source tree).

    Missing or unreadable folders are skipped: the cache then simply compiles.
    """
    try:
        names = os.listdir(shared)
    except OSError:
        return
    try:
        os.makedirs(user, exist_ok=True)
        present = set(os.listdir(user))
        for name in names:
            if name not in present:
                # numba reads an index file whole; copy to a temporary name first so another
                # process never sees half a file
                tmp = os.path.join(user, f".{name}.{os.getpid()}.tmp")
                shutil.copyfile(os.path.join(shared, name), tmp)
                os.replace(tmp, os.path.join(user, name))
    except OSError:
        return


LOCATOR = "minilm_np.kernels._locator.KernelCacheLocator"


def use_locator(environ=os.environ):
    """Put :class:`~._locator.KernelCacheLocator` first in ``NUMBA_CACHE_LOCATOR_CLASSES``.

    Must run before numba is imported. Listing numba's own locators after it keeps their behaviour
    for every other file.
    """
    rest = environ.get("NUMBA_CACHE_LOCATOR_CLASSES") or (
        "UserProvidedCacheLocator,InTreeCacheLocator,UserWideCacheLocator,IPythonCacheLocator,ZipCacheLocator")
    if LOCATOR not in rest:
        environ["NUMBA_CACHE_LOCATOR_CLASSES"] = f"{LOCATOR},{rest}"
