"""Dask: the features stage on a local ``distributed`` cluster gives the local run's bytes; faults; lazy import; sequences."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labquake import cluster, features
from labquake.config import SEGMENT_ROWS, load_config
from labquake.features import stage
from labquake.features.folder import FeatureFolder
from labquake.util import LabquakeError

OUTPUTS = ("train.parquet", "test.parquet", "train_seq.npy", "test_seq.npy")
DEAD = "tcp://127.0.0.1:1"  # nothing listens on port 1


@pytest.fixture(scope="module")
def dask_cluster():
    """Two worker processes of one thread on the loopback, for the whole module."""
    distributed = pytest.importorskip("distributed")
    import dask

    # A task may kill its worker once and be retried; the second time, Dask gives up on it (KilledWorker).
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as lc,
    ):
        yield lc


def _interim(tiny_raw: Path) -> Path:
    return tiny_raw.parent / "interim"


# Fault injection. These run on the Dask workers, which import this module by name (the spawned
# worker processes inherit the test process's sys.path) and call the real chunk function from there.
_REAL_CHUNK = stage._chunk_features


def _dies_once(fc, source, starts, rows, part, with_features=True, with_sequences=True):
    """The second train chunk kills its worker process the first time (a crash mid-run), then works.

    Its mark is left beside the output folder (parts: OUT/.features.parts/KEY/NAME.npz).
    """
    marker = Path(part).parents[2] / "killed_a_worker"
    if Path(part).name == "train_00001.npz" and not marker.exists():
        marker.touch()
        os._exit(1)
    return _REAL_CHUNK(fc, source, starts, rows, part, with_features, with_sequences)


def _always_dies(fc, source, starts, rows, part, with_features=True, with_sequences=True):
    """The first test chunk kills every worker that runs it."""
    if Path(part).name == "test_00000.npz":
        os._exit(1)
    return _REAL_CHUNK(fc, source, starts, rows, part, with_features, with_sequences)


def _loses_part(fc, source, starts, rows, part, with_features=True, with_sequences=True):
    """A worker whose file system the client does not see: the part is written where the client cannot read it."""
    _REAL_CHUNK(fc, source, starts, rows, part, with_features, with_sequences)
    os.remove(part)
    return part


# --- start-up and connection ---------------------------------------------------------------------


def test_the_command_line_starts_without_dask():
    code = (
        "import sys\n"
        "from labquake import cli, cluster\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "with cluster.joblib_backend(None) as threads:\n    assert threads == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_a_scheduler_that_does_not_answer_is_one_line():
    with pytest.raises(LabquakeError, match="no Dask scheduler answers") as err:
        with cluster.joblib_backend(DEAD, timeout=1):
            pytest.fail("entered")
    assert DEAD in str(err.value) and "\n" not in str(err.value)


def test_cli_with_a_dead_scheduler_exits_2_and_leaves_outputs(tiny_raw, tmp_path, monkeypatch, capsys):
    from labquake import cli

    out = tmp_path / "features"
    out.mkdir()
    (out / "train.parquet").write_bytes(b"old")
    monkeypatch.setenv(cluster.TIMEOUT_ENV, "1")
    argv = ["features", "--data", str(tiny_raw), "--out", str(out), "--interim", str(tmp_path / "interim"), "--preset", "fast"]
    assert cli.main([*argv, "--scheduler", DEAD]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("labquake features: error: --scheduler tcp://127.0.0.1:1: no Dask scheduler answers") and "\n" not in err
    monkeypatch.setenv(cluster.SCHEDULER_ENV, DEAD)  # the environment variable instead of the flag
    assert cli.main(argv) == 2
    assert [p.name for p in out.iterdir()] == ["train.parquet"] and (out / "train.parquet").read_bytes() == b"old"
    assert not (tmp_path / "interim").exists()  # refused before any work
    with pytest.raises(LabquakeError, match="no Dask scheduler answers"):  # predict's windows likewise, before their parts folder
        stage.compute_windows(load_config("fast"), ("unused.i16", 0), np.arange(2), tmp_path / "parts", "w", scheduler=DEAD)
    assert not (tmp_path / "parts").exists()


def test_joblib_backend_runs_parallel_on_the_cluster_and_nests(dask_cluster):
    from joblib import Parallel, delayed

    address = dask_cluster.scheduler_address
    with cluster.joblib_backend(address) as threads:
        assert threads == 2
        pids = Parallel(n_jobs=-1, batch_size=1)(delayed(os.getpid)() for _ in range(8))
        with cluster.joblib_backend(address) as inner:  # reuses the open client
            assert inner == 2
    assert os.getpid() not in pids and len(set(pids)) <= 2


# --- the features stage on the cluster -----------------------------------------------------------


def test_cluster_tables_are_byte_identical_to_a_local_run(dask_cluster, tiny_raw, tiny_features, tmp_path, monkeypatch):
    monkeypatch.setenv("LABQUAKE_FEATURE_CHUNK", "8")  # several tasks
    out = tmp_path / "features"
    record = features.run_features(load_config("fast"), tiny_raw, out, _interim(tiny_raw), scheduler=dask_cluster.scheduler_address)
    assert record["scheduler"] == dask_cluster.scheduler_address and record["jobs"] == 2
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (tiny_features / name).read_bytes(), name
    assert not (tmp_path / ".features.parts").exists()


def test_a_worker_killed_mid_run_is_retried_and_the_output_is_identical(dask_cluster, tiny_raw, tiny_features, tmp_path, monkeypatch):
    monkeypatch.setenv("LABQUAKE_FEATURE_CHUNK", "8")
    monkeypatch.setattr(stage, "_chunk_features", _dies_once)
    out = tmp_path / "features"
    features.run_features(load_config("fast"), tiny_raw, out, _interim(tiny_raw), scheduler=dask_cluster.scheduler_address)
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (tiny_features / name).read_bytes(), name
    assert (tmp_path / "killed_a_worker").exists()  # a worker did die
    dask_cluster.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker: the cluster is whole for the next test


def test_a_chunk_that_keeps_killing_workers_stops_clearly_and_a_rerun_resumes(dask_cluster, tiny_raw, tiny_features, tmp_path, monkeypatch):
    monkeypatch.setenv("LABQUAKE_FEATURE_CHUNK", "8")
    monkeypatch.setattr(stage, "_chunk_features", _always_dies)
    out = tmp_path / "features"
    with pytest.raises(LabquakeError, match=r"the Dask cluster failed during the features \(KilledWorker.*rerun to resume") as err:
        features.run_features(load_config("fast"), tiny_raw, out, _interim(tiny_raw), scheduler=dask_cluster.scheduler_address)
    assert "\n" not in str(err.value) and not out.exists()
    kept = list((tmp_path / ".features.parts").glob("*/*.npz"))
    calls = []
    monkeypatch.setattr(stage, "_chunk_features", lambda *a: calls.append(a) or _REAL_CHUNK(*a))
    features.run_features(load_config("fast"), tiny_raw, out, _interim(tiny_raw), jobs=1)  # resumed here, without the cluster
    n_chunks = -(-len(pd.read_parquet(out / "train.parquet")) // 8) + -(-len(pd.read_parquet(out / "test.parquet")) // 8)
    assert len(calls) == n_chunks - len(kept)
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (tiny_features / name).read_bytes(), name
    dask_cluster.wait_for_workers(2, timeout=60)


def test_a_part_the_client_cannot_read_names_the_shared_filesystem(dask_cluster, tiny_raw, tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "_chunk_features", _loses_part)
    out = tmp_path / "features"
    with pytest.raises(LabquakeError, match="filesystem every worker and this machine share") as err:
        features.run_features(load_config("fast"), tiny_raw, out, _interim(tiny_raw), scheduler=dask_cluster.scheduler_address)
    assert "\n" not in str(err.value) and not out.exists()


def test_windows_on_the_cluster_equal_local_ones(dask_cluster, tiny_raw, tmp_path):
    from labquake import data

    cfg = load_config("fast")
    source = stage._cache_file(data.load_train(tiny_raw, _interim(tiny_raw)).signal)
    starts = np.array([0, 75_000, 1_000_001, 3 * SEGMENT_ROWS], np.int64)  # any starts, overlapping
    local = stage.compute_windows(cfg, source, starts, tmp_path / "local", "w", jobs=1)
    remote = stage.compute_windows(cfg, source, starts, tmp_path / "remote", "w", scheduler=dask_cluster.scheduler_address)
    for a, b in zip(local, remote):
        assert a.tobytes() == b.tobytes() and a.dtype == b.dtype
    assert local[0].shape == (4, len(features.FEATURE_NAMES)) and local[1].shape == (4, *stage.seq_shape(cfg.features))


# --- sequences -----------------------------------------------------------------------------------


def test_sequences_are_the_segments_sequences_in_table_order(tiny_raw, tiny_features):
    from labquake import data
    from labquake.features.sequences import SEQ_CHANNELS, segment_sequence

    fc = load_config("fast").features
    train = pd.read_parquet(tiny_features / "train.parquet")
    seqs = FeatureFolder(tiny_features).sequences("train")
    steps = SEGMENT_ROWS // fc.seq_window
    assert seqs.shape == (len(train), steps, len(SEQ_CHANNELS)) and seqs.dtype == np.float32
    assert FeatureFolder(tiny_features).sequences("test").shape == (len(pd.read_parquet(tiny_features / "test.parquet")), steps, len(SEQ_CHANNELS))
    signal = data.load_train(tiny_raw, _interim(tiny_raw)).signal
    for i in (0, len(train) // 2, len(train) - 1):
        s = int(train["start"].iloc[i])
        np.testing.assert_array_equal(seqs[i], segment_sequence(np.asarray(signal[s : s + SEGMENT_ROWS]), fc))
    meta = json.loads((tiny_features / "features.json").read_text())
    assert meta["seq_channels"] == list(SEQ_CHANNELS) and meta["seq_shape"] == [steps, len(SEQ_CHANNELS)]


def test_missing_sequences_name_the_file_and_the_command(tiny_features):
    with pytest.raises(LabquakeError, match=r"train_seq_extra\.npy: no sequences here: run `labquake features`"):
        FeatureFolder(tiny_features).sequences("train_extra")


def test_overlap_windows_get_sequences_of_their_own(tiny_raw, tiny_features, tmp_path):
    from labquake import data, targets
    from labquake.features.sequences import segment_sequence

    if not hasattr(targets, "overlap_segments"):
        pytest.skip("targets.overlap_segments is not there yet")
    cfg = load_config("fast", None, ["features.seq_overlap=true"])
    out = tmp_path / "features"
    features.run_features(cfg, tiny_raw, out, _interim(tiny_raw), jobs=1)
    extra = pd.read_parquet(out / "train_seq_extra.parquet")
    seqs = FeatureFolder(out).sequences("train_extra")
    assert len(extra) == len(seqs) > 0 and list(extra.columns) == ["start", "cycle", "target", "tsf", "binary"]
    signal = data.load_train(tiny_raw, _interim(tiny_raw)).signal
    for i in (0, len(extra) - 1):
        s = int(extra["start"].iloc[i])
        np.testing.assert_array_equal(seqs[i], segment_sequence(np.asarray(signal[s : s + SEGMENT_ROWS]), cfg.features))
    for name in OUTPUTS:  # the segments' tables and sequences do not change
        assert (out / name).read_bytes() == (tiny_features / name).read_bytes(), name
    assert json.loads((out / "features.json").read_text())["n_train_extra"] == len(extra)
