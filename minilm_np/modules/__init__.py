"""sentence-transformers' modules after the Transformer, each owning its folder, and the heads.

One class a module, as in ``sentence_transformers/models/``: :class:`Pooling`
(``pooling.py``), :class:`Dense` (``dense.py``), :class:`Normalize` (``normalize.py``), and the
cross-encoder's :class:`ClassificationHead` (``classifier.py``). Each has a
``from_folder(model_dir, folder, ...)`` that reads and checks its files and a ``__call__`` on
arrays; :func:`load_modules` (``pipeline.py``) builds a sentence encoder's modules from
``modules.json`` in order.
"""
from .classifier import ClassificationHead
from .dense import Dense
from .normalize import Normalize
from .pipeline import Pipeline, load_modules
from .pooling import Pooling

__all__ = ["ClassificationHead", "Dense", "Normalize", "Pipeline", "Pooling", "load_modules"]
