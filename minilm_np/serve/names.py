"""The names the served models answer to."""
import os

from ..locate import DEFAULT_MODEL, packaged_default_dir

# Ollama's name for all-MiniLM-L6-v2
DEFAULT_MODEL_ALIASES = (DEFAULT_MODEL, DEFAULT_MODEL.split("/")[-1], "all-minilm")


def _key(name):
    """Names compare without case and without Ollama's ``:latest`` tag."""
    name = name.strip().lower()
    return name[:-len(":latest")] if name.endswith(":latest") else name


def names_for(model, served_model_names=()):
    """The names of the model loaded from ``model`` (a name or directory; None: the default
    model), primary first.

    ``--served-model-name`` values come first, then ``model`` as given and its last path part;
    the default model (also from its installed package's directory) answers to
    ``all-MiniLM-L6-v2``, ``sentence-transformers/all-MiniLM-L6-v2`` and ``all-minilm``.
    """
    names = list(served_model_names)
    arg = None if model is None else os.fspath(model).rstrip("/\\")
    default = arg is None or arg == packaged_default_dir() or _key(os.path.basename(arg)) in \
        {_key(n) for n in DEFAULT_MODEL_ALIASES}
    if arg is not None and arg != packaged_default_dir():
        names += [arg, os.path.basename(arg)]
    if default:
        names += [DEFAULT_MODEL_ALIASES[1], DEFAULT_MODEL_ALIASES[0], DEFAULT_MODEL_ALIASES[2]]
    return list(dict.fromkeys(n for n in names if n))


class ServedNames:
    """The embedding model's names and the rerank model's (empty when there is none)."""

    def __init__(self, embed_names, rerank_names=()):
        self.embed_names = list(embed_names)
        self.rerank_names = list(rerank_names)
        self._embed_keys = {_key(n) for n in self.embed_names}
        self._rerank_keys = {_key(n) for n in self.rerank_names}

    def embeds(self, name) -> bool:
        return _key(name) in self._embed_keys

    def reranks(self, name) -> bool:
        return _key(name) in self._rerank_keys

    def primary(self):
        """The primary name of each served model."""
        return [names[0] for names in (self.embed_names, self.rerank_names) if names]

    def listing(self) -> str:
        return ", ".join(f"`{n}`" for n in self.embed_names + self.rerank_names)
