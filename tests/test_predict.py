"""`labquake predict`: windows over a recording, the truth column, models and blend, MAE, resume, bad input.

Most tests use a stand-in for the run's saved models (``models.predict_saved`` monkeypatched: a
deterministic function of the features) and a short recording cut from the tiny train.csv, so they
exercise everything of predict but training; ``test_real_run`` predicts with the session's trained
``tiny_run``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labquake import data, metric, models, predict
from labquake.cli import main
from labquake.config import SEGMENT_ROWS, load_config
from labquake.features import FEATURE_NAMES
from labquake.features import stage as feature_stage
from labquake.models.folder import RunFolder
from labquake.util import LabquakeError

CFG = load_config("fast")
ROWS = 420_000  # the short recording: 2.8 windows
STEP = 100_000  # windows at 0, 100k, 200k (the next would end past 420k)
WEIGHTS = {"lgbm": 0.5, "nn": 0.5}


def stand_in(cfg, run_dir, table, sequences):
    """Deterministic 'models': each a function of the features (and sequences), never constant."""
    assert list(table.columns) == list(FEATURE_NAMES) and len(sequences) == len(table)
    x = table.to_numpy()
    return {"lgbm": 1.0 + np.abs(x[:, 0]) % 7, "nn": 0.05 + np.abs(x[:, 3]) % 5 + float(np.mean(sequences) * 0)}


@pytest.fixture()
def fake_models(monkeypatch):
    monkeypatch.setattr(models, "predict_saved", stand_in, raising=False)


def make_run(folder: Path, cfg=CFG, weights=WEIGHTS, finished: bool = True) -> Path:
    run = RunFolder(folder)
    folder.mkdir(parents=True)
    run.claim(cfg, "k1")
    if finished:
        run.write_summary({"blend_weights": weights, "models": list(weights), "model": {}})
    return folder


@pytest.fixture(scope="module")
def recording(tiny_raw, tmp_path_factory) -> Path:
    """The first ROWS rows of the tiny train.csv (a continuous recording with its truth)."""
    path = tmp_path_factory.mktemp("rec") / "recording.csv"
    with open(tiny_raw / "train.csv", "rb") as src, open(path, "wb") as dst:
        for _ in range(ROWS + 1):
            dst.write(src.readline())
    return path


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)  # pandas' default parser reads floats exactly (round trip)


def truth_of(path: Path) -> np.ndarray:
    return read(path)["time_to_failure"].to_numpy()


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (caches and parts too), with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_window_starts():
    assert predict.window_starts(420_000, 100_000).tolist() == [0, 100_000, 200_000]
    assert predict.window_starts(300_000, 150_000).tolist() == [0, 150_000]
    assert predict.window_starts(299_999, 150_000).tolist() == [0]
    assert predict.window_starts(149_999, 150_000).tolist() == []
    for bad in (0, -1):
        with pytest.raises(LabquakeError, match="--step"):
            predict.window_starts(1_000_000, bad)


def test_predict_rows_truth_models_blend_and_mae(fake_models, recording, tmp_path, capsys):
    run = make_run(tmp_path / "run")
    out = tmp_path / "out"
    record = predict.run_predict(CFG, run, recording, out, step=STEP, jobs=1)

    table = read(out / "predictions.csv")
    assert list(table.columns) == ["start_row", "end_row", "time_to_failure", "lgbm", "nn", "blend"]
    assert table["start_row"].tolist() == [0, 100_000, 200_000]
    assert (table["end_row"] - table["start_row"] == SEGMENT_ROWS).all()  # end exclusive
    truth = truth_of(recording)
    assert np.array_equal(table["time_to_failure"].to_numpy(), truth[table["end_row"] - 1])

    # the models are those of the stand-in on the stage's own features of each window
    rec = data.load_recording(recording, out / ".cache")
    assert rec.n_rows == ROWS
    feats, seqs = feature_stage.compute_windows(CFG, data.mapped_file(rec.signal), np.array([0, 100_000, 200_000]), tmp_path / "p", "w", jobs=1)
    expected = stand_in(CFG, run, pd.DataFrame(feats, columns=FEATURE_NAMES), seqs)
    for name in ("lgbm", "nn"):
        np.testing.assert_allclose(table[name], metric.clip(expected[name], CFG.blend.clip_min), rtol=1e-9)
    np.testing.assert_allclose(table["blend"], metric.weighted_geomean(expected, WEIGHTS, CFG.blend.clip_min), rtol=1e-9)

    # MAE: recorded, printed, and what predictions.csv gives
    saved = json.loads((out / "predict.json").read_text())
    assert saved["n_windows"] == 3 and saved["step"] == STEP and saved["stage"] == "predict" and saved["mae"] == record["mae"]
    for name in ("lgbm", "nn", "blend"):
        assert saved["mae"][name] == pytest.approx(np.mean(np.abs(table[name] - table["time_to_failure"])), rel=1e-9)
    printed = capsys.readouterr().out
    assert "blend" in printed and f"{saved['mae']['blend']:.4f}" in printed
    assert (out / "predictions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recording_without_truth(fake_models, recording, tmp_path, capsys):
    signal_only = tmp_path / "signal.csv"
    signal_only.write_text("acoustic_data\n" + "\n".join(pd.read_csv(recording)["acoustic_data"].astype(str)) + "\n")
    run = make_run(tmp_path / "run")
    record = predict.run_predict(CFG, run, signal_only, tmp_path / "out", step=STEP, jobs=1)
    table = read(tmp_path / "out" / "predictions.csv")
    assert list(table.columns) == ["start_row", "end_row", "lgbm", "nn", "blend"]
    assert record["mae"] is None and "MAE" not in capsys.readouterr().out
    # the same signal as raw int16 samples, mapped in place: the same predictions
    raw = tmp_path / "signal.i16"
    pd.read_csv(recording)["acoustic_data"].to_numpy(np.int16).tofile(raw)
    predict.run_predict(CFG, run, raw, tmp_path / "out_raw", step=STEP, jobs=1)
    pd.testing.assert_frame_equal(read(tmp_path / "out_raw" / "predictions.csv"), table)


def test_resume_reuses_finished_parts(fake_models, recording, tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    out = tmp_path / "out"
    cfg = load_config("fast", sets=["runtime.feature_chunk=1"])  # a part per window
    predict.run_predict(cfg, run, recording, out, step=STEP, jobs=1)
    first = (out / "predictions.csv").read_bytes()
    parts = sorted((out / ".parts").rglob(f"{predict.PARTS_NAME}_*"))
    assert len(parts) == 3
    parts[1].unlink()  # as if interrupted before the second window's part was written
    for name in predict.OUTPUTS:
        (out / name).unlink()

    computed = []
    real = feature_stage._chunk_features

    def counting(fc, source, starts, rows, part, *args, **kwargs):
        computed.append(list(starts))
        return real(fc, source, starts, rows, part, *args, **kwargs)

    monkeypatch.setattr(feature_stage, "_chunk_features", counting)
    predict.run_predict(cfg, run, recording, out, step=STEP, jobs=1)
    assert computed == [[100_000]]  # only the missing window
    assert (out / "predictions.csv").read_bytes() == first


def cli(*args: str) -> int:
    return main(["predict", "-q", "--jobs", "1", *args])


def test_bad_input_one_line_exit_2_outputs_untouched(fake_models, recording, tmp_path, capsys):
    run = make_run(tmp_path / "run")
    out = tmp_path / "out"
    assert cli("--run", str(run), "--recording", str(recording), "--out", str(out), "--step", str(STEP)) == 0
    capsys.readouterr()
    before = tree(out)
    assert {"predictions.csv", "predictions.png", "predict.json"} <= set(before)

    short = tmp_path / "short.csv"
    with open(recording, "rb") as src:
        short.write_bytes(b"".join(src.readline() for _ in range(SEGMENT_ROWS)))  # header + 149,999 rows
    garbled = tmp_path / "garbled.csv"
    lines = recording.read_bytes().split(b"\n")
    lines[4] = b"12,abc"
    garbled.write_bytes(b"\n".join(lines))
    other_features = make_run(tmp_path / "other", cfg=load_config("fast", sets=["features.n_mfcc=13"]))
    unfinished = make_run(tmp_path / "unfinished", finished=False)

    cases = {
        "fewer than one window": ("--run", str(run), "--recording", str(short)),
        "--step must be a positive": ("--run", str(run), "--recording", str(recording), "--step", "0"),
        "--step must be a positive number of rows, got -5": ("--run", str(run), "--recording", str(recording), "--step", "-5"),
        "not found": ("--run", str(run), "--recording", str(tmp_path / "missing.csv")),
        "line 5: time_to_failure 'abc' is not a number": ("--run", str(run), "--recording", str(garbled)),
        "other feature settings (features.n_mfcc: 13 in the run, 20 here)": ("--run", str(other_features), "--recording", str(recording)),
        "no finished training run": ("--run", str(unfinished), "--recording", str(recording)),
        "run folder not found": ("--run", str(tmp_path / "nowhere"), "--recording", str(recording)),
        "unknown recording format": ("--run", str(run), "--recording", str(run / "config.json")),
    }
    for expected, args in cases.items():
        assert cli(*args, "--out", str(out)) == 2, expected
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("labquake predict: error: ") and expected in err, (expected, err)
        assert tree(out) == before, expected


def test_real_run(tiny_raw, tiny_run, tmp_path, capsys):
    """The session's trained run (real saved models) over the whole tiny train recording."""
    out = tmp_path / "out"
    cfg = CFG
    record = predict.run_predict(cfg, tiny_run, tiny_raw / "train.csv", out, step=SEGMENT_ROWS, jobs=2)
    table = read(out / "predictions.csv")
    n = len(truth := truth_of(tiny_raw / "train.csv"))
    assert len(table) == n // SEGMENT_ROWS == record["n_windows"]
    assert table["start_row"].tolist() == list(range(0, n - SEGMENT_ROWS + 1, SEGMENT_ROWS))
    assert np.array_equal(table["time_to_failure"].to_numpy(), truth[table["end_row"] - 1])
    weights = json.loads((tiny_run / "summary.json").read_text())["blend_weights"]
    assert [c for c in table.columns if c not in ("start_row", "end_row", "time_to_failure")] == [*cfg.blend.models, "blend"]
    np.testing.assert_allclose(table["blend"], metric.weighted_geomean({m: table[m] for m in weights}, weights, cfg.blend.clip_min), rtol=1e-9)
    for name in [*cfg.blend.models, "blend"]:
        assert record["mae"][name] == pytest.approx(np.mean(np.abs(table[name] - table["time_to_failure"])), rel=1e-9)
    assert "blend" in capsys.readouterr().out


