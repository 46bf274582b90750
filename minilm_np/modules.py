"""The sentence-transformers modules that follow Pooling: Dense and Normalize.

sentence-transformers runs the modules of ``modules.json`` in order; after Transformer and
Pooling a model may add ``Dense`` layers (a linear map plus an activation, its weights in
``<folder>/model.safetensors``) and a ``Normalize``. This module reads their configuration
(for :func:`minilm_np.config.read_config`), loads the Dense weights and applies the
modules to pooled sentence embeddings, in the same order and with the same arithmetic.
"""
import json
import os
from dataclasses import dataclass

import numpy as np

from .errors import ModelFileError, UnsupportedModelError
from .safetensors_io import read_safetensors

# Dense activations by the name sentence-transformers saves (``fullname`` of the torch module).
ACTIVATIONS = {
    "torch.nn.modules.activation.Tanh": "tanh",
    "torch.nn.modules.linear.Identity": "identity",
    "torch.nn.modules.activation.ReLU": "relu",
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
    "torch.nn.modules.activation.GELU": "gelu",
}
# sentence-transformers' default when a Dense config names no activation.
DEFAULT_ACTIVATION = "torch.nn.modules.activation.Tanh"
SENTENCE_EMBEDDING = "sentence_embedding"


@dataclass(frozen=True)
class DenseSpec:
    """A Dense module as its ``config.json`` describes it.

    Attributes
    ----------
    path : str
        Its folder, relative to the model directory (``2_Dense``).
    in_features, out_features : int
    bias : bool
    activation : str
        Short name: ``tanh``, ``identity``, ``relu``, ``sigmoid`` or ``gelu``.
    residual : bool
        ``use_residual``: the input (projected when the widths differ) is added to the output.
    """
    path: str
    in_features: int
    out_features: int
    bias: bool = True
    activation: str = "tanh"
    residual: bool = False


@dataclass(frozen=True)
class NormalizeSpec:
    """A Normalize module: each sentence embedding scaled to unit L2 norm."""
    path: str = ""


@dataclass(frozen=True)
class DenseLayer:
    """A loaded Dense module: float32 ``weight (out, in)``, ``bias (out,)`` or None,
    ``residual_weight (out, in)`` or None (identity residual when ``spec.residual``)."""
    spec: DenseSpec
    weight: np.ndarray
    bias: np.ndarray | None
    residual_weight: np.ndarray | None


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise ModelFileError(f"{path}: expected a JSON object")
    return raw


def _check_io_names(raw, path, kind):
    """Reject modules that read or write something other than the sentence embedding."""
    for key in ("module_input_name", "module_output_name"):
        name = raw.get(key)
        if name not in (None, SENTENCE_EMBEDDING):
            raise UnsupportedModelError(f"{path}: {kind} with {key} {name!r} is not supported (minilm-np applies "
                                        f"{kind} to the sentence embedding only)")


def read_dense_spec(model_dir: str, folder: str) -> DenseSpec:
    """Read ``<model_dir>/<folder>/config.json`` of a Dense module.

    Raises
    ------
    ModelFileError
        The file is missing, not JSON, or a width is not a positive integer.
    UnsupportedModelError
        The activation, or an input/output other than the sentence embedding.
    """
    path = os.path.join(model_dir, folder, "config.json")
    raw = _read_json(path)
    if raw is None:
        raise ModelFileError(f"{path}: file is missing (the Dense module's configuration)")
    widths = {}
    for key in ("in_features", "out_features"):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelFileError(f"{path}: {key!r} must be a positive integer, got {value!r}")
        widths[key] = value
    activation = raw.get("activation_function") or DEFAULT_ACTIVATION
    if activation not in ACTIVATIONS:
        raise UnsupportedModelError(f"{path}: Dense activation_function {activation!r} is not supported "
                                    f"(supported: {', '.join(ACTIVATIONS)})")
    _check_io_names(raw, path, "Dense")
    return DenseSpec(path=folder, bias=bool(raw.get("bias", True)), activation=ACTIVATIONS[activation],
                     residual=bool(raw.get("use_residual", False)), **widths)


def read_normalize_spec(model_dir: str, folder: str) -> NormalizeSpec:
    """A Normalize module; its folder (often absent) may only name the sentence embedding."""
    path = os.path.join(model_dir, folder, "config.json")
    raw = _read_json(path) if folder else None
    if raw:
        _check_io_names(raw, path, "Normalize")
    return NormalizeSpec(path=folder)


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


