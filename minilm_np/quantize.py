"""int8 quantisation of the encoder: in memory at load time, or written once as a model directory.

Three modes, all with the same int8 weights (symmetric, one float32 step per output channel):

``"w8"``
    float32 activations; each linear's weights are dequantised into a scratch matrix just
    before its float32 GEMM (BLAS).  Accuracy first; the model stays int8 in memory.
``"w8a16"``
    activations quantised per token row to int16 (14 bits for K <= 2064), exact integer
    GEMM ``gemm_s16s8`` (``vpmaddwd``), float32 epilogue -- the three in one kernel call,
    ``linear_s16s8``.
``"w8a8"``
    activations quantised per token row to 7-bit codes 0..127 with a per-row zero point
    (``vpmaddubsw`` saturates above 127), exact ``gemm_u8s8``, float32 epilogue with the
    zero-point correction ``zero[i] * col_sum[j]`` -- in one call, ``linear_u8s8``.

Outlier channels.  BERT's activations carry a few input channels that are 5-15x larger than
the rest (the same channels for every text: LayerNorm outputs 99, 63, 223 and one GELU unit
per layer in all-MiniLM-L6-v2); they set a row's range, starving every other channel of
levels, and they multiply their column's weight error.  Each linear therefore keeps
:data:`OUTLIER_CHANNELS` input channels -- the largest on a fixed calibration set of texts
(:data:`CALIBRATION_TEXTS`, run once through the float32 model) -- in float32, weights and
activations: their columns are zero in the int8 matrix, and the epilogue adds
``x[:, P] @ W[:, P].T``.  That is 1% of the weights, and it moved the per-text cosine on the
parity corpus from 0.99927 / 0.99461 (mean / min, w8) to 0.9997 / 0.998, and w8a8's from
0.9944 / 0.955 to 0.999 / 0.996 (measured; smoothing the channels instead did worse).

Scales are always per token row, never per tensor, so each text's vector is bitwise
independent of its batch-mates; LayerNorm, softmax, GELU and pooling stay float32.  The
word, position and token-type tables are int8 per row (rows dequantised when gathered).

A quantised directory (:func:`write_quantized`) holds ``model.safetensors`` with the int8
tensors (format described in :func:`quantized_tensor_spec`), ``config.json`` with
``"minilm_np_quantization": MODE``, and the tokenizer and sentence-transformers files.
"""
import json
import os
import shutil
import threading
from dataclasses import replace

import numpy as np

from .config import Config
from .errors import ModelFileError
from .safetensors_io import open_row_file, release_pages
from .weights import LayerWeights, Weights, table_row_ids

MODES = ("w8", "w8a16", "w8a8")
OUTLIER_CHANNELS = 4
"""Input channels per linear kept in float32 (chosen by calibration)."""
WEIGHT_LEVELS = 127
"""Largest int8 weight code; weights are symmetric in [-127, 127]."""
S16_MAX_CODE = 8191
"""Largest int16 activation code (14 bits), lowered for wide K so that int32 cannot overflow."""
FORMAT = "minilm-np-int8/1"
"""``__metadata__["format"]`` of a quantised model.safetensors."""

LINEAR_FIELDS = ("qkv_weight", "attn_out_weight", "ffn_in_weight", "ffn_out_weight")
# Rows of a float32 embedding table quantised at once (16 MiB of float32 rows at 1,024 wide).
TABLE_BLOCK_ROWS = 4096
# tensor-name prefix of each linear in a quantised file (qkv is stored stacked)
LINEAR_NAMES = {"qkv_weight": "attention.self.qkv", "attn_out_weight": "attention.output.dense",
                "ffn_in_weight": "intermediate.dense", "ffn_out_weight": "output.dense"}
TABLE_NAMES = {"word_embeddings": "embeddings.word_embeddings",
               "position_embeddings": "embeddings.position_embeddings",
               "type_embeddings": "embeddings.token_type_embeddings"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack",
                "model.onnx", "rust_model.ot", "model.safetensors.index.json", "pytorch_model.bin.index.json")

