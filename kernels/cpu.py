"""CPU features, and the instruction-set choice (:class:`Isa`) that kernels take as an argument.

Two kinds of facts live here, and nowhere else in ``kernels/``:

- *Features* (``AVX512F``, ``AVX2``, ``VNNI``, ``VNNI512``, ``AMX_CAPABLE``): what the CPU that
  numba compiles for has (the host, limited by ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES``;
  :func:`cpu_has`).  They decide which code is *built* (e.g. 12-row VNNI tiles on zmm), are fixed
  for the process, and are part of numba's cache key (it caches per CPU model and features).
- The *ISA choice* (:class:`Isa`): which of the built paths a call *runs*.  Public kernels take
  ``isa=`` (default :data:`ISA`, everything the CPU has minus what the environment turns off)
  and pass it down as plain arguments; nothing is switched through module globals.

Environment switches (read once, at import):

``MINILM_NP_AVX512=0``      float32 GEMM, softmax and attention on 8-lane vectors
``MINILM_NP_INT8_AVX2=0``   int8 GEMMs on the portable numba loops (no x86 intrinsics)
``MINILM_NP_AMX=0``         int8 GEMMs on the vector kernels, never the AMX tiles
"""
from ._numba_env import may_run_parallel  # noqa: F401  (must precede the numba import)
import os
import sys
from typing import NamedTuple

from numba.core import config


def cpu_has(feature):
    """True when both the host CPU and numba's code-generation target have ``feature``.

    numba targets the host's features unless ``NUMBA_CPU_FEATURES`` names others (then those).
    """
    try:
        import llvmlite.binding as llvm
        host = bool(llvm.get_host_cpu_features().get(feature, False))
        if config.CPU_FEATURES is not None:
            return host and f"+{feature}" in config.CPU_FEATURES.split(",")
        return host
    except Exception:  # pragma: no cover - non-x86 llvmlite builds, exotic hosts
        return False


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


AVX512F = cpu_has("avx512f")
"""16-lane (zmm) float32 vectors."""
AVX2 = cpu_has("avx2")
"""The int8 vector micro-kernels (``vpmaddubsw`` / ``vpmaddwd``) can be built."""
VNNI = AVX2 and (cpu_has("avxvnni") or (cpu_has("avx512vnni") and cpu_has("avx512vl")))
"""The int8 micro-kernels multiply with ``vpdpbusd`` / ``vpdpwssd`` (one instruction for the two
or three of the AVX2 step; the same exact sums, since no u8s8 pair sum of ``A <= 127`` saturates)."""
VNNI512 = VNNI and cpu_has("avx512vnni") and cpu_has("avx512bw") and AVX512F
"""The VNNI micro-kernels use 16-lane (zmm) vectors: one 64-byte weight group a step, up to 12 rows."""
AMX_CAPABLE = VNNI512 and cpu_has("amx-tile") and cpu_has("amx-int8") and _amx_permitted()
"""numba's target has AMX-INT8 and Linux granted this process its tile state (the AMX
micro-kernels are compiled only then)."""


def _switch(name):
    return os.environ.get(name, "1") != "0"


class Isa(NamedTuple):
    """Which paths a kernel call runs; build one with :func:`isa` (never more than the CPU has)."""

    avx512: bool
    """float32 GEMM, softmax and attention on 16-lane vectors (else 8; bitwise the same results)."""
    int8_vector: bool
    """int8 GEMMs on the AVX2/VNNI micro-kernels (else the portable loops; the same exact int32)."""
    amx: bool
    """u8s8 products (and w8a16's byte planes) with ``K % 64 == 0`` on the AMX tiles."""


def isa(avx512=True, int8_vector=True, amx=True):
    """The paths this CPU and the environment switches allow, less those turned off here.

    Parameters
    ----------
    avx512, int8_vector, amx : bool
        ``False`` turns the path off; ``True`` keeps it where available (it never turns on a
        path the CPU lacks or the environment switched off).  AMX runs only with the vector
        int8 kernels.

    Returns
    -------
    Isa
    """
    vector = bool(int8_vector) and AVX2 and _switch("MINILM_NP_INT8_AVX2")
    return Isa(avx512=bool(avx512) and AVX512F and _switch("MINILM_NP_AVX512"),
               int8_vector=vector,
               amx=bool(amx) and vector and AMX_CAPABLE and _switch("MINILM_NP_AMX"))


ISA = isa()
"""The default choice: everything this CPU has that the environment did not turn off."""
