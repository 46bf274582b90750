"""Any BERT sentence model, from its own files: small random models compared with sentence-transformers.

Each case builds a random ``BertModel`` with transformers (its own depth, width, head count,
FFN size, vocabulary, position table and LayerNorm eps), wraps it in sentence-transformers
modules (Transformer, Pooling, optionally Dense and Normalize), saves the directory with
``SentenceTransformer.save`` (safetensors), then embeds the same texts with
``sentence_transformers.SentenceTransformer(dir)`` and ``minilm_np.SentenceTransformer(dir)``.
"""
import json
import os
import shutil
import warnings

import numpy as np
import pytest

from conftest import HAVE_ST, HAVE_TORCH
from model_dirs import randomize_layer_norms
from minilm_np.errors import UnsupportedModelError

pytestmark = pytest.mark.skipif(not HAVE_ST, reason="sentence-transformers is not installed")

TOLERANCE = 1e-5
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
TEXTS = [
    "A man is eating food.",
    "",
    "Un café crème, s'il vous plaît — 東京 🙂",
    "short",
    " ".join(["The quick brown fox jumps over the lazy dog."] * 30),  # past every max_seq_length here
    "Numbers 3.14159 and e-mail someone@example.com, URLs https://example.org/a?b=c.",
    "\tleading and trailing whitespace  \n",
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
]
# A small WordPiece vocabulary for the model with its own (non-30522) vocabulary.
SMALL_VOCAB = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789.,'!?-@/:")
               + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
               + ["the", "a", "man", "is", "eating", "food", "quick", "brown", "fox", "dog", "short", "and", "over"])

# name: BertConfig arguments (+ max_seq_length for the Transformer module, vocab "small").
SHAPES = {
    "L1-H64-A2": dict(num_hidden_layers=1, hidden_size=64, num_attention_heads=2, intermediate_size=128,
                      max_position_embeddings=128),
    "L2-H128-A4": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=4, intermediate_size=512,
                       max_position_embeddings=256, layer_norm_eps=1e-5),
    "L3-H96-A3": dict(num_hidden_layers=3, hidden_size=96, num_attention_heads=3, intermediate_size=200,
                      max_position_embeddings=96, layer_norm_eps=1e-6),
    "L2-H256-A8-seq128": dict(num_hidden_layers=2, hidden_size=256, num_attention_heads=8, intermediate_size=1024,
                              max_position_embeddings=512, max_seq_length=128),
    "L1-H128-A2-hd64": dict(num_hidden_layers=1, hidden_size=128, num_attention_heads=2, intermediate_size=256,
                            max_position_embeddings=128, max_seq_length=100),
    "L2-H48-A4-hd12-vocab": dict(num_hidden_layers=2, hidden_size=48, num_attention_heads=4, intermediate_size=96,
                                 max_position_embeddings=64, max_seq_length=40, vocab="small"),
}
# (shape, pooling modes, head): head is a list of ("dense", out, activation, bias[, residual]) / ("normalize",).
CASES = [
    ("L1-H64-A2", "mean", []),
    ("L1-H64-A2", "cls", [("normalize",)]),
    ("L2-H128-A4", "max", []),
    ("L2-H128-A4", "mean_sqrt_len_tokens", [("dense", 32, "Tanh", True), ("normalize",)]),
    ("L3-H96-A3", ("cls", "mean", "max"), []),
    ("L3-H96-A3", "weightedmean", [("dense", 96, "Tanh", True, True)]),
    ("L2-H256-A8-seq128", "cls", [("dense", 64, "Identity", False)]),
    ("L2-H256-A8-seq128", ("mean", "mean_sqrt_len_tokens"), [("normalize",)]),
    ("L1-H128-A2-hd64", "lasttoken", [("dense", 48, "ReLU", True), ("dense", 16, "Tanh", True, True)]),
    ("L1-H128-A2-hd64", ("max", "cls"), [("dense", 40, "GELU", True), ("normalize",)]),
    ("L2-H48-A4-hd12-vocab", "mean", [("normalize",)]),
    ("L2-H48-A4-hd12-vocab", ("cls", "weightedmean"), [("dense", 24, "Sigmoid", True)]),
]


def case_id(case):
    shape, modes, head = case
    modes = "+".join(modes) if isinstance(modes, tuple) else modes
    return "-".join([shape, modes] + [h[0] + (str(h[1]) + h[2] if h[0] == "dense" else "") for h in head])


def max_abs_diff(got, want):
    return float(np.abs(np.asarray(got) - np.asarray(want)).max())


