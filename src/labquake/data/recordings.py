"""Recordings (``labquake predict``): one continuous signal in any format, cached like train.csv."""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from labquake.config import SEGMENT_ROWS
from labquake.data.arrays import _open
from labquake.data.cache import SignalCache, _ensure_signal, _io_errors
from labquake.data.csv import CHUNK_BYTES, F64, I16, MAX_LINE, TEST_COLUMNS, TRAIN_COLUMNS, _error, _n_blocks, check_header, read_csv
from labquake.util import (
    LabquakeError,
    file_fingerprint,
    json_key,
    log,
    progress,
)

# --- recordings: one continuous signal in any format (`labquake predict`) ------------------------------
# A lab's recording reaches the features as the same int16 memmap as train.csv. A format is a small
# reader (``RecordingFormat``): which columns a file has, and its arrays a chunk at a time. Add one
# to RECORDING_FORMATS, under the file suffix that selects it. A format whose file already is raw
# little-endian int16 samples needs no cache: it is mapped where it lies.


class RecordingFormat(Protocol):
    name: str
    in_place: bool  # the file is itself the int16 signal (no header, no time column): mapped, not copied

    def columns(self, path: Path) -> tuple[str, ...]:
        """The columns the file holds: ``("acoustic_data",)`` or ``TRAIN_COLUMNS``; a one-line error if neither."""
        ...

    def read(self, path: Path, columns: tuple[str, ...], sink: Callable[..., None] | None, min_rows: int) -> int:
        """Validate the file; pass its arrays (one per column) to ``sink`` a chunk at a time; the row count.

        ``sink`` None (``in_place`` formats only): validate and count, nothing more."""
        ...


class KaggleCSV:
    """Kaggle's train layout: ``acoustic_data,time_to_failure`` or ``acoustic_data`` alone, validated as train.csv."""

    name, in_place = "kaggle-csv", False

    def columns(self, path: Path) -> tuple[str, ...]:
        with open(path, "rb") as f:
            return check_header(f.readline(MAX_LINE), path, TRAIN_COLUMNS, TEST_COLUMNS)

    def read(self, path: Path, columns: tuple[str, ...], sink: Callable[..., None], min_rows: int) -> int:
        return read_csv(path, columns, sink, min_rows, unit="window")


class RawInt16:
    """Raw little-endian int16 samples, no header (what a digitiser writes): ``.i16``."""

    name, in_place = "int16", True

    def columns(self, path: Path) -> tuple[str, ...]:
        return TEST_COLUMNS

    def read(self, path: Path, columns: tuple[str, ...], sink: Callable[..., None] | None, min_rows: int) -> int:
        size = path.stat().st_size
        if size % I16.itemsize:
            raise _error(path, None, f"{size:,} bytes: not a whole number of int16 samples")
        n = size // I16.itemsize
        if n < min_rows:
            raise _error(path, None, f"{n:,} samples, fewer than one window ({min_rows:,} rows)")
        if sink is not None:
            with open(path, "rb") as f:
                for _ in progress(range(_n_blocks(f, CHUNK_BYTES)), desc=path.name):
                    sink(np.frombuffer(f.read(CHUNK_BYTES), dtype=I16))
        return n


RECORDING_FORMATS: dict[str, RecordingFormat] = {".csv": KaggleCSV(), ".i16": RawInt16()}
RECORDING_SIGNAL, RECORDING_TTF, RECORDING_RECORD = "signal.i16", "ttf.f64", "recording.json"


@dataclass(frozen=True)
class Recording:
    path: Path
    format: str
    signal: np.ndarray  # int16, read-only memmap, (n_rows,)
    ttf: np.ndarray | None  # float64, read-only memmap, (n_rows,); None when the file has no time column
    fingerprint: str  # identifies the source file (path, size, mtime) and its format

    @property
    def n_rows(self) -> int:
        return int(self.signal.shape[0])


def recording_format(path: Path) -> RecordingFormat:
    fmt = RECORDING_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(f"{suffix} ({f.name})" for suffix, f in RECORDING_FORMATS.items())
        raise LabquakeError(f"{path}: unknown recording format {path.suffix or '(no suffix)'!r}; known: {known}")
    return fmt


def load_recording(path: Path, cache_root: Path, min_rows: int = SEGMENT_ROWS) -> Recording:
    """A continuous recording as read-only arrays, through a cache in ``cache_root/KEY/`` (KEY: the
    file's fingerprint), built once in bounded memory like the train cache; once it is built, the
    caches of other files there are removed. The format comes from the suffix (RECORDING_FORMATS).
    A missing, garbled or short file (under ``min_rows`` rows) is a one-line error."""
    path, cache_root = Path(path), Path(cache_root)
    if not path.is_file():
        raise LabquakeError(f"{path}: {'not a file' if path.exists() else 'not found'}")
    fmt = recording_format(path)

    def fingerprint() -> str:
        return json_key({"recording": file_fingerprint(path), "format": fmt.name})

    with _io_errors(cache_root):
        columns = fmt.columns(path)
        if fmt.in_place:
            n = fmt.read(path, columns, None, min_rows)
            return Recording(path, fmt.name, _open(path, I16, (n,)), None, fingerprint())
        key = fingerprint()
        folder = cache_root / key
        has_ttf = "time_to_failure" in columns
        cache = SignalCache(folder, RECORDING_SIGNAL, RECORDING_TTF if has_ttf else None, RECORDING_RECORD)
        try:
            record, _ = _ensure_signal(
                path,
                lambda sink: fmt.read(path, columns, sink, min_rows),
                cache,
                fingerprint,
                "cache-recording",
                {"recording": str(path), "cache": str(folder)},
                source=file_fingerprint(path),
                columns=list(columns),
                recording_format=fmt.name,
            )
        except LabquakeError:
            for empty in (folder, cache_root):  # a bad file leaves no empty folders behind
                with contextlib.suppress(OSError):
                    empty.rmdir()
            raise
        for old in cache_root.iterdir():  # only once this one is built: a bad file changes nothing
            if old.is_dir() and old.name != key and re.fullmatch(r"[0-9a-f]{16}", old.name):
                log.info("cache: removing %s (the cache of another recording)", old)
                shutil.rmtree(old, ignore_errors=True)
        n = int(record["n_rows"])
        ttf = _open(folder / RECORDING_TTF, F64, (n,)) if has_ttf else None
        return Recording(path, fmt.name, _open(folder / RECORDING_SIGNAL, I16, (n,)), ttf, key)
