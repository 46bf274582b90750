"""int8 modes: kernel twins, accuracy against float32, quantised directories.

Batch invariance in every mode is a hypothesis property in test_properties.py; the integer
GEMMs are checked against an int64 reference in test_int8_gemm.py.
"""
import os

import numpy as np
import pytest

import minilm_np
from minilm_np.kernels import quant, quant_jit
from minilm_np.quantize import MODES, QuantizedLinear, QuantizedTable, write_quantized
from resident import resident_pages

# Cosine of each text's int8 vector with its float32 vector: (mean, min) floors per mode.
ACCURACY_FLOORS = {"w8": (0.9993, 0.995), "w8a16": (0.9993, 0.995), "w8a8": (0.998, 0.99)}


@pytest.fixture(scope="module")
def fp32_vectors(model, parity_corpus):
    texts = parity_corpus[::3]
    return texts, model.encode(texts)


@pytest.mark.parametrize("mode", MODES)
def test_accuracy_against_float32_on_the_parity_corpus(mode, model_dir, fp32_vectors):
    texts, want = fp32_vectors
    got = minilm_np.load(model_dir, quantize=mode).encode(texts)
    cos = np.sum(got * want, axis=1)  # both unit length
    mean_floor, min_floor = ACCURACY_FLOORS[mode]
    print(f"{mode}: cosine to float32 mean {cos.mean():.5f}, min {cos.min():.5f} over {len(texts)} texts")
    assert np.isfinite(got).all()
    assert cos.mean() >= mean_floor and cos.min() >= min_floor, (mode, cos.mean(), cos.min())


@pytest.mark.parametrize("mode", ["w8a8", "w8"])
def test_a_quantised_directory_is_small_self_contained_and_int8(mode, model_dir, tmp_path):
    out = str(tmp_path / f"minilm-{mode}")
    write_quantized(model_dir, mode, out)
    size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(out) for f in files)
    assert size <= 25 * 1000 * 1000, f"{size} bytes"
    loaded = minilm_np.load(out)
    assert loaded.quantization == mode
    for layer in loaded.weights.layers:
        for field in ("qkv_weight", "attn_out_weight", "ffn_in_weight", "ffn_out_weight"):
            assert isinstance(getattr(layer, field), QuantizedLinear)
    assert isinstance(loaded.weights.word_embeddings, QuantizedTable)
    texts = ["int8 on disk", "the same vectors as quantising at load time", ""]
    assert np.array_equal(loaded.encode(texts), minilm_np.load(model_dir, quantize=mode).encode(texts))


def test_a_quantised_directory_reads_embedding_rows_from_the_file_not_through_the_mapping(model_dir, tmp_path):
    from minilm_np.mapped import release_pages

    out = str(tmp_path / "w8a8")
    write_quantized(model_dir, "w8a8", out)
    table = minilm_np.load(out).weights.word_embeddings
    if table.row_file is None:
        pytest.skip("no os.pread on this platform")
    ids = np.array([20000, 9000, 20000, 25000, 15000, 9000], np.int64)  # mid-table rows, repeated
    release_pages(table.qweight)
    got = table.rows(ids)
    resident = [resident_pages(table.qweight[i]) for i in ids]
    if None not in resident:
        assert resident == [0] * len(ids), "rows() touched the mapped table"
    through_mapping = QuantizedTable(table.qweight, table.scale, table.backend).rows(ids)
    assert got.dtype == np.float32 and got.tobytes() == through_mapping.tobytes()


def test_a_quantised_directory_refuses_another_mode(model_dir, tmp_path):
    out = str(tmp_path / "w8a8")
    write_quantized(model_dir, "w8a8", out)
    with pytest.raises(ValueError, match="w8a8"):
        minilm_np.load(out, quantize="w8")


def test_unknown_mode_is_refused(model_dir):
    with pytest.raises(ValueError, match="int4"):
        minilm_np.load(model_dir, quantize="int4")


def _operands(rng, m=37, n=45, k=70):
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[:, 5] *= 40  # an outlier channel
    q = rng.integers(-127, 128, (n, k)).astype(np.int8)
    col_scale = rng.random(n).astype(np.float32) / 100
    outlier_index = np.array([5, 11], np.int64)
    outlier_weight = rng.standard_normal((2, n)).astype(np.float32)
    mask = np.ones(k, np.float32)
    mask[outlier_index] = 0
    return x, q, col_scale, outlier_index, outlier_weight, mask


