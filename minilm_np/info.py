"""What ``minilm-np info`` reports about a loaded model and this machine."""
import os

import numpy as np


def cpu_features():
    """The CPU features the kernels care about, as seen by LLVM (empty when unknown)."""
    try:
        from llvmlite import binding

        features = binding.get_host_cpu_features()
        return sorted(f for f in ("avx2", "fma", "avx512f", "avx512vnni", "avxvnni", "neon") if features.get(f))
    except Exception:
        return []


def _task_info(model) -> dict:
    """A sentence encoder's pooling and output width, or a cross-encoder's head and labels."""
    from .modules.classifier import ClassificationHead

    if isinstance(model.head, ClassificationHead):  # a CrossEncoder
        return {"head": model.head.describe(), "num_labels": model.num_labels,
                "labels": ", ".join(model.head.labels), "activation_fn": repr(model.activation_fn)}
    return {"pooling": "+".join(model.head.pooling.modes), "normalize": model.head.normalizes,
            "embedding_dim": model.get_sentence_embedding_dimension()}


def model_info(model) -> dict:
    """A flat dict describing the model, its files and the runtime."""
    from ._threads import blas_core
    from .kernels._numba_env import CACHE_DIR

    from .layout import parameter_count

    cfg = model.config
    params = parameter_count(cfg)
    files = {}
    for root, _, names in os.walk(model.model_dir):
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, model.model_dir)] = os.path.getsize(os.path.realpath(path))
    if hasattr(model.head, "tensors"):  # a cross-encoder's pooler and classifier
        params += sum(t.size for t in model.head.tensors().values())
    return {
        "source": model.source,
        "directory": model.model_dir,
        "layers": cfg.num_layers,
        "hidden_size": cfg.hidden_size,
        "heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "vocab_size": cfg.vocab_size,
        "max_seq_length": model.max_seq_length,
        **_task_info(model),
        "parameters": params,
        "quantization": model.quantization or cfg.quantization or "none (float32)",
        "files_mb": ", ".join(f"{k} {v / 1e6:.1f}" for k, v in sorted(files.items()) if v > 100_000) or "-",
        "backend": model.backend,
        "threads": model.threads,
        "cpu_features": " ".join(cpu_features()) or "unknown",
        "numba_cache": CACHE_DIR,
        "numba_target": os.environ.get("NUMBA_CPU_NAME") or "host",
        "numpy": np.__version__,
        "blas_kernels": blas_core() or "unknown",
    }
