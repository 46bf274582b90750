"""create_app(): the Starlette application serving one embedding model (and a rerank model)."""
import os
import time
from types import SimpleNamespace

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from . import ollama_routes, openai_routes, rerank_routes, tei_routes
from .batching import EmbedBatcher
from .defaults import DEFAULTS
from .engine import Embedder
from .limits import Limits
from .metrics import Metrics
from .names import ServedNames, names_for



def _is_name(model):
    """A model to load (a name, a directory or None), not a loaded one."""
    return model is None or isinstance(model, (str, os.PathLike))


def _load(model, *, threads, backend, quantize):
    if not _is_name(model):
        return model
    import minilm_np

    return minilm_np.load(model, threads=threads, backend=backend, quantize=quantize)


def _load_cross_encoder(rerank_model, *, threads, backend, quantize):
    if not isinstance(rerank_model, (str, os.PathLike)):  # none, or already loaded
        return rerank_model
    import minilm_np

    if not hasattr(minilm_np, "CrossEncoder"):
        raise ImportError("--rerank-model needs minilm_np.CrossEncoder, which this install of minilm-np lacks")
    return minilm_np.CrossEncoder(rerank_model, threads=threads, backend=backend, quantize=quantize)


def create_app(model=None, *, rerank_model=None, threads=None, backend=None, quantize=None,
               served_model_name=(), rerank_served_model_name=(), api_key=None, cors_allow_origin=(),
               auto_truncate=True, warmup=True, **limits):
    """An ASGI application serving the OpenAI, Ollama, TEI and rerank APIs.

    Parameters
    ----------
    model : str, minilm_np.SentenceTransformer or None
        The embedding model: a loaded one, or what :func:`minilm_np.load` takes (None:
        all-MiniLM-L6-v2).
    rerank_model : str, minilm_np.CrossEncoder or None
        A cross-encoder for ``/rerank`` and ``/v1/rerank``.
    threads, backend, quantize
        Passed to :func:`minilm_np.load` (and the cross-encoder) when loading by name.
    served_model_name, rerank_served_model_name : sequence of str
        Extra names the models answer to (the first is the name they are listed under).
    api_key : str or None
        Require ``Authorization: Bearer <api_key>`` on every route but ``/health`` and ``/metrics``.
    cors_allow_origin : sequence of str
        Origins allowed by CORS (none: no CORS headers at all).
    auto_truncate : bool
        Cut over-long texts when a request does not say; False refuses them (422).
    warmup : bool
        Compile (or load from numba's cache) every kernel before returning.
    **limits
        ``max_batch_tokens`` (16,384), ``max_wait_ms`` (2.0), ``max_concurrent_requests`` (512),
        ``max_client_batch_size`` (2,048), ``payload_limit`` (2,000,000 bytes).

    Returns
    -------
    starlette.applications.Starlette
        Its ``state.server`` holds the model, batcher and settings.
    """
    unknown = set(limits) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"create_app() got unexpected keyword arguments {sorted(unknown)}")
    settings = {**DEFAULTS, **limits}
    loaded = _load(model, threads=threads, backend=backend, quantize=quantize)
    if warmup:
        loaded.warmup()
    cross_encoder = _load_cross_encoder(rerank_model, threads=threads, backend=backend, quantize=quantize)
    metrics = Metrics()
    batcher = EmbedBatcher(loaded, settings["max_batch_tokens"], settings["max_wait_ms"] / 1000, metrics)
    embed_names = names_for(model if _is_name(model) else loaded.model_dir,
                            served_model_name)
    rerank_names = [] if cross_encoder is None else list(rerank_served_model_name) or ["rerank"] \
        if not isinstance(rerank_model, (str, os.PathLike)) else names_for(rerank_model, rerank_served_model_name)
    server = SimpleNamespace(
        metrics=metrics, batcher=batcher, created=int(time.time()),
        embedder=Embedder(loaded, batcher, auto_truncate=auto_truncate,
                          max_client_batch_size=settings["max_client_batch_size"], metrics=metrics),
        limits=Limits(api_key=api_key, max_concurrent_requests=settings["max_concurrent_requests"],
                      payload_limit=settings["payload_limit"], metrics=metrics),
        names=ServedNames(embed_names, rerank_names),
        reranker=rerank_routes.Reranker(cross_encoder))
    metrics.queue_depth.set_function(lambda: batcher.depth)
    metrics.in_flight.set_function(lambda: server.limits.in_flight)

    async def metrics_route(request):
        return metrics.response()

    routes = [route for module in (openai_routes, ollama_routes, tei_routes, rerank_routes)
              for route in module.routes(server)]
    routes.append(server.limits.route("/metrics", tei_routes.TEI, metrics_route, ("GET",), open_route=True))
    middleware = [Middleware(CORSMiddleware, allow_origins=list(cors_allow_origin), allow_methods=["GET", "POST"],
                             allow_headers=["Authorization", "Content-Type"])] if cors_allow_origin else []
    app = Starlette(routes=routes, middleware=middleware)
    app.state.server = server
    return app
