"""Embedding tables: one protocol, one class per way a table is held.

The gather kernel reads ``rows[ids]``; a table's :meth:`Table.lookup` gives it those two:

- :class:`DenseTable`: a float32 array (mapped from the file): the array itself and the ids;
- :class:`FileTable`: a float32 table left in its file: the rows a batch uses, read from the file;
- :class:`minilm_np.quantize.table.QuantizedTable`: int8 rows, dequantised when gathered.
"""
from typing import Protocol

import numpy as np


class Table(Protocol):
    """A ``(rows, width)`` embedding table."""

    shape: tuple

    def lookup(self, ids):
        """``(rows, row_ids)`` such that ``rows[row_ids]`` is ``table[ids]``.

        Parameters
        ----------
        ids : ndarray of int64, (n,)

        Returns
        -------
        rows : ndarray of float32, (r, width)
        row_ids : ndarray of int64, (n,)
        """


def table_row_ids(ids, n_rows):
    """``ids`` as contiguous int64, each checked to be a row of an embedding table of ``n_rows`` rows.

    Raises
    ------
    IndexError
        An id is outside the table.
    """
    ids = np.ascontiguousarray(ids, np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= n_rows):
        bad = ids[(ids < 0) | (ids >= n_rows)][0]
        raise IndexError(f"index {bad} is out of range for an embedding table of {n_rows} rows")
    return ids


class TableShape:
    """What every table shares: ``shape``, ``size``, ``len()``; and, for the tables that give the
    gather kernel just the rows a batch uses, :meth:`lookup` over their ``rows(ids)``."""

    shape: tuple

    @property
    def size(self):
        return self.shape[0] * self.shape[1]

    def __len__(self):
        return self.shape[0]

    def lookup(self, ids):
        return self.rows(ids), np.arange(len(ids), dtype=np.int64)


class DenseTable(TableShape):
    """A float32 table read where it lies (a read-only view of the mapped file).

    Parameters
    ----------
    array : ndarray of float32, (V, H)
    """

    def __init__(self, array):
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = array.dtype

    def lookup(self, ids):
        return self.array, ids

    def __repr__(self):
        return f"DenseTable(shape={self.shape})"


class FileTable(DenseTable):
    """A float32 embedding table left in its file: :meth:`rows` reads the rows a batch uses.

    A 250,000-row vocabulary table (366 MiB at 384 wide) then costs the process no resident
    memory: reading rows through the mapping would leave every page (and, where the kernel
    caches the file in large folios, its neighbours) resident, growing with the vocabulary a
    corpus uses (see :class:`~minilm_np.safetensors_io.RowFile`).

    Parameters
    ----------
    array : ndarray of float32, (V, H)
        The mapped table, for whole-table work (quantisation reads it a block of rows at a time).
    row_file : minilm_np.safetensors_io.RowFile
        Where ``array`` lies in its file.
    """

    def __init__(self, array, row_file):
        super().__init__(array)
        self.row_file = row_file

    def __repr__(self):
        return f"FileTable(shape={self.shape}, path={self.row_file.path!r})"

    def rows(self, ids):
        """Rows ``table[ids]``: float32 ``(len(ids), H)``, each distinct row read once.

        Raises
        ------
        IndexError
            An id is outside the table.
        """
        needed, where = np.unique(table_row_ids(ids, self.shape[0]), return_inverse=True)
        return self.row_file.read(needed)[where.reshape(-1)]

    lookup = TableShape.lookup
