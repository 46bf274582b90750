"""Model configuration: what config.json and sentence_bert_config.json say, validated.

The modules after the Transformer (Pooling, Dense, Normalize) read their own folders
(:mod:`minilm_np.modules`).
"""
import os
from dataclasses import dataclass, field

from .errors import ModelFileError, UnsupportedModelError
from .jsonfile import read_json, read_json_object

SUPPORTED_ACTIVATIONS = ("gelu",)


@dataclass(frozen=True)
class Config:
    """Everything the forward pass needs to know about a BERT model.

    Built by :func:`read_config`; the fields mirror config.json (``hidden_size``...) and
    sentence_bert_config.json (``max_seq_length``, ``do_lower_case``). ``num_labels`` is set for
    a cross-encoder (``architectures`` names ``BertForSequenceClassification``) and None for a
    sentence embedding model.
    """
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_act: str = "gelu"
    max_seq_length: int = 256
    do_lower_case: bool = False
    quantization: str | None = None
    extra: dict = field(default_factory=dict, compare=False, repr=False)
    num_labels: int | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def _int_field(raw, key, path, minimum=1):
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelFileError(f"{path}: {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def read_config(model_dir: str) -> Config:
    """Read and validate a model directory's configuration files.

    Parameters
    ----------
    model_dir : str
        A sentence-transformers model directory (or a plain BERT directory with config.json).

    Raises
    ------
    ModelFileError
        A file is missing, not JSON, or holds an impossible value.
    UnsupportedModelError
        The architecture is not BERT, or it asks for an activation we do not have.
    """
    path = os.path.join(model_dir, "config.json")
    raw = read_json_object(path)
    model_type = raw.get("model_type", "bert")
    if model_type != "bert":
        raise UnsupportedModelError(
            f"{path}: model_type {model_type!r} is not supported; minilm-np runs BERT models only")
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModelError(f"{path}: position_embedding_type "
                                    f"{raw['position_embedding_type']!r} is not supported (only 'absolute')")
    hidden_act = raw.get("hidden_act", "gelu")
    if hidden_act not in SUPPORTED_ACTIVATIONS:
        raise UnsupportedModelError(f"{path}: hidden_act {hidden_act!r} is not supported "
                                    f"(supported: {', '.join(SUPPORTED_ACTIVATIONS)})")
    hidden = _int_field(raw, "hidden_size", path)
    heads = _int_field(raw, "num_attention_heads", path)
    if hidden % heads:
        raise ModelFileError(f"{path}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    eps = raw.get("layer_norm_eps", 1e-12)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
        raise ModelFileError(f"{path}: 'layer_norm_eps' must be a positive number, got {eps!r}")
    max_positions = _int_field(raw, "max_position_embeddings", path, minimum=2)

    st_path = os.path.join(model_dir, "sentence_bert_config.json")
    st_raw = read_json(st_path, required=False) or {}
    max_seq_length = _max_seq_length(model_dir, st_raw, max_positions)
    if not isinstance(max_seq_length, int) or not 2 <= max_seq_length <= max_positions:
        raise ModelFileError(f"{st_path}: max_seq_length {max_seq_length!r} must be an integer in "
                             f"[2, {max_positions}] (the position table's size)")
    num_labels = _read_num_labels(raw, path)
    return Config(
        hidden_size=hidden,
        num_layers=_int_field(raw, "num_hidden_layers", path),
        num_heads=heads,
        intermediate_size=_int_field(raw, "intermediate_size", path),
        vocab_size=_int_field(raw, "vocab_size", path),
        max_position_embeddings=max_positions,
        type_vocab_size=_int_field(raw, "type_vocab_size", path),
        layer_norm_eps=float(eps),
        hidden_act=hidden_act,
        max_seq_length=max_seq_length,
        do_lower_case=bool(st_raw.get("do_lower_case", False)),
        quantization=raw.get("minilm_np_quantization"),
        extra=raw,
        num_labels=num_labels,
    )


def architecture(raw: dict) -> str:
    """config.json's first ``architectures`` entry, or ``"BertModel"`` when it names none."""
    names = raw.get("architectures")
    return str(names[0]) if isinstance(names, list) and names else "BertModel"


def _read_num_labels(raw, path):
    """Labels of a ``BertForSequenceClassification`` (None for any other architecture), as
    transformers counts them: ``id2label``'s size, else ``num_labels``, else 2."""
    if not architecture(raw).endswith("ForSequenceClassification"):
        return None
    if architecture(raw) != "BertForSequenceClassification":
        raise UnsupportedModelError(f"{path}: architecture {architecture(raw)!r} is not supported "
                                    "(cross-encoders: BertForSequenceClassification)")
    labels = raw.get("id2label")
    count = len(labels) if isinstance(labels, dict) and labels else raw.get("num_labels", 2)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ModelFileError(f"{path}: 'num_labels' must be an integer >= 1, got {count!r}")
    return count


def _max_seq_length(model_dir, st_raw, max_positions):
    """The token limit as sentence-transformers resolves it.

    sentence_bert_config.json's ``max_seq_length`` (or a ``model_max_length`` among its
    tokenizer arguments), else tokenizer_config.json's ``model_max_length`` capped at the
    position table, else the position table's size.
    """
    if st_raw.get("max_seq_length") is not None:
        return st_raw["max_seq_length"]
    for key in ("processor_kwargs", "tokenizer_args"):
        kwargs = st_raw.get(key)
        if isinstance(kwargs, dict) and kwargs.get("model_max_length") is not None:
            return kwargs["model_max_length"]
    tokenizer_config = read_json(os.path.join(model_dir, "tokenizer_config.json"), required=False)
    limit = tokenizer_config.get("model_max_length") if isinstance(tokenizer_config, dict) else None
    if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit >= 2:
        return int(min(limit, max_positions))  # transformers' "no limit" is 1e30: the table caps it
    return max_positions


