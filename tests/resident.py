"""How many of an array's memory pages this process has resident (Linux's /proc/self/pagemap)."""
import mmap

import numpy as np


def resident_pages(array):
    """How many of the pages ``array`` lies in this process has mapped in (None where
    /proc/self/pagemap is unreadable)."""
    page = mmap.PAGESIZE
    start, end = array.ctypes.data, array.ctypes.data + array.nbytes
    first, last = start // page, (end - 1) // page
    if last < first:
        return 0
    try:
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(first * 8)
            entries = np.frombuffer(f.read((last - first + 1) * 8), "<u8")
    except OSError:
        return None
    return int(((entries >> np.uint64(63)) & np.uint64(1)).sum())  # bit 63: the page is present
