"""Model configuration: what config.json and the sentence-transformers files say, validated."""
import json
import os
import warnings
from dataclasses import dataclass, field

from .errors import ModelFileError, UnsupportedModelError
from .modules import DenseSpec, NormalizeSpec, read_dense_spec, read_normalize_spec

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken")
POOLING_NAMES = {"cls": "cls", "max": "max", "mean": "mean", "mean_sqrt_len_tokens": "mean_sqrt_len",
                 "mean_sqrt_len": "mean_sqrt_len", "weightedmean": "weightedmean", "lasttoken": "lasttoken"}
# sentence-transformers' order of concatenation for the old one-flag-per-mode files.
LEGACY_POOLING_KEYS = (("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max"),
                       ("pooling_mode_mean_tokens", "mean"), ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
                       ("pooling_mode_weightedmean_tokens", "weightedmean"), ("pooling_mode_lasttoken", "lasttoken"))
# modules.json types minilm-np runs (the last dotted part of the type).
SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
SUPPORTED_ACTIVATIONS = ("gelu",)


@dataclass(frozen=True)
class Config:
    """Everything the forward pass needs to know about a BERT sentence model.

    Built by :func:`read_config`; the fields mirror config.json (``hidden_size``...),
    1_Pooling/config.json (``pooling_modes``), sentence_bert_config.json
    (``max_seq_length``) and modules.json (``post_modules``: the Dense and Normalize modules
    after Pooling, in order, as :class:`minilm_np.modules.DenseSpec` / ``NormalizeSpec``;
    ``normalize``: whether the last of them is a Normalize). ``num_labels`` is set for a
    cross-encoder (``architectures`` names ``BertForSequenceClassification``) and None for a
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
    pooling_modes: tuple = ("mean",)
    pooling_include_prompt: bool = True
    normalize: bool = False
    quantization: str | None = None
    sentence_transformers_files: bool = True
    extra: dict = field(default_factory=dict, compare=False, repr=False)
    post_modules: tuple = None
    num_labels: int | None = None

    def __post_init__(self):
        if self.post_modules is None:  # built by hand: only the ``normalize`` flag says what follows pooling
            object.__setattr__(self, "post_modules", (NormalizeSpec(),) if self.normalize else ())

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def pooled_dim(self) -> int:
        """Width of the pooled vector: the hidden size times the number of pooling modes."""
        return self.hidden_size * len(self.pooling_modes)

    @property
    def embedding_dim(self) -> int:
        """Width of a sentence embedding: the last Dense module's ``out_features``, else :attr:`pooled_dim`."""
        dense = [m for m in self.post_modules if isinstance(m, DenseSpec)]
        return dense[-1].out_features if dense else self.pooled_dim


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
    max_seq_length = _max_seq_length(model_dir, st_raw, max_positions)
    if not isinstance(max_seq_length, int) or not 2 <= max_seq_length <= max_positions:
        raise ModelFileError(f"{st_path}: max_seq_length {max_seq_length!r} must be an integer in "
                             f"[2, {max_positions}] (the position table's size)")

    modules_path = os.path.join(model_dir, "modules.json")
    modules = _read_json(modules_path, required=False) or []
    if not isinstance(modules, list):
        raise ModelFileError(f"{modules_path}: expected a JSON list of modules")
    modules = [m for m in modules if isinstance(m, dict)]
    module_types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    unsupported = [t for t in module_types if t not in SUPPORTED_MODULES]
    if unsupported:
        raise UnsupportedModelError(f"{modules_path}: modules {unsupported} are not supported "
                                    f"(supported: {', '.join(SUPPORTED_MODULES)})")
    num_labels = _read_num_labels(raw, path)
    if not modules and num_labels is None:  # a cross-encoder needs no pooling: its head reads [CLS]
        warnings.warn(f"{model_dir}: no modules.json (not a sentence-transformers directory); using mean pooling "
                      "over the tokens, as sentence-transformers does for a plain transformers model",
                      UserWarning, stacklevel=2)
    pooling_modes = _read_pooling(model_dir, modules) if num_labels is None else ("cls",)
    post_modules = _read_post_modules(model_dir, modules, module_types, hidden * len(pooling_modes))
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
        pooling_include_prompt=_read_include_prompt(model_dir, modules),
        normalize=bool(post_modules) and isinstance(post_modules[-1], NormalizeSpec),
        post_modules=post_modules,
        quantization=raw.get("minilm_np_quantization"),
        sentence_transformers_files=bool(modules),
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


def _read_pooling(model_dir, modules):
    folder = next((m.get("path", "") for m in modules if isinstance(m, dict)
                   and str(m.get("type", "")).endswith("Pooling")), None)
    if folder is None:
        if modules:
            warnings.warn(f"{os.path.join(model_dir, 'modules.json')}: no Pooling module; using mean pooling",
                          UserWarning, stacklevel=3)
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


def _read_include_prompt(model_dir, modules):
    """1_Pooling/config.json's ``include_prompt`` (False: prompt tokens are left out of pooling)."""
    folder = next((m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling")), None)
    raw = _read_json(os.path.join(model_dir, folder, "config.json"), required=False) if folder else None
    return bool(raw.get("include_prompt", True)) if isinstance(raw, dict) else True


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
    tokenizer_config = _read_json(os.path.join(model_dir, "tokenizer_config.json"), required=False)
    limit = tokenizer_config.get("model_max_length") if isinstance(tokenizer_config, dict) else None
    if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit >= 2:
        return int(min(limit, max_positions))  # transformers' "no limit" is 1e30: the table caps it
    return max_positions


def _read_post_modules(model_dir, modules, module_types, pooled_dim):
    """The Dense and Normalize modules after Pooling, in order, with their widths checked."""
    path = os.path.join(model_dir, "modules.json")
    pooling_at = module_types.index("Pooling") if "Pooling" in module_types else None
    if pooling_at is None:
        if any(t in ("Dense", "Normalize") for t in module_types):
            raise UnsupportedModelError(f"{path}: Dense/Normalize modules without a Pooling module are not supported")
        return ()
    misplaced = [t for t in module_types[:pooling_at] if t != "Transformer"]
    if misplaced:
        raise UnsupportedModelError(f"{path}: modules {misplaced} before Pooling are not supported "
                                    "(minilm-np runs Transformer, Pooling, then Dense/Normalize)")
    post, width = [], pooled_dim
    for module, kind in zip(modules[pooling_at + 1:], module_types[pooling_at + 1:]):
        folder = str(module.get("path", ""))
        if kind == "Normalize":
            post.append(read_normalize_spec(model_dir, folder))
        elif kind == "Dense":
            spec = read_dense_spec(model_dir, folder)
            if spec.in_features != width:
                raise ModelFileError(f"{os.path.join(model_dir, folder, 'config.json')}: in_features "
                                     f"{spec.in_features} does not match the {width}-wide input it receives")
            post.append(spec)
            width = spec.out_features
        else:
            raise UnsupportedModelError(f"{path}: a {kind} module after Pooling is not supported")
    return tuple(post)
