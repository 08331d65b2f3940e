"""Small shared pieces: the user-facing error, atomic outputs, cache keys, bounded thread pools,
logging, progress, stage records."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("labquake")
_T = TypeVar("_T")
_R = TypeVar("_R")


class LabquakeError(Exception):
    """A problem the user can fix (bad input, stale output). The CLI prints it as one line, exit 2."""


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def io_threads() -> int:
    """Threads for a pool that parses or formats text (the work releases the GIL): up to 4."""
    return max(1, min(4, usable_cpus()))


def ordered_map(pool: Executor, fn: Callable[[_T], _R], items: Iterable[_T], ahead: int) -> Iterator[_R]:
    """``pool.map`` in order, with at most ``ahead`` items submitted and not yet yielded, so that
    memory stays bounded however long ``items`` is. Unfinished work is cancelled if the caller stops."""
    pending: deque[Future[_R]] = deque()
    try:
        for item in items:
            if len(pending) >= ahead:
                yield pending.popleft().result()
            pending.append(pool.submit(fn, item))
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()


def json_key(obj: Any) -> str:
    """A short stable key of a JSON-able object (sorted keys): what a cache or a run is keyed by."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def lazy_njit(func: Callable) -> Callable:
    """``numba.njit(cache=True, nogil=True)(func)``, compiled on the first call: importing stays cheap."""
    compiled: Callable | None = None

    @functools.wraps(func)
    def wrapper(*args: Any) -> Any:
        nonlocal compiled
        if compiled is None:
            import numba

            compiled = numba.njit(cache=True, nogil=True)(func)
        return compiled(*args)

    return wrapper


@functools.lru_cache(maxsize=1)
def tune_malloc() -> bool:
    """Keep freed memory in the process instead of unmapping it (glibc only; a no-op elsewhere).

    Every segment allocates and frees a few dozen arrays of about a megabyte (PyWavelets, FFTs), and
    the cache build a few buffers of 5-22 MB a piece of train.csv. By default glibc serves such blocks with
    fresh mmaps, so each pays a page fault every 4 kB: about a quarter of the features' time, and
    half of the test cache's (8 -> 3 s). A fixed mmap threshold of 32 MiB (the most glibc allows) and
    no trimming make the blocks reused instead; the process keeps at most its peak working set.
    Process-wide: set once in each process that computes features or builds the cache.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 << 20) == 1
        return bool(libc.mallopt(m_trim_threshold, 256 << 20) == 1 and ok)
    except (OSError, AttributeError):
        return False


def setup_logging(verbosity: int = 0) -> None:
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    Works for files and directories. A failure or an interruption leaves the old output (or none),
    never a partial one; the temporary is removed, and a stale one from a killed run is replaced.
    A write that fails for want of space is a one-line error naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    _remove(tmp)
    try:
        try:
            yield tmp
        except OSError as exc:
            if is_no_space(exc):
                raise no_space(path, exc) from None
            raise
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}.old{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)  # a full disk, a file-size limit, a quota


def is_no_space(exc: BaseException) -> bool:
    """A write refused for want of space (h5py's errors carry the reason in their text only)."""
    text = str(exc)
    return isinstance(exc, OSError) and (exc.errno in NO_SPACE or "File too large" in text or "No space left" in text or "errno = 27" in text)


def no_space(path: str | Path, exc: OSError) -> LabquakeError:
    why = " ".join(str(exc.strerror or exc).split())  # HDF5's messages run over several lines
    return LabquakeError(f"{path}: could not be written ({why}): free some space and run again; earlier outputs are intact")


def digest(data: bytes) -> str:
    """The checksum recorded for an artifact: sha256, hex."""
    return hashlib.sha256(data).hexdigest()


def file_digest(path: str | Path, block: int = 8 << 20) -> str:
    """The sha256 of a file, read in blocks (hashlib releases the GIL: files hash in parallel threads)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def write_bytes(path: str | Path, data: bytes) -> str:
    """``data`` to ``path`` atomically; its checksum, computed from the bytes written (no second read)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return digest(data)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LabquakeError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabquakeError(f"{path}: corrupt JSON ({exc})") from None


def read_table(path: str | Path, required: tuple[str, ...] = (), missing_hint: str = ""):
    """A parquet table with the ``required`` columns, or a one-line error naming the file."""
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_parquet(path)
    except FileNotFoundError:
        raise LabquakeError(f"{path}: not found{missing_hint}") from None
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise LabquakeError(f"{path}: not a readable parquet file ({first})") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise LabquakeError(f"{path}: missing columns {', '.join(missing)}")
    return table


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, (Path, tuple, set)):
        return str(obj) if isinstance(obj, Path) else list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """Cheap identity of an input file (size and modification time): enough to tell a cache is stale."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class Timer:
    """Named wall-clock timings of the steps of one stage."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 3)

    def total(self) -> float:
        return round(time.perf_counter() - self._start, 3)


def stage_record(stage: str, config: dict[str, Any], timer: Timer, **extra: Any) -> dict[str, Any]:
    """What every stage writes beside its outputs: its configuration, timings and environment."""
    from labquake import __version__

    return {
        "stage": stage,
        "version": __version__,
        "config": config,
        "timings_s": {**timer.timings, "total": timer.total()},
        "python": platform.python_version(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **extra,
    }


def progress(iterable: Iterable[Any], total: int | None = None, desc: str = "") -> Iterable[Any]:
    """A progress bar on a terminal, a line every few seconds otherwise (logs, CI)."""
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        file=sys.stderr,
        mininterval=0.2 if tty else 10.0,
        disable=log.level > logging.INFO,
        dynamic_ncols=True,
    )


def parquet_bytes(table: Any) -> bytes:
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    return buf.getvalue()


def npy_bytes(array: Any) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def write_csv(path: Path, table: Any) -> None:
    """A pandas table as CSV, atomically (no index)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def write_parquet(path: Path, table: Any) -> str:
    """A pandas table as parquet, atomically (no index); its checksum."""
    return write_bytes(path, parquet_bytes(table))


def save_npz(path: Path, **arrays: Any) -> str:
    """Arrays as .npz, atomically; its checksum."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return write_bytes(path, buf.getvalue())


def load_npz(path: Path) -> dict[str, Any]:
    import numpy as np

    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}
