"""The BERT sentence encoder's forward pass over packed (padding-free) sequences.

A batch of sequences is one ``(n_tokens, hidden)`` matrix plus the offsets ``cu_seqlens``;
the GEMMs go through numpy's ``@`` (BLAS) and everything between them through the kernels of
the chosen backend (:mod:`minilm_np.kernels`). Read :func:`forward` first. What follows the
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


def linear(x, weight, out, bias=None):
    """``out = x @ weight.T (+ bias)`` for x ``(n, in)``, weight ``(out, in)`` float32 or a quantised linear.

    The bias is added after the product, so the result is the same whether the GEMM adds it
    (packed and int8 kernels, in the same pass) or numpy does.
    """
    if isinstance(weight, np.ndarray):
        np.matmul(x, weight.T, out=out)
        if bias is not None:
            out += bias
        return out
    return weight.matmul(x, out, bias)


def linear_gelu(x, weight, out, bias, k):
    """``out = GELU(x @ weight.T + bias)``: in the GEMM's epilogue where the weight offers it
    (packed float32), else a GEMM then the kernel ``bias_gelu``."""
    if getattr(weight, "fuses_gelu", False):
        return weight.matmul(x, out, bias, gelu=True)
    return k.bias_gelu(linear(x, weight, out), bias)


def _embedding_rows(table, ids):
    """``(table, ids)`` for the gather kernel; an int8 table (quantised models) gives its rows dequantised."""
    if isinstance(table, np.ndarray):
        return table, ids
    return table.rows(ids), np.arange(len(ids), dtype=np.int64)


def embed(config: Config, weights: Weights, batch: Batch, k, out):
    """LayerNorm(word + position + token-type embeddings) -> out ``(n_tokens, hidden)``."""
    word, token_ids = _embedding_rows(weights.word_embeddings, batch.token_ids)
    position, position_ids = _embedding_rows(weights.position_embeddings, batch.position_ids)
    types, type_ids = _embedding_rows(weights.type_embeddings, batch.type_ids)
    k.gather_embeddings(token_ids, position_ids, type_ids, word, position, types, out)
    return k.bias_residual_layer_norm(out, None, None, weights.embed_norm_gamma, weights.embed_norm_beta,
                                      config.layer_norm_eps)


def attention(config: Config, layer: LayerWeights, x, cu_seqlens, k, s: RunState, rows: int):
    """LayerNorm(x + Attention(x) W_o + b_o) -> ``s.mid``; x is ``(n_tokens, hidden)``."""
    n = x.shape[0]
    qkv = linear(s.hidden[:rows], layer.qkv_weight, s.qkv[:rows], layer.qkv_bias)[:n]
    k.attention(qkv, cu_seqlens, config.num_heads, config.head_dim, s.context[:n])
    projected = linear(s.context[:rows], layer.attn_out_weight, s.mid[:rows])[:n]
    return k.bias_residual_layer_norm(projected, layer.attn_out_bias, x, layer.attn_norm_gamma,
                                      layer.attn_norm_beta, config.layer_norm_eps)


def feed_forward(config: Config, layer: LayerWeights, h, k, s: RunState, rows: int):
    """LayerNorm(h + GELU(h W_1 + b_1) W_2 + b_2) -> ``s.hidden``; h is ``(n_tokens, hidden)``."""
    n = h.shape[0]
    linear_gelu(s.mid[:rows], layer.ffn_in_weight, s.ffn[:rows], layer.ffn_in_bias, k)
    out = linear(s.ffn[:rows], layer.ffn_out_weight, s.hidden[:rows])[:n]
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
