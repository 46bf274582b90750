"""The numba backend: the kernels the model calls, each the twin of the function of that name in
:mod:`reference` (same signature, same in-place contract; :func:`backend.load_backend` returns
this module or that one).

Layout conventions are those of :mod:`reference` (packed sequences, ``cu_seqlens`` offsets).
Every kernel writes in place into an array it is given; none allocates per-batch scratch
(attention allocates one scratch per thread, for its longest sequence).  The kernels live by
layer: :mod:`rows` (row-wise and elementwise), :mod:`attention`, :mod:`sgemm` (the float32 GEMM
the linear layers call directly).
"""
from . import reference as _reference
from .attention import attention
from .rows import (bias_gelu, bias_residual_layer_norm, erf, exp, first_token_pool, gather_embeddings,
                   l2_normalize, max_pool, mean_pool)

__all__ = ["attention", "bias_gelu", "bias_residual_layer_norm", "erf", "exp", "first_token_pool",
           "gather_embeddings", "l2_normalize", "max_pool", "mean_pool"]

for _twin in (gather_embeddings, bias_gelu, bias_residual_layer_norm, mean_pool, max_pool, first_token_pool,
              l2_normalize):
    _twin.__doc__ = getattr(_reference, _twin.__name__).__doc__
