"""Broken model directories: every one gives a typed error naming the file and the problem.

Each test builds its directory in a tmp dir: the default model's small files linked, and a
``config.json`` / ``model.safetensors`` written here (safetensors with struct + json, so these
tests need no torch). Pickle files are never opened: a ``pytorch_model.bin`` whose unpickling
would create a marker file proves it, and an AST scan of the package proves no code path can.
"""
import ast
import json
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

import minilm_np
from conftest import needs_torch
from minilm_np.errors import ModelFileError, ModelNotFoundError, UnsupportedModelError
from model_dirs import make_model_dir, random_bert_tensors, safetensors_bytes, tiny_config, write_safetensors

PACKAGE_DIRS = [os.path.dirname(minilm_np.__file__),
                list(__import__("minilm_np.kernels", fromlist=["_"]).__path__)[0]]  # a namespace package


@pytest.fixture(scope="module")
def tiny_tensors():
    return random_bert_tensors(tiny_config())


def load(directory):
    return minilm_np.load(str(directory), backend="numpy")


def tiny_dir(tmp_path, source_dir, tensors, config=None, **kwargs):
    return make_model_dir(tmp_path / "model", source_dir, config=config or tiny_config(), tensors=tensors, **kwargs)


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def default_dir_with(tmp_path, source_dir, name, content=None):
    """The default model's files (its own weights) with the file ``name`` missing, or holding ``content``."""
    directory = make_model_dir(tmp_path / "model", source_dir, skip=(name,), weights_from_source=True)
    if content is not None:
        write_bytes(os.path.join(directory, name), content)
    return directory


def framed(header: bytes) -> bytes:
    """A safetensors file holding just ``header`` (after its 8-byte length) and no data."""
    return struct.pack("<Q", len(header)) + header


def test_the_tiny_control_model_loads(tmp_path, model_dir, tiny_tensors):
    """The unbroken base of the cases below loads and embeds, so each failure is the breakage's."""
    model = load(tiny_dir(tmp_path, model_dir, tiny_tensors))
    assert model.encode(["hello", ""]).shape == (2, 32)


# --- model.safetensors ---------------------------------------------------------------------------

def test_truncated_safetensors(tmp_path, model_dir):
    """The real file cut at 1 MB: the header is whole but the tensors run past the end."""
    directory = make_model_dir(tmp_path / "model", model_dir)
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        write_bytes(os.path.join(directory, "model.safetensors"), f.read(1 << 20))
    with pytest.raises(ModelFileError, match=r"model\.safetensors: tensor '[^']+' ends at byte \d+ of the data but "
                                             r"the file holds only \d+ data bytes: the file is truncated"):
        load(directory)


def test_header_offsets_past_the_end(tmp_path, model_dir, tiny_tensors):
    name = "encoder.layer.0.output.dense.bias"  # 32 float32: 128 bytes, placed far past the data
    directory = tiny_dir(tmp_path, model_dir, None)
    write_bytes(os.path.join(directory, "model.safetensors"),
                safetensors_bytes(tiny_tensors, {name: {"data_offsets": [1 << 30, (1 << 30) + 128]}}))
    with pytest.raises(ModelFileError, match=rf"model\.safetensors: tensor '{name}' ends at byte {(1 << 30) + 128} "
                                             r"of the data .* truncated"):
        load(directory)


def test_header_offsets_that_disagree_with_the_shape(tmp_path, model_dir, tiny_tensors):
    name = "embeddings.LayerNorm.weight"
    directory = tiny_dir(tmp_path, model_dir, None)
    write_bytes(os.path.join(directory, "model.safetensors"),
                safetensors_bytes(tiny_tensors, {name: {"data_offsets": [0, 4]}}))
    with pytest.raises(ModelFileError, match=rf"model\.safetensors: tensor '{name}' offsets \[0, 4\) do not match "
                                             r"its shape \[32\] and dtype F32 \(128 bytes\)"):
        load(directory)


