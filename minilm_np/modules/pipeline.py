"""The modules of ``modules.json`` after the Transformer, built and run in order.

sentence-transformers runs a model's modules in ``modules.json`` order: Transformer (the BERT
body, :mod:`minilm_np.model`), then Pooling, then any Dense modules and a Normalize. Each
module reads its own folder (``1_Pooling``, ``2_Dense``...); :func:`load_modules` checks the
order and builds them, :class:`Pipeline` runs them on the body's token embeddings.
"""
import os
import warnings
from dataclasses import dataclass

from ..errors import ModelFileError, UnsupportedModelError
from ..jsonfile import read_json
from .dense import Dense
from .normalize import Normalize
from .pooling import Pooling

# modules.json types minilm-np runs (the last dotted part of the type).
SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")


@dataclass(frozen=True)
class Pipeline:
    """The modules after the Transformer: a :class:`Pooling`, then :class:`Dense` / :class:`Normalize`.

    Attributes
    ----------
    modules : tuple
        In ``modules.json`` order, the Pooling first.
    """
    modules: tuple

    @property
    def pooling(self) -> Pooling:
        return self.modules[0]

    @property
    def normalizes(self) -> bool:
        """Whether the last module is a Normalize (the embeddings come out of unit length)."""
        return isinstance(self.modules[-1], Normalize)

    def get_sentence_embedding_dimension(self) -> int:
        """Width of a sentence embedding: the last Dense module's ``out_features``, else the pooled width."""
        return next(m.get_sentence_embedding_dimension() for m in reversed(self.modules)
                    if hasattr(m, "get_sentence_embedding_dimension"))

    def __call__(self, token_embeddings, cu_seqlens, kernels):
        """Sentence embeddings of packed sequences.

        Parameters
        ----------
        token_embeddings : ndarray of float32, (n_tokens, hidden)
        cu_seqlens : ndarray of int64, (n_seqs + 1,)
        kernels : module
            The backend.

        Returns
        -------
        ndarray of float32, (n_seqs, :meth:`get_sentence_embedding_dimension`), C-contiguous.
        """
        x = self.pooling(token_embeddings, cu_seqlens, kernels)
        for module in self.modules[1:]:
            x = module(x, kernels)
        return x


def load_modules(model_dir: str, hidden_size: int) -> Pipeline:
    """Build the modules after the Transformer from ``modules.json``, each from its folder.

    Without modules.json (a plain transformers directory), or without a Pooling module, the
    pooling is the mean over the tokens, as in sentence-transformers, with a warning.

    Parameters
    ----------
    model_dir : str
    hidden_size : int
        Width of the Transformer's token embeddings.

    Raises
    ------
    ModelFileError
        modules.json or a module's file is not what it should be (the message names the file).
    UnsupportedModelError
        A module type, or an order of modules, minilm-np does not run.
    """
    path = os.path.join(model_dir, "modules.json")
    entries, types = _read_modules_json(path)
    if not entries:
        warnings.warn(f"{model_dir}: no modules.json (not a sentence-transformers directory); using mean pooling "
                      "over the tokens, as sentence-transformers does for a plain transformers model",
                      UserWarning, stacklevel=3)
    if "Pooling" not in types:
        if entries:
            warnings.warn(f"{path}: no Pooling module; using mean pooling", UserWarning, stacklevel=3)
        if any(t in ("Dense", "Normalize") for t in types):
            raise UnsupportedModelError(f"{path}: Dense/Normalize modules without a Pooling module are not supported")
        return Pipeline((Pooling(hidden_size),))
    at = types.index("Pooling")
    modules = [Pooling.from_folder(model_dir, str(entries[at].get("path", "")), hidden_size)]
    misplaced = [t for t in types[:at] if t != "Transformer"]
    if misplaced:
        raise UnsupportedModelError(f"{path}: modules {misplaced} before Pooling are not supported "
                                    "(minilm-np runs Transformer, Pooling, then Dense/Normalize)")
    width = modules[0].get_sentence_embedding_dimension()
    for entry, kind in zip(entries[at + 1:], types[at + 1:]):
        folder = str(entry.get("path", ""))
        if kind == "Normalize":
            modules.append(Normalize.from_folder(model_dir, folder))
        elif kind == "Dense":
            modules.append(Dense.from_folder(model_dir, folder, width))
            width = modules[-1].out_features
        else:
            raise UnsupportedModelError(f"{path}: a {kind} module after Pooling is not supported")
    return Pipeline(tuple(modules))


def _read_modules_json(path):
    """modules.json's entries (dicts; none when the file is missing) and their short type names."""
    entries = read_json(path, required=False) or []
    if not isinstance(entries, list):
        raise ModelFileError(f"{path}: expected a JSON list of modules")
    entries = [m for m in entries if isinstance(m, dict)]
    types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in entries]
    unsupported = [t for t in types if t not in SUPPORTED_MODULES]
    if unsupported:
        raise UnsupportedModelError(f"{path}: modules {unsupported} are not supported "
                                    f"(supported: {', '.join(SUPPORTED_MODULES)})")
    return entries, types
