"""A small random BERT sentence model written from nothing: compile the kernels without real weights.

The numba kernels are compiled per argument *type* (dtype, rank, layout), never per shape, so a
one-layer, 32-wide model loaded through the same code as all-MiniLM-L6-v2 builds every kernel the
real model runs. The package build uses it to fill the shared kernel cache before any weights are
on the machine (``setup.py``); the tests use its tensors as a loader's fixture.
"""
import json
import os
import struct

import numpy as np

_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_PIECES = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"()-") + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]


def tiny_config(**overrides) -> dict:
    """config.json of a 1-layer BERT, hidden 32, 2 heads (``overrides`` replace entries)."""
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

    def norm(prefix):
        return {prefix + "LayerNorm.weight": np.ones(h, np.float32), prefix + "LayerNorm.bias": np.zeros(h, np.float32)}

    tensors = {
        "embeddings.word_embeddings.weight": normal(config["vocab_size"], h),
        "embeddings.position_embeddings.weight": normal(config["max_position_embeddings"], h),
        "embeddings.token_type_embeddings.weight": normal(config["type_vocab_size"], h),
        **norm("embeddings."),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            tensors[p + f"attention.self.{part}.weight"] = normal(h, h)
            tensors[p + f"attention.self.{part}.bias"] = normal(h)
        tensors.update({p + "attention.output.dense.weight": normal(h, h), p + "attention.output.dense.bias": normal(h),
                        **norm(p + "attention.output."),
                        p + "intermediate.dense.weight": normal(f, h), p + "intermediate.dense.bias": normal(f),
                        p + "output.dense.weight": normal(h, f), p + "output.dense.bias": normal(h),
                        **norm(p + "output.")})
    return tensors


_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
           np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int8): "I8"}


def safetensors_bytes(tensors: dict, header_updates: dict | None = None) -> bytes:
    """A safetensors file as bytes: 8-byte little-endian header length, JSON header, raw data.

    Parameters
    ----------
    tensors : dict of str to ndarray
    header_updates : dict of str to dict, optional
        Per-tensor entries merged into the honest header after it is built (for tests that lie
        about a dtype, shape or offsets), or a new name mapped to a whole entry.
    """
    header, chunks, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _DTYPES[np.dtype(array.dtype)], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    for name, update in (header_updates or {}).items():
        header.setdefault(name, {}).update(update)
    encoded = json.dumps(header).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, as the format recommends
    return struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks)


def _wordpiece_tokenizer(vocab_size):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tokens = _SPECIALS + _PIECES
    tokens += [f"[unused{i}]" for i in range(vocab_size - len(tokens))]
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def write_random_model(directory: str, seed: int = 0, vocab_size: int = 128, num_labels: int | None = None,
                       **config_overrides) -> str:
    """Write a random sentence-transformers BERT directory (mean pooling, normalised) to ``directory``,
    or with ``num_labels`` a ``BertForSequenceClassification`` cross-encoder.

    Parameters
    ----------
    directory : str
        Created if missing.
    vocab_size : int
        Rows of the embedding table and tokens of the WordPiece vocabulary (at least 80).
    num_labels : int, optional
        A cross-encoder's labels: ``bert.``-prefixed body, tanh pooler and classifier.
    **config_overrides
        config.json entries (``hidden_size``, ``num_hidden_layers`` ...) over :func:`tiny_config`.

    Returns
    -------
    str
        ``directory``.
    """
    config = tiny_config(vocab_size=vocab_size, **config_overrides)
    tensors = random_bert_tensors(config, seed)
    os.makedirs(directory, exist_ok=True)
    if num_labels is not None:
        h = config["hidden_size"]
        config.update(architectures=["BertForSequenceClassification"],
                      id2label={str(i): f"LABEL_{i}" for i in range(num_labels)})
        rng = np.random.default_rng(seed + 1)
        head = {"pooler.dense.weight": (h, h), "pooler.dense.bias": (h,), "classifier.weight": (num_labels, h),
                "classifier.bias": (num_labels,)}
        tensors = {**{"bert." + name: t for name, t in tensors.items()},
                   **{"bert." * name.startswith("pooler") + name: (rng.standard_normal(shape) * 0.02).astype(np.float32)
                      for name, shape in head.items()}}
        _write_json(os.path.join(directory, "config.json"), config)
        return _write_weights_and_tokenizer(directory, tensors, vocab_size)
    os.makedirs(os.path.join(directory, "1_Pooling"), exist_ok=True)
    files = {
        "config.json": config,
        "modules.json": [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                         {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                         {"idx": 2, "name": "2", "path": "2_Normalize",
                          "type": "sentence_transformers.models.Normalize"}],
        "sentence_bert_config.json": {"max_seq_length": 256, "do_lower_case": False},
        os.path.join("1_Pooling", "config.json"): {"word_embedding_dimension": config["hidden_size"],
                                                   "pooling_mode_mean_tokens": True},
    }
    for name, content in files.items():
        _write_json(os.path.join(directory, name), content)
    return _write_weights_and_tokenizer(directory, tensors, vocab_size)


def _write_json(path, content):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, indent=1)


def _write_weights_and_tokenizer(directory, tensors, vocab_size):
    _wordpiece_tokenizer(vocab_size).save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "model.safetensors"), "wb") as f:
        f.write(safetensors_bytes(tensors))
    return directory
