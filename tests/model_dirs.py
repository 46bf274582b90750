"""Building model directories for tests, without torch: safetensors written with struct + json.

:func:`make_model_dir` links the tokenizer and sentence-transformers files of the default
model into a fresh directory and writes the ``config.json`` and ``model.safetensors`` a test
asks for; :func:`tiny_config` and :func:`random_bert_tensors` give a one-layer, 32-wide BERT
(a 4 MB file) whose outputs are meaningless but whose shapes are all a loader checks.
"""
import json
import os
import struct

import numpy as np

# The small files of a sentence-transformers directory, linked (not copied) from the default model.
LINKED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling")
SAFETENSORS_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
                      np.dtype(np.int64): "I64", np.dtype(np.int32): "I32"}


def tiny_config(**overrides) -> dict:
    """config.json of a 1-layer BERT, hidden 32, 2 heads, with the default model's vocabulary."""
    config = {"model_type": "bert", "architectures": ["BertModel"], "hidden_act": "gelu", "hidden_size": 32,
              "intermediate_size": 64, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
              "num_attention_heads": 2, "num_hidden_layers": 1, "position_embedding_type": "absolute",
              "type_vocab_size": 2, "vocab_size": 30522}
    config.update(overrides)
    return config


def random_bert_tensors(config: dict, seed: int = 0) -> dict:
    """Every tensor of a ``BertModel`` checkpoint for ``config``, float32, N(0, 0.02) linear weights.

    Returns
    -------
    dict of str to ndarray, in checkpoint order.
    """
    rng = np.random.default_rng(seed)
    h, f = config["hidden_size"], config["intermediate_size"]

    def normal(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    tensors = {
        "embeddings.word_embeddings.weight": normal(config["vocab_size"], h),
        "embeddings.position_embeddings.weight": normal(config["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": normal(config["type_vocab_size"], h),
        "embeddings.LayerNorm.weight": np.ones(h, np.float32),
        "embeddings.LayerNorm.bias": np.zeros(h, np.float32),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            tensors[p + f"attention.self.{part}.weight"] = normal(h, h)
            tensors[p + f"attention.self.{part}.bias"] = normal(h)
        tensors.update({
            p + "attention.output.dense.weight": normal(h, h), p + "attention.output.dense.bias": normal(h),
            p + "attention.output.LayerNorm.weight": np.ones(h, np.float32),
            p + "attention.output.LayerNorm.bias": np.zeros(h, np.float32),
            p + "intermediate.dense.weight": normal(f, h), p + "intermediate.dense.bias": normal(f),
            p + "output.dense.weight": normal(h, f), p + "output.dense.bias": normal(h),
            p + "output.LayerNorm.weight": np.ones(h, np.float32),
            p + "output.LayerNorm.bias": np.zeros(h, np.float32),
        })
    return tensors


def safetensors_bytes(tensors: dict, header_updates: dict | None = None) -> bytes:
    """A safetensors file as bytes: 8-byte little-endian header length, JSON header, raw data.

    Parameters
    ----------
    tensors : dict of str to ndarray
    header_updates : dict of str to dict, optional
        Per-tensor entries merged into the honest header after it is built (to lie about a
        dtype, shape or offsets), or a new name mapped to a whole entry.
    """
    header, chunks, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": SAFETENSORS_DTYPES[np.dtype(array.dtype)], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    for name, update in (header_updates or {}).items():
        header.setdefault(name, {}).update(update)
    encoded = json.dumps(header).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, as the format recommends
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks)


def write_safetensors(path, tensors: dict, header_updates: dict | None = None) -> str:
    """Write :func:`safetensors_bytes` to ``path``; return the path."""
    with open(path, "wb") as f:
        f.write(safetensors_bytes(tensors, header_updates))
    return str(path)


def make_model_dir(directory, source_dir: str, config: dict | None = None, tensors: dict | None = None,
                   weights_from_source: bool = False, skip: tuple = ()) -> str:
    """A model directory: the small files of ``source_dir`` linked, the rest as asked.

    Parameters
    ----------
    directory : path-like
        Created if missing.
    source_dir : str
        The default model's directory.
    config : dict, optional
        Written as config.json; default: ``source_dir``'s config.json linked.
    tensors : dict, optional
        Written as model.safetensors.
    weights_from_source : bool
        Link ``source_dir``'s model.safetensors instead.
    skip : tuple of str
        Names of :data:`LINKED_FILES` (or config.json) to leave out.
    """
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    for name in LINKED_FILES:
        if name not in skip and os.path.exists(os.path.join(source_dir, name)):
            os.symlink(os.path.join(source_dir, name), os.path.join(directory, name))
    if config is not None:
        with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)
    elif "config.json" not in skip:
        os.symlink(os.path.join(source_dir, "config.json"), os.path.join(directory, "config.json"))
    if tensors is not None:
        write_safetensors(os.path.join(directory, "model.safetensors"), tensors)
    elif weights_from_source:
        os.symlink(os.path.join(source_dir, "model.safetensors"), os.path.join(directory, "model.safetensors"))
    return directory
