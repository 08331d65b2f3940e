"""Reading Kaggle's raw CSV files, validated, into a memory-mappable binary cache (`labquake cache`).

Inputs, in the data folder (default ``data/raw``), as Kaggle publishes them:

- ``train.csv``: header ``acoustic_data,time_to_failure``, int16 signal, time in seconds (>= 0).
- ``test/seg_XXXXXX.csv``: header ``acoustic_data``, exactly ``SEGMENT_ROWS`` (150,000) rows each.
- ``sample_submission.csv``: header ``seg_id,time_to_failure``; its order is the test order.

Line ends may be LF or CRLF, the final newline may be missing, blank lines at the very end and a
UTF-8 byte order mark are ignored. Anything else that is wrong (a bad header or value, a wrong
column count, a short file, a missing segment) is a one-line ``LabquakeError`` naming the file and
the line.

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

Recordings (``labquake predict``): ``load_recording`` reads one continuous recording in any format of
``RECORDING_FORMATS`` (chosen by the file suffix: Kaggle's train layout ``.csv``, with or without
``time_to_failure``, validated like train.csv; raw little-endian int16 ``.i16``, mapped in place)
through the same cache code into ``CACHE_ROOT/KEY/`` (``signal.i16``, ``ttf.f64`` when the file has
times, ``recording.json``; KEY: the file's fingerprint and format). A format is a small reader class
(``RecordingFormat``: its columns, and its arrays a chunk at a time).

Speed: ``train.csv`` (9 GB on Kaggle) is read in byte chunks cut at line ends, parsed by pyarrow
on a small thread pool (it releases the GIL) with bounded read-ahead, checked with numpy and
appended to the cache files. Only a chunk that pyarrow or the checks reject is re-read line by
line in Python, to report the exact first bad line.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import mmap
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from labquake.config import SEGMENT_ROWS, SUBMISSION_COLUMNS
from labquake.util import (
    LabquakeError,
    Timer,
    atomic_path,
    file_fingerprint,
    io_threads,
    json_key,
    log,
    ordered_map,
    progress,
    stage_record,
    write_json,
)

CACHE_FORMAT = 1  # bump when the layout of the cache files changes
CHUNK_BYTES = 32 << 20  # train.csv is parsed in pieces of about this size
MAX_LINE = 1 << 20  # a "line" longer than this is not CSV: fail instead of buffering it
MAX_SMALL_FILE = 64 << 20  # sample_submission.csv is read whole; refuse anything absurd

TRAIN_COLUMNS = ("acoustic_data", "time_to_failure")
TEST_COLUMNS = ("acoustic_data",)
SUB_HEADER = ",".join(SUBMISSION_COLUMNS).encode()
BOM = b"\xef\xbb\xbf"

TRAIN_SIGNAL, TRAIN_TTF, TRAIN_RECORD = "train_signal.i16", "train_ttf.f64", "train.json"
TEST_SIGNAL, TEST_RECORD = "test_signal.i16", "test.json"
I16, F64 = np.dtype("<i2"), np.dtype("<f8")

SEG_ID = re.compile(r"[A-Za-z0-9_-]+")  # also a safe file name: no separators, no dots
SYNTH_HINT = "or write synthetic data there with `labquake synth --out {dir}`"


@dataclass(frozen=True)
class TrainData:
    signal: np.ndarray  # int16, read-only memmap, (n_rows,)
    ttf: np.ndarray  # float64, read-only memmap, (n_rows,)
    fingerprint: str  # identifies the source train.csv (path, size, mtime)

    @property
    def n_rows(self) -> int:
        return int(self.signal.shape[0])


@dataclass(frozen=True)
class TestData:
    seg_ids: list[str]  # sample_submission.csv order
    signal: np.ndarray  # int16, read-only memmap, (n_segments, SEGMENT_ROWS); row i is seg_ids[i]
    fingerprint: str  # identifies sample_submission.csv and every test file used

    __test__ = False  # not a pytest test class, despite the name


# --- parsing: pure functions on bytes ---------------------------------------------------------------
_INT = re.compile(rb"[ \t]*-?[0-9]+[ \t]*")
_FLOAT = re.compile(rb"[ \t]*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*")
_NONFINITE = re.compile(rb"[ \t]*[+-]?(?:nan|inf|infinity)[ \t]*", re.IGNORECASE)
_TYPES = {"acoustic_data": pa.int16(), "time_to_failure": pa.float64()}
_DTYPES = {"acoustic_data": I16, "time_to_failure": F64}


def _show(text: bytes, limit: int = 40) -> str:
    """A value or line as it appears in a message: quoted, escaped (always one line), truncated."""
    s = text.decode("utf-8", "replace")
    return repr(s[:limit]) + ("..." if len(s) > limit else "")


def _error(path: Path, line: int | None, what: str) -> LabquakeError:
    return LabquakeError(f"{path}: line {line}: {what}" if line is not None else f"{path}: {what}")


def _convert(column: str, text: bytes) -> int | float:
    """One value by the same rules as the fast path; ValueError with the reason otherwise."""
    if not text.strip(b" \t"):
        raise ValueError(f"{column} is empty")
    if column == "acoustic_data":
        # the digit count first: int() of thousands of digits is slow, and refused past 4,300
        if _INT.fullmatch(text) and len(text.strip(b" \t-").lstrip(b"0")) <= 5 and -32768 <= (v := int(text)) <= 32767:
            return v
        raise ValueError(f"acoustic_data {_show(text)} is not an int16 integer")
    if _NONFINITE.fullmatch(text):
        raise ValueError(f"{column} {_show(text)} is not finite")
    if not _FLOAT.fullmatch(text):
        raise ValueError(f"{column} {_show(text)} is not a number")
    v = float(text)
    if not math.isfinite(v):  # 1e999
        raise ValueError(f"{column} {_show(text)} is not finite")
    if v < 0:
        raise ValueError(f"{column} {_show(text)} is negative")
    return v


def scan_rows(chunk: bytes, first_line: int, path: Path, columns: tuple[str, ...]) -> list[np.ndarray]:
    """Slow, exact parse of complete lines: the arrays, or an error naming the first bad line."""
    lines = chunk.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    values: list[list[int | float]] = [[] for _ in columns]
    for i, raw in enumerate(lines):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line:
            raise _error(path, first_line + i, "empty line")
        fields = line.split(b",")
        if len(fields) != len(columns):
            raise _error(path, first_line + i, f"{len(fields)} fields, expected {len(columns)} ({','.join(columns)}): {_show(line)}")
        for acc, column, text in zip(values, columns, fields):
            try:
                acc.append(_convert(column, text))
            except ValueError as exc:
                raise _error(path, first_line + i, str(exc)) from None
    return [np.array(v, dtype=_DTYPES[c]) for v, c in zip(values, columns)]


def _values_ok(columns: tuple[str, ...], arrays: list[np.ndarray]) -> bool:
    for column, a in zip(columns, arrays):
        # time to failure: finite and >= 0 (NaN fails the >= test)
        if column == "time_to_failure" and not (np.all(a >= 0) and np.all(a < np.inf)):
            return False
    return True


def parse_rows(chunk: bytes, first_line: int, path: Path, columns: tuple[str, ...]) -> list[np.ndarray]:
    """Parse complete lines (``chunk`` ends with a newline) into one array per column.

    pyarrow does the work; when it or the value checks reject the chunk, or it splits lines
    differently (a lone CR), the chunk is re-read by ``scan_rows`` for the exact message.
    """
    if b"x" in chunk or b"X" in chunk or chunk.startswith(BOM):
        # pyarrow's only leniencies (found by tests/test_data.py): hex integers (0x10) and a BOM
        # skipped at the start of its input. Such chunks are left to the scanner, which refuses them.
        return scan_rows(chunk, first_line, path, columns)
    try:
        table = pacsv.read_csv(
            io.BytesIO(chunk),
            # one block per chunk: one arrow chunk per column, so to_numpy() copies nothing
            read_options=pacsv.ReadOptions(column_names=list(columns), use_threads=False, block_size=len(chunk) + 1),
            parse_options=pacsv.ParseOptions(quote_char=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={c: _TYPES[c] for c in columns}, null_values=[], strings_can_be_null=False),
        )
    except (pa.ArrowException, ValueError):
        return scan_rows(chunk, first_line, path, columns)
    if table.num_rows != chunk.count(b"\n") or any(table.column(i).null_count for i in range(len(columns))):
        return scan_rows(chunk, first_line, path, columns)
    arrays = [table.column(i).to_numpy().astype(_DTYPES[c], copy=False) for i, c in enumerate(columns)]
    if not _values_ok(columns, arrays):
        return scan_rows(chunk, first_line, path, columns)
    return arrays


def check_header(line: bytes, expected: bytes, path: Path) -> None:
    found = line.removeprefix(BOM).rstrip(b"\r\n")
    if not line:
        raise _error(path, None, f"empty file (expected the header {expected.decode()!r} and rows)")
    if found != expected:
        raise _error(path, 1, f"header is {_show(found, 60)}, expected {expected.decode()!r}")


def iter_chunks(f: BinaryIO, path: Path, chunk_bytes: int, first_line: int = 2) -> Iterator[tuple[int, bytes]]:
    """(first line number, bytes of complete lines, ending with a newline) from ``f``'s position on.

    Each piece is cut after the last line that is not blank, so blank lines at the end of the file
    (and a missing final newline) are dropped there and nowhere else.
    """
    carry = b""
    line = first_line
    block = f.read(chunk_bytes)
    while block:
        nxt = f.read(chunk_bytes)  # one block of look-ahead tells us when this one is the last
        data = carry + block
        body = data.rstrip(b"\r\n")
        if not nxt:
            if body:
                yield line, body + b"\n"
            return
        cut = body.rfind(b"\n") + 1
        if len(body) - cut > MAX_LINE:
            raise _error(path, line + data.count(b"\n", 0, cut), f"longer than {MAX_LINE:,} bytes: not a CSV row")
        if cut:
            piece = data[:cut]
            yield line, piece
            line += piece.count(b"\n")
        carry = data[cut:]
        block = nxt


def _n_blocks(f: BinaryIO, chunk_bytes: int) -> int:
    remaining = os.fstat(f.fileno()).st_size - f.tell()
    return max(1, -(-remaining // chunk_bytes))


# --- readers: one file each -------------------------------------------------------------------------
def read_csv(
    path: Path,
    columns: tuple[str, ...],
    sink: Callable[..., None],
    min_rows: int = SEGMENT_ROWS,
    chunk_bytes: int | None = None,
    threads: int | None = None,
    unit: str = "segment",
) -> int:
    """Validate a CSV whose header is exactly ``columns`` and pass its arrays (one per column, in that
    order) to ``sink`` in file order, a chunk at a time (memory stays bounded); the row count."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    threads = threads or io_threads()
    n = 0
    with open(path, "rb") as f:
        check_header(f.readline(MAX_LINE), b",".join(c.encode() for c in columns), path)
        total = _n_blocks(f, chunk_bytes)
        with ThreadPoolExecutor(threads) as pool:
            parsed = ordered_map(pool, lambda c: parse_rows(c[1], c[0], path, columns), iter_chunks(f, path, chunk_bytes), ahead=threads + 2)
            for arrays in progress(parsed, total=total, desc=path.name):
                sink(*arrays)
                n += len(arrays[0])
    if n < min_rows:
        raise _error(path, None, f"{n:,} data rows, fewer than one {unit} ({min_rows:,} rows)")
    return n