# A fixed, varied calibration set: outlier channels are a property of the model (they appear
# on [CLS], [SEP] and punctuation in every text), so a few dozen texts find them.
CALIBRATION_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password if I no longer have access to my email?",
    "Thanks!",
    "ok",
    "...",
    "!!!",
    "A man is playing a guitar on the street while people walk by.",
    "The central bank raised interest rates by a quarter of a percentage point on Wednesday.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "def add(a, b):\n    return a + b",
    "SELECT name, email FROM users WHERE created_at > '2021-01-01' ORDER BY name;",
    "Returns the number of elements in the array along the given axis.",
    "Raise ValueError if the input is empty or contains NaN values.",
    "In 1969, Apollo 11 landed on the Moon and Neil Armstrong walked on its surface.",
    "I absolutely loved this movie, the acting was superb and the soundtrack was beautiful.",
    "Terrible service. The food was cold and we waited an hour.",
    "Le chat dort sur le canapé pendant que la pluie tombe.",
    "Der Zug nach Berlin hat zwanzig Minuten Verspätung.",
    "東京は日本の首都です。",
    "Mix 200 g of flour with 2 eggs, 1 cup of milk and a pinch of salt.",
    "Error 404: the requested page could not be found on this server.",
    "What is the difference between a list and a tuple in Python?",
    "The patient presented with fever, cough and shortness of breath for three days.",
    "Under the agreement, the licensee shall not sublicense the software without prior written consent.",
    "Version 2.3.1 fixes a memory leak in the connection pool and improves startup time.",
    "She sells seashells by the seashore.",
    "Weather tomorrow: sunny, high of 24°C, light winds from the north-west.",
    "To be, or not to be, that is the question.",
    "Click the button in the upper right corner to open the settings menu.",
    "Gradient descent updates the parameters in the direction of the negative gradient of the loss.",
    "The museum is open from 9 am to 5 pm, Tuesday through Sunday; admission is free on the first "
    "Sunday of each month. Guided tours start every hour from the main hall, and audio guides are "
    "available in eight languages. Photography without flash is allowed in most galleries, except "
    "in the temporary exhibition on the second floor, where the loans come from private collections.",
    "This function is deprecated and will be removed in a future release; use the new interface "
    "instead. Passing a string is still accepted but emits a warning. The behaviour for negative "
    "values changed in version 3.0: they are now clipped to zero rather than raising an exception, "
    "which matches the documented contract of the other reduction functions in this module.",
    "a",
    "#hashtag @user https://example.com/path?query=1",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
    "Yes.",
    "No, I don't think so.",
    "Who wrote the novel 'Pride and Prejudice'?",
    "[CLS] [SEP]",
    "UPPERCASE TEXT SHOULD BEHAVE LIKE LOWERCASE TEXT",
)


# ----------------------------------------------------------------------------------------------
# Modes and backends


def check_mode(mode):
    """Return ``mode`` if it is a quantisation mode, else raise ValueError naming the choices."""
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; choose one of {', '.join(MODES)} "
                         "(or None for float32)")
    return mode


def _resolve_backend(backend):
    """``"numba"`` or ``"numpy"``: the argument, else ``$MINILM_NP_BACKEND``, else numba if importable."""
    name = backend or os.environ.get("MINILM_NP_BACKEND") or "numba"
    if name == "numba":
        try:
            from .kernels import int8_linear, quant_jit  # noqa: F401
        except ImportError:
            return "numpy"
    return "numba" if name == "numba" else "numpy"


def _kernels(backend):
    if backend == "numba":
        from .kernels import quant_jit
        return quant_jit
    from .kernels import quant
    return quant


class _Scratch(threading.local):
    """Grow-only per-thread buffers (activation codes, row scales), reused between calls."""

    def __init__(self):
        self.buffers = {}

    def get(self, name, shape, dtype):
        size = shape[0] * shape[1] if len(shape) == 2 else int(np.prod(shape))
        buf = self.buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = np.empty(max(size, 1), dtype)
            self.buffers[name] = buf
        return buf[:size].reshape(shape)


_scratch = _Scratch()


# ----------------------------------------------------------------------------------------------
# Quantised tensors