@pytest.fixture(scope="module")
def st():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import sentence_transformers

    with warnings.catch_warnings():  # v6 moved the modules; the old path works from v2 to v6
        warnings.simplefilter("ignore", DeprecationWarning)
        from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    torch.set_num_threads(1)
    return {"torch": torch, "SentenceTransformer": sentence_transformers.SentenceTransformer, "Dense": Dense,
            "Normalize": Normalize, "Pooling": Pooling, "Transformer": Transformer}


@pytest.fixture(scope="module")
def hf_model(st, model_dir, tmp_path_factory):
    """name -> directory of a plain transformers BERT model (random weights) with its tokenizer."""
    built = {}

    def build(name):
        if name in built:
            return built[name]
        from transformers import BertConfig, BertModel

        torch = st["torch"]
        spec = dict(SHAPES[name])
        spec.pop("max_seq_length", None)
        path = str(tmp_path_factory.mktemp(name))
        if spec.pop("vocab", None) == "small":
            write_small_tokenizer(path)
            vocab_size = len(SMALL_VOCAB)
        else:
            for f in TOKENIZER_FILES:
                shutil.copy(os.path.join(model_dir, f), path)
            vocab_size = 30522
        torch.manual_seed(sum(map(ord, name)))
        # A wider init than BERT's 0.02 so attention is far from uniform and every weight matters.
        config = BertConfig(vocab_size=vocab_size, hidden_act="gelu", initializer_range=0.08, **spec)
        bert = BertModel(config, add_pooling_layer=False).eval()
        randomize_layer_norms(bert)
        bert.save_pretrained(path, safe_serialization=True)
        built[name] = path
        return path

    return build


