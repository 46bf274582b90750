"""Rerank latency: one query against 50 passages of ~100 tokens, with a cross-encoder, same machine, same run.

    python bench/rerank.py [--threads 1,2] [--rounds 5] [--calls 20] [--model-dir DIR] [--quick]
                           [--runtimes ce-minilm-np,ce-minilm-np-w8a8,ce-sentence-transformers,ce-ort-fp32,ce-ort-int8]

Runtimes: minilm-np fp32 and w8a8 (``CrossEncoder.rank``), sentence-transformers'
``CrossEncoder.rank`` on torch, and ONNX Runtime (fp32 and dynamic int8) on the exported
``BertForSequenceClassification`` with the same tokenizer, padding to the longest pair, batch 32.
Each runtime/thread-count pair is a long-lived worker (bench/peers.py's :class:`~peers.Worker`
and thread environment); in each round every worker in turn (order rotated) times ``--calls``
reranks while the others wait. p50 and p99 are over all timed calls of all rounds.

The model: ``--model-dir`` (e.g. a downloaded cross-encoder/ms-marco-MiniLM-L6-v2), else the
all-MiniLM-L6-v2 body with a seeded random head that tests/make_cross_encoder.py writes (the same
6-layer, 384-wide BERT: the timings are those of ms-marco-MiniLM-L6-v2's shape).
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
import run  # noqa: E402

N_PASSAGES = 50
PASSAGE_TOKENS = 100
QUERY = "how does the garbage collector decide when to free memory"
# name -> (adapter kind, quantize or ONNX file, label)
RUNTIMES = {
    "ce-minilm-np": ("minilm", None, "minilm-np fp32"),
    "ce-minilm-np-w8a8": ("minilm", "w8a8", "minilm-np w8a8"),
    "ce-sentence-transformers": ("st", None, "sentence-transformers fp32 (torch)"),
    "ce-ort-fp32": ("ort", "model.onnx", "ONNX Runtime fp32"),
    "ce-ort-int8": ("ort", "model.int8.onnx", "ONNX Runtime int8 (dynamic)"),
}
BATCH_SIZE = 32


def passages(model_dir, corpus=run.DEFAULT_CORPUS, n=N_PASSAGES, tokens=PASSAGE_TOKENS):
    """``n`` passages of 90-120% of ``tokens`` word pieces each: consecutive corpus lines joined."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    out, current, count = [], [], 0
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            length = len(tok.encode(line, add_special_tokens=False).ids)
            if not line or count + length > tokens * 1.2:
                continue
            current.append(line)
            count += length
            if count >= tokens * 0.9:
                out.append(" ".join(current))
                current, count = [], 0
                if len(out) == n:
                    return out
    raise SystemExit(f"{corpus}: not enough text for {n} passages")


# ---------------------------------------------------------------------------------------------
# Runtime adapters (inside the workers): rank(query, documents) -> scores in input order.

class MiniLMReranker:
    def __init__(self, quantize, model_dir, threads, onnx_dir):
        import minilm_np

        self.model = minilm_np.CrossEncoder(model_dir, threads=threads, quantize=quantize)
        self.info = repr(self.model)

    def scores(self, query, documents):
        return self.model.predict([(query, d) for d in documents], batch_size=BATCH_SIZE, activation_fn="identity")

    def rank(self, query, documents):
        return self.model.rank(query, documents, batch_size=BATCH_SIZE)


class STReranker:
    def __init__(self, _, model_dir, threads, onnx_dir):
        import torch
        from sentence_transformers import CrossEncoder

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = CrossEncoder(model_dir, device="cpu")
        self.info = f"torch threads={torch.get_num_threads()}"

    def scores(self, query, documents):
        return self.model.predict([(query, d) for d in documents], batch_size=BATCH_SIZE,
                                  activation_fn=self.torch.nn.Identity(), show_progress_bar=False)

    def rank(self, query, documents):
        return self.model.rank(query, documents, batch_size=BATCH_SIZE, show_progress_bar=False)


