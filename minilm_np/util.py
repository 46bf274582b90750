"""Similarity helpers with sentence_transformers.util's names and results, on numpy arrays.

Differences from sentence-transformers: inputs and outputs are numpy float32 arrays, never
torch tensors; ``semantic_search`` and ``paraphrase_mining`` return the same Python
structures (lists of dicts / of [score, i, j]).
"""
import heapq

import numpy as np


def _as_2d(a, name):
    if hasattr(a, "detach"):  # a torch tensor from a user's other code: take its values
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must be a vector (dim,) or a matrix (n, dim), got shape {a.shape}")
    return a


def _check_widths(a, b):
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding widths differ: a has {a.shape[1]} columns, b has {b.shape[1]}")


def normalize_embeddings(embeddings):
    """Rows scaled to unit L2 norm (zero rows stay zero); ``(n, dim)`` float32."""
    a = _as_2d(embeddings, "embeddings")
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), np.float32(1e-12))


def cos_sim(a, b):
    """Cosine similarity of every row of ``a`` with every row of ``b``: ``(len(a), len(b))`` float32."""
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    _check_widths(a, b)
    return normalize_embeddings(a) @ normalize_embeddings(b).T


def dot_score(a, b):
    """Dot product of every row of ``a`` with every row of ``b``: ``(len(a), len(b))`` float32."""
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    _check_widths(a, b)
    return a @ b.T


def euclidean_sim(a, b):
    """Negative Euclidean distance of every pair of rows: ``(len(a), len(b))`` float32."""
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    _check_widths(a, b)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * (a @ b.T)
    return -np.sqrt(np.maximum(sq, 0)).astype(np.float32)


def manhattan_sim(a, b):
    """Negative Manhattan (L1) distance of every pair of rows: ``(len(a), len(b))`` float32."""
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    _check_widths(a, b)
    return -np.abs(a[:, None, :] - b[None, :, :]).sum(-1).astype(np.float32)


SIMILARITY_FUNCTIONS = {"cosine": cos_sim, "dot": dot_score, "euclidean": euclidean_sim, "manhattan": manhattan_sim}


def semantic_search(query_embeddings, corpus_embeddings, query_chunk_size=100, corpus_chunk_size=500000,
                    top_k=10, score_function=cos_sim):
    """Top-k corpus entries for each query, scanning the corpus in chunks.

    Parameters
    ----------
    query_embeddings : array_like, (n_queries, dim) or (dim,)
    corpus_embeddings : array_like, (n_corpus, dim)
    top_k : int

    Returns
    -------
    list (one per query) of lists of ``{"corpus_id": int, "score": float}``, best first.
    """
    queries = _as_2d(query_embeddings, "query_embeddings")
    corpus = _as_2d(corpus_embeddings, "corpus_embeddings")
    _check_widths(queries, corpus)
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    results = [[] for _ in range(len(queries))]
    for q0 in range(0, len(queries), query_chunk_size):
        heaps = [[] for _ in range(min(query_chunk_size, len(queries) - q0))]
        for c0 in range(0, len(corpus), corpus_chunk_size):
            scores = score_function(queries[q0:q0 + query_chunk_size], corpus[c0:c0 + corpus_chunk_size])
            k = min(top_k, scores.shape[1])
            best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            for qi, row in enumerate(best):
                for ci in row:
                    item = (float(scores[qi, ci]), c0 + int(ci))
                    if len(heaps[qi]) < top_k:
                        heapq.heappush(heaps[qi], item)
                    else:
                        heapq.heappushpop(heaps[qi], item)
        for qi, heap in enumerate(heaps):
            ranked = sorted(heap, key=lambda x: (-x[0], x[1]))
            results[q0 + qi] = [{"corpus_id": cid, "score": score} for score, cid in ranked]
    return results


def paraphrase_mining_embeddings(embeddings, query_chunk_size=5000, corpus_chunk_size=100000,
                                 max_pairs=500000, top_k=100, score_function=cos_sim):
    """Pairs of rows with the highest similarity: a list of ``[score, i, j]`` (i < j), best first."""
    emb = _as_2d(embeddings, "embeddings")
    top_k += 1  # each row's best match is itself
    pairs = {}
    for c0 in range(0, len(emb), corpus_chunk_size):
        for q0 in range(0, len(emb), query_chunk_size):
            scores = score_function(emb[q0:q0 + query_chunk_size], emb[c0:c0 + corpus_chunk_size])
            k = min(top_k, scores.shape[1])
            best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            for qi, row in enumerate(best):
                for ci in row:
                    i, j = q0 + qi, c0 + int(ci)
                    if i != j:
                        key = (min(i, j), max(i, j))
                        pairs[key] = max(pairs.get(key, -np.inf), float(scores[qi, ci]))
    ranked = sorted(((s, i, j) for (i, j), s in pairs.items()), key=lambda x: (-x[0], x[1], x[2]))
    return [[s, i, j] for s, i, j in ranked[:max_pairs]]


def paraphrase_mining(model, sentences, show_progress_bar=False, batch_size=32, **kwargs):
    """Embed ``sentences`` with ``model`` and return :func:`paraphrase_mining_embeddings` of them."""
    embeddings = model.encode(sentences, batch_size=batch_size, show_progress_bar=show_progress_bar)
    return paraphrase_mining_embeddings(embeddings, **kwargs)
