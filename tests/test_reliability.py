"""Interruption, failed reruns and odd-but-valid input, through the command line as a user meets them.

The reader's own validation errors are in test_data.py; these are the stage-level guarantees.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakes import cli, one_line_error, snapshot

from labquake.features import FEATURE_NAMES


def test_killed_feature_run_leaves_nothing_partial_and_resumes_identically(tiny_raw, tiny_features, tmp_path):
    out, interim = tmp_path / "features", tmp_path / "interim"
    parts = tmp_path / ".features.parts"
    env = {**os.environ, "LABQUAKE_FEATURE_CHUNK": "4"}
    args = ["features", "--data", tiny_raw, "--out", out, "--interim", interim, "--jobs", "1", "--preset", "fast"]
    proc = subprocess.Popen([sys.executable, "-m", "labquake", *map(str, args)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(parts.glob("*/*.npz"))) < 2:
        assert proc.poll() is None, "finished before it could be killed: make the chunks smaller"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # no table, not even a partial one
    finished = len(list(parts.glob("*/*.npz")))
    assert finished >= 2
    rerun = cli(*args, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming" in rerun.stderr
    for name in ("train.parquet", "test.parquet"):
        assert (out / name).read_bytes() == (tiny_features / name).read_bytes(), name


def test_failed_rerun_leaves_earlier_tables_untouched(tiny_raw, tiny_features, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(tiny_raw, raw)
    out = tmp_path / "features"
    shutil.copytree(tiny_features, out)
    before = snapshot(out)
    victim = sorted((raw / "test").iterdir())[0]
    victim.write_text("\n".join(victim.read_text().splitlines()[:-10]) + "\n")  # a truncated segment
    res = cli("features", "--data", raw, "--out", out, "--interim", tmp_path / "interim", "--preset", "fast")
    one_line_error(res, victim.name)
    assert snapshot(out) == before


def test_corrupt_feature_table_is_a_one_line_error_for_train(tiny_features, tmp_path):
    feats = tmp_path / "features"
    shutil.copytree(tiny_features, feats)
    (feats / "train.parquet").write_bytes((feats / "train.parquet").read_bytes()[:500])
    res = cli("train", "--features", feats, "--run", tmp_path / "run", "--preset", "fast")
    one_line_error(res, "train.parquet")
    assert not (tmp_path / "run" / "summary.json").exists()


def test_train_without_a_quake_runs_as_one_cycle_with_a_warning(real_dir, tmp_path):
    """Two segments of signal with time to failure falling throughout: valid, one cycle."""
    raw = tmp_path / "raw"
    (raw / "test").mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = 300_000
    x = rng.integers(-20, 30, n)
    ttf = 5.0 - np.arange(n) * 1.1e-9
    pd.DataFrame({"acoustic_data": x, "time_to_failure": ttf}).to_csv(raw / "train.csv", index=False, float_format="%.10f")
    shutil.copy(real_dir / "seg_00030f.csv", raw / "test" / "seg_00030f.csv")
    (raw / "sample_submission.csv").write_text("seg_id,time_to_failure\nseg_00030f,0\n")
    out = tmp_path / "features"
    res = cli("features", "--data", raw, "--out", out, "--interim", tmp_path / "interim", "--jobs", "1")
    assert res.returncode == 0, res.stderr
    assert "no quake" in res.stderr and "train.csv" in res.stderr
    table = pd.read_parquet(out / "train.parquet")
    assert table["cycle"].tolist() == [0, 0] and table["start"].tolist() == [0, 150_000]
    np.testing.assert_allclose(table["target"], ttf[[149_999, 299_999]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(table["tsf"], ttf[0] - ttf[[149_999, 299_999]], rtol=0, atol=1e-12)
    assert np.isfinite(table[FEATURE_NAMES].to_numpy()).all()


# --- every bad input of issue 7, through `labquake features` with good outputs already in place ------

SEG = "seg_00030f"


def _set_line(path: Path, line_no: int, text: str) -> None:
    lines = path.read_text().split("\n")
    lines[line_no - 1] = text
    path.write_text("\n".join(lines))


def _drop(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _segment_rows(raw: Path, n: int) -> None:
    seg = raw / "test" / f"{SEG}.csv"
    lines = seg.read_text().splitlines()
    seg.write_text("\n".join(lines[: n + 1] + lines[1 : 1 + max(0, n + 1 - len(lines))]) + "\n")


# (what is broken, how, the file the error must name, what it must say)
BAD_INPUTS = [
    ("no data folder", lambda raw: shutil.rmtree(raw), "", "data folder not found"),
    ("no train.csv", lambda raw: _drop(raw / "train.csv"), "train.csv", "not found"),
    ("no test folder", lambda raw: _drop(raw / "test"), "test", "not found"),
    ("no sample_submission.csv", lambda raw: _drop(raw / "sample_submission.csv"), "sample_submission.csv", "not found"),
    ("empty train.csv", lambda raw: (raw / "train.csv").write_text(""), "train.csv", "empty"),
    ("other header", lambda raw: _set_line(raw / "train.csv", 1, "signal,ttf"), "train.csv", "header"),
    ("non-numeric signal", lambda raw: _set_line(raw / "train.csv", 500, "abc,1.4690999"), "train.csv", "line 500"),
    ("empty signal", lambda raw: _set_line(raw / "train.csv", 501, ",1.4690999"), "train.csv", "line 501"),
    ("signal outside int16", lambda raw: _set_line(raw / "train.csv", 502, "40000,1.4690999"), "train.csv", "line 502"),
    ("non-finite time", lambda raw: _set_line(raw / "train.csv", 503, "4,nan"), "train.csv", "line 503"),
    ("negative time", lambda raw: _set_line(raw / "train.csv", 504, "4,-1.0"), "train.csv", "line 504"),
    ("wrong column count", lambda raw: _set_line(raw / "train.csv", 505, "4,1.4690999,7"), "train.csv", "line 505"),
    ("train shorter than a segment", lambda raw: _set_line(raw / "train.csv", 150_001, ""), "train.csv", "fewer than one segment"),
    ("short segment", lambda raw: _segment_rows(raw, 149_999), f"{SEG}.csv", "149,999 rows"),
    ("long segment", lambda raw: _segment_rows(raw, 150_001), f"{SEG}.csv", "150,001 rows"),
    (
        "id without a segment",
        lambda raw: (raw / "sample_submission.csv").write_text(f"seg_id,time_to_failure\n{SEG},0\nseg_abcdef,0\n"),
        "seg_abcdef",
        "",
    ),
    (
        "duplicate ids",
        lambda raw: (raw / "sample_submission.csv").write_text(f"seg_id,time_to_failure\n{SEG},0\n{SEG},0\n"),
        "sample_submission.csv",
        "duplicate",
    ),
]


@pytest.fixture(scope="module")
def good_state(real_dir, tmp_path_factory):
    """A valid small data folder (real samples: one train segment, one test segment), its outputs,
    and a pristine copy (mtimes kept, so the cache stays fresh) to restore it from."""
    base = tmp_path_factory.mktemp("good")
    raw = base / "pristine"
    (raw / "test").mkdir(parents=True)
    (raw / "train.csv").write_bytes((real_dir / "train_head.csv").read_bytes() + b"7,1.4688\n")
    shutil.copy(real_dir / f"{SEG}.csv", raw / "test" / f"{SEG}.csv")
    (raw / "sample_submission.csv").write_text(f"seg_id,time_to_failure\n{SEG},0\n")
    shutil.copytree(raw, base / "raw", copy_function=shutil.copy2)
    res = cli("features", "--data", base / "raw", "--out", base / "features", "--interim", base / "interim", "--jobs", "1")
    assert res.returncode == 0, res.stderr
    return base


@pytest.mark.parametrize("what,breaks,names,says", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_earlier_outputs_stay(good_state, what, breaks, names, says):
    raw = good_state / "raw"
    shutil.rmtree(raw, ignore_errors=True)
    shutil.copytree(good_state / "pristine", raw, copy_function=shutil.copy2)
    before = {name: snapshot(good_state / name) for name in ("features", "interim")}
    breaks(raw)
    res = cli("features", "--data", raw, "--out", good_state / "features", "--interim", good_state / "interim", "--jobs", "1")
    one_line_error(res, str(raw / names) if names in ("", "train.csv", "test", "sample_submission.csv") else names, says)
    assert {name: snapshot(good_state / name) for name in ("features", "interim")} == before
