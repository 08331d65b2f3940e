"""Kaggle's CSV files, parsed and validated: pure functions on bytes, and the readers built on them.

Line ends may be LF or CRLF, the final newline may be missing, blank lines at the very end and a
UTF-8 byte order mark are ignored. Anything else that is wrong is a one-line ``LabquakeError``
naming the file and the line. ``train.csv`` is read in byte chunks cut at line ends. A chunk in
Kaggle's own plain form is parsed by ``parse_plain`` (4x pyarrow's speed, the same values);
any other goes to pyarrow, and only a chunk that pyarrow or the checks reject is re-read line by
line, to report the exact first bad line.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from labquake.config import SEGMENT_ROWS, SUBMISSION_COLUMNS
from labquake.util import LabquakeError, io_threads, lazy_njit, ordered_map, progress

CHUNK_BYTES = 16 << 20  # train.csv is parsed in pieces of about this size: below util.tune_malloc's 32 MiB, so buffers are reused
MAX_LINE = 1 << 20  # a "line" longer than this is not CSV: fail instead of buffering it
MAX_SMALL_FILE = 64 << 20  # sample_submission.csv is read whole; refuse anything absurd

TRAIN_COLUMNS = ("acoustic_data", "time_to_failure")
TEST_COLUMNS = ("acoustic_data",)
SUB_HEADER = ",".join(SUBMISSION_COLUMNS).encode()
BOM = b"\xef\xbb\xbf"

I16, F64 = np.dtype("<i2"), np.dtype("<f8")

SEG_ID = re.compile(r"[A-Za-z0-9_-]+")  # also a safe file name: no separators, no dots
SYNTH_HINT = "or write synthetic data there with `labquake synth --out {dir}`"


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


class LineError(LabquakeError):
    """A bad line: the file, the line number and what is wrong, kept apart so that a line counted
    inside one piece can be renumbered in the whole file (``read_csv``)."""

    def __init__(self, path: Path, line: int | None, what: str) -> None:
        super().__init__(f"{path}: line {line}: {what}" if line is not None else f"{path}: {what}")
        self.path, self.line, self.what = path, line, what


def _error(path: Path, line: int | None, what: str) -> LineError:
    return LineError(path, line, what)


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


_POW10 = np.array([10.0**k for k in range(16)])  # exact in float64 up to 1e22


# Long by design: one numba loop, kept whole so that it compiles to a single pass over the data.
@lazy_njit
def _plain_rows(buf, signal, ttf, pow10, has_ttf):  # pragma: no cover - compiled
    """Lines ``-?D{1,5}`` (``has_ttf``: then ``,D+.D+``, at most 15 digits D in the time) + LF into
    ``signal`` (int16) and ``ttf``; the row count, or -1 at the first line of any other form.

    The time is its digits as an integer m (< 2**53, so exact) over 10**k (exact): one correctly
    rounded division, which is the correctly rounded value of the decimal, as pyarrow gives it.
    """
    n = buf.shape[0]
    i = 0
    row = 0
    while i < n:
        neg = buf[i] == 45  # "-"
        i += neg
        v = 0
        d = 0
        while i < n and d <= 5 and 48 <= buf[i] <= 57:
            v = v * 10 + (buf[i] - 48)
            d += 1
            i += 1
        v = -v if neg else v
        if d == 0 or d > 5 or v < -32768 or v > 32767 or i >= n or buf[i] != (44 if has_ttf else 10):  # "," or "\n"
            return -1
        i += 1
        signal[row] = v
        if has_ttf:
            m = 0
            d = 0
            while i < n and d <= 15 and 48 <= buf[i] <= 57:
                m = m * 10 + (buf[i] - 48)
                d += 1
                i += 1
            if d == 0 or i >= n or buf[i] != 46:  # "."
                return -1
            i += 1
            k = 0
            while i < n and d + k <= 15 and 48 <= buf[i] <= 57:
                m = m * 10 + (buf[i] - 48)
                k += 1
                i += 1
            if k == 0 or d + k > 15 or i >= n or buf[i] != 10:  # "\n"
                return -1
            i += 1
            ttf[row] = m / pow10[k]
        row += 1
    return row


def parse_plain(chunk: bytes | memoryview, columns: tuple[str, ...]) -> list[np.ndarray] | None:
    """The arrays of complete ``train.csv`` or test segment lines in Kaggle's plain form, or None
    when any line has another form (the caller's slower parsers then take the chunk)."""
    has_ttf = columns == TRAIN_COLUMNS
    if not has_ttf and columns != TEST_COLUMNS:
        return None
    most = len(chunk) // (6 if has_ttf else 2) + 1  # the shortest lines: "0,0.0\n", "0\n"
    signal, ttf = np.empty(most, I16), np.empty(most if has_ttf else 0, F64)
    rows = _plain_rows(np.frombuffer(chunk, np.uint8), signal, ttf, _POW10, has_ttf)
    if rows < 0:
        return None
    return [signal[:rows].copy(), ttf[:rows].copy()] if has_ttf else [signal[:rows].copy()]


def _values_ok(columns: tuple[str, ...], arrays: list[np.ndarray]) -> bool:
    for column, a in zip(columns, arrays):
        # time to failure: finite and >= 0 (NaN fails the >= test)
        if column == "time_to_failure" and not (np.all(a >= 0) and np.all(a < np.inf)):
            return False
    return True


def parse_rows(chunk: bytes | memoryview, first_line: int, path: Path, columns: tuple[str, ...]) -> list[np.ndarray]:
    """Parse complete lines (``chunk`` ends with a newline) into one array per column.

    ``parse_plain`` takes a chunk in Kaggle's plain form; otherwise pyarrow does the
    work, and when it or the value checks reject the chunk, or it splits lines differently (a lone
    CR), the chunk is re-read by ``scan_rows`` for the exact message.
    """
    plain = parse_plain(chunk, columns)
    return plain if plain is not None else parse_arrow(chunk, first_line, path, columns)


def parse_arrow(chunk: bytes | memoryview, first_line: int, path: Path, columns: tuple[str, ...]) -> list[np.ndarray]:
    """``parse_rows`` by pyarrow alone (and ``scan_rows`` for a chunk it or the checks reject)."""
    chunk = bytes(chunk)
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


def check_header(line: bytes, path: Path, *choices: tuple[str, ...]) -> tuple[str, ...]:
    """The columns of the first of ``choices`` that the header line names; a one-line error otherwise."""
    found = line.removeprefix(BOM).rstrip(b"\r\n")
    for columns in choices:
        if found == ",".join(columns).encode():
            return columns
    expected = " or ".join(repr(",".join(c)) for c in choices)
    if not line:
        raise _error(path, None, f"empty file (expected the header {expected} and rows)")
    raise _error(path, 1, f"header is {_show(found, 60)}, expected {expected}")


def iter_pieces(f: BinaryIO, path: Path, chunk_bytes: int) -> Iterator[memoryview | bytes]:
    """Bytes of complete lines (ending with a newline) from ``f``'s position on, about ``chunk_bytes``
    at a time, each read straight into a buffer of its own (no copy of the piece in Python).

    Each piece is cut after the last line that is not blank, so blank lines at the end of the file
    (and a missing final newline) are dropped there and nowhere else.
    """
    carry = b""
    while True:
        buf = bytearray(len(carry) + chunk_bytes)
        buf[: len(carry)] = carry
        view = memoryview(buf)
        got = f.readinto(view[len(carry) :])
        if not got:
            body = carry.rstrip(b"\r\n")
            if body:
                yield body + b"\n"
            return
        end = len(carry) + got
        body_end = end
        while body_end and buf[body_end - 1] in (10, 13):  # the last line may be followed by blank ones
            body_end -= 1
        cut = buf.rfind(b"\n", 0, body_end) + 1
        if body_end - cut > MAX_LINE:
            line = _line_at(f, f.tell() - (end - cut))  # numbered in the file: not a LineError, which read_csv renumbers
            raise LabquakeError(f"{path}: line {line}: longer than {MAX_LINE:,} bytes: not a CSV row")
        if cut:
            yield view[:cut]
        carry = bytes(view[cut:end])


def _line_at(f: BinaryIO, offset: int) -> int:
    """The number of the line that starts at byte ``offset`` of the file (for an error message)."""
    f.seek(0)
    lines, left = 1, offset
    while left > 0:
        block = f.read(min(left, 1 << 24))
        lines, left = lines + block.count(b"\n"), left - len(block)
    return lines


def iter_chunks(f: BinaryIO, path: Path, chunk_bytes: int, first_line: int = 2) -> Iterator[tuple[int, bytes]]:
    """(first line number, bytes of complete lines) from ``f``'s position on (``iter_pieces``)."""
    line = first_line
    for piece in iter_pieces(f, path, chunk_bytes):
        piece = bytes(piece)
        yield line, piece
        line += piece.count(b"\n")


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
        check_header(f.readline(MAX_LINE), path, columns)
        total = _n_blocks(f, chunk_bytes)
        # Each piece is parsed as if it began at line 1: the lines before it are its rows, counted
        # here in order, so a bad line's number is corrected here (no pass that counts lines).
        with ThreadPoolExecutor(threads) as pool:
            parsed = ordered_map(pool, lambda c: parse_rows(c, 1, path, columns), iter_pieces(f, path, chunk_bytes), ahead=threads + 2)
            try:
                for arrays in progress(parsed, total=total, desc=path.name):
                    sink(*arrays)
                    n += len(arrays[0])
            except LineError as e:
                if e.line is None:
                    raise
                raise _error(path, e.line + n + 1, e.what) from None
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
        check_header(f.readline(MAX_LINE), path, TEST_COLUMNS)
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
    check_header(lines[0] if raw else b"", path, SUBMISSION_COLUMNS)
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