def quantize_matrix(w, outliers=()):
    """Symmetric int8 weights, one step per output channel, ``outliers`` columns kept in float32.

    Parameters
    ----------
    w : ndarray of float32, (N, K)
        ``(out_features, in_features)``.
    outliers : sequence of int
        Input channels to keep exactly.

    Returns
    -------
    qweight : ndarray of int8, (N, K)
        Codes in [-127, 127]; zero in the outlier columns.
    scale : ndarray of float32, (N,)
        ``W ~= qweight * scale[:, None]`` outside the outlier columns.
    outlier_index : ndarray of int64, (P,), sorted
    outlier_weight : ndarray of float32, (P, N)
        ``W[:, outlier_index].T``.
    """
    w = np.asarray(w, np.float32)
    index = np.array(sorted(int(c) for c in outliers), dtype=np.int64)
    rest = w.copy()
    rest[:, index] = 0
    amax = np.abs(rest).max(axis=1)
    scale = (amax / np.float32(WEIGHT_LEVELS)).astype(np.float32)
    inv = np.divide(np.float32(WEIGHT_LEVELS), amax, out=np.zeros_like(amax), where=amax > 0)
    qweight = np.clip(np.rint(rest * inv[:, None]), -WEIGHT_LEVELS, WEIGHT_LEVELS).astype(np.int8)
    return qweight, scale, index, np.ascontiguousarray(w[:, index].T)


