"""No NaN or infinity enters or leaves the engine (issue 31).

Non-finite weights are refused at load, naming the file and the tensor, whatever reads the
file (encoder weights, an int8 directory, a Dense head, the CLI); a file found finite is
recorded so later loads skip the scan, and a changed file is scanned again; an output that is
not finite (finite weights overflowing float32) is a NonFiniteOutputError naming the text.
"""
import os
import time

import numpy as np
import pytest

import minilm_np
from minilm_np import cli, encoder, finite
from minilm_np.errors import ModelFileError, NonFiniteOutputError
from minilm_np.safetensors_io import read_safetensors
from model_dirs import make_model_dir, random_bert_tensors, safetensors_bytes, tiny_config, write_safetensors

HELLO = 7592  # "hello" in the default model's vocabulary


@pytest.fixture(autouse=True)
def records(tmp_path, monkeypatch):
    """Records of files found finite go to a tmp dir (returned)."""
    directory = tmp_path / "records"
    monkeypatch.setattr(finite, "record_dir", lambda: str(directory))
    return directory


@pytest.fixture(scope="module")
def tiny_tensors():
    return random_bert_tensors(tiny_config())


def tiny_dir(tmp_path, model_dir, tensors, name="model"):
    return make_model_dir(tmp_path / name, model_dir, config=tiny_config(), tensors=tensors)


def load(directory):
    return minilm_np.load(str(directory), backend="numpy")


def with_value(tensors, name, index, value):
    changed = dict(tensors)
    changed[name] = tensors[name].copy()
    changed[name][index] = value
    return changed


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_a_non_finite_weight_is_refused_naming_the_tensor(tmp_path, model_dir, tiny_tensors, value):
    name = "encoder.layer.0.intermediate.dense.weight"
    directory = tiny_dir(tmp_path, model_dir, with_value(tiny_tensors, name, (5, 7), value))
    with pytest.raises(ModelFileError, match=rf"model\.safetensors: tensor '{name}' holds 1 values that are not "
                                             r"finite \(NaN or infinity\), the first at index \(5, 7\)"):
        load(directory)


def test_the_cli_names_the_tensor_in_one_line(tmp_path, model_dir, tiny_tensors, capsys):
    name = "embeddings.word_embeddings.weight"
    directory = tiny_dir(tmp_path, model_dir, with_value(tiny_tensors, name, (HELLO, 3), np.nan))
    assert cli.main(["embed", "--model", directory, "--backend", "numpy", "hello"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ModelFileError" in err[0] and f"tensor '{name}'" in err[0], err


def test_a_quantised_file_and_a_dense_head_are_checked_too(tmp_path, model_dir, tiny_tensors):
    from minilm_np.quantize import write_quantized

    out = write_quantized(tiny_dir(tmp_path, model_dir, tiny_tensors), "w8a8", str(tmp_path / "int8"))
    path = os.path.join(out, "model.safetensors")
    tensors, metadata = read_safetensors(path)
    name = "encoder.layer.0.attention.self.qkv.scale"
    changed = {k: np.array(v) for k, v in tensors.items()}
    changed[name][2] = np.inf
    os.unlink(path)
    from safetensors.numpy import save_file

    save_file(changed, path, metadata=metadata)
    with pytest.raises(ModelFileError, match=rf"int8{os.sep}model\.safetensors: tensor '{name}' holds 1 values"):
        load(out)

    dense = str(tmp_path / "dense.safetensors")
    write_safetensors(dense, {"linear.weight": np.array([[1.0, np.nan]], np.float32)})
    with pytest.raises(ModelFileError, match=r"dense\.safetensors: tensor 'linear\.weight' holds 1 values .* "
                                             r"index \(0, 1\)"):
        read_safetensors(dense)


def test_a_finite_file_is_recorded_and_a_changed_one_scanned_again(tmp_path, model_dir, tiny_tensors, records,
                                                                  monkeypatch):
    monkeypatch.setattr(finite, "SETTLE_SECONDS", 0)
    directory = tiny_dir(tmp_path, model_dir, tiny_tensors)
    path = os.path.join(directory, "model.safetensors")
    load(directory)
    assert len(os.listdir(records)) == 1
    # a recorded file is not scanned: the same identity with a NaN tensor passes
    stat = os.stat(path)
    finite._checked_this_process.clear()
    finite.check_finite_tensors({"t": np.array([np.nan], np.float32)}, path, stat)
    # written in place (same inode, same size): its ctime moves, so it is scanned again
    time.sleep(0.05)  # past the filesystem clock's tick
    name = "embeddings.LayerNorm.bias"
    raw = safetensors_bytes(with_value(tiny_tensors, name, 4, np.nan))
    with open(path, "r+b") as f:
        f.write(raw)
    assert os.stat(path).st_ino == stat.st_ino
    with pytest.raises(ModelFileError, match=rf"tensor '{name}' holds 1 values"):
        load(directory)


def test_a_fresh_file_is_not_recorded_and_an_unwritable_record_dir_is_no_error(tmp_path, model_dir, tiny_tensors,
                                                                               records, monkeypatch):
    directory = tiny_dir(tmp_path, model_dir, tiny_tensors)
    load(directory)  # written just now: within SETTLE_SECONDS, not recorded
    assert not records.exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(finite, "record_dir", lambda: str(blocker / "records"))
    monkeypatch.setattr(finite, "SETTLE_SECONDS", 0)
    finite._checked_this_process.clear()
    assert load(directory).encode("still loads").shape == (32,)


# --- outputs ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def overflowing_dir(tmp_path_factory, model_dir, tiny_tensors):
    """Finite weights that overflow float32 on "hello" only: its word-embedding row is 3e38."""
    tensors = dict(tiny_tensors)
    tensors["embeddings.word_embeddings.weight"] = tiny_tensors["embeddings.word_embeddings.weight"].copy()
    tensors["embeddings.word_embeddings.weight"][HELLO] = 3e38
    return tiny_dir(tmp_path_factory.mktemp("overflow"), model_dir, tensors)


@pytest.mark.parametrize("output_value", ["sentence_embedding", "token_embeddings"])
def test_an_output_that_is_not_finite_names_the_text(overflowing_dir, output_value):
    model = load(overflowing_dir)
    assert np.isfinite(model.encode(["fine", "also fine"])).all()
    with pytest.raises(NonFiniteOutputError, match=r"^sentences\[2\]: the model's output for this text is not "
                                                   r"finite"):
        model.encode(["fine", "a longer text that comes first", "hello", "ok"], output_value=output_value)


def test_the_index_counts_across_windows_and_prompts(overflowing_dir, monkeypatch):
    monkeypatch.setattr(encoder, "WINDOW_TEXTS", 2)
    model = load(overflowing_dir)
    texts = (t for t in ["one", "two", "three", "four", "say hello", "six"])  # a generator: streamed
    with pytest.raises(NonFiniteOutputError, match=r"^sentences\[4\]"):
        model.encode(texts, batch_size=1)
    with pytest.raises(NonFiniteOutputError, match=r"^sentences\[0\]"):
        model.encode(["x"], prompt="hello: ")
    with pytest.raises(NonFiniteOutputError, match=r"^sentences\[0\]"):
        model.encode("hello")


def test_the_error_is_exported_and_a_floating_point_error():
    assert minilm_np.NonFiniteOutputError is NonFiniteOutputError
    assert issubclass(NonFiniteOutputError, FloatingPointError)
