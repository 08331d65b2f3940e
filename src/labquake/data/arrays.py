"""Reading the cache's arrays: a memory-mapped file is read rather than paged in through its map."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

# Reading the cache. A memory-mapped file is read rather than paged in through its map: scanning
# the 5 GB time column would leave it all resident, and even a few thousand scattered rows 1.2 MB
# apart page in most of it (the kernel reads ahead around every fault): 3.8 GB resident.


def mapped_file(a: np.ndarray) -> tuple[str, int] | None:
    """File name and byte offset of an array memory-mapped from a file (a cache array), else None."""
    if isinstance(a, np.memmap) and isinstance(a.base, mmap.mmap) and a.filename:
        return str(a.filename), int(a.offset)
    return None


def read_rows(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``a[lo:hi]`` in memory."""
    where = mapped_file(a)
    if where is None:
        return np.asarray(a[lo:hi])
    name, offset = where
    hi = min(hi, len(a))
    return np.fromfile(name, dtype=a.dtype, count=max(hi - lo, 0), offset=offset + lo * a.itemsize)


def read_at(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``a[rows]`` in memory, for a few scattered rows."""
    where = mapped_file(a)
    if where is None:
        return np.asarray(a[rows])
    name, offset = where
    out = np.empty(len(rows), dtype=a.dtype)
    with open(name, "rb") as fh:
        for i, r in enumerate(np.asarray(rows, dtype=np.int64)):
            out[i] = np.frombuffer(os.pread(fh.fileno(), a.itemsize, offset + int(r) * a.itemsize), dtype=a.dtype)[0]
    return out


def _open(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)
