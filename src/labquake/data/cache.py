"""The binary cache of Kaggle's raw files (`labquake cache`): validated once, then memory-mapped.

Inputs, in the data folder (default ``data/raw``), as Kaggle publishes them:

- ``train.csv``: header ``acoustic_data,time_to_failure``, int16 signal, time in seconds (>= 0).
- ``test/seg_XXXXXX.csv``: header ``acoustic_data``, exactly ``SEGMENT_ROWS`` (150,000) rows each.
- ``sample_submission.csv``: header ``seg_id,time_to_failure``; its order is the test order.

The files are parsed and validated by ``data.csv``.

Cache layout, in the interim folder (default ``data/interim``); raw little-endian arrays, opened
with ``np.memmap(mode="r")``:

- ``train_signal.i16``: int16, ``n_rows`` values.
- ``train_ttf.f64``: float64, ``n_rows`` values.
- ``test_signal.i16``: int16, ``n_segments x SEGMENT_ROWS`` values, rows in sample_submission order.
- ``train.json`` / ``test.json``: the records, written last: source fingerprint, ``n_rows`` /
  ``seg_ids``, cache format, labquake version, timings.

A cache is stale when its record is missing or unreadable, its format or source fingerprint
differs, or an array file does not have the size the record implies; it is then rebuilt. Every
file is written under a temporary name and renamed when complete, and the old record is removed
just before the new arrays are renamed into place, so a killed build leaves the old cache or none
(never a partial one) and the next run simply rebuilds.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labquake.config import REAL_HEAD_KEY, REAL_HEAD_ROWS, SEGMENT_ROWS
from labquake.data.arrays import _open, mapped_file, read_at, read_rows  # noqa: F401 (re-exported by data)
from labquake.data.csv import F64, I16, SYNTH_HINT, read_sample_ids, read_segment, read_train
from labquake.integrity import BlockHasher, damaged_blocks
from labquake.util import (
    LabquakeError,
    Timer,
    atomic_path,
    digest,
    file_fingerprint,
    io_threads,
    json_key,
    log,
    ordered_map,
    progress,
    stage_record,
    tune_malloc,
    write_json,
)

# on_rows(fingerprint of the source, the signal's temporary file, rows written to it so far): the
# rows below that count are final; the temporary is renamed to its cache name when the build ends.
OnRows = Callable[[str, Path, int], None]

CACHE_FORMAT = 1  # bump when the layout of the cache files changes
TRAIN_SIGNAL, TRAIN_TTF, TRAIN_RECORD = "train_signal.i16", "train_ttf.f64", "train.json"
TEST_SIGNAL, TEST_RECORD = "test_signal.i16", "test.json"


@dataclass(frozen=True)
class TrainData:
    signal: np.ndarray  # int16, read-only memmap, (n_rows,)
    ttf: np.ndarray  # float64, read-only memmap, (n_rows,)
    fingerprint: str  # identifies the source train.csv (path, size, mtime)

    @property
    def n_rows(self) -> int:
        return int(self.signal.shape[0])

    @property
    def is_real_kaggle(self) -> bool:
        """Whether this is Kaggle's real train.csv, by the content of its first rows (config.REAL_HEAD_KEY)."""
        return (
            self.n_rows >= REAL_HEAD_ROWS
            and head_key(read_rows(self.signal, 0, REAL_HEAD_ROWS), read_rows(self.ttf, 0, REAL_HEAD_ROWS)) == REAL_HEAD_KEY
        )


@dataclass(frozen=True)
class TestData:
    seg_ids: list[str]  # sample_submission.csv order
    signal: np.ndarray  # int16, read-only memmap, (n_segments, SEGMENT_ROWS); row i is seg_ids[i]
    fingerprint: str  # identifies sample_submission.csv and every test file used

    __test__ = False  # not a pytest test class, despite the name


# --- the cache ----------------------------------------------------------------------------------------
def _data_dir(data_dir: Path) -> None:
    if not data_dir.is_dir():
        raise LabquakeError(
            f"{data_dir}: data folder not found; put Kaggle's train.csv, test/ and sample_submission.csv there, {SYNTH_HINT.format(dir=data_dir)}"
        )


def _input_path(data_dir: Path, name: str, folder: bool = False) -> Path:
    """``data_dir/name``, which must exist: else a one-line error saying what to put there."""
    _data_dir(data_dir)
    path = data_dir / name
    if not (path.is_dir() if folder else path.is_file()):
        what = "folder of test segments (seg_*.csv)" if folder else "file"
        raise LabquakeError(f"{path}: not found; put Kaggle's {name} {what} in {data_dir}/, {SYNTH_HINT.format(dir=data_dir)}")
    return path


