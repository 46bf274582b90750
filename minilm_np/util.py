"""Similarity helpers with sentence_transformers.util's names and results, on numpy arrays.

Differences from sentence-transformers: inputs may be numpy arrays, lists or torch tensors,
outputs are numpy float32 arrays, never torch tensors; ``semantic_search`` and
``paraphrase_mining`` return the same Python structures (lists of dicts / of [score, i, j]),
with ties in score broken by index (sentence-transformers leaves their order to its heap);
``euclidean_sim`` always takes the exact differences (torch.cdist switches to a GEMM
expansion beyond 25 rows, which is off by up to ~1e-3 for near-identical vectors).
"""
import numpy as np


# Elements of one (rows, cols, dim) difference block in euclidean_sim / manhattan_sim: 16 MiB.
DIFF_BLOCK_ELEMENTS = 1 << 22


def _as_2d(a, name):
    if hasattr(a, "detach"):  # a torch tensor from a user's other code: take its values
        a = a.detach().cpu().numpy()
    elif isinstance(a, (list, tuple)) and a and hasattr(a[0], "detach"):  # a list of tensors
        a = [x.detach().cpu().numpy() for x in a]
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


def _distance(a, b, reduce):
    """``-reduce(a[i] - b[j])`` for every pair of rows, in blocks of bounded memory."""
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    _check_widths(a, b)
    out = np.empty((len(a), len(b)), np.float32)
    step = max(1, DIFF_BLOCK_ELEMENTS // max(1, len(b) * a.shape[1]))
    for i in range(0, len(a), step):
        out[i:i + step] = reduce(a[i:i + step, None, :] - b[None, :, :])
    return np.negative(out, out=out)


def euclidean_sim(a, b):
    """Negative Euclidean distance of every pair of rows: ``(len(a), len(b))`` float32.

    Computed from the differences (exact), for any number of rows; see the module notes.
    """
    return _distance(a, b, lambda d: np.sqrt((d * d).sum(-1)))


def manhattan_sim(a, b):
    """Negative Manhattan (L1) distance of every pair of rows: ``(len(a), len(b))`` float32."""
    return _distance(a, b, lambda d: np.abs(d).sum(-1))


def _pairwise(a, b):
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"pairwise similarity needs equal shapes, got {a.shape} and {b.shape}")
    return a, b


def pairwise_cos_sim(a, b):
    """Cosine similarity of row i of ``a`` with row i of ``b``: ``(n,)`` float32."""
    a, b = _pairwise(a, b)
    return (normalize_embeddings(a) * normalize_embeddings(b)).sum(-1)


def pairwise_dot_score(a, b):
    """Dot product of row i of ``a`` with row i of ``b``: ``(n,)`` float32."""
    a, b = _pairwise(a, b)
    return (a * b).sum(-1)


def pairwise_euclidean_sim(a, b):
    """Negative Euclidean distance of row i of ``a`` to row i of ``b``: ``(n,)`` float32."""
    a, b = _pairwise(a, b)
    return -np.sqrt(((a - b) ** 2).sum(-1))


def pairwise_manhattan_sim(a, b):
    """Negative Manhattan distance of row i of ``a`` to row i of ``b``: ``(n,)`` float32."""
    a, b = _pairwise(a, b)
    return -np.abs(a - b).sum(-1)


SIMILARITY_FUNCTIONS = {"cosine": cos_sim, "dot": dot_score, "euclidean": euclidean_sim, "manhattan": manhattan_sim}
PAIRWISE_FUNCTIONS = {"cosine": pairwise_cos_sim, "dot": pairwise_dot_score, "euclidean": pairwise_euclidean_sim,
                      "manhattan": pairwise_manhattan_sim}


def _top_k(scores, k):
    """Column indices of each row's ``k`` highest scores, best first (ties: lower index first).

    Parameters
    ----------
    scores : ndarray of float32, (n, m)
    k : int, 1 <= k <= m

    Returns
    -------
    ndarray of int64, (n, k)
    """
    if k < scores.shape[1]:
        candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    values = np.take_along_axis(scores, candidates, 1)
    order = np.lexsort((candidates, -values), axis=-1)  # the last key is the primary one
    return np.take_along_axis(candidates, order, 1)


