"""The ``minilm-np`` command line: embed, similarity, search, quantize, bench, parity, info, warmup."""
import argparse
import csv
import gc
import io
import json
import os
import sys

EPILOGS = {
    "embed": """examples:
  minilm-np embed "A first sentence." "A second one."           # JSON lines on stdout
  minilm-np embed --input texts.txt --output vectors.npy        # one text per line
  cat texts.txt | minilm-np embed --input - --output out.jsonl
  minilm-np embed --input docs.jsonl --field body --output out.csv
  minilm-np embed --input table.csv --column text --quantize w8a8 --truncate-dim 128 --output out.npy""",
    "similarity": """examples:
  minilm-np similarity "A cat sits on the mat." "A feline rests on a rug."
  minilm-np similarity --input pairs.tsv        # two tab-separated texts per line; one score per line""",
    "search": """examples:
  minilm-np search --corpus faq.txt --query "how do I reset my password" -k 5
  minilm-np embed --input faq.txt --output faq.npy --normalize
  minilm-np search --corpus faq.txt --corpus-embeddings faq.npy --query "reset password\"""",
    "quantize": """examples:
  minilm-np quantize --mode w8a8 --output minilm-w8a8            # the default model
  minilm-np quantize path/to/model --mode w8 --output model-w8""",
    "bench": """every argument after `bench` goes to bench/run.py (source checkout only); its options:
  minilm-np bench -- --help

examples:
  minilm-np bench --quick
  minilm-np bench --threads 1,2 --rounds 5
  minilm-np bench --runtimes minilm-np,sentence-transformers --threads 2 --no-cold""",
    "parity": """needs sentence-transformers: pip install torch==2.13.0 && pip install sentence-transformers

examples:
  minilm-np parity                        # the parity corpus (source checkout) or a built-in sample
  minilm-np parity --input texts.txt --quantize w8a8""",
    "info": """examples:
  minilm-np info
  minilm-np info --model path/to/model --json""",
    "warmup": """examples:
  minilm-np warmup                        # compile every kernel set (float32, w8, w8a16, w8a8) now
  minilm-np warmup --quantize w8a8        # only the kernels w8a8 needs
  minilm-np warmup --shared               # into the install's shared cache (run as its owner)""",
}


# embed shows a progress bar (on a terminal, without --quiet) from this many texts.
PROGRESS_MIN_TEXTS = 100


