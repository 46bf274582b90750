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

The subpackage, by job: :mod:`.modes` (the modes and their constants), :mod:`.linear` (an
int8 linear layer), :mod:`.table` (an int8 embedding table), :mod:`.calibrate` (outlier
channels, and quantising a float32 model's weights), :mod:`.files` (the quantised directory).
"""
from .calibrate import CALIBRATION_TEXTS, calibrate, quantize_model, quantize_weights
from .files import FORMAT, read_quantized, write_quantized
from .linear import QuantizedLinear, quantize_matrix
from .modes import MODES, OUTLIER_CHANNELS, check_mode
from .table import QuantizedTable

__all__ = ["MODES", "OUTLIER_CHANNELS", "FORMAT", "CALIBRATION_TEXTS", "check_mode", "calibrate", "quantize_model",
           "quantize_weights", "quantize_matrix", "read_quantized", "write_quantized", "QuantizedLinear",
           "QuantizedTable"]
