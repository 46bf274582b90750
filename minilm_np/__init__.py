"""minilm-np: BERT sentence embeddings (all-MiniLM-L6-v2 by default) in numpy + numba, no PyTorch.

>>> import minilm_np
>>> model = minilm_np.load()
>>> model.encode(["A sentence.", "Another one."]).shape
(2, 384)
"""
from .cross_encoder import CrossEncoder
from .embedder import Embedder
from .encoder import SentenceTransformer, load
from .errors import ModelFileError, ModelNotFoundError, NonFiniteOutputError, UnsupportedModelError
from .util import cos_sim, dot_score

__version__ = "0.1.0"
__all__ = ["load", "SentenceTransformer", "CrossEncoder", "Embedder", "cos_sim", "dot_score", "ModelFileError",
           "ModelNotFoundError", "NonFiniteOutputError", "UnsupportedModelError", "__version__"]