class UsageError(Exception):
    """A problem with the command line itself (exit code 2)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit code 2), not the usage block too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def positive_int(text):
    """argparse type: an integer >= 1 (anything else is a usage error, exit code 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_model_options(p, quantize=True):
    p.add_argument("--model", default=None, help="model directory or hub id (default: all-MiniLM-L6-v2)")
    if quantize:
        p.add_argument("--quantize", choices=["w8", "w8a16", "w8a8"], default=None, help="int8 mode")
    p.add_argument("--threads", type=positive_int, default=None, help="threads (default: all cores)")
    p.add_argument("--backend", choices=["numba", "numpy"], default=None, help="kernel backend")


def build_parser():
    parser = OneLineParser(prog="minilm-np", description="Sentence embeddings with BERT sentence "
                                     "models (all-MiniLM-L6-v2 by default) in numpy + numba, no PyTorch.",
                                     epilog="run `minilm-np COMMAND --help` for a command's options and examples",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOGS[name],
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if name != "bench":  # (bench hands every argument after it to bench/run.py)
            # also after the command; SUPPRESS keeps an absent flag from resetting one given before it
            p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                           help="show tracebacks on errors")
        return p

    p = command("embed", "embed texts and write their vectors")
    p.add_argument("texts", nargs="*", help="texts to embed (or use --input)")
    p.add_argument("--input", "-i", help="file of texts: .txt (one per line), .jsonl (--field), .csv "
                   "(--column); - for stdin")
    p.add_argument("--field", default="text", help="JSON field of a .jsonl input (default: text)")
    p.add_argument("--column", default="text", help="column of a .csv input (default: text)")
    p.add_argument("--format", choices=["txt", "jsonl", "csv"], help="input format (default: from the suffix)")
    p.add_argument("--output", "-o", help="output .npy, .jsonl or .csv (default: JSON lines on stdout)")
    _add_model_options(p)
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per forward pass (default: 32)")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="unit-length vectors (default: as the model says)")
    p.add_argument("--truncate-dim", type=positive_int, default=None, help="keep the first N dimensions")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    p = command("similarity", "similarity of two texts, or of each pair in a TSV file")
    p.add_argument("texts", nargs="*", help="two texts")
    p.add_argument("--input", "-i", help="TSV file (- for stdin): two texts per line")
    _add_model_options(p)

    p = command("search", "rank a corpus's lines by similarity to a query")
    p.add_argument("--corpus", required=True, help="corpus file, one text per line")
    p.add_argument("--query", required=True, action="append", help="query text (repeatable)")
    p.add_argument("-k", "--top-k", type=positive_int, default=10, help="hits per query (default: 10)")
    p.add_argument("--corpus-embeddings", help=".npy of the corpus's embeddings, to reuse")
    _add_model_options(p)

    p = command("quantize", "write an int8 model directory")
    p.add_argument("model", nargs="?", default=None, help="model directory or hub id (default: all-MiniLM-L6-v2)")
    p.add_argument("--mode", choices=["w8", "w8a16", "w8a8"], required=True)
    p.add_argument("--output", "-o", required=True, help="new directory to write")

    p = command("bench", "run the benchmark harness (bench/run.py)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to bench/run.py")

    p = command("parity", "compare with sentence-transformers (when installed) and print the figures")
    p.add_argument("--input", "-i", help="texts file: .txt one per line, .jsonl (field text), .csv (column "
                   "text), .json list (default: tests/data/parity_corpus.json in a source checkout, else a "
                   "built-in sample)")
    _add_model_options(p)

    p = command("info", "model source, configuration, sizes, backend, CPU features, cache location")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_model_options(p)

    p = command("warmup", "compile and cache every numba kernel ahead of time")
    _add_model_options(p)
    p.add_argument("--shared", action="store_true",
                   help="write the cache beside the installed package, where every user's first run finds it")
    return parser


def _load(args):
    import minilm_np

    return minilm_np.load(args.model, threads=args.threads, backend=args.backend,
                          quantize=getattr(args, "quantize", None))


def _read_lines(path):
    if path == "-":
        return [line.rstrip("\r\n") for line in sys.stdin]
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\r\n") for line in f]


def read_texts(path, fmt=None, field="text", column="text"):
    """Texts from a .txt / .jsonl / .csv file or stdin (``-``)."""
    fmt = fmt or ("jsonl" if path.endswith((".jsonl", ".ndjson")) else "csv" if path.endswith(".csv") else "txt")
    if fmt == "txt":
        return _read_lines(path)
    content = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    if fmt == "jsonl":
        texts = []
        for number, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not JSON ({error})") from None
            if not isinstance(record, dict) or field not in record:
                raise ValueError(f"{path}:{number}: no field {field!r}")
            if not isinstance(record[field], str):
                raise ValueError(f"{path}:{number}: field {field!r} is {type(record[field]).__name__}, not a string")
            texts.append(record[field])
        return texts
    reader = csv.DictReader(io.StringIO(content))
    if column not in (reader.fieldnames or []):
        raise ValueError(f"{path}: no column {column!r} (columns: {reader.fieldnames})")
    return [row[column] for row in reader]


def write_vectors(vectors, path, texts):
    """Write ``(n, dim)`` vectors to .npy / .jsonl / .csv, or JSON lines on stdout."""
    import numpy as np

    if path is None or path.endswith((".jsonl", ".ndjson")):
        out = sys.stdout if path is None else open(path, "w", encoding="utf-8")
        for text, vector in zip(texts, vectors):
            out.write(json.dumps({"text": text, "embedding": [round(float(v), 7) for v in vector]},
                                 ensure_ascii=False) + "\n")
        if path is not None:
            out.close()
    elif path.endswith(".npy"):
        np.save(path, vectors)
    elif path.endswith(".csv"):
        np.savetxt(path, vectors, delimiter=",", fmt="%.7g")
    else:
        raise UsageError(f"--output {path}: use a .npy, .jsonl or .csv file")


def cmd_embed(args):
    if not args.texts and args.input is None:
        raise UsageError("embed: give texts as arguments or --input FILE (- for stdin)")
    if args.texts and args.input is not None:
        raise UsageError("embed: give texts as arguments or --input, not both")
    if args.output and not args.output.endswith((".npy", ".jsonl", ".ndjson", ".csv")):
        raise UsageError(f"--output {args.output}: use a .npy, .jsonl or .csv file")
    texts = args.texts or read_texts(args.input, args.format, args.field, args.column)
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.truncate_dim is not None and args.truncate_dim < 1:
        raise UsageError(f"--truncate-dim must be >= 1, got {args.truncate_dim}")
    model = _load(args)
    if args.normalize is False and model.config.normalize:
        raise UsageError("--no-normalize: this model normalises its vectors itself (Normalize in modules.json)")
    # A bar for inputs long enough to wait for, on a terminal only (never in a pipe or a log file).
    show = not args.quiet and len(texts) >= PROGRESS_MIN_TEXTS and sys.stderr.isatty()
    vectors = model.encode(texts, batch_size=args.batch_size, show_progress_bar=show,
                           normalize_embeddings=bool(args.normalize), truncate_dim=args.truncate_dim)
    write_vectors(vectors, args.output, texts)
    if args.output:
        print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} float32 to {args.output}", file=sys.stderr)


