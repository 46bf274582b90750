"""Arrays that view a memory-mapped file: where one lies in its mapping, and dropping its pages.

Shared by :mod:`minilm_np.safetensors_io`, which maps the files, and :mod:`minilm_np.finite`,
which scans them; it imports neither.
"""
import mmap

import numpy as np


def release_pages(array) -> None:
    """Drop this process's resident pages of a memory-mapped tensor that has been copied elsewhere.

    The tensor stays readable (a later read faults the pages back in from the page cache);
    this only keeps the pages of weights that were repacked at load time out of the
    process's resident memory.  A no-op for arrays that are not views of a mapped file, or
    where ``madvise`` is unavailable.
    """
    found = mapped_offset(array)
    if found is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    root, offset = found
    start = -(-offset // mmap.PAGESIZE) * mmap.PAGESIZE
    end = (offset + array.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if end > start:
        root.madvise(mmap.MADV_DONTNEED, start, end - start)


def mapped_offset(array):
    """``(mmap, byte offset)`` of an array viewing a mapped file (one that
    :func:`~minilm_np.safetensors_io.read_safetensors` mapped), or None."""
    root = array
    while isinstance(root, np.ndarray):
        root = root.base
    if isinstance(root, memoryview):
        root = root.obj
    if not isinstance(root, mmap.mmap):
        return None
    return root, array.ctypes.data - np.frombuffer(root, np.uint8, count=1).ctypes.data
