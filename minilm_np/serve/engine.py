"""The embedding work behind every route: tokenise, check limits, batch, apply the options."""
import asyncio

import anyio
import numpy as np

from .errors import VALIDATION, ApiError


class Embedder:
    """Embeds a request's texts through the shared :class:`~minilm_np.serve.batching.EmbedBatcher`.

    Parameters
    ----------
    model : minilm_np.SentenceTransformer
    batcher : minilm_np.serve.batching.EmbedBatcher
    auto_truncate : bool
        Cut over-long texts at the model's ``max_seq_length`` when a request does not say;
        False refuses them (422 naming the token count).
    max_client_batch_size : int
        Texts one request may send (more: 413).
    metrics : minilm_np.serve.metrics.Metrics
    """

    def __init__(self, model, batcher, *, auto_truncate, max_client_batch_size, metrics):
        self.model = model
        self.batcher = batcher
        self.auto_truncate = auto_truncate
        self.max_client_batch_size = max_client_batch_size
        self.metrics = metrics

    @property
    def dim(self) -> int:
        return self.model.get_sentence_embedding_dimension()

    def _prompt(self, prompt_name):
        try:
            return self.model._resolve_prompt(None, prompt_name)
        except (TypeError, ValueError) as error:
            raise ApiError(VALIDATION, str(error), param="prompt_name") from None

    def check_count(self, texts, param):
        """413 when ``texts`` holds more than ``max_client_batch_size`` texts."""
        if len(texts) > self.max_client_batch_size:
            raise ApiError(413, f"`{param}` holds {len(texts)} texts, more than this server's "
                                f"--max-client-batch-size of {self.max_client_batch_size}",
                           param=param, code="batch_too_large")

    def _tokenize_and_submit(self, texts, prompt, truncate, param):
        with self.batcher.expecting():
            tokenizer = self.model._tokenizer
            ids = tokenizer.encode([prompt + t for t in texts] if prompt else texts)
            if not truncate:
                limit = self.model.max_seq_length
                for index, row in enumerate(ids):
                    if len(row) >= limit:
                        n = tokenizer.untruncated_length((prompt or "") + texts[index])
                        if n > limit:
                            raise ApiError(422, f"`{param}[{index}]` has {n} tokens, more than the model's "
                                                f"maximum of {limit} (send truncate: true, or start the server "
                                                "with --auto-truncate, to cut it)",
                                           param=param, code="context_length_exceeded")
            return self.batcher.submit(ids), sum(len(row) for row in ids)

    async def embed(self, texts, *, param, normalize=False, dimensions=None, truncate=None, prompt_name=None):
        """Embed ``texts`` as ``encode(texts, normalize_embeddings=normalize, truncate_dim=dimensions)``.

        Parameters
        ----------
        texts : list of str
        param : str
            The request field the texts came from (named in errors).
        truncate : bool or None
            Cut over-long texts; None: the server's ``auto_truncate``.
        prompt_name : str or None
            A prompt of the model's (default: the model's default prompt, as encode()).

        Returns
        -------
        (ndarray of float32 ``(len(texts), dim)``, int): the vectors and the tokens they took.
        """
        self.check_count(texts, param)
        prompt = self._prompt(prompt_name)
        if not texts:
            return np.zeros((0, dimensions or self.dim), np.float32), 0
        truncate = self.auto_truncate if truncate is None else truncate
        future, tokens = await anyio.to_thread.run_sync(self._tokenize_and_submit, texts, prompt, truncate, param)
        rows = await asyncio.wrap_future(future)
        self.metrics.tokens.inc(tokens)
        return self.model._apply_options(rows, normalize, dimensions), tokens