def cmd_similarity(args):
    if args.input is not None:
        pairs = []
        for number, line in enumerate(_read_lines(args.input), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise ValueError(f"{args.input}:{number}: expected two tab-separated texts, got {len(parts)} fields")
            pairs.append(parts)
        model = _load(args)
        a = model.encode([p[0] for p in pairs])
        b = model.encode([p[1] for p in pairs])
        for score in model.similarity_pairwise(a, b):
            print(f"{score:.6f}")
        return
    if len(args.texts) != 2:
        raise UsageError(f"similarity: give exactly two texts (got {len(args.texts)}) or --input pairs.tsv")
    model = _load(args)
    a, b = model.encode(args.texts)
    print(f"{float(model.similarity(a, b)[0, 0]):.6f}")


def cmd_search(args):
    import numpy as np

    from .util import semantic_search

    if args.top_k < 1:
        raise UsageError(f"-k must be >= 1, got {args.top_k}")
    corpus = _read_lines(args.corpus)
    model = _load(args)
    if args.corpus_embeddings:
        embeddings = np.load(args.corpus_embeddings, allow_pickle=False)
        if embeddings.ndim != 2 or len(embeddings) != len(corpus):
            raise ValueError(f"{args.corpus_embeddings}: shape {embeddings.shape} does not match the corpus's "
                             f"{len(corpus)} lines")
    else:
        embeddings = model.encode(corpus)
    queries = model.encode(args.query)
    for query, hits in zip(args.query, semantic_search(queries, embeddings, top_k=args.top_k,
                                                       score_function=model.similarity)):
        if len(args.query) > 1:
            print(f"# {query}")
        for rank, hit in enumerate(hits, 1):
            print(f"{rank}\t{hit['score']:.4f}\t{corpus[hit['corpus_id']]}")


def cmd_quantize(args):
    from .quantize import write_quantized

    path = write_quantized(args.model, args.mode, args.output)
    print(f"wrote {args.mode} model to {path}", file=sys.stderr)


def cmd_bench(args):
    import runpy

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "run.py")
    if not os.path.exists(script):
        raise RuntimeError(f"{script} not found: the bench harness ships with the source tree, not the wheel")
    sys.argv = [script] + [a for a in args.args if a != "--"]
    runpy.run_path(script, run_name="__main__")


