"""An embedding table stored int8 per row: :class:`QuantizedTable`."""
import numpy as np

from ..mapped import release_pages
from ..tables import TableShape, table_row_ids
from .linear import quantize_matrix
from .modes import resolve_backend, row_kernels

TABLE_BLOCK_ROWS = 4096
"""Rows of a float32 embedding table quantised at once (16 MiB of float32 rows at 1,024 wide)."""


class QuantizedTable(TableShape):
    """An embedding table stored int8 per row (symmetric, one float32 step per row).

    Parameters
    ----------
    qweight : ndarray of int8, (V, H)
    scale : ndarray of float32, (V,)
    backend : {"numba", "numpy"} or None
    row_file : minilm_np.safetensors_io.RowFile, optional
        Where ``qweight`` lies in its file: :meth:`rows` then reads the rows it needs from
        there instead of through the mapping (see :class:`~minilm_np.safetensors_io.RowFile`).
    """

    def __init__(self, qweight, scale, backend=None, row_file=None):
        self.qweight = qweight
        self.scale = np.ascontiguousarray(scale, np.float32)
        self.shape = tuple(qweight.shape)
        self.backend = resolve_backend(backend)
        self._k = row_kernels(self.backend)
        self.row_file = row_file

    @classmethod
    def from_float(cls, table, backend=None):
        """Quantise a float32 ``(V, H)`` table (a :class:`~minilm_np.tables.DenseTable` or ``FileTable``) row by row.

        A block of :data:`TABLE_BLOCK_ROWS` rows at a time, whose mapped pages are released
        after it: a 250,000-row table never has more than a block of float32 rows in memory.
        """
        source = table.array
        qweight = np.empty(source.shape, np.int8)
        scale = np.empty(source.shape[0], np.float32)
        for start in range(0, source.shape[0], TABLE_BLOCK_ROWS):
            block = source[start:start + TABLE_BLOCK_ROWS]
            qweight[start:start + len(block)], scale[start:start + len(block)], _, _ = quantize_matrix(block)
            release_pages(block)
        return cls(qweight, scale, backend)

    @property
    def nbytes(self):
        return int(self.qweight.nbytes + self.scale.nbytes)

    def __repr__(self):
        return f"QuantizedTable(shape={self.shape}, backend={self.backend})"

    def rows(self, ids):
        """Dequantised rows ``table[ids]``, float32 ``(len(ids), H)`` (IndexError for an id outside the table)."""
        ids = table_row_ids(ids, self.shape[0])
        out = np.empty((len(ids), self.shape[1]), np.float32)
        if self.row_file is None:
            return self._k.gather_rows(self.qweight, self.scale, ids, out)
        needed, where = np.unique(ids, return_inverse=True)
        return self._k.gather_rows(self.row_file.read(needed), self.scale[needed],
                                   np.ascontiguousarray(where, np.int64), out)
