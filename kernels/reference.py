"""Plain-numpy twins of the numba kernels: the readable spec, the test oracle and the fallback.

Every function here has the same signature and the same in-place contract as its twin in
:mod:`jit`. Sequences are *packed*: the tokens of all sequences of a batch are the rows of one
matrix, and ``cu_seqlens`` (int64, ``(n_seqs + 1,)``, starting at 0) holds the offsets, so that
sequence ``s`` is rows ``cu_seqlens[s]:cu_seqlens[s + 1]``. Nothing is padded.

The kernels know nothing about any particular model: they take arrays and sizes.
"""
import math

import numpy as np

from .polynomials import ERF_P, ERF_Q

SQRT_HALF = 1.0 / math.sqrt(2.0)


def erf(x):
    """Error function, elementwise, absolute error below 1e-7.

    Parameters
    ----------
    x : ndarray of float32

    Returns
    -------
    ndarray of float32, same shape.
    """
    return _erf64(x.astype(np.float64)).astype(np.float32)


def _erf64(x):
    x = np.clip(x, -4.0, 4.0)
    x2 = x * x
    return x * np.polyval(ERF_P, x2) / np.polyval(ERF_Q, x2)


def exp(x):
    """Exponential, elementwise, float32 in and out."""
    return np.exp(x)


def gather_embeddings(token_ids, position_ids, type_ids, word_table, position_table, type_table, out):
    """Sum the word, position and token-type embedding rows of every token.

    Parameters
    ----------
    token_ids, position_ids, type_ids : ndarray of int64, (n_tokens,)
    word_table : ndarray of float32, (vocab, hidden)
    position_table : ndarray of float32, (max_positions, hidden)
    type_table : ndarray of float32, (n_types, hidden)
    out : ndarray of float32, (n_tokens, hidden), written.

    Returns
    -------
    out
    """
    np.add(word_table[token_ids], type_table[type_ids], out=out)
    out += position_table[position_ids]
    return out


def attention(qkv, cu_seqlens, n_heads, head_dim, out):
    """Multi-head self-attention within each packed sequence, softmax(Q K^T / sqrt(d)) V.

    Parameters
    ----------
    qkv : ndarray of float32, (n_tokens, 3 * n_heads * head_dim)
        Row ``t`` is ``[q_t | k_t | v_t]``; head ``h`` of each is columns
        ``h * head_dim:(h + 1) * head_dim`` of that part.
    cu_seqlens : ndarray of int64, (n_seqs + 1,)
    n_heads, head_dim : int
    out : ndarray of float32, (n_tokens, n_heads * head_dim), written.

    Returns
    -------
    out
    """
    width = n_heads * head_dim
    scale = np.float32(1.0 / math.sqrt(head_dim))
    for s in range(len(cu_seqlens) - 1):
        start, stop = cu_seqlens[s], cu_seqlens[s + 1]
        length = stop - start
        q = qkv[start:stop, :width].reshape(length, n_heads, head_dim).transpose(1, 0, 2)
        k = qkv[start:stop, width:2 * width].reshape(length, n_heads, head_dim).transpose(1, 0, 2)
        v = qkv[start:stop, 2 * width:].reshape(length, n_heads, head_dim).transpose(1, 0, 2)
        scores = (q @ k.transpose(0, 2, 1)) * scale
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        out[start:stop] = (probs @ v).transpose(1, 0, 2).reshape(length, width)
    return out


def bias_gelu(x, bias):
    """In place: ``x = gelu(x + bias)`` with the exact (erf) GELU.

    Parameters
    ----------
    x : ndarray of float32, (n_tokens, width), overwritten.
    bias : ndarray of float32, (width,)

    Returns
    -------
    x
    """
    v = x.astype(np.float64) + bias
    x[:] = 0.5 * v * (1.0 + _erf64(v * SQRT_HALF))
    return x


def bias_residual_layer_norm(x, bias, residual, gamma, beta, eps):
    """In place: ``x = layer_norm(x + bias + residual) * gamma + beta`` over each row.

    Parameters
    ----------
    x : ndarray of float32, (n_tokens, width), overwritten.
    bias : ndarray of float32, (width,) or None
    residual : ndarray of float32, (n_tokens, width) or None
    gamma, beta : ndarray of float32, (width,)
    eps : float

    Returns
    -------
    x
    """
    if bias is not None:
        x += bias
    if residual is not None:
        x += residual
    mean = x.mean(axis=1, keepdims=True)
    x -= mean
    var = np.mean(np.square(x), axis=1, keepdims=True)
    x /= np.sqrt(var + np.float32(eps))
    x *= gamma
    x += beta
    return x


def mean_pool(x, cu_seqlens, out):
    """Mean of each sequence's rows.

    Parameters
    ----------
    x : ndarray of float32, (n_tokens, width)
    cu_seqlens : ndarray of int64, (n_seqs + 1,)
    out : ndarray of float32, (n_seqs, width), written.

    Returns
    -------
    out
    """
    for s in range(len(cu_seqlens) - 1):
        start, stop = cu_seqlens[s], cu_seqlens[s + 1]
        out[s] = x[start:stop].sum(axis=0, dtype=np.float32) / np.float32(stop - start)
    return out


def max_pool(x, cu_seqlens, out):
    """Elementwise maximum over each sequence's rows; signature as :func:`mean_pool`."""
    for s in range(len(cu_seqlens) - 1):
        out[s] = x[cu_seqlens[s]:cu_seqlens[s + 1]].max(axis=0)
    return out


def first_token_pool(x, cu_seqlens, out):
    """Each sequence's first row (the [CLS] token); signature as :func:`mean_pool`."""
    out[:] = x[cu_seqlens[:-1]]
    return out


def l2_normalize(x, out):
    """Scale each row to unit Euclidean norm; an all-zero row stays zero.

    Parameters
    ----------
    x : ndarray of float32, (n, width)
    out : ndarray of float32, (n, width), written (may be ``x``).

    Returns
    -------
    out
    """
    norm = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32))[:, None]
    np.divide(x, np.maximum(norm, np.float32(1e-12)), out=out)
    return out