def cmd_parity(args):
    from .parity import run_parity

    run_parity(args)


def cmd_info(args):
    from .info import model_info

    info = model_info(_load(args))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>22}: {value}")


def cmd_warmup(args):
    """Compile the kernels of float32 and every int8 mode (or the one ``--quantize`` names).

    Two threads at least, so the parallel drivers compile too even on a one-core build machine.
    """
    import time

    if args.shared:
        from .kernels._cache import SHARED_DIR

        if "numba" in sys.modules:
            raise UsageError("--shared must be given before numba is imported (use the command line)")
        try:
            os.makedirs(SHARED_DIR, exist_ok=True)
            if not os.access(SHARED_DIR, os.W_OK):
                raise PermissionError(SHARED_DIR)
        except OSError:
            raise UsageError(f"{SHARED_DIR} is not writable: run `minilm-np warmup --shared` as the owner "
                             "of the installation (e.g. in the Dockerfile)") from None
        os.environ["NUMBA_CACHE_DIR"] = SHARED_DIR
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(2, os.cpu_count() or 1)))
    threads = max(2, args.threads or 2)
    import minilm_np

    start = time.perf_counter()
    modes = [args.quantize] if args.quantize else [None, "w8", "w8a16", "w8a8"]
    for mode in modes:
        model = minilm_np.load(args.model, threads=threads, backend=args.backend, quantize=mode)
        model.warmup()
        if model.config.quantization:  # a quantised directory runs its own mode only
            break
    from .kernels._numba_env import CACHE_DIR

    done = ", ".join(m or "float32" for m in modes[:modes.index(mode) + 1])
    print(f"kernels for {model.backend} backend ({done}) compiled and cached in {CACHE_DIR} "
          f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)


COMMANDS = {"embed": cmd_embed, "similarity": cmd_similarity, "search": cmd_search, "quantize": cmd_quantize,
            "bench": cmd_bench, "parity": cmd_parity, "info": cmd_info, "warmup": cmd_warmup}


def _split_bench(argv):
    """``(minilm-np argv, bench argv or None)``: everything after ``bench`` goes to bench/run.py as is
    (argparse's REMAINDER would stop at the first option), except a lone ``-h/--help``."""
    at = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if at is None or argv[at] != "bench" or argv[at + 1:] in (["-h"], ["--help"]):
        return argv, None
    return argv[:at + 1], argv[at + 1:]


def main(argv=None):
    parser = build_parser()
    argv, bench_args = _split_bench(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if bench_args is not None:
        args.args = bench_args
    if args.command is None:
        print(f"minilm-np: error: a command is required ({', '.join(COMMANDS)}); see `minilm-np --help`",
              file=sys.stderr)
        return 2
    try:
        COMMANDS[args.command](args)
    except UsageError as error:
        print(f"minilm-np {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as error:  # every other failure: one line, unless --debug
        if args.debug:
            raise
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"minilm-np {args.command}: error: {type(error).__name__}: {message}", file=sys.stderr)
        return 1
    return 0


def run():
    """Console-script entry point: :func:`main`, then exit without the final garbage collections.

    The interpreter's shutdown collections walk every object numba and its imports created
    (about 120,000): 0.2-0.25 s of a 1.1 s command, measured.  By the time :func:`main` returns,
    everything the command wrote is closed, so the CLI's own process freezes the collector
    instead (Python does not promise finalisers for objects alive at exit).  Library users'
    processes are left alone.
    """
    code = main()
    sys.stdout.flush()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(run())
