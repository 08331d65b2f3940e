"""Features computed while the train cache is built (features.prefetch): the same bytes, chunks
submitted as their rows arrive, a renamed or replaced temporary, and a build that fails half way."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from fakes import cli, one_line_error

from labquake import features
from labquake.config import SEGMENT_ROWS, load_config
from labquake.data import csv
from labquake.features import chunks, prefetch
from labquake.util import LabquakeError


def test_open_source_follows_the_rename_and_refuses_another_file(tmp_path):
    tmp, final = tmp_path / ".signal.tmp1", tmp_path / "signal"
    np.arange(10, dtype=np.int16).tofile(tmp)
    source = (str(tmp), 4, str(final), os.stat(tmp).st_ino)
    np.testing.assert_array_equal(chunks.open_source(source), np.arange(2, 10))
    os.replace(tmp, final)  # the build ended: the same file under its cache name
    np.testing.assert_array_equal(chunks.open_source(source), np.arange(2, 10))
    tmp2 = tmp_path / ".signal.tmp2"
    np.arange(10, dtype=np.int16).tofile(tmp2)
    source = (str(tmp2), 4, str(final), os.stat(tmp2).st_ino)
    tmp2.unlink()  # a build that failed: its temporary removed, the old cache still in place
    with pytest.raises(LabquakeError, match="the cache being built is gone"):
        chunks.open_source(source)


def test_features_during_the_build_are_the_same_bytes(tiny_raw, tiny_features, tmp_path, monkeypatch):
    monkeypatch.setattr(csv, "CHUNK_BYTES", 1 << 20)  # many chunks of train.csv: rows arrive in steps
    monkeypatch.setenv("LABQUAKE_FEATURE_CHUNK", "4")
    submitted = []  # train chunks submitted after each chunk of train.csv was written
    call = prefetch.Prefetch.__call__

    def spy(self, fingerprint, tmp, rows):
        call(self, fingerprint, tmp, rows)
        submitted.append((rows, self.next_chunk))

    monkeypatch.setattr(prefetch.Prefetch, "__call__", spy)
    out = tmp_path / "features"
    record = features.run_features(load_config("fast"), tiny_raw, out, tmp_path / "interim", jobs=2)
    for name in ("train.parquet", "test.parquet"):
        assert (out / name).read_bytes() == (tiny_features / name).read_bytes(), name
    assert record["prefetched"] == record["n_train"] + record["n_test"]  # all done by the early workers
    assert len(submitted) > 5
    for rows, n_chunks in submitted:  # every chunk whose rows were written, and no other
        assert n_chunks == rows // SEGMENT_ROWS // 4
    assert 0 < submitted[len(submitted) // 2][1] < submitted[-1][1]  # some were submitted before the build ended
    assert json.loads((tmp_path / "interim" / "train.json").read_text())["n_rows"] == submitted[-1][0]


def test_a_rerun_after_the_cache_is_built_computes_nothing_early(tiny_raw, tiny_features, tmp_path):
    out, interim = tmp_path / "features", tiny_features.parent / "interim"  # the fixture's cache, up to date
    record = features.run_features(load_config("fast"), tiny_raw, out, interim, jobs=2)
    assert record["prefetched"] == 0 and (out / "train.parquet").read_bytes() == (tiny_features / "train.parquet").read_bytes()


def test_a_bad_line_late_in_train_csv_stops_the_early_workers(tiny_raw, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(tiny_raw, raw)
    lines = (raw / "train.csv").read_bytes().split(b"\n")
    bad = len(lines) - 100
    lines[bad - 1] = b"12,oops"
    (raw / "train.csv").write_bytes(b"\n".join(lines))
    out, interim = tmp_path / "features", tmp_path / "interim"
    env = {**os.environ, "LABQUAKE_FEATURE_CHUNK": "4"}
    proc = cli("features", "--data", raw, "--out", out, "--interim", interim, "--jobs", "2", "--preset", "fast", env=env)
    assert proc.returncode == 2
    message = one_line_error(proc)
    assert f"train.csv: line {bad}" in message and "oops" in message
    assert not out.exists() and not (interim / "train.json").exists() and not (interim / "train_signal.i16").exists()
