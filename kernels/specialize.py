"""Kernel choice by operand type, made when numba compiles the caller.

A driver compiled for uint8 activations then builds only the u8s8 micro-kernels and epilogue,
one compiled for int16 only the s16s8 ones: a run-time flag would build both into every caller
(w8a8's first run compiled 1.65x longer that way at ac2a8a1).
"""
from ._numba_env import may_run_parallel  # noqa: F401  (must precede the numba import)
from numba import types
from numba.extending import overload


def _is_u8(operand):
    return getattr(operand, "dtype", operand) == types.uint8


def by_operand(name, u8s8, s16s8):
    """A numba-only function ``name(operand, *args)`` that calls ``u8s8(*args)`` when ``operand`` is
    uint8 and ``s16s8(*args)`` otherwise.

    Parameters
    ----------
    name : str
        The function's name, for numba's messages.
    u8s8, s16s8 : numba-callable
        The two kernels (jitted functions or intrinsics) taking the same arguments.

    Returns
    -------
    function
        Callable from jitted code only.  ``operand`` is the activation array (its dtype decides),
        or a scalar of that dtype; it is not passed on.
    """
    def choose(operand, *args):
        raise NotImplementedError(f"{name} runs in numba-compiled code only")

    choose.__name__ = choose.__qualname__ = name

    @overload(choose, jit_options=dict(cache=True, nogil=True, boundscheck=False))
    def _typed(operand, *args):
        kernel = u8s8 if _is_u8(operand) else s16s8
        return lambda operand, *args: kernel(*args)

    return choose
