#!/usr/bin/env python
"""Build ``bench/corpus.txt``: 2,000 real English texts for the throughput benchmark.

One text per line (whitespace collapsed, no newlines inside a text).  The texts
are prose taken from documentation available offline on the machine that made
the corpus:

* docstrings of the Python standard library (``ast`` on the stdlib sources),
* docstrings of a fixed list of installed third-party packages (``ast`` on their
  sources, nothing is imported): see THIRD_PARTY below,
* the long descriptions (README) in the ``METADATA`` files of every installed
  distribution (``*.dist-info/METADATA`` in site-packages).

Only paragraphs that look like prose are kept: code, doctests, indented blocks,
headings, tables, bullet markers, markup, URLs and license boilerplate are
dropped, and duplicates are removed.  Texts are single sentences, single
paragraphs or passages of consecutive paragraphs of one document; no two texts
share a sentence.

The length distribution is fixed up front (token counts with the model's
tokenizer, truncation at 256, [CLS]/[SEP] included) to look like a mixed
embedding workload: median ~25 tokens, p90 ~112, 4 % of the texts at the
256-token cap (untruncated length 260..2000), ~103,000 tokens in total.  2,000
target lengths are computed from a piecewise log-linear quantile function
(TARGET_KNOTS, CAP_RANGE) and each one is matched with a random unused candidate text of
exactly that length (the nearest length when none is left).

Deterministic: sorted sources, fixed seed (the output does not depend on
PYTHONHASHSEED).  The committed corpus.txt is the reference; on another machine
the installed packages (and so the sources) differ and so would the output.

The committed corpus was made with CPython 3.11.7 and these sources (the
script's output, copied here by hand):

    sources (documents with prose / prose paragraphs):
      stdlib           346 /  7057   (one document per stdlib .py file)
      third-party     4120 / 39056   (one document per .py file of the THIRD_PARTY
                                      packages, as installed with numpy 2.4.6,
                                      scipy 1.17.1, scikit-learn 1.9.1, sympy 1.14.0,
                                      networkx 3.6.1, transformers 5.23.0, ...)
      METADATA         117 /  1111   (one document per *.dist-info/METADATA)
    texts per source: stdlib 337, third-party 1624, METADATA 39 (30 distributions)
    texts per kind: sentence 879, sentences (2-3 of one paragraph) 60,
                    paragraph 49, passage (consecutive paragraphs) 1012
    n=2000 total=102885 mean=51.4 median=25 p10=9 p25=15 p75=65 p90=112 p99=256
    min=6 max=256, at the 256 cap: 80 (4.0%), all of them truncated
    sha256(corpus.txt) = 8ca1ef8fe1af3903ba9d028391610d05bfb07306fd18c02acea2f0437563e67b

Usage::

    python bench/make_corpus.py [--out bench/corpus.txt] [--n 2000]
"""

from __future__ import annotations

import argparse
import ast
import bisect
import email.parser
import hashlib
import math
import os
import random
import re
import sys
import sysconfig
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402  (bench/'s: the model directory)

SEED = 1234
N_TEXTS = 2000
MAX_LEN = 256
CAP_FRACTION = 0.04  # texts longer than MAX_LEN tokens (truncated)
# (overall quantile, token count incl. [CLS]/[SEP]) for the texts below the cap,
# interpolated linearly in log(length).
TARGET_KNOTS = [(0.0, 5), (0.10, 9), (0.25, 15), (0.50, 25), (0.75, 65), (0.90, 112),
                (1.0 - CAP_FRACTION, 255)]
# Untruncated lengths of the capped texts: log-uniform over this range.
CAP_RANGE = (260, 2000)

# Permissively licensed (BSD / MIT / Apache-2.0) packages only; the texts are
# short excerpts of their documentation.
THIRD_PARTY = [
    "numpy", "scipy", "sklearn", "networkx", "sympy", "requests", "click", "flask",
    "werkzeug", "jinja2", "rich", "pygments", "packaging", "urllib3", "attr", "pydantic",
    "transformers", "sentence_transformers", "huggingface_hub", "tokenizers",
]
# METADATA of distributions under copyleft / weak-copyleft licenses is skipped.
_COPYLEFT = re.compile(r"GPL|MPL|Mozilla|EUPL|CDDL|Creative Commons|CC-BY", re.I)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "corpus.txt")


