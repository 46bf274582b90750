"""Warm start (import, load, one sentence) and throughput of each runtime, in fresh processes.

    python bench/startup.py [--repeats 7] [--threads 2] [--runtimes minilm-np,minilm-np-w8a8-dir,...]
                            [--python VENV/bin/python]

Each repeat starts one fresh process per runtime, the runtimes interleaved so that a change in the
machine's load hits them all alike; the table gives medians. ``minilm-np-w8a8-dir`` loads the
directory ``minilm-np quantize --mode w8a8`` writes (made once, in a temporary folder), as deployed.
Every runtime first runs once untimed (OS file cache and numba's kernel cache warm). Tokens/s: one
fresh process per runtime encodes the first ``--texts`` lines of bench/corpus.txt in batches of 32
after one untimed batch. ONNX Runtime needs its export (bench/run.py makes it, cached).

``numba-floor`` is not a model: a fresh process that imports numba and calls one trivial cached
function, the least any numba program pays at start (seconds and MiB). ``--python`` runs every
fresh process under another interpreter, e.g. a venv holding only ``pip install minilm-np
onnxruntime``, as users have it (a test venv also holds scipy, which numba imports at its first
call when present: about 0.2 s more).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

W8A8_DIR = "minilm-np-w8a8-dir"
NUMBA_FLOOR = "numba-floor"
DEFAULT = ("minilm-np", W8A8_DIR, "minilm-np-numpy", "ort-fp32", NUMBA_FLOOR)
FLOOR_KERNEL = """from numba import njit


@njit(cache=True)
def one(x):
    return x + 1
"""

THROUGHPUT = """
import json, sys, time
sys.path.insert(0, {bench!r})
import peers
texts = json.load(open({texts!r}))
r = peers.make_runtime({name!r}, {model_dir!r}, {threads}, {onnx_dir!r})
r.encode(texts[:32])
t = time.perf_counter()
for i in range(0, len(texts), 32):
    r.encode(texts[i:i + 32])
print("SECONDS", time.perf_counter() - t)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", default=",".join(DEFAULT))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--texts", type=int, default=256, help="corpus lines for tokens/s (0: skip)")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--python", default=None,
                        help="interpreter of the fresh processes (default: this one); it imports its own minilm-np")
    args = parser.parse_args()
    from minilm_np.locate import resolve_model_dir
    from minilm_np.tokenizer import TextTokenizer

    model_dir = resolve_model_dir(args.model_dir)[0]
    names = args.runtimes.split(",")
    work = tempfile.mkdtemp(prefix="minilm-startup-")
    onnx_dir = None
    if any(peers.spec_of(n)["kind"] == "ort" for n in names if n not in (W8A8_DIR, NUMBA_FLOOR)):
        onnx_dir, _, error = peers.ensure_onnx(model_dir, os.path.join(os.path.expanduser("~/.cache"),
                                               "minilm-np-bench", "onnx"), os.path.join(work, "onnx.log"))
        if error:
            print(error, file=sys.stderr)
            names = [n for n in names if n in (W8A8_DIR, NUMBA_FLOOR) or peers.spec_of(n)["kind"] != "ort"]
    codes, envs = {}, {}
    for name in names:
        if name == NUMBA_FLOOR:
            with open(os.path.join(work, "floor_kernel.py"), "w") as f:
                f.write(FLOOR_KERNEL)
            codes[name] = f"import sys\nsys.path.insert(0, {work!r})\nimport floor_kernel\nfloor_kernel.one(1)\n"
            envs[name] = peers.worker_env(name, args.threads)
        elif name == W8A8_DIR:
            qdir = os.path.join(work, "w8a8")
            subprocess.run([args.python or sys.executable, "-m", "minilm_np", "quantize", model_dir, "--mode", "w8a8",
                            "--output", qdir], check=True, env=peers.worker_env("minilm-np", args.threads), cwd=work)
            codes[name] = peers.cold_start_code("minilm-np", qdir, args.threads)
            envs[name] = peers.worker_env("minilm-np", args.threads)
        else:
            codes[name] = peers.cold_start_code(name, model_dir, args.threads, onnx_dir)
            envs[name] = peers.worker_env(name, args.threads)
    log = os.path.join(work, "child.log")
    walls, rss = {n: [] for n in names}, {n: [] for n in names}
    for repeat in range(args.repeats + 1):
        for name in names:
            wall, peak, error = peers.run_cold_start(codes[name], envs[name], log, python=args.python)
            if error:
                sys.exit(f"{name}: {error}")
            if repeat:  # the first round only warms the caches
                walls[name].append(wall)
                rss[name].append(peak)
    rates = {}
    if args.texts:
        with open(os.path.join(peers.BENCH_DIR, "corpus.txt"), encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f if line.strip()][:args.texts]
        texts_path = os.path.join(work, "texts.json")
        with open(texts_path, "w") as f:
            json.dump(texts, f)
        tok = TextTokenizer(os.path.join(model_dir, "tokenizer.json"), 256, True)
        tokens = sum(len(ids) for ids in tok.encode(texts))
        for name in names:
            if name == NUMBA_FLOOR:
                continue
            runtime = "minilm-np-w8a8" if name == W8A8_DIR else name
            code = THROUGHPUT.format(bench=peers.BENCH_DIR, texts=texts_path, name=runtime, model_dir=model_dir,
                                     threads=args.threads, onnx_dir=onnx_dir)
            out = subprocess.run([args.python or sys.executable, "-c", code], env=envs[name], capture_output=True,
                                 text=True, cwd=peers.REPO_ROOT if args.python is None else work)
            seconds = float(out.stdout.split("SECONDS")[-1]) if out.returncode == 0 else None
            rates[name] = tokens / seconds if seconds and tokens else None
    print(f"{'runtime':<22} {'warm start s (median)':>22} {'min':>6} {'max':>6} {'peak RSS MiB':>13} "
          f"{'tokens/s':>9}   ({args.repeats} fresh processes each, {args.threads} threads)")
    for name in names:
        w, r = walls[name], rss[name]
        rate = f"{rates[name]:9.0f}" if rates.get(name) else f"{'-':>9}"
        print(f"{name:<22} {statistics.median(w):22.3f} {min(w):6.2f} {max(w):6.2f} {statistics.median(r):13.0f} "
              f"{rate}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"walls": walls, "rss": rss, "tokens_per_s": rates, "threads": args.threads}, f, indent=1)


if __name__ == "__main__":
    main()