class OrtReranker:
    """ONNX Runtime on the exported classifier: pairs tokenised with the model's tokenizer (longest_first),
    padded to the longest of each batch, longest first."""

    def __init__(self, onnx_file, model_dir, threads, onnx_dir):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        import minilm_np.config

        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=minilm_np.config.read_config(model_dir).max_seq_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(os.path.join(onnx_dir, onnx_file), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.info = f"{onnx_file}, intra_op={threads}, inter_op=1, ORT_ENABLE_ALL"

    def scores(self, query, documents):
        order = np.argsort([-len(d) for d in documents], kind="stable")
        out = np.empty(len(documents), np.float32)
        for start in range(0, len(documents), BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            enc = self.tokenizer.encode_batch([(query, documents[i]) for i in idx])
            feed = {"input_ids": np.array([e.ids for e in enc], np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                    "token_type_ids": np.array([e.type_ids for e in enc], np.int64)}
            out[idx] = self.session.run(None, feed)[0][:, 0]
        return out

    def rank(self, query, documents):
        scores = self.scores(query, documents)
        return [{"corpus_id": int(i), "score": float(scores[i])} for i in np.argsort(-scores, kind="stable")]


ADAPTERS = {"minilm": MiniLMReranker, "st": STReranker, "ort": OrtReranker}


def worker_main(args):
    """The JSON-lines protocol of :class:`peers.Worker`: load, rerank (timed calls), scores, quit."""
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # library output goes to the log, not into the protocol
    texts = peers.read_texts_json(args.texts)
    query, documents = texts[0], texts[1:]
    runtime = None
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            if req["cmd"] == "quit":
                proto.write(json.dumps({"ok": True}) + "\n")
                break
            if req["cmd"] == "load":
                kind, option, _ = RUNTIMES[args.runtime]
                t0 = time.perf_counter()
                runtime = ADAPTERS[kind](option, args.model_dir, args.threads, args.onnx_dir)
                reply = {"ok": True, "load_s": time.perf_counter() - t0, "info": runtime.info,
                         "versions": peers.versions()}
            elif req["cmd"] == "scores":
                reply = {"ok": True, "scores": np.asarray(runtime.scores(query, documents), np.float64).tolist()}
            elif req["cmd"] == "rerank":
                for _ in range(int(req.get("warmup", 0))):
                    runtime.rank(query, documents)
                times, hits = [], []
                for _ in range(int(req["calls"])):
                    t0 = time.perf_counter()
                    hits = runtime.rank(query, documents)
                    times.append((time.perf_counter() - t0) * 1e3)
                reply = {"ok": True, "times_ms": times, "top": [h["corpus_id"] for h in hits[:10]]}
            else:
                raise ValueError(f"unknown command {req['cmd']!r}")
        except Exception as exc:  # noqa: BLE001 - reported to the parent, the worker lives on
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        proto.write(json.dumps(reply) + "\n")
    proto.close()


# ---------------------------------------------------------------------------------------------
# The parent.

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what")
    w = sub.add_parser("worker")
    for flag in ("--runtime", "--model-dir", "--texts", "--onnx-dir"):
        w.add_argument(flag)
    w.add_argument("--threads", type=int)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default: 1,2)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default: 5)")
    parser.add_argument("--calls", type=int, default=20, help="timed reranks per worker and round (default: 20)")
    parser.add_argument("--model-dir", help="a BertForSequenceClassification directory (default: MiniLM body, "
                        "random head, written once into the cache)")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"subset of {', '.join(RUNTIMES)}")
    parser.add_argument("--cache-dir", help="ONNX export cache (default: bench/run.py's)")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 calls, 1 thread: checks the harness")
    args = parser.parse_args(argv)
    if args.what == "worker":
        return worker_main(args)
    if args.quick:
        args.rounds, args.calls, args.threads = 1, 3, "1"
    names = peers.parse_runtimes(args.runtimes, RUNTIMES)
    threads_list = [int(t) for t in args.threads.split(",")]
    cache = peers.onnx_cache_dir(args.cache_dir)
    model_dir = args.model_dir
    if model_dir is None:
        sys.path.insert(0, os.path.join(peers.REPO_ROOT, "tests"))
        from make_cross_encoder import write_minilm_cross_encoder

        model_dir = os.path.join(os.path.dirname(cache), "minilm-random-cross-encoder")
        if not os.path.exists(os.path.join(model_dir, "model.safetensors")):
            write_minilm_cross_encoder(model_dir, seed=0)
    work = tempfile.mkdtemp(prefix="rerank-bench-")
    texts_file = os.path.join(work, "texts.json")
    documents = passages(model_dir)
    with open(texts_file, "w", encoding="utf-8") as f:
        json.dump([QUERY] + documents, f)
    onnx_dir, onnx_error = None, None
    if any(RUNTIMES[n][0] == "ort" for n in names):
        run.log("ONNX export (cached after the first run)")
        onnx_dir, meta, onnx_error = peers.ensure_onnx(model_dir, cache, os.path.join(work, "export.log"))
        if onnx_error:
            run.log(f"ONNX export failed: {onnx_error}")
    workers = []
    for name in names:
        for threads in threads_list:
            if RUNTIMES[name][0] == "ort" and onnx_error:
                continue
            worker = peers.Worker(name, threads, model_dir, texts_file, os.path.join(work, f"{name}-{threads}.log"),
                                  onnx_dir, script=os.path.abspath(__file__))
            try:
                worker.info = worker.request({"cmd": "load"})["info"]
                worker.scores = np.array(worker.request({"cmd": "scores"})["scores"])
                worker.request({"cmd": "rerank", "calls": 0, "warmup": 3})
                worker.times = []
                workers.append(worker)
                run.log(f"loaded {name} @{threads}t: {worker.info}")
            except peers.WorkerError as error:
                run.log(f"{name} @{threads}t failed: {error}")
                worker.fail(str(error))
    for r in range(args.rounds):
        for worker in workers[r % max(len(workers), 1):] + workers[:r % max(len(workers), 1)]:
            reply = worker.request({"cmd": "rerank", "calls": args.calls})
            worker.times += reply["times_ms"]
        run.log(f"round {r + 1}/{args.rounds} done")
    for worker in workers:
        worker.close()
    print(report(workers, model_dir, threads_list, args, documents))


