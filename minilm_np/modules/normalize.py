"""sentence-transformers' Normalize module: each sentence embedding scaled to unit L2 norm."""
import os
from dataclasses import dataclass

from ..jsonfile import read_json_object
from .checks import check_io_names


@dataclass(frozen=True)
class Normalize:
    """A Normalize module.

    Attributes
    ----------
    path : str
        Its folder, relative to the model directory (often ``2_Normalize``, often absent).
    """
    path: str = ""

    @classmethod
    def from_folder(cls, model_dir: str, folder: str) -> "Normalize":
        """A Normalize module; its folder's config.json, when there, may only name the sentence embedding.

        Raises
        ------
        ModelFileError
            The config.json is not a JSON object.
        UnsupportedModelError
            It reads or writes something other than the sentence embedding.
        """
        path = os.path.join(model_dir, folder, "config.json")
        raw = read_json_object(path, required=False) if folder else None
        if raw:
            check_io_names(raw, path, "Normalize")
        return cls(path=folder)

    def __call__(self, x, kernels):
        """Scale each row of ``x`` to unit L2 norm, in place.

        Parameters
        ----------
        x : ndarray of float32, (n, d), C-contiguous
        kernels : module
            The backend (its ``l2_normalize``).

        Returns
        -------
        ``x``, (n, d) float32.
        """
        kernels.l2_normalize(x, x)
        return x
