"""The tensors of a BERT encoder body, named once.

Loading and checking a checkpoint (:mod:`minilm_np.weights`), quantising it, reading and writing
a quantised directory (:mod:`minilm_np.quantize`) and ``minilm-np info`` all read these tables;
no other module spells a tensor name of the body.

A :class:`~minilm_np.weights.LayerWeights` field is ``<slot>_weight`` / ``<slot>_bias`` for a
linear and ``<slot>_gamma`` / ``<slot>_beta`` for a LayerNorm; a
:class:`~minilm_np.weights.Weights` field is the table's slot name.
"""
from typing import NamedTuple

import numpy as np


class LinearSlot(NamedTuple):
    """One linear layer of an encoder layer.

    Attributes
    ----------
    slot : str
        Its :class:`~minilm_np.weights.LayerWeights` fields are ``slot + "_weight"`` and ``slot + "_bias"``.
    stem : str
        Its tensor names in a layer as minilm-np stores it (``<stem>.weight``; the query, key and
        value projections stacked into one).
    parts : tuple of str
        The stems a BERT checkpoint stores, stacked in this order along the output features.
    shape : tuple of str
        ``(out_features, in_features)`` as :class:`~minilm_np.config.Config` attributes.
    """
    slot: str
    stem: str
    parts: tuple
    shape: tuple


LINEARS = (
    LinearSlot("qkv", "attention.self.qkv",
               ("attention.self.query", "attention.self.key", "attention.self.value"), ("qkv_size", "hidden_size")),
    LinearSlot("attn_out", "attention.output.dense", ("attention.output.dense",), ("hidden_size", "hidden_size")),
    LinearSlot("ffn_in", "intermediate.dense", ("intermediate.dense",), ("intermediate_size", "hidden_size")),
    LinearSlot("ffn_out", "output.dense", ("output.dense",), ("hidden_size", "intermediate_size")),
)
"""The linears of a layer, in the order the forward pass runs them."""

LAYER_NORMS = (("attn_norm", "attention.output.LayerNorm"), ("ffn_norm", "output.LayerNorm"))
"""A layer's LayerNorms: (slot, stem); the tensors are ``<stem>.weight`` (gamma) and ``<stem>.bias`` (beta)."""

TABLES = (("word_embeddings", "embeddings.word_embeddings", "vocab_size"),
          ("position_embeddings", "embeddings.position_embeddings", "max_position_embeddings"),
          ("type_embeddings", "embeddings.token_type_embeddings", "type_vocab_size"))
"""The embedding tables: (slot, stem, the Config attribute that counts its rows); ``<stem>.weight``."""

EMBED_NORM = ("embed_norm", "embeddings.LayerNorm")
"""The LayerNorm after the embeddings: (slot, stem)."""

IGNORED_PREFIXES = ("pooler.", "cls.", "classifier.", "embeddings.position_ids")
"""Tensors a BERT checkpoint may carry that the body does not use (a cross-encoder's pooler and
classifier are its head's, :mod:`minilm_np.modules.classifier`)."""


def layer_prefix(i: int) -> str:
    """``encoder.layer.{i}.``: the prefix of layer ``i``'s tensor names."""
    return f"encoder.layer.{i}."


def linear_shape(config, linear: LinearSlot) -> tuple:
    """``(out_features, in_features)`` of ``linear`` in a model of ``config``."""
    sizes = {"qkv_size": 3 * config.hidden_size, "hidden_size": config.hidden_size,
             "intermediate_size": config.intermediate_size}
    return tuple(sizes[name] for name in linear.shape)


def _norm_tensors(spec, stem, width):
    spec[stem + ".weight"] = ((width,), np.float32)
    spec[stem + ".bias"] = ((width,), np.float32)


def checkpoint_tensors(config) -> dict:
    """Name -> (shape, dtype) of every tensor of the body in a float32 BERT checkpoint."""
    h = config.hidden_size
    spec = {stem + ".weight": ((getattr(config, rows), h), np.float32) for _, stem, rows in TABLES}
    _norm_tensors(spec, EMBED_NORM[1], h)
    for i in range(config.num_layers):
        p = layer_prefix(i)
        for linear in LINEARS:
            n, k = linear_shape(config, linear)
            for part in linear.parts:
                spec[p + part + ".weight"] = ((n // len(linear.parts), k), np.float32)
                spec[p + part + ".bias"] = ((n // len(linear.parts),), np.float32)
        for _, stem in LAYER_NORMS:
            _norm_tensors(spec, p + stem, h)
    return spec


def quantized_tensors(config, outlier_channels: int) -> dict:
    """Name -> (shape, dtype) of every tensor of a quantised model.safetensors.

    Per linear ``P`` (``encoder.layer.{i}.`` + a :data:`LINEARS` stem): ``P.qweight`` int8
    (N, K), ``P.scale`` float32 (N,), ``P.outlier_index`` int64 (C,), ``P.outlier_weight``
    float32 (C, N) and ``P.bias`` float32 (N,), where ``C = min(outlier_channels, K)``.  Per
    embedding table: ``.qweight`` int8 (V, H) and ``.scale`` float32 (V,).  LayerNorms as in BERT.
    """
    h = config.hidden_size
    spec = {}
    for _, stem, rows in TABLES:
        spec[stem + ".qweight"] = ((getattr(config, rows), h), np.int8)
        spec[stem + ".scale"] = ((getattr(config, rows),), np.float32)
    _norm_tensors(spec, EMBED_NORM[1], h)
    for i in range(config.num_layers):
        p = layer_prefix(i)
        for linear in LINEARS:
            n, k = linear_shape(config, linear)
            c = min(outlier_channels, k)
            q = p + linear.stem + "."
            spec.update({q + "qweight": ((n, k), np.int8), q + "scale": ((n,), np.float32),
                         q + "outlier_index": ((c,), np.int64), q + "outlier_weight": ((c, n), np.float32),
                         q + "bias": ((n,), np.float32)})
        for _, stem in LAYER_NORMS:
            _norm_tensors(spec, p + stem, h)
    return spec


def parameter_count(config) -> int:
    """Number of weights of the body (embedding tables, linears, biases, LayerNorms)."""
    return sum(int(np.prod(shape)) for shape, _ in checkpoint_tensors(config).values())
