"""Agreement of every runtime/mode with sentence-transformers fp32, text by text.

For each runtime and corpus: cosine of each text's embedding with sentence-transformers'
(mean and min over the texts) and the largest absolute difference of any component.  Used to
compare minilm-np's int8 modes with ONNX Runtime's dynamic int8 on the same texts.

    python bench/accuracy.py [--corpus bench/corpus.txt] [--no-parity] [--runtimes a,b] [--threads 2]
                             [--limit N] [--out bench/results/accuracy.md]

Corpora: ``--corpus`` (one text per line) and, when it exists, ``tests/data/parity_corpus.json``
(a JSON list of strings).  Each runtime runs in its own worker process (bench/peers.py), one
after another.  ``bench/run.py --accuracy`` computes the same table with its benchmark workers.
"""
import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402

REFERENCE = "sentence-transformers"
PARITY_CORPUS = os.path.join(peers.REPO_ROOT, "tests", "data", "parity_corpus.json")
DEFAULT_CORPUS = os.path.join(peers.BENCH_DIR, "corpus.txt")


def read_corpus(path, limit=None):
    """Texts of a corpus: a JSON list of strings, or one text per line (blank lines skipped)."""
    if path.endswith(".json"):
        texts = peers.read_texts_json(path)
    else:
        with open(path, encoding="utf-8") as f:
            texts = [line.rstrip("\r\n") for line in f if line.strip()]
    return texts[:limit] if limit else texts


