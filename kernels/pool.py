"""numba's thread pool: start it ahead of the first sentence and name the layer it runs on."""
import numpy as np

from ._numba_env import may_run_parallel  # (must precede the numba import)
import numba
from numba import njit, prange


@njit(parallel=True, cache=True, nogil=True)
def _touch(x):
    for i in prange(x.shape[0]):
        x[i] = i


def start():
    """Start the pool (a no-op launch) and return the threading layer's name, or None.

    Starting it at load time keeps the pool's start-up (threads, OpenMP runtime) out of the
    first ``encode``; None where parallel launches are not allowed (see
    :func:`minilm_np.kernels._numba_env.may_run_parallel`).
    """
    if not may_run_parallel():
        return None
    _touch(np.zeros(2 * numba.get_num_threads()))
    return numba.threading_layer()
