"""Seeded corruptions of safetensors files, and the verdicts of the ``safetensors`` library and ours.

:func:`mutate` corrupts a file the way disks, downloads and hand edits do (the header length,
header bytes, tensor offsets, dtypes, shapes, truncation, trailing bytes, data bytes, several at
once) and returns it as chunks to write, so a 90 MB file is never copied in Python.
:func:`compare` reads the result with ``safetensors.safe_open`` and with
:func:`minilm_np.safetensors_io.read_safetensors` and reports the first disagreement that breaks
the contract: the library refuses and we do not (or not with a ModelFileError naming the file),
or both accept different tensors.  Used by tests/test_safetensors_differential.py.
"""
import json
import math
import os
import random
import struct
from dataclasses import dataclass

import numpy as np

from minilm_np.errors import ModelFileError
from minilm_np.safetensors_io import read_safetensors

# Every dtype string the library knows, and some it does not.
DTYPE_NAMES = ("BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16", "F16", "BF16", "I32", "U32",
               "F32", "F64", "I64", "U64", "C64", "F4", "F6_E2M3", "F6_E3M2", "f32", "Q4", "", "F32 ")
ODD_VALUES = (None, True, 1.0, -1, "4", [], {}, 2 ** 32, 2 ** 63, 2 ** 64, 2 ** 64 + 8, -(2 ** 63), 1e300)
JSON_BYTES = b'{}[]",:0123456789-.eE \\tn\x00\xff'
FLOAT_SPECIALS = (np.nan, np.inf, -np.inf)
NUMPY_DTYPES = (np.float32, np.float16, np.float64, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_)


@dataclass
class Parsed:
    """A well-formed safetensors file, split: ``header`` is the parsed JSON (in file order)."""
    raw: memoryview
    header_len: int
    header: dict

    @property
    def data(self):
        return self.raw[8 + self.header_len:]

    @classmethod
    def of(cls, raw):
        raw = memoryview(raw)
        (n,) = struct.unpack("<Q", raw[:8])
        return cls(raw, n, json.loads(bytes(raw[8:8 + n])))

    def tensor_names(self):
        return [k for k in self.header if k != "__metadata__"]


def random_safetensors(rng: random.Random) -> bytes:
    """A small file written by the ``safetensors`` library: random dtypes, shapes (0-size and
    0-d too), names and metadata."""
    from safetensors.numpy import save

    gen = np.random.default_rng(rng.randrange(1 << 32))
    tensors = {}
    for i in range(rng.randint(1, 6)):
        shape = tuple(rng.choice([0, 1, 2, 3, 5, 8]) for _ in range(rng.randint(0, 3)))
        dtype = np.dtype(rng.choice(NUMPY_DTYPES))
        values = gen.standard_normal(shape) * 100
        name = rng.choice(["w", "layer.0.weight", "b\u00e9ta", "\u5c42", "q\"uote", "", "x" * 40]) + f".{i}"
        tensors[name] = np.ascontiguousarray(values.astype(dtype))
    metadata = rng.choice([None, {"format": "np"}, {"a": "1", "\u00fc": "\u2713"}])
    return save(tensors, metadata=metadata)


def _frame(header, pad=True, length_delta=0):
    encoded = json.dumps(header, ensure_ascii=False).encode("utf-8")
    if pad:
        encoded += b" " * (-len(encoded) % 8)
    return [struct.pack("<Q", max(0, len(encoded) + length_delta)), encoded]


def _with_header(p: Parsed, header, rng, stale_length=False):
    """Chunks of ``p`` with ``header`` re-encoded (its length updated unless ``stale_length``)."""
    chunks = _frame(header, pad=rng.random() < 0.8)
    if stale_length:
        chunks[0] = struct.pack("<Q", p.header_len)
    return chunks + [p.data]


def _copy_header(p: Parsed):
    return json.loads(json.dumps(p.header))


def _pick_tensor(p: Parsed, rng):
    names = p.tensor_names()
    return rng.choice(names) if names else None


def m_header_length(p, rng):
    n = p.header_len
    size = len(p.raw)
    value = rng.choice([n + rng.choice([-9, -8, -2, -1, 1, 2, 7, 8, 64]), 0, 1, size - 8, size - 7,
                        rng.randrange(0, size), 100_000_001, 2 ** 63, 2 ** 64 - 1])
    value = min(max(value, 0), 2 ** 64 - 1)
    return [struct.pack("<Q", value), p.raw[8:]], f"header length {n} -> {value}"


def m_header_byte(p, rng):
    if p.header_len == 0:
        return m_trailing(p, rng)
    header = bytearray(p.raw[8:8 + p.header_len])
    at = rng.randrange(len(header))
    old = header[at]
    action = rng.random()
    if action < 0.6:
        header[at] = rng.choice(JSON_BYTES) if rng.random() < 0.75 else rng.randrange(256)
        what = f"byte {at} {old:#x} -> {header[at]:#x}"
    elif action < 0.8:
        del header[at]
        what = f"byte {at} deleted"
    else:
        header.insert(at, rng.choice(JSON_BYTES))
        what = f"byte {header[at]:#x} inserted at {at}"
    n = len(header) if rng.random() < 0.5 else p.header_len
    if n > len(header):  # a stale length over a shorter header: keep the file's length consistent
        header += b" " * (n - len(header))
    return [struct.pack("<Q", n), bytes(header[:n]), bytes(header[n:]), p.data], f"header {what}, length {n}"


