"""The cross-encoder (reranker), a drop-in for ``sentence_transformers.CrossEncoder``.

A cross-encoder reads a query and a passage together, ``[CLS] query [SEP] passage [SEP]`` with
token types 0 then 1, through the same BERT body as the sentence encoder, and scores the pair
from [CLS] with a classification head (:class:`minilm_np.modules.ClassificationHead`).
"""
import numpy as np

from .body import BertBody, is_count, token_budget_chunks
from .encoder import TOKENS_PER_TEXT, WINDOW_TEXTS, SentenceTransformer
from .errors import UnsupportedModelError
from .finite import check_finite_rows
from .model import Batch
from .modules.activations import ACTIVATIONS, activate
from .modules.classifier import ClassificationHead

# Short names :func:`activation` accepts besides the torch class paths of ACTIVATIONS.
ACTIVATION_NAMES = {name.rsplit(".", 1)[-1].lower(): short for name, short in ACTIVATIONS.items()}


class Activation:
    """A score activation by name (``sigmoid``, ``identity``, ``tanh``, ``relu``, ``gelu``),
    applied to float32 numpy arrays as torch's module of that name is to tensors."""

    def __init__(self, name):
        self.name = name

    def __call__(self, scores):
        return activate(self.name, np.array(scores, dtype=np.float32))

    def __eq__(self, other):
        return isinstance(other, Activation) and other.name == self.name

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        return {"identity": "Identity", "gelu": "GELU", "relu": "ReLU"}.get(self.name, self.name.title()) + "()"


def activation(spec):
    """An :class:`Activation` (or the callable itself) for what sentence-transformers accepts.

    Parameters
    ----------
    spec : str, torch module, or callable
        A torch class path (``"torch.nn.modules.activation.Sigmoid"``) or short name
        (``"sigmoid"``, ``"Identity"``); an instance of one of those torch modules (recognised
        by its class, torch is never imported); or any callable taking and returning a float32
        numpy array.

    Raises
    ------
    ValueError
        An activation name or torch module minilm-np does not implement.
    """
    if isinstance(spec, Activation):
        return spec
    module = type(spec).__module__ or ""
    if isinstance(spec, str) or module.startswith("torch."):
        name = spec if isinstance(spec, str) else f"{module}.{type(spec).__qualname__}"
        short = ACTIVATIONS.get(name) or ACTIVATION_NAMES.get(name.rsplit(".", 1)[-1].lower())
        if short is None:
            raise ValueError(f"activation_fn {name!r} is not supported (supported: "
                             f"{', '.join(sorted(ACTIVATION_NAMES))}, their torch.nn modules, or a callable "
                             "on numpy arrays)")
        return Activation(short)
    if not callable(spec):
        raise TypeError(f"activation_fn must be a callable, a torch.nn activation or its name, got "
                        f"{type(spec).__name__}")
    return spec


def default_activation(config, num_labels):
    """The activation sentence-transformers 6 picks: config.json's
    ``sentence_transformers.activation_fn`` (or the older ``sbert_ce_default_activation_function``),
    else Sigmoid for one label and Identity otherwise."""
    saved = config.extra.get("sentence_transformers")
    path = saved.get("activation_fn") if isinstance(saved, dict) else None
    if path is None:
        path = config.extra.get("sbert_ce_default_activation_function")
    if isinstance(path, str) and path.startswith("torch."):  # sentence-transformers trusts torch paths only
        try:
            return activation(path)
        except ValueError:
            raise UnsupportedModelError(f"config.json: activation_fn {path!r} is not supported "
                                        f"(supported: {', '.join(ACTIVATIONS)})") from None
    return Activation("sigmoid" if num_labels == 1 else "identity")


def _softmax(x):
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _is_pair(item):
    return isinstance(item, (list, tuple)) or (isinstance(item, np.ndarray) and item.ndim == 1)


def _pairs(sentences):
    """``(pairs, single)``: the input as a list of (str, str), checking types; ``single`` when
    ``sentences`` was one pair."""
    if isinstance(sentences, np.ndarray) and sentences.dtype.kind in "UO":
        sentences = sentences.tolist()
    if isinstance(sentences, (str, bytes)) or not hasattr(sentences, "__iter__"):
        raise TypeError(f"sentences must be a pair (text_a, text_b) or a list of pairs, got "
                        f"{type(sentences).__name__}")
    if isinstance(sentences, (list, tuple)) and sentences and not _is_pair(sentences[0]):
        return [_check_pair(sentences, None)], True
    return [_check_pair(p, i) for i, p in enumerate(sentences)], False


def _check_pair(pair, index):
    where = "sentences" if index is None else f"sentences[{index}]"
    if not _is_pair(pair) or len(pair) != 2:
        got = f"{len(pair)} items" if _is_pair(pair) else type(pair).__name__
        raise ValueError(f"{where} must be a pair of texts (text_a, text_b), got {got}")
    for side, text in enumerate(pair):
        if not isinstance(text, str):
            raise TypeError(f"{where}[{side}] is {type(text).__name__}, expected str"
                            + (" (decode bytes first)" if isinstance(text, (bytes, bytearray)) else ""))
    return pair[0], pair[1]


