"""One chunk of the features stage: a task's segments into a part file, and the part files' names and shapes.

The task runs in a worker (a local process or a Dask worker); ``features.stage`` schedules the
tasks and ``features.prefetch`` starts them while the train cache is still being built.
"""

from __future__ import annotations

import functools
import os
import zipfile
from pathlib import Path

import numpy as np

from labquake.config import SEGMENT_ROWS, FeatureConfig
from labquake.features.segment import featurizer
from labquake.features.table import FEATURE_NAMES
from labquake.util import LabquakeError, atomic_path, tune_malloc


def seq_shape(fc: FeatureConfig, rows: int = SEGMENT_ROWS) -> tuple[int, int]:
    """(steps, channels) of one segment's sequence."""
    return _seq_shape(fc, rows)


@functools.lru_cache(maxsize=4)
def _seq_shape(fc: FeatureConfig, rows: int) -> tuple[int, int]:
    from labquake.features.sequences import segment_sequence

    steps, channels = segment_sequence(np.zeros(rows, np.int16), fc).shape
    return int(steps), int(channels)


def chunk_features(
    fc: FeatureConfig, source: tuple[str, int], starts: np.ndarray, rows: int, part: str, features: bool = True, sequences: bool = True
) -> str:
    """Features and sequences of the segments ``signal[start:start + rows]`` of an int16 cache file, saved to ``part``.

    Runs in a worker (a local process or a Dask worker): it opens the memory-mapped cache itself
    (``source``: file name and byte offset), so only names cross processes, never the signal. Each
    segment is read once for both. ``part`` (an .npz: ``features`` (n, 24) float64, or (n, 0) when
    ``features`` is False, and ``sequences`` (n, steps, channels) float32, or (n, 0, 0) when ``sequences``
    is False) is written atomically, so a
    task retried after its worker died writes the same bytes.
    """
    from labquake.features.sequences import segment_sequence

    tune_malloc()
    signal = open_source(source)
    f = featurizer(fc, rows) if features else None
    values = np.empty((len(starts), len(FEATURE_NAMES) if features else 0))
    seqs = np.empty((len(starts), *(seq_shape(fc, rows) if sequences else (0, 0))), np.float32)
    for i, s in enumerate(starts):
        x = np.asarray(signal[s : s + rows])
        if f is not None:
            row = f(x)
            values[i] = [row[name] for name in FEATURE_NAMES]
        if sequences:
            seqs[i] = segment_sequence(x, fc)
    with atomic_path(part) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, features=values, sequences=seqs)
    return part


def open_source(source: tuple) -> np.memmap:
    """The int16 signal of a task's ``source``: (file, byte offset), or (temporary file, offset, final
    file, inode) for a cache still being built (``features.prefetch``): the temporary, or once the
    build has renamed it, the final name, if that is the same file (else the build failed)."""
    if len(source) == 2:
        return np.memmap(source[0], dtype=np.int16, mode="r", offset=source[1])
    tmp, offset, final, inode = source
    for name in (tmp, final):
        try:
            fh = open(name, "rb")
        except FileNotFoundError:
            continue
        with fh:  # the map outlives the file object
            if os.fstat(fh.fileno()).st_ino == inode:
                return np.memmap(fh, dtype=np.int16, mode="r", offset=offset)
    raise LabquakeError(f"{final}: the cache being built is gone (its build stopped)")


def part_shape(fc: FeatureConfig, features: bool, sequences: bool) -> tuple[int, int, int]:
    """A part's feature columns, sequence steps and channels (0 for what it leaves out)."""
    return (len(FEATURE_NAMES) if features else 0, *(seq_shape(fc) if sequences else (0, 0)))


def part_path(parts: Path, name: str, chunk: int) -> Path:
    """The part file of chunk ``chunk`` (segments chunk * runtime.feature_chunk on) of task ``name``."""
    return parts / f"{name}_{chunk:05d}.npz"


def cache_file(signal: np.ndarray) -> tuple[str, int]:
    """File name and byte offset of a cache array: what a worker opens it by."""
    from labquake.data import mapped_file

    where = mapped_file(signal)
    if where is None:
        raise TypeError("features need the memory-mapped cache arrays of labquake.data")
    return where


def load_part(path: Path, shape: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """A finished chunk (features, sequences), or None if it is missing or damaged (then it is computed again).

    ``shape``: segments, feature columns, steps, channels.
    """
    n, n_feat, steps, channels = shape
    try:
        with np.load(path) as npz:
            values, seqs = npz["features"], npz["sequences"]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    if values.shape != (n, n_feat) or seqs.shape != (n, steps, channels) or seqs.dtype != np.float32:
        return None
    return values, seqs