@pytest.mark.parametrize("header_len", [1000, 1 << 40, (1 << 64) - 1])
def test_header_length_larger_than_the_file(tmp_path, model_dir, header_len):
    directory = tiny_dir(tmp_path, model_dir, None)
    write_bytes(os.path.join(directory, "model.safetensors"), struct.pack("<Q", header_len) + b'{"a": 1}')
    with pytest.raises(ModelFileError, match=rf"model\.safetensors: header length {header_len} is larger than the "
                                             r"file \(16 bytes\)"):
        load(directory)


@pytest.mark.parametrize("content, problem", [
    (b"", r"truncated safetensors file \(0 bytes, no header\)"),
    (b"\x05\x00\x00", r"truncated safetensors file \(3 bytes, no header\)"),
    (framed(b"{nope}"), r"header is not valid JSON"),
    (framed(b"\xff\xfe\xfd\xfc"), r"header is not valid JSON"),
    (framed(b"[]"), r"header is not a JSON object"),
    (framed(b'{"t": "x"}'), r"tensor 't' has a malformed header entry"),
    (framed(b'{"t": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 0]}}'),
     r"tensor 't' has a negative dimension in shape \[-4\]"),
], ids=["empty", "3-bytes", "bad-json", "not-utf8", "json-list", "bad-entry", "negative-dim"])
def test_malformed_safetensors(tmp_path, model_dir, content, problem):
    directory = tiny_dir(tmp_path, model_dir, None)
    write_bytes(os.path.join(directory, "model.safetensors"), content)
    with pytest.raises(ModelFileError, match=r"model\.safetensors: " + problem):
        load(directory)


def test_a_huge_shape_cannot_overflow_into_a_valid_size(tmp_path, model_dir):
    """2**32 x 2**32 float32 overflows int64 arithmetic to 0 bytes; the size check must still fail."""
    header = json.dumps({"t": {"dtype": "F32", "shape": [1 << 32, 1 << 32], "data_offsets": [0, 0]}}).encode()
    directory = tiny_dir(tmp_path, model_dir, None)
    write_bytes(os.path.join(directory, "model.safetensors"), framed(header))
    with pytest.raises(ModelFileError, match=r"tensor 't' has shape \[4294967296, 4294967296\], whose size overflows "
                                             r"64 bits"):
        load(directory)


def test_wrong_dtype(tmp_path, model_dir, tiny_tensors):
    name = "encoder.layer.0.attention.self.key.weight"
    tensors = dict(tiny_tensors, **{name: tiny_tensors[name].astype(np.float16)})
    with pytest.raises(ModelFileError, match=rf"model\.safetensors: tensor '{name}' has dtype float16, "
                                             r"expected float32"):
        load(tiny_dir(tmp_path, model_dir, tensors))


def test_unsupported_dtype(tmp_path, model_dir, tiny_tensors):
    """bfloat16 (common in newer checkpoints) has no numpy dtype: say so, by name."""
    name = "embeddings.LayerNorm.bias"
    directory = tiny_dir(tmp_path, model_dir, None)
    write_bytes(os.path.join(directory, "model.safetensors"),
                safetensors_bytes(tiny_tensors, {name: {"dtype": "BF16", "shape": [64]}}))
    with pytest.raises(ModelFileError, match=rf"model\.safetensors: tensor '{name}' has dtype 'BF16', which "
                                             r"minilm-np cannot read .*convert the weights to F32"):
        load(directory)


def test_wrong_shape(tmp_path, model_dir, tiny_tensors):
    name = "encoder.layer.0.intermediate.dense.weight"  # (64, 32) stored transposed
    tensors = dict(tiny_tensors, **{name: np.ascontiguousarray(tiny_tensors[name].T)})
    with pytest.raises(ModelFileError, match=rf"model\.safetensors: tensor '{name}' has shape \[32, 64\], "
                                             r"config\.json implies \[64, 32\]"):
        load(tiny_dir(tmp_path, model_dir, tensors))


def test_missing_tensor(tmp_path, model_dir, tiny_tensors):
    name = "encoder.layer.0.output.dense.bias"
    tensors = {k: v for k, v in tiny_tensors.items() if k != name}
    with pytest.raises(ModelFileError, match=rf"model\.safetensors: tensor '{name}' is missing"):
        load(tiny_dir(tmp_path, model_dir, tensors))


