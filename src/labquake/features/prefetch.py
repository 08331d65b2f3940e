"""Features computed while the train cache is still being built (``labquake features`` from the CSV).

Building the train cache keeps 2 cores only about 80% busy: its reading, writing and checksums run
in one thread, beside the parsing threads. So while it runs, local feature workers (at the lowest
priority: ``NICE``) take the test segments (their cache is built first) and every chunk of train
segments whose rows are already written, from the cache's temporary file; after it, the rest. Each
chunk goes into the part file the stage would write, so the stage then finds them done, by its
resume path, and an interrupted run resumes from them.

A worker opens the temporary by name and, if the build has renamed it meanwhile, the final name,
provided it is the same file (inode); a failed build's file is never read (``chunks.open_source``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, as_completed
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from labquake.config import SEGMENT_ROWS, Config
from labquake.features import chunks
from labquake.util import log, progress

# The workers run at the lowest priority, so that the build's threads never wait for them: they take
# only the time the build leaves idle. At Kaggle size on 2 cores the cache and the features took
# 66-72 s, against 69-78 s one after the other; at priority 0 the workers slowed the train cache's
# build from about 19 to 34 s and the whole took 77 s (nice 5 and 10: 69 and 74 s). They keep it to
# the end of the stage (a process cannot raise its priority again): on a busy machine, other work
# goes first.
NICE = 19
# one thread each (numpy's FFT and the kernels are single-threaded anyway)
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}


class Prefetch:
    """The train cache's ``on_rows`` (``data.cache.OnRows``): submits chunks of segments as their rows arrive.

    ``plan(fingerprint of train.csv)``: the stage's part folder and whether it computes the tables
    (``stage.plan``), or None when the output folder is up to date.
    ``workers`` < 2 or nothing to compute: it does nothing, and the
    stage computes everything afterwards as before. Use as a context manager: leaving it on an error
    drops the chunks not started and waits for the running ones (a second or so at Kaggle size).
    """

    def __init__(self, cfg: Config, plan: Callable[[str], tuple[Path, bool] | None], test: Any, workers: int, sequences: bool) -> None:
        self.cfg, self.plan_for, self.test, self.workers, self.sequences = cfg, plan, test, workers, sequences
        self.chunk = cfg.runtime.feature_chunk
        self.futures: list[tuple[Future, int]] = []  # (future, segments)
        self.pool: Any = None
        self.plan: tuple[Path, bool] | None = None
        self.source: tuple | None = None
        self.next_chunk = 0  # the next train chunk to submit
        self.started = False

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.pool is not None:
            if kind is not None:  # on an error: the chunks not started are dropped, the running ones finish
                for f, _ in self.futures:
                    f.cancel()
            self.pool.shutdown(wait=True)

    def __call__(self, fingerprint: str, tmp: Path, rows: int) -> None:
        if not self.started:
            self._start(fingerprint, tmp)
        if self.plan is None:
            return
        # a chunk is submitted once its last segment's rows are all written
        while (self.next_chunk + 1) * self.chunk * SEGMENT_ROWS <= rows:
            self._submit("train", self.source, self.next_chunk, self.next_chunk * self.chunk, (self.next_chunk + 1) * self.chunk)
            self.next_chunk += 1

    def _start(self, fingerprint: str, tmp: Path) -> None:
        from joblib.externals.loky import get_reusable_executor

        from labquake.data import TRAIN_SIGNAL

        self.started = True
        if self.workers < 2:
            return
        self.plan = self.plan_for(fingerprint)
        if self.plan is None:
            return
        self.source = (str(tmp), 0, str(tmp.parent / TRAIN_SIGNAL), os.stat(tmp).st_ino)
        self.pool = get_reusable_executor(
            max_workers=self.workers, env=ONE_THREAD, reuse=False, initializer=getattr(os, "nice", None), initargs=(NICE,)
        )
        test_source = chunks.cache_file(self.test.signal)
        n_test = len(self.test.seg_ids)
        for c, lo in enumerate(range(0, n_test, self.chunk)):  # the test first: its rows are all there
            self._submit("test", test_source, c, lo, min(lo + self.chunk, n_test))
        log.info(f"features: computing the test segments and the train rows already parsed while the train cache is built ({self.workers} jobs)")

    def _submit(self, name: str, source: tuple, c: int, lo: int, hi: int) -> None:
        parts, with_features = self.plan
        part = chunks.part_path(parts, name, c)
        starts = np.arange(lo, hi, dtype=np.int64) * SEGMENT_ROWS
        if chunks.load_part(part, (hi - lo, *chunks.part_shape(self.cfg.features, with_features, self.sequences))) is not None:
            return  # done by an interrupted run
        call = (self.cfg.features, source, starts, SEGMENT_ROWS, str(part), with_features, self.sequences)
        self.futures.append((self.pool.submit(chunks.chunk_features, *call), hi - lo))

    def finish(self, n_rows: int) -> int:
        """After the build (``n_rows`` train rows): the rest of the train chunks, then wait for every
        chunk; the number of segments computed here. A worker's error is raised here."""
        if self.plan is None:
            return 0
        n_seg = n_rows // SEGMENT_ROWS
        done = sum(n for f, n in self.futures if f.done())
        for c in range(self.next_chunk, -(-n_seg // self.chunk)):
            self._submit("train", self.source, c, c * self.chunk, min((c + 1) * self.chunk, n_seg))
        total = sum(n for _, n in self.futures)
        log.info(f"features: {done} of {total} segments done while the train cache was built")
        sizes = dict(self.futures)
        bar = progress(None, total=total, desc="features")
        bar.update(total - sum(n for f, n in self.futures if not f.done()))
        try:
            for f in as_completed([f for f, _ in self.futures if not f.done()]):
                bar.update(sizes[f])
        finally:
            bar.close()
        for f, _ in self.futures:
            f.result()  # a worker's exception, as raised there
        return total
