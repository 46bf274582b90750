"""minilm-np: BERT sentence embeddings (all-MiniLM-L6-v2 by default) in numpy + numba, no PyTorch.

>>> import minilm_np
>>> model = minilm_np.load()
>>> model.encode(["A sentence.", "Another one."]).shape
(2, 384)
"""
import os as _os

# Installed, the top-level kernels/ folder is the subpackage minilm_np.kernels (setuptools
# package-dir). Run from a source checkout (python -m minilm_np in the repository root), it
# sits beside this package instead: look for it there too.
_checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if (not _os.path.isdir(_os.path.join(__path__[0], "kernels"))
        and _os.path.isfile(_os.path.join(_checkout, "kernels", "jit.py"))):
    __path__.append(_checkout)

from .encoder import SentenceTransformer, load
from .errors import ModelFileError, ModelNotFoundError, UnsupportedModelError
from .util import cos_sim, dot_score

__version__ = "0.1.0"
__all__ = ["load", "SentenceTransformer", "cos_sim", "dot_score", "ModelFileError", "ModelNotFoundError",
           "UnsupportedModelError", "__version__"]
