"""A model directory's checkpoint file and the names of its tensors."""
import os

from .errors import ModelFileError


def safetensors_path(model_dir: str) -> str:
    """Path of the directory's ``model.safetensors``; checked before anything else is read.

    Raises
    ------
    ModelFileError
        The file is missing. When ``pytorch_model.bin`` is there instead, the message says how to
        convert it: that file is a pickle, which minilm-np never opens (unpickling can run code).
    """
    path = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(path):
        return path
    pickled = os.path.join(model_dir, "pytorch_model.bin")
    if os.path.exists(pickled):
        raise ModelFileError(
            f"{path}: missing; the directory holds pytorch_model.bin, a pickle, which minilm-np never "
            "loads (unpickling can run code). Convert it once, where torch is installed and you trust the "
            "file: python -c \"import torch; from safetensors.torch import save_file; save_file({k: v.contiguous() "
            f"for k, v in torch.load('{pickled}', weights_only=True).items()}}, '{path}')\"")
    if os.path.exists(os.path.join(model_dir, "model.safetensors.index.json")):
        raise ModelFileError(f"{path}: missing; the directory holds a sharded checkpoint "
                             "(model.safetensors.index.json), which minilm-np does not read: save it as one file")
    raise ModelFileError(f"{path}: missing (a model directory needs model.safetensors)")


def strip_prefix(tensors: dict) -> dict:
    """Drop a leading ``bert.`` (checkpoints saved from BertFor* heads) from tensor names."""
    if any(name.startswith("bert.embeddings.") for name in tensors):
        return {(name[5:] if name.startswith("bert.") else name): t for name, t in tensors.items()}
    return tensors
