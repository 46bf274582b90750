"""What every post-pooling module checks in its folder's config.json."""
from ..errors import UnsupportedModelError

SENTENCE_EMBEDDING = "sentence_embedding"


def check_io_names(raw, path, kind):
    """Reject modules that read or write something other than the sentence embedding.

    Parameters
    ----------
    raw : dict
        The module's config.json.
    path : str
        That file, for the message.
    kind : str
        The module's type (``Dense``, ``Normalize``).
    """
    for key in ("module_input_name", "module_output_name"):
        name = raw.get(key)
        if name not in (None, SENTENCE_EMBEDDING):
            raise UnsupportedModelError(f"{path}: {kind} with {key} {name!r} is not supported (minilm-np applies "
                                        f"{kind} to the sentence embedding only)")
