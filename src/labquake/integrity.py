"""Checksums of artifacts, and the check before use: is a file what was written?

Every stage records the checksum (sha256, ``util.digest``) of each artifact it writes in its
manifest (a draw folder's CHECKSUMS file, features.json, the cache's records, summary.json), computed
from the bytes as they are written. A reader checks the files it uses before it uses them. Folders
of an older labquake have no checksums: their files are checked by loading them.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from labquake.util import digest, file_digest, io_threads, read_json

CHECKSUMS = "checksums.json"  # a draw folder's manifest: its files' checksums


def loads(path: Path) -> str | None:
    """Why an artifact without a checksum does not load (None: it does), by its kind."""
    import numpy as np
    import pandas as pd

    try:
        if path.suffix == ".parquet":
            pd.read_parquet(path)
        elif path.suffix == ".npz":
            with np.load(path) as npz:
                [npz[k] for k in npz.files]
        elif path.suffix == ".txt":
            import lightgbm as lgb

            text = path.read_text()
            if "end of trees" not in text or "end of parameters" not in text:  # LightGBM aborts the process on a cut model
                return f"{path}: does not load (a LightGBM model cut short)"
            lgb.Booster(model_str=text)
        elif path.name.endswith(".h5"):
            import h5py

            with h5py.File(path, "r") as fh:
                fh.visit(lambda _: None)
        elif path.suffix == ".joblib":
            import joblib

            joblib.load(path)
    except Exception as exc:  # whatever the library raises for a damaged file
        return f"{path}: does not load ({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else 'damaged'})"
    return None


def check_files(folder: Path, names: list[str] | None = None, manifest: dict[str, str] | None = None) -> list[str]:
    """Problems of a folder's artifacts against their checksums (``manifest``, default its CHECKSUMS
    file); ``names``: only these. Without checksums (a folder of an older labquake), each is loaded instead."""
    folder = Path(folder)
    if manifest is None:
        path = folder / CHECKSUMS
        manifest = read_json(path) if path.is_file() else None
    if manifest is None:
        return [p for p in (loads(folder / n) for n in names or []) if p]
    problems = []
    for name, expected in manifest.items():
        if names is not None and name not in names:
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif file_digest(path) != expected:
            problems.append(f"{path}: does not match its checksum (changed since it was written)")
    return problems


BLOCK_BYTES = 256 << 20  # a cache file's checksums are per block of this many bytes, checked in parallel


class BlockHasher:
    """sha256 of each BLOCK_BYTES block of a file, fed the bytes as they are written."""

    def __init__(self) -> None:
        self.digests: list[str] = []
        self._h = hashlib.sha256()
        self._filled = 0

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while len(view):
            take = min(len(view), BLOCK_BYTES - self._filled)
            self._h.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == BLOCK_BYTES:
                self.digests.append(self._h.hexdigest())
                self._h, self._filled = hashlib.sha256(), 0

    def record(self) -> dict[str, Any]:
        tail = [self._h.hexdigest()] if self._filled or not self.digests else []
        return {"block_bytes": BLOCK_BYTES, "sha256": self.digests + tail}


def block_ok(path: Path, block_bytes: int, i: int, expected: str) -> bool:
    """Block ``i`` of a file against its checksum, hashed through a map of that block alone: no copy
    (twice as fast as reading it), and the pages leave this process's memory when the map closes."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        length = min(block_bytes, size - i * block_bytes)
        if length <= 0:
            return digest(b"") == expected
        if (i * block_bytes) % mmap.ALLOCATIONGRANULARITY:  # a map starts on a page: read such a block instead
            return digest(os.pread(fh.fileno(), length, i * block_bytes)) == expected
        with mmap.mmap(fh.fileno(), length, access=mmap.ACCESS_READ, offset=i * block_bytes) as m:
            return hashlib.sha256(m).hexdigest() == expected


def damaged_blocks(folder: Path, checksums: dict[str, Any]) -> str | None:
    """The first cache file that does not match its recorded block checksums. Every block of every
    file is one task of a thread pool (hashlib releases the GIL), so the check runs on every core."""
    if not checksums:
        return None  # a cache of an older labquake: its sizes were checked above
    tasks = [(name, i, d, int(c["block_bytes"])) for name, c in sorted(checksums.items()) for i, d in enumerate(c["sha256"])]
    with ThreadPoolExecutor(io_threads()) as pool:
        ok = list(pool.map(lambda t: block_ok(folder / t[0], t[3], t[1], t[2]), tasks))
    return next((t[0] for t, good in zip(tasks, ok) if not good), None)
