"""The erf and exp approximations every backend evaluates: coefficients only, no code.

:mod:`reference` (numpy, float64), the numba scalar loops (:mod:`rows`) and the LLVM IR vector
code (:mod:`ir`, for the float32 GEMM's GELU epilogue and attention's softmax) all read these,
so the polynomials are written once.  This module imports nothing: the numpy fallback uses it
where numba is not installed.
"""

ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
         -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
"""erf(x) ~= x * P(x^2) / Q(x^2) on [-4, 4] (x clamped there): the rational form Eigen and XLA
evaluate in float32 (absolute error below 1.5e-7); highest power first, as :func:`numpy.polyval`."""
ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
         -1.42647390514189e-02)
"""The denominator of :data:`ERF_P`, highest power first."""

EXP_LOG2E = 1.44269504088896341
EXP_LN2_HI = 0.693359375
EXP_LN2_LO = -2.12194440e-4
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
            5.0000001201e-1)
"""Cephes expf: ``exp(x) = 2^n exp(r)``, ``n = floor(x log2(e) + 1/2)``, ``r = x - n ln2`` in two
parts (hi + lo), ``exp(r) ~= (P(r) r^2 + r) + 1`` with ``P`` these coefficients, highest power
first; inputs clamped to ``[-87, 88]``."""
EXP_MIN = -87.0
