"""Model weights: the expected tensors of a BERT encoder, checked and arranged for the forward pass."""
from dataclasses import dataclass, replace

import numpy as np

from .checkpoint import safetensors_path, strip_prefix
from .config import Config
from .errors import ModelFileError
from .safetensors_io import open_row_file, read_safetensors, release_pages

# Tensors a BERT checkpoint may carry that the encoder body does not use (a cross-encoder's
# pooler and classifier are read by its head, minilm_np.modules.classifier).
IGNORED_PREFIXES = ("pooler.", "cls.", "classifier.", "embeddings.position_ids")


@dataclass(frozen=True)
class LayerWeights:
    """One encoder layer.

    Linear weights are ``(out_features, in_features)`` float32, as stored, but laid out in
    Fortran order: ``weight.T`` is then C-contiguous ``(in, out)`` and ``x @ weight.T`` is a
    plain NN GEMM, which OpenBLAS runs up to 2.8x faster than the NT form for a few rows (it
    repacks a transposed B on every call).
    """
    qkv_weight: np.ndarray        # (3 * hidden, hidden): query, key and value stacked
    qkv_bias: np.ndarray          # (3 * hidden,)
    attn_out_weight: np.ndarray   # (hidden, hidden)
    attn_out_bias: np.ndarray
    attn_norm_gamma: np.ndarray
    attn_norm_beta: np.ndarray
    ffn_in_weight: np.ndarray     # (intermediate, hidden)
    ffn_in_bias: np.ndarray
    ffn_out_weight: np.ndarray    # (hidden, intermediate)
    ffn_out_bias: np.ndarray
    ffn_norm_gamma: np.ndarray
    ffn_norm_beta: np.ndarray


@dataclass(frozen=True)
class Weights:
    """All weights of the encoder; the tables are read-only views of the memory-mapped file, the
    vocabulary table a :class:`FileTable` over it where the platform can read rows from the file."""
    word_embeddings: np.ndarray      # (vocab, hidden), or a FileTable / quantize.QuantizedTable
    position_embeddings: np.ndarray  # (max_positions, hidden)
    type_embeddings: np.ndarray      # (type_vocab, hidden)
    embed_norm_gamma: np.ndarray
    embed_norm_beta: np.ndarray
    layers: tuple


def expected_tensors(config: Config) -> dict:
    """Name -> (shape, dtype) of every tensor the encoder needs, derived from the config."""
    h, f = config.hidden_size, config.intermediate_size
    spec = {
        "embeddings.word_embeddings.weight": (config.vocab_size, h),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    for i in range(config.num_layers):
        p = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            spec[p + f"attention.self.{part}.weight"] = (h, h)
            spec[p + f"attention.self.{part}.bias"] = (h,)
        spec.update({
            p + "attention.output.dense.weight": (h, h),
            p + "attention.output.dense.bias": (h,),
            p + "attention.output.LayerNorm.weight": (h,),
            p + "attention.output.LayerNorm.bias": (h,),
            p + "intermediate.dense.weight": (f, h),
            p + "intermediate.dense.bias": (f,),
            p + "output.dense.weight": (h, f),
            p + "output.dense.bias": (h,),
            p + "output.LayerNorm.weight": (h,),
            p + "output.LayerNorm.bias": (h,),
        })
    return {name: (shape, np.float32) for name, shape in spec.items()}


def check_tensors(tensors: dict, expected: dict, path: str) -> None:
    """Raise ModelFileError naming the first missing, unexpected, mis-shaped or mis-typed tensor."""
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
    """Map ``model.safetensors`` and arrange its tensors for the forward pass.

    Parameters
    ----------
    pack : bool
        Linear weights as :class:`PackedLinear` (for the numba backend) instead of arrays.

    Raises
    ------
    ModelFileError
        The file is missing (with a hint when only ``pytorch_model.bin`` is there), corrupt, or
        does not match ``config.json``.
    """
    if config.quantization is not None:
        return load_quantized_weights(model_dir, config)
    path = safetensors_path(model_dir)
    tensors, _ = read_safetensors(path)
    tensors = strip_prefix(tensors)
    check_tensors(tensors, expected_tensors(config), path)
    weights = arrange(tensors, config, PackedLinear if pack else gemm_layout)
    row_file = open_row_file(path, weights.word_embeddings)
    if row_file is None:
        return weights
    return replace(weights, word_embeddings=FileTable(weights.word_embeddings, row_file))


def table_row_ids(ids, n_rows):
    """``ids`` as contiguous int64, each checked to be a row of an embedding table of ``n_rows`` rows.

    Raises
    ------
    IndexError
        An id is outside the table.
    """
    ids = np.ascontiguousarray(ids, np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= n_rows):
        bad = ids[(ids < 0) | (ids >= n_rows)][0]
        raise IndexError(f"index {bad} is out of range for an embedding table of {n_rows} rows")
    return ids


class FileTable:
    """A float32 embedding table left in its file: :meth:`rows` reads the rows a batch uses.

    A 250,000-row vocabulary table (366 MiB at 384 wide) then costs the process no resident
    memory: reading rows through the mapping would leave every page (and, where the kernel
    caches the file in large folios, its neighbours) resident, growing with the vocabulary a
    corpus uses (see :class:`~minilm_np.safetensors_io.RowFile`).

    Parameters
    ----------
    array : ndarray of float32, (V, H)
        The mapped table, for whole-table work (quantisation reads it a block of rows at a time).
    row_file : minilm_np.safetensors_io.RowFile
        Where ``array`` lies in its file.
    """

    def __init__(self, array, row_file):
        self.array = array
        self.row_file = row_file
        self.shape = tuple(array.shape)
        self.dtype = array.dtype

    @property
    def size(self):
        return self.shape[0] * self.shape[1]

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"FileTable(shape={self.shape}, path={self.row_file.path!r})"

    def rows(self, ids):
        """Rows ``table[ids]``: float32 ``(len(ids), H)``, each distinct row read once.

        Raises
        ------
        IndexError
            An id is outside the table.
        """
        needed, where = np.unique(table_row_ids(ids, self.shape[0]), return_inverse=True)
        return self.row_file.read(needed)[where.reshape(-1)]


def load_quantized_weights(model_dir: str, config: Config) -> Weights:
    """Map the int8 ``model.safetensors`` of a directory written by ``minilm-np quantize``.

    No float32 weight matrix is made: linears and embedding tables stay int8
    (:mod:`minilm_np.quantize`).

    Raises
    ------
    ModelFileError
        config.json names an unknown mode, the file is missing, corrupt, not a minilm-np int8
        file, or a tensor does not match config.json (the message names the tensor).
    """
    from .quantize import FORMAT, arrange_quantized, check_quantized_mode, quantized_tensor_spec

    path = safetensors_path(model_dir)
    check_quantized_mode(config, path)
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path}: config.json sets minilm_np_quantization={config.quantization!r} but this "
                             f"is not a minilm-np int8 file (metadata format {metadata.get('format')!r}, "
                             f"expected {FORMAT!r})")
    check_tensors(tensors, quantized_tensor_spec(config), path)
    return arrange_quantized(tensors, config, path)


