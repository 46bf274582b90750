"""Does a long embedding loop reach a steady RSS? Embed N texts in batches and watch the memory.

Embeds ``--texts`` texts (default 50,000) from ``bench/corpus.txt``, cycled, ``--batch`` at a
time (one ``encode`` call each, results dropped), and prints the resident set size (VmRSS)
and its peak (VmHWM) every ``--every`` batches. The summary gives RSS after the warm-up
batches, at the end, the maximum, and the growth after warm-up; a steady state shows as a
growth of a few MB at most (allocator noise), a leak as growth proportional to the texts.

    HF_HUB_OFFLINE=1 python bench/rss_loop.py                        # 50,000 texts, 1 thread
    HF_HUB_OFFLINE=1 python bench/rss_loop.py --texts 5000 --every 2  # a quick look
"""
import argparse
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_mb():
    """(current RSS, peak RSS) of this process in MiB; peak only where /proc is missing."""
    try:
        with open("/proc/self/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
        return peak, peak


def read_corpus(path):
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def batches(corpus, n_texts, batch):
    """``n_texts`` texts in lists of ``batch``, walking the corpus round and round."""
    start = 0
    for first in range(0, n_texts, batch):
        size = min(batch, n_texts - first)
        yield [corpus[(start + i) % len(corpus)] for i in range(size)]
        start = (start + size) % len(corpus)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500, help="texts per encode() call")
    parser.add_argument("--every", type=int, default=10, help="report every N batches")
    parser.add_argument("--warmup", type=int, default=10, help="batches before the steady-state baseline")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="numba", choices=["numba", "numpy"])
    parser.add_argument("--quantize", default=None)
    parser.add_argument("--corpus", default=os.path.join(HERE, "corpus.txt"))
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--json", default=None, help="also write the samples and summary here")
    args = parser.parse_args(argv)

    import minilm_np

    corpus = read_corpus(args.corpus)
    print(f"RSS before loading: {rss_mb()[0]:.1f} MB", flush=True)
    model = minilm_np.load(args.model_dir, threads=args.threads, backend=args.backend, quantize=args.quantize)
    print(f"RSS after loading {model!r}: {rss_mb()[0]:.1f} MB", flush=True)
    print(f"{'batch':>6} {'texts':>7} {'seconds':>8} {'RSS MB':>8} {'peak MB':>8}", flush=True)

    samples, baseline, started, done = [], None, time.perf_counter(), 0
    for number, texts in enumerate(batches(corpus, args.texts, args.batch), start=1):
        vectors = model.encode(texts, batch_size=32)
        assert vectors.shape[0] == len(texts)
        done += len(texts)
        del vectors
        if number == args.warmup:
            baseline = rss_mb()[0]
        if number % args.every == 0 or done == args.texts:
            rss, peak = rss_mb()
            samples.append({"batch": number, "texts": done, "seconds": round(time.perf_counter() - started, 1),
                            "rss_mb": round(rss, 1), "peak_mb": round(peak, 1)})
            print(f"{number:>6} {done:>7} {samples[-1]['seconds']:>8} {rss:>8.1f} {peak:>8.1f}", flush=True)

    after_warmup = [s["rss_mb"] for s in samples if s["batch"] >= args.warmup]
    summary = {"texts": done, "batch": args.batch, "threads": args.threads, "backend": args.backend,
               "quantize": args.quantize, "rss_after_warmup_mb": baseline, "rss_end_mb": samples[-1]["rss_mb"],
               "rss_max_sampled_mb": max(s["rss_mb"] for s in samples), "peak_mb": samples[-1]["peak_mb"],
               "growth_after_warmup_mb": round(max(after_warmup) - baseline, 1) if baseline and after_warmup
               else None, "seconds": samples[-1]["seconds"]}
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"summary": summary, "samples": samples}, f, indent=1)


if __name__ == "__main__":
    main()
