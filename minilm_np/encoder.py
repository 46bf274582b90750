"""The user-facing encoder, with sentence-transformers' names, defaults and semantics."""
import itertools
import os
import sys

import numpy as np

from . import util
from .config import read_config
from .locate import resolve_model_dir
from .model import Batch, RunState, forward, pool
from .tokenizer import TextTokenizer
from .weights import load_weights

# A forward pass packs up to batch_size * TOKENS_PER_TEXT tokens (at least one text), so a
# batch of short texts still gives the GEMMs enough rows; batch_size keeps bounding memory.
TOKENS_PER_TEXT = 128
# Texts are tokenised and sorted by length this many at a time: streaming with bounded memory.
WINDOW_TEXTS = 2048
OUTPUT_VALUES = ("sentence_embedding", "token_embeddings")


def _check_text(text, index):
    if not isinstance(text, str):
        raise TypeError(f"sentences[{index}] is {type(text).__name__}, expected str"
                        + (" (decode bytes first)" if isinstance(text, (bytes, bytearray)) else ""))
    return text


def _texts(sentences):
    """Yield the texts of ``sentences`` (any iterable of str), checking each one's type."""
    if isinstance(sentences, np.ndarray) and sentences.ndim != 1:
        raise TypeError(f"sentences as a numpy array must be 1-D, got shape {sentences.shape}")
    if isinstance(sentences, (bytes, bytearray)) or not hasattr(sentences, "__iter__"):
        raise TypeError(f"sentences must be a str or an iterable of str, got {type(sentences).__name__}")
    for index, text in enumerate(sentences):
        yield _check_text(text, index)


