"""Properties of encode() over arbitrary Unicode texts and batches (hypothesis, 200 examples each).

For every backend (numba, numpy) and weight mode (float32 and, once minilm_np.quantize exists,
the int8 modes w8, w8a16, w8a8), each drawn batch must give:

- finite vectors;
- unit norm with ``normalize_embeddings=True`` (after any ``truncate_dim``);
- the same bits on a second identical call (deterministic);
- the same bits on a call with the batch reversed and another ``batch_size``, and, for each text,
  the same bits as that text encoded alone (batch invariance). The numba backend holds this on
  every CPU; the numpy backend's GEMMs are numpy's BLAS, so it holds there where that BLAS computes
  a row the same whatever its batch-mates (:data:`ROW_INVARIANT_BLAS`), and elsewhere the vectors
  agree within 1e-6 (README, "Backends and threads").

The texts mix arbitrary code points (lone surrogates, controls, unassigned and private-use
ones included) with runs of real words, up to 60 characters, in batches of 1 to 6.
"""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minilm_np
from minilm_np import _threads
from minilm_np.tokenizer import TextTokenizer
from isa_paths import host_lacks

# OpenBLAS kernel families (OPENBLAS_CORETYPE) whose sgemm gives a row the same bits at any place in
# a GEMM of at least 8 rows, checked on an AVX-512 Xeon by forcing each; its Haswell kernels (every
# AVX2 Intel CPU and every AMD Zen) round a row by its place in 8-, 16- and 24-row blocks.
ROW_INVARIANT_BLAS = ("SkylakeX", "Sandybridge", "Nehalem")

HAVE_QUANTIZE = importlib.util.find_spec("minilm_np.quantize") is not None
QUANTIZED = [pytest.param(mode, marks=pytest.mark.skipif(not HAVE_QUANTIZE, reason="minilm_np.quantize "
                                                          "(the int8 modes) is not in this build"))
             for mode in ("w8", "w8a16", "w8a8")]
MODES = [None] + QUANTIZED
BACKENDS = ["numba", "numpy"]
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                             derandomize=False)

WORDS = ["the", "cat", "sat", "on", "mat", "Encoder", "naïve", "café", "東京", "🙂", "👩‍👩‍👧", "שלום", "مرحبا",
         "e\u0301", "x" * 40, "1,234.5", "!?", "\u200b", "\x00", "\ud800", "\ufffd"]
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=60)
WORDY_TEXT = st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)
TEXT = st.one_of(ANY_TEXT, WORDY_TEXT)
BATCH = st.lists(TEXT, min_size=1, max_size=6)
# None: the model's full width; else Matryoshka truncation, which normalize_embeddings follows.
TRUNCATE = st.one_of(st.none(), st.integers(min_value=1, max_value=384))


@pytest.fixture(scope="module")
def models(model_dir):
    """One model per (backend, mode), loaded on first use; one thread keeps 2-core CI machines calm."""
    cache = {}

    def get(backend, mode):
        if (backend, mode) not in cache:
            cache[backend, mode] = minilm_np.load(model_dir, backend=backend, quantize=mode, threads=1)
        return cache[backend, mode]

    yield get
    _threads.apply_threads(_threads.resolve_threads(None), True)  # give later modules their default threads


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_vectors_are_finite_unit_deterministic_and_batch_invariant(models, backend, mode):
    model = models(backend, mode)
    if backend == "numba" or _threads.blas_core() in ROW_INVARIANT_BLAS:
        same = np.array_equal
    else:
        def same(a, b):
            return np.allclose(a, b, rtol=0, atol=1e-6)

    @PROPERTY_SETTINGS
    @given(batch=BATCH, truncate_dim=TRUNCATE, batch_size=st.integers(min_value=1, max_value=8))
    def check(batch, truncate_dim, batch_size):
        got = model.encode(batch, normalize_embeddings=True, truncate_dim=truncate_dim)
        width = min(truncate_dim or 384, 384)
        assert got.shape == (len(batch), width) and got.dtype == np.float32

        assert np.isfinite(got).all(), f"non-finite vector for {batch!r}"

        norms = np.linalg.norm(got.astype(np.float64), axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5, err_msg=f"not unit norm: {batch!r}")

        repeated = model.encode(batch, normalize_embeddings=True, truncate_dim=truncate_dim)
        assert np.array_equal(got, repeated), f"the same call twice differs: {batch!r}"

        again = model.encode(batch[::-1], batch_size=batch_size, normalize_embeddings=True,
                             truncate_dim=truncate_dim)[::-1]
        assert same(got, again), f"a second call (reversed, batch_size={batch_size}) differs: {batch!r}"

        for text in dict.fromkeys(batch):
            alone = model.encode(text, normalize_embeddings=True, truncate_dim=truncate_dim)
            row = batch.index(text)
            assert same(alone, got[row]), f"text {row} ({text!r}) differs alone and in {batch!r}"

    check()


