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

from labquake.features import FEATURE_NAMES


def cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "labquake", *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(out: subprocess.CompletedProcess, *needles: str) -> None:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if "error:" in line]
    assert len(lines) == 1, out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_killed_feature_run_leaves_nothing_partial_and_resumes_identically(tiny_raw, tiny_features, tmp_path):
    out, interim = tmp_path / "features", tmp_path / "interim"
    parts = tmp_path / ".features.parts"
    env = {**os.environ, "LABQUAKE_FEATURE_CHUNK": "4"}
    args = ["features", "--data", tiny_raw, "--out", out, "--interim", interim, "--jobs", "1", "--preset", "fast"]
    proc = subprocess.Popen([sys.executable, "-m", "labquake", *map(str, args)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(parts.glob("*/*.npy"))) < 2:
        assert proc.poll() is None, "finished before it could be killed: make the chunks smaller"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # no table, not even a partial one
    finished = len(list(parts.glob("*/*.npy")))
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