def compare(emb, ref):
    """Per-text cosine with the reference (mean, min, where) and the max abs difference."""
    emb = np.asarray(emb, np.float64)
    ref = np.asarray(ref, np.float64)
    if emb.shape != ref.shape:
        raise ValueError(f"shape {emb.shape} vs reference {ref.shape}")
    num = (emb * ref).sum(axis=1)
    den = np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1)
    cos = num / np.maximum(den, 1e-30)
    i = int(np.argmin(cos))
    diff = np.abs(emb - ref)
    return {"n_texts": int(len(cos)), "cos_mean": float(cos.mean()), "cos_min": float(cos.min()), "cos_min_index": i,
            "cos_p01": float(np.percentile(cos, 1)), "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean())}


def corpora_for(corpus_path, texts, parity=True):
    """[(label, texts)]: the benchmark corpus and, when present, the parity corpus."""
    out = [(os.path.relpath(corpus_path, peers.REPO_ROOT) if os.path.isabs(corpus_path) else corpus_path, texts)]
    if parity and os.path.isfile(PARITY_CORPUS):
        out.append((os.path.relpath(PARITY_CORPUS, peers.REPO_ROOT), read_corpus(PARITY_CORPUS)))
    return out


def embed_corpora(worker, corpora, workdir, timeout=3600.0):
    """{label: embeddings or error string} from one live worker."""
    out = {}
    for k, (label, texts) in enumerate(corpora):
        tf = os.path.join(workdir, f"acc-texts-{k}.json")
        if not os.path.isfile(tf):
            with open(tf, "w", encoding="utf-8") as f:
                json.dump(texts, f)
        npy = os.path.join(workdir, f"acc-{worker.name}-{worker.threads}-{k}.npy")
        try:
            worker.request({"cmd": "embed", "texts_file": tf, "out": npy}, timeout=timeout)
            out[label] = np.load(npy)
            os.unlink(npy)
        except peers.WorkerError as exc:
            out[label] = f"{exc}"
            if exc.dead:
                break
    return out


def evaluate(embeddings, corpora, reference=REFERENCE):
    """embeddings: {runtime: {label: array or error}} -> {label: {runtime: metrics or {"error": ...}}}."""
    table = {}
    for label, _ in corpora:
        ref = embeddings.get(reference, {}).get(label)
        rows = {}
        for name, per in embeddings.items():
            got = per.get(label, "not run")
            if isinstance(got, str):
                rows[name] = {"error": got}
            elif ref is None or isinstance(ref, str):
                rows[name] = {"error": f"no reference ({reference}: {ref or 'not run'})"}
            else:
                try:
                    rows[name] = compare(got, ref)
                except ValueError as exc:
                    rows[name] = {"error": str(exc)}
        table[label] = rows
    return table


def render(table, reference=REFERENCE):
    lines = []
    for label, rows in table.items():
        n = next((r["n_texts"] for r in rows.values() if "n_texts" in r), "?")
        lines += [f"**{label}** ({n} texts), reference {reference} fp32:", "",
                  "| runtime | cosine mean | cosine min | 1 - cosine min | cosine p1 | max abs diff | mean abs diff |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, r in rows.items():
            label_ = peers.spec_of(name)["label"]
            if "error" in r:
                err = r["error"].splitlines()[0][:160] if r["error"] else "?"
                lines.append(f"| {label_} | n/a | | | | | {err} |")
            else:
                lines.append(f"| {label_} | {r['cos_mean']:.8f} | {r['cos_min']:.6f} | {1 - r['cos_min']:.1e} | "
                             f"{r['cos_p01']:.6f} | "
                             f"{r['max_abs_diff']:.2e} | {r['mean_abs_diff']:.2e} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=DEFAULT_CORPUS, help="one text per line, or a .json list of strings")
    parser.add_argument("--no-parity", action="store_true", help=f"skip {os.path.relpath(PARITY_CORPUS)}")
    parser.add_argument("--runtimes", default=",".join(peers.RUNTIMES), help="comma-separated; "
                        f"known: {', '.join(peers.RUNTIMES)}")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="first N texts of --corpus only")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--cache-dir", default=None, help="where the exported ONNX models are cached")
    parser.add_argument("--out", default=None, help="markdown file (a .json with the numbers is written beside it)")
    args = parser.parse_args(argv)

    model_dir = args.model_dir or peers.find_model_dir()
    names = peers.parse_runtimes(args.runtimes)
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    texts = read_corpus(args.corpus, args.limit)
    corpora = corpora_for(args.corpus, texts, not args.no_parity)
    workdir = tempfile.mkdtemp(prefix="minilm-np-accuracy-")
    onnx_dir, onnx_meta, onnx_error = None, {}, None
    if any(peers.RUNTIMES[n]["kind"] == "ort" for n in names):
        print("ONNX models: exporting / checking the cache ...", file=sys.stderr)
        onnx_dir, onnx_meta, onnx_error = peers.ensure_onnx(model_dir, peers.onnx_cache_dir(args.cache_dir),
                                                            os.path.join(workdir, "onnx-export.log"))
    embeddings = {}
    for name in names:
        print(f"{name}: embedding {sum(len(t) for _, t in corpora)} texts ...", file=sys.stderr)
        if peers.RUNTIMES[name]["kind"] == "ort" and onnx_error:
            embeddings[name] = {label: onnx_error for label, _ in corpora}
            continue
        w = peers.Worker(name, args.threads, model_dir, None, os.path.join(workdir, f"{name}.log"), onnx_dir)
        try:
            w.request({"cmd": "load"}, timeout=900)
            embeddings[name] = embed_corpora(w, corpora, workdir)
        except peers.WorkerError as exc:
            embeddings[name] = {label: str(exc) for label, _ in corpora}
        finally:
            w.close()
    table = evaluate(embeddings, corpora)
    cmd = " ".join(shlex.quote(a) for a in ["python"] + sys.argv)
    date = f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    md = (f"# minilm-np accuracy vs sentence-transformers\n\n- date: {date}\n"
          f"- command: `{cmd}`\n- threads: {args.threads}\n- model: `{model_dir}`\n\n" + render(table))
    print(md)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(md)
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump({"command": cmd, "model_dir": model_dir, "threads": args.threads, "onnx": onnx_meta,
                       "accuracy": table}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
