"""Nothing corrupt is used silently: checksums recorded while writing, checked before use, `verify`,
and a full disk, through the command line as a user meets them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from fakes import cli, one_line_error, snapshot

from labquake.models.folder import RunFolder

ROWS = 300_000  # the recording predict reads: the first rows of the tiny train.csv


def damage(path: Path, how: str) -> None:
    """Truncate a file, or flip bytes inside it keeping its size and time stamp."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: min(len(data) // 2, 2000)]))
        return
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(b ^ 0x5A for b in data[mid : mid + 64])
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture(scope="module")
def recording(tiny_raw, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "recording.csv"
    with open(tiny_raw / "train.csv", "rb") as src, open(path, "wb") as dst:
        for _ in range(ROWS + 1):
            dst.write(src.readline())
    return path


@pytest.fixture(scope="module")
def predicted(tiny_run, recording, tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the tiny run and a finished `predict` of it (the earlier outputs a failure must keep)."""
    base = tmp_path_factory.mktemp("predicted")
    run = base / "run"
    shutil.copytree(tiny_run, run)
    out = base / "out"
    assert cli("predict", "--run", run, "--recording", recording, "--out", out, "--fast", "--jobs", "1", "-q").returncode == 0
    return run, out


@pytest.mark.parametrize(
    "victim,how", [("lgbm/draw00/fold0.txt", "truncate"), ("lgbm/draw01/fold2.txt", "alter"), ("nn/draw00/fold1.weights.h5", "truncate")]
)
def test_a_damaged_model_is_one_line_and_nothing_is_overwritten(predicted, recording, tmp_path, victim, how):
    run, out = predicted
    bad = tmp_path / "run"
    shutil.copytree(run, bad)
    damage(bad / victim, how)
    before = snapshot(out)
    res = cli("predict", "--run", bad, "--recording", recording, "--out", out, "--fast", "--jobs", "1", "--step", "100000")
    one_line_error(res, victim.split("/")[-1], "does not match its checksum", "rerun `labquake train`")
    assert snapshot(out) == before
    verify = cli("verify", bad)
    assert verify.returncode == 2 and victim.split("/")[-1] in verify.stdout and len(verify.stdout.strip().splitlines()) == 1


def test_verify_lists_every_bad_file_and_passes_an_intact_folder(predicted, tiny_features, tmp_path):
    run, _ = predicted
    ok = cli("verify", run)
    assert ok.returncode == 0 and "all intact" in ok.stdout, ok.stderr
    assert cli("verify", tiny_features).returncode == 0
    bad = tmp_path / "run"
    shutil.copytree(run, bad)
    damage(bad / "lgbm" / "draw00" / "fold0.txt", "alter")
    damage(bad / "oof.parquet", "alter")
    (bad / "nn" / "draw01" / "result.npz").unlink()
    res = cli("verify", bad)
    assert res.returncode == 2
    listed = res.stdout.strip().splitlines()
    assert len(listed) == 3 and {"fold0.txt", "oof.parquet", "result.npz"} == {
        n for n in ("fold0.txt", "oof.parquet", "result.npz") if any(n in x for x in listed)
    }
    assert "3 bad file(s) in this run folder" in one_line_error(res)


def test_submit_and_report_check_the_tables_they_read(tiny_run, tiny_raw, tmp_path):
    bad = tmp_path / "run"
    shutil.copytree(tiny_run, bad)
    damage(bad / "test.parquet", "alter")
    one_line_error(
        cli("submit", "--run", bad, "--data", tiny_raw, "--out", tmp_path / "subs", "--fast"), "test.parquet", "does not match its checksum"
    )
    assert not (tmp_path / "subs").exists()
    one_line_error(cli("report", "--run", bad, "--fast"), "test.parquet", "does not match its checksum")


def test_an_altered_feature_table_is_refused_by_train(tiny_features, tmp_path):
    feats = tmp_path / "features"
    shutil.copytree(tiny_features, feats)
    damage(feats / "train.parquet", "alter")
    before = snapshot(feats)
    res = cli("train", "--features", feats, "--run", tmp_path / "run", "--fast")
    one_line_error(res, "train.parquet", "does not match its checksum", "rerun `labquake features`")
    assert snapshot(feats) == before and not (tmp_path / "run").exists()
    assert "train.parquet" in cli("verify", feats).stdout


def test_an_altered_cache_block_is_rebuilt_by_features_and_said(tiny_raw, tiny_features, tmp_path):
    interim, out = tmp_path / "interim", tmp_path / "features"
    args = ["features", "--data", tiny_raw, "--interim", interim, "--jobs", "1", "--fast"]
    assert cli(*args, "--out", out).returncode == 0
    assert cli("verify", interim).returncode == 0
    damage(interim / "train_signal.i16", "alter")  # same size, same time stamp
    assert "train_signal.i16" in cli("verify", interim).stdout
    shutil.rmtree(out)
    res = cli(*args, "--out", out)
    assert res.returncode == 0, res.stderr
    assert "train_signal.i16 does not match its checksum" in res.stderr  # rebuilt, and said so
    for name in ("train.parquet", "test.parquet"):
        assert (out / name).read_bytes() == (tiny_features / name).read_bytes()  # from the rebuilt cache
    assert cli("verify", interim).returncode == 0


def test_an_older_run_without_checksums_is_verified_by_loading(predicted, recording, tmp_path):
    run, _ = predicted
    old = tmp_path / "run"
    shutil.copytree(run, old)
    summary = json.loads((old / "summary.json").read_text())
    del summary["checksums"]
    RunFolder(old).write_summary(summary)
    for manifest in old.rglob("checksums.json"):
        manifest.unlink()
    ok = cli("verify", old, "-v")
    assert ok.returncode == 0 and ok.stderr.count("written before labquake recorded checksums") == 1, ok.stderr
    damage(old / "lgbm" / "draw00" / "fold0.txt", "truncate")
    res = cli("predict", "--run", old, "--recording", recording, "--out", tmp_path / "out", "--fast", "--jobs", "1")
    one_line_error(res, "fold0.txt", "does not load")


# ---------------------------------------------------------------------------------------------
# A full disk: RLIMIT_FSIZE in the child process


def test_a_full_disk_in_features_is_one_line_and_keeps_the_old_tables(tiny_raw, tiny_features, tmp_path):
    interim, out = tmp_path / "interim", tmp_path / "features"
    shutil.copytree(tiny_features, out)
    assert cli("features", "--data", tiny_raw, "--interim", interim, "--out", tmp_path / "first", "--fast", "--jobs", "1").returncode == 0
    before = snapshot(out)
    res = cli(
        "features", "--data", tiny_raw, "--interim", interim, "--out", out, "--fast", "--jobs", "1", "--set", "features.noise_seed=7", limit=20_000
    )
    one_line_error(res, "could not be written", "free some space")
    assert snapshot(out) == before


def test_a_full_disk_in_train_is_one_line_and_keeps_earlier_outputs(tiny_features, tiny_run, tmp_path):
    feats, run = tmp_path / "features", tmp_path / "run"
    shutil.copytree(tiny_features, feats)
    shutil.copytree(tiny_run, run)
    before = snapshot(feats), snapshot(run)
    res = cli("train", "--features", feats, "--run", tmp_path / "new", "--fast", "--set", "nn.runs=1", limit=50_000)
    one_line_error(res, "could not be written", "free some space")
    assert (snapshot(feats), snapshot(run)) == before
    assert not (tmp_path / "new" / "summary.json").exists()


def test_a_full_disk_in_predict_is_one_line_and_keeps_the_old_predictions(predicted, recording):
    run, out = predicted
    before = snapshot(out)
    res = cli("predict", "--run", run, "--recording", recording, "--out", out, "--fast", "--jobs", "1", "--step", "50000", limit=20_000)
    one_line_error(res, "could not be written", "free some space")
    assert {k: v for k, v in snapshot(out).items() if not k.startswith(".")} == {k: v for k, v in before.items() if not k.startswith(".")}
