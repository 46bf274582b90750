"""``minilm_np.Embedder`` in one process: the batch types, errors, pickling, threads."""
import os
import pickle

import numpy as np
import pytest

import minilm_np
from minilm_np import _threads, embedder
from busy_threads import counting_embedder

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

TEXTS = ["A man is eating food.", "A man is riding a horse.", "", "The new movie is awesome. " * 40, "東京 🙂"]


@pytest.fixture(scope="module")
def want(small_model_dir):
    return minilm_np.load(small_model_dir, threads=1).encode(TEXTS)


def test_every_batch_type_gets_the_encode_vectors_in_order(small_model_dir, want):
    embed = minilm_np.Embedder(small_model_dir, threads=1)
    ids = np.arange(len(TEXTS)) * 10
    out = embed({"id": ids, "text": np.array(TEXTS, dtype=object)})
    assert set(out) == {"id", "text", "embedding"} and out["id"] is ids
    assert out["embedding"].dtype == np.float32 and np.array_equal(out["embedding"], want)
    assert np.array_equal(embed({"text": np.array(TEXTS)})["embedding"], want)  # a '<U' array

    frame = pd.DataFrame({"id": ids, "text": TEXTS}, index=ids + 1000)
    got = embed(frame)
    assert list(got.columns) == ["id", "text", "embedding"] and list(got.index) == list(frame.index)
    assert "embedding" not in frame.columns
    assert np.array_equal(np.stack(got["embedding"]), want)

    table = pa.table({"id": ids, "text": TEXTS})
    for batch in (table, table.to_batches()[0]):
        got = embed(batch)
        assert type(got) is type(batch) and got.schema.names == ["id", "text", "embedding"]
        assert got.schema.field("embedding").type == pa.list_(pa.float32(), want.shape[1])
        assert np.array_equal(np.stack(got.column("embedding").to_numpy(zero_copy_only=False)), want)


def test_empty_batches_and_options(small_model_dir):
    embed = minilm_np.Embedder(small_model_dir, column="body", output_column="vec", normalize_embeddings=True,
                               batch_size=2, threads=1)
    assert embed({"body": np.array([], dtype=object)})["vec"].shape == (0, 64)
    assert len(embed(pd.DataFrame({"body": pd.Series([], dtype=object)}))) == 0
    assert embed(pa.table({"body": pa.array([], pa.string())})).num_rows == 0
    got = embed(pd.DataFrame({"body": TEXTS}))["vec"]
    assert np.allclose([np.linalg.norm(v) for v in got], 1, atol=1e-6)


@pytest.mark.parametrize("bad, name", [(None, r"missing \(None\)"), (float("nan"), r"missing \(nan\)"),
                                       (3.5, "float"), (b"bytes", r"bytes, expected str \(decode bytes first\)")])
def test_a_bad_row_is_named(small_model_dir, bad, name):
    embed = minilm_np.Embedder(small_model_dir, threads=1)
    texts = ["fine", "also fine", bad]
    with pytest.raises(TypeError, match=rf"^column 'text' row 2 is {name}"):
        embed({"text": np.array(texts, dtype=object)})
    # (pandas may store a missing text as NaN)
    pandas_name = r"missing \((None|nan)\)" if name.startswith("missing") else name
    with pytest.raises(TypeError, match=rf"^column 'text' row 2 \(index 'c'\) is {pandas_name}"):
        embed(pd.DataFrame({"text": pd.Series(texts, index=["a", "b", "c"], dtype=object)}))
    if bad is None:
        with pytest.raises(TypeError, match=r"^column 'text' row 2 is missing \(None\), expected str"):
            embed(pa.table({"text": texts}))