def _quantize_rows(module, x, mask):
    """``x``'s rows quantised by ``module`` (the numpy twins or the numba kernels) both ways:
    (u8 codes, their scales, zero points, int16 codes up to 2047, their scales)."""
    m, k = x.shape
    u8, s_u8, zero = np.empty((m, k), np.uint8), np.empty(m, np.float32), np.empty(m, np.int32)
    module.quantize_rows_u8(x, mask, u8, s_u8, zero)
    s16, s_s16 = np.empty((m, k), np.int16), np.empty(m, np.float32)
    module.quantize_rows_s16(x, mask, 2047, s16, s_s16)
    return u8, s_u8, zero, s16, s_s16


def test_the_numba_quantisation_kernels_match_their_numpy_twins_bitwise():
    rng = np.random.default_rng(3)
    x, q, col_scale, outlier_index, outlier_weight, mask = _operands(rng)
    m, k = x.shape
    n = q.shape[0]
    results = {}
    for name, module in (("numpy", quant), ("numba", quant_jit)):
        u8, s_u8, zero, s16, s_s16 = _quantize_rows(module, x, mask)
        acc = (u8.astype(np.int64) @ q.T.astype(np.int64)).astype(np.int32)
        out = np.empty((m, n), np.float32)
        module.dequantize_output(acc, out, x, s_u8, zero, col_scale, q.sum(1, dtype=np.int32), outlier_index,
                                 outlier_weight)
        dense = module.dequantize_weights(q, col_scale, outlier_index, outlier_weight, np.empty((n, k), np.float32))
        packed = module.dequantize_weights_packed(q, col_scale, outlier_index, outlier_weight,
                                                  np.full((-(-n // 16), k, 16), np.nan, np.float32))
        rows = module.gather_rows(q, col_scale, np.array([0, 7, 7, 44], np.int64), np.empty((4, k), np.float32))
        results[name] = (u8, s_u8, zero, s16, s_s16, out, dense, packed, rows)
    for i, (a, b) in enumerate(zip(*results.values())):
        assert np.array_equal(a, b), f"output {i} differs"
    assert u8.max() <= 127 and not np.isnan(packed).any()


@pytest.mark.parametrize("k", [1, 7, 8, 9, 16, 70, 384])
@pytest.mark.parametrize("layout", ["contiguous", "row-strided", "column-strided"])
def test_row_quantisation_matches_its_twin_bitwise_at_any_width_and_layout(k, layout):
    """The 8-lane paths (whole groups of 8) and the scalar remainder give the twin's codes."""
    rng = np.random.default_rng(k)
    m = 11
    base = (rng.standard_normal((m, 2 * k + 3)) * rng.choice([0.01, 1, 30], (m, 1))).astype(np.float32)
    x = {"contiguous": np.ascontiguousarray(base[:, :k]), "row-strided": base[:, 3:k + 3],
         "column-strided": base[:, :2 * k:2]}[layout]
    x[0] = 0  # scale 0
    x[1] = np.abs(x[1])  # zero point 0
    mask = np.ones(k, np.float32)
    mask[rng.choice(k, min(2, k - 1), replace=False)] = 0
    results = {}
    for name, module in (("numpy", quant), ("numba", quant_jit)):
        u8, s_u8, zero, s16, s_s16 = _quantize_rows(module, x, mask)
        results[name] = (u8, s_u8, zero, s16, s_s16)
    for i, (a, b) in enumerate(zip(*results.values())):
        assert np.array_equal(a, b), f"output {i} differs"


def test_w8_packed_dequantisation_is_the_dense_matrix_packed():
    from minilm_np.kernels import sgemm

    rng = np.random.default_rng(4)
    _, q, col_scale, outlier_index, outlier_weight, _ = _operands(rng)
    n, k = q.shape
    dense = quant.dequantize_weights(q, col_scale, outlier_index, outlier_weight, np.empty((n, k), np.float32))
    packed = quant_jit.dequantize_weights_packed(q, col_scale, outlier_index, outlier_weight,
                                                 np.empty((-(-n // 16), k, 16), np.float32))
    assert np.array_equal(packed, sgemm.pack_weights(dense))