def read_train(
    path: Path,
    sink: Callable[[np.ndarray, np.ndarray], None],
    min_rows: int = SEGMENT_ROWS,
    chunk_bytes: int | None = None,
    threads: int | None = None,
) -> int:
    """Validate ``train.csv`` and pass its (signal, ttf) arrays to ``sink`` in file order; the row count."""
    return read_csv(path, TRAIN_COLUMNS, sink, min_rows, chunk_bytes, threads)


def read_segment(path: Path, rows: int = SEGMENT_ROWS, chunk_bytes: int = 4 << 20) -> np.ndarray:
    """One test segment file: exactly ``rows`` int16 values.

    Lines are counted before any is parsed, so a wrong length is reported as such (with the count)
    however the file is cut into pieces, and a huge file is never held in memory.
    """
    pieces: list[tuple[int, bytes]] = []
    n = 0
    with open(path, "rb") as f:
        check_header(f.readline(MAX_LINE), TEST_COLUMNS[0].encode(), path)
        for first, piece in iter_chunks(f, path, chunk_bytes):
            n += piece.count(b"\n")
            if n <= rows:
                pieces.append((first, piece))
    if n != rows:
        raise _error(path, None, f"{n:,} rows, expected {rows:,}")
    parts = [parse_rows(piece, first, path, TEST_COLUMNS)[0] for first, piece in pieces]
    return np.concatenate(parts) if parts else np.empty(0, I16)


