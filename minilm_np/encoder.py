"""The user-facing encoder, with sentence-transformers' names, defaults and semantics."""
import itertools
import os
import sys

import numpy as np

from . import util
from .body import BertBody, is_count, token_budget_chunks
from .finite import check_finite_rows
from .model import Batch
from .modules.pipeline import load_modules

# A forward pass packs up to batch_size * TOKENS_PER_TEXT tokens (at least one text), so a
# batch of short texts still gives the GEMMs enough rows; batch_size keeps bounding memory.
# Not more: 1,536 tokens a pass (batch 32) measured fastest, 4,096 slower (9ed4027).
TOKENS_PER_TEXT = 48
# Texts are tokenised and sorted by length this many at a time: streaming with bounded memory.
WINDOW_TEXTS = 2048
OUTPUT_VALUES = ("sentence_embedding", "token_embeddings")
SIMILARITY_FN_NAMES = ("cosine", "dot", "euclidean", "manhattan")
# kept under its old name for callers of the encoder module
_is_count = is_count


def _check_text(text, index, where="sentences[{}]"):
    """``text`` if it is a str, else a TypeError naming it by ``where.format(index)``."""
    if not isinstance(text, str):
        raise TypeError(f"{where.format(index)} is {type(text).__name__}, expected str"
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


class SentenceTransformer(BertBody):
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
        else ``$OMP_NUM_THREADS`` (as Ray and Spark set it for a worker), else the cores this
        process may run on.
    backend : {"numba", "numpy"} or None
        Kernel backend; default ``$MINILM_NP_BACKEND``, else numba.
    quantize : {None, "w8", "w8a16", "w8a8"}
        int8 weight quantisation applied at load time.
    truncate_dim : int or None
        Default Matryoshka truncation of the sentence embeddings.

    Attributes
    ----------
    head : minilm_np.modules.Pipeline
        The modules after the Transformer (Pooling, Dense..., Normalize), from modules.json.
    """

    def __init__(self, model_name_or_path=None, device=None, *, threads=None, backend=None, quantize=None,
                 truncate_dim=None):
        if device not in (None, "cpu"):
            raise ValueError(f"device {device!r} is not supported: minilm-np runs on the CPU only")
        super().__init__(model_name_or_path, threads, backend, quantize)
        # Pooling, Dense, Normalize (modules.json); Dense weights stay float32 whatever ``quantize`` says.
        self.head = load_modules(self.model_dir, self.config.hidden_size)
        if truncate_dim is not None and not _is_count(truncate_dim):
            raise ValueError(f"truncate_dim must be a positive integer or None, got {truncate_dim!r}")
        self.truncate_dim = truncate_dim
        st_config = self._read_st_config()
        saved = st_config.get("similarity_fn_name")
        self.similarity_fn_name = saved if saved in SIMILARITY_FN_NAMES else "cosine"
        prompts = st_config.get("prompts")
        self.prompts = {str(k): str(v) for k, v in prompts.items()} if isinstance(prompts, dict) else {}
        self.default_prompt_name = st_config.get("default_prompt_name")

    def __reduce__(self):
        """Pickle by reference: the model directory, the load arguments and the settable attributes.

        The weights are a mapped file and the kernels a module, so a pickle (multiprocessing's
        spawn, joblib) does not carry them: the receiving process loads the same directory
        again, which must exist there. In-memory quantisation is redone from the same fixed
        calibration texts, so the embeddings are the same.
        """
        quantize = self.quantization if self.config.quantization is None else None
        args = (self.model_dir, self.source, self._threads_arg, self.backend, quantize)
        state = {"truncate_dim": self.truncate_dim, "max_seq_length": self.max_seq_length,
                 "similarity_fn_name": self.similarity_fn_name, "prompts": dict(self.prompts),
                 "default_prompt_name": self.default_prompt_name}
        return _unpickle, args, state

    def __setstate__(self, state):
        for name, value in state.items():
            setattr(self, name, value)

    def _read_st_config(self):
        """config_sentence_transformers.json as a dict ({} when absent or unreadable)."""
        import json

        path = os.path.join(self.model_dir, "config_sentence_transformers.json")
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    @property
    def similarity_fn_name(self) -> str:
        """The function :meth:`similarity` uses: ``cosine``, ``dot``, ``euclidean`` or ``manhattan``.

        Read from config_sentence_transformers.json, default ``cosine``; settable, as in
        sentence-transformers (a ``SimilarityFunction`` enum member is accepted too).
        """
        return self._similarity_fn_name

    @similarity_fn_name.setter
    def similarity_fn_name(self, value) -> None:
        value = getattr(value, "value", value)  # sentence_transformers.SimilarityFunction
        if value is None:
            value = "cosine"
        if value not in SIMILARITY_FN_NAMES:
            raise ValueError(f"similarity_fn_name must be one of {list(SIMILARITY_FN_NAMES)}, got {value!r}")
        self._similarity_fn_name = value

    def __repr__(self):
        return (f"SentenceTransformer({self.source}, dim={self.get_sentence_embedding_dimension()}, "
                f"backend={self.backend}, quantize={self.quantization}, threads={self.threads})")

    def get_sentence_embedding_dimension(self) -> int:
        """Width of the sentence embeddings (after the Dense modules and ``truncate_dim``)."""
        dim = self.head.get_sentence_embedding_dimension()
        return min(dim, self.truncate_dim) if self.truncate_dim else dim

    def get_embedding_dimension(self) -> int:
        """The same as :meth:`get_sentence_embedding_dimension` (sentence-transformers >= 6's name)."""
        return self.get_sentence_embedding_dimension()

    def tokenize(self, texts):
        """Padded token ids like sentence-transformers' ``tokenize`` / ``preprocess``.

        Parameters
        ----------
        texts : str or iterable of str

        Returns
        -------
        dict with ``input_ids``, ``attention_mask``, ``token_type_ids``: int64 ``(n, max_len)``,
        padded on the right to the longest text (``input_ids`` with the tokenizer's padding
        token, ``[PAD]`` 0 or ``<pad>`` 1; the others with 0), truncated at ``max_seq_length``.

        Notes
        -----
        sentence-transformers returns torch tensors; these are numpy arrays with the same values.
        """
        ids = self._tokenizer.encode(list(_texts([texts] if isinstance(texts, str) else texts)))
        width = max((len(i) for i in ids), default=0)
        input_ids = np.full((len(ids), width), self._tokenizer.pad_token_id, np.int64)
        mask = np.zeros((len(ids), width), np.int64)
        for row, seq in enumerate(ids):
            input_ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}

    def preprocess(self, inputs):
        """The same as :meth:`tokenize` (sentence-transformers >= 6's name)."""
        return self.tokenize(inputs)

    def encode(self, sentences, prompt_name=None, prompt=None, batch_size=32, show_progress_bar=None,
               output_value="sentence_embedding", precision="float32", convert_to_numpy=True,
               convert_to_tensor=False, device=None, normalize_embeddings=False, truncate_dim=None, **kwargs):
        """Embed one text or many.

        Parameters
        ----------
        sentences : str, or an iterable of str (list, tuple, 1-D numpy array, generator...)
            Iterables are streamed: tokenised, sorted by length and embedded a window at a time.
        prompt_name : str or None
            A key of the model's ``prompts`` (config_sentence_transformers.json); its text is
            put before each sentence. Default: the model's ``default_prompt_name``, if any.
        prompt : str or None
            Text put before each sentence (wins over ``prompt_name``).
        batch_size : int
            Texts per forward pass at 48 tokens each; forward passes are packed by tokens (up
            to ``batch_size * 48``, at least one text), so many short texts share one pass.
            Results do not depend on it: every text's vector is bitwise the same alone or in
            any batch.
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
            A text is not a str (the message names its index and type), or an unknown keyword.
        ValueError
            An argument is out of range.
        minilm_np.NonFiniteOutputError
            A text's output holds a NaN or an infinity (the message names the text's index);
            no vector that is not finite is ever returned.

        Notes
        -----
        Differences from sentence-transformers: results are always numpy (its
        ``convert_to_numpy=False`` and ``output_value="token_embeddings"`` give torch tensors);
        an empty input gives a ``(0, dim)`` array (theirs: ``(0,)``); ``precision`` other than
        float32, ``convert_to_tensor``, ``output_value=None`` and multi-process ``pool`` are not
        supported; the progress bar counts texts, not batches.

        Threads: one model may be shared by many threads; each call keeps its own scratch
        buffers, and the vectors are bitwise those of serial calls. The GIL is released in
        tokenisation (Rust) and in the GEMMs and other kernels (numba ``nogil``; BLAS on the numpy
        backend), so calls from several threads overlap. numba's pool runs on OpenMP where it is
        available; on its ``workqueue`` fallback, which aborts the process on concurrent parallel
        launches, whole forward passes take a process-wide lock. ``threads=`` is each call's
        intra-op parallelism (numba's setting is applied per calling thread at every call; at
        ``threads=1`` the texts are tokenised on the calling thread too), so with N caller threads
        use ``threads=1`` to avoid oversubscribing the cores.
        """
        if convert_to_tensor:
            raise ValueError("convert_to_tensor=True is not supported: minilm-np returns numpy arrays "
                             "and never imports torch")
        if precision != "float32":
            raise ValueError(f"precision {precision!r} is not supported; use precision='float32' "
                             "(for int8 weights load the model with quantize=...)")
        if device not in (None, "cpu"):
            raise ValueError(f"device {device!r} is not supported: minilm-np runs on the CPU only")
        if not _is_count(batch_size):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if output_value not in OUTPUT_VALUES:
            raise ValueError(f"output_value must be one of {OUTPUT_VALUES}, got {output_value!r}")
        if kwargs:
            raise TypeError(f"encode() got unsupported keyword arguments {sorted(kwargs)}")
        prompt = self._resolve_prompt(prompt, prompt_name)
        truncate_dim = self.truncate_dim if truncate_dim is None else truncate_dim
        if truncate_dim is not None and not _is_count(truncate_dim):
            raise ValueError(f"truncate_dim must be a positive integer or None, got {truncate_dim!r}")
        self._prepare_call()

        single = isinstance(sentences, str)
        texts = iter([sentences]) if single else _texts(sentences)
        if prompt:
            texts = (prompt + text for text in texts)
        total = len(sentences) if not single and hasattr(sentences, "__len__") else None
        progress = self._progress(show_progress_bar, total)
        budget = max(batch_size * TOKENS_PER_TEXT, self.max_seq_length)
        state = None
        parts = []
        first = 0  # index of the window's first text in ``sentences``
        while True:
            window = list(itertools.islice(texts, WINDOW_TEXTS))
            if not window:
                break
            ids = self._tokenizer.encode(window, parallel=self.threads > 1)  # threads=1: this thread only
            if state is None:
                state = self._new_state(min(budget, sum(len(i) for i in ids)))
            vectors = self._embed_window(ids, budget, state, output_value, normalize_embeddings, truncate_dim,
                                         progress, first)
            first += len(window)
            if output_value == "token_embeddings":
                parts.extend(vectors)
            elif len(vectors) == 1:
                parts.append(vectors[0][None])
            else:  # one (window, dim) array per window: 100,000 row views would cost more than the rows
                parts.append(np.stack(vectors))
        if progress is not None:
            progress.close()

        if output_value == "token_embeddings":
            return parts[0] if single else parts
        dim = self.head.get_sentence_embedding_dimension()
        dim = dim if truncate_dim is None else min(truncate_dim, dim)
        embeddings = (parts[0] if len(parts) == 1 else np.concatenate(parts)) if parts \
            else np.zeros((0, dim), np.float32)
        if single:
            return embeddings[0]
        return embeddings if convert_to_numpy else list(embeddings)

    def _resolve_prompt(self, prompt, prompt_name):
        """The prompt text to put before each sentence, or None (sentence-transformers' rules)."""
        if prompt is None and prompt_name is not None:
            if prompt_name not in self.prompts:
                raise ValueError(f"prompt_name {prompt_name!r} is not one of the model's prompts "
                                 f"{list(self.prompts)}")
            prompt = self.prompts[prompt_name]
        elif prompt is None and self.default_prompt_name is not None:
            prompt = self.prompts.get(self.default_prompt_name)
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        if prompt and not self.head.pooling.include_prompt:
            raise ValueError("this model's Pooling excludes prompt tokens (include_prompt: false), "
                             "which minilm-np does not implement")
        return prompt

    def _embed_window(self, ids, budget, state, output_value, normalize_embeddings, truncate_dim, progress=None,
                      first=0):
        """Embed one window of tokenised texts, longest first, in token-budget chunks; input order out.

        Raises :class:`NonFiniteOutputError` naming text ``first + i`` when what would be returned
        for text ``i`` of the window (its token vectors or its sentence vector) holds a NaN or an
        infinity.  Only what is returned is checked: a pass's sentence vectors are a few thousand
        numbers, its token vectors hundreds of thousands.
        """
        out = [None] * len(ids)
        for chunk in token_budget_chunks([len(i) for i in ids], budget):
            batch = Batch.pack([ids[i] for i in chunk])
            token_embeddings = self._forward(batch, state)
            if output_value == "token_embeddings":
                check_finite_rows(token_embeddings, lambda row: first + chunk[
                    int(np.searchsorted(batch.cu_seqlens, row, side="right")) - 1])
                for row, i in enumerate(chunk):
                    out[i] = token_embeddings[batch.cu_seqlens[row]:batch.cu_seqlens[row + 1]].copy()
            else:
                pooled = self._apply_options(self.head(token_embeddings, batch.cu_seqlens, self.kernels),
                                             normalize_embeddings, truncate_dim)
                check_finite_rows(pooled, lambda row: first + chunk[row])
                for row, i in enumerate(chunk):
                    out[i] = pooled[row]
            if progress is not None:
                progress.update(len(chunk))
        return out

    def _apply_options(self, pooled, normalize_embeddings, truncate_dim):
        """encode()'s ``truncate_dim`` then ``normalize_embeddings`` (sentence-transformers' order) on
        the modules' output (:attr:`head`), row by row (the server applies them per request to rows
        embedded together): float32 ``(n, dim)``."""
        if truncate_dim is not None:
            pooled = np.ascontiguousarray(pooled[:, :truncate_dim])
        if normalize_embeddings:
            self.kernels.l2_normalize(pooled, pooled)
        return pooled

    @staticmethod
    def _progress(show_progress_bar, total, desc="Encoding"):
        if show_progress_bar is None:
            show_progress_bar = (total or 0) > WINDOW_TEXTS and sys.stderr.isatty()
        if not show_progress_bar:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="text", file=sys.stderr)

    def warmup(self):
        """Compile (or load from the cache) every kernel this model uses, serial and parallel paths."""
        self.encode("a")  # three tokens: the serial paths, even where a model's vocabulary splits "warm up" finely
        self.encode("warm up")
        long_text = " ".join(["word"] * (self.max_seq_length * 2))
        self.encode([long_text] * 8 + ["a short one"] * 64, batch_size=64)
        self.encode(long_text, output_value="token_embeddings")

    def similarity(self, embeddings1, embeddings2):
        """Similarity of every row of ``embeddings1`` with every row of ``embeddings2`` by
        :attr:`similarity_fn_name`: ``(len(a), len(b))`` float32 numpy (sentence-transformers:
        a torch tensor with the same values)."""
        return util.SIMILARITY_FUNCTIONS[self.similarity_fn_name](embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1, embeddings2):
        """Similarity of row i of ``embeddings1`` with row i of ``embeddings2``: ``(n,)`` float32."""
        return util.PAIRWISE_FUNCTIONS[self.similarity_fn_name](embeddings1, embeddings2)


def _unpickle(model_dir, source, threads, backend, quantize):
    model = SentenceTransformer(model_dir, threads=threads, backend=backend, quantize=quantize)
    model.source = source
    return model


def load(model=None, *, threads=None, backend=None, quantize=None, truncate_dim=None):
    """Load a sentence encoder; see :class:`SentenceTransformer` for the parameters."""
    return SentenceTransformer(model, threads=threads, backend=backend, quantize=quantize, truncate_dim=truncate_dim)
