"""Texts in, vectors out, a row at a time: the file formats of ``minilm-np embed``.

Readers yield texts lazily (.txt one per line, .jsonl a field, .csv a column, .parquet a
column), so memory does not grow with the input. Writers write one chunk of vectors as a part
file and join the parts into the final output, one part in memory at a time.
"""
import csv
import json
import os
import shutil
import sys

import numpy as np

INPUT_FORMATS = ("txt", "jsonl", "csv", "parquet")
OUTPUT_SUFFIXES = {".npy": "npy", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
OUTPUT_NAMES = ".npy, .jsonl, .csv or .parquet"
# Bytes read at a time when counting lines for the progress bar.
COUNT_BLOCK = 1 << 20


def input_format(path, fmt=None):
    """``fmt``, else the format a path's suffix says (.jsonl/.ndjson, .csv, .parquet; else txt)."""
    if fmt:
        return fmt
    lower = path.lower()
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "csv" if lower.endswith(".csv") else "parquet" if lower.endswith(".parquet") else "txt"


def output_format(path):
    """The output format of a path's suffix, or None when it is not one of :data:`OUTPUT_SUFFIXES`."""
    return OUTPUT_SUFFIXES.get(os.path.splitext(path)[1].lower())


def _open_text(path, newline=None):
    if path == "-":
        return sys.stdin
    return open(path, encoding="utf-8", newline=newline)


def iter_texts(path, fmt=None, field="text", column="text"):
    """Yield the texts of a .txt / .jsonl / .csv / .parquet file, or of stdin (``-``), in order.

    Parameters
    ----------
    path : str
    fmt : {"txt", "jsonl", "csv", "parquet"} or None
        Default: from the suffix (:func:`input_format`).
    field : str
        The JSON field holding a .jsonl line's text.
    column : str
        The column holding the texts of a .csv or .parquet file.

    Raises
    ------
    ValueError
        A line that is not JSON, a missing field or column, a value that is not a string; the
        message names the file and the line or row.
    """
    fmt = input_format(path, fmt)
    if fmt == "parquet":
        yield from _parquet_texts(path, column)
        return
    stream = _open_text(path, newline="" if fmt == "csv" else None)
    try:
        if fmt == "txt":
            for line in stream:
                yield line.rstrip("\r\n")
        elif fmt == "jsonl":
            yield from _jsonl_texts(stream, path, field)
        else:
            yield from _csv_texts(stream, path, column)
    finally:
        if stream is not sys.stdin:
            stream.close()


def _jsonl_texts(lines, path, field):
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON ({error})") from None
        if not isinstance(record, dict) or field not in record:
            raise ValueError(f"{path}:{number}: no field {field!r}")
        if not isinstance(record[field], str):
            raise ValueError(f"{path}:{number}: field {field!r} is {type(record[field]).__name__}, not a string")
        yield record[field]


def _csv_texts(stream, path, column):
    reader = csv.DictReader(stream)
    if column not in (reader.fieldnames or []):
        raise ValueError(f"{path}: no column {column!r} (columns: {reader.fieldnames})")
    for row in reader:
        yield row[column]


def _parquet_texts(path, column, rows_per_batch=4096):
    import pyarrow.parquet as pq

    if path == "-":
        raise ValueError("a .parquet input must be a file, not stdin")
    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    if column not in names:
        raise ValueError(f"{path}: no column {column!r} (columns: {names})")
    row = 0
    for batch in parquet.iter_batches(batch_size=rows_per_batch, columns=[column]):
        for text in batch.column(0).to_pylist():
            if not isinstance(text, str):
                raise ValueError(f"{path}: row {row}: column {column!r} is {type(text).__name__}, not a string")
            row += 1
            yield text


def count_rows(path, fmt=None):
    """About how many texts :func:`iter_texts` will yield (for a progress bar's total), or None for stdin.

    Exact for .txt and .parquet; for .jsonl the lines (blank ones too), for .csv the lines less
    the header (a quoted newline counts twice).
    """
    fmt = input_format(path, fmt)
    if path == "-":
        return None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(COUNT_BLOCK):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"  # a last line without its newline
    return max(lines - 1, 0) if fmt == "csv" else lines


def jsonl_line(text, vector):
    """One JSON line: the text and its vector at 7 significant digits."""
    return json.dumps({"text": text, "embedding": [round(float(v), 7) for v in vector]}, ensure_ascii=False) + "\n"


def write_part(fmt, path, texts, vectors):
    """Write one chunk's ``texts`` and float32 ``(n, dim)`` ``vectors`` as a part file of format ``fmt``."""
    if fmt == "npy":
        with open(path, "wb") as f:
            np.save(f, vectors)
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(jsonl_line(text, vector) for text, vector in zip(texts, vectors))
    elif fmt == "csv":
        np.savetxt(path, vectors, delimiter=",", fmt="%.7g")
    else:
        import pyarrow.parquet as pq

        pq.write_table(_arrow_table(texts, vectors), path)


def _arrow_table(texts, vectors):
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1), pa.float32())
    return pa.table({"text": pa.array(texts, pa.string()),
                     "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})


def join_parts(fmt, parts, path, dim):
    """Write the part files ``parts``, in order, as one output file ``path`` (``dim``: the vectors' width)."""
    if fmt == "npy":
        shapes = [np.load(part, mmap_mode="r").shape for part in parts]
        with open(path, "wb") as out:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                      "shape": (sum(shape[0] for shape in shapes), dim)}
            np.lib.format.write_array_header_1_0(out, header)
            for part in parts:
                out.write(np.load(part).tobytes())
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        writer = None
        try:
            for part in parts:
                table = pq.read_table(part)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
            if writer is None:  # no texts: an empty table of the right schema
                pq.write_table(_arrow_table([], np.zeros((0, dim), np.float32)), path)
        finally:
            if writer is not None:
                writer.close()
    else:
        with open(path, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out)
