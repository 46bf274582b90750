"""The ``minilm-np`` command line, run as a new user runs it: a subprocess per command, outputs and exit codes.

Variants of a command that need no new process (formats, error paths) call
``minilm_np.cli.main(argv)`` in-process; every command also runs at least once as
``python -m minilm_np.cli``. Exit codes: 0 success, 2 usage error, 1 runtime error, each
error one line on stderr without a traceback (unless ``--debug``).
"""
import csv
import fcntl
import importlib.util
import io
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest

from conftest import HAVE_ST
from minilm_np import cli

COMMANDS = ("embed", "similarity", "search", "rerank", "quantize", "bench", "parity", "info", "warmup",
            "serve")
ENV = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["A man is eating food.", "A man is riding a horse.", "The new movie is awesome.", "Un café, s'il vous plaît.",
         "How do I reset my password?", "I forgot my password, how can I change it?", "A monkey is playing drums."]
# Enough texts for embed's progress bar (cli.PROGRESS_MIN_TEXTS), short enough to embed quickly.
MANY = [f"text number {i}" for i in range(cli.PROGRESS_MIN_TEXTS + 20)]
VECTOR_ABS = 1e-6  # JSON and CSV outputs keep 7 significant digits


def run_cli(*args, stdin=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "minilm_np.cli", *args], input=stdin, capture_output=True,
                          text=True, env=ENV, timeout=timeout, cwd=REPO)


