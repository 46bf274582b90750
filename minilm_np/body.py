"""The BERT body that both model classes load and run: files, tokenizer, weights, threads, int8.

:class:`minilm_np.SentenceTransformer` (pooling and modules after it) and
:class:`minilm_np.CrossEncoder` (a classification head on [CLS]) are each a :class:`BertBody`
plus what they do with its token embeddings.
"""
import contextlib
import numbers
import os
import threading

from . import _threads
from .checkpoint import safetensors_path
from .config import architecture, read_config
from .errors import UnsupportedModelError
from .locate import resolve_model_dir
from .model import RunState, forward
from .tokenizer import TextTokenizer
from .weights import load_weights

# numba's workqueue threading layer (the fallback where OpenMP is missing, see
# kernels/_numba_env.py) aborts the whole process when two threads launch parallel kernels at
# once, so forward passes on the numba backend take this process-wide lock unless the pool
# runs on a thread-safe layer.
_PARALLEL_LAUNCH_LOCK = threading.Lock()
THREADSAFE_LAYERS = ("tbb", "omp")


def _forward_lock(uses_numba):
    """The lock a forward pass holds: the launch lock for numba's workqueue layer, else none."""
    if not uses_numba:
        return contextlib.nullcontext()
    from .kernels import pool

    if pool.start() in THREADSAFE_LAYERS:
        return contextlib.nullcontext()
    return _PARALLEL_LAUNCH_LOCK


def is_count(value):
    """A positive integer (Python or numpy), not a bool."""
    if type(value) is int:  # the common case, without the ABC check (microseconds a call)
        return value >= 1
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def token_budget_chunks(lengths, budget):
    """Indices of sequences, longest first, in runs of at most ``budget`` tokens (at least one each).

    Parameters
    ----------
    lengths : sequence of int
    budget : int

    Returns
    -------
    list of lists of int
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    chunks, start = [], 0
    while start < len(order):
        stop, tokens = start, 0
        while stop < len(order) and (stop == start or tokens + lengths[order[stop]] <= budget):
            tokens += lengths[order[stop]]
            stop += 1
        chunks.append(order[start:stop])
        start = stop
    return chunks


class BertBody:
    """Load a BERT model directory's body: config, tokenizer, weights (float32 or int8), kernels.

    Subclasses set :attr:`CROSS_ENCODER`: whether they expect a classification head, so that a
    directory of the other kind fails with a message naming what its files say it is.

    Parameters
    ----------
    model_name_or_path, threads, backend, quantize
        As :class:`minilm_np.SentenceTransformer` documents them.
    """
    CROSS_ENCODER = False

    def __init__(self, model_name_or_path, threads=None, backend=None, quantize=None):
        from .kernels.backend import backend_name, load_backend

        self.threads = _threads.resolve_threads(threads)
        self._threads_arg = threads  # a pickle loads with the setting, not this machine's core count
        self.model_dir, self.source = resolve_model_dir(model_name_or_path)
        safetensors_path(self.model_dir)  # first: a pickle-only directory gets the conversion hint
        self.config = read_config(self.model_dir)
        self._check_kind()
        self.kernels = load_backend(backend)
        self.backend = backend_name(self.kernels)
        self.weights = self._load_weights(quantize)
        self._tokenizer = TextTokenizer.for_model(self.model_dir, self.config)
        _threads.apply_threads(self.threads, self.backend == "numba")
        if quantize is not None and self.config.quantization is None:
            from .quantize import quantize_model  # calibrate, then quantise the float32 weights

            self.weights = quantize_model(self.config, self.weights, self._tokenizer, quantize, self.backend)
        self.quantization = quantize or self.config.quantization
        # int8 GEMMs are numba-parallel kernels whichever backend runs the rest.
        self._forward_lock = _forward_lock(self.backend == "numba" or quantize is not None)

    def _load_weights(self, quantize):
        """float32 weights (packed for the numba GEMM unless they are about to be quantised), or
        a quantised directory's int8 weights.

        Raises
        ------
        ValueError
            ``quantize`` names an unknown mode, or another mode than a quantised directory's.
        """
        stored = self.config.quantization
        if stored is None:
            return load_weights(self.model_dir, self.config, pack=self.backend == "numba" and quantize is None)
        from .quantize import check_mode, read_quantized

        if quantize is not None and quantize != stored:
            check_mode(quantize)
            raise ValueError(f"{self.model_dir} holds a {stored!r} quantized model; it cannot be re-quantized "
                             f"to {quantize!r}. Load it with quantize=None (or {stored!r}), or quantize the "
                             "float32 model instead")
        return read_quantized(self.model_dir, self.config, self.backend)

    def _check_kind(self):
        path = os.path.join(self.model_dir, "config.json")
        name = architecture(self.config.extra)
        if self.CROSS_ENCODER and self.config.num_labels is None:
            raise UnsupportedModelError(
                f"{path}: this is a sentence embedding model (architecture {name!r}, no classification head), "
                "not a cross-encoder: load it with minilm_np.SentenceTransformer (or minilm_np.load)")
        if not self.CROSS_ENCODER and self.config.num_labels is not None:
            raise UnsupportedModelError(
                f"{path}: this is a cross-encoder (architecture {name!r}, {self.config.num_labels} "
                f"label{'s' if self.config.num_labels > 1 else ''}): it scores text pairs and gives no "
                "sentence embeddings; load it with minilm_np.CrossEncoder")

    @property
    def tokenizer(self):
        """The model's ``tokenizers.Tokenizer`` (padding off, truncation at ``max_seq_length``)."""
        return self._tokenizer.tokenizer

    @property
    def max_seq_length(self) -> int:
        """Tokens per input after truncation, the special tokens (``[CLS]``/``[SEP]``, ``<s>``/``</s>``) included."""
        return self._tokenizer.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        limit = self.config.max_position_embeddings
        if not is_count(value) or not 2 <= value <= limit:
            raise ValueError(f"max_seq_length must be an integer in [2, {limit}] (the model's position "
                             f"table has {limit} rows), got {value!r}")
        self._tokenizer.max_seq_length = int(value)

    def _prepare_call(self):
        """Per call: numba's thread count is per calling thread."""
        if self.backend == "numba":
            _threads.set_numba_threads(self.threads)

    def _forward(self, batch, state):
        """Token embeddings ``(batch.n_tokens, hidden)`` float32 of ``batch``: a view of the state's
        buffer, valid until the next call. ``state`` (a :class:`~minilm_np.model.RunState`) grows
        to fit the batch."""
        if batch.n_tokens > state.capacity:
            state.__init__(self.config, batch.n_tokens)
        with self._forward_lock:
            return forward(self.config, self.weights, batch, self.kernels, state)

    def _new_state(self, n_tokens):
        return RunState(self.config, n_tokens)