def test_unexpected_tensor(tmp_path, model_dir, tiny_tensors):
    name = "encoder.layer.1.attention.self.query.weight"  # a second layer config.json does not have
    tensors = dict(tiny_tensors, **{name: np.zeros((32, 32), np.float32)})
    with pytest.raises(ModelFileError, match=rf"model\.safetensors: unexpected tensor '{name}' .*does not match "
                                             r"config\.json"):
        load(tiny_dir(tmp_path, model_dir, tensors))


def test_ignored_head_tensors_are_accepted(tmp_path, model_dir, tiny_tensors):
    """A pooler head and a ``bert.`` prefix (BertForX checkpoints) are not errors."""
    tensors = {"bert." + k: v for k, v in tiny_tensors.items()}
    tensors["bert.pooler.dense.weight"] = np.zeros((32, 32), np.float32)
    assert load(tiny_dir(tmp_path, model_dir, tensors)).encode("x").shape == (32,)


def test_no_weights_file(tmp_path, model_dir):
    directory = make_model_dir(tmp_path / "model", model_dir)
    with pytest.raises(ModelFileError, match=r"model\.safetensors: missing \(a model directory needs "
                                             r"model\.safetensors\)"):
        load(directory)


# --- config.json ---------------------------------------------------------------------------------

def test_config_missing(tmp_path, model_dir):
    directory = default_dir_with(tmp_path, model_dir, "config.json")
    with pytest.raises(ModelFileError, match=r"config\.json: file is missing"):
        load(directory)


@pytest.mark.parametrize("content", [b"{", b"not json at all", b"\xff\xfe{}", b""], ids=repr)
def test_config_not_json(tmp_path, model_dir, content):
    directory = default_dir_with(tmp_path, model_dir, "config.json", content)
    with pytest.raises(ModelFileError, match=r"config\.json: not valid JSON"):
        load(directory)


def real_config(model_dir, **changes):
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        return dict(json.load(f), **changes)


@pytest.mark.parametrize("changes, problem", [
    ({"hidden_size": 256, "num_attention_heads": 8},
     r"tensor 'embeddings\.word_embeddings\.weight' has shape \[30522, 384\], config\.json implies \[30522, 256\]"),
    ({"num_hidden_layers": 12}, r"tensor 'encoder\.layer\.6\.[^']+' is missing \(and \d+ more\)"),
    ({"num_hidden_layers": 4}, r"unexpected tensor 'encoder\.layer\.4\.[^']+'"),
    ({"intermediate_size": 1024}, r"tensor 'encoder\.layer\.0\.intermediate\.dense\.weight' has shape \[1536, 384\], "
                                  r"config\.json implies \[1024, 384\]"),
    ({"max_position_embeddings": 1024}, r"tensor 'embeddings\.position_embeddings\.weight' has shape \[512, 384\]"),
], ids=["hidden_size", "more-layers", "fewer-layers", "intermediate_size", "positions"])
def test_config_inconsistent_with_the_weights(tmp_path, model_dir, changes, problem):
    directory = make_model_dir(tmp_path / "model", model_dir, config=real_config(model_dir, **changes),
                               weights_from_source=True)
    with pytest.raises(ModelFileError, match=r"model\.safetensors: " + problem):
        load(directory)


@pytest.mark.parametrize("changes, error, problem", [
    ({"hidden_size": 100}, ModelFileError, r"hidden_size 100 is not a multiple of num_attention_heads 12"),
    ({"num_hidden_layers": 0}, ModelFileError, r"'num_hidden_layers' must be an integer >= 1, got 0"),
    ({"vocab_size": "many"}, ModelFileError, r"'vocab_size' must be an integer >= 1, got 'many'"),
    ({"layer_norm_eps": -1}, ModelFileError, r"'layer_norm_eps' must be a positive number, got -1"),
    ({"model_type": "gpt2"}, UnsupportedModelError, r"model_type 'gpt2' is not supported"),
    ({"hidden_act": "relu"}, UnsupportedModelError, r"hidden_act 'relu' is not supported"),
    ({"position_embedding_type": "relative_key"}, UnsupportedModelError,
     r"position_embedding_type 'relative_key' is not supported"),
], ids=["heads", "layers", "vocab-type", "eps", "model_type", "activation", "positions"])
def test_config_impossible_or_unsupported_values(tmp_path, model_dir, changes, error, problem):
    directory = make_model_dir(tmp_path / "model", model_dir, config=real_config(model_dir, **changes),
                               weights_from_source=True)
    with pytest.raises(error, match=r"config\.json: " + problem):
        load(directory)


