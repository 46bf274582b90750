"""Model configuration: what config.json and the sentence-transformers files say, validated."""
import json
import os
from dataclasses import dataclass, field

from .errors import ModelFileError, UnsupportedModelError

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len")
POOLING_NAMES = {"cls": "cls", "max": "max", "mean": "mean", "mean_sqrt_len_tokens": "mean_sqrt_len",
                 "mean_sqrt_len": "mean_sqrt_len"}
LEGACY_POOLING_KEYS = (("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max"),
                       ("pooling_mode_mean_tokens", "mean"), ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"))
SUPPORTED_ACTIVATIONS = ("gelu",)


@dataclass(frozen=True)
class Config:
    """Everything the forward pass needs to know about a BERT sentence model.

    Built by :func:`read_config`; the fields mirror config.json (``hidden_size``...),
    1_Pooling/config.json (``pooling_modes``), sentence_bert_config.json
    (``max_seq_length``) and modules.json (``normalize``).
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
    pooling_modes: tuple = ("mean",)
    normalize: bool = False
    quantization: str | None = None
    sentence_transformers_files: bool = True
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def embedding_dim(self) -> int:
        """Width of a sentence embedding: the hidden size times the number of pooling modes."""
        return self.hidden_size * len(self.pooling_modes)


def _read_json(path, required=True):
    if not os.path.exists(path):
        if required:
            raise ModelFileError(f"{path}: file is missing")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path}: not valid JSON ({error})") from None


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
        The architecture is not BERT, or it asks for an activation or pooling we do not have.
    """
    path = os.path.join(model_dir, "config.json")
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path}: expected a JSON object")
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
    st_raw = _read_json(st_path, required=False) or {}
    max_seq_length = st_raw.get("max_seq_length") or min(512, max_positions)
    if not isinstance(max_seq_length, int) or not 2 <= max_seq_length <= max_positions:
        raise ModelFileError(f"{st_path}: max_seq_length {max_seq_length!r} must be an integer in "
                             f"[2, {max_positions}] (the position table's size)")

    modules = _read_json(os.path.join(model_dir, "modules.json"), required=False) or []
    module_types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules if isinstance(m, dict)]
    unsupported = [t for t in module_types if t not in ("Transformer", "Pooling", "Normalize")]
    if unsupported:
        raise UnsupportedModelError(f"{os.path.join(model_dir, 'modules.json')}: modules {unsupported} "
                                    "are not supported (supported: Transformer, Pooling, Normalize)")
    pooling_modes = _read_pooling(model_dir, modules)
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
        pooling_modes=pooling_modes,
        normalize="Normalize" in module_types,
        quantization=raw.get("minilm_np_quantization"),
        sentence_transformers_files=bool(modules),
        extra=raw,
    )


def _read_pooling(model_dir, modules):
    folder = next((m.get("path", "") for m in modules if isinstance(m, dict)
                   and str(m.get("type", "")).endswith("Pooling")), None)
    if folder is None:
        return ("mean",)
    path = os.path.join(model_dir, folder, "config.json")
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path}: expected a JSON object")
    if "pooling_mode" in raw:  # sentence-transformers >= 6 writes the modes by name, in order
        named = raw["pooling_mode"]
        named = [named] if isinstance(named, str) else list(named)
    else:  # older files: one flag per mode, concatenated in this order
        named = [mode for key, mode in LEGACY_POOLING_KEYS if raw.get(key)]
    unknown = [m for m in named if m not in POOLING_NAMES]
    if unknown:
        raise UnsupportedModelError(f"{path}: pooling modes {unknown} are not supported "
                                    f"(supported: {', '.join(POOLING_NAMES)})")
    modes = tuple(POOLING_NAMES[m] for m in named)
    return modes or ("mean",)  # as sentence-transformers does when no flag is set
