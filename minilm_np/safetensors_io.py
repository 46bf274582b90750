"""Read a .safetensors file as memory-mapped numpy arrays, checking its header against the file.

The format is an 8-byte little-endian header length, a JSON header mapping tensor names to
``{"dtype", "shape", "data_offsets"}``, then the raw little-endian data. Nothing in it can
execute code, and nothing is copied: each array is a read-only view of the mapped file.
"""
import json
import math
import mmap
import os
import struct

import numpy as np

from .errors import ModelFileError

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
MAX_HEADER_BYTES = 100 * 1024 * 1024


def read_safetensors(path):
    """Map a safetensors file and return its tensors.

    Parameters
    ----------
    path : str

    Returns
    -------
    tensors : dict of str to ndarray
        Read-only arrays viewing the mapped file (copies only where the data is misaligned).
    metadata : dict of str to str

    Raises
    ------
    ModelFileError
        The file is missing, truncated, or its header is malformed or points outside the file.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise ModelFileError(f"{path}: truncated safetensors file ({size} bytes, no header)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > min(size - 8, MAX_HEADER_BYTES):
                raise ModelFileError(f"{path}: header length {header_len} is larger than the file "
                                     f"({size} bytes): the file is truncated or not safetensors")
            header_bytes = f.read(header_len)
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size > 0 else b""
    except OSError as error:
        raise ModelFileError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + header_len
    data_size = size - data_start
    tensors = {}
    for name, info in header.items():
        try:
            dtype_name = info["dtype"]
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{path}: tensor {name!r} has a malformed header entry {info!r}") from None
        dtype = DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
        if dtype is None:
            raise ModelFileError(f"{path}: tensor {name!r} has dtype {dtype_name!r}, which minilm-np cannot "
                                 f"read (supported: {', '.join(DTYPES)}; convert the weights to F32)")
        if any(d < 0 for d in shape):
            raise ModelFileError(f"{path}: tensor {name!r} has a negative dimension in shape {list(shape)}")
        # math.prod on Python ints: a hostile shape cannot overflow into a plausible size.
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if not 0 <= begin <= end or end - begin != nbytes:
            raise ModelFileError(f"{path}: tensor {name!r} offsets [{begin}, {end}) do not match its "
                                 f"shape {list(shape)} and dtype {info['dtype']} ({nbytes} bytes)")
        if end > data_size:
            raise ModelFileError(f"{path}: tensor {name!r} ends at byte {end} of the data but the file "
                                 f"holds only {data_size} data bytes: the file is truncated")
        array = np.frombuffer(mapped, dtype=np.dtype(dtype).newbyteorder("<"),
                              count=nbytes // np.dtype(dtype).itemsize, offset=data_start + begin)
        if (data_start + begin) % np.dtype(dtype).itemsize:
            array = array.copy()
            array.flags.writeable = False
        tensors[name] = array.reshape(shape)
    return tensors, metadata


def release_pages(array) -> None:
    """Drop this process's resident pages of a memory-mapped tensor that has been copied elsewhere.

    The tensor stays readable (a later read faults the pages back in from the page cache);
    this only keeps the pages of weights that were repacked at load time out of the
    process's resident memory.  A no-op for arrays that are not views of a mapped file, or
    where ``madvise`` is unavailable.
    """
    found = _mapped_offset(array)
    if found is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    root, offset = found
    start = -(-offset // mmap.PAGESIZE) * mmap.PAGESIZE
    end = (offset + array.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    if end > start:
        root.madvise(mmap.MADV_DONTNEED, start, end - start)


def _mapped_offset(array):
    """``(mmap, byte offset)`` of an array viewing a file mapped by :func:`read_safetensors`, or None."""
    root = array
    while isinstance(root, np.ndarray):
        root = root.base
    if isinstance(root, memoryview):
        root = root.obj
    if not isinstance(root, mmap.mmap):
        return None
    return root, array.ctypes.data - np.frombuffer(root, np.uint8, count=1).ctypes.data


class RowFile:
    """The rows of a C-contiguous 2-D tensor in a file, read with ``os.pread``, never mapped.

    Reading a row through the mapping maps the whole page-cache folio it lies in, so a mapped
    table's resident memory depends on how the kernel cached the file: the rows of one
    18-token sentence left 7.1 of the 11.2 MiB int8 word-embedding table resident when the
    file had just been written (large folios), 0.8 MiB once it had been read back in.  A
    ``pread`` copies the row's bytes and nothing else.

    Parameters
    ----------
    path : str
    offset : int
        Byte offset of row 0 in the file.
    shape : tuple of int
        ``(rows, columns)``.
    dtype : numpy dtype
    """

    def __init__(self, path, offset, shape, dtype):
        self.path = path
        self.offset = int(offset)
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = self.shape[1] * self.dtype.itemsize
        self._file = open(path, "rb", buffering=0)  # closed with this object

    def read(self, rows):
        """Rows ``rows`` (ndarray of int64, each in range) as a new read-only ``(len(rows), columns)`` array.

        Raises
        ------
        ModelFileError
            The file has become shorter than it was when loaded.
        """
        pread, fd, size = os.pread, self._file.fileno(), self.row_bytes
        data = b"".join([pread(fd, size, offset) for offset in (self.offset + rows * size).tolist()])
        if len(data) != len(rows) * size:
            raise ModelFileError(f"{self.path}: rows of a {list(self.shape)} tensor could not be read: the file "
                                 f"has been truncated since it was loaded")
        return np.frombuffer(data, self.dtype).reshape(len(rows), self.shape[1])


def open_row_file(path, array):
    """A :class:`RowFile` over ``array`` (a 2-D tensor mapped from ``path`` by :func:`read_safetensors`),
    or None where the array is not such a view or the platform has no ``os.pread``."""
    found = _mapped_offset(array)
    if found is None or not hasattr(os, "pread") or array.ndim != 2 or not array.flags.c_contiguous:
        return None
    return RowFile(path, found[1], array.shape, array.dtype)