def _stale_reason(interim: Path, record_name: str, fingerprint: str, sizes: Callable[[dict], dict[str, int]]) -> tuple[str | None, dict]:
    """Why the cache must be rebuilt (None if it is fresh), and its record."""
    path = interim / record_name
    if not path.exists():
        return "no cache yet", {}
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict):
            raise ValueError("not an object")
        if record.get("format") != CACHE_FORMAT:
            return f"cache format {record.get('format')} is not {CACHE_FORMAT}", record
        if record.get("fingerprint") != fingerprint:
            return "the source files changed", record
        expected = sizes(record)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # unreadable or malformed record
        return f"{path.name} is unreadable ({type(exc).__name__})", {}
    for name, size in expected.items():
        f = interim / name
        actual = f.stat().st_size if f.is_file() else None
        if actual != size:
            return f"{name} is {'missing' if actual is None else f'{actual:,} bytes'}, expected {size:,} bytes", record
    bad = damaged_blocks(interim, record.get("checksums") or {})
    if bad:
        return f"{bad} does not match its checksum (changed since it was written)", record
    return None, record


def _signal_sizes(signal: str, ttf: str | None) -> Callable[[dict], dict[str, int]]:
    """The sizes a signal cache's record implies: ``signal`` (int16) and ``ttf`` (float64, if any)."""

    def sizes(record: dict) -> dict[str, int]:
        n = int(record["n_rows"])
        if n < 1:
            raise ValueError("n_rows")
        return {signal: n * I16.itemsize} | ({ttf: n * F64.itemsize} if ttf else {})

    return sizes


_train_sizes = _signal_sizes(TRAIN_SIGNAL, TRAIN_TTF)


def _test_sizes(record: dict) -> dict[str, int]:
    ids, rows = record["seg_ids"], int(record["segment_rows"])
    if rows != SEGMENT_ROWS or not ids or not all(isinstance(s, str) for s in ids):
        raise ValueError("seg_ids")
    return {TEST_SIGNAL: len(ids) * rows * I16.itemsize}


def _remove_stale_temps(interim: Path, names: Iterable[str]) -> None:
    """Temporaries left by killed builds (``.NAME.tmpPID`` of a process that is gone): they can be GBs."""
    for name in names:
        for tmp in interim.glob(f".{name}.tmp*"):
            pid = tmp.name.rsplit(".tmp", 1)[1]
            if pid.isdigit() and not _alive(int(pid)):
                log.debug("removing %s (left by a killed build)", tmp)
                tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _io_errors(interim: Path) -> Iterator[None]:
    """OSError (unreadable input, disk full, no permission) as a one-line LabquakeError."""
    try:
        yield
    except OSError as exc:
        raise LabquakeError(f"{exc.filename or interim}: {exc.strerror or exc}") from None


def _train_fingerprint(path: Path) -> tuple[str, dict]:
    source = file_fingerprint(path)
    return json_key({"train": source}), source


@dataclass(frozen=True)
class SignalCache:
    """Where a continuous recording's cache lives: a folder and its file names (``ttf``: None without it)."""

    folder: Path
    signal: str
    ttf: str | None
    record: str


def _ensure_signal(
    path: Path,
    read: Callable[[Callable[..., None]], int],
    cache: SignalCache,
    fingerprint: Callable[[], str],
    stage: str,
    config: dict[str, Any],
    force: bool = False,
    sizes: Callable[[dict], dict[str, int]] | None = None,
    on_rows: OnRows | None = None,
    **extra: Any,
) -> tuple[dict, bool]:
    """Bring ``cache`` up to date with the recording at ``path``: its record, and whether it was rebuilt.

    ``read(sink)`` passes the recording's arrays to ``sink`` (signal, then ttf when ``cache.ttf``) a
    chunk at a time and returns the row count; they are appended to the cache files, so memory stays
    bounded. ``fingerprint()`` identifies the source, before and after reading (a file that changed
    meanwhile is an error). The record (``extra`` added) is written last; see the module docstring.
    ``sizes``: the file sizes a record implies, default a signal of ``n_rows`` (and its times).
    ``on_rows``: called during a build after each chunk is written (see ``OnRows``).
    """
    key = fingerprint()
    folder = cache.folder
    reason, record = _stale_reason(folder, cache.record, key, sizes or _signal_sizes(cache.signal, cache.ttf))
    if reason is None and not force:
        return record, False
    damaged = reason is not None and "checksum" in reason
    (log.warning if damaged else log.info)(
        "cache: building the %s cache from %s (%s)", stage.removeprefix("cache-"), path, "--force" if reason is None else reason
    )
    timer = Timer()
    names = (cache.signal,) + ((cache.ttf,) if cache.ttf else ())
    with timer.step("parse"):
        rows = (lambda tmp, n: on_rows(key, tmp, n)) if on_rows else None
        n, checksums = _write_arrays(folder, names, read, lambda: fingerprint() == key, cache.record, path, rows)
    seconds = timer.total()
    record = stage_record(
        stage,
        config,
        timer,
        format=CACHE_FORMAT,
        fingerprint=key,
        n_rows=n,
        files={"signal": cache.signal} | ({"ttf": cache.ttf} if cache.ttf else {}),
        checksums=checksums,
        **extra,
    )
    write_json(folder / cache.record, record)
    log.info("cache: %s rows of %s in %.1f s (%.1f M rows/s) -> %s", f"{n:,}", path.name, seconds, n / max(seconds, 1e-9) / 1e6, folder)
    return record, True


