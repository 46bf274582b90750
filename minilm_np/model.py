"""The BERT sentence encoder's forward pass over packed (padding-free) sequences.

A batch of sequences is one ``(n_tokens, hidden)`` matrix plus the offsets ``cu_seqlens``;
each linear is a :class:`~minilm_np.linear.Linear` (``matmul``, whatever its kind of weight),
each embedding table a :class:`~minilm_np.tables.Table` (``lookup``), and everything between
them runs on the kernels of the chosen backend (:mod:`minilm_np.kernels`). Read :func:`forward` first. What follows the
token embeddings (pooling, Dense, Normalize, a classification head) is :mod:`minilm_np.modules`.
"""
from dataclasses import dataclass

import numpy as np

from .config import Config
from .gemm_rows import MIN_GEMM_ROWS
from .kernels.buffers import zeros_aligned
from .weights import LayerWeights, Weights


@dataclass(frozen=True)
class Batch:
    """Packed token ids of a batch of sequences.

    Attributes
    ----------
    token_ids, position_ids, type_ids : ndarray of int64, (n_tokens,)
    cu_seqlens : ndarray of int64, (n_seqs + 1,)
        Sequence ``s`` is rows ``cu_seqlens[s]:cu_seqlens[s + 1]``.
    """
    token_ids: np.ndarray
    position_ids: np.ndarray
    type_ids: np.ndarray
    cu_seqlens: np.ndarray

    @classmethod
    def pack(cls, sequences, types=None):
        """Pack a list of 1-D int token-id arrays (each non-empty) into one batch.

        ``types``: the token types of each sequence, arrays of the same lengths (sentence pairs:
        0 through the first [SEP], 1 after); None gives type 0 everywhere.
        """
        if len(sequences) == 1:  # one text (latency): four arrays, not a dozen numpy calls
            token_ids = np.asarray(sequences[0], dtype=np.int64)
            n = len(token_ids)
            type_ids = np.zeros(n, np.int64) if types is None else np.asarray(types[0], dtype=np.int64)
            return cls(token_ids, np.arange(n, dtype=np.int64), type_ids, np.array([0, n], np.int64))
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        cu_seqlens = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=cu_seqlens[1:])
        token_ids = np.concatenate(sequences).astype(np.int64, copy=False) if sequences else np.zeros(0, np.int64)
        position_ids = np.arange(cu_seqlens[-1], dtype=np.int64) - np.repeat(cu_seqlens[:-1], lengths)
        type_ids = np.zeros_like(token_ids) if types is None or not sequences \
            else np.concatenate(types).astype(np.int64, copy=False)
        return cls(token_ids, position_ids, type_ids, cu_seqlens)

    @property
    def n_tokens(self) -> int:
        return int(self.cu_seqlens[-1])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.cu_seqlens)


class RunState:
    """Scratch activations for forward passes of up to ``capacity`` tokens (reused between them)."""

    def __init__(self, config: Config, capacity: int):
        rows = max(capacity, MIN_GEMM_ROWS)
        h = config.hidden_size
        self.capacity = capacity
        # on cache lines: the kernels' 64-byte vectors then never straddle two (kernels.buffers)
        self.hidden = zeros_aligned((rows, h))    # the residual stream, layer in and out
        self.mid = zeros_aligned((rows, h))       # after attention, before the FFN
        self.context = zeros_aligned((rows, h))   # attention output, before its projection
        self.qkv = zeros_aligned((rows, 3 * h))
        self.ffn = zeros_aligned((rows, config.intermediate_size))


def embed(config: Config, weights: Weights, batch: Batch, k, out):
    """LayerNorm(word + position + token-type embeddings) -> out ``(n_tokens, hidden)``."""
    word, token_ids = weights.word_embeddings.lookup(batch.token_ids)
    position, position_ids = weights.position_embeddings.lookup(batch.position_ids)
    types, type_ids = weights.type_embeddings.lookup(batch.type_ids)
    k.gather_embeddings(token_ids, position_ids, type_ids, word, position, types, out)
    return k.bias_residual_layer_norm(out, None, None, weights.embed_norm_gamma, weights.embed_norm_beta,
                                      config.layer_norm_eps)


def attention(config: Config, layer: LayerWeights, x, cu_seqlens, k, s: RunState, rows: int):
    """LayerNorm(x + Attention(x) W_o + b_o) -> ``s.mid``; x is ``(n_tokens, hidden)``."""
    n = x.shape[0]
    qkv = layer.qkv_weight.matmul(s.hidden[:rows], s.qkv[:rows], layer.qkv_bias)[:n]
    k.attention(qkv, cu_seqlens, config.num_heads, config.head_dim, s.context[:n])
    projected = layer.attn_out_weight.matmul(s.context[:rows], s.mid[:rows])[:n]
    return k.bias_residual_layer_norm(projected, layer.attn_out_bias, x, layer.attn_norm_gamma,
                                      layer.attn_norm_beta, config.layer_norm_eps)


def feed_forward(config: Config, layer: LayerWeights, h, k, s: RunState, rows: int):
    """LayerNorm(h + GELU(h W_1 + b_1) W_2 + b_2) -> ``s.hidden``; h is ``(n_tokens, hidden)``."""
    n = h.shape[0]
    layer.ffn_in_weight.matmul(s.mid[:rows], s.ffn[:rows], layer.ffn_in_bias, gelu=True)
    out = layer.ffn_out_weight.matmul(s.ffn[:rows], s.hidden[:rows])[:n]
    return k.bias_residual_layer_norm(out, layer.ffn_out_bias, h, layer.ffn_norm_gamma, layer.ffn_norm_beta,
                                      config.layer_norm_eps)


def forward(config: Config, weights: Weights, batch: Batch, k, s: RunState):
    """Token embeddings of the last layer, ``(n_tokens, hidden)`` float32 (a view of ``s.hidden``).

    Parameters
    ----------
    k : module
        The kernel backend (:func:`minilm_np.kernels.backend.load_backend`).
    s : RunState
        Scratch with capacity >= ``batch.n_tokens``.
    """
    n = batch.n_tokens
    rows = max(n, MIN_GEMM_ROWS)
    x = embed(config, weights, batch, k, s.hidden[:n])
    for layer in weights.layers:
        h = attention(config, layer, x, batch.cu_seqlens, k, s, rows)
        x = feed_forward(config, layer, h, k, s, rows)
    return x


def hidden_states(config: Config, weights: Weights, batch: Batch, k):
    """Every layer's output (embeddings first), copies, ``num_layers + 1`` arrays ``(n_tokens, hidden)``."""
    s = RunState(config, batch.n_tokens)
    n, rows = batch.n_tokens, max(batch.n_tokens, MIN_GEMM_ROWS)
    x = embed(config, weights, batch, k, s.hidden[:n])
    states = [x.copy()]
    for layer in weights.layers:
        h = attention(config, layer, x, batch.cu_seqlens, k, s, rows)
        x = feed_forward(config, layer, h, k, s, rows)
        states.append(x.copy())
    return states