def read_sample_ids(path: Path) -> list[str]:
    """The validated seg_id column of a sample_submission.csv, in file order."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SMALL_FILE:
            raise _error(path, None, f"larger than {MAX_SMALL_FILE >> 20} MB: not a sample submission")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _error(path, None, "not found") from None
    except OSError as exc:  # a folder, no permission
        raise _error(path, None, f"cannot read: {exc.strerror or exc}") from None
    lines = raw.rstrip(b"\r\n").split(b"\n")
    check_header(lines[0] if raw else b"", SUB_HEADER, path)
    ids: list[str] = []
    seen: dict[str, int] = {}
    for no, raw_line in enumerate(lines[1:], start=2):
        line = raw_line[:-1] if raw_line.endswith(b"\r") else raw_line
        if not line:
            raise _error(path, no, "empty line")
        fields = line.split(b",")
        if len(fields) != 2:
            raise _error(path, no, f"{len(fields)} fields, expected 2 ({SUB_HEADER.decode()}): {_show(line)}")
        sid = fields[0].decode("utf-8", "replace")
        if not SEG_ID.fullmatch(sid):
            raise _error(path, no, f"seg_id {_show(fields[0])} is not a segment name (letters, digits, '_', '-')")
        if sid in seen:
            raise _error(path, no, f"duplicate seg_id {sid!r} (first on line {seen[sid]})")
        seen[sid] = no
        ids.append(sid)
    if not ids:
        raise _error(path, None, "no seg_id rows")
    return ids


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
    **extra: Any,
) -> tuple[dict, bool]:
    """Bring ``cache`` up to date with the recording at ``path``: its record, and whether it was rebuilt.

    ``read(sink)`` passes the recording's arrays to ``sink`` (signal, then ttf when ``cache.ttf``) a
    chunk at a time and returns the row count; they are appended to the cache files, so memory stays
    bounded. ``fingerprint()`` identifies the source, before and after reading (a file that changed
    meanwhile is an error). The record (``extra`` added) is written last; see the module docstring.
    """
    key = fingerprint()
    folder = cache.folder
    reason, record = _stale_reason(folder, cache.record, key, _signal_sizes(cache.signal, cache.ttf))
    if reason is None and not force:
        return record, False
    log.info("cache: building the %s cache from %s (%s)", stage.removeprefix("cache-"), path, "--force" if reason is None else reason)
    timer = Timer()
    folder.mkdir(parents=True, exist_ok=True)
    names = (cache.signal,) + ((cache.ttf,) if cache.ttf else ())
    _remove_stale_temps(folder, names)
    with contextlib.ExitStack() as stack:
        tmps = [stack.enter_context(atomic_path(folder / name)) for name in names]
        files = [stack.enter_context(open(tmp, "wb")) for tmp in tmps]
        dtypes = (I16, F64)[: len(files)]

        def sink(*arrays: np.ndarray) -> None:
            for fh, dtype, a in zip(files, dtypes, arrays):
                fh.write(a.astype(dtype, copy=False).tobytes())

        with timer.step("parse"):
            n = read(sink)
        for fh in files:
            fh.close()
        if fingerprint() != key:
            raise LabquakeError(f"{path}: changed while it was being read; run again")
        (folder / cache.record).unlink(missing_ok=True)  # the arrays change now: the old record goes first
    seconds = timer.total()
    record = stage_record(
        stage,
        config,
        timer,
        format=CACHE_FORMAT,
        fingerprint=key,
        n_rows=n,
        files={"signal": cache.signal} | ({"ttf": cache.ttf} if cache.ttf else {}),
        **extra,
    )
    write_json(folder / cache.record, record)
    log.info("cache: %s rows of %s in %.1f s (%.1f M rows/s) -> %s", f"{n:,}", path.name, seconds, n / max(seconds, 1e-9) / 1e6, folder)
    return record, True


def _ensure_train(data_dir: Path, interim: Path, force: bool = False) -> tuple[dict, bool]:
    path = _input_path(data_dir, "train.csv")
    return _ensure_signal(
        path,
        lambda sink: read_train(path, sink),
        SignalCache(interim, TRAIN_SIGNAL, TRAIN_TTF, TRAIN_RECORD),
        lambda: _train_fingerprint(path)[0],
        "cache-train",
        {"data": str(data_dir), "interim": str(interim)},
        force,
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
    ids, files, fingerprint = _test_inputs(data_dir)
    reason, record = _stale_reason(interim, TEST_RECORD, fingerprint, _test_sizes)
    if reason is None and not force:
        return record, False
    test_dir = files[0].parent
    log.info("cache: building the test cache from %s (%s)", test_dir, "--force" if reason is None else reason)
    extra = sorted({p.stem for p in test_dir.glob("*.csv")} - set(ids))
    if extra:
        log.warning(
            "%s: %d segment file(s) not in sample_submission.csv, ignored: %s",
            test_dir,
            len(extra),
            ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else ""),
        )
    timer = Timer()
    threads = io_threads()
    interim.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(interim, (TEST_SIGNAL,))
    with atomic_path(interim / TEST_SIGNAL) as tmp:
        with open(tmp, "wb") as out, ThreadPoolExecutor(threads) as pool, timer.step("parse"):
            segments = ordered_map(pool, read_segment, files, ahead=2 * threads + 1)
            for values in progress(segments, total=len(files), desc="test segments"):
                out.write(values.astype(I16, copy=False).tobytes())
        if _test_inputs(data_dir)[2] != fingerprint:
            raise LabquakeError(f"{test_dir}: changed while it was being read; run again")
        (interim / TEST_RECORD).unlink(missing_ok=True)  # the array changes now: the old record goes first
    record = stage_record(
        "cache-test",
        {"data": str(data_dir), "interim": str(interim)},
        timer,
        format=CACHE_FORMAT,
        fingerprint=fingerprint,
        seg_ids=ids,
        n_segments=len(ids),
        segment_rows=SEGMENT_ROWS,
        files={"signal": TEST_SIGNAL},
    )
    write_json(interim / TEST_RECORD, record)
    log.info("cache: %d test segments in %.1f s -> %s", len(ids), timer.total(), interim)
    return record, True


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


def load_train(data_dir: Path, interim: Path) -> TrainData:
    """train.csv as read-only arrays; the cache is (re)built first if it is missing or stale."""
    data_dir, interim = Path(data_dir), Path(interim)
    with _io_errors(interim):
        record, _ = _ensure_train(data_dir, interim)
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
            line = f.readline(MAX_LINE)
        found = line.removeprefix(BOM).rstrip(b"\r\n")
        for columns in (TRAIN_COLUMNS, TEST_COLUMNS):
            if found == ",".join(columns).encode():
                return columns
        expected = " or ".join(repr(",".join(c)) for c in (TRAIN_COLUMNS, TEST_COLUMNS))
        if not line:
            raise _error(path, None, f"empty file (expected the header {expected} and rows)")
        raise _error(path, 1, f"header is {_show(found, 60)}, expected {expected}")

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


def build_cache(data_dir: Path, interim: Path, force: bool = False) -> dict:
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