def _write_arrays(
    folder: Path,
    names: tuple[str, ...],
    read: Callable[[Callable[..., None]], int],
    unchanged: Callable[[], bool],
    record: str,
    path: Path,
    on_rows: Callable[[Path, int], None] | None = None,
) -> tuple[int, dict[str, Any]]:
    """The arrays ``read`` passes to its sink, appended to the files ``names`` (int16, then float64),
    each checksummed per block as it is written; renamed into place only if the source is ``unchanged``
    (the old record goes first). The row count and the checksums. ``on_rows(signal's temporary, rows
    written)`` after each chunk, its bytes flushed to the file (another process may map them)."""
    tune_malloc()  # the chunks' buffers reused, not mapped afresh each time
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(folder, names)
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(folder / name)) for name in names]
        files = [stack.enter_context(open(tmp, "wb")) for tmp in tmps]
        dtypes = (I16, F64)[: len(files)]
        hashes = [BlockHasher() for _ in files]
        written = 0

        def sink(*arrays: np.ndarray) -> None:
            nonlocal written
            for fh, h, dtype, a in zip(files, hashes, dtypes, arrays):
                data = memoryview(np.ascontiguousarray(a.astype(dtype, copy=False))).cast("B")  # its bytes, not a copy
                fh.write(data)
                h.update(data)
            if on_rows is not None:
                files[0].flush()
                written += len(arrays[0])
                on_rows(tmps[0], written)

        n = read(sink)
        for fh in files:
            fh.close()
        if not unchanged():
            raise LabquakeError(f"{path}: changed while it was being read; run again")
        (folder / record).unlink(missing_ok=True)  # the arrays change now: the old record goes first
    return n, {name: h.record() for name, h in zip(names, hashes)}


def _ensure_train(data_dir: Path, interim: Path, force: bool = False, on_rows: OnRows | None = None) -> tuple[dict, bool]:
    path = _input_path(data_dir, "train.csv")
    return _ensure_signal(
        path,
        lambda sink: read_train(path, sink),
        SignalCache(interim, TRAIN_SIGNAL, TRAIN_TTF, TRAIN_RECORD),
        lambda: _train_fingerprint(path)[0],
        "cache-train",
        {"data": str(data_dir), "interim": str(interim)},
        force,
        on_rows=on_rows,
        source=file_fingerprint(path),
    )


def _test_inputs(data_dir: Path) -> tuple[list[str], list[Path], str]:
    """Validated ids, their segment files and the fingerprint of all of them."""
    sub = _input_path(data_dir, "sample_submission.csv")
    test_dir = _input_path(data_dir, "test", folder=True)
    ids = read_sample_ids(sub)
    files = [test_dir / f"{sid}.csv" for sid in ids]
    stats = []
    for i, (sid, f) in enumerate(zip(ids, files)):
        try:
            st = f.stat()
        except FileNotFoundError:
            missing = sum(not g.is_file() for g in files[i:])
            more = f" (and {missing - 1} more)" if missing > 1 else ""
            raise LabquakeError(f"{f}: not found, but {sub.name} line {i + 2} lists seg_id {sid!r}{more}") from None
        stats.append([sid, st.st_size, st.st_mtime_ns])
    fingerprint = json_key({"sample_submission": file_fingerprint(sub), "test_dir": str(test_dir.resolve()), "segments": stats})
    return ids, files, fingerprint


