"""What encode() does with every kind of text input: a correct vector or a TypeError naming the text.

- str: one ``(384,)`` vector; list, tuple, 1-D numpy array of str and any iterable of str
  (streamed a window at a time): ``(n, 384)``, the same rows whatever the container.
- an empty container: a ``(0, 384)`` float32 array (sentence-transformers: ``(0,)``).
- "", whitespace only, control characters, NUL, zero-width characters: dropped by
  BERT's normaliser, as in sentence-transformers, leaving ``[CLS] [SEP]``: its vector.
- right-to-left scripts, combining marks, CJK, emoji and ZWJ sequences: sentence-transformers'
  vectors (emoji are ``[UNK]``).
- lone surrogates ("\\ud800"), which sentence-transformers' tokenizer refuses: replaced by
  U+FFFD (which the normaliser drops); a high + low surrogate pair is joined into its character.
- None, bytes, int, float, a nested list... anywhere in the batch: TypeError naming the index
  and the type.
- a 1 MB or 100 MB text: truncated at max_seq_length from a short prefix (never copied whole,
  never handed whole to the tokenizer), the vector sentence-transformers gives.
- 100,000 texts from a generator: memory grows with the output only.
"""
import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import minilm_np
from conftest import needs_st
from minilm_np.encoder import WINDOW_TEXTS
from minilm_np.tokenizer import MAX_PREFIX_CHARS, TextTokenizer
from model_dirs import make_model_dir, random_bert_tensors, tiny_config

# sentence-transformers' float32 rounding differs from ours by a few ulps (see test_parity).
MAX_ABS = 2e-6
PARAGRAPH = ("The quick brown fox, née Renée, jumps over 13 lazy dogs; naïve café-goers watch — 東京 🙂. "
             "Tokenisers split words-with-hyphens and e-mail@example.com addresses into pieces. ")
# (id, text): inputs sentence-transformers answers, compared vector for vector.
ODD_TEXTS = [
    ("empty", ""),
    ("spaces", "   "),
    ("whitespace-mix", "\t\n \r\u3000\u00a0"),
    ("padded", "  hello world  \n"),
    ("nul", "\x00"),
    ("nul-inside", "a\x00b c\x00"),
    ("control", "\x01\x02\x1b[31m\x7f\x1f"),
    ("zero-width", "\u200b\u200c\u200d\ufeff"),
    ("replacement-char", "\ufffd"),
    ("hebrew-rtl", "שלום עולם, מה שלומך?"),
    ("arabic-rtl", "مرحبا بالعالم"),
    ("bidi-marks", "\u202eabc\u202c \u200fdef"),
    ("combining", "e\u0301 a\u0300\u0323 Z\u0351\u0368\u0300\u0327\u0311"),
    ("cjk", "日本語のテキストと中文文本，한국어 텍스트"),
    ("emoji", "I love 🍕 and 🐍!"),
    ("zwj", "👨‍👩‍👧‍👦 family 🏳️‍🌈 flag 👍🏽"),
    ("mixed-scripts", "Ελληνικά русский हिन्दी ไทย"),
]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, model_dir):
    """A one-layer, 32-wide random BERT with the default model's tokenizer (fast for many texts)."""
    config = tiny_config()
    return make_model_dir(tmp_path_factory.mktemp("tiny") / "model", model_dir, config=config,
                          tensors=random_bert_tensors(config))


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir):
    return minilm_np.load(tiny_model_dir, backend="numba")


# --- containers ---------------------------------------------------------------------------------