class CrossEncoder(BertBody):
    """A BERT cross-encoder, a drop-in for ``sentence_transformers.CrossEncoder``.

    Parameters
    ----------
    model_name_or_path : str
        A ``BertForSequenceClassification`` directory (float32, or int8 from ``minilm-np
        quantize``) or Hugging Face hub id.
    threads, backend, quantize
        As :class:`minilm_np.SentenceTransformer`.
    max_length : int or None
        Tokens per pair, [CLS] and both [SEP] included; default the model's
        (sentence_bert_config.json, else tokenizer_config.json's ``model_max_length``, else
        the position table's size).
    device : str or None
        Only ``None`` or ``"cpu"``.
    activation_fn : callable, torch activation or its name, or None
        Applied to the logits by :meth:`predict` and :meth:`rank`; default as
        sentence-transformers 6 picks it (:func:`default_activation`).

    Raises
    ------
    UnsupportedModelError
        The directory is a sentence embedding model (or not a BERT sequence classifier).
    """
    CROSS_ENCODER = True

    def __init__(self, model_name_or_path, *, threads=None, backend=None, quantize=None, max_length=None,
                 device=None, activation_fn=None):
        if device not in (None, "cpu"):
            raise ValueError(f"device {device!r} is not supported: minilm-np runs on the CPU only")
        super().__init__(model_name_or_path, threads, backend, quantize)
        self.head = ClassificationHead.from_folder(self.model_dir, "", self.config)
        if max_length is not None:
            self.max_seq_length = max_length
        self.activation_fn = activation(activation_fn) if activation_fn is not None \
            else default_activation(self.config, self.num_labels)

    def __reduce__(self):
        """Pickle by reference, as :meth:`minilm_np.SentenceTransformer.__reduce__` does."""
        quantize = self.quantization if self.config.quantization is None else None
        args = (self.model_dir, self._threads_arg, self.backend, quantize)
        return _unpickle, args, {"max_seq_length": self.max_seq_length, "activation_fn": self.activation_fn}

    def __setstate__(self, state):
        for name, value in state.items():
            setattr(self, name, value)

    def __repr__(self):
        return (f"CrossEncoder({self.source}, num_labels={self.num_labels}, activation_fn={self.activation_fn!r}, "
                f"backend={self.backend}, quantize={self.quantization}, threads={self.threads})")

    @property
    def num_labels(self) -> int:
        """Scores per pair (config.json's ``id2label`` size)."""
        return self.head.num_labels

    @property
    def max_length(self) -> int:
        """The same as ``max_seq_length`` (sentence-transformers' older name)."""
        return self.max_seq_length

    @max_length.setter
    def max_length(self, value: int) -> None:
        self.max_seq_length = value

    def tokenize(self, sentences):
        """Padded token ids of pairs, as the model reads them.

        Parameters
        ----------
        sentences : pair or list of pairs of str

        Returns
        -------
        dict with ``input_ids``, ``attention_mask``, ``token_type_ids``: int64 ``(n, max_len)``
        padded on the right with 0 to the longest pair; ``attention_mask.sum()`` is the number
        of tokens a :meth:`predict` of the same pairs runs.
        """
        pairs, _ = _pairs(sentences)
        ids, types = self._tokenizer.encode_pairs(pairs)
        width = max((len(i) for i in ids), default=0)
        out = {name: np.zeros((len(ids), width), np.int64) for name in ("input_ids", "attention_mask",
                                                                        "token_type_ids")}
        for row, (seq, typ) in enumerate(zip(ids, types)):
            out["input_ids"][row, :len(seq)] = seq
            out["attention_mask"][row, :len(seq)] = 1
            out["token_type_ids"][row, :len(seq)] = typ
        return out

    def preprocess(self, sentences):
        """The same as :meth:`tokenize` (sentence-transformers >= 6's name)."""
        return self.tokenize(sentences)

    def predict(self, sentences, batch_size=32, show_progress_bar=None, activation_fn=None, apply_softmax=False,
                convert_to_numpy=True, convert_to_tensor=False, device=None, **kwargs):
        """Score sentence pairs.

        Parameters
        ----------
        sentences : (str, str), or a list / tuple / 2-D array of such pairs
        batch_size : int
            Pairs per forward pass at 48 tokens each; passes are packed by tokens (up to
            ``batch_size * 48``, at least one pair). Results do not depend on it: each pair's
            score is bitwise the same alone or in any batch.
        show_progress_bar : bool or None
            A bar on stderr counted in pairs (None: for more than 2,048 pairs on a terminal).
        activation_fn : callable, torch activation or its name, or None
            Applied to the logits; None: the model's :attr:`activation_fn`. Pass
            ``"identity"`` (or ``torch.nn.Identity()``) for raw logits.
        apply_softmax : bool
            With more than one label: softmax over the labels, after the activation.
        convert_to_numpy : bool
            True: one float32 array; False: a list of per-pair arrays (numpy scalars for one label).
        convert_to_tensor : bool
            Must be False: minilm-np never imports torch.

        Returns
        -------
        ndarray of float32, ``(n,)`` for one label, ``(n, num_labels)`` otherwise; for a
        single pair, a float32 scalar (one label) or ``(num_labels,)``.

        Raises
        ------
        TypeError
            A text is not a str (the message names the pair and side), or an unknown keyword.
        ValueError
            An item is not a pair, or an argument is out of range.
        """
        if convert_to_tensor:
            raise ValueError("convert_to_tensor=True is not supported: minilm-np returns numpy arrays "
                             "and never imports torch")
        if device not in (None, "cpu"):
            raise ValueError(f"device {device!r} is not supported: minilm-np runs on the CPU only")
        if not is_count(batch_size):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if kwargs:
            raise TypeError(f"predict() got unsupported keyword arguments {sorted(kwargs)}")
        pairs, single = _pairs(sentences)
        fn = self.activation_fn if activation_fn is None else activation(activation_fn)
        scores = self._logits(pairs, batch_size, show_progress_bar)
        scores = np.asarray(fn(scores), dtype=np.float32)
        if self.num_labels == 1 and scores.ndim > 1:
            scores = scores[:, 0]
        if apply_softmax and scores.ndim > 1:
            scores = _softmax(scores)
        if single:
            return scores[0]
        return scores if convert_to_numpy else list(scores)

    def rank(self, query, documents, top_k=None, return_documents=False, batch_size=32, show_progress_bar=None,
             activation_fn=None):
        """Score each document against ``query`` and sort them, best first.

        Parameters
        ----------
        query : str
        documents : list of str
        top_k : int or None
            Keep the best ``top_k`` (None: all).
        return_documents : bool
            Add each document's ``text``.

        Returns
        -------
        list of dict ``{"corpus_id": int, "score": float[, "text": str]}``, by score descending
        (ties in input order).

        Raises
        ------
        ValueError
            The model has more than one label (use :meth:`predict`).
        """
        if self.num_labels != 1:
            raise ValueError("CrossEncoder.rank() only works for models with num_labels=1. "
                             "Consider using CrossEncoder.predict() with input pairs instead.")
        if not isinstance(query, str):
            raise TypeError(f"query is {type(query).__name__}, expected str")
        if isinstance(documents, str) or not hasattr(documents, "__iter__"):
            raise TypeError(f"documents must be a list of str, got {type(documents).__name__}")
        documents = list(documents)
        for i, doc in enumerate(documents):
            if not isinstance(doc, str):
                raise TypeError(f"documents[{i}] is {type(doc).__name__}, expected str")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool)):
            raise TypeError(f"top_k must be an int or None, got {type(top_k).__name__}")
        pairs = [[query, doc] for doc in documents]
        scores = self.predict(pairs, batch_size=batch_size, show_progress_bar=show_progress_bar,
                              activation_fn=activation_fn) if pairs else np.zeros(0, np.float32)
        results = []
        for i, score in enumerate(scores.tolist()):
            results.append({"corpus_id": i, "score": score})
            if return_documents:
                results[-1]["text"] = documents[i]
        results.sort(key=lambda hit: hit["score"], reverse=True)
        return results[:top_k]

    def _logits(self, pairs, batch_size, show_progress_bar):
        """Raw logits ``(len(pairs), num_labels)`` float32, input order."""
        self._prepare_call()
        out = np.empty((len(pairs), self.num_labels), np.float32)
        progress = SentenceTransformer._progress(show_progress_bar, len(pairs), desc="Scoring")
        budget = max(batch_size * TOKENS_PER_TEXT, self.max_seq_length)
        state = None
        for start in range(0, len(pairs), WINDOW_TEXTS):
            ids, types = self._tokenizer.encode_pairs(pairs[start:start + WINDOW_TEXTS])
            lengths = [len(i) for i in ids]
            if state is None:
                state = self._new_state(min(budget, sum(lengths)))
            for chunk in token_budget_chunks(lengths, budget):
                batch = Batch.pack([ids[i] for i in chunk], [types[i] for i in chunk])
                logits = self.head(self._forward(batch, state), batch.cu_seqlens, self.kernels)
                check_finite_rows(logits, lambda row: start + chunk[row])  # no NaN score leaves predict
                out[[start + i for i in chunk]] = logits
                if progress is not None:
                    progress.update(len(chunk))
        if progress is not None:
            progress.close()
        return out

    def warmup(self):
        """Compile (or load from the cache) every kernel this model uses, serial and parallel paths."""
        long_text = " ".join(["word"] * (self.max_seq_length * 2))
        self.predict(("warm", "up"))
        self.predict([("a query", long_text)] * 8 + [("a query", "a short one")] * 64, batch_size=64)


def _unpickle(model_dir, threads, backend, quantize):
    return CrossEncoder(model_dir, threads=threads, backend=backend, quantize=quantize)

