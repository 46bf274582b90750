"""Resource and argument limits: every out-of-range setting is a ValueError that names it.

max_seq_length (2 to the position table's 512), batch_size, threads (argument and
``$MINILM_NP_THREADS``), truncate_dim, output_value and the other encode() options.
"""
import re

import numpy as np
import pytest

import minilm_np
from minilm_np import _threads

NOT_POSITIVE_INTS = [0, -1, 1.5, "2", True, False, None, [4]]


@pytest.fixture(scope="module")
def own_model(model_dir):
    """A model this module may reconfigure (max_seq_length) without touching the shared one."""
    return minilm_np.load(model_dir, backend="numba")


@pytest.mark.parametrize("value", [513, 1024, 10**9, 1, 0, -1, 2.5, "128", True, None, np.float32(64)], ids=repr)
def test_max_seq_length_outside_the_position_table_is_refused(own_model, value):
    with pytest.raises(ValueError, match=r"max_seq_length must be an integer in \[2, 512\] \(the model's position "
                                         r"table has 512 rows\), got " + re.escape(repr(value))):
        own_model.max_seq_length = value
    assert own_model.max_seq_length == 256


def test_max_seq_length_up_to_the_table_works(own_model):
    text = "word " * 2000
    try:
        own_model.max_seq_length = np.int64(512)
        assert own_model.max_seq_length == 512 and type(own_model.max_seq_length) is int
        assert own_model.tokenize(text)["input_ids"].shape == (1, 512)
        long_vector = own_model.encode(text)
        own_model.max_seq_length = 2
        assert own_model.tokenize(text)["input_ids"].tolist() == [[101, 102]]
        assert np.array_equal(own_model.encode(text), own_model.encode(""))
    finally:
        own_model.max_seq_length = 256
    assert np.isfinite(long_vector).all() and not np.array_equal(long_vector, own_model.encode(text))


@pytest.mark.parametrize("value", NOT_POSITIVE_INTS, ids=repr)
def test_batch_size_must_be_a_positive_int(model, value):
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer, got " + re.escape(repr(value))):
        model.encode(["a", "b"], batch_size=value)


def test_batch_size_accepts_numpy_ints(model):
    assert np.array_equal(model.encode(["a", "b"], batch_size=np.int64(1)), model.encode(["a", "b"]))


@pytest.mark.parametrize("value", [v for v in NOT_POSITIVE_INTS if v is not None], ids=repr)
def test_threads_must_be_a_positive_int(model_dir, value):
    with pytest.raises(ValueError, match=r"^threads must be a positive integer, got " + re.escape(repr(value))):
        minilm_np.load(model_dir, threads=value)
    with pytest.raises(ValueError, match=r"^threads must be a positive integer"):
        minilm_np.SentenceTransformer(model_dir, threads=value)


@pytest.mark.parametrize("env", ["abc", "0", "-2", "1.5", "two", "2 threads"])
def test_bad_minilm_np_threads_is_refused_by_name(model_dir, monkeypatch, env):
    monkeypatch.setenv("MINILM_NP_THREADS", env)
    with pytest.raises(ValueError, match=r"^\$MINILM_NP_THREADS must be a positive integer, got "):
        minilm_np.load(model_dir)


def test_minilm_np_threads_values_that_work(monkeypatch):
    monkeypatch.setenv("MINILM_NP_THREADS", " 3 ")
    assert _threads.resolve_threads(None) == 3
    monkeypatch.setenv("MINILM_NP_THREADS", "")
    assert _threads.resolve_threads(None) == _threads.granted_threads()
    monkeypatch.setenv("MINILM_NP_THREADS", "nonsense")
    assert _threads.resolve_threads(np.int64(2)) == 2  # an explicit argument wins over the variable


@pytest.mark.parametrize("value", [0, -5, 1.5, "64", True, [8]], ids=repr)
def test_truncate_dim_must_be_a_positive_int(model, model_dir, value):
    pattern = r"truncate_dim must be a positive integer or None, got " + re.escape(repr(value))
    with pytest.raises(ValueError, match=pattern):
        model.encode("text", truncate_dim=value)
    with pytest.raises(ValueError, match=pattern):
        minilm_np.load(model_dir, truncate_dim=value)


def test_truncate_dim_none_means_the_models_default(model_dir):
    truncated = minilm_np.load(model_dir, truncate_dim=64)
    assert truncated.encode("x").shape == (64,) and truncated.encode("x", truncate_dim=None).shape == (64,)
    assert truncated.encode("x", truncate_dim=128).shape == (128,)
    assert truncated.get_sentence_embedding_dimension() == 64


@pytest.mark.parametrize("value", ["bogus", None, "token_embedding", 0], ids=repr)
def test_output_value_must_be_known(model, value):
    with pytest.raises(ValueError, match=r"output_value must be one of \('sentence_embedding', 'token_embeddings'\), "
                                         r"got " + re.escape(repr(value))):
        model.encode("text", output_value=value)


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"precision": "int8"}, ValueError, r"precision 'int8' is not supported"),
    ({"convert_to_tensor": True}, ValueError, r"convert_to_tensor=True is not supported"),
    ({"device": "cuda"}, ValueError, r"device 'cuda' is not supported: minilm-np runs on the CPU only"),
    ({"no_such_option": 1}, TypeError, r"unsupported keyword arguments \['no_such_option'\]"),
], ids=["precision", "tensor", "device", "kwarg"])
def test_other_encode_options_are_refused_by_name(model, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        model.encode("text", **kwargs)


def test_unknown_backend_is_refused_by_name(model_dir, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown kernel backend 'cuda'"):
        minilm_np.load(model_dir, backend="cuda")
    monkeypatch.setenv("MINILM_NP_BACKEND", "fortran")
    with pytest.raises(ValueError, match=r"unknown kernel backend 'fortran'.*\$MINILM_NP_BACKEND"):
        minilm_np.load(model_dir)
