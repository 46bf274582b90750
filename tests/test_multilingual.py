"""Multilingual BERT sentence models with a SentencePiece (Unigram) vocabulary, from their own files.

The models people use for cross-lingual search (paraphrase-multilingual-MiniLM-L12-v2,
multilingual-e5-small) are BERT with XLM-R's tokenizer: a Unigram model, a Metaspace
pre-tokeniser and ``<s>``/``</s>``/``<pad>``/``<unk>``. Each case here trains such a tokenizer on
``tests/data/multilingual_sample.txt`` (:func:`model_dirs.unigram_tokenizer`: NFKC, Metaspace),
saves a random BERT with it through transformers and sentence-transformers (as a generic
tokenizer, loaded from tokenizer.json as written; as transformers 5 saves an XLMRobertaTokenizer,
its own WhitespaceSplit + Metaspace pipeline; or as an XLMRobertaTokenizer whose tokenizer.json
says otherwise, like a hub file written by an older transformers, which transformers 5 rebuilds), and checks minilm-np against
``sentence_transformers.SentenceTransformer`` on the same directory: the same token ids (padded
as it pads), vectors within 1e-5, prompts, lower-casing, long texts and the int8 modes.
"""
import os
import warnings

import numpy as np
import pytest

import minilm_np
from conftest import HAVE_ST
from model_dirs import save_random_sentence_model, unigram_tokenizer
from minilm_np.quantize import MODES, QuantizedTable, write_quantized
from minilm_np.tables import DenseTable, FileTable

pytestmark = pytest.mark.skipif(not HAVE_ST, reason="sentence-transformers is not installed")

TOLERANCE = 1e-5
PROSE = "The quick brown fox jumps over the lazy dog while the museum opens at nine. "
TEXTS = [
    "一个男人正在吃东西。",  # Chinese
    "这篇论文研究了跨语言句子嵌入在信息检索中的应用，我们提出了一种新的方法。",
    "東京は日本の首都です。カタカナとひらがなと漢字。",  # Japanese
    "رفع البنك المركزي أسعار الفائدة يوم الأربعاء.",  # Arabic
    "केंद्रीय बैंक ने बुधवार को ब्याज दरें बढ़ाईं।",  # Hindi
    "Mixed: 机器学习 machine learning 機械学習 التعلم الآلي मशीन लर्निंग 🙂🚀",
    "Emoji 😀 👍🏽 👨‍👩‍👧‍👦 ❤️ 🇯🇵 ✨",
    "ＦＵＬＬＷＩＤＴＨ ＡＢＣ １２３ ｶﾀｶﾅ ﬁ ℌ ① ㍿ …",  # NFKC changes every one of these
    "A man is eating food.",
    "",
    " ",
    "   ",
    "\t\n",
    "  leading and trailing whitespace  ",
    "e\u0301 combining, zero\u200bwidth, nbsp\u00a0here, ideographic\u3000space",
    "\ufffd",
    "<s> literal </s> special <pad> tokens <unk>",
    "UPPER Case İstanbul ΟΔΟΣ Straße",
    PROSE * 80,  # past (max_seq_length - 2) * 32 characters: tokenised from a prefix
    "这篇论文研究了跨语言句子嵌入在信息检索中的应用。" * 400,  # one unbroken Metaspace word
    ("机器学习 machine learning مرحبا नमस्ते 🙂 " * 500),
    " " * 5000 + "words after a long run of spaces",
]
# name: save_random_sentence_model arguments
CASES = {
    "mean-prompts": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                         max_position_embeddings=128, max_seq_length=48, pooling="mean",
                         prompts={"query": "query: ", "passage": "passage: "}, seed=1),
    "cls-dense-normalize-lower": dict(num_hidden_layers=1, hidden_size=96, num_attention_heads=3,
                                      intermediate_size=192, max_position_embeddings=64, max_seq_length=24,
                                      pooling="cls", dense_out=48, normalize=True, do_lower_case=True,
                                      tokenizer_class="XLMRobertaTokenizer", seed=2),
    # tokenizer.json with NFKC + Metaspace alone, tokenizer_config.json saying XLMRobertaTokenizer:
    # transformers 5 rebuilds the pipeline (no normaliser, WhitespaceSplit + Metaspace) and so must we
    "mean-xlmr-older-file": dict(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                                 max_position_embeddings=64, max_seq_length=32, pooling="mean",
                                 tokenizer_class="XLMRobertaTokenizer+file", seed=3),
}


def max_abs_diff(got, want):
    return float(np.abs(np.asarray(got) - np.asarray(want)).max())


@pytest.fixture(scope="module")
def tokenizer():
    return unigram_tokenizer(vocab_size=4000)


@pytest.fixture(scope="module")
def model_dir_of(tokenizer, tmp_path_factory):
    """case name -> a saved sentence-transformers directory (built once)."""
    built = {}

    def get(name):
        if name not in built:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                built[name] = save_random_sentence_model(tmp_path_factory.mktemp(name), tokenizer, **CASES[name])
        return built[name]

    return get