def test_str_gives_one_vector_and_containers_give_the_same_rows(model):
    texts = ["A first sentence.", "Second one, a little longer than the first.", "3"]
    want = model.encode(texts)
    assert want.shape == (3, 384) and want.dtype == np.float32
    one = model.encode(texts[0])
    assert one.shape == (384,) and np.array_equal(one, want[0])
    assert np.array_equal(model.encode(np.str_(texts[0])), want[0])
    for container in (tuple(texts), np.array(texts), np.array(texts, dtype=object), iter(texts),
                      (t for t in texts), map(str, texts)):
        got = model.encode(container)
        assert got.shape == (3, 384) and np.array_equal(got, want), type(container).__name__
    as_list = model.encode(texts, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == 3 and all(np.array_equal(a, b) for a, b in zip(as_list, want))


def test_generator_is_streamed_across_windows(tiny_model):
    """Texts from a generator spanning three windows come out in input order, as from a list."""
    texts = [f"text {i} " + "word " * (i % 37) for i in range(2 * WINDOW_TEXTS + 11)]
    pulled = []

    def generate():
        for text in texts:
            pulled.append(text)
            yield text

    got = tiny_model.encode(generate())
    assert len(pulled) == len(texts)
    assert np.array_equal(got, tiny_model.encode(texts))
    window = tiny_model.encode(texts[WINDOW_TEXTS:2 * WINDOW_TEXTS])
    assert np.array_equal(got[WINDOW_TEXTS:2 * WINDOW_TEXTS], window)


@pytest.mark.parametrize("empty", [[], (), np.array([], dtype=str), iter([]), set()], ids=repr)
def test_empty_input_gives_zero_rows(model, empty):
    got = model.encode(empty)
    assert got.shape == (0, 384) and got.dtype == np.float32


def test_empty_input_other_outputs(model):
    assert model.encode([], convert_to_numpy=False) == []
    assert model.encode([], output_value="token_embeddings") == []
    assert model.encode([], truncate_dim=64).shape == (0, 64)
    assert model.tokenize([])["input_ids"].shape == (0, 0)


# --- odd but valid texts -------------------------------------------------------------------------

def test_empty_and_whitespace_give_the_cls_sep_vector(model):
    """Without sentence-transformers: every text that normalises to nothing is [CLS] [SEP]."""
    nothing = ["", " ", "\t\n", "\x00", "\u200b", "\ufffd", "\ud800", "\x01\x7f"]
    got = model.encode(nothing)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    for i in range(1, len(nothing)):
        assert np.array_equal(got[i], got[0]), f"{nothing[i]!r} differs from ''"
    assert model.tokenize(nothing)["input_ids"].tolist() == [[101, 102]] * len(nothing)


@needs_st
def test_odd_texts_match_sentence_transformers(model, st_model):
    texts = [text for _, text in ODD_TEXTS]
    want = st_model.encode(texts, convert_to_numpy=True)
    got = model.encode(texts)
    want_ids = st_model.tokenize(texts)["input_ids"].numpy()
    got_ids = model.tokenize(texts)["input_ids"]
    for i, (name, text) in enumerate(ODD_TEXTS):
        assert got_ids[i].tolist() == want_ids[i].tolist(), f"{name} ({text!r}) tokenises differently"
        diff = float(np.abs(got[i] - want[i]).max())
        assert diff <= MAX_ABS, f"{name} ({text!r}): max abs diff {diff:.3g} from sentence-transformers"


def test_lone_surrogates_become_replacement_characters(model):
    """sentence-transformers raises on these; we replace each lone surrogate with U+FFFD."""
    got = model.encode(["\ud800", "a\udfffb", "x \udbff y", "\ud83d\ude00 smile"])
    want = model.encode(["\ufffd", "a\ufffdb", "x \ufffd y", "😀 smile"])
    assert np.isfinite(got).all()
    for i in range(len(got)):
        assert np.array_equal(got[i], want[i]), f"surrogate text {i} differs from its U+FFFD form"
    assert model.tokenize("a\ud800b")["input_ids"].tolist() == model.tokenize("a\ufffdb")["input_ids"].tolist()


@needs_st
def test_lone_surrogates_match_sentence_transformers_on_the_replaced_text(model, st_model):
    want = st_model.encode(["a\ufffdb", "\ufffd"], convert_to_numpy=True)
    got = model.encode(["a\ud800b", "\udc00"])
    assert float(np.abs(got - want).max()) <= MAX_ABS


# --- wrong types -----------------------------------------------------------------------------------

BAD_ITEMS = [(None, "NoneType"), (b"bytes", "bytes"), (bytearray(b"x"), "bytearray"), (3, "int"),
             (1.5, "float"), (["nested"], "list"), (("a", "b"), "tuple"), (np.bytes_(b"x"), "bytes_"),
             ({"text": "a"}, "dict"), (np.float32(1), "float32")]


@pytest.mark.parametrize("item, type_name", BAD_ITEMS, ids=[name for _, name in BAD_ITEMS])
def test_a_non_str_item_is_a_type_error_naming_index_and_type(model, item, type_name):
    for container in (["fine", "also fine", item, "never reached"], ("fine", "x", item),
                      (t for t in ["fine", "x", item])):
        with pytest.raises(TypeError, match=rf"sentences\[2\] is {type_name}, expected str"):
            model.encode(container)
    with pytest.raises(TypeError, match=rf"sentences\[2\] is {type_name}"):
        model.tokenize(["fine", "x", item])


def test_bytes_item_message_says_to_decode(model):
    with pytest.raises(TypeError, match=r"sentences\[0\] is bytes, expected str \(decode bytes first\)"):
        model.encode([b"caf\xc3\xa9"])


def test_numpy_object_array_with_none(model):
    with pytest.raises(TypeError, match=r"sentences\[1\] is NoneType"):
        model.encode(np.array(["a", None, "c"], dtype=object))


@pytest.mark.parametrize("sentences, type_name", [(None, "NoneType"), (42, "int"), (b"text", "bytes"),
                                                  (3.5, "float")])
def test_a_non_iterable_or_bytes_argument_is_a_type_error(model, sentences, type_name):
    with pytest.raises(TypeError, match=rf"sentences must be a str or an iterable of str, got {type_name}"):
        model.encode(sentences)


def test_a_2d_numpy_array_is_a_type_error(model):
    with pytest.raises(TypeError, match=r"must be 1-D, got shape \(2, 2\)"):
        model.encode(np.array([["a", "b"], ["c", "d"]]))


# --- very long texts -----------------------------------------------------------------------------

def long_text(n_chars):
    return (PARAGRAPH * (n_chars // len(PARAGRAPH) + 1))[:n_chars]


@needs_st
def test_a_1mb_text_matches_sentence_transformers(model, st_model):
    text = long_text(1 << 20)
    want = st_model.encode(text, convert_to_numpy=True)
    got = model.encode(text)
    assert float(np.abs(got - want).max()) <= MAX_ABS
    want_ids = st_model.tokenize([text])["input_ids"][0].tolist()
    assert len(want_ids) == model.max_seq_length
    assert model.tokenize(text)["input_ids"][0].tolist() == want_ids


class RecordingTokenizer:
    """Stands in for a ``tokenizers.Tokenizer``, recording the longest text it was handed."""

    def __init__(self, inner):
        self.inner, self.longest = inner, 0

    def encode(self, text, **kwargs):
        self.longest = max(self.longest, len(text))
        return self.inner.encode(text, **kwargs)

    def post_process(self, encoding):
        return self.inner.post_process(encoding)

    def encode_batch(self, texts):
        self.longest = max([self.longest] + [len(t) for t in texts])
        return self.inner.encode_batch(texts)


@pytest.mark.parametrize("kind", ["words", "no-spaces", "cjk", "leading-whitespace"])
def test_a_100mb_text_is_cut_to_a_prefix(model, model_dir, kind):
    """100 MB in: the tokenizer sees a short prefix, little memory is touched, the ids are right."""
    n = 100_000_000
    text, expect = {
        "words": (long_text(n), long_text(20_000)),
        "no-spaces": ("x" * n, "x" * 1000),  # one word, longer than WordPiece's 100 chars: [UNK]
        "cjk": ("日本語" * (n // 9), "日本語" * 1000),  # 3 bytes each in UTF-8: 100 MB
        "leading-whitespace": (" " * n + "hello world", "hello world"),
    }[kind]
    tokenizer = TextTokenizer(os.path.join(model_dir, "tokenizer.json"), 256)
    tokenizer.tokenizer = RecordingTokenizer(tokenizer.tokenizer)
    tracemalloc.start()
    try:
        (ids,) = tokenizer.encode([text])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    handed = tokenizer.tokenizer.longest
    assert handed <= MAX_PREFIX_CHARS, f"the tokenizer was handed {handed} characters"
    assert peak < 4 * MAX_PREFIX_CHARS + (8 << 20), f"tokenising a 100 MB text allocated {peak} bytes"
    (want,) = tokenizer.encode([expect])
    assert ids.tolist() == want.tolist()
    assert len(ids) == (256 if kind in ("words", "cjk") else len(want))


def test_a_100mb_text_gives_the_vector_of_its_truncated_prefix(model):
    text = long_text(100_000_000)
    got = model.encode(text)
    assert np.array_equal(got, model.encode(long_text(20_000)))
    assert np.array_equal(got, model.encode([text, "short"])[0])


# --- many texts ----------------------------------------------------------------------------------

RSS_SCRIPT = """
import json, resource, sys
import numpy as np
import minilm_np

model = minilm_np.load(sys.argv[1], backend="numba", threads=1)
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()

def texts(n):  # a generator: the 100,000 texts never exist at once
    for i in range(n):
        yield f"{WORDS[i % 10]} {i} {WORDS[i * 7 % 10]}"

model.encode(texts(5000))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = model.encode(texts(100_000))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kb": before, "after_kb": after, "shape": list(out.shape), "nbytes": out.nbytes,
                  "finite": bool(np.isfinite(out).all())}))
"""


def test_100k_texts_stream_with_bounded_memory(tiny_model_dir):
    """Peak RSS over 100,000 streamed texts grows by the output (twice, for the final concatenation)
    plus a window's working set; holding every text's tokens at once would add hundreds of MB.

    A one-layer 32-wide model keeps this fast; the streaming code is the same for any model."""
    done = subprocess.run([sys.executable, "-c", RSS_SCRIPT, tiny_model_dir], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["shape"] == [100_000, 32] and report["finite"]
    growth = (report["after_kb"] - report["before_kb"]) * 1024
    bound = 2 * report["nbytes"] + (40 << 20)
    print(f"peak RSS {report['before_kb'] / 1024:.0f} MB after warm-up, {report['after_kb'] / 1024:.0f} MB "
          f"after 100,000 texts (output {report['nbytes'] / 2**20:.1f} MB)")
    assert growth <= bound, f"peak RSS grew by {growth / 2**20:.0f} MB over 100,000 texts (bound {bound / 2**20:.0f})"


def test_many_texts_in_process_use_memory_for_the_output_only(tiny_model):
    """tracemalloc's view (numpy and Python allocations) of 6,000 streamed texts (three windows)."""
    texts = (f"text {i} of many" for i in range(6_000))
    tiny_model.encode(["warm up"] * 10)
    tracemalloc.start()
    try:
        out = tiny_model.encode(texts)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (6_000, 32) and np.isfinite(out).all()
    assert peak <= 2 * out.nbytes + (16 << 20), f"peak {peak / 2**20:.1f} MB for {out.nbytes / 2**20:.1f} MB out"
