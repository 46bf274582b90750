"""Read a .safetensors file as memory-mapped numpy arrays, checking its header against the file.

The format is an 8-byte little-endian header length, a JSON header mapping tensor names to
``{"dtype", "shape", "data_offsets"}``, then the raw little-endian data. Nothing in it can
execute code, and nothing is copied: each array is a read-only view of the mapped file.

The checks are never more lenient than the ``safetensors`` library's (``safe_open``): a file
it refuses is refused here too, with a :class:`~minilm_np.errors.ModelFileError` naming the
file and, where there is one, the tensor.  They are, in the library's terms: the header length
within the file and at most 100,000,000 bytes; the header UTF-8 JSON, an object of tensor
entries and an optional ``__metadata__`` object of strings; each entry's dtype known, its shape
and offsets unsigned 64-bit integers whose byte range is exactly ``prod(shape) * itemsize``;
and the tensors covering the data exactly, in offset order, with no gap, overlap or byte left
over at the end.  A few things the library lets through are refused here as well (duplicate
JSON keys, unknown keys in an entry, dtypes numpy has no type for, lone surrogates in names),
and so is a floating-point tensor holding a NaN or an infinity (:mod:`minilm_np.finite`).
"""
import json
import math
import mmap
import os
import struct

import numpy as np

from .errors import ModelFileError
from .finite import check_finite_tensors
from .mapped import mapped_offset

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's limit
ENTRY_KEYS = ("dtype", "shape", "data_offsets")
U64_LIMIT = 1 << 64  # shapes and offsets are u64 (usize) in the library
NUMPY_SIZE_LIMIT = 1 << 63  # numpy's intp


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
        The file is missing, truncated, or its header is malformed, points outside the file
        or does not describe the data exactly (see the module's docstring).
    """
    try:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())  # the file mapped below; its identity for check_finite_tensors
            size = stat.st_size
            prefix = f.read(8)
            if len(prefix) < 8:
                raise ModelFileError(f"{path}: truncated safetensors file ({size} bytes, no header)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > size - 8:
                raise ModelFileError(f"{path}: header length {header_len} is larger than the file "
                                     f"({size} bytes): the file is truncated or not safetensors")
            if header_len > MAX_HEADER_BYTES:
                raise ModelFileError(f"{path}: header length {header_len} is over the format's limit of "
                                     f"{MAX_HEADER_BYTES} bytes: the file is corrupt or not safetensors")
            header_bytes = f.read(header_len)
            mapped = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) if size > 0 else b""
    except OSError as error:
        raise ModelFileError(f"{path}: cannot read ({error.strerror or error})") from None
    header = _parse_header(header_bytes, path)
    metadata = _metadata(header.pop("__metadata__", None), path)
    data_start = 8 + header_len
    layout = {name: _entry(name, info, path) for name, info in header.items()}
    _check_coverage(layout, size - data_start, path)
    tensors = {}
    for name, (dtype, shape, begin, end) in layout.items():
        array = np.frombuffer(mapped, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=data_start + begin)
        if (data_start + begin) % dtype.itemsize:
            array = array.copy()
            array.flags.writeable = False
        try:
            tensors[name] = array.reshape(shape)
        except ValueError as error:  # e.g. more dimensions than numpy's 64
            raise ModelFileError(f"{path}: tensor {name!r} has shape {list(shape)}, which numpy cannot "
                                 f"represent ({error})") from None
    check_finite_tensors(tensors, path, stat)
    return tensors, metadata


def _unique_keys(pairs):
    """``object_pairs_hook`` for json: a dict, refusing a key given twice (the library keeps one)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key!r} appears twice")
            seen.add(key)
    return result


def _strict_int(text):
    """``parse_int`` for json: ``-0`` is a float to the library's JSON parser, never an integer."""
    if text == "-0":
        raise ValueError("-0 is not an integer")
    return int(text)


def _parse_header(header_bytes, path):
    """The header's JSON object (a dict), or ModelFileError."""
    try:
        header = json.loads(header_bytes.decode("utf-8"), object_pairs_hook=_unique_keys, parse_int=_strict_int)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ModelFileError(f"{path}: header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: header is not a JSON object")
    for name in header:
        _check_text(name, path)
    return header


