"""The head of ``BertForSequenceClassification``: the cross-encoder's score from [CLS].

``logits = classifier(tanh(pooler.dense(h[CLS])))``, both float32 linears, one matrix-vector
product per pair: BLAS's GEMM rounds differently with the number of rows (its small-matrix
kernels), a GEMV does not, so a pair's score is bitwise the same alone or in any batch. The head
is float32 in every int8 mode (it is 0.2% of the weights); a quantised directory stores its four
tensors as they are.
"""
import os
from dataclasses import dataclass

import numpy as np

from ..checkpoint import safetensors_path, strip_prefix
from ..errors import ModelFileError
from ..safetensors_io import read_safetensors
from .activations import activate
from .dense import Dense


def head_tensor_spec(config) -> dict:
    """Name -> shape of the head's tensors (after the ``bert.`` prefix is dropped)."""
    h, labels = config.hidden_size, config.num_labels
    return {"pooler.dense.weight": (h, h), "pooler.dense.bias": (h,),
            "classifier.weight": (labels, h), "classifier.bias": (labels,)}


@dataclass(frozen=True)
class ClassificationHead:
    """Pooler (tanh) and classifier of a ``BertForSequenceClassification``.

    Attributes
    ----------
    pooler : Dense
        ``(hidden, hidden)`` with tanh.
    classifier : Dense
        ``(num_labels, hidden)``, no activation.
    labels : tuple of str
        The label names (config.json's ``id2label``, else ``LABEL_i``).
    """
    pooler: Dense
    classifier: Dense
    labels: tuple

    @classmethod
    def from_folder(cls, model_dir: str, folder: str, config) -> "ClassificationHead":
        """Read the head from ``<model_dir>/<folder>/model.safetensors`` (float32 or minilm-np int8).

        Parameters
        ----------
        model_dir, folder : str
            The model directory and the head's folder in it (``""``: the checkpoint of the body).
        config : minilm_np.config.Config
            Its ``hidden_size``, ``num_labels`` and config.json's ``id2label`` (``extra``).

        Raises
        ------
        ModelFileError
            A head tensor is missing, mis-shaped or not float32 (the message names it).
        """
        path = safetensors_path(os.path.join(model_dir, folder))
        tensors, _ = read_safetensors(path)
        tensors = strip_prefix(tensors)
        for name, shape in head_tensor_spec(config).items():
            if name not in tensors:
                raise ModelFileError(f"{path}: tensor {name!r} is missing: a BertForSequenceClassification "
                                     "checkpoint needs its pooler and classifier")
            if tensors[name].shape != shape:
                raise ModelFileError(f"{path}: tensor {name!r} has shape {list(tensors[name].shape)}, "
                                     f"config.json implies {list(shape)}")
            if tensors[name].dtype != np.float32:
                raise ModelFileError(f"{path}: tensor {name!r} has dtype {tensors[name].dtype}, expected float32")
        def dense(prefix, activation):
            return Dense(weight=np.ascontiguousarray(tensors[prefix + ".weight"]),
                         bias=np.ascontiguousarray(tensors[prefix + ".bias"]), activation=activation, path=prefix)

        raw = config.extra.get("id2label")
        names = {int(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        labels = tuple(names.get(i, f"LABEL_{i}") for i in range(config.num_labels))
        return cls(pooler=dense("pooler.dense", "tanh"), classifier=dense("classifier", "identity"), labels=labels)

    @property
    def num_labels(self) -> int:
        return self.classifier.out_features

    def tensors(self) -> dict:
        """The head's tensors by checkpoint name (to write a quantised directory)."""
        return {"pooler.dense.weight": self.pooler.weight, "pooler.dense.bias": self.pooler.bias,
                "classifier.weight": self.classifier.weight, "classifier.bias": self.classifier.bias}

    def __call__(self, token_embeddings, cu_seqlens, kernels):
        """Logits of each sequence.

        Parameters
        ----------
        token_embeddings : ndarray of float32, (n_tokens, hidden)
            The body's last layer over packed sequences.
        cu_seqlens : ndarray of int64, (n_seqs + 1,)
        kernels : module
            The backend (its ``first_token_pool``).

        Returns
        -------
        ndarray of float32, (n_seqs, num_labels)
        """
        cls_rows = np.empty((len(cu_seqlens) - 1, token_embeddings.shape[1]), np.float32)
        kernels.first_token_pool(token_embeddings, cu_seqlens, cls_rows)
        return _linear_rows(self.classifier, _linear_rows(self.pooler, cls_rows))

    def describe(self) -> str:
        """One line for ``minilm-np info``."""
        h = self.pooler.in_features
        return (f"BertForSequenceClassification: tanh(pooler {h}x{h}) on [CLS] -> classifier "
                f"{h}->{self.num_labels}")


def _linear_rows(layer: Dense, x):
    """``activation(x @ weight.T + bias)`` one row at a time: ``(n, in)`` -> ``(n, out)`` float32."""
    out = np.empty((len(x), layer.out_features), np.float32)
    for i in range(len(x)):
        np.matmul(layer.weight, x[i], out=out[i])
    out += layer.bias
    return activate(layer.activation, out)