def _ensure_test(data_dir: Path, interim: Path, force: bool = False) -> tuple[dict, bool]:
    ids, files, _ = _test_inputs(data_dir)
    test_dir = files[0].parent

    def read(sink: Callable[..., None]) -> int:
        extra = sorted({p.stem for p in test_dir.glob("*.csv")} - set(ids))
        if extra:
            shown = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
            log.warning("%s: %d segment file(s) not in sample_submission.csv, ignored: %s", test_dir, len(extra), shown)
        threads = io_threads()
        with ThreadPoolExecutor(threads) as pool:
            for values in progress(ordered_map(pool, read_segment, files, ahead=2 * threads + 1), total=len(files), desc="test segments"):
                sink(values)
        return len(files) * SEGMENT_ROWS

    return _ensure_signal(
        test_dir,
        read,
        SignalCache(interim, TEST_SIGNAL, None, TEST_RECORD),
        lambda: _test_inputs(data_dir)[2],
        "cache-test",
        {"data": str(data_dir), "interim": str(interim)},
        force,
        sizes=_test_sizes,
        seg_ids=ids,
        n_segments=len(ids),
        segment_rows=SEGMENT_ROWS,
    )


def load_train(data_dir: Path, interim: Path, on_rows: OnRows | None = None) -> TrainData:
    """train.csv as read-only arrays; the cache is (re)built first if it is missing or stale.

    ``on_rows``: called during a build as chunks of the signal are written (``OnRows``), so that
    work on the rows already there can start before the build ends.
    """
    data_dir, interim = Path(data_dir), Path(interim)
    with _io_errors(interim):
        record, _ = _ensure_train(data_dir, interim, on_rows=on_rows)
        n = int(record["n_rows"])
        return TrainData(
            signal=_open(interim / TRAIN_SIGNAL, I16, (n,)),
            ttf=_open(interim / TRAIN_TTF, F64, (n,)),
            fingerprint=record["fingerprint"],
        )


def load_test(data_dir: Path, interim: Path) -> TestData:
    """The test segments (sample_submission order) as one read-only (n, SEGMENT_ROWS) array."""
    data_dir, interim = Path(data_dir), Path(interim)
    with _io_errors(interim):
        record, _ = _ensure_test(data_dir, interim)
        ids = list(record["seg_ids"])
        signal = _open(interim / TEST_SIGNAL, I16, (len(ids), SEGMENT_ROWS))
    return TestData(seg_ids=ids, signal=signal, fingerprint=record["fingerprint"])


def run_cache(data_dir: Path, interim: Path, force: bool = False) -> dict:
    """Bring both caches up to date (``labquake cache``); their records, each with ``rebuilt``."""
    data_dir, interim = Path(data_dir), Path(interim)
    _data_dir(data_dir)
    out = {}
    for name, ensure in (("train", _ensure_train), ("test", _ensure_test)):
        with _io_errors(interim):
            record, rebuilt = ensure(data_dir, interim, force)
        if not rebuilt:
            log.info("cache: %s is up to date in %s", name, interim)
        out[name] = {**record, "rebuilt": rebuilt}
    return out


def head_key(signal: np.ndarray, ttf: np.ndarray) -> str:
    """What recognises a recording by its first rows: sha256 of their int16 then float64 bytes."""
    return digest(np.asarray(signal, I16).tobytes() + np.asarray(ttf, F64).tobytes())


def verify_cache(interim: Path) -> tuple[list[str], int]:
    """Every file of the cache in ``interim`` against its record's sizes and checksums: the problems
    (one line each) and how many files were checked. ``labquake features`` rebuilds a bad cache itself."""
    interim = Path(interim)
    problems, checked = [], 0
    for record_name in (TRAIN_RECORD, TEST_RECORD):
        path = interim / record_name
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text())
            names = list((record.get("files") or {}).values())
        except (OSError, ValueError, AttributeError) as exc:
            problems.append(f"{path}: unreadable ({type(exc).__name__}); `labquake cache --force` rebuilds it")
            continue
        sums = record.get("checksums") or {}
        for name in names:
            checked += 1
            f = interim / name
            if not f.is_file():
                problems.append(f"{f}: missing; `labquake features` rebuilds the cache")
            elif name in sums and damaged_blocks(interim, {name: sums[name]}):
                problems.append(f"{f}: does not match its checksum (changed since it was written); `labquake features` rebuilds the cache")
        if not sums:
            log.info(f"{path}: written before labquake recorded checksums: only the files' sizes can be checked")
            reason, _ = _stale_reason(
                interim, record_name, record.get("fingerprint", ""), _train_sizes if record_name == TRAIN_RECORD else _test_sizes
            )
            if reason:
                problems.append(f"{interim}: {reason}; `labquake features` rebuilds the cache")
    return problems, checked