def report(workers, model_dir, threads_list, args, documents):
    """The markdown table: p50/p99 per runtime and thread count, score agreement, ratios of p50."""
    lengths = [len(d) for d in documents]
    pieces = f"{int(PASSAGE_TOKENS * 0.9)}-{int(PASSAGE_TOKENS * 1.2)}"
    lines = [f"# Rerank latency: 1 query x {len(documents)} passages ({pieces} word pieces each)", "",
             f"- model: `{model_dir}`", f"- machine: {run.machine_info().get('cpu')}, {os.cpu_count()} logical CPUs",
             f"- {args.rounds} rounds x {args.calls} calls per worker; p50/p99 over all calls; "
             f"passages {min(lengths)}-{max(lengths)} characters", "",
             "| runtime | threads | p50 ms | p99 ms | max abs score diff vs sentence-transformers |",
             "|---|---:|---:|---:|---:|"]
    reference = {w.threads: w.scores for w in workers if w.name == "ce-sentence-transformers"}
    p50 = {}
    for worker in workers:
        t = np.array(worker.times)
        p50[(worker.name, worker.threads)] = float(np.percentile(t, 50))
        ref = reference.get(worker.threads)
        diff = f"{np.abs(worker.scores - ref).max():.1e}" if ref is not None else "-"
        lines.append(f"| {RUNTIMES[worker.name][2]} | {worker.threads} | {np.percentile(t, 50):.1f} | "
                     f"{np.percentile(t, 99):.1f} | {diff} |")
    lines += ["", "| ratio of p50 | threads | value |", "|---|---:|---:|"]
    for threads in threads_list:
        for ours, peer in (("ce-minilm-np", "ce-sentence-transformers"), ("ce-minilm-np", "ce-ort-fp32"),
                           ("ce-minilm-np-w8a8", "ce-ort-int8")):
            if (ours, threads) in p50 and (peer, threads) in p50:
                lines.append(f"| {RUNTIMES[ours][2]} / {RUNTIMES[peer][2]} | {threads} | "
                             f"{p50[(ours, threads)] / p50[(peer, threads)]:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