class SentenceTransformer:
    """A BERT sentence encoder, a drop-in for ``sentence_transformers.SentenceTransformer``.

    Parameters
    ----------
    model_name_or_path : str or None
        A model directory, a Hugging Face hub id, or None for all-MiniLM-L6-v2 (see
        :func:`minilm_np.locate.resolve_model_dir`).
    device : str or None
        Accepted for compatibility; only ``None`` or ``"cpu"``.
    threads : int or None
        Threads for BLAS and the numba kernels (process-wide); default ``$MINILM_NP_THREADS``,
        else the machine's cores.
    backend : {"numba", "numpy"} or None
        Kernel backend; default ``$MINILM_NP_BACKEND``, else numba.
    quantize : {None, "w8", "w8a16", "w8a8"}
        int8 weight quantisation applied at load time.
    truncate_dim : int or None
        Default Matryoshka truncation of the sentence embeddings.
    """

    def __init__(self, model_name_or_path=None, device=None, *, threads=None, backend=None, quantize=None,
                 truncate_dim=None):
        from . import _threads
        from .kernels import backend_name, load_backend

        if device not in (None, "cpu"):
            raise ValueError(f"device {device!r} is not supported: minilm-np runs on the CPU only")
        self.threads = _threads.resolve_threads(threads)
        self.model_dir, self.source = resolve_model_dir(model_name_or_path)
        self.config = read_config(self.model_dir)
        self.weights = load_weights(self.model_dir, self.config)
        if quantize is not None:
            from .quantize import quantize_weights

            self.weights = quantize_weights(self.weights, quantize)
        self.quantization = quantize
        self._tokenizer = TextTokenizer(os.path.join(self.model_dir, "tokenizer.json"),
                                        self.config.max_seq_length, self.config.do_lower_case)
        self.kernels = load_backend(backend)
        self.backend = backend_name(self.kernels)
        _threads.apply_threads(self.threads, self.backend == "numba")
        self.truncate_dim = truncate_dim
        self.similarity_fn_name = self._read_similarity_fn_name()

    def _read_similarity_fn_name(self):
        import json

        path = os.path.join(self.model_dir, "config_sentence_transformers.json")
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f).get("similarity_fn_name") or "cosine"
        except (OSError, ValueError):
            return "cosine"

    def __repr__(self):
        return (f"SentenceTransformer({self.source}, dim={self.get_sentence_embedding_dimension()}, "
                f"backend={self.backend}, quantize={self.quantization}, threads={self.threads})")

    @property
    def tokenizer(self):
        """The model's ``tokenizers.Tokenizer`` (padding off, truncation at ``max_seq_length``)."""
        return self._tokenizer.tokenizer

    @property
    def max_seq_length(self) -> int:
        """Tokens per text after truncation, [CLS] and [SEP] included."""
        return self._tokenizer.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        limit = self.config.max_position_embeddings
        if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= limit:
            raise ValueError(f"max_seq_length must be an integer in [2, {limit}] (the model's position "
                             f"table has {limit} rows), got {value!r}")
        self._tokenizer.max_seq_length = value

    def get_sentence_embedding_dimension(self) -> int:
        """Width of the sentence embeddings (after ``truncate_dim``)."""
        dim = self.config.embedding_dim
        return min(dim, self.truncate_dim) if self.truncate_dim else dim

    def tokenize(self, texts):
        """Padded token ids like sentence-transformers' ``tokenize``.

        Returns
        -------
        dict with ``input_ids``, ``attention_mask``, ``token_type_ids``: int64 ``(n, max_len)``.
        """
        ids = self._tokenizer.encode(list(_texts([texts] if isinstance(texts, str) else texts)))
        width = max((len(i) for i in ids), default=0)
        input_ids = np.zeros((len(ids), width), np.int64)
        mask = np.zeros((len(ids), width), np.int64)
        for row, seq in enumerate(ids):
            input_ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}

    def encode(self, sentences, batch_size=32, show_progress_bar=None, output_value="sentence_embedding",
               precision="float32", convert_to_numpy=True, convert_to_tensor=False, device=None,
               normalize_embeddings=False, truncate_dim=None, **kwargs):
        """Embed one text or many.

        Parameters
        ----------
        sentences : str, or an iterable of str (list, tuple, 1-D numpy array, generator...)
            Iterables are streamed: tokenised, sorted by length and embedded a window at a time.
        batch_size : int
            Texts per forward pass at 128 tokens each; forward passes are packed by tokens (up
            to ``batch_size * 128``), so many short texts share one pass. Results do not
            depend on it: every text's vector is bitwise the same alone or in any batch.
        show_progress_bar : bool or None
            A progress bar on stderr counted in texts; None shows it for more than one window
            of texts when stderr is a terminal.
        output_value : {"sentence_embedding", "token_embeddings"}
            ``token_embeddings`` gives one ``(n_tokens_i, hidden)`` array per text.
        precision : {"float32"}
        convert_to_numpy : bool
            True: one float32 array ``(n, dim)`` (``(dim,)`` for a str). False: a list of
            ``(dim,)`` arrays.
        convert_to_tensor : bool
            Must be False: minilm-np never imports torch.
        normalize_embeddings : bool
            Scale each vector to unit length (after ``truncate_dim``).
        truncate_dim : int or None
            Keep the first ``truncate_dim`` dimensions (Matryoshka); default the model's.

        Returns
        -------
        ndarray of float32 ``(n, dim)`` or ``(dim,)``, or a list of arrays.

        Raises
        ------
        TypeError
            A text is not a str (the message names its index and type).
        ValueError
            An argument is out of range.
        """
        if convert_to_tensor:
            raise ValueError("convert_to_tensor=True is not supported: minilm-np returns numpy arrays "
                             "and never imports torch")
        if precision != "float32":
            raise ValueError(f"precision {precision!r} is not supported; use precision='float32' "
                             "(for int8 weights load the model with quantize=...)")
        if device not in (None, "cpu"):
            raise ValueError(f"device {device!r} is not supported: minilm-np runs on the CPU only")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if output_value not in OUTPUT_VALUES:
            raise ValueError(f"output_value must be one of {OUTPUT_VALUES}, got {output_value!r}")
        truncate_dim = truncate_dim or self.truncate_dim
        if truncate_dim is not None and (isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int)
                                         or truncate_dim < 1):
            raise ValueError(f"truncate_dim must be a positive integer, got {truncate_dim!r}")

        single = isinstance(sentences, str)
        texts = iter([sentences]) if single else _texts(sentences)
        total = len(sentences) if not single and hasattr(sentences, "__len__") else None
        progress = self._progress(show_progress_bar, total)
        budget = max(batch_size * TOKENS_PER_TEXT, self.max_seq_length)
        state = None
        parts = []
        while True:
            window = list(itertools.islice(texts, WINDOW_TEXTS))
            if not window:
                break
            ids = self._tokenizer.encode(window)
            if state is None:
                state = RunState(self.config, min(budget, sum(len(i) for i in ids)))
            parts.extend(self._embed_window(ids, budget, state, output_value, normalize_embeddings, truncate_dim))
            if progress is not None:
                progress.update(len(window))
        if progress is not None:
            progress.close()

        if output_value == "token_embeddings":
            return parts[0] if single else parts
        dim = self.config.embedding_dim if truncate_dim is None else min(truncate_dim, self.config.embedding_dim)
        embeddings = np.stack(parts) if parts else np.zeros((0, dim), np.float32)
        if single:
            return embeddings[0]
        return embeddings if convert_to_numpy else list(embeddings)

    def _embed_window(self, ids, budget, state, output_value, normalize_embeddings, truncate_dim):
        """Embed one window of tokenised texts, longest first, in token-budget chunks; input order out."""
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = [None] * len(ids)
        start = 0
        while start < len(order):
            stop, tokens = start, 0
            while stop < len(order) and (stop == start or tokens + len(ids[order[stop]]) <= budget):
                tokens += len(ids[order[stop]])
                stop += 1
            chunk = order[start:stop]
            batch = Batch.pack([ids[i] for i in chunk])
            if batch.n_tokens > state.capacity:
                state.__init__(self.config, batch.n_tokens)
            token_embeddings = forward(self.config, self.weights, batch, self.kernels, state)
            if output_value == "token_embeddings":
                for row, i in enumerate(chunk):
                    out[i] = token_embeddings[batch.cu_seqlens[row]:batch.cu_seqlens[row + 1]].copy()
            else:
                pooled = self._finish(pool(self.config, token_embeddings, batch, self.kernels),
                                      normalize_embeddings, truncate_dim)
                for row, i in enumerate(chunk):
                    out[i] = pooled[row]
            start = stop
        return out

    def _finish(self, pooled, normalize_embeddings, truncate_dim):
        """The modules after pooling, then sentence-transformers' encode() options, in its order."""
        if self.config.normalize:
            self.kernels.l2_normalize(pooled, pooled)
        if truncate_dim is not None:
            pooled = np.ascontiguousarray(pooled[:, :truncate_dim])
        if normalize_embeddings:
            self.kernels.l2_normalize(pooled, pooled)
        return pooled

    @staticmethod
    def _progress(show_progress_bar, total):
        if show_progress_bar is None:
            show_progress_bar = (total or 0) > WINDOW_TEXTS and sys.stderr.isatty()
        if not show_progress_bar:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc="Batches", unit="texts", file=sys.stderr)

    def warmup(self):
        """Compile (or load from the cache) every kernel this model uses, serial and parallel paths."""
        self.encode("warm up")
        long_text = " ".join(["word"] * (self.max_seq_length * 2))
        self.encode([long_text] * 8 + ["a short one"] * 64, batch_size=64)
        self.encode(long_text, output_value="token_embeddings")

    def similarity(self, embeddings1, embeddings2):
        """Pairwise similarity by ``similarity_fn_name``: ``(len(a), len(b))`` float32."""
        name = self.similarity_fn_name
        if name not in util.SIMILARITY_FUNCTIONS:
            raise ValueError(f"similarity_fn_name must be one of {list(util.SIMILARITY_FUNCTIONS)}, got {name!r}")
        return util.SIMILARITY_FUNCTIONS[name](embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1, embeddings2):
        """Similarity of row i of ``a`` with row i of ``b``: ``(n,)`` float32."""
        a, b = util._as_2d(embeddings1, "embeddings1"), util._as_2d(embeddings2, "embeddings2")
        if a.shape != b.shape:
            raise ValueError(f"pairwise similarity needs equal shapes, got {a.shape} and {b.shape}")
        return np.array([self.similarity(x, y)[0, 0] for x, y in zip(a, b)], dtype=np.float32)


def load(model=None, *, threads=None, backend=None, quantize=None, truncate_dim=None):
    """Load a sentence encoder; see :class:`SentenceTransformer` for the parameters."""
    return SentenceTransformer(model, threads=threads, backend=backend, quantize=quantize, truncate_dim=truncate_dim)
