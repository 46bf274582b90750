"""What the model-file checks cost a warm start: fresh processes, load() and the first encode().

Three variants, each run ``--runs`` times in fresh processes (interleaved, after one untimed
run each that fills numba's cache and the page cache), medians reported:

``before``
    the source tree of ``--baseline`` (a git revision, exported with ``git archive``).
``after``
    this tree, the model file already recorded as finite (the usual warm start).
``after-scan``
    this tree with an empty record directory, so every process scans all weights (a first
    load, or a cache directory that is not writable).

Each process also reports the time spent inside :func:`minilm_np.finite.check_finite_tensors`
(the after variants), which is the checks' cost without the noise of the rest of the load.

    HF_HUB_OFFLINE=1 python bench/load_checks.py                     # 7 runs, baseline e91f363
    HF_HUB_OFFLINE=1 python bench/load_checks.py --runs 11 --baseline main
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import minilm_np
spent = [0.0]
try:
    from minilm_np import finite
    from minilm_np import safetensors_io
    inner = safetensors_io.check_finite_tensors
    def timed(*args):
        start = time.perf_counter()
        try:
            return inner(*args)
        finally:
            spent[0] += time.perf_counter() - start
    safetensors_io.check_finite_tensors = timed
except ImportError:
    spent = [None]
t1 = time.perf_counter()
model = minilm_np.load()
t2 = time.perf_counter()
model.encode("hello world")
t3 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "load_ms": (t2 - t1) * 1e3, "first_encode_ms": (t3 - t2) * 1e3,
                  "checks_ms": None if spent[0] is None else spent[0] * 1e3}))
"""


def run_child(src, env):
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=src, env=env, capture_output=True, text=True,
                         timeout=900, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", default="e91f363", help="git revision for the 'before' variant")
    args = parser.parse_args()
    from minilm_np.kernels._numba_env import default_cache_dir

    work = tempfile.mkdtemp(prefix="load-checks-")
    baseline = os.path.join(work, "baseline")
    os.makedirs(baseline)
    archive = subprocess.run(["git", "-C", REPO, "archive", args.baseline], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", baseline], input=archive, check=True)
    base_env = dict(os.environ, HF_HUB_OFFLINE="1", NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR",
                                                                                    default_cache_dir()))
    variants = {"before": (baseline, dict(base_env, PYTHONPATH=baseline)),
                "after": (REPO, dict(base_env, PYTHONPATH=REPO)),
                "after-scan": (REPO, dict(base_env, PYTHONPATH=REPO))}
    results = {name: [] for name in variants}
    for name, (src, env) in variants.items():  # untimed: compile or load kernels, record the file
        run_child(src, env)
    for _ in range(args.runs):
        for name, (src, env) in variants.items():
            if name == "after-scan":
                env = dict(env, XDG_CACHE_HOME=tempfile.mkdtemp(dir=work))  # no record: a full scan
            results[name].append(run_child(src, env))
    print(f"{args.runs} fresh processes per variant, medians (ms); baseline {args.baseline}")
    print(f"{'variant':<12} {'import':>8} {'load':>8} {'1st encode':>11} {'checks':>8}")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) if rows[0][k] is not None else None for k in rows[0]}
        checks = "-" if med["checks_ms"] is None else f"{med['checks_ms']:.2f}"
        print(f"{name:<12} {med['import_ms']:8.1f} {med['load_ms']:8.1f} {med['first_encode_ms']:11.1f} {checks:>8}")
    print("raw:", json.dumps(results))


if __name__ == "__main__":
    main()