def test_bad_batches_and_settings(small_model_dir, model_dir):
    embed = minilm_np.Embedder(small_model_dir, threads=1)
    with pytest.raises(ValueError, match=r"no column 'text' \(columns: \['body'\]\)"):
        embed({"body": np.array(["x"])})
    with pytest.raises(ValueError, match="already has a column 'embedding'"):
        embed(pd.DataFrame({"text": ["x"], "embedding": [0]}))
    with pytest.raises(TypeError, match="got list"):
        embed(["a list of texts"])
    for kwargs, fragment in [({"threads": 0}, "threads must be a positive integer"),
                             ({"quantize": "int4"}, "quantize must be one of"),
                             ({"batch_size": 0}, "batch_size must be a positive integer"),
                             ({"column": ""}, "column must be a non-empty str"),
                             ({"output_column": "text"}, "must differ from column"),
                             ({"normalize_embeddings": "yes"}, "normalize_embeddings must be")]:
        with pytest.raises(ValueError, match=fragment):
            minilm_np.Embedder(small_model_dir, **kwargs)
    with pytest.raises(ValueError, match="normalises its vectors itself"):  # all-MiniLM-L6-v2 has Normalize
        minilm_np.Embedder(model_dir, normalize_embeddings=False, threads=1)({"text": np.array(["x"])})


def test_pickles_settings_not_weights_and_loads_once_per_process(small_model_dir, want):
    embed = minilm_np.Embedder(small_model_dir, threads=1, batch_size=7)
    embed({"text": np.array(TEXTS[:1])})  # loaded in this process
    blob = pickle.dumps(embed)
    assert len(blob) < 1000, len(blob)
    copy = pickle.loads(blob)
    assert repr(copy) == repr(embed)
    assert copy.loaded_model() is embed.loaded_model()  # the process's one model for these settings
    assert np.array_equal(copy({"text": np.array(TEXTS)})["embedding"], want)
    assert minilm_np.Embedder(small_model_dir, threads=1, column="body").loaded_model() is embed.loaded_model()


def test_default_threads_are_the_workers_share(monkeypatch):
    monkeypatch.delenv("MINILM_NP_THREADS", raising=False)
    cores = _threads.cpu_count()
    for value, expected in [("1", 1), ("2,1", min(2, cores)), (str(cores + 8), cores), ("", cores), ("x", cores)]:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert _threads.resolve_threads(None) == expected, value
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _threads.resolve_threads(3) == 3  # threads= wins
    monkeypatch.setenv("MINILM_NP_THREADS", "2")
    assert _threads.resolve_threads(None) == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("MINILM_NP_THREADS")
    if hasattr(os, "sched_setaffinity") and cores > 1:  # one core of this process's: a default of one thread
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(allowed)})
        try:
            assert _threads.resolve_threads(None) == 1
        finally:
            os.sched_setaffinity(0, allowed)


@pytest.mark.skipif(_threads.cpu_count() < 2, reason="needs 2 cores")
def test_the_busy_thread_count_sees_the_threads_asked_for(small_model_dir):
    """The count the engine tests rely on: exactly 1 busy thread at threads=1, and at threads=2 at
    least 2 (the kernels' two; the tokenizer's own pool, capped at the same count, runs before
    them and may add threads that never run at the same time as the kernels)."""
    texts = np.array(TEXTS * 40, dtype=object)
    counting = counting_embedder()
    for threads in (1, 2):
        embed = counting(small_model_dir, threads=threads, batch_size=64)
        embed({"text": texts[:10]})  # load and warm up first
        busy = max(embed({"text": texts})["busy"][0] for _ in range(2))
        assert busy == 1 if threads == 1 else busy >= 2, (threads, busy)


def test_shared_models_are_keyed_by_settings(small_model_dir):
    one = minilm_np.Embedder(small_model_dir, threads=1).loaded_model()
    two = minilm_np.Embedder(small_model_dir, threads=2).loaded_model()
    assert one is not two and (one.threads, two.threads) == (1, 2)
    assert (small_model_dir, 1, None) in embedder._LOADED


def test_one_thread_tokenises_on_the_calling_thread_with_the_same_ids(model, parity_corpus):
    """threads=1 tokenises text by text on the caller (no tokenizers pool): the same ids."""
    texts = parity_corpus + TEXTS
    serial = model._tokenizer.encode(texts, parallel=False)
    assert all(np.array_equal(a, b) for a, b in zip(serial, model._tokenizer.encode(texts)))