# Up to ~1,000 characters: past the prefix threshold (max_seq_length - 2) * 32 in most examples.
LONG_TEXT = st.lists(st.one_of(st.sampled_from(WORDS), ANY_TEXT.map(lambda t: t[:12])), min_size=24,
                     max_size=150).map(" ".join)


@pytest.fixture(scope="module", params=["wordpiece", "unigram"])
def tokenizer_file(request, model_dir, tmp_path_factory):
    """The default model's WordPiece tokenizer.json, or an XLM-R-style SentencePiece one (NFKC, Metaspace)."""
    if request.param == "wordpiece":
        return os.path.join(model_dir, "tokenizer.json")
    from model_dirs import unigram_tokenizer

    path = str(tmp_path_factory.mktemp("unigram") / "tokenizer.json")
    unigram_tokenizer().save(path)
    return path


@pytest.fixture(scope="module")
def reference_tokenizer(tokenizer_file):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_file)
    tokenizer.no_padding()  # the file asks for padding to 128; sentence-transformers pads per batch
    return tokenizer


@pytest.fixture(scope="module")
def text_tokenizers(tokenizer_file):
    """TextTokenizer by max_seq_length, built once each."""
    cache = {}

    def get(max_seq_length):
        if max_seq_length not in cache:
            cache[max_seq_length] = TextTokenizer(tokenizer_file, max_seq_length)
        return cache[max_seq_length]

    return get


@PROPERTY_SETTINGS
@given(text=LONG_TEXT, max_seq_length=st.integers(min_value=2, max_value=10))
def test_the_long_text_prefix_gives_the_full_texts_truncated_ids(text_tokenizers, reference_tokenizer, text,
                                                                 max_seq_length):
    """Texts past ``(max_seq_length - 2) * 32`` characters are tokenised from a prefix; the ids
    must be those of the whole text truncated, whatever sits at the cut (combining marks, CJK,
    surrogates, punctuation, whitespace runs), for a WordPiece and a SentencePiece tokenizer."""
    (got,) = text_tokenizers(max_seq_length).encode([text])
    whole = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    reference_tokenizer.enable_truncation(max_seq_length)
    assert got.tolist() == reference_tokenizer.encode(whole).ids


FAILING_ON_HASWELL_KERNELS = [["", "0000000000"], ["", "", "", "the"], ["the cat sat on the mat", "x", "naïve café 東京"]]
NUMPY_BACKEND_CHILD = """
import json, sys
import numpy as np
import minilm_np
from minilm_np import _threads
batches = json.loads(sys.argv[1])
model = minilm_np.load(backend="numpy", threads=1)
worst = 0.0
for batch in batches:
    got = model.encode(batch)
    assert np.array_equal(got, model.encode(batch))
    for i, text in enumerate(batch):
        worst = max(worst, float(np.abs(model.encode(text) - got[i]).max()))
print(json.dumps({"core": _threads.blas_core(), "worst": worst}))
"""


@pytest.mark.parametrize("core, cpu_feature", [("Haswell", "avx2"), ("Sandybridge", "avx"), ("SkylakeX", "avx512f")])
def test_numpy_backend_invariance_follows_the_blas_kernels(model_dir, core, cpu_feature):
    """Forced OpenBLAS kernel families: bitwise where :data:`ROW_INVARIANT_BLAS` says so, else within 1e-6."""
    if host_lacks([cpu_feature]):
        pytest.skip(f"this CPU lacks {cpu_feature}, which OpenBLAS's {core} kernels need")
    env = dict(os.environ, OPENBLAS_CORETYPE=core, MINILM_NP_MODEL=model_dir, HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", NUMPY_BACKEND_CHILD, json.dumps(FAILING_ON_HASWELL_KERNELS)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["core"] != core:
        pytest.skip(f"numpy's BLAS did not take OPENBLAS_CORETYPE={core} (it runs {result['core']})")
    if core in ROW_INVARIANT_BLAS:
        assert result["worst"] == 0.0, result
    else:
        assert result["worst"] <= 1e-6, result
