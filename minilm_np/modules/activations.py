"""The activations of Dense modules and heads, by the torch class names sentence-transformers saves."""
import numpy as np

# short name by the name sentence-transformers saves (``fullname`` of the torch module).
ACTIVATIONS = {
    "torch.nn.modules.activation.Tanh": "tanh",
    "torch.nn.modules.linear.Identity": "identity",
    "torch.nn.modules.activation.ReLU": "relu",
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
    "torch.nn.modules.activation.GELU": "gelu",
}
# sentence-transformers' default when a Dense config names no activation.
DEFAULT_ACTIVATION = "torch.nn.modules.activation.Tanh"


def activate(name, x):
    """The activation ``name`` (a value of :data:`ACTIVATIONS`) of float32 ``x``, in place where
    numpy allows (``gelu`` returns a new array); any other name is the identity."""
    if name == "tanh":
        return np.tanh(x, out=x)
    if name == "relu":
        return np.maximum(x, 0, out=x)
    if name == "sigmoid":
        # 1 / (1 + exp(-x)) overflows to inf (harmlessly, giving 0) for x < -88: silence it.
        with np.errstate(over="ignore"):
            return np.divide(1, 1 + np.exp(-x), out=x)
    if name == "gelu":
        from ..kernels.reference import erf

        return (x * np.float32(0.5) * (1 + erf(x * np.float32(0.7071067811865476)))).astype(np.float32)
    return x
