"""OpenAI's embeddings API: POST /v1/embeddings (and /embeddings), GET /v1/models."""
import base64
import sys

import numpy as np

from . import fields
from .errors import OPENAI, ApiError
from .limits import json_response

TOKEN_IDS_HINT = ("token ids are refused, they are another tokenizer's; send the texts (LangChain: "
                  "OpenAIEmbeddings(check_embedding_ctx_length=False))")


def _encode_vector(vector, encoding_format):
    """One embedding as OpenAI sends it: a list of floats, or base64 of little-endian float32."""
    if encoding_format == "base64":
        data = vector if sys.byteorder == "little" else vector.astype("<f4")
        return base64.b64encode(np.ascontiguousarray(data).tobytes()).decode("ascii")
    return vector.tolist()


def routes(server):
    """The routes, for :func:`minilm_np.serve.create_app`'s ``server``."""

    async def embeddings(request):
        body = fields.require_object(await server.limits.read_json(request))
        name = fields.string(body, "model")
        if name is None:
            raise ApiError(None, "`model` is required", param="model")
        if not server.names.embeds(name):
            raise ApiError(404, f"The model `{name}` does not exist; this server has {server.names.listing()}",
                           param="model", code="model_not_found")
        texts, _ = fields.texts(body, "input", token_ids_hint=TOKEN_IDS_HINT)
        if not texts or any(t == "" for t in texts):
            raise ApiError(None, "`input` must be a non-empty string or a non-empty array of non-empty strings",
                           param="input")
        encoding_format = fields.string(body, "encoding_format", "float", choices=("float", "base64"))
        dimensions = fields.count(body, "dimensions", limit=server.embedder.dim)
        fields.string(body, "user")
        vectors, tokens = await server.embedder.embed(texts, param="input", normalize=dimensions is not None,
                                                      dimensions=dimensions)
        data = [{"object": "embedding", "index": i, "embedding": _encode_vector(v, encoding_format)}
                for i, v in enumerate(vectors)]
        return json_response({"object": "list", "data": data, "model": name,
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def models(request):
        data = [{"id": name, "object": "model", "created": server.created, "owned_by": "minilm-np"}
                for name in server.names.primary()]
        return json_response({"object": "list", "data": data})

    limits = server.limits
    return [limits.route("/v1/embeddings", OPENAI, embeddings),
            limits.route("/embeddings", OPENAI, embeddings),
            limits.route("/v1/models", OPENAI, models, ("GET",))]
