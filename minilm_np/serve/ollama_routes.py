"""Ollama's embedding API: POST /api/embed, POST /api/embeddings, GET /api/tags, GET /api/version."""
import hashlib
import os
import time
from datetime import datetime, timezone

import anyio

from ..info import model_info
from . import fields
from .errors import OLLAMA, ApiError
from .limits import json_response

CONTEXT_LENGTH_MESSAGE = "the input length exceeds the context length"


def _model_name(server, body):
    name = fields.string(body, "model")
    if not name:
        raise ApiError(None, "model is required", param="model")
    if not server.names.embeds(name):
        raise ApiError(404, f'model "{name}" not found, try pulling it first', param="model",
                       code="model_not_found")
    return name


def _tag(server):
    """The /api/tags entry of the embedding model (its digest is the safetensors file's SHA-256)."""
    model = server.embedder.model
    path = os.path.join(model.model_dir, "model.safetensors")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    name = server.names.embed_names[0]
    name = name if ":" in name else f"{name}:latest"
    modified = datetime.fromtimestamp(os.path.getmtime(path), timezone.utc).isoformat()
    quantization = (model.quantization or "F32").upper()
    return {"name": name, "model": name, "modified_at": modified, "size": os.path.getsize(path),
            "digest": digest.hexdigest(),
            "details": {"parent_model": "", "format": "safetensors", "family": "bert", "families": ["bert"],
                        "parameter_size": f"{model_info(model)['parameters'] / 1e6:.1f}M",
                        "quantization_level": quantization}}


def routes(server):
    """The routes, for :func:`minilm_np.serve.create_app`'s ``server``."""
    tags = []

    async def embed(request):
        start = time.perf_counter_ns()
        body = fields.require_object(await server.limits.read_json(request))
        name = _model_name(server, body)
        texts, _ = fields.texts(body, "input", required=False)
        texts = [t for t in texts if t]  # Ollama skips empty strings
        truncate = fields.boolean(body, "truncate", True)
        dimensions = fields.count(body, "dimensions", limit=server.embedder.dim)
        try:
            vectors, tokens = await server.embedder.embed(texts, param="input", normalize=True,
                                                          dimensions=dimensions, truncate=truncate)
        except ApiError as error:
            if error.code == "context_length_exceeded":
                raise ApiError(400, CONTEXT_LENGTH_MESSAGE, param="input", code=error.code) from None
            raise
        return json_response({"model": name, "embeddings": vectors.tolist(),
                              "total_duration": time.perf_counter_ns() - start, "load_duration": 0,
                              "prompt_eval_count": tokens})

    async def embeddings(request):
        body = fields.require_object(await server.limits.read_json(request))
        _model_name(server, body)
        prompt = fields.string(body, "prompt", "")
        if not prompt:
            return json_response({"embedding": []})
        vectors, _ = await server.embedder.embed([prompt], param="prompt", truncate=True)
        return json_response({"embedding": vectors[0].tolist()})

    async def list_tags(request):
        if not tags:
            tags.append(await anyio.to_thread.run_sync(_tag, server))  # hashes the weights once
        return json_response({"models": tags})

    async def version(request):
        from .. import __version__

        return json_response({"version": __version__})

    limits = server.limits
    return [limits.route("/api/embed", OLLAMA, embed),
            limits.route("/api/embeddings", OLLAMA, embeddings),
            limits.route("/api/tags", OLLAMA, list_tags, ("GET",)),
            limits.route("/api/version", OLLAMA, version, ("GET",))]
