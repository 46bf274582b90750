"""Peak memory of ``minilm-np embed --input FILE --output FILE`` as the input grows, and --resume after a kill.

For each line count, writes a text file of the bench corpus's lines (cycled, each cut to
``--max-chars``), runs the command in a subprocess, samples its resident memory (VmRSS) every
0.2 s, and prints the peak and the RSS at 25/50/75% of the run: a streamed run stays flat
however many lines. ``--check-resume`` also kills a second run (SIGKILL) half-way, resumes it
with ``--resume`` and checks that the two outputs are the same bytes (sha256).

Examples::

    python bench/embed_rss.py --lines 100000,1000000 --quantize w8a8 --output-format npy
    python bench/embed_rss.py --lines 1000000 --check-resume --output-format parquet --quantize w8a8
    python bench/embed_rss.py --lines 2000 --max-chars 40          # a quick check
"""
import argparse
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE_S = 0.2


def write_input(path, lines, max_chars):
    with open(os.path.join(HERE, "corpus.txt"), encoding="utf-8") as f:
        corpus = [line.rstrip("\n")[:max_chars] for line in f]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(lines):
            f.write(corpus[i % len(corpus)] + "\n")


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def run(argv, kill_after_parts=None, partial=None):
    """Run ``argv``; return (exit code, seconds, [(t, rss KiB)]). Kill it once ``partial`` holds that many parts."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    while proc.poll() is None:
        rss = rss_kib(proc.pid)
        if rss is not None:
            samples.append((time.monotonic() - start, rss))
        if kill_after_parts and os.path.isdir(partial) and len(os.listdir(partial)) > kill_after_parts:
            proc.send_signal(signal.SIGKILL)
        time.sleep(SAMPLE_S)
    err = proc.stderr.read()
    if proc.returncode not in (0, -signal.SIGKILL):
        sys.exit(f"failed: {' '.join(argv)}\n{err}")
    return proc.returncode, time.monotonic() - start, samples


def at(samples, fraction):
    if not samples:
        return 0
    return samples[min(int(len(samples) * fraction), len(samples) - 1)][1]


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", default="100000,1000000", help="comma-separated line counts")
    parser.add_argument("--max-chars", type=int, default=200, help="cut each corpus line to this many characters")
    parser.add_argument("--output-format", choices=["npy", "parquet", "jsonl"], default="npy")
    parser.add_argument("--model", default=None)
    parser.add_argument("--quantize", choices=["w8", "w8a16", "w8a8"], default=None)
    parser.add_argument("--threads", default=None)
    parser.add_argument("--chunk-size", default=None)
    parser.add_argument("--check-resume", action="store_true", help="kill a run half-way, resume, compare bytes")
    parser.add_argument("--dir", default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()

    work = args.dir or tempfile.mkdtemp(prefix="embed-rss-")
    os.makedirs(work, exist_ok=True)
    print(f"{'lines':>9} {'seconds':>8} {'texts/s':>8} {'peak MiB':>9} {'25% MiB':>8} {'50% MiB':>8} {'75% MiB':>8}")
    for lines in (int(n) for n in args.lines.split(",")):
        source = os.path.join(work, f"lines-{lines}.txt")
        if not os.path.exists(source):
            write_input(source, lines, args.max_chars)
        output = os.path.join(work, f"out-{lines}.{args.output_format}")
        argv = [sys.executable, "-m", "minilm_np.cli", "embed", "--input", source, "--quiet"]
        for flag, value in (("--model", args.model), ("--quantize", args.quantize), ("--threads", args.threads),
                            ("--chunk-size", args.chunk_size)):
            if value is not None:
                argv += [flag, value]
        _, seconds, samples = run(argv + ["--output", output])
        peak = max(rss for _, rss in samples) / 1024
        print(f"{lines:>9} {seconds:>8.1f} {lines / seconds:>8.0f} {peak:>9.0f} {at(samples, .25) / 1024:>8.0f} "
              f"{at(samples, .5) / 1024:>8.0f} {at(samples, .75) / 1024:>8.0f}", flush=True)
        if args.check_resume:
            resumed = os.path.join(work, f"resumed-{lines}.{args.output_format}")
            chunk = int(args.chunk_size or 8192)
            half = max(1, lines // chunk // 2)
            code, _, _ = run(argv + ["--output", resumed], kill_after_parts=half, partial=resumed + ".partial")
            if code != -signal.SIGKILL:
                sys.exit("the run ended before it was killed: use more lines or a smaller --chunk-size")
            run(argv + ["--output", resumed, "--resume"])
            same = sha256(resumed) == sha256(output)
            print(f"{'':>9} killed after {half} chunks, resumed: {'identical bytes' if same else 'DIFFERENT'} "
                  f"(sha256 {sha256(output)[:16]})", flush=True)
            if not same:
                sys.exit(1)
    print(f"files in {work}")


if __name__ == "__main__":
    main()
