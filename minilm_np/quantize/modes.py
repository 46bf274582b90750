"""The int8 modes, their constants, and the row kernels each backend quantises with."""
import os

MODES = ("w8", "w8a16", "w8a8")
OUTLIER_CHANNELS = 4
"""Input channels per linear kept in float32 (chosen by calibration)."""
WEIGHT_LEVELS = 127
"""Largest int8 weight code; weights are symmetric in [-127, 127]."""
S16_MAX_CODE = 8191
"""Largest int16 activation code (14 bits), lowered for wide K so that int32 cannot overflow."""


def check_mode(mode):
    """Return ``mode`` if it is a quantisation mode, else raise ValueError naming the choices."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; choose one of {', '.join(MODES)} "
                         "(or None for float32)")
    return mode


def s16_max_code(k):
    """Largest int16 activation code for reduction length ``k`` (int32-safe against |w| <= 128)."""
    return int(min(S16_MAX_CODE, (2 ** 31 - 1) // (128 * max(k, 1))))


def resolve_backend(backend):
    """``"numba"`` or ``"numpy"``: the argument, else ``$MINILM_NP_BACKEND``, else numba if importable."""
    name = backend or os.environ.get("MINILM_NP_BACKEND") or "numba"
    if name == "numba":
        try:
            from ..kernels import int8_linear, quant_jit  # noqa: F401
        except ImportError:
            return "numpy"
    return "numba" if name == "numba" else "numpy"


def row_kernels(backend):
    """The quantisation kernels of ``backend`` ("numba": ``quant_jit``, else ``quant``, its numpy twin)."""
    if backend == "numba":
        from ..kernels import quant_jit
        return quant_jit
    from ..kernels import quant
    return quant
