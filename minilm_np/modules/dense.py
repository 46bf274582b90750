"""sentence-transformers' Dense module: a linear map plus an activation on sentence embeddings.

Its folder holds ``config.json`` (widths, bias, activation, residual) and ``model.safetensors``
(``linear.weight``, ``linear.bias``, ``residual.weight``).
"""
import os
from dataclasses import dataclass

import numpy as np

from ..errors import ModelFileError, UnsupportedModelError
from ..gemm_rows import matmul_t
from ..jsonfile import read_json_object
from ..safetensors_io import read_safetensors
from .activations import ACTIVATIONS, DEFAULT_ACTIVATION, activate
from .checks import check_io_names


@dataclass(frozen=True, eq=False)
class Dense:
    """A loaded Dense module.

    Attributes
    ----------
    weight : ndarray of float32, (out_features, in_features)
    bias : ndarray of float32, (out_features,), or None
    activation : str
        Short name: ``tanh``, ``identity``, ``relu``, ``sigmoid`` or ``gelu``.
    residual : bool
        ``use_residual``: the input (projected when the widths differ) is added to the output.
    residual_weight : ndarray of float32, (out_features, in_features), or None
        The projection of the residual; None for the identity.
    path : str
        Its folder, relative to the model directory (``2_Dense``).
    """
    weight: np.ndarray
    bias: np.ndarray | None
    activation: str = "tanh"
    residual: bool = False
    residual_weight: np.ndarray | None = None
    path: str = ""

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def get_sentence_embedding_dimension(self) -> int:
        """Width of its output (``out_features``)."""
        return self.out_features

    @classmethod
    def from_folder(cls, model_dir: str, folder: str, in_features: int) -> "Dense":
        """Read ``<model_dir>/<folder>/config.json`` and the weights of ``model.safetensors``.

        Parameters
        ----------
        model_dir, folder : str
        in_features : int
            Width of the input it receives (the previous module's output).

        Raises
        ------
        ModelFileError
            A file is missing (or only a pickle is there) or not JSON, a width is not a positive
            integer or does not match ``in_features``, or a tensor is missing, unexpected,
            mis-shaped or not float32.
        UnsupportedModelError
            The activation, or an input/output other than the sentence embedding.
        """
        config_path = os.path.join(model_dir, folder, "config.json")
        spec = _read_spec(config_path)
        if spec["in_features"] != in_features:
            raise ModelFileError(f"{config_path}: in_features {spec['in_features']} does not match the "
                                 f"{in_features}-wide input it receives")
        return cls(activation=spec["activation"], residual=spec["residual"], path=folder,
                   **_read_weights(os.path.join(model_dir, folder), spec))

    def __call__(self, x, kernels=None):
        """``activation(x @ weight.T + bias)`` (+ the residual).

        Parameters
        ----------
        x : ndarray of float32, (n, in_features)
        kernels : module, optional
            Unused (the products are BLAS's); accepted as every module's ``__call__`` takes it.

        Returns
        -------
        ndarray of float32, (n, out_features), C-contiguous.
        """
        out = matmul_t(x, self.weight)
        if self.bias is not None:
            out += self.bias
        out = activate(self.activation, out)
        if self.residual:
            out += x if self.residual_weight is None else matmul_t(x, self.residual_weight)
        return np.ascontiguousarray(out, dtype=np.float32)


def _read_spec(path):
    """A Dense config.json's widths, bias flag, activation (short name) and residual flag."""
    raw = read_json_object(path, required=False)
    if raw is None:
        raise ModelFileError(f"{path}: file is missing (the Dense module's configuration)")
    spec = {}
    for key in ("in_features", "out_features"):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelFileError(f"{path}: {key!r} must be a positive integer, got {value!r}")
        spec[key] = value
    activation = raw.get("activation_function") or DEFAULT_ACTIVATION
    if activation not in ACTIVATIONS:
        raise UnsupportedModelError(f"{path}: Dense activation_function {activation!r} is not supported "
                                    f"(supported: {', '.join(ACTIVATIONS)})")
    check_io_names(raw, path, "Dense")
    return dict(spec, bias=bool(raw.get("bias", True)), activation=ACTIVATIONS[activation],
                residual=bool(raw.get("use_residual", False)))


def _tensor(tensors, name, shape, path):
    if name not in tensors:
        raise ModelFileError(f"{path}: tensor {name!r} is missing")
    t = tensors[name]
    if t.shape != shape:
        raise ModelFileError(f"{path}: tensor {name!r} has shape {list(t.shape)}, the module's config.json "
                             f"implies {list(shape)}")
    if t.dtype != np.float32:
        raise ModelFileError(f"{path}: tensor {name!r} has dtype {t.dtype}, expected float32")
    return t


def _read_weights(folder, spec):
    """``weight``, ``bias`` and ``residual_weight`` from ``<folder>/model.safetensors``."""
    path = os.path.join(folder, "model.safetensors")
    if not os.path.exists(path):
        pickle = os.path.join(folder, "pytorch_model.bin")
        hint = (" (only pytorch_model.bin is there, a pickle minilm-np never loads; convert it with "
                "safetensors.torch.save_file)") if os.path.exists(pickle) else ""
        raise ModelFileError(f"{path}: missing: the Dense module's weights{hint}")
    tensors, _ = read_safetensors(path)
    out_in = (spec["out_features"], spec["in_features"])
    expected = {"linear.weight"} | ({"linear.bias"} if spec["bias"] else set())
    residual_weight = None
    if spec["residual"] and spec["in_features"] != spec["out_features"]:
        expected.add("residual.weight")
        residual_weight = _tensor(tensors, "residual.weight", out_in, path)
    unexpected = sorted(set(tensors) - expected)
    if unexpected:
        raise ModelFileError(f"{path}: unexpected tensor {unexpected[0]!r}: the file does not match its config.json")
    return {"weight": _tensor(tensors, "linear.weight", out_in, path),
            "bias": _tensor(tensors, "linear.bias", (spec["out_features"],), path) if spec["bias"] else None,
            "residual_weight": residual_weight}