@pytest.fixture(scope="module")
def reference_of(model_dir_of):
    """case name -> sentence_transformers.SentenceTransformer on that directory."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    built = {}

    def get(name):
        if name not in built:
            built[name] = SentenceTransformer(model_dir_of(name), device="cpu")
        return built[name]

    return get


@pytest.mark.parametrize("name", list(CASES))
def test_token_ids_and_padding_match_sentence_transformers(name, model_dir_of, reference_of):
    reference = reference_of(name)
    ours = minilm_np.SentenceTransformer(model_dir_of(name))
    assert ours.max_seq_length == reference.max_seq_length == CASES[name]["max_seq_length"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = reference.tokenize(TEXTS)
    got = ours.tokenize(TEXTS)
    for key in ("input_ids", "attention_mask"):
        assert got[key].shape == tuple(want[key].shape), key
        for i, text in enumerate(TEXTS):
            assert got[key][i].tolist() == want[key][i].tolist(), f"{key} of text {i} ({text[:40]!r})"
    assert (got["input_ids"] == 1).any(), "no <pad> (id 1) in a batch of unequal texts"
    if CASES[name].get("tokenizer_class", "file") == "file":  # Metaspace alone keeps whitespace as a piece
        assert len(ours.tokenize(" ")["input_ids"][0]) == 3, "a whitespace-only text is <s> ▁ </s>"


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("name", list(CASES))
def test_vectors_match_sentence_transformers(name, backend, model_dir_of, reference_of):
    reference = reference_of(name)
    ours = minilm_np.SentenceTransformer(model_dir_of(name), backend=backend)
    assert ours.get_sentence_embedding_dimension() == reference.get_embedding_dimension()
    want = reference.encode(TEXTS, batch_size=5)
    got = ours.encode(TEXTS, batch_size=5)
    assert got.shape == want.shape
    for i, text in enumerate(TEXTS):
        diff = max_abs_diff(got[i], want[i])
        assert diff <= TOLERANCE, f"text {i} ({text[:40]!r}): max abs diff {diff:.3g} [{backend}]"
    tokens_want = reference.encode(TEXTS[:8], output_value="token_embeddings")
    tokens_got = ours.encode(TEXTS[:8], output_value="token_embeddings")
    for i, (g, w) in enumerate(zip(tokens_got, tokens_want)):
        assert g.shape == tuple(w.shape) and max_abs_diff(g, w.numpy()) <= TOLERANCE, f"token embeddings of text {i}"


def test_prompts_come_from_the_models_files(model_dir_of, reference_of):
    reference = reference_of("mean-prompts")
    ours = minilm_np.SentenceTransformer(model_dir_of("mean-prompts"))
    assert ours.prompts["query"] == "query: " and ours.prompts["passage"] == "passage: "
    for prompt_name in ("query", "passage"):
        want = reference.encode(TEXTS[:8], prompt_name=prompt_name)
        got = ours.encode(TEXTS[:8], prompt_name=prompt_name)
        assert max_abs_diff(got, want) <= TOLERANCE, prompt_name
    assert not np.array_equal(ours.encode("中文", prompt_name="query"), ours.encode("中文"))


def test_the_float32_vocabulary_table_is_read_a_row_at_a_time(model_dir_of, monkeypatch):
    """encode() reads the rows a batch uses from the file, never the table through its mapping.

    (A count of the mapping's resident pages after encode() also saw pages that Linux maps
    around a fault at a neighbouring tensor, once in a full run: so reads are caught instead.)
    """
    ours = minilm_np.SentenceTransformer(model_dir_of("mean-prompts"))
    table = ours.weights.word_embeddings
    if not isinstance(table, FileTable):
        pytest.skip("no os.pread on this platform")
    mapped = table.array

    class Unreadable:
        shape, dtype, ndim = mapped.shape, mapped.dtype, mapped.ndim

        def __getitem__(self, key):
            raise AssertionError("encode() read the mapped table")

        def __array__(self, *args, **kwargs):
            raise AssertionError("encode() read the mapped table")

    monkeypatch.setattr(table, "array", Unreadable())
    want = ours.encode(TEXTS[:8])
    monkeypatch.setattr(table, "array", mapped)
    monkeypatch.setattr(table, "lookup", DenseTable(mapped).lookup)  # the same rows through the mapping
    assert np.array_equal(ours.encode(TEXTS[:8]), want)
    ids = np.array([5, 3, 5, len(table) - 1], np.int64)
    assert table.rows(ids).tobytes() == np.ascontiguousarray(mapped[ids]).tobytes()
    with pytest.raises(IndexError, match=f"index {len(table)} is out of range"):
        table.rows(np.array([len(table)]))


# Cosine of each int8 vector with its float32 vector: (mean, min) floors on these random models.
INT8_FLOORS = {"w8": (0.9995, 0.999), "w8a16": (0.9995, 0.999), "w8a8": (0.999, 0.998)}


@pytest.mark.parametrize("mode", MODES)
def test_int8_modes(mode, model_dir_of, tmp_path):
    path = model_dir_of("mean-prompts")
    want = minilm_np.SentenceTransformer(path).encode(TEXTS, normalize_embeddings=True)
    quantized = minilm_np.SentenceTransformer(path, quantize=mode)
    assert isinstance(quantized.weights.word_embeddings, QuantizedTable)
    got = quantized.encode(TEXTS, normalize_embeddings=True)
    cos = np.sum(got * want, axis=1)
    print(f"{mode}: cosine to float32 mean {cos.mean():.5f}, min {cos.min():.5f}")
    mean_floor, min_floor = INT8_FLOORS[mode]
    assert np.isfinite(got).all() and cos.mean() >= mean_floor and cos.min() >= min_floor, (cos.mean(), cos.min())
    out = str(tmp_path / mode)
    write_quantized(path, mode, out)
    loaded = minilm_np.SentenceTransformer(out)
    assert loaded.tokenize(TEXTS)["input_ids"].tolist() == quantized.tokenize(TEXTS)["input_ids"].tolist()
    assert np.array_equal(loaded.encode(TEXTS, normalize_embeddings=True), got)
