"""minilm_np.modules: each module read from its own folder, the modules.json checks, the errors' texts.

Small folders written in tmp_path (no model, no torch); the numbers are checked against numpy.
"""
import ast
import json
import os
import warnings

import numpy as np
import pytest

from model_dirs import write_safetensors
from minilm_np.errors import ModelFileError, UnsupportedModelError
from minilm_np.kernels import reference
from minilm_np.modules import Dense, Normalize, Pooling, load_modules

ST = "sentence_transformers.models."
HIDDEN = 8


def _write(directory, modules=None, folders=None):
    """A model directory with ``modules`` (list of (type, path)) and files {relative path: JSON or tensors}."""
    os.makedirs(directory, exist_ok=True)
    if modules is not None:
        with open(os.path.join(directory, "modules.json"), "w") as f:
            json.dump([{"idx": i, "name": str(i), "path": path, "type": ST + kind}
                       for i, (kind, path) in enumerate(modules)], f)
    for rel, content in (folders or {}).items():
        path = os.path.join(directory, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if rel.endswith(".safetensors"):
            write_safetensors(path, content)
        else:
            with open(path, "w") as f:
                f.write(content if isinstance(content, str) else json.dumps(content))
    return str(directory)


def _dense_files(in_features, out_features, seed=0, **config):
    rng = np.random.default_rng(seed)
    return {"2_Dense/config.json": dict({"in_features": in_features, "out_features": out_features}, **config),
            "2_Dense/model.safetensors": {
                "linear.weight": rng.standard_normal((out_features, in_features)).astype(np.float32),
                "linear.bias": rng.standard_normal(out_features).astype(np.float32)}}


def _packed(lengths, seed=0):
    rng = np.random.default_rng(seed)
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return rng.standard_normal((cu[-1], HIDDEN)).astype(np.float32), cu


def test_pooling_modes_by_name_and_by_legacy_flags(tmp_path):
    new = _write(tmp_path / "a", folders={"1_Pooling/config.json": {"pooling_mode": ["max", "mean_sqrt_len_tokens"]}})
    legacy = _write(tmp_path / "b", folders={"1_Pooling/config.json": {
        "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True, "include_prompt": False}})
    assert Pooling.from_folder(new, "1_Pooling", HIDDEN).modes == ("max", "mean_sqrt_len")
    pooling = Pooling.from_folder(legacy, "1_Pooling", HIDDEN)
    assert pooling.modes == ("cls", "mean") and not pooling.include_prompt
    assert pooling.get_sentence_embedding_dimension() == 2 * HIDDEN
    none = _write(tmp_path / "c", folders={"1_Pooling/config.json": {"word_embedding_dimension": HIDDEN}})
    assert Pooling.from_folder(none, "1_Pooling", HIDDEN).modes == ("mean",)


def test_pooling_computes_each_mode(tmp_path):
    tokens, cu = _packed([3, 1, 5])
    pooling = Pooling(HIDDEN, ("cls", "max", "mean", "mean_sqrt_len", "weightedmean", "lasttoken"))
    out = pooling(tokens, cu, reference)
    assert out.shape == (3, 6 * HIDDEN) and out.dtype == np.float32
    for s in range(3):
        rows = tokens[cu[s]:cu[s + 1]]
        weights = np.arange(1, len(rows) + 1, dtype=np.float32)
        want = [rows[0], rows.max(0), rows.mean(0), rows.sum(0) / np.sqrt(len(rows)),
                weights @ rows / weights.sum(), rows[-1]]
        np.testing.assert_allclose(out[s], np.concatenate(want), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("content, error, problem", [
    (None, ModelFileError, r"1_Pooling/config\.json: file is missing"),
    ("{", ModelFileError, r"1_Pooling/config\.json: not valid JSON"),
    ([], ModelFileError, r"1_Pooling/config\.json: expected a JSON object"),
    ({"pooling_mode": "attention"}, UnsupportedModelError, r"pooling modes \['attention'\] are not supported"),
])
def test_pooling_errors_name_the_file(tmp_path, content, error, problem):
    directory = _write(tmp_path, folders={} if content is None else {"1_Pooling/config.json": content})
    with pytest.raises(error, match=problem):
        Pooling.from_folder(directory, "1_Pooling", HIDDEN)


def test_dense_matches_numpy_and_checks_its_input_width(tmp_path):
    relu = "torch.nn.modules.activation.ReLU"
    directory = _write(tmp_path, folders=_dense_files(HIDDEN, 4, activation_function=relu))
    dense = Dense.from_folder(directory, "2_Dense", HIDDEN)
    assert (dense.in_features, dense.out_features, dense.activation) == (HIDDEN, 4, "relu")
    x = np.random.default_rng(1).standard_normal((3, HIDDEN)).astype(np.float32)
    np.testing.assert_allclose(dense(x), np.maximum(x @ dense.weight.T + dense.bias, 0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelFileError, match=r"2_Dense/config\.json: in_features 8 does not match the 16-wide input"):
        Dense.from_folder(directory, "2_Dense", 2 * HIDDEN)


@pytest.mark.parametrize("change, error, problem", [
    ({"config": None}, ModelFileError, r"config\.json: file is missing \(the Dense module's configuration\)"),
    ({"out_features": 0}, ModelFileError, r"'out_features' must be a positive integer, got 0"),
    ({"activation_function": "torch.nn.modules.activation.Softplus"}, UnsupportedModelError, "Softplus"),
    ({"module_output_name": "token_embeddings"}, UnsupportedModelError, "Dense with module_output_name"),
    ({"weights": None}, ModelFileError, r"2_Dense/model\.safetensors: missing: the Dense module's weights$"),
    ({"weights": None, "pickle": True}, ModelFileError, r"only pytorch_model\.bin is there"),
    ({"bias": False}, ModelFileError, r"unexpected tensor 'linear\.bias'"),
    ({"use_residual": True, "out_features": 4}, ModelFileError, r"tensor 'residual\.weight' is missing"),
])
def test_dense_errors_name_the_file(tmp_path, change, error, problem):
    files = _dense_files(HIDDEN, 4)
    config = files["2_Dense/config.json"]
    if change.get("config", 1) is None:
        del files["2_Dense/config.json"]
    if change.get("weights", 1) is None:
        del files["2_Dense/model.safetensors"]
    if change.get("pickle"):
        files["2_Dense/pytorch_model.bin"] = "not read"
    config.update({k: v for k, v in change.items() if k not in ("config", "weights", "pickle")})
    directory = _write(tmp_path, folders=files)
    with pytest.raises(error, match=problem):
        Dense.from_folder(directory, "2_Dense", HIDDEN)


def test_normalize_reads_only_its_io_names(tmp_path):
    directory = _write(tmp_path, folders={"3_Normalize/config.json": {"module_input_name": "token_embeddings"}})
    assert Normalize.from_folder(directory, "") == Normalize()
    with pytest.raises(UnsupportedModelError, match="Normalize with module_input_name 'token_embeddings'"):
        Normalize.from_folder(directory, "3_Normalize")
    x = np.array([[3, 4], [0, 2]], np.float32)
    np.testing.assert_allclose(Normalize()(x, reference), [[0.6, 0.8], [0, 1]])


def test_load_modules_in_order(tmp_path):
    directory = _write(tmp_path, [("Transformer", ""), ("Pooling", "1_Pooling"), ("Dense", "2_Dense"),
                                  ("Normalize", "3_Normalize")],
                       dict(_dense_files(2 * HIDDEN, 4), **{"1_Pooling/config.json": {"pooling_mode": ["cls", "max"]}}))
    head = load_modules(directory, HIDDEN)
    assert [type(m) for m in head.modules] == [Pooling, Dense, Normalize]
    assert head.normalizes and head.get_sentence_embedding_dimension() == 4
    tokens, cu = _packed([2, 4])
    out = head(tokens, cu, reference)
    want = head.modules[1](head.pooling(tokens, cu, reference))
    np.testing.assert_allclose(out, want / np.linalg.norm(want, axis=1, keepdims=True), rtol=1e-6)


def test_without_modules_json_or_pooling_it_mean_pools_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="no modules.json"):
        head = load_modules(_write(tmp_path / "a"), HIDDEN)
    assert head.pooling.modes == ("mean",) and not head.normalizes
    assert head.get_sentence_embedding_dimension() == HIDDEN
    with pytest.warns(UserWarning, match="no Pooling module; using mean pooling"):
        load_modules(_write(tmp_path / "b", [("Transformer", "")]), HIDDEN)


@pytest.mark.parametrize("modules, error, problem", [
    ([("Transformer", ""), ("CNN", "1_CNN")], UnsupportedModelError, r"modules \['CNN'\] are not supported"),
    ([("Transformer", ""), ("Normalize", "")], UnsupportedModelError, "without a Pooling module"),
    ([("Normalize", ""), ("Pooling", "1_Pooling")], UnsupportedModelError, r"modules \['Normalize'\] before Pooling"),
    ([("Pooling", "1_Pooling"), ("Transformer", "")], UnsupportedModelError, "a Transformer module after Pooling"),
])
def test_module_order_is_checked(tmp_path, modules, error, problem):
    directory = _write(tmp_path, modules, {"1_Pooling/config.json": {"pooling_mode": "mean"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no Pooling module": tested above
        with pytest.raises(error, match=problem):
            load_modules(directory, HIDDEN)


def test_modules_json_must_be_a_list(tmp_path):
    directory = _write(tmp_path, folders={"modules.json": {"0": "Transformer"}})
    with pytest.raises(ModelFileError, match=r"modules\.json: expected a JSON list of modules"):
        load_modules(directory, HIDDEN)


def test_the_modules_import_no_model_code():
    """modules/ imports leaves only, lazy imports included: no import cycle through it."""
    allowed = {"errors", "jsonfile", "checkpoint", "safetensors_io", "gemm_rows", "kernels", "modules"}
    folder = os.path.join(os.path.dirname(__file__), "..", "minilm_np", "modules")
    for name in os.listdir(folder):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(folder, name)) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = ("modules." if node.level == 1 else "") + (node.module or "")
                assert target.split(".")[0] in allowed, f"{name}: from {'.' * node.level}{node.module} import"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n.startswith("minilm_np") for n in names), f"{name}: absolute import {names}"