def _check_text(text, path):
    """A string from the header must be valid Unicode (json lets lone surrogate escapes through)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ModelFileError(f"{path}: header holds the string {text!r}, which has a lone surrogate") from None


def _metadata(raw, path):
    """The ``__metadata__`` object: a dict of str to str (null or absent: empty)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ModelFileError(f"{path}: header's __metadata__ must be an object of strings, got {raw!r:.200}")
    for key, value in raw.items():
        _check_text(key, path)
        _check_text(value, path)
    return raw


def _is_u64(value):
    return type(value) is int and 0 <= value < U64_LIMIT


def _entry(name, info, path):
    """``(dtype, shape, begin, end)`` of one header entry, checked on its own."""
    if not isinstance(info, dict) or sorted(info) != sorted(ENTRY_KEYS):
        raise ModelFileError(f"{path}: tensor {name!r} has a malformed header entry {info!r:.200} (expected the "
                             f"keys {', '.join(ENTRY_KEYS)})")
    dtype_name, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(shape, list) or not isinstance(offsets, list) or len(offsets) != 2:
        raise ModelFileError(f"{path}: tensor {name!r} has a malformed header entry {info!r:.200}")
    if any(type(d) is int and d < 0 for d in shape):
        raise ModelFileError(f"{path}: tensor {name!r} has a negative dimension in shape {shape}")
    if not all(_is_u64(d) for d in shape + offsets):
        raise ModelFileError(f"{path}: tensor {name!r} has a malformed header entry {info!r:.200} (shape and "
                             "offsets must be integers in [0, 2**64))")
    dtype = DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise ModelFileError(f"{path}: tensor {name!r} has dtype {dtype_name!r}, which minilm-np cannot "
                             f"read (supported: {', '.join(DTYPES)}; convert the weights to F32)")
    dtype = np.dtype(dtype).newbyteorder("<")
    # Python ints cannot overflow into a plausible size; the library refuses a shape whose running
    # product passes 64 bits even when a later 0 makes it empty, and numpy one past its intp.
    running = 1
    for d in shape:
        running *= d
        if running >= U64_LIMIT:
            break
    if running >= U64_LIMIT or math.prod(d for d in shape if d) >= NUMPY_SIZE_LIMIT:
        raise ModelFileError(f"{path}: tensor {name!r} has shape {shape}, whose size overflows 64 bits")
    begin, end = offsets
    nbytes = running * dtype.itemsize
    if begin > end or end - begin != nbytes:
        raise ModelFileError(f"{path}: tensor {name!r} offsets [{begin}, {end}) do not match its "
                             f"shape {shape} and dtype {dtype_name} ({nbytes} bytes)")
    return dtype, tuple(shape), begin, end


def _check_coverage(layout, data_size, path):
    """The tensors' byte ranges, in offset order, must tile ``[0, data_size)`` exactly."""
    ordered = sorted(layout.items(), key=lambda item: item[1][2:])
    for name, (_, _, _, end) in ordered:
        if end > data_size:
            raise ModelFileError(f"{path}: tensor {name!r} ends at byte {end} of the data but the file "
                                 f"holds only {data_size} data bytes: the file is truncated")
    position, previous = 0, None
    for name, (_, _, begin, end) in ordered:
        if begin < position:
            raise ModelFileError(f"{path}: tensor {name!r} starts at byte {begin} of the data, inside tensor "
                                 f"{previous!r} (which ends at {position}): the tensors overlap")
        if begin > position:
            raise ModelFileError(f"{path}: tensor {name!r} starts at byte {begin} of the data but the tensors "
                                 f"before it end at {position}: {begin - position} bytes belong to no tensor")
        position, previous = end, name
    if position != data_size:
        raise ModelFileError(f"{path}: the tensors cover {position} of the {data_size} data bytes, leaving "
                             f"{data_size - position} at the end: the header length is wrong or bytes were added "
                             "to the file")


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
    found = mapped_offset(array)
    if found is None or not hasattr(os, "pread") or array.ndim != 2 or not array.flags.c_contiguous:
        return None
    return RowFile(path, found[1], array.shape, array.dtype)
