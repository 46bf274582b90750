"""Model weights: the tensors of a BERT encoder body (:mod:`minilm_np.layout`), checked and
arranged for the forward pass."""
from dataclasses import dataclass

import numpy as np

from .checkpoint import safetensors_path, strip_prefix
from .config import Config
from .errors import ModelFileError
from .layout import EMBED_NORM, IGNORED_PREFIXES, LAYER_NORMS, LINEARS, TABLES, checkpoint_tensors, layer_prefix
from .linear import DenseLinear, PackedLinear
from .mapped import release_pages
from .safetensors_io import open_row_file, read_safetensors
from .tables import DenseTable, FileTable


@dataclass(frozen=True)
class LayerWeights:
    """One encoder layer: its linears (:class:`~minilm_np.linear.Linear`, ``(out, in)``), their
    float32 biases and its LayerNorms' float32 parameters; slots named in :mod:`minilm_np.layout`."""
    qkv_weight: object            # (3 * hidden, hidden): query, key and value stacked
    qkv_bias: np.ndarray          # (3 * hidden,)
    attn_out_weight: object       # (hidden, hidden)
    attn_out_bias: np.ndarray
    attn_norm_gamma: np.ndarray
    attn_norm_beta: np.ndarray
    ffn_in_weight: object         # (intermediate, hidden)
    ffn_in_bias: np.ndarray
    ffn_out_weight: object        # (hidden, intermediate)
    ffn_out_bias: np.ndarray
    ffn_norm_gamma: np.ndarray
    ffn_norm_beta: np.ndarray


@dataclass(frozen=True)
class Weights:
    """All weights of the encoder. The tables are :class:`~minilm_np.tables.Table` s: read-only
    views of the memory-mapped file, the vocabulary table a :class:`~minilm_np.tables.FileTable`
    where the platform can read rows from the file (int8 tables in the int8 modes)."""
    word_embeddings: object      # (vocab, hidden)
    position_embeddings: object  # (max_positions, hidden)
    type_embeddings: object      # (type_vocab, hidden)
    embed_norm_gamma: np.ndarray
    embed_norm_beta: np.ndarray
    layers: tuple




def check_tensors(tensors: dict, expected: dict, path: str) -> None:
    """Raise ModelFileError naming the first missing, unexpected, mis-shaped or mis-typed tensor.

    ``expected``: name -> (shape, dtype), from :mod:`minilm_np.layout`.
    """
    missing = [name for name in expected if name not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ModelFileError(f"{path}: tensor {missing[0]!r} is missing{more}: the file is incomplete or "
                             "does not match config.json")
    unexpected = [name for name in tensors if name not in expected and not name.startswith(IGNORED_PREFIXES)]
    if unexpected:
        raise ModelFileError(f"{path}: unexpected tensor {unexpected[0]!r} "
                             f"({len(unexpected)} unexpected in all): the file does not match config.json")
    for name, (shape, dtype) in expected.items():
        t = tensors[name]
        if t.shape != tuple(shape):
            raise ModelFileError(f"{path}: tensor {name!r} has shape {list(t.shape)}, "
                                 f"config.json implies {list(shape)}")
        if t.dtype != dtype:
            raise ModelFileError(f"{path}: tensor {name!r} has dtype {t.dtype}, expected {np.dtype(dtype)}")
    if "embeddings.position_ids" in tensors and tensors["embeddings.position_ids"].dtype != np.int64:
        raise ModelFileError(f"{path}: tensor 'embeddings.position_ids' has dtype "
                             f"{tensors['embeddings.position_ids'].dtype}, expected int64")


def load_weights(model_dir: str, config: Config, pack=False) -> Weights:
    """Map a float32 ``model.safetensors`` and arrange its tensors for the forward pass.

    Parameters
    ----------
    pack : bool
        Linears as :class:`~minilm_np.linear.PackedLinear` (the numba backend) instead of
        :class:`~minilm_np.linear.DenseLinear` (BLAS).

    Raises
    ------
    ModelFileError
        The file is missing (with a hint when only ``pytorch_model.bin`` is there), corrupt, or
        does not match ``config.json``.
    """
    path = safetensors_path(model_dir)
    tensors, _ = read_safetensors(path)
    tensors = strip_prefix(tensors)
    check_tensors(tensors, checkpoint_tensors(config), path)
    return arrange(tensors, config, PackedLinear if pack else DenseLinear, path)


def arrange(tensors: dict, config: Config, linear, path: str) -> Weights:
    """Build :class:`Weights` from checked float32 tensors, stacking Q, K and V into one projection.

    ``linear`` makes each linear's :class:`~minilm_np.linear.Linear` from its ``(out, in)``
    float32 matrix; the vocabulary table stays in the file at ``path`` where rows can be read
    from it.
    """
    layers = []
    for i in range(config.num_layers):
        p = layer_prefix(i)
        fields = {}
        for slot in LINEARS:
            weights = [tensors[p + part + ".weight"] for part in slot.parts]
            fields[slot.slot + "_weight"] = linear(np.concatenate(weights) if len(weights) > 1 else weights[0])
            fields[slot.slot + "_bias"] = np.concatenate([tensors[p + part + ".bias"] for part in slot.parts])
            for w in weights:  # ``linear`` copied the matrix: its mapped pages need not stay resident
                release_pages(w)
        for slot, stem in LAYER_NORMS:
            fields[slot + "_gamma"], fields[slot + "_beta"] = tensors[p + stem + ".weight"], tensors[p + stem + ".bias"]
        layers.append(LayerWeights(**fields))
    tables = {slot: DenseTable(tensors[stem + ".weight"]) for slot, stem, _ in TABLES}
    row_file = open_row_file(path, tables["word_embeddings"].array)
    if row_file is not None:
        tables["word_embeddings"] = FileTable(tables["word_embeddings"].array, row_file)
    slot, stem = EMBED_NORM
    return Weights(**tables, **{slot + "_gamma": tensors[stem + ".weight"], slot + "_beta": tensors[stem + ".bias"]},
                   layers=tuple(layers))
