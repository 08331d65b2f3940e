"""Blend maths, submission files (written and read), scoring, and a tiny end-to-end train + submit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labquake import blend, metric
from labquake.config import load_config
from labquake.models import folder
from labquake.models.folder import RunFolder
from labquake.util import LabquakeError, write_parquet

CFG = load_config("fast")


def test_clip_then_geometric_mean_on_known_numbers():
    lgbm = np.array([4.0, -1.0, 0.05, 9.0, 0.1])
    nn = np.array([1.0, 2.0, 3.0, 0.0, 0.1])
    assert np.array_equal(metric.clip(lgbm, 0.1), [4.0, 0.1, 0.1, 9.0, 0.1])  # below only
    np.testing.assert_allclose(metric.geomean(lgbm, nn, 0.1), [2.0, np.sqrt(0.2), np.sqrt(0.3), np.sqrt(0.9), 0.1])
    preds = metric.predictions({"lgbm": lgbm, "nn": nn}, {"lgbm": 0.5, "nn": 0.5}, 0.1)
    assert list(preds) == ["geomean", "lgbm", "nn"] and preds["nn"].min() == 0.1
    assert np.array_equal(preds["geomean"], metric.geomean(lgbm, nn, 0.1))  # the recipe's pair: sqrt(lgbm * nn), bit for bit
    assert metric.mae([1.0, 2.0, 4.0], [2.0, 2.0, 1.0]) == pytest.approx(4 / 3)


def test_weighted_geometric_mean_on_known_numbers():
    p = {"lgbm": np.array([8.0, 1.0]), "nn": np.array([1.0, 27.0]), "seq": np.array([1.0, 1.0])}
    third = {m: 1 / 3 for m in p}
    np.testing.assert_allclose(metric.weighted_geomean(p, third, 0.1), [2.0, 3.0])  # cube roots of 8 and 27
    np.testing.assert_allclose(metric.weighted_geomean(p, {"lgbm": 0.25, "nn": 0.75}, 0.1), [8**0.25, 27**0.75])
    assert np.array_equal(metric.weighted_geomean(p, {"nn": 1.0}, 0.1), p["nn"])  # one model: itself, clipped


def test_fitted_weights_favour_the_better_model_and_never_lose_to_equal_weights():
    rng = np.random.default_rng(0)
    y = rng.uniform(0.5, 12, 400)
    preds = {"lgbm": y * np.exp(rng.normal(0, 0.05, 400)), "nn": y * np.exp(rng.normal(0, 0.6, 400))}
    w = metric.fit_weights(preds, y, 0.1)
    assert set(w) == {"lgbm", "nn"} and sum(w.values()) == pytest.approx(1.0) and w["lgbm"] > 0.8
    fitted = metric.mae(y, metric.weighted_geomean(preds, w, 0.1))
    assert fitted < metric.mae(y, metric.weighted_geomean(preds, {"lgbm": 0.5, "nn": 0.5}, 0.1))
    assert metric.fit_weights(preds, y, 0.1) == w  # deterministic


def make_run(tmp_path: Path, n_test: int = 6, truth: bool = True) -> tuple[Path, Path]:
    """A finished run folder and a data folder, written by hand (no training)."""
    run, data = RunFolder(tmp_path / "run"), tmp_path / "data"
    run.path.mkdir()
    data.mkdir()
    y = np.array([1.0, 5.0, 9.0, 0.2])
    write_parquet(run.oof_path, pd.DataFrame({"target": y, "fold": [0, 1, 2, 0], "lgbm": [1.5, 4.0, 9.0, -0.3], "nn": [1.0, 6.0, 8.0, 0.05]}))
    ids = [f"seg_{i:06x}" for i in range(n_test)]
    write_parquet(run.test_path, pd.DataFrame({"seg_id": ids, "lgbm": np.arange(n_test) + 1.0, "nn": 4.0 * (np.arange(n_test) + 1.0)}))
    run.claim(CFG, "k1")
    run.write_summary(summary(models=["lgbm", "nn"], blend_weights={"lgbm": 0.5, "nn": 0.5}))
    order = ids[::-1]  # the sample's order, not the run's, decides the rows
    pd.DataFrame({"seg_id": order, "time_to_failure": 0}).to_csv(data / "sample_submission.csv", index=False)
    if truth:
        pd.DataFrame({"seg_id": ids, "time_to_failure": 2.0 * (np.arange(n_test) + 1.0)}).to_csv(data / "test_truth.csv", index=False)
    return run.path, data


def summary(**facts) -> dict:
    """A summary.json as train writes it, with only what these tests need."""
    return {"baseline_median_mae": 3.0, "oof_mae": {}, "model": {}, **facts}


def test_submit_writes_three_checked_files_and_scores(tmp_path, capsys):
    run, data = make_run(tmp_path)
    record = blend.run_submit(CFG, run, data, tmp_path / "subs")
    sub = pd.read_csv(tmp_path / "subs" / "submission_geomean.csv")
    assert list(sub.columns) == ["seg_id", "time_to_failure"]
    assert list(sub["seg_id"]) == list(pd.read_csv(data / "sample_submission.csv")["seg_id"])
    k = np.arange(6, 0, -1.0)  # seg_000005 first: lgbm k, nn 4k
    np.testing.assert_allclose(sub["time_to_failure"], 2.0 * k)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "subs" / "submission_lgbm.csv")["time_to_failure"], k)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "subs" / "submission_nn.csv")["time_to_failure"], 4.0 * k)
    assert sorted(p.name for p in (tmp_path / "subs").iterdir()) == ["submission_geomean.csv", "submission_lgbm.csv", "submission_nn.csv"]
    # The blend on the OOF predictions too: clipped at 0.1, then the geometric mean.
    y = np.array([1.0, 5.0, 9.0, 0.2])
    oof_blend = np.sqrt(np.array([1.5, 4.0, 9.0, 0.1]) * np.array([1.0, 6.0, 8.0, 0.1]))
    saved = json.loads((run / "blend.json").read_text())
    assert saved["oof_mae"]["geomean"] == pytest.approx(np.abs(y - oof_blend).mean())
    assert saved["oof_mae"]["lgbm"] == pytest.approx(np.abs(y - [1.5, 4.0, 9.0, 0.1]).mean())
    # truth 2, 4, ..., 12; the median of the training targets 1, 5, 9, 0.2 is 3
    baseline = np.abs(2.0 * (np.arange(6) + 1.0) - 3.0).mean()
    assert saved["test_mae"] == {"geomean": 0.0, "lgbm": pytest.approx(3.5), "nn": pytest.approx(7.0), "median_baseline": pytest.approx(baseline)}
    assert saved["stage"] == "blend" and saved["truth"].endswith("test_truth.csv") and record["oof_mae"] == saved["oof_mae"]
    out = capsys.readouterr().out
    assert "OOF MAE" in out and "test MAE" in out and "blend (lgbm+nn)" in out and "median baseline" in out


def test_network_note_says_what_the_rejections_did():
    ok = {"runs": 8, "accepted": 8, "draws": 9, "seeds": list(range(8)), "fallback": None}

    def nn(**changed) -> dict:
        return summary(models=["lgbm", "nn"], model={"lgbm": {"seeds": [0]}, "nn": {**ok, **changed}})

    assert folder.rejection_note(nn(), "nn") is None and folder.rejection_note({}, "nn") is None  # a run of an older version
    assert folder.rejection_note(nn(accepted=5, draws=16), "nn") == (
        "nn: only 5 of 8 runs accepted after 16 draws; the blend uses those (nn.max_redraws allows more draws)"
    )
    dropped = folder.rejection_note(nn(accepted=0, draws=16, fallback="drop"), "nn")
    assert dropped.startswith("nn: all 16 draws rejected") and "the blend is lgbm," in dropped and "best 8" in dropped
    three = nn()
    three["models"].append("seq")
    three["model"]["seq"] = {"runs": 3, "accepted": 0, "draws": 6, "seeds": [0, 1, 2], "fallback": "drop"}
    assert folder.rejection_notes(three) == [
        "seq: all 6 draws rejected (seq/runs.json says why); seq.on_reject=drop: the blend is lgbm+nn, the seq column holds the best 3 for inspection"
    ]
    assert "uses the best 8 anyway" in folder.rejection_note(nn(accepted=0, draws=16, fallback="best"), "nn")
    # a summary.json of an older labquake, flat (NAME_KEY), reads the same
    flat = {"models": ["lgbm", "nn"], "nn_runs": 8, "nn_accepted": 5, "nn_draws": 16, "nn_seeds": [0], "nn_fallback": None}
    assert folder.nested(flat)["model"]["nn"] == {"seeds": [0], "runs": 8, "accepted": 5, "draws": 16, "fallback": None}
    assert folder.rejection_note(flat, "nn") == folder.rejection_note(nn(accepted=5, draws=16), "nn")


def test_submit_blends_lightgbm_alone_when_the_network_was_dropped(tmp_path, capsys):
    run, data = make_run(tmp_path)
    nn = {"fallback": "drop", "runs": 2, "accepted": 0, "draws": 4, "seeds": [1, 3]}
    # as train records it when the network was dropped
    RunFolder(run).write_summary(summary(models=["lgbm", "nn"], blend_weights={"lgbm": 1.0}, model={"lgbm": {"seeds": [0]}, "nn": nn}))
    record = blend.run_submit(CFG, run, data, tmp_path / "subs")
    sub = pd.read_csv(tmp_path / "subs" / "submission_geomean.csv")
    k = np.arange(6, 0, -1.0)
    assert list(sub["seg_id"]) == list(pd.read_csv(data / "sample_submission.csv")["seg_id"])
    np.testing.assert_allclose(sub["time_to_failure"], k)  # LightGBM's, not sqrt(k * 4k)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "subs" / "submission_nn.csv")["time_to_failure"], 4.0 * k)  # still written
    assert record["blend"] == "lgbm" and record["fallbacks"] == {"nn": "drop"}
    assert record["oof_mae"]["geomean"] == record["oof_mae"]["lgbm"] and record["test_mae"]["geomean"] == pytest.approx(3.5)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("warning: nn: all 4 draws rejected") and sum(line.startswith("warning") for line in out) == 1
    assert any(line.startswith("blend (lgbm)") for line in out)


def test_submit_refuses_a_run_of_another_configuration(tmp_path):
    run, data = make_run(tmp_path)
    other = load_config("fast", None, ["nn.runs=3"])
    with pytest.raises(LabquakeError, match="trained with another configuration"):
        blend.run_submit(other, run, data, tmp_path / "subs")
    assert not (tmp_path / "subs").exists()


def test_submit_without_truth_has_no_test_scores(tmp_path, capsys):
    run, data = make_run(tmp_path, truth=False)
    record = blend.run_submit(CFG, run, data, tmp_path / "subs")
    assert record["test_mae"] is None and record["truth"] is None
    assert "test MAE" not in capsys.readouterr().out


def test_submit_refuses_bad_runs_and_keeps_earlier_files(tmp_path):
    run, data = make_run(tmp_path)
    subs = tmp_path / "subs"
    blend.run_submit(CFG, run, data, subs)
    before = {p.name: p.read_bytes() for p in subs.iterdir()}
    test = pd.read_parquet(run / "test.parquet")
    test.loc[2, "nn"] = np.nan
    test.to_parquet(run / "test.parquet")
    with pytest.raises(LabquakeError, match=r"submission_geomean\.csv: time_to_failure nan for seg_000002"):
        blend.run_submit(CFG, run, data, subs)
    test.drop(index=2).assign(nn=1.0).to_parquet(run / "test.parquet")
    with pytest.raises(LabquakeError, match=r"test\.parquet: 1 seg_id of sample_submission\.csv missing, e.g. seg_000002"):
        blend.run_submit(CFG, run, data, subs)
    assert before == {p.name: p.read_bytes() for p in subs.iterdir()}
    (run / "summary.json").unlink()
    with pytest.raises(LabquakeError, match="no finished training run"):
        blend.run_submit(CFG, run, data, subs)


def test_check_submission_refuses_negative_nan_and_wrong_rows(tmp_path):
    sample = ["a", "b"]  # the sample submission's ids
    path = tmp_path / "s.csv"
    for values, message in (([1.0, -0.5], "-0.5 for b"), ([np.nan, 1.0], "nan for a"), ([np.inf, 1.0], "inf for a")):
        with pytest.raises(LabquakeError, match=rf"s\.csv: time_to_failure {message} \(must be finite and >= 0\)"):
            blend.write_submission(path, pd.DataFrame({"seg_id": ["a", "b"], "time_to_failure": values}), sample)
    with pytest.raises(LabquakeError, match=r"s\.csv: seg_id rows differ"):
        blend.write_submission(path, pd.DataFrame({"seg_id": ["b", "a"], "time_to_failure": [1.0, 1.0]}), sample)
    assert not path.exists()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_score_files_validates_both_files(tmp_path):
    truth = write(tmp_path / "truth.csv", "seg_id,time_to_failure\na,1.0\nb,2.0\nc,4.0\n")
    good = write(tmp_path / "good.csv", "seg_id,time_to_failure\nc,3.0\na,1.5\nb,2.0\n")
    assert blend.score_files(good, truth) == pytest.approx(0.5)  # matched by id, not by row
    cases = {
        "header.csv": ("seg_id,ttf\na,1\nb,2\nc,4\n", r"header.csv: header must be 'seg_id,time_to_failure', found 'seg_id,ttf'"),
        "nan.csv": ("seg_id,time_to_failure\na,1\nb,nan\nc,4\n", r"nan.csv: time_to_failure missing or not a finite number for b \(line 3\)"),
        "empty_value.csv": ("seg_id,time_to_failure\na,1\nb,\nc,4\n", r"empty_value.csv: time_to_failure missing .* for b"),
        "text.csv": ("seg_id,time_to_failure\na,1\nb,x\nc,4\n", r"text.csv: time_to_failure missing or not a finite number for b"),
        "missing.csv": ("seg_id,time_to_failure\na,1\nb,2\n", r"missing.csv: seg_id do not match .*truth.csv \(1 missing, 0 unexpected, e.g. c\)"),
        "extra.csv": ("seg_id,time_to_failure\na,1\nb,2\nc,3\nd,4\n", r"extra.csv: seg_id do not match .*\(0 missing, 1 unexpected, e.g. d\)"),
        "dup.csv": ("seg_id,time_to_failure\na,1\nb,2\nc,3\na,4\n", r"dup.csv: duplicate seg_id a"),
        "rows.csv": ("seg_id,time_to_failure\n", r"rows.csv: no rows"),
    }
    for name, (text, message) in cases.items():
        with pytest.raises(LabquakeError, match=message):
            blend.score_files(write(tmp_path / name, text), truth)
    with pytest.raises(LabquakeError, match=r"truth.csv: header"):
        blend.score_files(good, write(tmp_path / "truth.csv", "id,value\na,1\n"))
    with pytest.raises(LabquakeError, match=r"nowhere.csv: not found"):
        blend.score_files(tmp_path / "nowhere.csv", good)


def test_score_command_one_line_error(tmp_path):
    truth = write(tmp_path / "truth.csv", "seg_id,time_to_failure\na,1.0\n")
    bad = write(tmp_path / "bad.csv", "seg_id,time_to_failure\na,-\n")
    out = subprocess.run([sys.executable, "-m", "labquake", "score", str(bad), str(truth)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "bad.csv" in out.stderr
    out = subprocess.run([sys.executable, "-m", "labquake", "score", str(truth), str(truth)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("MAE 0.0000")


# ---------------------------------------------------------------------------------------------
# End to end on the shared tiny fixtures (synthetic data -> features -> fast run -> submission)


def test_tiny_end_to_end_train_and_submit(tiny_run, tiny_raw, tmp_path, capsys):
    run, raw = tiny_run, tiny_raw
    record = blend.run_submit(CFG, run, raw, tmp_path / "subs")
    summary = json.loads((run / "summary.json").read_text())
    print(
        f"\ntiny run: OOF MAE {summary['oof_mae']} blend {record['oof_mae']['geomean']:.4f} "
        f"median baseline {summary['baseline_median_mae']:.4f} test MAE {record['test_mae']}",
        file=sys.stderr,
    )
    sample = pd.read_csv(raw / "sample_submission.csv")
    sub = pd.read_csv(tmp_path / "subs" / "submission_geomean.csv")
    assert list(sub["seg_id"]) == list(sample["seg_id"]) and (sub["time_to_failure"] >= 0.1).all()
    assert blend.score_files(tmp_path / "subs" / "submission_geomean.csv", raw / "test_truth.csv") == pytest.approx(record["test_mae"]["geomean"])
    # Quality: on this data both models and the blend clearly beat predicting the median.
    base = summary["baseline_median_mae"]
    for name in ("lgbm", "nn"):
        assert summary["oof_mae"][name] < base
    assert record["oof_mae"]["geomean"] < base


def test_tiny_train_and_submit_with_seq_through_the_cli(tiny_features, tiny_raw, tmp_path, capsys):
    """`labquake train --set blend.models=[...seq]` then `submit`: a seq column and submission_seq.csv."""
    from labquake.cli import main

    sets = ["lgbm.seeds=[0]", "nn.runs=1", "nn.epochs=20", 'blend.models=["lgbm","nn","seq"]', "seq.runs=1", "seq.epochs=20", "seq.max_redraws=0"]
    flags = ["--fast", *[a for s in sets for a in ("--set", s)]]
    run, subs = tmp_path / "run", tmp_path / "subs"
    assert main(["train", "--features", str(tiny_features), "--run", str(run), *flags]) == 0
    assert main(["submit", "--run", str(run), "--data", str(tiny_raw), "--out", str(subs), *flags]) == 0
    out = capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    blended = "+".join(summary["blend_weights"])
    assert "sequence network" in out and f"blend ({blended})" in out
    assert blended == "lgbm+nn+seq" or "seq: all" in out  # seq in the blend, or dropped and said so
    oof, test = pd.read_parquet(run / "oof.parquet"), pd.read_parquet(run / "test.parquet")
    assert "seq" in oof.columns and "seq" in test.columns and np.isfinite(oof["seq"]).all()
    assert sorted(p.name for p in subs.iterdir()) == [f"submission_{m}.csv" for m in ("geomean", "lgbm", "nn", "seq")]
    seq_sub = pd.read_csv(subs / "submission_seq.csv")
    assert list(seq_sub["seg_id"]) == list(pd.read_csv(tiny_raw / "sample_submission.csv")["seg_id"])
    sequences = np.load(tiny_features / "test_seq.npy")
    assert sequences.shape[:2] == (len(test), 150)