def error_lines(stderr):
    """stderr lines, less the one-time notice that the numba kernels are being compiled."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("minilm-np: compiling")]


def assert_one_line_error(stderr, *fragments):
    lines = error_lines(stderr)
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "texts.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    (d / "many.txt").write_text("\n".join(MANY) + "\n", encoding="utf-8")
    with open(d / "docs.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(TEXTS):
            f.write(json.dumps({"id": i, "body": text}, ensure_ascii=False) + "\n")
    with open(d / "table.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(TEXTS))
    (d / "pairs.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in zip(TEXTS, TEXTS[1:])), encoding="utf-8")
    return d


def test_help_lists_every_command_with_examples(capsys):
    proc = run_cli("--help")
    assert proc.returncode == 0 and proc.stderr == ""
    for command in COMMANDS:
        assert command in proc.stdout
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        assert "examples:" in capsys.readouterr().out, command
    proc = subprocess.run([sys.executable, "-m", "minilm_np", "--version-is-not-an-option"], capture_output=True,
                          text=True, env=ENV, timeout=60)
    assert proc.returncode == 2  # python -m minilm_np is the same command line
    if shutil.which("minilm-np"):
        proc = subprocess.run(["minilm-np", "--help"], capture_output=True, text=True, env=ENV, timeout=60)
        assert proc.returncode == 0 and "embed" in proc.stdout


# ---------------------------------------------------------------------------------------------- embed

def test_embed_arguments_to_json_lines(model):
    proc = run_cli("embed", TEXTS[0], TEXTS[1])
    assert proc.returncode == 0, proc.stderr
    assert error_lines(proc.stderr) == []
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in records] == TEXTS[:2]
    got = np.array([r["embedding"] for r in records], dtype=np.float32)
    assert got.shape == (2, 384)
    assert np.abs(got - model.encode(TEXTS[:2])).max() <= VECTOR_ABS


def test_embed_file_to_npy_with_options_and_no_bar_in_a_pipe(model, files, tmp_path):
    out = tmp_path / "many.npy"
    proc = run_cli("embed", "--input", str(files / "many.txt"), "--output", str(out), "--normalize",
                   "--truncate-dim", "64", "--batch-size", "8", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    # stderr is a pipe here: no progress bar, only the summary line
    assert error_lines(proc.stderr) == [f"wrote {len(MANY)} x 64 float32 to {out}"]
    got = np.load(out)
    want = model.encode(MANY, truncate_dim=64, normalize_embeddings=True)
    assert got.dtype == np.float32 and got.shape == (len(MANY), 64)
    assert np.abs(got - want).max() <= VECTOR_ABS
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)


def test_embed_shows_a_progress_bar_on_a_terminal(files, tmp_path):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "minilm_np.cli", "embed", "--input", str(files / "many.txt"),
                             "--output", str(tmp_path / "out.npy")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave, env=ENV, cwd=REPO)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=300) == 0
    err = b"".join(chunks).decode("utf-8", "replace")
    assert f"{len(MANY)}/{len(MANY)}" in err and "text" in err, err


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_embed_quiet_and_short_inputs_have_no_bar(files, tmp_path, monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    out = str(tmp_path / "v.npy")
    assert cli.main(["embed", "--input", str(files / "many.txt"), "--output", out, "--quiet"]) == 0
    assert "%" not in terminal.getvalue() and "wrote" in terminal.getvalue()
    terminal.seek(0)
    terminal.truncate()
    assert cli.main(["embed", "--input", str(files / "many.txt"), "--output", out]) == 0
    assert f"{len(MANY)}/{len(MANY)}" in terminal.getvalue()
    terminal.seek(0)
    terminal.truncate()
    assert cli.main(["embed", "--input", str(files / "texts.txt"), "--output", out]) == 0
    assert "%" not in terminal.getvalue()


def test_embed_stdin_to_jsonl_file(model, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = run_cli("embed", "--input", "-", "--output", str(out), stdin="\n".join(TEXTS) + "\n")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in records] == TEXTS
    got = np.array([r["embedding"] for r in records], dtype=np.float32)
    assert np.abs(got - model.encode(TEXTS)).max() <= VECTOR_ABS


def test_embed_jsonl_field_and_csv_column(model, files, tmp_path, capsys):
    want = model.encode(TEXTS)
    out_csv = tmp_path / "v.csv"
    assert cli.main(["embed", "--input", str(files / "docs.jsonl"), "--field", "body", "--output", str(out_csv)]) == 0
    assert np.abs(np.loadtxt(out_csv, delimiter=",", dtype=np.float32) - want).max() <= VECTOR_ABS
    out_npy = tmp_path / "v.npy"
    assert cli.main(["embed", "--input", str(files / "table.csv"), "--column", "text", "--output", str(out_npy)]) == 0
    assert np.abs(np.load(out_npy) - want).max() <= 1e-6
    capsys.readouterr()
    # the wrong field / column: a runtime error naming it
    assert cli.main(["embed", "--input", str(files / "docs.jsonl"), "--field", "title"]) == 1
    assert_one_line_error(capsys.readouterr().err, "docs.jsonl:1", "'title'")
    assert cli.main(["embed", "--input", str(files / "table.csv"), "--column", "body"]) == 1
    assert_one_line_error(capsys.readouterr().err, "no column 'body'")


# ----------------------------------------------------------------------------------------- similarity

def test_similarity_of_two_texts_and_of_pairs(model, files):
    proc = run_cli("similarity", TEXTS[4], TEXTS[5])
    assert proc.returncode == 0, proc.stderr
    a, b = model.encode(TEXTS[4:6])
    assert abs(float(proc.stdout.strip()) - float(a @ b)) <= 2e-6  # unit vectors: cosine = dot
    proc = run_cli("similarity", "--input", str(files / "pairs.tsv"))
    assert proc.returncode == 0, proc.stderr
    scores = np.array([float(line) for line in proc.stdout.split()])
    emb = model.encode(TEXTS)
    assert len(scores) == len(TEXTS) - 1
    assert np.abs(scores - (emb[:-1] * emb[1:]).sum(1)).max() <= 2e-6


def test_similarity_errors(tmp_path, capsys):
    assert cli.main(["similarity", "only one"]) == 2
    assert_one_line_error(capsys.readouterr().err, "exactly two texts")
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nc\td\te\n", encoding="utf-8")
    assert cli.main(["similarity", "--input", str(bad)]) == 1
    assert_one_line_error(capsys.readouterr().err, "bad.tsv:2", "3 fields")


# --------------------------------------------------------------------------------------------- search

def test_search_ranks_the_corpus_and_reuses_embeddings(model, files, tmp_path):
    from minilm_np.util import semantic_search

    query = "I need to change my password"
    proc = run_cli("search", "--corpus", str(files / "texts.txt"), "--query", query, "-k", "3")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    want = semantic_search(model.encode([query]), model.encode(TEXTS), top_k=3)[0]
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    assert [r[2] for r in rows] == [TEXTS[h["corpus_id"]] for h in want]
    assert all(abs(float(r[1]) - h["score"]) <= 1e-4 for r, h in zip(rows, want))
    saved = tmp_path / "corpus.npy"
    np.save(saved, model.encode(TEXTS))
    proc2 = run_cli("search", "--corpus", str(files / "texts.txt"), "--corpus-embeddings", str(saved),
                    "--query", query, "-k", "3")
    assert proc2.returncode == 0, proc2.stderr
    assert proc2.stdout == proc.stdout


def test_search_errors(files, tmp_path, capsys):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 384), np.float32))
    assert cli.main(["search", "--corpus", str(files / "texts.txt"), "--corpus-embeddings", str(wrong),
                     "--query", "x"]) == 1
    assert_one_line_error(capsys.readouterr().err, "wrong.npy", f"{len(TEXTS)} lines")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["search", "--corpus", str(files / "texts.txt")])  # no --query
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "--query")


# ------------------------------------------------------------------------------------ info and warmup

def test_info_and_warmup(model_dir, capsys):
    proc = run_cli("info")
    assert proc.returncode == 0, proc.stderr
    for key in ("source", "layers", "hidden_size", "parameters", "backend", "cpu_features", "numba_cache"):
        assert f"{key}:" in proc.stdout, key
    assert "22565376" in proc.stdout  # all-MiniLM-L6-v2's parameter count
    assert cli.main(["info", "--json", "--model", model_dir, "--backend", "numpy"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backend"] == "numpy" and info["embedding_dim"] == 384 and info["layers"] == 6
    proc = run_cli("warmup", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert "compiled and cached" in proc.stderr and "w8a8" in proc.stderr
    # nothing left to compile, for any mode, thread count or batch shape a later process uses
    check = subprocess.run([sys.executable, "-c", AFTER_WARMUP], capture_output=True, text=True, env=ENV,
                           timeout=600, cwd=REPO)
    assert check.returncode == 0, check.stderr[-3000:]
    assert check.stdout.split() == ["compiles", "0"], check.stdout + check.stderr
    assert "compiling" not in check.stderr


# Encodes in every mode with shapes warmup's own calls do not repeat, then prints numba's compile count.
AFTER_WARMUP = """
import minilm_np
from minilm_np.kernels import _locator
texts = ["one", "a somewhat longer sentence about the weather today", "word " * 300] * 5
for mode in (None, "w8", "w8a16", "w8a8"):
    for threads in (1, 2):
        model = minilm_np.load(quantize=mode, threads=threads)
        model.encode(texts, batch_size=4)
        model.encode(texts[0])
        model.encode(texts[:2], output_value="token_embeddings")
        model.similarity(model.encode(texts[:2]), model.encode(texts[1:3]))