def load_tokenizer():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(peers.find_model_dir(), "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()  # untruncated lengths; the cap is applied when counting
    return tok


# --------------------------------------------------------------------------
# Text extraction
# --------------------------------------------------------------------------

_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_REFLINK = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`_{1,2}")
_ROLE = re.compile(r":[A-Za-z][\w:.+-]*:`~?!?([^`]*)`")
_LITERAL = re.compile(r"``([^`]*)``")
_TICK = re.compile(r"`([^`]*)`_{0,2}")
_EMPH = re.compile(r"(?<![\w*])(\*{1,2}|_{2})(\S(?:.*?\S)?)\1(?![\w*])")
_WS = re.compile(r"\s+")
_UNDERLINE = re.compile(r"^\s*([=\-~^*+#`'\".:_])\1{2,}\s*$")
_BULLET = re.compile(r"^(?:[-*+\u2022]|\d{1,2}[.)]|\(?[a-z]\))\s+")
_PLAIN_WORD = re.compile(r"^[(\"'\u201c]?[A-Za-z][A-Za-z'\u2019\-]*[,.;:!?)\"'\u201d]*$")
_BOILERPLATE = re.compile(
    r"copyright|licen[cs]e|warrant|all rights reserved|permission is hereby|redistribut|"
    r"merchantability|spdx|liability|\bauthors?\b|contributors|maintainers?\b|changelog|"
    r"release notes|pull request|github|pypi|pip install|conda|badge|sponsor|donat",
    re.I)
_CODEY = re.compile(r">>>|[{}<>|\\@$#^~]|==|!=|->|=>|\b(?:def|import|lambda|self|cls|kwargs|args)\b|"
                    r"\w\.\w+\(|\w_\w|\(\)|\w\[|\w=\w|\s=\s|\.py\b|\.\.\.|http|www\.")
_ABBREV = {"e.g.", "i.e.", "etc.", "vs.", "Mr.", "Mrs.", "Dr.", "No.", "cf.", "et", "al.", "approx.",
           "Fig.", "Eq.", "Ref.", "resp.", "Sec."}


_CITATION = re.compile(r"\s*\[(?:\d+|[A-Z][\w-]*)\]_")


def clean_inline(text: str) -> str:
    text = _CITATION.sub("", text)  # numpydoc / rst citations: "[1]_"
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_REFLINK.sub(r"\1", text)
    text = _RST_LINK.sub(r"\1", text)
    text = _ROLE.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _TICK.sub(r"\1", text)
    text = _EMPH.sub(r"\2", text)
    return _WS.sub(" ", text).strip()


def is_prose(text: str) -> bool:
    words = text.split()
    if len(words) < 3 or not text[:1].isupper() or text[-1] not in ".!?":
        return False
    if _BOILERPLATE.search(text) or _CODEY.search(text):
        return False
    if sum(c.isalpha() or c == " " for c in text) / len(text) < 0.85:
        return False
    if sum(bool(_PLAIN_WORD.match(w)) for w in words) / len(words) < 0.85:
        return False
    if sum(w.isupper() and len(w) > 1 for w in words) / len(words) > 0.3:
        return False
    return text.isascii() or sum(not c.isascii() for c in text) <= 2


def paragraphs_of(doc: str) -> list[str]:
    """Prose paragraphs of a docstring / README (markdown or reStructuredText)."""
    doc = re.sub(r"```.*?```", "\n\n", doc, flags=re.S)  # fenced code
    doc = re.sub(r"<!--.*?-->", " ", doc, flags=re.S)  # HTML comments
    out = []
    for block in re.split(r"\n[ \t]*\n", doc):
        lines = block.split("\n")
        if not lines or any(_UNDERLINE.match(ln) for ln in lines):
            continue  # headings, tables, transitions
        first = lines[0].lstrip()
        if first.startswith(("#", "..", ">>>", "<", "|", "+-", ":", "[!", "![", "[![")):
            continue
        if any(ln.rstrip().endswith("::") for ln in lines):
            continue  # introduces a literal (code) block
        # Bullet lists: every item is its own paragraph (continuation lines may be
        # indented); outside a list, an indented line means code or a definition list.
        bullet_list = bool(_BULLET.match(lines[0]))
        items: list[list[str]] = []
        indented = False
        for ln in lines:
            if bullet_list and _BULLET.match(ln):
                items.append([_BULLET.sub("", ln, count=1)])
            elif ln[:1] in (" ", "\t") and not bullet_list:
                indented = True
            elif items:
                items[-1].append(ln)
            else:
                items.append([ln])
        if indented:
            continue  # code or definition lists
        for item in items:
            text = clean_inline(" ".join(s.strip() for s in item))
            if text and is_prose(text):
                out.append(text)
    return out


_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")


def sentences_of(paragraph: str) -> list[str]:
    parts = _SENT_END.split(paragraph)
    out: list[str] = []
    for p in parts:
        if out and (out[-1].split()[-1].lstrip("(\"'") in _ABBREV
                    or re.search(r"\b[A-Z]\.$", out[-1])):
            out[-1] += " " + p
        else:
            out.append(p)
    return [s for s in out if is_prose(s)]


def py_docstrings(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError):
        return []
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                docs.append((getattr(node, "lineno", 0), doc))
    return [d for _, d in sorted(docs, key=lambda x: x[0])]  # source order


def py_files(root: str, skip_dirs=()) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs
                             and d not in ("tests", "test", "testing", "__pycache__", "_vendor",
                                           "vendor", "externals", "site-packages")
                             and not d.startswith((".", "config-")))
        out += [os.path.join(dirpath, f) for f in sorted(filenames)
                if f.endswith(".py") and not f.startswith(("test_", "conftest"))]
    return out


def site_packages() -> str:
    return sysconfig.get_paths()["purelib"]


def collect_documents() -> list[tuple[str, str, list[str]]]:
    """[(source kind, document name, [prose paragraphs])] in a fixed order."""
    docs = []
    stdlib = sysconfig.get_paths()["stdlib"]
    for path in py_files(stdlib, skip_dirs=("idlelib", "lib2to3", "turtledemo", "ensurepip",
                                            "pydoc_data", "distutils", "dist-packages")):
        paras = [p for d in py_docstrings(path) for p in paragraphs_of(d)]
        if paras:
            docs.append(("stdlib", os.path.relpath(path, stdlib), paras))
    sp = site_packages()
    for pkg in THIRD_PARTY:
        root = os.path.join(sp, pkg)
        if not os.path.isdir(root):
            print(f"  (third-party package {pkg} not installed, skipped)", file=sys.stderr)
            continue
        for path in py_files(root):
            paras = [p for d in py_docstrings(path) for p in paragraphs_of(d)]
            if paras:
                docs.append(("third-party", os.path.relpath(path, sp), paras))
    for name in sorted(os.listdir(sp)):
        meta = os.path.join(sp, name, "METADATA")
        if not (name.endswith(".dist-info") and os.path.isfile(meta)):
            continue
        with open(meta, encoding="utf-8", errors="replace") as f:
            msg = email.parser.Parser().parse(f)
        licenses = " ".join(msg.get_all("License", []) + msg.get_all("License-Expression", [])
                            + [c for c in msg.get_all("Classifier", []) if c.startswith("License")])
        if _COPYLEFT.search(licenses):
            continue
        body = msg.get_payload() or msg.get("Description") or ""
        if not isinstance(body, str):
            continue
        paras = paragraphs_of(body.replace("\r\n", "\n"))
        if paras:
            docs.append(("METADATA", name, paras))
    return docs


# --------------------------------------------------------------------------
# Candidates and selection
# --------------------------------------------------------------------------

def target_lengths(n: int, rng: random.Random) -> list[int]:
    n_cap = round(n * CAP_FRACTION)
    qs = [q for q, _ in TARGET_KNOTS]
    logs = [math.log(v) for _, v in TARGET_KNOTS]
    out = []
    for i in range(n - n_cap):
        u = (i + 0.5) / (n - n_cap) * qs[-1]
        j = min(bisect.bisect_right(qs, u), len(qs) - 1)
        f = (u - qs[j - 1]) / (qs[j] - qs[j - 1])
        out.append(round(math.exp(logs[j - 1] + f * (logs[j] - logs[j - 1]))))
    lo, hi = math.log(CAP_RANGE[0]), math.log(CAP_RANGE[1])
    out += [round(math.exp(lo + (i + 0.5) / n_cap * (hi - lo))) for i in range(n_cap)]
    return out


def build(tok, n: int):
    rng = random.Random(SEED)
    docs = collect_documents()

    # Sentence table: every sentence of every prose paragraph gets an id; a
    # candidate text covers a contiguous set of sentence ids of one document.
    sent_text: list[str] = []
    sent_src: list[int] = []
    doc_paras: list[list[tuple[int, int]]] = []  # per doc: (first sentence id, end id) per paragraph
    for d, (_, _, paras) in enumerate(docs):
        spans = []
        for p in paras:
            s0 = len(sent_text)
            for s in sentences_of(p) or [p]:
                sent_text.append(s)
                sent_src.append(d)
            spans.append((s0, len(sent_text)))
        doc_paras.append(spans)
    counts = [len(e.ids) for e in tok.encode_batch(sent_text, add_special_tokens=False)]

    # Candidates: (untruncated length incl. [CLS]/[SEP], first sentence id, end id, kind)
    cands = []
    for d, spans in enumerate(doc_paras):
        for a, b in spans:  # single sentences and short runs of sentences inside a paragraph
            for i in range(a, b):
                total = 2
                for j in range(i, min(b, i + 3)):
                    total += counts[j]
                    cands.append((total, i, j + 1, "sentence" if j == i else "sentences"))
        for pi in range(len(spans)):  # whole paragraphs and passages of consecutive paragraphs
            total = 2
            for pj in range(pi, len(spans)):
                total += sum(counts[spans[pj][0]:spans[pj][1]])
                if spans[pj][1] - spans[pi][0] > 1:
                    cands.append((total, spans[pi][0], spans[pj][1],
                                  "paragraph" if pj == pi else "passage"))
                if total > CAP_RANGE[1]:
                    break

    by_len: dict[int, list[int]] = defaultdict(list)
    for k, c in enumerate(cands):
        by_len[c[0]].append(k)
    for L in by_len:
        rng.shuffle(by_len[L])
    lengths_sorted = sorted(by_len)

    used = bytearray(len(sent_text))
    seen: set[str] = set()
    chosen = []
    targets = target_lengths(n, rng)
    for t in sorted(targets, reverse=True):  # long texts first: they are the scarce ones
        pick = None
        pos = bisect.bisect_left(lengths_sorted, t)
        for delta in range(0, 400):
            for L in ((t - delta, t + delta) if delta else (t,)):
                if L < 3 or L not in by_len:
                    continue
                pool = by_len[L]
                while pool:
                    k = pool.pop()
                    length, a, b, kind = cands[k]
                    if any(used[a:b]):
                        continue
                    text = " ".join(sent_text[a:b])
                    key = _WS.sub(" ", text.lower())
                    if key in seen:
                        continue
                    pick = (k, text, key)
                    break
                if pick:
                    break
            if pick:
                break
        if pick is None:
            raise RuntimeError(f"no candidate left near length {t} (pos {pos})")
        k, text, key = pick
        length, a, b, kind = cands[k]
        used[a:b] = b"\x01" * (b - a)
        seen.add(key)
        chosen.append((text, docs[sent_src[a]][0], docs[sent_src[a]][1], kind, t, length))
    rng.shuffle(chosen)
    return docs, chosen


def percentile(sorted_vals, q):
    """Linear-interpolation percentile (same as numpy's default)."""
    x = (len(sorted_vals) - 1) * q
    i = int(math.floor(x))
    j = min(i + 1, len(sorted_vals) - 1)
    return sorted_vals[i] + (sorted_vals[j] - sorted_vals[i]) * (x - i)


def stats(tok, texts):
    tok.enable_truncation(MAX_LEN)
    lens = [len(e.ids) for e in tok.encode_batch(texts)]
    tok.no_truncation()
    s = sorted(lens)
    return {
        "n": len(lens), "total": sum(lens), "mean": sum(lens) / len(lens),
        "median": percentile(s, 0.5), "p10": percentile(s, 0.1), "p25": percentile(s, 0.25),
        "p75": percentile(s, 0.75), "p90": percentile(s, 0.9), "p99": percentile(s, 0.99),
        "min": s[0], "max": s[-1], "at_cap": sum(v >= MAX_LEN for v in lens),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="Build the benchmark corpus.")
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--n", type=int, default=N_TEXTS)
    args = ap.parse_args()

    tok = load_tokenizer()
    docs, chosen = build(tok, args.n)
    texts = [c[0] for c in chosen]
    for t in texts:
        assert "\n" not in t and "\r" not in t and t == t.strip() and t

    data = "".join(t + "\n" for t in texts)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(data)

    n_docs = Counter(kind for kind, _, _ in docs)
    n_paras = Counter()
    for kind, _, paras in docs:
        n_paras[kind] += len(paras)
    print(f"python {sys.version.split()[0]}; sources (documents with prose / prose paragraphs):")
    for kind in ("stdlib", "third-party", "METADATA"):
        print(f"  {kind:12s} {n_docs[kind]:6d} / {n_paras[kind]:6d}")
    print(f"  third-party packages: {' '.join(p for p in THIRD_PARTY if os.path.isdir(os.path.join(site_packages(), p)))}")
    print("texts per source:", dict(Counter(c[1] for c in chosen)))
    per_pkg = Counter(c[2].split(os.sep)[0] for c in chosen if c[1] == "third-party")
    print("  third-party texts per package:", dict(sorted(per_pkg.items())))
    dists = sorted({c[2].split("-")[0] for c in chosen if c[1] == "METADATA"})
    print(f"  METADATA texts from {len(dists)} distributions: {' '.join(dists)}")
    print("texts per kind:", dict(Counter(c[3] for c in chosen)))
    exact = sum(c[4] == c[5] for c in chosen)
    print(f"matched target length exactly: {exact}/{len(chosen)}")
    st = stats(tok, texts)
    n_trunc = sum(len(e.ids) > MAX_LEN for e in tok.encode_batch(texts))
    print(f"wrote {args.out}: sha256 {hashlib.sha256(data.encode('utf-8')).hexdigest()}")
    print("tokens (tokenizer.json, truncation 256, incl. [CLS]/[SEP]): "
          f"n={st['n']} total={st['total']} mean={st['mean']:.1f} median={st['median']:g} "
          f"p10={st['p10']:g} p25={st['p25']:g} p75={st['p75']:g} p90={st['p90']:g} "
          f"p99={st['p99']:g} min={st['min']} max={st['max']} "
          f"at the 256 cap={st['at_cap']} ({100 * st['at_cap'] / st['n']:.1f}%), "
          f"truncated (untruncated > 256)={n_trunc}")


if __name__ == "__main__":
    main()
