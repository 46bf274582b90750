"""Hugging Face text-embeddings-inference's API: POST /embed, /similarity, /tokenize; GET /info, /health."""
import anyio
from starlette.responses import Response

from . import fields
from .errors import TEI, ApiError
from .limits import json_response


def _nonempty_texts(body, name):
    texts, single = fields.texts(body, name)
    if not texts:
        raise ApiError(None, f"`{name}` cannot be empty", param=name, code="empty")
    return texts, single


def routes(server):
    """The routes, for :func:`minilm_np.serve.create_app`'s ``server``."""
    embedder = server.embedder

    async def embed(request):
        body = fields.require_object(await server.limits.read_json(request))
        texts, _ = _nonempty_texts(body, "inputs")
        fields.string(body, "truncation_direction", "Right", choices=("Right", "right"))
        vectors, _ = await embedder.embed(texts, param="inputs", normalize=fields.boolean(body, "normalize", True),
                                          dimensions=fields.count(body, "dimensions", limit=embedder.dim),
                                          truncate=fields.boolean(body, "truncate", None),
                                          prompt_name=fields.string(body, "prompt_name"))
        return json_response(vectors.tolist())

    async def similarity(request):
        body = fields.require_object(await server.limits.read_json(request))
        inputs = body.get("inputs")
        if not isinstance(inputs, dict):
            raise ApiError(None, "`inputs` must be an object with `source_sentence` and `sentences`",
                           param="inputs")
        source = fields.string(inputs, "source_sentence")
        if source is None:
            raise ApiError(None, "`inputs.source_sentence` is required", param="inputs.source_sentence")
        sentences, _ = _nonempty_texts(inputs, "sentences")
        embedder.check_count(sentences, "inputs.sentences")
        vectors, _ = await embedder.embed([source] + sentences, param="inputs", normalize=True,
                                          truncate=fields.boolean(body, "truncate", None),
                                          prompt_name=fields.string(body, "prompt_name"))
        return json_response((vectors[1:] @ vectors[0]).tolist())

    async def tokenize(request):
        body = fields.require_object(await server.limits.read_json(request))
        texts, _ = _nonempty_texts(body, "inputs")
        embedder.check_count(texts, "inputs")
        special = fields.boolean(body, "add_special_tokens", True)
        encodings = await anyio.to_thread.run_sync(
            lambda: embedder.model.tokenizer.encode_batch(texts, add_special_tokens=special))
        return json_response([
            [{"id": token_id, "text": token, "special": bool(is_special),
              "start": None if is_special else start, "stop": None if is_special else stop}
             for token_id, token, is_special, (start, stop)
             in zip(e.ids, e.tokens, e.special_tokens_mask, e.offsets)]
            for e in encodings])

    async def info(request):
        from .. import __version__

        model = embedder.model
        return json_response({
            "model_id": server.names.embed_names[0], "model_sha": None,
            "model_dtype": model.quantization or "float32",
            "model_type": {"embedding": {"pooling": "+".join(model.head.pooling.modes)}},
            "max_concurrent_requests": server.limits.max_concurrent_requests,
            "max_input_length": model.max_seq_length,
            "max_batch_tokens": server.batcher.max_batch_tokens,
            "max_client_batch_size": embedder.max_client_batch_size,
            "auto_truncate": embedder.auto_truncate,
            "version": __version__})

    async def health(request):
        return Response(status_code=200)

    limits = server.limits
    return [limits.route("/embed", TEI, embed),
            limits.route("/similarity", TEI, similarity),
            limits.route("/tokenize", TEI, tokenize),
            limits.route("/info", TEI, info, ("GET",)),
            limits.route("/health", TEI, health, ("GET",), open_route=True)]
