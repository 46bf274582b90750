"""numpy's BLAS and numba at run time, without extra dependencies: their thread counts, and which
kernel family the BLAS runs."""
import ctypes
import glob
import numbers
import os

_SETTERS = ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "MKL_Set_Num_Threads", "bli_thread_set_num_threads")


def _blas_libraries():
    import numpy as np

    paths = []
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "blas" in line.lower() or "mkl_rt" in line.lower()})
    except OSError:
        pass
    libs_dir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    paths += glob.glob(os.path.join(libs_dir, "*blas*")) + glob.glob(os.path.join(os.path.dirname(np.__file__),
                                                                                  ".dylibs", "*blas*"))
    return [p for p in dict.fromkeys(paths) if os.path.isfile(p)]


def _blas_functions(names):
    """For each loadable BLAS library numpy uses, the first of ``names`` it exports (those with none skipped)."""
    for path in _blas_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        function = next((f for f in (getattr(lib, name, None) for name in names) if f is not None), None)
        if function is not None:
            yield function


def set_blas_threads(n: int) -> bool:
    """Set the thread count of the BLAS that numpy uses; False when it could not be found."""
    done = False
    for setter in _blas_functions(_SETTERS):
        setter(ctypes.c_int(n))
        done = True
    return done


_CORENAME_GETTERS = ("openblas_get_corename", "scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                     "openblas_get_corename64_")


def blas_core():
    """The kernel family numpy's OpenBLAS chose for this CPU (e.g. ``"Haswell"``, ``"SkylakeX"``).

    ``None`` when numpy's BLAS is not an OpenBLAS that says. The numpy backend's GEMMs are this
    BLAS, so whether a text's vector is bitwise the same alone and in a batch depends on it
    (README, "Backends and threads").
    """
    for getter in _blas_functions(_CORENAME_GETTERS):
        getter.restype = ctypes.c_char_p
        core = getter()
        return core.decode() if core else None
    return None


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def granted_threads() -> int:
    """The CPUs this process was given: ``$OMP_NUM_THREADS`` (at most :func:`cpu_count`), else
    :func:`cpu_count`.

    Ray sets ``OMP_NUM_THREADS`` to a worker's ``num_cpus``, Spark to ``spark.task.cpus`` and a
    Dask nanny to 1 (one per task thread); numba itself ignores it, so without this every
    worker would start as many threads as the host has cores. A value that is not a positive
    integer (OpenMP also accepts lists such as ``4,2``) counts by its first entry, or not at all.
    """
    cores = cpu_count()
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if first.isdigit() and int(first) >= 1:
        return min(int(first), cores)
    return cores


def resolve_threads(threads):
    """Validate ``threads`` (or ``$MINILM_NP_THREADS``); default: :func:`granted_threads`."""
    source = "threads"
    if threads is None:
        env = os.environ.get("MINILM_NP_THREADS")
        if env is None or env.strip() == "":
            return granted_threads()
        source = "$MINILM_NP_THREADS"
        try:
            threads = int(env)
        except ValueError:
            raise ValueError(f"$MINILM_NP_THREADS must be a positive integer, got {env!r}") from None
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ValueError(f"{source} must be a positive integer, got {threads!r}")
    return int(threads)


def apply_threads(n: int, numba_backend: bool) -> None:
    """Use ``n`` threads in BLAS and, for the numba backend, in numba's parallel kernels."""
    set_blas_threads(n)
    if numba_backend:
        set_numba_threads(n)


def set_numba_threads(n: int) -> None:
    """Use ``n`` threads (at most numba's pool size) in parallel kernels launched from this thread.

    numba's setting is thread-local, so an encoder calls this at the start of every encode.
    """
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