print("compiles", _locator.compiles)
"""


# --------------------------------------------------------------------------------------------- parity

@pytest.mark.skipif(not HAVE_ST, reason="sentence-transformers is not installed")
def test_parity_prints_the_figures(files):
    proc = run_cli("parity", "--input", str(files / "texts.txt"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"token ids:        {len(TEXTS)}/{len(TEXTS)} texts identical" in out
    max_abs = float(out.split("max abs diff:")[1].split()[0])
    min_cos = float(out.split("min cosine:")[1].split()[0])
    assert max_abs <= 2e-6 and min_cos >= 0.999999
    assert "verdict:          PASS" in out


def test_parity_errors(tmp_path, monkeypatch, capsys):
    assert cli.main(["parity", "--input", str(tmp_path / "missing.txt")]) == 1
    assert_one_line_error(capsys.readouterr().err, "missing.txt")
    texts = tmp_path / "t.txt"
    texts.write_text("hello\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if it were not installed
    assert cli.main(["parity", "--input", str(texts)]) == 1
    assert_one_line_error(capsys.readouterr().err, "sentence-transformers is not installed",
                          "pip install torch==2.13.0")


def test_parity_texts_and_verdict(tmp_path, monkeypatch):
    from minilm_np import parity

    texts, where = parity.parity_texts()  # a source checkout: the committed corpus
    assert where.endswith("parity_corpus.json") and len(texts) > 100
    monkeypatch.setattr(parity, "CHECKOUT_CORPUS", str(tmp_path / "absent.json"))  # an installed package
    texts, where = parity.parity_texts()
    assert texts == parity.SAMPLE_TEXTS and "built-in" in where
    listed = tmp_path / "texts.json"
    listed.write_text(json.dumps(["a", "b"]), encoding="utf-8")
    assert parity.parity_texts(str(listed)) == (["a", "b"], str(listed))
    listed.write_text(json.dumps({"a": 1}), encoding="utf-8")
    with pytest.raises(ValueError, match="list of strings"):
        parity.parity_texts(str(listed))

    class Model:
        source, backend, threads, quantization = "dir", "numba", 1, None

    figures = {"n_texts": 2, "same_ids": 1, "first_id_mismatch": 1, "max_abs": 3e-6, "worst_text": 0,
               "mean_abs": 1e-7, "min_cos": 0.9999999, "min_cos_text": 1}
    lines = parity.report(figures, ["a", "b"], "here", Model())
    assert "1/2 texts identical (first difference: text 1: 'b')" in "\n".join(lines)
    assert lines[-1].split()[1] == "FAIL"
    lines = parity.report(dict(figures, same_ids=2, first_id_mismatch=None, max_abs=1e-7), ["a", "b"], "here",
                          Model())
    assert lines[-1].split()[1] == "PASS"


# ---------------------------------------------------------------------------------------------- bench

@pytest.mark.skipif(not os.path.isfile(os.path.join(REPO, "bench", "run.py")), reason="no bench/ (not a checkout)")
def test_bench_runs_the_harness(tmp_path, capsys):
    out = tmp_path / "bench.md"
    proc = run_cli("bench", "--runtimes", "minilm-np", "--threads", "1", "--rounds", "1", "--limit", "5",
                   "--latency-calls", "2", "--no-cold", "--gap", "0", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = out.read_text(encoding="utf-8")
    assert "minilm-np fp32 (numba)" in report and "tokens/s" in report
    assert os.path.isfile(str(out)[:-3] + ".json")
    proc = run_cli("bench", "--threads", "zero")
    assert proc.returncode == 2 and "--threads" in proc.stderr
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--help"])
    assert exit_info.value.code == 0 and "bench -- --help" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- quantize

@pytest.mark.skipif(importlib.util.find_spec("minilm_np.quantize") is None, reason="minilm_np.quantize is missing")
def test_quantize_writes_a_model_that_embeds(model, tmp_path):
    out = tmp_path / "w8"
    proc = run_cli("quantize", "--mode", "w8", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.safetensors").is_file() or any(out.iterdir())
    proc = run_cli("embed", "--model", str(out), TEXTS[0])
    assert proc.returncode == 0, proc.stderr
    got = np.array(json.loads(proc.stdout)["embedding"], dtype=np.float32)
    assert float(got @ model.encode(TEXTS[0])) >= 0.99  # int8 weights: close, not equal


def test_quantize_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["quantize", "--output", "somewhere"])  # no --mode
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "--mode")


# ------------------------------------------------------------------------------------- general errors

@pytest.mark.parametrize("argv, fragment", [
    ([], "a command is required"),
    (["embed"], "give texts as arguments or --input"),
    (["embed", "a", "--input", "x.txt"], "not both"),
    (["embed", "a", "--output", "x.txt"], ".npy, .jsonl, .csv or .parquet"),
    (["embed", "a", "--no-normalize"], "--no-normalize"),
])
def test_usage_errors_exit_2_with_one_line(argv, fragment, capsys):
    assert cli.main(argv) == 2
    assert_one_line_error(capsys.readouterr().err, fragment)


@pytest.mark.parametrize("argv, fragment", [
    (["nonsense"], "invalid choice"),
    (["embed", "a", "--batch-size", "0"], "--batch-size"),
    (["embed", "a", "--truncate-dim", "-3"], "--truncate-dim"),
    (["embed", "a", "--threads", "x"], "--threads"),
    (["search", "--corpus", "c.txt", "--query", "q", "-k", "0"], "-k"),
    (["info", "--backend", "cuda"], "--backend"),
])
def test_argparse_errors_exit_2_with_one_line(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, fragment)


def test_runtime_errors_exit_1_without_traceback_unless_debug(tmp_path, capsys):
    missing = str(tmp_path / "missing.txt")
    proc = run_cli("embed", "--input", missing)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "minilm-np embed: error:", "missing.txt")
    for argv in (["--debug", "embed", "--input", missing], ["embed", "--input", missing, "--debug"]):
        proc = run_cli(*argv)
        assert proc.returncode == 1 and "Traceback" in proc.stderr and "missing.txt" in proc.stderr, argv
    proc = run_cli("usage-error-is-two")
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "invalid choice")
    assert cli.main(["embed", "--model", str(tmp_path / "no-such-model"), "a"]) == 1
    assert_one_line_error(capsys.readouterr().err, "ModelNotFoundError", "no-such-model")
    assert cli.main(["info", "--model", str(tmp_path)]) == 1  # a directory that is not a model
    assert_one_line_error(capsys.readouterr().err, "ModelFileError", str(tmp_path))