def s16_max_code(k):
    """Largest int16 activation code for reduction length ``k`` (int32-safe against |w| <= 128)."""
    return int(min(S16_MAX_CODE, (2 ** 31 - 1) // (128 * max(k, 1))))


class QuantizedLinear:
    """A linear layer's int8 weights, used by ``model.linear`` through :meth:`matmul`.

    Parameters
    ----------
    mode : {"w8", "w8a16", "w8a8"}
    qweight : ndarray of int8, (N, K)
    scale : ndarray of float32, (N,)
    outlier_index : ndarray of int64, (P,)
    outlier_weight : ndarray of float32, (P, N)
    backend : {"numba", "numpy"} or None
        numba: the AVX2 (or portable) integer kernels; numpy: the twins (float64 BLAS,
        exact on integers).  None: numba when it can be imported.
    """

    def __init__(self, mode, qweight, scale, outlier_index, outlier_weight, backend=None):
        self.mode = check_mode(mode)
        self.backend = _resolve_backend(backend)
        self.shape = tuple(qweight.shape)
        n, k = self.shape
        self.scale = np.ascontiguousarray(scale, np.float32)
        self.outlier_index = np.ascontiguousarray(outlier_index, np.int64)
        self.outlier_weight = np.ascontiguousarray(outlier_weight, np.float32).reshape(len(self.outlier_index), n)
        self.mask = np.ones(k, np.float32)
        self.mask[self.outlier_index] = 0
        self.col_sum = qweight.sum(axis=1, dtype=np.int64).astype(np.int32)
        self.s16_max = s16_max_code(k)
        self._k = _kernels(self.backend)
        self._packed = None
        self._qweight = np.ascontiguousarray(qweight, np.int8)
        if self.backend == "numba" and mode != "w8":
            from .kernels import int8_linear

            self._max_code = None if mode == "w8a8" else self.s16_max
            self._packed = int8_linear.pack(self._qweight, self._max_code)
            release_pages(qweight)  # a mapped file's pages: the packed copy replaces them
            self._linear = int8_linear.linear
            self._columns = int8_linear.Dequantization(self.scale, self.col_sum, self.outlier_index,
                                                       self.outlier_weight)
            self._qweight = None  # the packed copy is all the kernel needs

    @property
    def qweight(self):
        """The int8 codes, ``(N, K)`` (unpacked on demand)."""
        if self._qweight is not None:
            return self._qweight
        from .kernels.int8_pack import unpack_weights

        return unpack_weights(self._packed, *self.shape)

    @property
    def size(self):
        """Number of weights, ``N * K``."""
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self):
        """Bytes held by the layer's arrays."""
        held = self._packed if self._packed is not None else self._qweight
        return int(held.nbytes + self.scale.nbytes + self.outlier_index.nbytes + self.outlier_weight.nbytes
                   + self.mask.nbytes + self.col_sum.nbytes)

    def __repr__(self):
        return (f"QuantizedLinear({self.mode}, shape={self.shape}, outliers={len(self.outlier_index)}, "
                f"backend={self.backend})")

    def with_backend(self, backend):
        """This layer for another backend (self when it is already that one)."""
        if _resolve_backend(backend) == self.backend:
            return self
        return QuantizedLinear(self.mode, self.qweight, self.scale, self.outlier_index, self.outlier_weight,
                               backend)

    def matmul(self, x, out, bias=None):
        """``out = x @ W.T (+ bias)``.

        Parameters
        ----------
        x : ndarray of float32, (M, K)
            One token per row; each row is quantised on its own.
        out : ndarray of float32, (M, N), written
        bias : ndarray of float32, (N,), optional
            Added last (bitwise the same as a separate ``out += bias``).

        Returns
        -------
        out
        """
        if not out.flags.c_contiguous:
            tmp = np.empty(out.shape, np.float32)
            out[...] = self.matmul(x, tmp, bias)
            return out
        m, k = x.shape
        if m == 0:
            return out
        if self._packed is not None:  # quantise, multiply, dequantise and add the bias in one kernel call
            return self._linear(x, self.mask, self._max_code, self._packed, self.shape[0], out, self._columns,
                                bias)
        self._matmul(x, out)
        if bias is not None:
            out += bias
        return out

    def _matmul(self, x, out):
        m, k = x.shape
        if self.mode == "w8" and self.backend == "numba":  # the packed float32 GEMM, no BLAS
            from .kernels import sgemm

            n_panels = -(-self.shape[0] // sgemm.PANEL)
            w = self._k.dequantize_weights_packed(self._qweight, self.scale, self.outlier_index, self.outlier_weight,
                                                  _scratch.get("w8", (n_panels, k, sgemm.PANEL), np.float32))
            return sgemm.gemm(x, w, self.shape[0], out=out)
        if self.mode == "w8":
            w = self._k.dequantize_weights(self._qweight, self.scale, self.outlier_index, self.outlier_weight,
                                           _scratch.get("w8", self.shape, np.float32))
            return np.matmul(x, w.T, out=out)
        scale = _scratch.get("scale", (m,), np.float32)
        if self.mode == "w8a8":
            codes = _scratch.get("u8", (m, k), np.uint8)
            zero = _scratch.get("zero", (m,), np.int32)
            self._k.quantize_rows_u8(x, self.mask, codes, scale, zero)
            col_sum = self.col_sum
        else:
            codes = _scratch.get("s16", (m, k), np.int16)
            zero = col_sum = None
            self._k.quantize_rows_s16(x, self.mask, self.s16_max, codes, scale)
        acc = self._k.gemm_int(codes, self._qweight, out.view(np.int32))
        return self._k.dequantize_output(acc, out, x, scale, zero, self.scale, col_sum, self.outlier_index,
                                         self.outlier_weight)


class QuantizedTable:
    """An embedding table stored int8 per row (symmetric, one float32 step per row).

    Parameters
    ----------
    qweight : ndarray of int8, (V, H)
    scale : ndarray of float32, (V,)
    backend : {"numba", "numpy"} or None
    row_file : minilm_np.safetensors_io.RowFile, optional
        Where ``qweight`` lies in its file: :meth:`rows` then reads the rows it needs from
        there instead of through the mapping (see :class:`~minilm_np.safetensors_io.RowFile`).
    """

    def __init__(self, qweight, scale, backend=None, row_file=None):
        self.qweight = qweight
        self.scale = np.ascontiguousarray(scale, np.float32)
        self.shape = tuple(qweight.shape)
        self.backend = _resolve_backend(backend)
        self._k = _kernels(self.backend)
        self.row_file = row_file

    @classmethod
    def from_float(cls, table, backend=None):
        """Quantise a float32 ``(V, H)`` table (an array or a ``weights.FileTable``) row by row.

        A block of :data:`TABLE_BLOCK_ROWS` rows at a time, whose mapped pages are released
        after it: a 250,000-row table never has more than a block of float32 rows in memory.
        """
        source = getattr(table, "array", table)
        qweight = np.empty(source.shape, np.int8)
        scale = np.empty(source.shape[0], np.float32)
        for start in range(0, source.shape[0], TABLE_BLOCK_ROWS):
            block = source[start:start + TABLE_BLOCK_ROWS]
            qweight[start:start + len(block)], scale[start:start + len(block)], _, _ = quantize_matrix(block)
            release_pages(block)
        return cls(qweight, scale, backend)

    @property
    def size(self):
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self):
        return int(self.qweight.nbytes + self.scale.nbytes)

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"QuantizedTable(shape={self.shape}, backend={self.backend})"

    def with_backend(self, backend):
        if _resolve_backend(backend) == self.backend:
            return self
        return QuantizedTable(self.qweight, self.scale, backend, self.row_file)

    def rows(self, ids):
        """Dequantised rows ``table[ids]``: float32 ``(len(ids), H)``.

        Raises
        ------
        IndexError
            An id is outside the table.
        """
        ids = table_row_ids(ids, self.shape[0])
        out = np.empty((len(ids), self.shape[1]), np.float32)
        if self.row_file is None:
            return self._k.gather_rows(self.qweight, self.scale, ids, out)
        needed, where = np.unique(ids, return_inverse=True)
        return self._k.gather_rows(self.row_file.read(needed), self.scale[needed],
                                   np.ascontiguousarray(where, np.int64), out)


# ----------------------------------------------------------------------------------------------
# Calibration


class _Recorder:
    """Stands in for a float32 weight in ``model.linear``: records each input channel's max |x|."""

    def __init__(self, weight):
        self.weight = weight
        self.absmax = np.zeros(weight.shape[1], np.float32)

    def matmul(self, x, out, bias=None):
        np.maximum(self.absmax, np.abs(x).max(axis=0), out=self.absmax)
        np.matmul(x, self.weight.T, out=out)
        if bias is not None:
            out += bias
        return out


def calibrate(config: Config, weights: Weights, sequences, types=None):
    """Per linear, the largest |activation| of each input channel over ``sequences``.

    Runs the float32 model with the numpy kernels (so that the result does not depend on the
    backend) on all sequences packed in one batch (no padding rows).

    Parameters
    ----------
    sequences : list of ndarray of int64
        Token ids of the calibration texts, with [CLS] and [SEP].
    types : list of ndarray of int64, optional
        Their token types (sentence pairs); None: type 0.

    Returns
    -------
    list of dict, one per layer: field name -> ndarray of float32 ``(K,)``
    """
    from .kernels import reference
    from .model import MIN_GEMM_ROWS, Batch, RunState, forward

    if sum(len(s) for s in sequences) < MIN_GEMM_ROWS:
        raise ValueError(f"calibration needs at least {MIN_GEMM_ROWS} tokens")
    recorders = [{f: _Recorder(getattr(layer, f)) for f in LINEAR_FIELDS} for layer in weights.layers]
    recording = replace(weights, layers=tuple(replace(layer, **rec) for layer, rec in zip(weights.layers, recorders)))
    batch = Batch.pack(sequences, types)
    forward(config, recording, batch, reference, RunState(config, batch.n_tokens))
    return [{f: rec.absmax for f, rec in layer.items()} for layer in recorders]


def outlier_channels(absmax, count=OUTLIER_CHANNELS):
    """The ``count`` channels with the largest calibration |activation| (ties: lower index)."""
    order = np.argsort(-np.asarray(absmax, np.float64), kind="stable")
    return np.sort(order[:min(count, len(order))])


# ----------------------------------------------------------------------------------------------
# Quantising a model


def quantize_weights(weights: Weights, mode, calibration, backend=None) -> Weights:
    """int8 copy of float32 :class:`~minilm_np.weights.Weights` for ``mode``.

    Parameters
    ----------
    weights : Weights
        float32 weights (e.g. from ``load_weights``).
    mode : {"w8", "w8a16", "w8a8"}
    calibration : list of dict
        From :func:`calibrate`: picks each linear's outlier channels.
    backend : {"numba", "numpy"} or None

    Returns
    -------
    Weights
        Linear weights as :class:`QuantizedLinear`, embedding tables as :class:`QuantizedTable`;
        biases and LayerNorm parameters unchanged (float32 vectors).
    """
    check_mode(mode)
    if isinstance(weights.word_embeddings, QuantizedTable):
        raise ValueError("the weights are already quantized")
    layers = []
    for layer, stats in zip(weights.layers, calibration):
        linears = {}
        for field in LINEAR_FIELDS:
            q, scale, index, outlier = quantize_matrix(getattr(layer, field), outlier_channels(stats[field]))
            linears[field] = QuantizedLinear(mode, q, scale, index, outlier, backend)
        layers.append(replace(layer, **linears))
    tables = {name: QuantizedTable.from_float(getattr(weights, name), backend) for name in TABLE_NAMES}
    return replace(weights, layers=tuple(layers), **tables)


def with_backend(weights: Weights, backend) -> Weights:
    """Quantised weights with every int8 part switched to ``backend``."""
    layers = tuple(replace(layer, **{f: getattr(layer, f).with_backend(backend) for f in LINEAR_FIELDS})
                   for layer in weights.layers)
    tables = {name: getattr(weights, name).with_backend(backend) for name in TABLE_NAMES}
    return replace(weights, layers=layers, **tables)


def apply_quantization(model, mode):
    """The weights ``model`` (a SentenceTransformer or CrossEncoder being built) should run with.

    A float32 model with ``mode`` set: calibrated and quantised now.  A quantised directory:
    its weights, on the model's backend; ``mode`` must be None or the directory's own mode.

    Raises
    ------
    ValueError
        Unknown mode, or a mode other than the one a quantised directory was written with.
    """
    stored = model.config.quantization
    if stored is not None:
        if mode is not None and mode != stored:
            check_mode(mode)
            raise ValueError(f"{model.model_dir} holds a {stored!r} quantized model; it cannot be re-quantized "
                             f"to {mode!r}. Load it with quantize=None (or {stored!r}), or quantize the "
                             "float32 model instead")
        return with_backend(model.weights, model.backend)
    check_mode(mode)
    if model.config.num_labels is None:
        sequences, types = model._tokenizer.encode(list(CALIBRATION_TEXTS)), None
    else:  # a cross-encoder reads pairs: token type 1 shifts the activations, so calibrate on pairs
        texts = list(CALIBRATION_TEXTS)
        sequences, types = model._tokenizer.encode_pairs(list(zip(texts, texts[1:] + texts[:1])))
    calibration = calibrate(model.config, model.weights, sequences, types)
    return quantize_weights(model.weights, mode, calibration, model.backend)


# ----------------------------------------------------------------------------------------------
# Quantised model files


def quantized_tensor_spec(config: Config) -> dict:
    """Name -> (shape, dtype) of every tensor of a quantised model.safetensors.

    Per linear ``P`` (``encoder.layer.{i}.`` + ``attention.self.qkv`` (Q, K, V stacked),
    ``attention.output.dense``, ``intermediate.dense``, ``output.dense``): ``P.qweight``
    int8 (N, K), ``P.scale`` float32 (N,), ``P.outlier_index`` int64 (P,),
    ``P.outlier_weight`` float32 (P, N), ``P.bias`` float32 (N,).  Per embedding table:
    ``.qweight`` int8 (V, H) and ``.scale`` float32 (V,).  LayerNorm parameters as in BERT.
    """
    h, f = config.hidden_size, config.intermediate_size
    p_count = OUTLIER_CHANNELS
    spec = {}
    rows = {"word_embeddings": config.vocab_size, "position_embeddings": config.max_position_embeddings,
            "type_embeddings": config.type_vocab_size}
    for field, name in TABLE_NAMES.items():
        spec[name + ".qweight"] = ((rows[field], h), np.int8)
        spec[name + ".scale"] = ((rows[field],), np.float32)
    spec["embeddings.LayerNorm.weight"] = ((h,), np.float32)
    spec["embeddings.LayerNorm.bias"] = ((h,), np.float32)
    shapes = {"qkv_weight": (3 * h, h), "attn_out_weight": (h, h), "ffn_in_weight": (f, h), "ffn_out_weight": (h, f)}
    for i in range(config.num_layers):
        for field, name in LINEAR_NAMES.items():
            p = f"encoder.layer.{i}.{name}."
            n, k = shapes[field]
            spec[p + "qweight"] = ((n, k), np.int8)
            spec[p + "scale"] = ((n,), np.float32)
            spec[p + "outlier_index"] = ((min(p_count, k),), np.int64)
            spec[p + "outlier_weight"] = ((min(p_count, k), n), np.float32)
            spec[p + "bias"] = ((n,), np.float32)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            spec[f"encoder.layer.{i}.{norm}.weight"] = ((h,), np.float32)
            spec[f"encoder.layer.{i}.{norm}.bias"] = ((h,), np.float32)
    return spec


def _tensors(weights: Weights) -> dict:
    """The quantised weights as the named tensors of :func:`quantized_tensor_spec`."""
    out = {"embeddings.LayerNorm.weight": weights.embed_norm_gamma, "embeddings.LayerNorm.bias": weights.embed_norm_beta}
    for field, name in TABLE_NAMES.items():
        table = getattr(weights, field)
        out[name + ".qweight"] = table.qweight
        out[name + ".scale"] = table.scale
    biases = {"qkv_weight": "qkv_bias", "attn_out_weight": "attn_out_bias", "ffn_in_weight": "ffn_in_bias",
              "ffn_out_weight": "ffn_out_bias"}
    for i, layer in enumerate(weights.layers):
        for field, name in LINEAR_NAMES.items():
            p = f"encoder.layer.{i}.{name}."
            linear = getattr(layer, field)
            out.update({p + "qweight": linear.qweight, p + "scale": linear.scale,
                        p + "outlier_index": linear.outlier_index, p + "outlier_weight": linear.outlier_weight,
                        p + "bias": getattr(layer, biases[field])})
        p = f"encoder.layer.{i}."
        out.update({p + "attention.output.LayerNorm.weight": layer.attn_norm_gamma,
                    p + "attention.output.LayerNorm.bias": layer.attn_norm_beta,
                    p + "output.LayerNorm.weight": layer.ffn_norm_gamma,
                    p + "output.LayerNorm.bias": layer.ffn_norm_beta})
    return {name: np.ascontiguousarray(t) for name, t in out.items()}


def arrange_quantized(tensors: dict, config: Config, path: str, backend=None) -> Weights:
    """Build :class:`Weights` from the checked tensors of a quantised file.

    Raises
    ------
    ModelFileError
        An outlier index is out of range or repeated, or an outlier column of ``qweight`` is
        not zero (the file was not written by :func:`write_quantized`).
    """
    mode = check_quantized_mode(config, path)
    layers = []
    for i in range(config.num_layers):
        linears = {}
        for field, name in LINEAR_NAMES.items():
            p = f"encoder.layer.{i}.{name}."
            q, index = tensors[p + "qweight"], tensors[p + "outlier_index"]
            if len(index) and (index.min() < 0 or index.max() >= q.shape[1] or len(np.unique(index)) != len(index)):
                raise ModelFileError(f"{path}: tensor {p + 'outlier_index'!r} holds {index.tolist()}: indices must be "
                                     f"distinct and in [0, {q.shape[1]})")
            if np.any(q[:, index]):
                raise ModelFileError(f"{path}: tensor {p + 'qweight'!r} is not zero in its outlier columns "
                                     f"{index.tolist()}")
            linears[field] = QuantizedLinear(mode, q, tensors[p + "scale"], index, tensors[p + "outlier_weight"], backend)
        p = f"encoder.layer.{i}."
        layers.append(LayerWeights(
            qkv_weight=linears["qkv_weight"], qkv_bias=tensors[p + "attention.self.qkv.bias"],
            attn_out_weight=linears["attn_out_weight"], attn_out_bias=tensors[p + "attention.output.dense.bias"],
            attn_norm_gamma=tensors[p + "attention.output.LayerNorm.weight"],
            attn_norm_beta=tensors[p + "attention.output.LayerNorm.bias"],
            ffn_in_weight=linears["ffn_in_weight"], ffn_in_bias=tensors[p + "intermediate.dense.bias"],
            ffn_out_weight=linears["ffn_out_weight"], ffn_out_bias=tensors[p + "output.dense.bias"],
            ffn_norm_gamma=tensors[p + "output.LayerNorm.weight"], ffn_norm_beta=tensors[p + "output.LayerNorm.bias"],
        ))
    # only the vocabulary table is large enough for its mapped pages to matter; the position and
    # token-type tables (0.2 MiB together) stay mapped, saving a read per row and per call
    tables = {}
    for field, name in TABLE_NAMES.items():
        q = tensors[name + ".qweight"]
        tables[field] = QuantizedTable(q, tensors[name + ".scale"], backend,
                                       open_row_file(path, q) if field == "word_embeddings" else None)
    return Weights(embed_norm_gamma=tensors["embeddings.LayerNorm.weight"],
                   embed_norm_beta=tensors["embeddings.LayerNorm.bias"], layers=tuple(layers), **tables)


def check_quantized_mode(config: Config, path: str) -> str:
    """The mode recorded in config.json, or ModelFileError when it is not one of :data:`MODES`."""
    mode = config.quantization
    if mode not in MODES:
        raise ModelFileError(f"{path}: config.json's minilm_np_quantization {mode!r} is not one of "
                             f"{', '.join(MODES)}")
    return mode


def _files_to_copy(model_dir):
    """Relative paths of the files a quantised directory carries over: all but the weights."""
    modules = []
    try:
        with open(os.path.join(model_dir, "modules.json"), encoding="utf-8") as f:
            modules = json.load(f)
    except (OSError, ValueError):
        pass
    folders = {m.get("path") for m in modules if isinstance(m, dict) and m.get("path")}
    paths = []
    for name in sorted(os.listdir(model_dir)):
        full = os.path.join(model_dir, name)
        if os.path.isfile(full) and name not in WEIGHT_FILES and name != "config.json" \
                and not name.endswith((".bin", ".onnx", ".h5", ".msgpack", ".ot", ".pt", ".pth")):
            paths.append(name)
        elif os.path.isdir(full) and name in folders:
            for root, _, files in os.walk(full):
                paths += [os.path.relpath(os.path.join(root, f), model_dir) for f in sorted(files)]
    return paths


def write_quantized(model, mode, output):
    """Write a self-contained int8 model directory.

    Parameters
    ----------
    model : str or None
        A float32 model directory or hub id (None: all-MiniLM-L6-v2): a sentence embedding
        model or a cross-encoder, whose pooler and classifier are written in float32.
    mode : {"w8", "w8a16", "w8a8"}
    output : str
        New directory (or an existing empty one).

    Returns
    -------
    str
        ``output``, which ``minilm_np.load`` (or ``minilm_np.CrossEncoder``) opens with no
        float32 weight matrix of the body.

    Raises
    ------
    ValueError
        Unknown mode, ``model`` is already quantised, or ``output`` is not empty.
    """
    from safetensors.numpy import save_file

    from .config import read_config
    from .cross_encoder import CrossEncoder
    from .encoder import SentenceTransformer
    from .locate import resolve_model_dir

    check_mode(mode)
    if os.path.exists(output) and (not os.path.isdir(output) or os.listdir(output)):
        raise ValueError(f"{output}: already exists and is not an empty directory; choose a new --output")
    model_dir, where = resolve_model_dir(model)
    cross_encoder = read_config(model_dir).num_labels is not None
    source = (CrossEncoder if cross_encoder else SentenceTransformer)(model_dir, backend="numpy")
    if source.config.quantization is not None:
        raise ValueError(f"{source.model_dir} is already quantized ({source.config.quantization!r}); "
                         "quantize the float32 model instead")
    weights = apply_quantization(source, mode)
    tensors = _tensors(weights)
    if cross_encoder:  # the pooler and classifier stay float32 (minilm_np.modules.classifier)
        tensors.update({name: np.ascontiguousarray(t) for name, t in source.head.tensors().items()})
    os.makedirs(output, exist_ok=True)
    save_file(tensors, os.path.join(output, "model.safetensors"),
              metadata={"format": FORMAT, "mode": mode, "source": str(where)})
    for rel in _files_to_copy(source.model_dir):
        os.makedirs(os.path.dirname(os.path.join(output, rel)) or output, exist_ok=True)
        shutil.copyfile(os.path.join(source.model_dir, rel), os.path.join(output, rel))
    raw = dict(source.config.extra)
    raw["minilm_np_quantization"] = mode
    with open(os.path.join(output, "config.json"), "w", encoding="utf-8") as f:
        json.dump(raw, f, indent=2)
        f.write("\n")
    return output