def test_tokenizer_larger_than_the_embedding_table(tmp_path, model_dir):
    """Token ids past the table would be read out of bounds: refused at load time."""
    config = tiny_config(vocab_size=1000)
    directory = tiny_dir(tmp_path, model_dir, random_bert_tensors(config), config=config)
    with pytest.raises(ModelFileError, match=r"tokenizer\.json: the tokenizer has 30522 tokens but config\.json's "
                                             r"vocab_size is 1000"):
        load(directory)


# --- tokenizer.json ------------------------------------------------------------------------------

def test_tokenizer_missing(tmp_path, model_dir):
    directory = default_dir_with(tmp_path, model_dir, "tokenizer.json")
    with pytest.raises(ModelFileError, match=r"tokenizer\.json: file is missing"):
        load(directory)


@pytest.mark.parametrize("content", [b"\x00\xff garbage", b'{"version": "1.0", "model": {', b"[1, 2, 3]", b""],
                         ids=["binary", "truncated", "wrong-structure", "empty"])
def test_tokenizer_corrupt(tmp_path, model_dir, content):
    directory = default_dir_with(tmp_path, model_dir, "tokenizer.json", content)
    with pytest.raises(ModelFileError, match=r"tokenizer\.json: not a valid tokenizer file"):
        load(directory)


def test_truncated_real_tokenizer(tmp_path, model_dir):
    with open(os.path.join(model_dir, "tokenizer.json"), "rb") as f:
        directory = default_dir_with(tmp_path, model_dir, "tokenizer.json", f.read()[:50_000])
    with pytest.raises(ModelFileError, match=r"tokenizer\.json: not a valid tokenizer file \(.*EOF"):
        load(directory)


# --- paths ---------------------------------------------------------------------------------------

def test_a_missing_directory(tmp_path):
    missing = str(tmp_path / "no" / "such" / "model")
    with pytest.raises(ModelNotFoundError, match=rf"model directory '{missing}' does not exist"):
        minilm_np.load(missing)


def test_a_file_instead_of_a_directory(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match=r"does not exist or is not a directory"):
        minilm_np.load(str(path))


# --- pickles are never loaded ----------------------------------------------------------------------

class _Trap:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears iff a pickle was loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def write_trap(directory, marker):
    data = pickle.dumps({"embeddings.word_embeddings.weight": _Trap(str(marker))})
    write_bytes(os.path.join(directory, "pytorch_model.bin"), data)
    return data


def test_the_trap_works(tmp_path):
    marker = tmp_path / "unpickled"
    data = write_trap(tmp_path, marker)
    pickle.loads(data)
    assert marker.exists()


@pytest.mark.parametrize("with_config", [False, True], ids=["bin-only", "bin-and-config"])
def test_a_pytorch_bin_directory_says_how_to_convert_and_never_unpickles(tmp_path, model_dir, with_config):
    directory = tmp_path / "model"
    directory.mkdir()
    if with_config:
        make_model_dir(directory, model_dir)
    marker = tmp_path / "unpickled"
    write_trap(directory, marker)
    with pytest.raises(ModelFileError) as caught:
        load(directory)
    message = str(caught.value)
    assert f"{directory}{os.sep}model.safetensors: missing" in message
    assert "pytorch_model.bin, a pickle, which minilm-np never loads" in message
    assert "from safetensors.torch import save_file" in message and "weights_only=True" in message
    assert not marker.exists()


