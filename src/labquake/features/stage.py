"""The features stage (`labquake features`): one feature table for train and one for test, cached.

``run_features`` writes one table for train (a row per 150,000-row segment) and one for test (a
row per test segment, in sample_submission.csv order), and beside them each segment's sequence for
the networks that see time (``features.sequences``; ``train_seq.npy``, ``test_seq.npy``, rows in
table order; ``load_sequences`` reads them). Segments are read from the memory-mapped binary cache
of ``labquake.data``; workers (local processes, or a Dask cluster's through ``labquake.cluster``)
get chunks of segment starts with the cache's file name and open it themselves, computing features
and sequences from one read of each segment; while the train cache is being built, local workers
already compute what is there (``features.prefetch``). Finished chunks are kept beside the output, in
``.FEATDIR.parts/<key>/`` (key: inputs and settings), so an interrupted run resumes and a task
retried by Dask writes the same part; the output folder (tables, sequences and ``features.json``)
is swapped in whole only when everything succeeded.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from labquake.config import SEGMENT_ROWS, Config
from labquake.features.chunks import cache_file as _cache_file
from labquake.features.chunks import chunk_features as _chunk_features
from labquake.features.chunks import load_part as _load_part
from labquake.features.chunks import part_path, part_shape, seq_shape
from labquake.features.folder import RECORD, SEQUENCES, TABLES, FeatureFolder
from labquake.features.table import FEATURE_NAMES
from labquake.util import LabquakeError, json_key, log, usable_cpus

FEATURES_VERSION = 3  # bump when a feature's computation changes: invalidates every cached table (3: tables include sequences)


def tables_key(cfg: Config, train_fingerprint: str, test_fingerprint: str) -> str:
    """Cache key of the feature tables: everything they depend on, and nothing else."""
    from labquake import __version__
    from labquake.features.sequences import SEQ_CHANNELS

    payload = {
        "version": FEATURES_VERSION,
        "labquake": __version__,
        "features": cfg.features.table_settings(),
        "seq_channels": list(SEQ_CHANNELS),
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


def plan(cfg: Config, out_dir: Path, key: str, sequences: bool) -> tuple[Path, bool] | None:
    """Where the chunks of a build of ``out_dir`` with tables key ``key`` go (created; other keys'
    chunks removed), and whether it computes the tables (False: only the sequences are missing);
    None when ``out_dir`` is up to date."""
    folder = FeatureFolder(out_dir)
    if folder.finished(key, cfg.features.seq_overlap and sequences, sequences):
        return None
    tables_done = sequences and folder.finished(key, False, False)  # only the sequences are missing: computed alone
    parts_root = out_dir.parent / f".{out_dir.name}.parts"
    for stale in parts_root.glob("*") if parts_root.is_dir() else []:
        if stale.name != key:  # chunks of another configuration or other data
            shutil.rmtree(stale, ignore_errors=True)
    (parts_root / key).mkdir(parents=True, exist_ok=True)
    return parts_root / key, not tables_done


Task = tuple[str, tuple[str, int], np.ndarray, bool, bool]  # name, cache file and offset, segment starts, features?, sequences?


SHARED_FS = (
    "with a remote cluster the data, its cache (--interim) and the output folder's parent must be on a filesystem every worker and this machine share"
)


def _shared_fs_error(part: str) -> LabquakeError:
    return LabquakeError(f"{part}: a Dask worker wrote this chunk but it cannot be read here: {SHARED_FS}")


# Long by design: the chunks' scheduling, local or on a cluster, with its resume and failure paths in one view.
def _compute(
    cfg: Config, workers: int, parts: Path, tasks: list[Task], total: int, cluster_threads: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Features and sequences of every task, resuming from ``parts``: name -> (features, sequences), rows in task order.

    ``cluster_threads`` > 0: inside ``cluster.joblib_backend``, the chunks run on its Dask cluster;
    else on ``workers`` local processes (1: in this process).
    """
    from joblib import Parallel, delayed

    from labquake.util import progress

    rows = SEGMENT_ROWS
    fc = cfg.features
    chunk = cfg.runtime.feature_chunk
    done: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    todo = []
    order: dict[str, list[str]] = {}  # each task's part files, in segment order
    shapes: dict[str, tuple[int, int, int]] = {}  # each task's feature columns, steps, channels
    for name, source, starts, with_features, with_seq in tasks:
        order[name] = []
        shapes[name] = part_shape(fc, with_features, with_seq)
        for c, lo in enumerate(range(0, len(starts), chunk)):
            part = str(part_path(parts, name, c))
            order[name].append(part)
            sub = np.asarray(starts[lo : lo + chunk], dtype=np.int64)
            found = _load_part(Path(part), (len(sub), *shapes[name]))
            if found is None:
                todo.append((source, sub, part, with_features, with_seq, name))
            else:
                done[part] = found
    resumed = sum(len(v[0]) for v in done.values())
    if resumed:
        log.info(f"features: resuming, {resumed} of {total} segments already done (by an interrupted run, or while the cache was built)")
    bar = progress(None, total=total, desc="features")
    bar.update(resumed)
    workers = min(workers, max(1, len(todo)))
    if cluster_threads:  # joblib's Dask backend (cluster.joblib_backend): one task per chunk
        call = delayed(_chunk_features)
        results = Parallel(n_jobs=-1, batch_size=1, return_as="generator_unordered")(call(fc, src, st, rows, p, w, q) for src, st, p, w, q, _ in todo)
    elif workers == 1:  # in this process: no start-up cost, and the featurizer stays warm for the next call
        results = (_chunk_features(fc, src, st, rows, p, w, q) for src, st, p, w, q, _ in todo)
    else:
        call = delayed(_chunk_features)
        results = Parallel(n_jobs=workers, return_as="generator_unordered")(call(fc, src, st, rows, p, w, q) for src, st, p, w, q, _ in todo)
    expected = {p: (len(st), *shapes[name]) for _, st, p, _, _, name in todo}
    try:
        for part in results:
            found = _load_part(Path(part), expected[part])
            if found is None:
                raise _shared_fs_error(part) if cluster_threads else LabquakeError(f"{part}: chunk written but unreadable")
            done[part] = found
            bar.update(expected[part][0])
    except FileNotFoundError as exc:  # a worker did not find the cache file
        if not cluster_threads:
            raise
        raise LabquakeError(f"{exc.filename or exc}: not found on a Dask worker: {SHARED_FS}") from None
    except Exception as exc:
        from labquake.cluster import cluster_failure, one_line

        if not (cluster_threads and cluster_failure(exc)):
            raise
        finished = sum(len(v[0]) for v in done.values())
        raise LabquakeError(
            f"the Dask cluster failed during the features ({one_line(exc)}); {finished} of {total} segments are done and kept: rerun to resume"
        ) from None
    finally:
        bar.close()
        with warnings.catch_warnings():  # on an error: cancel the chunks still running, without joblib's warning about it
            warnings.simplefilter("ignore", UserWarning)
            getattr(results, "close", lambda: None)()
    out = {}
    for name, *_ in tasks:
        paths = order[name]
        n_feat, steps, channels = shapes[name]
        if paths:
            out[name] = (np.concatenate([done[p][0] for p in paths]), np.concatenate([done[p][1] for p in paths]))
        else:
            out[name] = (np.empty((0, n_feat)), np.empty((0, steps, channels), np.float32))
    return out