def m_offsets(p, rng):
    header, name = _copy_header(p), _pick_tensor(p, rng)
    if name is None:
        return m_metadata(p, rng)
    begin, end = header[name]["data_offsets"]
    others = [header[k]["data_offsets"] for k in p.tensor_names() if k != name]
    d = rng.choice([-8, -4, -2, -1, 1, 2, 4, 8, 1024])
    new = rng.choice([[begin + d, end], [begin, end + d], [begin + d, end + d], [end, begin],
                      rng.choice(others) if others else [begin, end], [begin, len(p.data) + d],
                      [begin], [begin, end, end], [rng.choice(ODD_VALUES), end], [begin, rng.choice(ODD_VALUES)]])
    header[name]["data_offsets"] = new
    return _with_header(p, header, rng, stale_length=rng.random() < 0.1), f"{name!r} offsets {[begin, end]} -> {new}"


def m_dtype(p, rng):
    header, name = _copy_header(p), _pick_tensor(p, rng)
    if name is None:
        return m_metadata(p, rng)
    new = rng.choice(DTYPE_NAMES + (None, 32, ["F32"]))
    old = header[name]["dtype"]
    header[name]["dtype"] = new
    if rng.random() < 0.5 and isinstance(new, str):  # resize the shape to the same byte count where possible
        sizes = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4,
                 "F64": 8, "I64": 8, "U64": 8}
        begin, end = header[name]["data_offsets"]
        if new in sizes and (end - begin) % sizes[new] == 0:
            header[name]["shape"] = [(end - begin) // sizes[new]]
    return _with_header(p, header, rng), f"{name!r} dtype {old} -> {new!r}, shape {header[name]['shape']}"


def m_shape(p, rng):
    header, name = _copy_header(p), _pick_tensor(p, rng)
    if name is None:
        return m_metadata(p, rng)
    shape = list(header[name]["shape"])
    action = rng.randrange(8)
    if action == 0 and shape:
        i = rng.randrange(len(shape))
        shape[i] += rng.choice([-1, 1, shape[i]])
    elif action == 1:
        shape = shape[::-1]
    elif action == 2:
        shape.insert(rng.randrange(len(shape) + 1), rng.choice([1, 0, 2]))
    elif action == 3 and shape:
        shape.pop(rng.randrange(len(shape)))
    elif action == 4 and shape:
        shape[rng.randrange(len(shape))] = rng.choice(ODD_VALUES)
    elif action == 5:
        shape = [math.prod(shape)] if rng.random() < 0.5 else []
    elif action == 6:  # a product that wraps around 2**64 to the true size
        shape = [2 ** 32, 2 ** 32] + shape
    else:
        shape = rng.choice([None, "x", 4, [[1]]])
    old = header[name]["shape"]
    header[name]["shape"] = shape
    return _with_header(p, header, rng), f"{name!r} shape {old} -> {shape}"


def m_truncate(p, rng):
    size = len(p.raw)
    at = rng.choice([rng.randrange(0, 8), rng.randrange(8, 8 + p.header_len + 1), 8 + p.header_len,
                     rng.randrange(8 + p.header_len, size + 1), size - 1, size - rng.randint(1, 16)])
    at = min(max(at, 0), size)
    return [p.raw[:at]], f"truncated to {at} of {size} bytes"


def m_trailing(p, rng):
    extra = rng.choice([b"\x00", b" ", bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))), b"\x00" * 8])
    return [p.raw, extra], f"{len(extra)} trailing bytes"


def m_metadata(p, rng):
    header = _copy_header(p)
    value = rng.choice([None, {}, {"a": 1}, {"a": "b"}, "x", [], {"a": None}, {"a": ["b"]}])
    header["__metadata__"] = value
    return _with_header(p, header, rng), f"__metadata__ -> {value!r}"


def m_entry(p, rng):
    header, name = _copy_header(p), _pick_tensor(p, rng)
    if name is None:
        return m_metadata(p, rng)
    action = rng.randrange(7)
    if action == 0:
        header[name]["extra"] = rng.choice([1, "x", None])
        what = "an unknown key"
    elif action == 1:
        del header[name][rng.choice(["dtype", "shape", "data_offsets"])]
        what = "a key removed"
    elif action == 2:
        del header[name]
        what = "entry removed"
    elif action == 3:
        header[name + ".copy"] = dict(header[name])
        what = "entry duplicated (overlap)"
    elif action == 4:
        end = header[name]["data_offsets"][1]
        header["empty"] = {"dtype": "F32", "shape": [0], "data_offsets": [end, end]}
        what = "a 0-size tensor added"
    elif action == 5:
        header = dict(reversed(list(header.items())))
        what = "entries reversed"
    else:  # a key given twice, in the text
        entry = json.dumps({name: header[name]})[1:-1]
        encoded = (json.dumps(header)[:-1] + ", " + entry + "}").encode("utf-8")
        return [struct.pack("<Q", len(encoded)), encoded, p.data], f"{name!r} given twice"
    return _with_header(p, header, rng), f"{name!r}: {what}"


