"""No NaN or infinity enters or leaves the engine: weights are checked at load, outputs per text.

Weights. :func:`check_finite_tensors` refuses a file whose floating-point tensors hold a NaN or
an infinity, naming the tensor; :func:`minilm_np.safetensors_io.read_safetensors` calls it, so
every loader built on that reader (encoder weights, quantised files, Dense heads) gets it.
Scanning all of all-MiniLM-L6-v2's 87 MiB costs far more than the rest of a warm start's reading
of the file (bench/load_checks.py), so a file found finite is recorded (a small file named by a
hash of its path, device, inode, size, mtime and ctime, under the user's cache directory) and
later loads of the same, unchanged file skip the scan. Any write to the file changes its ctime,
which no user call can set back, so a changed file is scanned again. As git does for its index,
a file changed in the last :data:`SETTLE_SECONDS` is not recorded: a write within the same clock
tick as the scan could leave its timestamps as they were. Where the cache directory is not
writable every load scans. A record trusts the file system: a bit that rots on disk after the
scan is not seen at load, but the output check below still stops any NaN it causes.

Outputs.  :func:`check_finite_rows` raises :class:`~minilm_np.errors.NonFiniteOutputError`
naming the text whose output row is not finite (finite weights can still overflow float32),
so a caller never receives a NaN vector.
"""
import hashlib
import os
import time

import numpy as np

from .errors import ModelFileError, NonFiniteOutputError
from .mapped import release_pages

RECORD_DIR_NAME = "finite-files"
SETTLE_SECONDS = 2


def record_dir() -> str:
    """Directory of the records of files found finite (beside numba's default cache)."""
    from .kernels._numba_env import default_cache_dir

    return os.path.join(os.path.dirname(default_cache_dir()), RECORD_DIR_NAME)


def file_identity(path, stat) -> str:
    """A key that changes whenever the file at ``path`` (``stat``: its ``os.stat_result``) is rewritten."""
    fields = (os.path.realpath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    return hashlib.sha256("\0".join(map(str, fields)).encode("utf-8", "surrogateescape")).hexdigest()


_checked_this_process = set()


def check_finite_tensors(tensors: dict, path: str, stat) -> None:
    """Refuse ``tensors`` (from the file ``path``, ``stat`` taken when it was opened) if any
    floating-point tensor holds a NaN or an infinity.

    Parameters
    ----------
    tensors : dict of str to ndarray
        Views of the mapped file.
    path : str
    stat : os.stat_result
        Of the opened file, before its data was read.

    Raises
    ------
    ModelFileError
        Names the first such tensor, how many values are not finite and the first one's index.
    """
    identity = file_identity(path, stat)
    record = os.path.join(record_dir(), identity)
    if identity in _checked_this_process or os.path.exists(record):
        return
    for name, tensor in tensors.items():
        if tensor.dtype.kind != "f" or tensor.size == 0:
            continue
        finite = np.isfinite(tensor)
        if not finite.all():
            bad = np.argwhere(~finite)
            raise ModelFileError(f"{path}: tensor {name!r} holds {len(bad)} values that are not finite (NaN or "
                                 f"infinity), the first at index {tuple(int(i) for i in bad[0])}: the file is corrupt")
        release_pages(tensor)  # the scan mapped every page: unmap those the model will not read
    if time.time_ns() - max(stat.st_mtime_ns, stat.st_ctime_ns) < SETTLE_SECONDS * 10**9:
        return
    _checked_this_process.add(identity)
    try:
        os.makedirs(os.path.dirname(record), exist_ok=True)
        with open(record, "w", encoding="utf-8") as f:
            f.write(os.path.realpath(path) + "\n")
    except OSError:
        pass  # an unwritable cache only costs a scan per load


def check_finite_rows(values: np.ndarray, text_of_row) -> None:
    """Raise :class:`NonFiniteOutputError` if a row of ``values`` holds a NaN or an infinity.

    Parameters
    ----------
    values : ndarray of float32, (rows, width)
    text_of_row : callable
        Row number (int) -> the caller's index of the text that row belongs to; called only on failure.
    """
    if np.isfinite(values).all():
        return
    row = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
    raise NonFiniteOutputError(f"sentences[{text_of_row(row)}]: the model's output for this text is not finite "
                               "(NaN or infinity): its weights are finite but overflow float32 on this text; "
                               "no vector is returned")