def test_a_pickle_beside_safetensors_is_ignored(tmp_path, model_dir, tiny_tensors, monkeypatch):
    directory = tiny_dir(tmp_path, model_dir, tiny_tensors)
    marker = tmp_path / "unpickled"
    write_trap(directory, marker)

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was opened")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    assert load(directory).encode("still works").shape == (32,)
    assert not marker.exists()


@needs_torch
def test_the_conversion_command_works(tmp_path, model_dir, tiny_tensors):
    """Run the command the error message gives (with torch, in a child process) and load the result."""
    directory = tiny_dir(tmp_path, model_dir, None)
    code = ("import sys, torch; from safetensors.numpy import load_file; "
            "torch.save({k: torch.from_numpy(v) for k, v in load_file(sys.argv[1]).items()}, sys.argv[2])")
    reference = write_safetensors(tmp_path / "reference.safetensors", tiny_tensors)
    subprocess.run([sys.executable, "-c", code, reference, os.path.join(directory, "pytorch_model.bin")],
                   check=True, timeout=300)
    with pytest.raises(ModelFileError) as caught:
        load(directory)
    command = str(caught.value).split('python -c "', 1)[1].rsplit('"', 1)[0]
    subprocess.run([sys.executable, "-c", command], check=True, timeout=300)
    converted = load(directory)
    original = load(tiny_dir(tmp_path / "original", model_dir, tiny_tensors))
    texts = ["a converted checkpoint", "gives the same vectors"]
    assert np.array_equal(converted.encode(texts), original.encode(texts))


FORBIDDEN_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "torch"}


def forbidden_uses(path):
    """(line, what) for every import of an unpickling module or call that could unpickle, in ``path``."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names
                      if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FORBIDDEN_MODULES:
            found.append((node.lineno, f"from {node.module} import"))
        elif isinstance(node, ast.Call):
            func = node.func
            dotted = ast.unparse(func)
            args = [a.value for a in node.args if isinstance(a, ast.Constant)]
            if dotted in ("torch.load", "pickle.load", "pickle.loads", "pickle.Unpickler"):
                found.append((node.lineno, dotted))
            elif dotted.split(".")[-1] in ("import_module", "__import__") and any(
                    isinstance(a, str) and a.split(".")[0] in FORBIDDEN_MODULES for a in args):
                found.append((node.lineno, f"{dotted}({args[0]!r})"))
            elif dotted in ("np.load", "numpy.load") and any(
                    k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                    for k in node.keywords):
                found.append((node.lineno, f"{dotted}(allow_pickle=...)"))
    return found


def test_the_scan_finds_what_it_looks_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import pickle\nfrom torch import nn\nimport numpy as np\n"
                      "x = torch.load('a')\nimportlib.import_module('dill')\nnp.load('a', allow_pickle=True)\n"
                      "np.load('b', allow_pickle=False)\ns = 'torch.load( in a string is fine'\n")
    assert [line for line, _ in forbidden_uses(str(sample))] == [1, 2, 4, 5, 6]


def test_the_package_never_imports_pickle_or_torch():
    sources = [os.path.join(d, name) for d in PACKAGE_DIRS for name in sorted(os.listdir(d)) if name.endswith(".py")]
    assert len(sources) > 10
    bad = {os.path.relpath(p, os.path.dirname(PACKAGE_DIRS[0])): uses for p in sources if (uses := forbidden_uses(p))}
    assert not bad, f"unpickling code paths in the package: {bad}"


def test_a_row_file_reads_rows_and_names_the_file_once_it_has_shrunk(tmp_path):
    from minilm_np.safetensors_io import RowFile

    path = tmp_path / "rows.bin"
    data = np.arange(40, dtype=np.int8).reshape(10, 4)
    path.write_bytes(b"head" + data.tobytes())
    rows = RowFile(str(path), 4, (10, 4), np.int8)
    assert rows.read(np.array([9, 0, 9], np.int64)).tobytes() == data[[9, 0, 9]].tobytes()
    os.truncate(path, 4 + 4 * 5)
    with pytest.raises(ModelFileError, match=r"rows\.bin: .*truncated"):
        rows.read(np.array([2, 7], np.int64))
