"""Reranking with a cross-encoder: TEI's POST /rerank and the Cohere/Jina-shaped POST /v1/rerank."""
import asyncio
import concurrent.futures

import numpy as np

from . import fields
from .errors import COHERE, TEI, ApiError
from .limits import json_response


def _raw(logits):
    return logits


class Reranker:
    """A ``minilm_np.CrossEncoder`` (sentence-transformers' interface) run on one thread of its own.

    Parameters
    ----------
    cross_encoder : minilm_np.CrossEncoder or None
        None: the rerank routes answer that no rerank model is loaded.
    """

    def __init__(self, cross_encoder):
        self.cross_encoder = cross_encoder
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="minilm-np-rerank")

    async def scores(self, query, documents, *, raw):
        """Relevance of each document to ``query``: float32 ``(len(documents),)``.

        ``predict``'s default activation (a sigmoid for a one-label model), or the logits when ``raw``.
        """
        if self.cross_encoder is None:
            raise ApiError(400, "this server has no rerank model: start it with --rerank-model M",
                           code="model_not_found")
        pairs = [(query, document) for document in documents]
        activation = _raw if raw else None
        scores = await asyncio.wrap_future(self._pool.submit(self.cross_encoder.predict, pairs,
                                                             activation_fn=activation))
        return np.asarray(scores, np.float32).reshape(len(documents))


def _documents(body, name):
    value = body.get(name)
    if isinstance(value, list):  # Cohere and Jina also take {"text": ...} objects
        value = [d["text"] if isinstance(d, dict) and isinstance(d.get("text"), str) else d for d in value]
    texts, _ = fields.texts({name: value}, name)
    if not texts:
        raise ApiError(None, f"`{name}` cannot be empty", param=name, code="empty")
    return texts


def routes(server):
    """The routes, for :func:`minilm_np.serve.create_app`'s ``server``."""
    reranker = server.reranker

    async def tei_rerank(request):
        body = fields.require_object(await server.limits.read_json(request))
        query = fields.string(body, "query")
        if query is None:
            raise ApiError(None, "`query` is required", param="query")
        texts = _documents(body, "texts")
        server.embedder.check_count(texts, "texts")
        return_text = fields.boolean(body, "return_text", False)
        scores = await reranker.scores(query, texts, raw=fields.boolean(body, "raw_scores", False))
        order = np.argsort(-scores, kind="stable")
        return json_response([{"index": int(i), "score": float(scores[i]),
                               **({"text": texts[i]} if return_text else {})} for i in order])

    async def cohere_rerank(request):
        body = fields.require_object(await server.limits.read_json(request))
        name = fields.string(body, "model")
        if name is not None and not server.names.reranks(name):
            raise ApiError(404, f"model `{name}` not found; this server reranks with "
                                f"{', '.join(server.names.rerank_names) or 'no model'}", code="model_not_found")
        query = fields.string(body, "query")
        if query is None:
            raise ApiError(None, "`query` is required", param="query")
        documents = _documents(body, "documents")
        server.embedder.check_count(documents, "documents")
        top_n = fields.count(body, "top_n", len(documents))
        return_documents = fields.boolean(body, "return_documents", False)
        scores = await reranker.scores(query, documents, raw=False)
        order = np.argsort(-scores, kind="stable")[:top_n]
        results = [{"index": int(i), "relevance_score": float(scores[i]),
                    **({"document": {"text": documents[i]}} if return_documents else {})} for i in order]
        return json_response({"results": results, "model": name or (server.names.rerank_names or [None])[0],
                              "usage": {"documents": len(documents)}})

    limits = server.limits
    return [limits.route("/rerank", TEI, tei_rerank), limits.route("/v1/rerank", COHERE, cohere_rerank)]
