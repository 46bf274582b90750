"""``Embedder``: a picklable batch function for Ray Data, Dask and Spark workers.

It carries the model's location and settings, never its weights: each worker process loads
the model once, on its first batch, and every later batch (and every other ``Embedder`` with
the same model settings in that process) reuses it.
"""
import os
import sys
import threading

import numpy as np

from . import _threads
from .encoder import _check_text, _is_count, load

QUANTIZE_MODES = (None, "w8", "w8a16", "w8a8")

# One loaded model per (model, threads, quantize) in this process: a Dask worker unpickles the
# Embedder for every task, a Spark worker for every partition, and neither should reload.
_LOADED = {}
_LOADING = threading.Lock()


def _shared_model(model, threads, quantize):
    key = (model, threads, quantize)
    loaded = _LOADED.get(key)
    if loaded is None:
        with _LOADING:
            loaded = _LOADED.get(key)
            if loaded is None:
                # The tokenizers library sizes its thread pool (used at threads > 1) once, on first
                # use, to the host's cores; in a fresh worker this caps it at the worker's share.
                os.environ.setdefault("RAYON_NUM_THREADS", str(_threads.resolve_threads(threads)))
                loaded = _LOADED[key] = load(model, threads=threads, quantize=quantize)
    return loaded


def _missing(value):
    return value is None or (isinstance(value, float) and value != value) or type(value).__name__ == "NAType"


class Embedder:
    """Add an embedding column to a batch of rows: a callable for ``map_batches`` / ``map_partitions``
    / ``mapInPandas``.

    Parameters
    ----------
    model : str, os.PathLike or None
        A model directory (as workers see it: a shared file system, or a directory shipped with
        the job, e.g. ``minilm-np quantize`` output), a hub id, or None for all-MiniLM-L6-v2.
    column : str
        The column of texts.
    output_column : str
        The column added: float32 vectors of the model's width.
    threads : int or None
        Threads per call. Default: the CPUs the engine gave this worker (``$OMP_NUM_THREADS``, which
        Ray sets to an actor's ``num_cpus``, Spark to ``spark.task.cpus`` and a Dask nanny to 1,
        then the process's CPU affinity), never the whole host in every worker.
    quantize : {None, "w8", "w8a16", "w8a8"}
        int8 mode applied at load time.
    batch_size : int
        Texts per forward pass (as in ``encode``; the vectors do not depend on it).
    normalize_embeddings : bool or None
        None: as the model says (its Normalize module). True: unit-length vectors. False with a
        model that normalises itself is an error.

    Notes
    -----
    Batches in and out, the same type:

    - ``dict`` of numpy arrays (Ray Data's default ``batch_format``): the column added is a
      float32 ``(n, dim)`` array.
    - ``pandas.DataFrame`` (Dask, Spark's ``mapInPandas``, Ray's ``"pandas"``): an object column
      of float32 ``(dim,)`` arrays (Spark schema ``array<float>``).
    - ``pyarrow.Table`` / ``pyarrow.RecordBatch``: a ``fixed_size_list<float32>[dim]`` column.

    Rows keep their order and every other column. A text that is not a str (None, a number,
    bytes) raises the TypeError ``encode`` raises, naming the column and the row; a missing value
    (None, NaN, NA) is named as missing.
    """

    def __init__(self, model=None, *, column="text", output_column="embedding", threads=None, quantize=None,
                 batch_size=32, normalize_embeddings=None):
        for name, value in (("column", column), ("output_column", output_column)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty str, got {value!r}")
        if column == output_column:
            raise ValueError(f"output_column must differ from column, both are {column!r}")
        if threads is not None:
            _threads.resolve_threads(threads)
        if quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {list(QUANTIZE_MODES)}, got {quantize!r}")
        if not _is_count(batch_size):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if normalize_embeddings not in (None, True, False):
            raise ValueError(f"normalize_embeddings must be None, True or False, got {normalize_embeddings!r}")
        self.model = os.fspath(model) if isinstance(model, os.PathLike) else model
        self.column = column
        self.output_column = output_column
        self.threads = None if threads is None else int(threads)
        self.quantize = quantize
        self.batch_size = int(batch_size)
        self.normalize_embeddings = normalize_embeddings

    def __repr__(self):
        return (f"Embedder({self.model!r}, column={self.column!r}, output_column={self.output_column!r}, "
                f"threads={self.threads}, quantize={self.quantize}, batch_size={self.batch_size}, "
                f"normalize_embeddings={self.normalize_embeddings})")

    def loaded_model(self):
        """The :class:`~minilm_np.SentenceTransformer` this process shares for these settings (loaded
        on first use)."""
        model = _shared_model(self.model, self.threads, self.quantize)
        if self.normalize_embeddings is False and model.head.normalizes:
            raise ValueError("normalize_embeddings=False: this model normalises its vectors itself "
                             "(Normalize in modules.json)")
        return model

    def embed(self, texts):
        """float32 ``(len(texts), dim)`` vectors of a list of str."""
        return self.loaded_model().encode(texts, batch_size=self.batch_size,
                                          normalize_embeddings=bool(self.normalize_embeddings))

    def __call__(self, batch):
        """``batch`` with :attr:`output_column` added; see the class notes for the types."""
        if isinstance(batch, dict):
            return self._numpy_batch(batch)
        pandas, pyarrow = sys.modules.get("pandas"), sys.modules.get("pyarrow")
        if pandas is not None and isinstance(batch, pandas.DataFrame):
            return self._pandas_batch(batch)
        if pyarrow is not None and isinstance(batch, (pyarrow.Table, pyarrow.RecordBatch)):
            return self._arrow_batch(batch, pyarrow)
        raise TypeError(f"Embedder takes a dict of numpy arrays, a pandas.DataFrame or a pyarrow "
                        f"Table/RecordBatch, got {type(batch).__name__}")

    def _check_columns(self, names):
        names = list(names)
        if self.column not in names:
            raise ValueError(f"the batch has no column {self.column!r} (columns: {names})")
        if self.output_column in names:
            raise ValueError(f"the batch already has a column {self.output_column!r}: choose another "
                             "output_column")

    def _checked(self, values, labels=None):
        """``values`` as a list of str; a TypeError names the first bad row (and its index label)."""
        texts = list(values)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                where = f"column {self.column!r} row {{}}"
                if labels is not None:  # a label's repr may hold braces: escaped for str.format
                    where += f" (index {labels[row]!r})".replace("{", "{{").replace("}", "}}")
                if _missing(text):  # None, or how pandas and Arrow spell it (NaN, NA)
                    raise TypeError(f"{where.format(row)} is missing ({text!r}), expected str")
                _check_text(text, row, where)
        return texts

    def _numpy_batch(self, batch):
        self._check_columns(batch)
        values = batch[self.column]
        texts = self._checked(values.tolist() if isinstance(values, np.ndarray) else values)
        return {**batch, self.output_column: self.embed(texts)}

    def _pandas_batch(self, frame):
        self._check_columns(frame.columns)
        texts = self._checked(frame[self.column].tolist(), labels=frame.index)
        vectors = self.embed(texts)
        out = frame.copy(deep=False)
        out[self.output_column] = list(vectors) if len(vectors) else []
        return out

    def _arrow_batch(self, batch, pa):
        self._check_columns(batch.schema.names)
        texts = self._checked(batch.column(self.column).to_pylist())
        vectors = self.embed(texts)
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), vectors.shape[1])
        field = pa.field(self.output_column, column.type)
        if isinstance(batch, pa.Table):
            return batch.append_column(field, column)
        return pa.RecordBatch.from_arrays(batch.columns + [column], schema=batch.schema.append(field))
