"""Which kernel module the model calls: numba-jitted kernels or their plain-numpy twins.

``load_backend()`` returns the module whose functions the model calls:

- ``"numba"``: :mod:`minilm_np.kernels.jit` (the default);
- ``"numpy"``: :mod:`minilm_np.kernels.reference`, the readable spec and test oracle, also
  used automatically when numba cannot be imported.

The choice comes from the argument, else ``$MINILM_NP_BACKEND``, else ``"numba"``.
Importing this module imports neither numba nor any kernel.

``kernels/`` has no ``__init__.py`` on purpose: installed, it is the subpackage
``minilm_np.kernels``; in a checkout, where the repository root may be first on ``sys.path``
(``python -m pytest``, ``python -m minilm_np``), a folder without ``__init__.py`` is only a
namespace portion, which never shadows another distribution's regular ``kernels`` package
(Hugging Face's, which transformers imports).
"""
import importlib
import os
import warnings

BACKENDS = ("numba", "numpy")
_MODULES = {"numba": "jit", "numpy": "reference"}


def load_backend(name=None):
    """Return the kernel module for backend ``name`` (``"numba"`` or ``"numpy"``).

    Raises
    ------
    ValueError
        If ``name`` (or ``$MINILM_NP_BACKEND``) is not a known backend.
    """
    requested = name or os.environ.get("MINILM_NP_BACKEND") or "numba"
    if requested not in BACKENDS:
        raise ValueError(f"unknown kernel backend {requested!r}; choose one of {', '.join(BACKENDS)} "
                         "(argument backend= or $MINILM_NP_BACKEND)")
    if requested == "numba":
        try:
            module = importlib.import_module(".jit", __package__)
            _announce_compiles()
            return module
        except ImportError as error:
            warnings.warn(f"numba is unavailable ({error}); using the plain-numpy kernels", RuntimeWarning,
                          stacklevel=2)
    return importlib.import_module(".reference", __package__)


def backend_name(module):
    """``"numba"`` or ``"numpy"`` for a module returned by :func:`load_backend`."""
    return "numba" if module.__name__.endswith(".jit") else "numpy"


def _announce_compiles():
    """Register the one-line notice numba's compiles print (see :mod:`._locator`)."""
    importlib.import_module("._locator", __package__)