def write_small_tokenizer(path):
    from transformers import BertTokenizerFast

    vocab_file = os.path.join(path, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("\n".join(SMALL_VOCAB) + "\n")
    BertTokenizerFast(vocab_file=vocab_file, do_lower_case=True).save_pretrained(path)


@pytest.fixture(scope="module")
def st_dir(st, hf_model, tmp_path_factory):
    """case -> a saved sentence-transformers directory of that case."""
    def build(case):
        shape, modes, head = case
        torch = st["torch"]
        torch.manual_seed(len(case_id(case)))
        max_seq_length = SHAPES[shape].get("max_seq_length")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            transformer = st["Transformer"](hf_model(shape), max_seq_length=max_seq_length)
        modules = [transformer, st["Pooling"](transformer.get_embedding_dimension(), pooling_mode=modes)]
        width = modules[1].get_embedding_dimension()
        for item in head:
            if item[0] == "normalize":
                modules.append(st["Normalize"]())
                continue
            _, out, activation, bias, *residual = item
            dense = st["Dense"](width, out, bias=bias, activation_function=getattr(torch.nn, activation)(),
                                use_residual=bool(residual))
            with torch.no_grad():
                dense.linear.weight.normal_(0, 1 / np.sqrt(width))
            modules.append(dense)
            width = out
        path = str(tmp_path_factory.mktemp("st-" + case_id(case)))
        st["SentenceTransformer"](modules=modules, device="cpu").save(path)
        return path

    return build


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_random_model_matches_sentence_transformers(case, st, st_dir):
    import minilm_np

    path = st_dir(case)
    reference = st["SentenceTransformer"](path, device="cpu")
    want = reference.encode(TEXTS, batch_size=3)
    for backend in ("numba", "numpy"):
        ours = minilm_np.SentenceTransformer(path, backend=backend)
        assert ours.max_seq_length == reference.max_seq_length
        assert ours.get_sentence_embedding_dimension() == reference.get_embedding_dimension()
        got = ours.encode(TEXTS, batch_size=3)
        assert got.shape == want.shape and got.dtype == np.float32
        diff = max_abs_diff(got, want)
        print(f"{case_id(case)} [{backend}]: max abs diff {diff:.3g}, scale {np.abs(want).max():.3g}")
        assert diff <= TOLERANCE, f"{case_id(case)} [{backend}]: max abs diff {diff:.3g}"
        # A text's vector does not depend on its batch-mates, Dense layers included. Only checked on
        # the widest shape: for tiny GEMMs (M*N*K below ~1e6) OpenBLAS switches to its small-matrix
        # kernels depending on the row count, so narrow random models do not have that property.
        if backend == "numba" and case[0] == "L2-H256-A8-seq128":
            alone = np.stack([ours.encode(text) for text in TEXTS[:3]])
            np.testing.assert_array_equal(alone, got[:3])


def test_token_ids_and_token_embeddings_match(st, st_dir):
    """The model with its own vocabulary: same token ids, same token embeddings, truncation included."""
    import minilm_np

    path = st_dir(CASES[-2])
    reference = st["SentenceTransformer"](path, device="cpu")
    ours = minilm_np.SentenceTransformer(path)
    want_ids = reference.tokenize(TEXTS)["input_ids"].numpy()
    got_ids = ours.tokenize(TEXTS)["input_ids"]
    np.testing.assert_array_equal(got_ids, want_ids)
    assert got_ids.shape[1] == ours.max_seq_length == 40
    want = reference.encode(TEXTS, output_value="token_embeddings")
    got = ours.encode(TEXTS, output_value="token_embeddings")
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == tuple(w.shape), f"text {i}"
        assert max_abs_diff(g, w.numpy()) <= TOLERANCE, f"text {i}"


def test_legacy_pooling_files(st, st_dir, tmp_path):
    """Pre-v6 files: one flag per pooling mode (concatenated cls, max, mean...) and max_seq_length in
    sentence_bert_config.json."""
    import minilm_np

    path = str(tmp_path / "legacy")
    shutil.copytree(st_dir(CASES[4]), path)  # cls + mean + max, saved by v6 in that order
    with open(os.path.join(path, "1_Pooling", "config.json"), "w") as f:
        json.dump({"word_embedding_dimension": 96, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True,
                   "pooling_mode_max_tokens": True, "pooling_mode_mean_sqrt_len_tokens": False}, f)
    with open(os.path.join(path, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 24, "do_lower_case": False}, f)
    reference = st["SentenceTransformer"](path, device="cpu")
    ours = minilm_np.SentenceTransformer(path)
    assert ours.head.pooling.modes == ("cls", "max", "mean")
    assert ours.max_seq_length == reference.max_seq_length == 24
    assert max_abs_diff(ours.encode(TEXTS), reference.encode(TEXTS)) <= TOLERANCE


def test_plain_transformers_directory_falls_back_to_mean_pooling(st, hf_model):
    import minilm_np

    path = hf_model("L1-H64-A2")
    with pytest.warns(UserWarning, match="mean pooling"):
        ours = minilm_np.SentenceTransformer(path)
    assert ours.head.pooling.modes == ("mean",) and not ours.head.normalizes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = st["SentenceTransformer"](path, device="cpu")
    assert ours.max_seq_length == reference.max_seq_length
    assert max_abs_diff(ours.encode(TEXTS), reference.encode(TEXTS)) <= TOLERANCE


@pytest.mark.skipif(not HAVE_TORCH, reason="transformers needs torch here")
@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta", "distilbert"])
def test_other_architectures_are_refused(model_type, tmp_path):
    import minilm_np
    from transformers import AutoConfig, AutoModel

    sizes = {"dim": 32, "n_heads": 2, "n_layers": 1, "hidden_dim": 64} if model_type == "distilbert" else \
        {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": 64}
    config = AutoConfig.for_model(model_type, vocab_size=100, **sizes)
    AutoModel.from_config(config).save_pretrained(tmp_path, safe_serialization=True)
    with pytest.raises(UnsupportedModelError, match=f"model_type '{model_type}' is not supported"):
        minilm_np.SentenceTransformer(str(tmp_path))


def test_unsupported_settings_are_refused(st_dir, tmp_path):
    import minilm_np

    path = str(tmp_path / "m")
    shutil.copytree(st_dir(CASES[3]), path)  # has 2_Dense
    dense_config = os.path.join(path, "2_Dense", "config.json")
    with open(dense_config) as f:
        dense = json.load(f)
    with open(dense_config, "w") as f:
        json.dump(dict(dense, activation_function="torch.nn.modules.activation.Softplus"), f)
    with pytest.raises(UnsupportedModelError, match="Softplus"):
        minilm_np.SentenceTransformer(path)
    with open(dense_config, "w") as f:
        json.dump(dict(dense, module_input_name="token_embeddings"), f)
    with pytest.raises(UnsupportedModelError, match="token_embeddings"):
        minilm_np.SentenceTransformer(path)
    with open(dense_config, "w") as f:
        json.dump(dense, f)
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(dict(config, hidden_act="relu"), f)
    with pytest.raises(UnsupportedModelError, match="hidden_act 'relu'"):
        minilm_np.SentenceTransformer(path)