def load_dense(model_dir: str, spec: DenseSpec) -> DenseLayer:
    """Load a Dense module's weights from ``<folder>/model.safetensors``.

    Raises
    ------
    ModelFileError
        The file is missing (or only a pickle is there), or a tensor is missing, mis-shaped or
        not float32.
    """
    path = os.path.join(model_dir, spec.path, "model.safetensors")
    if not os.path.exists(path):
        pickle = os.path.join(model_dir, spec.path, "pytorch_model.bin")
        hint = (" (only pytorch_model.bin is there, a pickle minilm-np never loads; convert it with "
                "safetensors.torch.save_file)") if os.path.exists(pickle) else ""
        raise ModelFileError(f"{path}: missing: the Dense module's weights{hint}")
    tensors, _ = read_safetensors(path)
    out_in = (spec.out_features, spec.in_features)
    expected = {"linear.weight"} | ({"linear.bias"} if spec.bias else set())
    residual_weight = None
    if spec.residual and spec.in_features != spec.out_features:
        expected.add("residual.weight")
        residual_weight = _tensor(tensors, "residual.weight", out_in, path)
    unexpected = sorted(set(tensors) - expected)
    if unexpected:
        raise ModelFileError(f"{path}: unexpected tensor {unexpected[0]!r}: the file does not match its config.json")
    return DenseLayer(spec=spec, weight=_tensor(tensors, "linear.weight", out_in, path),
                      bias=_tensor(tensors, "linear.bias", (spec.out_features,), path) if spec.bias else None,
                      residual_weight=residual_weight)


def load_head(model_dir: str, post_modules: tuple) -> tuple:
    """The modules after Pooling, ready to apply: :class:`DenseLayer` and :class:`NormalizeSpec` items."""
    return tuple(load_dense(model_dir, m) if isinstance(m, DenseSpec) else m for m in post_modules)


def _activate(name, x):
    if name == "tanh":
        return np.tanh(x, out=x)
    if name == "relu":
        return np.maximum(x, 0, out=x)
    if name == "sigmoid":
        # 1 / (1 + exp(-x)) overflows to inf (harmlessly, giving 0) for x < -88: silence it.
        with np.errstate(over="ignore"):
            return np.divide(1, 1 + np.exp(-x), out=x)
    if name == "gelu":
        from .kernels.reference import erf

        return (x * np.float32(0.5) * (1 + erf(x * np.float32(0.7071067811865476)))).astype(np.float32)
    return x


def _matmul(x, weight):
    """``x @ weight.T`` on at least MIN_GEMM_ROWS rows (zero-padded), so each row's result is
    bitwise independent of how many rows share the call (see :data:`minilm_np.model.MIN_GEMM_ROWS`)."""
    from .model import MIN_GEMM_ROWS

    if len(x) >= MIN_GEMM_ROWS:
        return x @ weight.T
    padded = np.zeros((MIN_GEMM_ROWS, x.shape[1]), np.float32)
    padded[:len(x)] = x
    return (padded @ weight.T)[:len(x)]


def apply_dense(layer: DenseLayer, x: np.ndarray) -> np.ndarray:
    """``activation(x @ weight.T + bias)`` (+ the residual): ``(n, in)`` float32 -> ``(n, out)`` float32."""
    out = _matmul(x, layer.weight)
    if layer.bias is not None:
        out += layer.bias
    out = _activate(layer.spec.activation, out)
    if layer.spec.residual:
        out += x if layer.residual_weight is None else _matmul(x, layer.residual_weight)
    return out


def apply_head(head: tuple, pooled: np.ndarray, kernels) -> np.ndarray:
    """Run the post-pooling modules in ``modules.json`` order.

    Parameters
    ----------
    head : tuple of DenseLayer / NormalizeSpec
        From :func:`load_head`.
    pooled : ndarray of float32, (n, pooled_dim)
        Written in place by a leading Normalize.
    kernels : module
        The backend (its ``l2_normalize``).

    Returns
    -------
    ndarray of float32, (n, embedding_dim), C-contiguous.
    """
    for module in head:
        if isinstance(module, DenseLayer):
            pooled = np.ascontiguousarray(apply_dense(module, pooled), dtype=np.float32)
        else:
            kernels.l2_normalize(pooled, pooled)
    return pooled
