"""The ``minilm-np`` command line: embed, similarity, search, rerank, quantize, bench, parity, info, warmup,
serve."""
import argparse
import gc
import json
import os
import sys
import tempfile

from .stream import CHUNK_TEXTS
from .textio import INPUT_FORMATS, OUTPUT_NAMES

EPILOGS = {
    "embed": """examples:
  minilm-np embed "A first sentence." "A second one."           # JSON lines on stdout
  minilm-np embed --input texts.txt --output vectors.npy        # one text per line
  cat texts.txt | minilm-np embed --input - --output out.jsonl
  minilm-np embed --input docs.jsonl --field body --output out.csv
  minilm-np embed --input table.csv --column text --quantize w8a8 --truncate-dim 128 --output out.npy
  minilm-np embed --input big.jsonl --output big.parquet          # streams: memory stays flat
  minilm-np embed --input big.jsonl --output big.parquet --resume # after an interruption

An --output file is written in chunks (--chunk-size texts) into OUTPUT.partial/ and renamed to
OUTPUT when complete; --resume continues an interrupted run from its last complete chunk and
writes the same bytes as an uninterrupted run.""",
    "similarity": """examples:
  minilm-np similarity "A cat sits on the mat." "A feline rests on a rug."
  minilm-np similarity --input pairs.tsv        # two tab-separated texts per line; one score per line""",
    "search": """examples:
  minilm-np search --corpus faq.txt --query "how do I reset my password" -k 5
  minilm-np embed --input faq.txt --output faq.npy --normalize
  minilm-np search --corpus faq.txt --corpus-embeddings faq.npy --query "reset password\"""",
    "rerank": """prints rank, score and text, tab-separated, best first (needs a cross-encoder model)

examples:
  minilm-np rerank --model cross-encoder/ms-marco-MiniLM-L6-v2 --query "how do I reset my password" \\
      --input candidates.txt -k 5
  minilm-np rerank --model path/to/cross-encoder --query "..." --input - --raw-scores < docs.txt""",
    "quantize": """examples:
  minilm-np quantize --mode w8a8 --output minilm-w8a8            # the default model
  minilm-np quantize path/to/model --mode w8 --output model-w8
  minilm-np quantize path/to/cross-encoder --mode w8a8 --output reranker-w8a8""",
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
  minilm-np info --model path/to/model --json
  minilm-np info --model path/to/cross-encoder     # its head and labels""",
    "warmup": """examples:
  minilm-np warmup                        # compile every kernel set (float32, w8, w8a16, w8a8) now
  minilm-np warmup --quantize w8a8        # only the kernels w8a8 needs
  minilm-np warmup --shared               # into the install's shared cache (run as its owner)""",
    "serve": """needs the serve extra: pip install "minilm-np[serve]"

examples:
  minilm-np serve                                   # http://127.0.0.1:8080: OpenAI, Ollama and TEI APIs
  minilm-np serve --quantize w8a8 --threads 4 --port 9000
  MINILM_NP_API_KEY=secret minilm-np serve --host 0.0.0.0 --served-model-name my-embedder""",
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
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads (default: $OMP_NUM_THREADS, else this process's cores)")
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
    p.add_argument("--input", "-i", help="file of texts: .txt (one per line), .jsonl (--field), .csv or "
                   ".parquet (--column); - for stdin")
    p.add_argument("--field", default="text", help="JSON field of a .jsonl input (default: text)")
    p.add_argument("--column", default="text", help="column of a .csv or .parquet input (default: text)")
    p.add_argument("--format", choices=list(INPUT_FORMATS), help="input format (default: from the suffix)")
    p.add_argument("--output", "-o", help=f"output {OUTPUT_NAMES} (default: JSON lines on stdout)")
    p.add_argument("--chunk-size", type=positive_int, default=CHUNK_TEXTS,
                   help=f"texts per output chunk, the unit of --resume (default: {CHUNK_TEXTS})")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run into the same --output")
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

    p = command("rerank", "score a query against each line of a file with a cross-encoder, best first")
    p.add_argument("--query", required=True, help="query text")
    p.add_argument("--input", "-i", required=True, help="documents, one per line (- for stdin)")
    p.add_argument("-k", "--top-k", type=positive_int, default=10, help="documents to print (default: 10)")
    p.add_argument("--raw-scores", action="store_true", help="logits, without the model's activation")
    p.add_argument("--batch-size", type=positive_int, default=32, help="pairs per forward pass (default: 32)")
    _add_model_options(p)

    p = command("quantize", "write an int8 model directory (sentence encoder or cross-encoder)")
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

    p = command("serve", "serve embeddings and reranking over HTTP (OpenAI, Ollama, TEI, Cohere APIs)")
    _add_model_options(p)
    from .serve.server import add_arguments

    add_arguments(p, positive_int)
    return parser


def _load(args, cross_encoder=False):
    """The model of ``--model``: a SentenceTransformer, a CrossEncoder when ``cross_encoder``,
    or whichever the directory holds when ``cross_encoder`` is None."""
    import minilm_np

    kwargs = {"threads": args.threads, "backend": args.backend, "quantize": getattr(args, "quantize", None)}
    if cross_encoder is None:
        from .config import read_config
        from .locate import resolve_model_dir

        cross_encoder = args.model is not None \
            and read_config(resolve_model_dir(args.model)[0]).num_labels is not None
    if cross_encoder:
        if args.model is None:
            raise UsageError("--model is required: give a cross-encoder (BertForSequenceClassification) directory "
                             "or hub id")
        return minilm_np.CrossEncoder(args.model, **kwargs)
    return minilm_np.load(args.model, **kwargs)


def _read_lines(path):
    if path == "-":
        return [line.rstrip("\r\n") for line in sys.stdin]
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\r\n") for line in f]


def cmd_embed(args):
    from . import stream, textio

    if not args.texts and args.input is None:
        raise UsageError("embed: give texts as arguments or --input FILE (- for stdin)")
    if args.texts and args.input is not None:
        raise UsageError("embed: give texts as arguments or --input, not both")
    output_fmt = textio.output_format(args.output) if args.output else None
    if args.output and output_fmt is None:
        raise UsageError(f"--output {args.output}: use a {OUTPUT_NAMES} file")
    if args.resume and (args.output is None or args.input in (None, "-")):
        raise UsageError("--resume needs an --input file and an --output file")
    if args.truncate_dim is not None and args.truncate_dim < 1:
        raise UsageError(f"--truncate-dim must be >= 1, got {args.truncate_dim}")
    if args.input is None:
        texts, total = iter(args.texts), len(args.texts)
    else:
        input_fmt = textio.input_format(args.input, args.format)
        total = textio.count_rows(args.input, input_fmt)  # also: a missing file fails before the model loads
        texts = textio.iter_texts(args.input, input_fmt, args.field, args.column)
    model = _load(args)
    if args.normalize is False and model.head.normalizes:
        raise UsageError("--no-normalize: this model normalises its vectors itself (Normalize in modules.json)")
    # A bar for inputs long enough to wait for, on a terminal only (never in a pipe or a log file).
    show = not args.quiet and (total is None or total >= PROGRESS_MIN_TEXTS) and sys.stderr.isatty()
    options = dict(batch_size=args.batch_size, normalize=bool(args.normalize), truncate_dim=args.truncate_dim,
                   show_progress=show, total=total)
    if args.output is None:
        stream.embed_to_stdout(model, texts, args.chunk_size, **options)
        return
    if args.input in (None, "-"):  # texts as arguments or on stdin: nothing to resume
        settings = {"input": args.input, "chunk_texts": args.chunk_size, "output_format": output_fmt}
    else:
        settings = stream.run_settings(model, args.input, input_fmt, args.field, args.column, args.normalize,
                                       args.truncate_dim, args.chunk_size, output_fmt)
    rows, dim = stream.embed_to_file(model, texts, args.output, settings, resume=args.resume, **options)
    print(f"wrote {rows} x {dim} float32 to {args.output}", file=sys.stderr)


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


def cmd_rerank(args):
    documents = [line for line in _read_lines(args.input) if line.strip()]
    model = _load(args, cross_encoder=True)
    hits = model.rank(args.query, documents, top_k=args.top_k, batch_size=args.batch_size,
                      activation_fn="identity" if args.raw_scores else None)
    for rank, hit in enumerate(hits, 1):
        print(f"{rank}\t{hit['score']:.6f}\t{documents[hit['corpus_id']]}")


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

    info = model_info(_load(args, cross_encoder=None))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>22}: {value}")


def cmd_warmup(args):
    """Compile the kernels of float32 and every int8 mode (or the one ``--quantize`` names), each
    mode both quantised at load and read from a quantised directory.

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
    start = time.perf_counter()
    modes = [args.quantize] if args.quantize else [None, "w8", "w8a16", "w8a8"]
    args.threads = threads
    for mode in modes:
        args.quantize = mode
        model = _load(args, cross_encoder=None)  # a bi-encoder or a cross-encoder, as --model is
        model.warmup()
        if model.config.quantization:  # a quantised directory runs its own mode only
            break
        if mode is not None:  # the same mode read from a `minilm-np quantize` directory (file views)
            from .quantize import write_quantized

            with tempfile.TemporaryDirectory() as tmp:
                saved = argparse.Namespace(**{**vars(args), "model": write_quantized(args.model, mode, tmp),
                                              "quantize": None})
                _load(saved, cross_encoder=None).warmup()
    from .kernels._numba_env import CACHE_DIR

    done = ", ".join(m or "float32" for m in modes[:modes.index(mode) + 1])
    print(f"kernels for {model.backend} backend ({done}) compiled and cached in {CACHE_DIR} "
          f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)


def cmd_serve(args):
    from .serve.server import serve

    serve(args)


COMMANDS = {"embed": cmd_embed, "similarity": cmd_similarity, "search": cmd_search, "rerank": cmd_rerank,
            "quantize": cmd_quantize, "bench": cmd_bench, "parity": cmd_parity, "info": cmd_info,
            "warmup": cmd_warmup, "serve": cmd_serve}


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
    (about 120,000), a fifth of a short command's time (09d56ad).  By the time :func:`main` returns,
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
