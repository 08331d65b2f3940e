"""The report of a run: plots exist, are valid PNGs of sensible size, and report.md embeds them."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labquake import report
from labquake.config import load_config
from labquake.util import LabquakeError

SEG = 150_000
LGBM_FEATURES = [
    "NN_LGBM_percentile_roll20_std_50",
    "NN_LGBM_mfcc_mean4",
    "NN_LGBM_mfcc_mean18",
    "LGBM_num_peaks_2_denoise_simple",
    "LGBM_autocorr5",
    "LGBM_fftrhann20000_diff_rate",
]
ALL_PLOTS = set(report.PLOTS)


# ----------------------------------------------------------------------------------------------
# A fake run folder in the layout models.train and blend.submit write


def _stage(stage: str, timings: dict[str, float], **extra) -> dict:
    return {
        "stage": stage,
        "version": "0.1.0",
        "config": {},
        "timings_s": {**timings, "total": round(sum(timings.values()) + 0.5, 3)},
        "python": "3.11",
        "finished": "2025-01-01T00:00:00",
        **extra,
    }


def make_fake_run(base: Path, *, nn: bool = True, features: bool = True, truth: bool = True, seed: int = 0) -> Path:
    """A plausible run folder: 6 quake cycles of about 40 segments, 3 folds, 2 seeds, 2 network runs."""
    rng = np.random.default_rng(seed)
    cfg = load_config("fast").to_dict()
    run = base / "run"
    (run / "lgbm").mkdir(parents=True)
    (run / "nn").mkdir()

    # Train timeline: each cycle counts down from its length to ~0 in steps of about 0.3 s.
    targets, cycles = [], []
    for c, length in enumerate([3.0, 11.5, 14.2, 8.9, 12.7, 8.1]):
        n = int(length / 0.3)
        targets.append(np.linspace(length, 0.02, n))
        cycles.append(np.full(n, c))
    target = np.concatenate(targets)
    cycle = np.concatenate(cycles)
    n = len(target)
    start = np.arange(n, dtype=np.int64) * SEG
    mean = target.mean()
    lgbm = 0.6 * target + 0.4 * mean + rng.normal(0, 1.5, n)
    nnp = 0.7 * target + 0.3 * mean + rng.normal(0, 1.7, n)
    fold = rng.integers(0, 3, n)
    oof = pd.DataFrame({"start": start, "cycle": cycle, "fold": fold, "target": target, "lgbm": lgbm})
    if nn:
        oof["nn"] = nnp
        oof["nn_tsf"] = rng.uniform(0, 10, n)
        oof["nn_binary"] = rng.uniform(0, 1, n)
    oof.to_parquet(run / "oof.parquet", index=False)

    n_test = 60
    seg_ids = [f"seg_{i:06x}" for i in rng.choice(1 << 24, n_test, replace=False)]
    true_test = rng.uniform(0, 12, n_test)
    test = pd.DataFrame({"seg_id": seg_ids, "lgbm": 0.6 * true_test + 2 + rng.normal(0, 1, n_test)})
    if nn:
        test["nn"] = 0.7 * true_test + 1.5 + rng.normal(0, 1, n_test)
    test.to_parquet(run / "test.parquet", index=False)
    truth_path = base / "test_truth.csv"
    pd.DataFrame({"seg_id": seg_ids[::-1], "time_to_failure": true_test[::-1]}).to_csv(truth_path, index=False)

    def m(p):
        return float(np.mean(np.abs(target - p)))

    summary = {"oof_mae": {"lgbm": m(lgbm)}, "baseline_median_mae": m(np.median(target)), "n_train": n, "n_folds": 3}
    if nn:
        summary["oof_mae"]["nn"] = m(nnp)
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "config.json").write_text(json.dumps({"train_key": "0123456789abcdef", "features_key": "fedcba9876543210", "config": cfg}))

    rows = []
    for s in (0, 1):
        for k in range(3):
            gains = np.array([900.0, 700, 400, 300, 250, 100]) * rng.uniform(0.7, 1.3, 6)
            rows += [{"feature": f, "seed": s, "fold": k, "gain": g, "split": int(g / 10)} for f, g in zip(LGBM_FEATURES, gains)]
    pd.DataFrame(rows).to_csv(run / "lgbm" / "importance.csv", index=False)

    features_dir = base / "features"
    if features:
        features_dir.mkdir()
        tab = pd.DataFrame({"start": start, "cycle": cycle, "target": target})
        for i, f in enumerate(LGBM_FEATURES + ["NN_quant99", "NN_mfcc_mean2"]):
            tab[f] = (i + 1) * np.exp(-target / 5) + rng.normal(0, 0.1 * (i + 1), n)
        tab.to_parquet(features_dir / "train.parquet", index=False)
        (features_dir / "features.json").write_text(json.dumps(_stage("features", {"train": 12.5, "test": 3.2})))

    if nn:
        hist, runs = [], []
        for r in range(3):  # three draws; draw 1 rejected, as models.train_nn records it
            accepted = r != 1
            for k in range(3):
                for e in range(25 + 5 * r + k):
                    decay = np.exp(-e / 6)
                    tt, ts = 2.0 + 3 * decay + (0 if accepted else 0.8) + rng.normal(0, 0.05), 2.5 + 2 * decay
                    bce = 0.3 + 0.3 * decay
                    hist.append(
                        {
                            "fold": k,
                            "epoch": e,
                            "binary_loss": bce * 0.9,
                            "loss": 8 * tt * 0.95 + ts + bce,
                            "tsf_loss": ts * 0.95,
                            "ttf_loss": tt * 0.95,
                            "ttf_mae": tt * 0.95,
                            "val_binary_loss": bce,
                            "val_loss": 8 * tt + ts + bce,
                            "val_tsf_loss": ts,
                            "val_ttf_loss": tt,
                            "val_ttf_mae": tt + 0.1 * rng.random(),
                            "learning_rate": 0.008 * 0.5 ** (e // 10),
                            "run": r,
                            "seed": r,
                            "accepted": accepted,
                        }
                    )
            runs.append(
                {
                    "run": r,
                    "seed": r,
                    "oof_mae": 2.1 + 0.5 * (not accepted),
                    "fold_mae": [2.0, 2.1, 2.2],
                    "accepted": accepted,
                    "best_epoch": [20, 21, 22],
                    "epochs": [25, 26, 27],
                    "weights": [f"nn/run{r:02d}/fold{k}.weights.h5" for k in range(3)],
                }
            )
        pd.DataFrame(hist).to_csv(run / "nn" / "history.csv", index=False)
        (run / "nn" / "runs.json").write_text(json.dumps({"reject_bound": 2.4, "reject_ratio": 0.7, "runs": runs}))

    curves = []
    for s in (0, 1):
        for k in range(3):
            it = np.arange(1, 400 + 50 * s + 30 * k)
            curves.append(pd.DataFrame({"seed": s, "fold": k, "iteration": it, "valid_mae": 1.9 + 2.5 * np.exp(-it / 80) + 1e-4 * it}))
    pd.concat(curves).to_csv(run / "lgbm" / "curves.csv", index=False)

    train_rec = _stage("train", {"lgbm": 20.1, "nn": 140.3 if nn else 0.0, "predict": 1.2}, features_dir=str(features_dir))
    (run / "train.json").write_text(json.dumps(train_rec))
    blend_rec = _stage("blend", {"blend": 0.1, "write": 0.2}, **({"truth": str(truth_path)} if truth else {}))
    (run / "blend.json").write_text(json.dumps(blend_rec))
    return run


# ----------------------------------------------------------------------------------------------
# PNG checks


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; fails unless the file starts like a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name}: not a PNG"
    assert head[12:16] == b"IHDR", f"{path.name}: no IHDR chunk first"
    return struct.unpack(">II", head[16:24])


def check_report(md_path: Path, expected: set[str]) -> str:
    assert md_path.name == "report.md" and md_path.is_file()
    md = md_path.read_text()
    folder = md_path.parent
    for name in expected:
        p = folder / name
        assert p.is_file(), f"{name} missing"
        w, h = png_size(p)
        assert 900 <= w <= 1600 and 450 <= h <= 1200, f"{name}: {w}x{h}"
        assert p.stat().st_size > 5_000, f"{name}: only {p.stat().st_size} bytes"
        assert f"]({name})" in md, f"report.md does not embed {name}"
    assert {p.name for p in folder.glob("*.png")} == expected
    assert not list(folder.glob(".*")), "temporary files left behind"
    return md


# ----------------------------------------------------------------------------------------------
# Tests


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> Path:
    run = make_fake_run(tmp_path_factory.mktemp("fake"))
    return report.build_report(run)


def test_full_report_has_every_plot(full_report):
    md = check_report(full_report, ALL_PLOTS)
    assert "Plot skipped" not in md
    for heading in ("## Scores", "## Timings", "## Configuration", "```json", "<details>"):
        assert heading in md
    # Timings of all three stage records, and the key settings of the configuration.
    for text in ("| features | train |", "| train | lgbm |", "| blend | write |", "| lgbm.seeds |", "| blend.clip_min |"):
        assert text in md


def test_optional_inputs_skipped_with_a_reason(tmp_path):
    run = make_fake_run(tmp_path, nn=False, features=False, truth=False)
    md = check_report(
        report.build_report(run),
        {"oof_timeline.png", "mae_by_cycle.png", "mae_by_ttf.png", "lgbm_importance.png", "lgbm_curves.png", "test_distribution.png"},
    )
    assert "no nn/history.csv" in md
    assert "feature folder" in md and "not found" in md
    assert "no truth file" in md
    assert "No blend" in md


def test_explicit_arguments_determinism_and_stale_plots(full_report, tmp_path):
    run = make_fake_run(tmp_path, truth=False)  # the same numbers as full_report's run
    (run / "train.json").write_text(json.dumps(_stage("train", {"lgbm": 1.0})))  # no features_dir
    md = check_report(report.build_report(run, features_dir=tmp_path / "features", truth=tmp_path / "test_truth.csv"), ALL_PLOTS)
    assert "60 of 60 test segments matched" in md
    for name in ALL_PLOTS:  # same inputs, same bytes
        assert (run / "report" / name).read_bytes() == (full_report.parent / name).read_bytes(), name
    # Rebuilt without them: the two plots of the earlier report are removed, not left stale.
    md = check_report(report.build_report(run), ALL_PLOTS - {"lgbm_features.png", "test_vs_truth.png"})
    assert "does not record the feature folder" in md
    assert "no truth file" in md


def test_report_blend_uses_config_clip_min(tmp_path):
    run = make_fake_run(tmp_path)
    cfg = json.loads((run / "config.json").read_text())
    cfg["config"]["blend"]["clip_min"] = 3.0
    (run / "config.json").write_text(json.dumps(cfg))
    data = report.load_run(run)
    oof = pd.read_parquet(run / "oof.parquet")
    expected = np.sqrt(np.clip(oof["lgbm"], 3.0, None) * np.clip(oof["nn"], 3.0, None))
    np.testing.assert_allclose(data.oof["blend"], expected)
    assert data.clip_min == 3.0


def test_report_flags_a_dropped_network(tmp_path):
    run = make_fake_run(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    summary.update(nn_fallback="drop", nn_runs=2, nn_accepted=0, nn_draws=3, nn_seeds=[0, 2])
    (run / "summary.json").write_text(json.dumps(summary))
    md = report.build_report(run).read_text()
    flag = [line for line in md.splitlines() if line.startswith("> **Warning:**")]
    assert len(flag) == 1 and "all 3 draws rejected" in flag[0] and "LightGBM alone" in flag[0]
    assert md.index("> **Warning:**") < md.index("## Scores")  # before any number
    assert "The blend is LightGBM alone" in md
    data = report.load_run(run)  # the blend reported is the one submitted: LightGBM, clipped
    np.testing.assert_allclose(data.oof["blend"], np.clip(pd.read_parquet(run / "oof.parquet")["lgbm"], 0.1, None))
    np.testing.assert_allclose(data.test["blend"], np.clip(pd.read_parquet(run / "test.parquet")["lgbm"], 0.1, None))


def test_report_without_fallback_has_no_flag(full_report):
    assert "**Warning:**" not in full_report.read_text()


def test_ttf_bins():
    np.testing.assert_array_equal(report.ttf_bins([0.0, 1.99, 2.0, 5.5, -0.1, 11.0]), [0, 0, 1, 2, 0, 5])


def test_missing_run_folder(tmp_path):
    with pytest.raises(LabquakeError, match="run folder not found"):
        report.build_report(tmp_path / "nope")


@pytest.mark.parametrize("victim", ["config.json", "oof.parquet"])
def test_missing_required_file_names_it(tmp_path, victim):
    run = make_fake_run(tmp_path)
    (run / victim).unlink()
    with pytest.raises(LabquakeError, match=victim) as err:
        report.build_report(run)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("victim", ["config.json", "oof.parquet", "test.parquet", "summary.json", "nn/history.csv", "lgbm/importance.csv"])
def test_corrupt_file_names_it(tmp_path, victim):
    run = make_fake_run(tmp_path)
    (run / victim).write_bytes(b"\x00garbage\xff{[" * 10)
    with pytest.raises(LabquakeError, match=victim.split("/")[-1]) as err:
        report.build_report(run)
    assert "\n" not in str(err.value)
    assert not (run / "report").exists()  # everything is read before anything is drawn


def test_cli_report(tmp_path):
    from labquake.cli import main

    run = make_fake_run(tmp_path, nn=False, features=False)
    assert main(["report", "--run", str(run), "-q"]) == 0
    assert (run / "report" / "report.md").is_file()
    assert main(["report", "--run", str(tmp_path / "nope"), "-q"]) == 2


def test_report_of_tiny_run(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "blend.json").unlink(missing_ok=True)  # another test may have blended the shared run
    md = check_report(report.build_report(run), {p for p in ALL_PLOTS if p != "test_vs_truth.png"})
    assert "Plot skipped" in md  # no truth named: the run was trained, not blended
    assert "## Timings" in md and "| train | lgbm |" in md
