"""Memory and speed of a multilingual-size model: 12 layers, 384 wide, a 250,002-piece SentencePiece vocabulary.

The shape of paraphrase-multilingual-MiniLM-L12-v2 and multilingual-e5-small, with random
weights (nothing is downloaded). ``build`` writes the model: a Unigram tokenizer like XLM-R's
(tests/model_dirs.py's pipeline, its vocabulary grown to 250,002 pieces with substrings of the
corpus words, so that a corpus reaches many rows of the table) and a random BertModel saved by
transformers and sentence-transformers. ``measure`` runs each runtime in its own process: peak
RSS (VmHWM) after loading and after embedding the corpus, and tokens/s over the corpus.

    python bench/multilingual.py build /tmp/ml-250k             # ~1 GB of disk, ~1 minute
    HF_HUB_OFFLINE=1 python bench/multilingual.py measure /tmp/ml-250k --threads 2
    HF_HUB_OFFLINE=1 python bench/multilingual.py measure /tmp/ml-250k --runtimes minilm-np-fp32 --limit 200
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_CORPUS = os.path.join(HERE, "corpus.txt")
SAMPLE = os.path.join(ROOT, "tests", "data", "multilingual_sample.txt")
RUNTIMES = ("minilm-np-fp32", "minilm-np-w8a8", "minilm-np-w8a8-dir", "sentence-transformers")
VOCAB_SIZE = 250_002  # XLM-R's 250,002 pieces (paraphrase-multilingual-MiniLM-L12-v2's config says 250,037)


def read_texts(path, limit=None):
    with open(path, encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()]
    return texts[:limit] if limit else texts


def big_tokenizer(texts, vocab_size=VOCAB_SIZE):
    """tests/model_dirs.py's Unigram tokenizer with its vocabulary grown to ``vocab_size`` pieces:
    every word of ``texts`` and its substrings (2 to 8 characters), scored by length."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from model_dirs import unigram_tokenizer
    from tokenizers import Tokenizer

    base = json.loads(unigram_tokenizer(texts=texts[:2000]).to_str())
    vocab = [piece for piece in base["model"]["vocab"] if piece[0] != "<mask>"]
    seen = {piece for piece, _ in vocab}
    for text in texts:
        for word in text.split():
            for candidate in ["▁" + word] + [word[i:i + n] for n in range(2, 9) for i in range(len(word) - n + 1)]:
                if len(vocab) >= vocab_size - 1:
                    break
                if candidate not in seen:
                    seen.add(candidate)
                    vocab.append([candidate, -2.0 - 0.5 * len(candidate)])
    n = 0
    while len(vocab) < vocab_size - 1:  # filler pieces, never matched
        vocab.append([f"\ue000{n}", -100.0])
        n += 1
    base["model"]["vocab"] = vocab
    for token in base["added_tokens"]:
        if token["content"] == "<mask>":
            token["id"] = len(vocab)
    vocab.append(["<mask>", 0.0])
    return Tokenizer.from_str(json.dumps(base))


def build(args):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from model_dirs import save_random_sentence_model

    texts = read_texts(args.corpus) + read_texts(SAMPLE)
    tokenizer = big_tokenizer(texts)
    print(f"tokenizer: {tokenizer.get_vocab_size()} pieces", flush=True)
    save_random_sentence_model(args.directory, tokenizer, num_hidden_layers=12, hidden_size=384,
                               num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512,
                               max_seq_length=128, pooling="mean", init_range=0.02,
                               prompts={"query": "query: ", "passage": "passage: "})
    if not os.path.exists(args.directory + "-w8a8"):
        from minilm_np.quantize import write_quantized

        write_quantized(args.directory, "w8a8", args.directory + "-w8a8")
    print(f"wrote {args.directory} and {args.directory}-w8a8", flush=True)


def memory_mib():
    """(VmRSS, VmHWM) of this process in MiB."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def worker(args):
    """One runtime in this process: print a JSON line with memory and speed."""
    texts = read_texts(args.corpus, args.limit)
    start = time.perf_counter()
    if args.runtime == "sentence-transformers":
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(args.threads)
        model = SentenceTransformer(args.directory, device="cpu")
        count = int(model.tokenize(texts)["attention_mask"].sum())
    else:
        import minilm_np

        quantize = "w8a8" if args.runtime == "minilm-np-w8a8" else None
        path = args.directory + "-w8a8" if args.runtime == "minilm-np-w8a8-dir" else args.directory
        model = minilm_np.SentenceTransformer(path, threads=args.threads, quantize=quantize)
        count = int(model.tokenize(texts)["attention_mask"].sum())
    load_s = time.perf_counter() - start
    rss_loaded, hwm_loaded = memory_mib()
    model.encode(texts[:64], batch_size=32)  # warm-up (numba kernels from the cache)
    best = None
    for _ in range(args.rounds):
        start = time.perf_counter()
        model.encode(texts, batch_size=32)
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    rss, hwm = memory_mib()
    print(json.dumps({"runtime": args.runtime, "threads": args.threads, "texts": len(texts), "tokens": count,
                      "load_s": round(load_s, 2), "seconds": round(best, 3), "tokens_per_s": round(count / best),
                      "rss_loaded_mib": round(rss_loaded), "hwm_loaded_mib": round(hwm_loaded),
                      "rss_end_mib": round(rss), "hwm_end_mib": round(hwm)}))


def measure(args):
    rows = []
    for runtime in args.runtimes.split(","):
        command = [sys.executable, os.path.abspath(__file__), "worker", args.directory, "--runtime", runtime,
                   "--threads", str(args.threads), "--rounds", str(args.rounds), "--corpus", args.corpus]
        if args.limit:
            command += ["--limit", str(args.limit)]
        done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        if done.returncode != 0:
            print(f"{runtime} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| runtime | threads | tokens/s | peak RSS after load (MiB) | peak RSS after the corpus (MiB) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['runtime']} | {row['threads']} | {row['tokens_per_s']:,} | {row['hwm_loaded_mib']} | "
              f"{row['hwm_end_mib']} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="write the random 250k-vocabulary model (and its w8a8 directory)")
    p.add_argument("directory")
    p.add_argument("--corpus", default=DEFAULT_CORPUS)
    for name in ("measure", "worker"):
        p = sub.add_parser(name)
        p.add_argument("directory")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--rounds", type=int, default=1)
        p.add_argument("--corpus", default=DEFAULT_CORPUS)
        p.add_argument("--limit", type=int, default=None)
        if name == "measure":
            p.add_argument("--runtimes", default=",".join(RUNTIMES))
        else:
            p.add_argument("--runtime", choices=RUNTIMES, required=True)
    args = parser.parse_args(argv)
    {"build": build, "measure": measure, "worker": worker}[args.command](args)


if __name__ == "__main__":
    main()
