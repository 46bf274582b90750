"""``minilm-np parity``: embed texts with minilm-np and with sentence-transformers, print how they differ.

The texts: ``--input`` (any file ``minilm-np embed`` reads, or a ``.json`` list of strings),
else the committed parity corpus of a source checkout (``tests/data/parity_corpus.json``,
not installed with the package), else :data:`SAMPLE_TEXTS`.
"""
import json
import os
import sys

import numpy as np

# The fp32 parity bounds the tests hold minilm-np to (tests/test_parity.py).
MAX_ABS = 2e-6
MIN_COS = 0.999999
INSTALL_HINT = "pip install torch==2.13.0 && pip install sentence-transformers"
CHECKOUT_CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "tests", "data", "parity_corpus.json")
# Varied texts for an installed package: empty, whitespace, accents, scripts, emoji, code, long.
SAMPLE_TEXTS = [
    "", " ", "A man is eating food.", "A man is eating a piece of bread.",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password?", "Un café crème, s'il vous plaît.", "Ünïcödé àccents and ß",
    "東京は日本の首都です。", "Москва — столица России.", "مرحبا بالعالم", "emoji 🙂🚀 and symbols ©®™ ±≠",
    "def f(x):\n    return x ** 2  # code", "URL https://example.org/a?b=c&d=e, mail someone@example.com",
    "3.14159 2,718 1e-9 $1,000,000 50% 12:30", "ALL CAPS SHOUTING", "\ttabs\tand\nnewlines\r\n",
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    " ".join(["A long sentence that goes on and on past the model's token limit."] * 40),
    "a", "!!!???...", "[CLS] [SEP] [PAD] [MASK] [UNK]", "zero\u200bwidth\u00a0spaces",
]


class ParityError(Exception):
    """minilm-np and sentence-transformers disagree beyond the fp32 bounds."""


def parity_texts(path=None):
    """``(texts, where)``: the texts to compare and a description of where they came from."""
    if path is None:
        if os.path.isfile(CHECKOUT_CORPUS):
            path = CHECKOUT_CORPUS
        else:
            return list(SAMPLE_TEXTS), f"built-in sample ({len(SAMPLE_TEXTS)} texts)"
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            try:
                texts = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{path}: expected a JSON list of strings")
    else:
        from .textio import iter_texts

        texts = list(iter_texts(path))
    if not texts:
        raise ValueError(f"{path}: no texts")
    return texts, path


def compare(ours, theirs, texts):
    """Parity figures of two loaded models on ``texts``.

    Parameters
    ----------
    ours : minilm_np.SentenceTransformer
    theirs : sentence_transformers.SentenceTransformer
    texts : list of str

    Returns
    -------
    dict with ``n_texts``, ``same_ids`` (texts tokenised identically), ``first_id_mismatch``
    (index or None), ``max_abs`` / ``worst_text`` (largest coordinate difference and its
    text), ``mean_abs``, ``min_cos`` / ``min_cos_text``.
    """
    our_ids = ours._tokenizer.encode(texts)
    features = (theirs.preprocess if hasattr(theirs, "preprocess") else theirs.tokenize)(texts)
    their_ids = [row[mask.astype(bool)] for row, mask in zip(features["input_ids"].numpy(),
                                                             features["attention_mask"].numpy())]
    same = [np.array_equal(a, b) for a, b in zip(our_ids, their_ids)]
    got = ours.encode(texts, show_progress_bar=False)
    want = np.asarray(theirs.encode(texts, show_progress_bar=False, convert_to_numpy=True), dtype=np.float32)
    diff = np.abs(got - want)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    cos = (got * want).sum(1) / np.maximum(norms, 1e-12)
    per_text = diff.max(1)
    return {"n_texts": len(texts), "same_ids": int(sum(same)),
            "first_id_mismatch": next((i for i, s in enumerate(same) if not s), None),
            "max_abs": float(per_text.max()), "worst_text": int(per_text.argmax()), "mean_abs": float(diff.mean()),
            "min_cos": float(cos.min()), "min_cos_text": int(cos.argmin())}


def report(figures, texts, where, ours):
    """The lines ``minilm-np parity`` prints."""
    f = figures

    def show(i):
        return f"text {i}: {texts[i][:60]!r}"

    lines = [
        f"texts:            {f['n_texts']} from {where}",
        f"model:            {ours.source}",
        f"minilm-np:        backend {ours.backend}, quantize {ours.quantization or 'none (float32)'}, "
        f"threads {ours.threads}",
        f"token ids:        {f['same_ids']}/{f['n_texts']} texts identical"
        + (f" (first difference: {show(f['first_id_mismatch'])})" if f["first_id_mismatch"] is not None else ""),
        f"max abs diff:     {f['max_abs']:.3g} ({show(f['worst_text'])})",
        f"mean abs diff:    {f['mean_abs']:.3g}",
        f"min cosine:       {f['min_cos']:.9f} ({show(f['min_cos_text'])})",
    ]
    if ours.quantization is None:
        ok = f["max_abs"] <= MAX_ABS and f["min_cos"] >= MIN_COS and f["same_ids"] == f["n_texts"]
        lines.append(f"verdict:          {'PASS' if ok else 'FAIL'} (fp32 bounds: max abs diff <= {MAX_ABS:g}, "
                     f"min cosine >= {MIN_COS}, identical token ids)")
    else:
        lines.append("verdict:          none (int8 weights: the figures measure the quantisation error)")
    return lines


def _import_sentence_transformers():
    """sentence_transformers.SentenceTransformer, quiet (no hub access, no progress bars or notices)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model directory is local: never reach for the hub
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise RuntimeError(f"sentence-transformers is not installed ({error}); install it with: "
                           f"{INSTALL_HINT}") from None
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    except (ImportError, AttributeError):
        pass
    return SentenceTransformer


def run_parity(args):
    """The ``parity`` command.

    Raises
    ------
    RuntimeError
        sentence-transformers is not installed (the message says how to install it).
    ParityError
        float32 weights and the figures are outside the bounds (exit code 1), after printing them.
    """
    texts, where = parity_texts(args.input)
    SentenceTransformer = _import_sentence_transformers()
    import minilm_np

    ours = minilm_np.load(args.model, threads=args.threads, backend=args.backend, quantize=args.quantize)
    theirs = SentenceTransformer(ours.model_dir, device="cpu")
    figures = compare(ours, theirs, texts)
    for line in report(figures, texts, where, ours):
        print(line)
    sys.stdout.flush()
    if ours.quantization is None and not (figures["max_abs"] <= MAX_ABS and figures["min_cos"] >= MIN_COS
                                          and figures["same_ids"] == figures["n_texts"]):
        raise ParityError(f"outside the fp32 bounds: max abs diff {figures['max_abs']:.3g}, "
                          f"min cosine {figures['min_cos']:.9f}, {figures['n_texts'] - figures['same_ids']} "
                          "texts tokenised differently")
    return figures
