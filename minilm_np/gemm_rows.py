"""GEMMs on enough rows that each row's result is bitwise independent of its batch-mates."""
import numpy as np

# OpenBLAS takes a different code path (gemv, small-matrix kernels) below 4 rows, which rounds
# differently; running every GEMM on at least this many rows keeps a text's vector bitwise
# independent of its batch-mates.
MIN_GEMM_ROWS = 8


def matmul_t(x, weight):
    """``x @ weight.T`` on at least :data:`MIN_GEMM_ROWS` rows (zero-padded).

    Parameters
    ----------
    x : ndarray of float32, (n, in)
    weight : ndarray of float32, (out, in)

    Returns
    -------
    ndarray of float32, (n, out)
    """
    if len(x) >= MIN_GEMM_ROWS:
        return x @ weight.T
    padded = np.zeros((MIN_GEMM_ROWS, x.shape[1]), np.float32)
    padded[:len(x)] = x
    return (padded @ weight.T)[:len(x)]
