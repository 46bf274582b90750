"""Model-agnostic compute kernels (numba-jitted, each with a plain-numpy twin)."""