def m_json_text(p, rng):
    """Changes a parser may read differently: whitespace, escapes, -0, number forms."""
    text = bytes(p.raw[8:8 + p.header_len]).decode("utf-8").rstrip(" ")
    action = rng.randrange(6)
    if action == 0:
        text = rng.choice([" ", "\n", "\t", "\r", "\ufeff"]) + text
    elif action == 1:
        text = text.replace('"data_offsets":[0,', '"data_offsets":[-0,', 1).replace('"data_offsets": [0,',
                                                                               '"data_offsets": [-0,', 1)
    elif action == 2:
        text = text.replace(",", ", ", 1).replace(":", " : ", 1)
    elif action == 3:
        text = text.replace('"dtype"', '"\\u0064type"', 1)
    elif action == 4:
        text = text.replace('"', '"\\ud800', 1)
    else:
        text = text + rng.choice(["", " ", "x", "}", ",", "\x00"])
    encoded = text.encode("utf-8", "surrogatepass")
    return [struct.pack("<Q", len(encoded)), encoded, p.data], f"header text edit {action}"


def m_data(p, rng):
    """A data byte changed, or a NaN / infinity written into a float32 tensor (the library accepts both)."""
    names = [k for k in p.tensor_names() if p.header[k]["dtype"] == "F32" and p.header[k]["data_offsets"][1]
             > p.header[k]["data_offsets"][0]]
    data = bytearray(p.data) if len(p.data) < (1 << 22) else None
    if names and (rng.random() < 0.6 or data is None):
        name = rng.choice(names)
        begin, end = p.header[name]["data_offsets"]
        at = begin + 4 * rng.randrange((end - begin) // 4)
        special = struct.pack("<f", rng.choice(FLOAT_SPECIALS))
        prefix = bytes(p.raw[:8 + p.header_len])
        return [prefix, p.data[:at], special, p.data[at + 4:]], f"non-finite float in {name!r} at byte {at}"
    if not data:
        return m_trailing(p, rng)
    at = rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)
    return [p.raw[:8 + p.header_len], bytes(data)], f"data bit flip at {at}"


MUTATIONS = (m_header_length, m_header_byte, m_offsets, m_dtype, m_shape, m_truncate, m_trailing, m_metadata,
             m_entry, m_json_text, m_data)


def mutate(raw, rng: random.Random):
    """One or two seeded corruptions of the well-formed file ``raw``: ``(chunks, description)``."""
    p = Parsed.of(raw)
    chunks, what = rng.choice(MUTATIONS)(p, rng)
    if rng.random() < 0.15:  # a second corruption on top of the first, where the first left a parseable file
        first = b"".join(bytes(c) for c in chunks) if len(p.raw) < (1 << 22) else None
        try:
            chunks, second = rng.choice(MUTATIONS)(Parsed.of(first), rng) if first else (chunks, "")
            what += f"; then {second}" if second else ""
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, struct.error):
            pass  # the first corruption left no well-formed file to corrupt again
    return chunks, what


def write_chunks(path, chunks):
    """Write a new file at ``path`` (a new inode: a mapping of the previous file stays valid)."""
    if os.path.exists(path):
        os.unlink(path)
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(chunk)


def theirs(path):
    """``(tensors, metadata)`` as ``safetensors.safe_open`` reads them, or ``(None, error)``."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return {name: f.get_tensor(name) for name in f.keys()}, f.metadata() or {}
    except BaseException as error:  # a Rust panic surfaces as a BaseException
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
        return None, error


def compare(path):
    """The verdicts on the file at ``path``: a dict with ``theirs`` and ``ours`` ("accept" or
    "refuse"), ``error`` (our message) and ``violation`` (None, or what broke the contract).

    Anything but a ModelFileError from our reader propagates: a crash is a test failure.
    """
    want, their_meta = theirs(path)
    try:
        got, meta = read_safetensors(str(path))
        error = None
    except ModelFileError as e:
        got, error = None, str(e)
    verdict = {"theirs": "refuse" if want is None else "accept", "ours": "refuse" if got is None else "accept",
               "error": error, "their_error": None if want is not None else f"{their_meta}", "violation": None}
    if error is not None and str(path) not in error:
        verdict["violation"] = f"our error does not name the file: {error}"
    elif want is None and got is not None:
        verdict["violation"] = f"safetensors refuses ({their_meta}) but we accept"
    elif want is not None and got is not None:
        if sorted(want) != sorted(got) or meta != their_meta:
            verdict["violation"] = f"different tensors or metadata: {sorted(want)} / {sorted(got)}"
        else:
            for name, a in want.items():
                b = got[name]
                if a.dtype != b.dtype or a.shape != b.shape or \
                        not np.array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8)):
                    verdict["violation"] = f"tensor {name!r} differs: {a.dtype}{a.shape} / {b.dtype}{b.shape}"
                    break
    return verdict
