"""The features stage (`labquake features`): one feature table for train and one for test, cached.

``build_features`` writes one table for train (a row per 150,000-row segment) and one for test (a
row per test segment, in sample_submission.csv order). Segments are read from the memory-mapped
binary cache of ``labquake.data``; workers get chunks of segment indices and open the cache
themselves. Finished chunks are kept beside the output, in ``.FEATDIR.parts/<key>/`` (key: inputs
and settings), so an interrupted run resumes; the output folder (both tables and ``features.json``)
is swapped in whole only when everything succeeded.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from labquake.config import SEGMENT_ROWS, Config, FeatureConfig
from labquake.features.segment import FEATURE_NAMES, featurizer
from labquake.util import LabquakeError, json_key, log, usable_cpus

DEFAULT_CHUNK = 64  # segments per resumable chunk (env LABQUAKE_FEATURE_CHUNK overrides)


@functools.lru_cache(maxsize=1)
def tune_malloc() -> bool:
    """Keep freed memory in the process instead of unmapping it (glibc only; a no-op elsewhere).

    Every segment allocates and frees a few dozen arrays of about a megabyte (PyWavelets, FFTs). By
    default glibc serves such blocks with fresh mmaps, so each call pays thousands of page faults,
    about a quarter of the fast path's time. A fixed mmap threshold of 32 MiB (the most glibc allows)
    and no trimming make the blocks reused instead; the process keeps at most its peak working set
    (tens of MB). Process-wide, so the stage sets it once in each process that computes features.
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


FEATURES_VERSION = 2  # bump when a feature's computation changes: invalidates every cached table


def tables_key(cfg: Config, train_fingerprint: str, test_fingerprint: str) -> str:
    """Cache key of the feature tables: everything they depend on, and nothing else."""
    from labquake import __version__

    payload = {
        "version": FEATURES_VERSION,
        "labquake": __version__,
        "features": cfg.features.table_settings(),
        "segment_rows": SEGMENT_ROWS,
        "binary_threshold": cfg.data.binary_threshold,
        "train": train_fingerprint,
        "test": test_fingerprint,
    }
    return json_key(payload)


def n_jobs(jobs: int) -> int:
    """``--jobs``: 0 means every core this process may use."""
    if jobs > 0:
        return jobs
    return usable_cpus()


def _chunk_features(fc: FeatureConfig, source: tuple[str, int], starts: np.ndarray, rows: int, part: str) -> str:
    """Features of the segments ``signal[start:start + rows]`` of an int16 cache file, saved to ``part``.

    Runs in a worker: it opens the memory-mapped cache itself (``source``: file name and byte
    offset), so only names cross processes, never the signal.
    """
    from labquake.util import atomic_path

    tune_malloc()
    signal = np.memmap(source[0], dtype=np.int16, mode="r", offset=source[1])
    f = featurizer(fc, rows)
    values = np.empty((len(starts), len(FEATURE_NAMES)))
    for i, s in enumerate(starts):
        row = f(np.asarray(signal[s : s + rows]))
        values[i] = [row[name] for name in FEATURE_NAMES]
    with atomic_path(part) as tmp, open(tmp, "wb") as fh:
        np.save(fh, values)
    return part


def _cache_file(signal: np.ndarray) -> tuple[str, int]:
    """File name and byte offset of a cache array: what a worker opens it by."""
    from labquake.data import mapped_file

    where = mapped_file(signal)
    if where is None:
        raise TypeError("features need the memory-mapped cache arrays of labquake.data")
    return where


def _load_part(path: Path, n: int) -> np.ndarray | None:
    """A finished chunk, or None if it is missing or damaged (then it is computed again)."""
    try:
        values = np.load(path)
    except (OSError, ValueError, EOFError):
        return None
    return values if values.shape == (n, len(FEATURE_NAMES)) else None


def _compute(cfg: Config, workers: int, parts: Path, tasks: list[tuple[str, tuple[str, int], np.ndarray]], total: int) -> dict[str, np.ndarray]:
    """Features of every task (name, source file, segment starts in it), resuming from ``parts``."""
    from joblib import Parallel, delayed

    from labquake.util import progress

    rows = SEGMENT_ROWS
    chunk = int(os.environ.get("LABQUAKE_FEATURE_CHUNK", DEFAULT_CHUNK))
    done: dict[str, np.ndarray] = {}
    todo = []
    order: dict[str, list[str]] = {}  # each task's part files, in segment order
    for name, source, starts in tasks:
        order[name] = []
        for c, lo in enumerate(range(0, len(starts), chunk)):
            part = str(parts / f"{name}_{c:05d}.npy")
            order[name].append(part)
            values = _load_part(Path(part), len(starts[lo : lo + chunk]))
            if values is None:
                todo.append((source, starts[lo : lo + chunk], part))
            else:
                done[part] = values
    resumed = sum(len(v) for v in done.values())
    if resumed:
        log.info(f"features: resuming, {resumed} of {total} segments already done")
    bar = progress(None, total=total, desc="features")
    bar.update(resumed)
    workers = min(workers, max(1, len(todo)))
    if workers == 1:  # in this process: no start-up cost, and the featurizer stays warm for the next call
        results = (_chunk_features(cfg.features, src, st, rows, p) for src, st, p in todo)
    else:
        call = delayed(_chunk_features)
        results = Parallel(n_jobs=workers, return_as="generator_unordered")(call(cfg.features, src, st, rows, p) for src, st, p in todo)
    sizes = {p: len(st) for _, st, p in todo}
    for part in results:
        done[part] = np.load(part)
        bar.update(sizes[part])
    bar.close()
    return {name: np.concatenate([done[p] for p in paths]) if paths else np.empty((0, len(FEATURE_NAMES))) for name, paths in order.items()}