def gemm_layout(weight):
    """The same ``(out, in)`` matrix in Fortran order (a copy), see :class:`LayerWeights`."""
    return np.asfortranarray(weight)


class PackedLinear:
    """A float32 linear's ``(out, in)`` weights packed once for :func:`minilm_np.kernels.sgemm.gemm`.

    BLAS repacks constant weights on every call, which for one sentence's few rows costs more
    than the arithmetic; packed once, the GEMM also gives every row the same bits alone or in
    any batch.  ``model.linear`` calls :meth:`matmul`.
    """

    def __init__(self, weight):
        from .kernels import sgemm

        self._gemm = sgemm.gemm
        self.shape = weight.shape
        self.packed = sgemm.pack_weights(weight)
        release_pages(weight)  # the packed copy is all the GEMM reads

    fuses_gelu = True  # matmul(..., gelu=True): GELU in the GEMM's epilogue (model.linear_gelu)

    def matmul(self, x, out, bias=None, gelu=False):
        """``out = x @ weight.T (+ bias)``, then GELU if ``gelu``, for x ``(n, in)`` float32;
        returns ``out`` ``(n, out)``."""
        return self._gemm(x, self.packed, self.shape[0], bias=bias, out=out, gelu=gelu)

    @property
    def size(self):
        """Number of weights, ``out * in``."""
        return self.shape[0] * self.shape[1]

    def __repr__(self):
        return f"PackedLinear(shape={self.shape})"


def arrange(tensors: dict, config: Config, linear=gemm_layout) -> Weights:
    """Build :class:`Weights` from checked tensors, stacking Q, K and V into one projection.

    ``linear`` makes each linear's weight object from its ``(out, in)`` float32 matrix.
    """
    layers = []
    for i in range(config.num_layers):
        p = f"encoder.layer.{i}."
        a = p + "attention."
        layers.append(LayerWeights(
            qkv_weight=linear(np.concatenate([tensors[a + f"self.{x}.weight"]
                                                   for x in ("query", "key", "value")])),
            qkv_bias=np.concatenate([tensors[a + f"self.{x}.bias"] for x in ("query", "key", "value")]),
            attn_out_weight=linear(tensors[a + "output.dense.weight"]),
            attn_out_bias=tensors[a + "output.dense.bias"],
            attn_norm_gamma=tensors[a + "output.LayerNorm.weight"],
            attn_norm_beta=tensors[a + "output.LayerNorm.bias"],
            ffn_in_weight=linear(tensors[p + "intermediate.dense.weight"]),
            ffn_in_bias=tensors[p + "intermediate.dense.bias"],
            ffn_out_weight=linear(tensors[p + "output.dense.weight"]),
            ffn_out_bias=tensors[p + "output.dense.bias"],
            ffn_norm_gamma=tensors[p + "output.LayerNorm.weight"],
            ffn_norm_beta=tensors[p + "output.LayerNorm.bias"],
        ))
        # ``linear`` copied these matrices: their mapped pages need not stay resident
        for name in tensors:
            if name.startswith(f"encoder.layer.{i}.") and name.endswith("dense.weight") or \
                    name.startswith(a + "self.") and name.endswith(".weight"):
                release_pages(tensors[name])
    return Weights(
        word_embeddings=tensors["embeddings.word_embeddings.weight"],
        position_embeddings=tensors["embeddings.position_embeddings.weight"],
        type_embeddings=tensors["embeddings.token_type_embeddings.weight"],
        embed_norm_gamma=tensors["embeddings.LayerNorm.weight"],
        embed_norm_beta=tensors["embeddings.LayerNorm.bias"],
        layers=tuple(layers),
    )
