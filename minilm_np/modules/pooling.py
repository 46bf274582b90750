"""sentence-transformers' Pooling module: token embeddings -> one vector per sequence.

Its folder's ``config.json`` names the pooling modes (``pooling_mode``, sentence-transformers
>= 6, or one ``pooling_mode_*`` flag per mode in older files) and ``include_prompt``; the
modes' vectors are concatenated in order.
"""
import os
from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedModelError
from ..jsonfile import read_json_object

# The modes minilm-np computes, by the names the files use.
POOLING_NAMES = {"cls": "cls", "max": "max", "mean": "mean", "mean_sqrt_len_tokens": "mean_sqrt_len",
                 "mean_sqrt_len": "mean_sqrt_len", "weightedmean": "weightedmean", "lasttoken": "lasttoken"}
# sentence-transformers' order of concatenation for the old one-flag-per-mode files.
LEGACY_POOLING_KEYS = (("pooling_mode_cls_token", "cls"), ("pooling_mode_max_tokens", "max"),
                       ("pooling_mode_mean_tokens", "mean"), ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
                       ("pooling_mode_weightedmean_tokens", "weightedmean"), ("pooling_mode_lasttoken", "lasttoken"))


@dataclass(frozen=True)
class Pooling:
    """A Pooling module.

    Attributes
    ----------
    hidden_size : int
        Width of a token embedding.
    modes : tuple of str
        Values of :data:`POOLING_NAMES`, in the order their vectors are concatenated.
    include_prompt : bool
        False: prompt tokens are to be left out of pooling (minilm-np refuses prompts then).
    """
    hidden_size: int
    modes: tuple = ("mean",)
    include_prompt: bool = True

    @classmethod
    def from_folder(cls, model_dir: str, folder: str, hidden_size: int) -> "Pooling":
        """Read ``<model_dir>/<folder>/config.json``.

        Raises
        ------
        ModelFileError
            The file is missing, not JSON or not a JSON object.
        UnsupportedModelError
            It names a pooling mode minilm-np does not compute.
        """
        path = os.path.join(model_dir, folder, "config.json")
        raw = read_json_object(path)
        if "pooling_mode" in raw:  # sentence-transformers >= 6 writes the modes by name, in order
            named = raw["pooling_mode"]
            named = [named] if isinstance(named, str) else list(named)
        else:  # older files: one flag per mode, concatenated in this order
            named = [mode for key, mode in LEGACY_POOLING_KEYS if raw.get(key)]
        unknown = [m for m in named if m not in POOLING_NAMES]
        if unknown:
            raise UnsupportedModelError(f"{path}: pooling modes {unknown} are not supported "
                                        f"(supported: {', '.join(POOLING_NAMES)})")
        modes = tuple(POOLING_NAMES[m] for m in named) or ("mean",)  # as sentence-transformers does with none
        return cls(hidden_size, modes, bool(raw.get("include_prompt", True)))

    def get_sentence_embedding_dimension(self) -> int:
        """Width of the pooled vector: the hidden size times the number of modes."""
        return self.hidden_size * len(self.modes)

    def __call__(self, token_embeddings, cu_seqlens, kernels):
        """The pooled vector of each sequence: the modes' vectors, concatenated in order.

        Parameters
        ----------
        token_embeddings : ndarray of float32, (n_tokens, hidden_size)
            The Transformer's last layer over packed sequences.
        cu_seqlens : ndarray of int64, (n_seqs + 1,)
            Sequence ``s`` is rows ``cu_seqlens[s]:cu_seqlens[s + 1]`` (each non-empty).
        kernels : module
            The backend (its ``first_token_pool``, ``max_pool``, ``mean_pool``).

        Returns
        -------
        ndarray of float32, (n_seqs, hidden_size * len(modes)), C-contiguous.
        """
        n_seqs, width = len(cu_seqlens) - 1, self.hidden_size
        out = np.empty((n_seqs, width * len(self.modes)), np.float32)
        for i, mode in enumerate(self.modes):
            part = out[:, i * width:(i + 1) * width]
            if mode == "cls":
                kernels.first_token_pool(token_embeddings, cu_seqlens, part)
            elif mode == "max":
                kernels.max_pool(token_embeddings, cu_seqlens, part)
            elif mode == "lasttoken":
                part[:] = token_embeddings[cu_seqlens[1:] - 1]
            elif mode == "weightedmean":  # token t (from 0) weighs t + 1, as sentence-transformers does
                for s in range(n_seqs):
                    rows = token_embeddings[cu_seqlens[s]:cu_seqlens[s + 1]]
                    weights = np.arange(1, len(rows) + 1, dtype=np.float32)
                    part[s] = (weights @ rows) / weights.sum()
            else:
                kernels.mean_pool(token_embeddings, cu_seqlens, part)
                if mode == "mean_sqrt_len":
                    lengths = np.diff(cu_seqlens).astype(np.float32)[:, None]
                    part *= lengths / np.sqrt(lengths)
        return out
