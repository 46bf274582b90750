"""The quantised model directory: reading its int8 ``model.safetensors``, and writing one.

A quantised directory (:func:`write_quantized`) holds ``model.safetensors`` with the int8
tensors (:func:`minilm_np.layout.quantized_tensors`), ``config.json`` with
``"minilm_np_quantization": MODE``, and the tokenizer and sentence-transformers files.
"""
import json
import os
import shutil

import numpy as np

from ..config import Config
from ..errors import ModelFileError
from ..layout import EMBED_NORM, LAYER_NORMS, LINEARS, TABLES, layer_prefix, quantized_tensors
from ..safetensors_io import open_row_file, read_safetensors
from ..checkpoint import safetensors_path
from ..weights import LayerWeights, Weights, check_tensors
from .linear import QuantizedLinear
from .modes import MODES, OUTLIER_CHANNELS, check_mode
from .table import QuantizedTable

FORMAT = "minilm-np-int8/1"
"""``__metadata__["format"]`` of a quantised model.safetensors."""
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack",
                "model.onnx", "rust_model.ot", "model.safetensors.index.json", "pytorch_model.bin.index.json")


def check_quantized_mode(config: Config, path: str) -> str:
    """The mode recorded in config.json, or ModelFileError when it is not one of :data:`MODES`."""
    mode = config.quantization
    if mode not in MODES:
        raise ModelFileError(f"{path}: config.json's minilm_np_quantization {mode!r} is not one of "
                             f"{', '.join(MODES)}")
    return mode


def read_quantized(model_dir: str, config: Config, backend=None) -> Weights:
    """Map the int8 ``model.safetensors`` of a directory written by :func:`write_quantized`.

    No float32 weight matrix is made: linears and embedding tables stay int8.

    Parameters
    ----------
    backend : {"numba", "numpy"} or None
        The kernels the int8 layers run on.

    Raises
    ------
    ModelFileError
        config.json names an unknown mode, the file is missing, corrupt, not a minilm-np int8
        file, or a tensor does not match config.json (the message names the tensor).
    """
    path = safetensors_path(model_dir)
    mode = check_quantized_mode(config, path)
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path}: config.json sets minilm_np_quantization={config.quantization!r} but this "
                             f"is not a minilm-np int8 file (metadata format {metadata.get('format')!r}, "
                             f"expected {FORMAT!r})")
    check_tensors(tensors, quantized_tensors(config, OUTLIER_CHANNELS), path)
    layers = []
    for i in range(config.num_layers):
        p = layer_prefix(i)
        fields = {}
        for slot in LINEARS:
            q = p + slot.stem + "."
            fields[slot.slot + "_weight"] = _linear(tensors, q, mode, path, backend)
            fields[slot.slot + "_bias"] = tensors[q + "bias"]
        for slot, stem in LAYER_NORMS:
            fields[slot + "_gamma"], fields[slot + "_beta"] = tensors[p + stem + ".weight"], tensors[p + stem + ".bias"]
        layers.append(LayerWeights(**fields))
    # only the vocabulary table is large enough for its mapped pages to matter; the position and
    # token-type tables (0.2 MiB together) stay mapped, saving a read per row and per call
    tables = {}
    for slot, stem, _ in TABLES:
        q = tensors[stem + ".qweight"]
        tables[slot] = QuantizedTable(q, tensors[stem + ".scale"], backend,
                                      open_row_file(path, q) if slot == "word_embeddings" else None)
    slot, stem = EMBED_NORM
    return Weights(**tables, **{slot + "_gamma": tensors[stem + ".weight"], slot + "_beta": tensors[stem + ".bias"]},
                   layers=tuple(layers))


def _linear(tensors, prefix, mode, path, backend):
    """The :class:`QuantizedLinear` stored under ``prefix``, its outlier columns checked."""
    q, index = tensors[prefix + "qweight"], tensors[prefix + "outlier_index"]
    if len(index) and (index.min() < 0 or index.max() >= q.shape[1] or len(np.unique(index)) != len(index)):
        raise ModelFileError(f"{path}: tensor {prefix + 'outlier_index'!r} holds {index.tolist()}: indices must be "
                             f"distinct and in [0, {q.shape[1]})")
    if np.any(q[:, index]):
        raise ModelFileError(f"{path}: tensor {prefix + 'qweight'!r} is not zero in its outlier columns "
                             f"{index.tolist()}")
    return QuantizedLinear(mode, q, tensors[prefix + "scale"], index, tensors[prefix + "outlier_weight"], backend)