def compute_windows(
    cfg: Config, source: tuple[str, int], starts: np.ndarray, parts: Path, name: str, jobs: int = 0, scheduler: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, 24) and sequences (n, steps, channels) of the SEGMENT_ROWS-row windows at ``starts``.

    ``source``: an int16 cache file and byte offset (``_cache_file``); finished chunks are kept in
    ``parts`` (named ``name``_NNNNN) so an interrupted call resumes. Chunks run on ``jobs`` local
    processes, or on the Dask cluster at ``scheduler`` (then ``parts`` and ``source`` must be on a
    filesystem the workers share; a caller may hold ``cluster.joblib_backend(scheduler)`` open around
    many calls to connect once).
    """
    from labquake.cluster import joblib_backend

    with joblib_backend(scheduler, cfg.runtime.scheduler_timeout) as threads:
        parts.mkdir(parents=True, exist_ok=True)
        return _compute(cfg, n_jobs(jobs), parts, [(name, source, np.asarray(starts, np.int64), True, True)], len(starts), threads)[name]


def run_features(
    cfg: Config, data_dir: Path, out_dir: Path, interim: Path, jobs: int = 0, scheduler: str | None = None, sequences: bool = True
) -> dict[str, Any]:
    """Write the feature folder ``out_dir`` (see the module docstring); returns the stage record.

    ``train.parquet``, ``test.parquet``, their sequences ``train_seq.npy`` and ``test_seq.npy``
    ((n, steps, channels) float32, rows in table order), with ``features.seq_overlap`` also
    ``train_seq_extra.npy`` and its rows ``train_seq_extra.parquet``, and ``features.json``.
    Chunks of segments run on ``jobs`` local processes, or on the Dask cluster at ``scheduler``
    (connected first, so an address that does not answer fails before any work). Unchanged inputs
    and configuration: nothing is computed. ``sequences`` False (the command line's choice when no
    model of blend.models reads them): tables only, and features.json says so; a later call that
    wants the sequences computes only them.
    """
    from labquake.cluster import joblib_backend

    with joblib_backend(scheduler, cfg.runtime.scheduler_timeout) as threads:
        return _build(cfg, Path(data_dir), Path(out_dir), Path(interim), jobs, scheduler, threads, sequences)


# Long by design: the stage's steps in order, each timed; it reads top to bottom.
def _build(
    cfg: Config, data_dir: Path, out_dir: Path, interim: Path, jobs: int, scheduler: str | None, threads: int, sequences: bool
) -> dict[str, Any]:
    import pandas as pd

    from labquake import data, targets
    from labquake.features.prefetch import Prefetch
    from labquake.features.sequences import SEQ_CHANNELS
    from labquake.util import Timer, atomic_path, npy_bytes, parquet_bytes, read_json, stage_record, write_bytes, write_json

    timer = Timer()
    workers = threads or n_jobs(jobs)
    with timer.step("cache"):
        test = data.load_test(data_dir, interim)

    # a train cache built now: local workers compute what they can meanwhile (features.prefetch)
    def plan_for(fingerprint: str) -> tuple[Path, bool] | None:
        return plan(cfg, out_dir, tables_key(cfg, fingerprint, test.fingerprint), sequences)

    with Prefetch(cfg, plan_for, test, 0 if threads else workers, sequences) as early:
        with timer.step("cache"):
            train = data.load_train(data_dir, interim, on_rows=early)
        with timer.step("prefetch"):
            prefetched = early.finish(train.n_rows)
    busy = ("cache", "prefetch", "compute") if prefetched else ("compute",)
    rows = SEGMENT_ROWS
    overlap = cfg.features.seq_overlap and sequences  # its extra windows are sequences only
    key = tables_key(cfg, train.fingerprint, test.fingerprint)
    planned = plan(cfg, out_dir, key, sequences)
    if planned is None:
        log.info(f"features: {out_dir} is up to date (key {key})")
        return read_json(out_dir / RECORD)
    parts, with_features = planned
    tables_done = not with_features

    with timer.step("targets"):
        meta = targets.segment_targets(train.ttf, cfg)
        extra = targets.overlap_segments(train.ttf, cfg) if overlap else None
    n_cycles = int(meta["cycle"].max()) + 1 if len(meta) else 0
    real = train.is_real_kaggle
    log.info(f"features: {data_dir / 'train.csv'} {'is' if real else 'is not'} Kaggle's real recording (by its first rows)")
    if n_cycles <= 1:
        log.warning(f"{data_dir / 'train.csv'}: no quake (time_to_failure never jumps up): one cycle")
    test_starts = np.arange(len(test.seg_ids), dtype=np.int64) * rows
    train_source = _cache_file(train.signal)
    tasks: list[Task] = [
        ("train", train_source, meta["start"].to_numpy(), with_features, sequences),
        ("test", _cache_file(test.signal), test_starts, with_features, sequences),
    ]
    if extra is not None:
        tasks.append(("train_extra", train_source, extra["start"].to_numpy(), False, True))  # sequences only
    where = f"Dask cluster {scheduler}, {threads} threads" if threads else f"{workers} jobs"
    n_extra = 0 if extra is None else len(extra)
    more = f", {n_extra} extra train windows (sequences)" if extra is not None else ""
    what = (
        "sequences only (the tables are up to date)"
        if tables_done
        else "features and sequences"
        if sequences
        else "features (no model reads sequences)"
    )
    log.info(f"features: {len(meta)} train segments in {n_cycles} cycles, {len(test_starts)} test segments{more}, {where}: {what}")
    with timer.step("compute"):
        values = _compute(cfg, workers, parts, tasks, len(meta) + len(test_starts) + n_extra, threads)
    if tables_done:
        tables = {w: (out_dir / TABLES[w]).read_bytes() for w in ("train", "test")}
        n_train, n_test = len(meta), len(test_starts)
    else:
        train_table = pd.concat([meta, pd.DataFrame(values["train"][0], columns=FEATURE_NAMES)], axis=1)
        test_table = pd.concat([pd.DataFrame({"seg_id": test.seg_ids}), pd.DataFrame(values["test"][0], columns=FEATURE_NAMES)], axis=1)
        tables = {"train": parquet_bytes(train_table), "test": parquet_bytes(test_table)}
        n_train, n_test = len(train_table), len(test_table)
    with atomic_path(out_dir) as tmp:
        # the folder is swapped whole: old tables or new ones, never a mix of the two
        tmp.mkdir()
        with timer.step("write"):
            # each file's checksum from the bytes written (features.json records them)
            checksums = {TABLES[w]: write_bytes(tmp / TABLES[w], b) for w, b in tables.items()}
            if sequences:
                for w in ("train", "test"):
                    checksums[SEQUENCES[w]] = write_bytes(tmp / SEQUENCES[w], npy_bytes(values[w][1]))
            if extra is not None:
                checksums[SEQUENCES["train_extra"]] = write_bytes(tmp / SEQUENCES["train_extra"], npy_bytes(values["train_extra"][1]))
                checksums[TABLES["train_extra"]] = write_bytes(tmp / TABLES["train_extra"], parquet_bytes(extra.reset_index(drop=True)))
        record = stage_record(
            "features",
            cfg.to_dict(),
            timer,
            key=key,
            n_rows=train.n_rows,
            real_train=real,
            n_train=n_train,
            n_test=n_test,
            n_train_extra=n_extra,
            sequences=sequences,  # computed (a later call that wants them computes only them)
            n_cycles=n_cycles,
            jobs=workers,
            scheduler=scheduler,
            seq_channels=list(SEQ_CHANNELS),
            seq_shape=list(seq_shape(cfg.features, rows)),
            data_dir=str(data_dir),
            checksums=checksums,
            prefetched=prefetched,  # segments computed while the train cache was built (features.prefetch)
            # over the time spent computing: the cache build's too when features were computed during it
            segments_per_s=round((n_train + n_test + n_extra) / max(sum(timer.timings[k] for k in busy), 1e-9), 2),
        )
        write_json(tmp / RECORD, record)
    shutil.rmtree(parts.parent, ignore_errors=True)
    seqs = f" and their sequences ({'x'.join(map(str, seq_shape(cfg.features, rows)))} each)" if sequences else ""
    log.info(f"features: wrote {out_dir}/train.parquet ({n_train} rows), test.parquet ({n_test} rows){seqs} in {timer.total():.1f} s")
    return record