def compute_windows(
    cfg: Config, source: tuple[str, int], starts: np.ndarray, parts: Path, name: str, jobs: int = 0, scheduler: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, 24) and sequences (n, steps, channels) of the SEGMENT_ROWS-row windows at ``starts``.

    ``source``: an int16 cache file and byte offset (``_cache_file``); finished chunks are kept in
    ``parts`` (named ``name``_NNNNN) so an interrupted call resumes. (Sequences: first cut, in process.)
    """
    from labquake.features.sequences import segment_sequence

    parts.mkdir(parents=True, exist_ok=True)
    values = _compute(cfg, n_jobs(jobs), parts, [(name, source, np.asarray(starts, np.int64))], len(starts))[name]
    signal = np.memmap(source[0], dtype=np.int16, mode="r", offset=source[1])
    seqs = [segment_sequence(np.asarray(signal[s : s + SEGMENT_ROWS]), cfg.features) for s in starts]
    return values, np.stack(seqs) if seqs else np.empty((0, SEGMENT_ROWS // cfg.features.seq_window, 1), np.float32)


def _up_to_date(out_dir: Path, key: str) -> bool:
    from labquake.util import read_json

    meta_path = out_dir / "features.json"
    if not (meta_path.is_file() and (out_dir / "train.parquet").is_file() and (out_dir / "test.parquet").is_file()):
        return False
    try:
        return read_json(meta_path).get("key") == key
    except LabquakeError:
        return False  # a damaged record: rebuild


def build_features(cfg: Config, data_dir: Path, out_dir: Path, interim: Path, jobs: int = 0, scheduler: str | None = None) -> dict[str, Any]:
    """Write ``out_dir/train.parquet``, ``test.parquet`` and ``features.json`` (see the module docstring).

    Returns the stage record. Unchanged inputs and configuration: nothing is computed.
    """
    import pandas as pd

    from labquake import data, targets
    from labquake.util import Timer, atomic_path, read_json, stage_record, write_json

    timer = Timer()
    out_dir = Path(out_dir)
    with timer.step("cache"):
        train = data.load_train(Path(data_dir), Path(interim))
        test = data.load_test(Path(data_dir), Path(interim))
    rows = SEGMENT_ROWS
    key = tables_key(cfg, train.fingerprint, test.fingerprint)
    if _up_to_date(out_dir, key):
        log.info(f"features: {out_dir} is up to date (key {key})")
        return read_json(out_dir / "features.json")

    with timer.step("targets"):
        meta = targets.segment_targets(train.ttf, cfg)
    n_cycles = int(meta["cycle"].max()) + 1 if len(meta) else 0
    if n_cycles <= 1:
        log.warning(f"{Path(data_dir) / 'train.csv'}: no quake (time_to_failure never jumps up): one cycle")
    parts_root = out_dir.parent / f".{out_dir.name}.parts"
    parts = parts_root / key
    for stale in parts_root.glob("*") if parts_root.is_dir() else []:
        if stale.name != key:  # chunks of another configuration or other data
            shutil.rmtree(stale, ignore_errors=True)
    parts.mkdir(parents=True, exist_ok=True)
    test_starts = np.arange(len(test.seg_ids), dtype=np.int64) * rows
    tasks = [
        ("train", _cache_file(train.signal), meta["start"].to_numpy()),
        ("test", _cache_file(test.signal), test_starts),
    ]
    workers = n_jobs(jobs)
    log.info(f"features: {len(meta)} train segments in {n_cycles} cycles, {len(test_starts)} test segments, {workers} jobs")
    with timer.step("compute"):
        values = _compute(cfg, workers, parts, tasks, len(meta) + len(test_starts))
    train_table = pd.concat([meta, pd.DataFrame(values["train"], columns=FEATURE_NAMES)], axis=1)
    test_table = pd.concat([pd.DataFrame({"seg_id": test.seg_ids}), pd.DataFrame(values["test"], columns=FEATURE_NAMES)], axis=1)
    with atomic_path(out_dir) as tmp:
        # the folder is swapped whole: old tables or new ones, never a mix of the two
        tmp.mkdir()
        with timer.step("write"):
            train_table.to_parquet(tmp / "train.parquet", index=False)
            test_table.to_parquet(tmp / "test.parquet", index=False)
        record = stage_record(
            "features",
            cfg.to_dict(),
            timer,
            key=key,
            n_rows=train.n_rows,
            n_train=len(train_table),
            n_test=len(test_table),
            n_cycles=n_cycles,
            jobs=workers,
            data_dir=str(data_dir),
            segments_per_s=round((len(train_table) + len(test_table)) / max(timer.timings["compute"], 1e-9), 2),
        )
        write_json(tmp / "features.json", record)
    shutil.rmtree(parts_root, ignore_errors=True)
    log.info(f"features: wrote {out_dir}/train.parquet ({len(train_table)} rows) and test.parquet ({len(test_table)} rows) in {timer.total():.1f} s")
    return record