def quantized_file_tensors(weights: Weights) -> dict:
    """int8 :class:`Weights` as the named tensors of :func:`minilm_np.layout.quantized_tensors`."""
    slot, stem = EMBED_NORM
    out = {stem + ".weight": getattr(weights, slot + "_gamma"), stem + ".bias": getattr(weights, slot + "_beta")}
    for slot, stem, _ in TABLES:
        table = getattr(weights, slot)
        out[stem + ".qweight"] = table.qweight
        out[stem + ".scale"] = table.scale
    for i, layer in enumerate(weights.layers):
        p = layer_prefix(i)
        for slot in LINEARS:
            q = p + slot.stem + "."
            linear = getattr(layer, slot.slot + "_weight")
            out.update({q + "qweight": linear.qweight, q + "scale": linear.scale,
                        q + "outlier_index": linear.outlier_index, q + "outlier_weight": linear.outlier_weight,
                        q + "bias": getattr(layer, slot.slot + "_bias")})
        for slot, stem in LAYER_NORMS:
            out[p + stem + ".weight"] = getattr(layer, slot + "_gamma")
            out[p + stem + ".bias"] = getattr(layer, slot + "_beta")
    return {name: np.ascontiguousarray(t) for name, t in out.items()}


def _files_to_copy(model_dir):
    """Relative paths of the files a quantised directory carries over: all but the weights."""
    modules = []
    try:
        with open(os.path.join(model_dir, "modules.json"), encoding="utf-8") as f:
            modules = json.load(f)
    except (OSError, ValueError):
        pass
    folders = {m.get("path") for m in modules if isinstance(m, dict) and m.get("path")}
    paths = []
    for name in sorted(os.listdir(model_dir)):
        full = os.path.join(model_dir, name)
        if os.path.isfile(full) and name not in WEIGHT_FILES and name != "config.json" \
                and not name.endswith((".bin", ".onnx", ".h5", ".msgpack", ".ot", ".pt", ".pth")):
            paths.append(name)
        elif os.path.isdir(full) and name in folders:
            for root, _, files in os.walk(full):
                paths += [os.path.relpath(os.path.join(root, f), model_dir) for f in sorted(files)]
    return paths


def write_quantized(model, mode, output):
    """Write a self-contained int8 model directory.

    Parameters
    ----------
    model : str or None
        A float32 model directory or hub id (None: all-MiniLM-L6-v2): a sentence embedding
        model or a cross-encoder, whose pooler and classifier are written in float32.
    mode : {"w8", "w8a16", "w8a8"}
    output : str
        New directory (or an existing empty one).

    Returns
    -------
    str
        ``output``, which ``minilm_np.load`` (or ``minilm_np.CrossEncoder``) opens with no
        float32 weight matrix of the body.

    Raises
    ------
    ValueError
        Unknown mode, ``model`` is already quantised, or ``output`` is not empty.
    ModelFileError
        The model's files are missing or do not match (the message names the file).
    """
    from safetensors.numpy import save_file

    from ..modules.classifier import ClassificationHead
    from ..config import read_config
    from ..locate import resolve_model_dir
    from ..tokenizer import TextTokenizer
    from ..weights import load_weights
    from .calibrate import quantize_model

    check_mode(mode)
    if os.path.exists(output) and (not os.path.isdir(output) or os.listdir(output)):
        raise ValueError(f"{output}: already exists and is not an empty directory; choose a new --output")
    model_dir, where = resolve_model_dir(model)
    safetensors_path(model_dir)  # first: a pickle-only directory gets the conversion hint
    config = read_config(model_dir)
    if config.quantization is not None:
        raise ValueError(f"{model_dir} is already quantized ({config.quantization!r}); "
                         "quantize the float32 model instead")
    weights = load_weights(model_dir, config)
    tokenizer = TextTokenizer.for_model(model_dir, config)
    tensors = quantized_file_tensors(quantize_model(config, weights, tokenizer, mode, backend="numpy"))
    if config.num_labels is not None:  # a cross-encoder: the pooler and classifier stay float32
        head = ClassificationHead.from_folder(model_dir, "", config)
        tensors.update({name: np.ascontiguousarray(t) for name, t in head.tensors().items()})
    os.makedirs(output, exist_ok=True)
    save_file(tensors, os.path.join(output, "model.safetensors"),
              metadata={"format": FORMAT, "mode": mode, "source": str(where)})
    for rel in _files_to_copy(model_dir):
        os.makedirs(os.path.dirname(os.path.join(output, rel)) or output, exist_ok=True)
        shutil.copyfile(os.path.join(model_dir, rel), os.path.join(output, rel))
    raw = dict(config.extra)
    raw["minilm_np_quantization"] = mode
    with open(os.path.join(output, "config.json"), "w", encoding="utf-8") as f:
        json.dump(raw, f, indent=2)
        f.write("\n")
    return output