def test_recording_readers_refuse_bad_files(tmp_path):
    cache = tmp_path / "out" / ".cache"
    odd = tmp_path / "odd.i16"
    odd.write_bytes(b"\x00" * (2 * SEGMENT_ROWS + 1))
    short = tmp_path / "short.i16"
    short.write_bytes(b"\x00" * (2 * SEGMENT_ROWS - 2))
    header = tmp_path / "header.csv"
    header.write_text("acoustic_data,ttf\n1,2\n")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    cases = {
        odd: "not a whole number of int16 samples",
        short: "149,999 samples, fewer than one window",
        header: "line 1: header is 'acoustic_data,ttf', expected 'acoustic_data,time_to_failure' or 'acoustic_data'",
        empty: "empty file",
        tmp_path / "x.wav": "not found",
        tmp_path: "not a file",
    }
    for path, expected in cases.items():
        with pytest.raises(LabquakeError) as info:
            data.load_recording(path, cache)
        assert expected in str(info.value) and "\n" not in str(info.value)
    assert not cache.exists()  # nothing left behind
    (tmp_path / "ok.wav").write_bytes(b"")
    with pytest.raises(LabquakeError, match=r"unknown recording format '.wav'; known: .csv \(kaggle-csv\), .i16 \(int16\)"):
        data.load_recording(tmp_path / "ok.wav", cache)
