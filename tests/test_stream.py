"""``minilm-np embed --input FILE --output FILE``: streamed in chunks, renamed at the end, resumable."""
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import minilm_np
from minilm_np import cli, stream, textio

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = [f"line {i}: " + "word " * (i % 13) for i in range(53)] + ["", "東京 🙂 naïve", "comma, \"quoted\""]
CHUNK = "7"  # 56 texts: 8 chunks


@pytest.fixture(scope="module")
def small(small_model_dir):
    return minilm_np.load(small_model_dir)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "in.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    with open(d / "in.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"id": i, "body": t}, ensure_ascii=False) + "\n" for i, t in enumerate(TEXTS))
    import csv

    with open(d / "in.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(TEXTS))
    pq.write_table(pa.table({"id": list(range(len(TEXTS))), "text": TEXTS}), d / "in.parquet", row_group_size=10)
    return d


def embed(model_dir, *args):
    return cli.main(["embed", "--model", model_dir, "--chunk-size", CHUNK, "--quiet", *args])


def read_output(path):
    """(texts or None, float32 vectors) of an output file."""
    if path.endswith(".npy"):
        return None, np.load(path)
    if path.endswith(".parquet"):
        table = pq.read_table(path)
        assert table.schema.field("embedding").type == pa.list_(pa.float32(), 64)
        vectors = table.column("embedding").to_numpy(zero_copy_only=False)
        return table.column("text").to_pylist(), np.stack(vectors) if len(vectors) else np.zeros((0, 64), np.float32)
    if path.endswith(".csv"):
        return None, np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    records = [json.loads(line) for line in open(path, encoding="utf-8")]
    return [r["text"] for r in records], np.array([r["embedding"] for r in records], np.float32)


@pytest.mark.parametrize("source, extra", [("in.txt", []), ("in.jsonl", ["--field", "body"]), ("in.csv", []),
                                           ("in.parquet", [])])
@pytest.mark.parametrize("suffix", [".npy", ".parquet", ".jsonl", ".csv"])
def test_every_input_to_every_output(small_model_dir, small, inputs, tmp_path, capsys, source, extra, suffix):
    out = str(tmp_path / ("out" + suffix))
    assert embed(small_model_dir, "--input", str(inputs / source), "--output", out, *extra) == 0
    assert capsys.readouterr().err.strip().endswith(f"wrote {len(TEXTS)} x 64 float32 to {out}")
    assert sorted(os.listdir(tmp_path)) == ["out" + suffix]  # the partial folder is gone
    texts, got = read_output(out)
    want = small.encode(TEXTS)
    if texts is not None:
        assert texts == TEXTS
    if suffix in (".npy", ".parquet"):
        assert np.array_equal(got, want)
    else:
        assert np.abs(got - want).max() <= 1e-6
    if suffix == ".npy":  # byte for byte what np.save writes
        buffer = io.BytesIO()
        np.save(buffer, want)
        assert open(out, "rb").read() == buffer.getvalue()


def test_empty_input_and_stdout(small_model_dir, small, inputs, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    for suffix in (".npy", ".parquet", ".jsonl"):
        out = str(tmp_path / ("empty" + suffix))
        assert embed(small_model_dir, "--input", str(tmp_path / "empty.txt"), "--output", out) == 0
        assert len(read_output(out)[1]) == 0
    capsys.readouterr()
    assert embed(small_model_dir, "--input", str(inputs / "in.txt")) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == TEXTS


class InterruptAfter:
    """``textio.write_part``, but Ctrl-C after ``parts`` parts."""

    def __init__(self, parts, write_part):
        self.left, self.write_part = parts, write_part

    def __call__(self, *args):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        self.write_part(*args)


@pytest.mark.parametrize("suffix", [".npy", ".parquet", ".jsonl"])
def test_resume_writes_the_bytes_of_an_uninterrupted_run(small_model_dir, inputs, tmp_path, monkeypatch, capsys,
                                                         suffix):
    whole, resumed = str(tmp_path / ("whole" + suffix)), str(tmp_path / ("resumed" + suffix))
    source = ["--input", str(inputs / "in.jsonl"), "--field", "body", "--truncate-dim", "48"]
    assert embed(small_model_dir, *source, "--output", whole) == 0
    with monkeypatch.context() as patch:
        patch.setattr(textio, "write_part", InterruptAfter(3, textio.write_part))
        assert embed(small_model_dir, *source, "--output", resumed) == 130
    assert "run the same command with --resume" in capsys.readouterr().err
    assert not os.path.exists(resumed)  # nothing that looks complete
    parts = sorted(os.listdir(stream.partial_dir(resumed)))
    assert parts == [f"part-{i:06d}{suffix}" for i in range(3)] + [stream.JOURNAL]

    assert embed(small_model_dir, *source, "--output", resumed) == 1  # without --resume: refused, named
    assert "add --resume to continue it" in capsys.readouterr().err
    changed = [a if a != "48" else "32" for a in source]
    assert embed(small_model_dir, *changed, "--output", resumed, "--resume") == 1
    assert "truncate_dim was 48 in the interrupted run, now 32" in capsys.readouterr().err

    assert embed(small_model_dir, *source, "--output", resumed, "--resume") == 0
    assert open(resumed, "rb").read() == open(whole, "rb").read()
    assert not os.path.exists(stream.partial_dir(resumed))


def test_kill_mid_run_then_resume(small_model_dir, tmp_path):
    """SIGKILL while parts are being written (no cleanup at all), then --resume: the same file."""
    source = tmp_path / "big.txt"
    source.write_text("".join(f"text {i} " + "word " * (i % 50) + "\n" for i in range(3000)), encoding="utf-8")
    argv = [sys.executable, "-m", "minilm_np.cli", "embed", "--model", small_model_dir, "--input", str(source),
            "--chunk-size", "100", "--threads", "1"]
    whole, killed = str(tmp_path / "whole.npy"), str(tmp_path / "killed.npy")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(argv + ["--output", killed], cwd=REPO, env=env, stderr=subprocess.PIPE)
    first_part = os.path.join(stream.partial_dir(killed), "part-000001.npy")
    deadline = time.monotonic() + 240
    while not os.path.exists(first_part) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not os.path.exists(killed)
    done = len(os.listdir(stream.partial_dir(killed))) - 1
    assert 0 < done < 30
    for args in (["--output", killed, "--resume"], ["--output", whole]):
        result = subprocess.run(argv + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    assert open(killed, "rb").read() == open(whole, "rb").read()
    assert np.load(whole).shape == (3000, 64)


def test_progress_bar_shows_rate_and_eta(small_model_dir, inputs, tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    lines = str(tmp_path / "many.txt")
    with open(lines, "w", encoding="utf-8") as f:
        f.writelines(f"text {i}\n" for i in range(300))
    assert cli.main(["embed", "--model", small_model_dir, "--input", lines, "--output", str(tmp_path / "o.npy"),
                     "--chunk-size", "100"]) == 0
    bar = terminal.getvalue()
    assert "300/300" in bar and "text/s" in bar and "<00:00" in bar, bar


def test_input_errors_name_the_file_and_row(small_model_dir, inputs, tmp_path, capsys):
    bad = str(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"text": ["fine", None]}), bad)
    assert embed(small_model_dir, "--input", bad, "--output", str(tmp_path / "o.npy")) == 1
    assert "bad.parquet: row 1: column 'text' is NoneType, not a string" in capsys.readouterr().err
    assert embed(small_model_dir, "--input", str(inputs / "in.parquet"), "--column", "body") == 1
    assert "no column 'body' (columns: ['id', 'text'])" in capsys.readouterr().err
    assert cli.main(["embed", "--input", "-", "--output", str(tmp_path / "o.npy"), "--resume"]) == 2
    assert "--resume needs an --input file" in capsys.readouterr().err
    assert textio.count_rows(str(inputs / "in.txt")) == len(TEXTS)
    assert textio.count_rows(str(inputs / "in.parquet")) == len(TEXTS)