def _check_chunk(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def semantic_search(query_embeddings, corpus_embeddings, query_chunk_size=100, corpus_chunk_size=500000,
                    top_k=10, score_function=cos_sim):
    """Top-k corpus entries for each query, scanning the corpus in chunks.

    Parameters
    ----------
    query_embeddings : array_like, (n_queries, dim) or (dim,)
    corpus_embeddings : array_like, (n_corpus, dim)
    query_chunk_size, corpus_chunk_size : int
        Queries and corpus rows scored at a time (memory: one ``(query_chunk, corpus_chunk)``
        float32 matrix); the results do not depend on them.
    top_k : int
    score_function : callable
        ``(a (n, dim), b (m, dim)) -> (n, m)`` scores, higher is closer; default :func:`cos_sim`.

    Returns
    -------
    list (one per query) of lists of ``{"corpus_id": int, "score": float}``, best first; equal
    scores in corpus order.
    """
    queries = _as_2d(query_embeddings, "query_embeddings")
    corpus = _as_2d(corpus_embeddings, "corpus_embeddings")
    _check_widths(queries, corpus)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    _check_chunk(query_chunk_size, "query_chunk_size")
    _check_chunk(corpus_chunk_size, "corpus_chunk_size")
    # cos_sim would normalise each corpus chunk once per query chunk: normalise once, then dot.
    normalized = score_function is cos_sim
    if normalized:
        queries = normalize_embeddings(queries)
    best = [[] for _ in range(len(queries))]  # per query: (score, corpus_id) candidates so far
    for c0 in range(0, len(corpus), corpus_chunk_size):
        chunk = corpus[c0:c0 + corpus_chunk_size]
        if normalized:
            chunk = normalize_embeddings(chunk)
        for q0 in range(0, len(queries), query_chunk_size):
            part = queries[q0:q0 + query_chunk_size]
            scores = np.asarray(part @ chunk.T if normalized else score_function(part, chunk), dtype=np.float32)
            top = _top_k(scores, min(top_k, scores.shape[1]))
            for qi, row in enumerate(top):
                candidates = best[q0 + qi] + [(float(scores[qi, ci]), c0 + int(ci)) for ci in row]
                best[q0 + qi] = sorted(candidates, key=lambda x: (-x[0], x[1]))[:top_k]
    return [[{"corpus_id": cid, "score": score} for score, cid in hits] for hits in best]


def paraphrase_mining_embeddings(embeddings, query_chunk_size=5000, corpus_chunk_size=100000,
                                 max_pairs=500000, top_k=100, score_function=cos_sim):
    """The pairs of rows with the highest scores, sentence-transformers' algorithm.

    Each row keeps its ``top_k`` best other rows; the ``max_pairs`` best of those pairs are
    returned.

    Parameters
    ----------
    embeddings : array_like, (n, dim)
    query_chunk_size, corpus_chunk_size : int
        Rows scored at a time; the results do not depend on them.
    max_pairs, top_k : int
    score_function : callable
        Symmetric ``(a, b) -> (len(a), len(b))`` scores; default :func:`cos_sim`.

    Returns
    -------
    list of ``[score, i, j]`` with i < j, best first (equal scores by i, then j).
    """
    emb = _as_2d(embeddings, "embeddings")
    for value, name in ((query_chunk_size, "query_chunk_size"), (corpus_chunk_size, "corpus_chunk_size"),
                        (max_pairs, "max_pairs"), (top_k, "top_k")):
        _check_chunk(value, name)
    pairs = {}  # (i, j) -> score
    for q0 in range(0, len(emb), query_chunk_size):
        queries = emb[q0:q0 + query_chunk_size]
        # each query's top_k + 1 (itself among them) over the whole corpus, whatever the chunking
        best = [[] for _ in range(len(queries))]
        for c0 in range(0, len(emb), corpus_chunk_size):
            scores = np.asarray(score_function(queries, emb[c0:c0 + corpus_chunk_size]), dtype=np.float32)
            top = _top_k(scores, min(top_k + 1, scores.shape[1]))
            for qi, row in enumerate(top):
                candidates = best[qi] + [(float(scores[qi, ci]), c0 + int(ci)) for ci in row]
                best[qi] = sorted(candidates, key=lambda x: (-x[0], x[1]))[:top_k + 1]
        for qi, hits in enumerate(best):
            i = q0 + qi
            for score, j in [(score, j) for score, j in hits if j != i][:top_k]:
                key = (i, j) if i < j else (j, i)
                pairs.setdefault(key, score)  # symmetric: the first side seen gives the score
    ranked = sorted(((score, i, j) for (i, j), score in pairs.items()), key=lambda x: (-x[0], x[1], x[2]))
    return [[score, i, j] for score, i, j in ranked[:max_pairs]]


def paraphrase_mining(model, sentences, show_progress_bar=False, batch_size=32, query_chunk_size=5000,
                      corpus_chunk_size=100000, max_pairs=500000, top_k=100, score_function=cos_sim,
                      truncate_dim=None, prompt_name=None, prompt=None):
    """Embed ``sentences`` with ``model`` and return :func:`paraphrase_mining_embeddings` of them.

    Parameters
    ----------
    model : minilm_np.SentenceTransformer
    sentences : list of str
    show_progress_bar, batch_size, truncate_dim, prompt_name, prompt
        Passed to ``model.encode``.
    query_chunk_size, corpus_chunk_size, max_pairs, top_k, score_function
        See :func:`paraphrase_mining_embeddings`.

    Returns
    -------
    list of ``[score, i, j]`` with i < j, best first.
    """
    embeddings = model.encode(sentences, batch_size=batch_size, show_progress_bar=show_progress_bar,
                              truncate_dim=truncate_dim, prompt_name=prompt_name, prompt=prompt)
    return paraphrase_mining_embeddings(embeddings, query_chunk_size=query_chunk_size,
                                        corpus_chunk_size=corpus_chunk_size, max_pairs=max_pairs, top_k=top_k,
                                        score_function=score_function)
