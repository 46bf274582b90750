"""Calibration (which input channels stay float32) and the quantisation of a float32 model's weights."""
from dataclasses import replace

import numpy as np

from ..config import Config
from ..kernels import reference
from ..layout import LINEARS, TABLES
from ..gemm_rows import MIN_GEMM_ROWS
from ..model import Batch, RunState, forward
from ..weights import Weights
from .linear import QuantizedLinear, quantize_matrix
from .modes import OUTLIER_CHANNELS, check_mode
from .table import QuantizedTable

LINEAR_FIELDS = tuple(slot.slot + "_weight" for slot in LINEARS)

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


class _Recorder:
    """A :class:`~minilm_np.linear.Linear` that records each input channel's max |x|, then runs ``linear``."""

    def __init__(self, linear):
        self.linear = linear
        self.shape = linear.shape
        self.absmax = np.zeros(linear.shape[1], np.float32)

    def matmul(self, x, out, bias=None, gelu=False):
        np.maximum(self.absmax, np.abs(x).max(axis=0), out=self.absmax)
        return self.linear.matmul(x, out, bias, gelu)


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


def quantize_weights(weights: Weights, mode, calibration, backend=None) -> Weights:
    """int8 copy of float32 :class:`~minilm_np.weights.Weights` for ``mode``.

    Parameters
    ----------
    weights : Weights
        float32, linears as :class:`~minilm_np.linear.DenseLinear` (``load_weights(pack=False)``).
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
    layers = []
    for layer, stats in zip(weights.layers, calibration):
        linears = {}
        for field in LINEAR_FIELDS:
            q, scale, index, outlier = quantize_matrix(getattr(layer, field).weight, outlier_channels(stats[field]))
            linears[field] = QuantizedLinear(mode, q, scale, index, outlier, backend)
        layers.append(replace(layer, **linears))
    tables = {slot: QuantizedTable.from_float(getattr(weights, slot), backend) for slot, _, _ in TABLES}
    return replace(weights, layers=tuple(layers), **tables)


def quantize_model(config: Config, weights: Weights, tokenizer, mode, backend=None) -> Weights:
    """Calibrate a float32 model on :data:`CALIBRATION_TEXTS` and quantise its weights for ``mode``.

    Parameters
    ----------
    config : minilm_np.config.Config
    weights : Weights
        float32, linears as :class:`~minilm_np.linear.DenseLinear`.
    tokenizer : minilm_np.tokenizer.TextTokenizer
    mode : {"w8", "w8a16", "w8a8"}
    backend : {"numba", "numpy"} or None
        Which kernels the int8 layers run on.

    Returns
    -------
    Weights

    Raises
    ------
    ValueError
        Unknown mode.
    """
    check_mode(mode)
    texts = list(CALIBRATION_TEXTS)
    if config.num_labels is None:
        sequences, types = tokenizer.encode(texts), None
    else:  # a cross-encoder reads pairs: token type 1 shifts the activations, so calibrate on pairs
        sequences, types = tokenizer.encode_pairs(list(zip(texts, texts[1:] + texts[:1])))
    return quantize_weights(weights, mode, calibrate(config, weights, sequences, types), backend)
