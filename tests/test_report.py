"""The report of a run: plots exist, are valid PNGs of sensible size, and report.md embeds them.

Every run here is written by the real writers: the shared tiny run (``models.train`` of lgbm and nn),
blended by ``blend.submit``, so the report is tested on exactly the files and columns they write. Runs
of other models are that run with a ``seq`` model added by hand (``with_seq``), as training writes it.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labquake import blend, metric, models, report
from labquake.config import load_config
from labquake.models.folder import RunFolder
from labquake.util import LabquakeError, write_json, write_parquet

ALL_PLOTS = set(report.PLOTS) - {"seq_history.png"}  # of the tiny run's models, lgbm and nn
UNSUBMITTED = ALL_PLOTS - {"test_vs_truth.png"}  # no truth file named: trained, not blended


def copy_run(tiny_run: Path, dest: Path) -> Path:
    """The shared tiny run as ``train`` left it (another test may have blended it)."""
    run = dest / "run"
    shutil.copytree(tiny_run, run)
    (run / "blend.json").unlink(missing_ok=True)
    shutil.rmtree(run / "report", ignore_errors=True)
    return run


def submitted(tiny_run: Path, tiny_raw: Path, dest: Path, *sets: str) -> Path:
    """A copy of the tiny run, blended by `labquake submit` against the tiny data (its truth included)."""
    run = copy_run(tiny_run, dest)
    blend.run_submit(load_config("fast", None, list(sets)), run, tiny_raw, dest / "subs")
    return run


def with_seq(run: Path, weights: dict[str, float]) -> Path:
    """``run`` with a third model ``seq`` as training writes one (a column in oof and test, its
    summary.json entries, seq/runs.json and seq/history.csv: the network's, copied), blended with ``weights``."""
    folder = RunFolder(run)
    summary = folder.summary()
    for path in (folder.oof_path, folder.test_path):
        table = pd.read_parquet(path)
        table["seq"] = 0.8 * table["nn"] + 0.5  # unlike either model
        summary["checksums"][path.name] = write_parquet(path, table)  # as training records them
    summary["model"]["seq"] = dict(summary["model"]["nn"])
    oof = pd.read_parquet(folder.oof_path)
    summary["oof_mae"]["seq"] = metric.mae(oof["target"], oof["seq"])
    summary["models"], summary["blend_weights"] = ["lgbm", "nn", "seq"], weights
    folder.write_summary(summary)
    config = folder.config()
    config["config"]["blend"].update(models=summary["models"], weights="fitted")
    write_json(folder.config_path, config)
    (run / "seq").mkdir()
    for name in ("runs.json", "history.csv"):
        shutil.copy(run / "nn" / name, run / "seq" / name)
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
def full_report(tiny_run, tiny_raw, tmp_path_factory) -> Path:
    return report.run_report(submitted(tiny_run, tiny_raw, tmp_path_factory.mktemp("submitted")))


def test_full_report_has_every_plot(full_report):
    md = check_report(full_report, ALL_PLOTS)
    assert "Plot skipped" not in md and "**Warning:**" not in md
    for heading in ("## Scores", "## Timings", "## Configuration", "### Network runs (nn/runs.json)", "```json", "<details>"):
        assert heading in md
    # Timings of all three stage records, the key settings, the network's draws and the truth.
    assert "## Train against test" in md and "features differ at p < 0.05" in md
    for text in ("| features | compute |", "| train | lgbm |", "| blend | write |", "| lgbm.seeds |", "| blend.clip_min |", "rejected_because"):
        assert text in md
    assert "test_truth.csv (10 of 10 test segments matched)" in md


def test_optional_inputs_skipped_with_a_reason(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    md = check_report(report.run_report(run, features_dir=tmp_path / "moved"), UNSUBMITTED - {"lgbm_features.png", "drift_ks.png"})
    assert "the feature folder" in md and "has no train.parquet" in md
    assert "no truth file" in md


def test_explicit_arguments_determinism_and_stale_plots(full_report, tiny_run, tiny_features, tiny_raw, tmp_path):
    run = copy_run(tiny_run, tmp_path)  # the same run, not blended: the folders are given instead
    md = check_report(report.run_report(run, features_dir=tiny_features, truth=tiny_raw / "test_truth.csv"), ALL_PLOTS)
    assert "10 of 10 test segments matched" in md
    for name in ALL_PLOTS:  # same inputs, same bytes
        assert (run / "report" / name).read_bytes() == (full_report.parent / name).read_bytes(), name
    # Rebuilt without a truth file: the plot of the earlier report is removed, not left stale.
    md = check_report(report.run_report(run), UNSUBMITTED)
    assert "no truth file" in md


def test_report_blends_with_the_submitted_clip_min(tiny_run, tiny_raw, tmp_path):
    run = copy_run(tiny_run, tmp_path / "trained")
    assert report.load_run(run).clip_min == 0.1  # not blended: the run's configuration
    run = submitted(tiny_run, tiny_raw, tmp_path / "blended", "blend.clip_min=3.0")  # blending is not training: same run
    data = report.load_run(run)
    oof = pd.read_parquet(run / "oof.parquet")
    np.testing.assert_allclose(data.oof["blend"], np.sqrt(np.clip(oof["lgbm"], 3.0, None) * np.clip(oof["nn"], 3.0, None)))
    assert data.clip_min == 3.0 and "clip(lgbm, 3)" in report.run_report(run).read_text()


def test_report_flags_a_dropped_network(tiny_features, tmp_path, monkeypatch):
    """A run whose every network draw was rejected: the tiny features, the real run folder writers,
    a stand-in network whose draws are far worse than LightGBM."""
    from fakes import fake_network

    fake_network(monkeypatch, quality={0: 50.0, 1: 50.0})
    cfg = load_config("fast", None, ["lgbm.seeds=[0]", "nn.runs=1", "nn.max_redraws=1"])
    run = tmp_path / "run"
    summary = models.run_train(cfg, tiny_features, run, device="cpu")
    assert summary["model"]["nn"]["fallback"] == "drop"
    md = report.run_report(run).read_text()
    flag = [line for line in md.splitlines() if line.startswith("> **Warning:**")]
    assert len(flag) == 1 and "nn: all 2 draws rejected" in flag[0] and "the blend is lgbm" in flag[0]
    assert md.index("> **Warning:**") < md.index("## Scores")  # before any number
    assert "The blend is LightGBM alone, `clip(lgbm, 0.1)` (nn left out: see the warning above)" in md
    assert "| network | " in md and "| — |" in md  # the network's row, without a blend weight
    data = report.load_run(run)  # the blend reported is the one submitted: LightGBM, clipped
    np.testing.assert_allclose(data.oof["blend"], np.clip(pd.read_parquet(run / "oof.parquet")["lgbm"], 0.1, None))
    np.testing.assert_allclose(data.test["blend"], np.clip(pd.read_parquet(run / "test.parquet")["lgbm"], 0.1, None))


def test_report_of_three_models(tiny_run, tiny_raw, tmp_path):
    """Every per-model table and plot covers seq too; the blend is the weighted geometric mean of the three."""
    weights = {"lgbm": 0.5, "nn": 0.3, "seq": 0.2}
    run = with_seq(copy_run(tiny_run, tmp_path), weights)
    data = report.load_run(run, truth=tiny_raw / "test_truth.csv")
    assert data.models == ["lgbm", "nn", "seq"] and list(data.runs) == list(data.history) == ["nn", "seq"]
    for table in (data.oof, data.test):
        expected = np.exp(sum(w * np.log(np.clip(table[m], 0.1, None)) for m, w in weights.items()))
        np.testing.assert_allclose(table["blend"], expected, rtol=1e-12)
    md = check_report(report.run_report(run, truth=tiny_raw / "test_truth.csv"), ALL_PLOTS | {"seq_history.png"})
    scores = md[md.index("## Scores") : md.index("<details>")]
    row = [line for line in scores.splitlines() if line.startswith("| sequence network | ")]
    assert len(row) == 1 and row[0].endswith(" | 0.2 |") and f"{data.summary['oof_mae']['seq']:.4g}" in row[0]
    assert "| LightGBM |" in scores and "| network |" in scores and "| blend (geometric mean) |" in scores
    assert "The blend is the weighted geometric mean of lgbm, nn, seq, `clip(lgbm, 0.1)^0.5 * clip(nn, 0.1)^0.3 * clip(seq, 0.1)^0.2`" in scores
    assert "weights fitted on the out-of-fold predictions" in scores
    for text in ("## Network (`nn`)", "### Network runs (nn/runs.json)", "## Sequence network (`seq`)", "### Sequence network runs (seq/runs.json)"):
        assert text in md
    assert "| seq.arch | conv_gru |" in md and "**Warning:**" not in md


def test_report_without_lightgbm(tiny_run, tmp_path):
    """Two networks and no LightGBM: no LightGBM section, the blend is sqrt(nn * seq)."""
    run = with_seq(copy_run(tiny_run, tmp_path), {"nn": 0.5, "seq": 0.5})
    summary = RunFolder(run).summary()
    summary["models"] = ["nn", "seq"]
    RunFolder(run).write_summary(summary)
    shutil.rmtree(run / "lgbm")
    lgbm_plots = {"lgbm_importance.png", "lgbm_features.png", "lgbm_curves.png"}
    md = check_report(report.run_report(run), (UNSUBMITTED | {"seq_history.png"}) - lgbm_plots)
    assert "## LightGBM" not in md and "| LightGBM |" not in md and "| lgbm.seeds |" not in md
    assert "The blend is `sqrt(clip(nn, 0.1) * clip(seq, 0.1))`" in md


def test_ttf_bins():
    np.testing.assert_array_equal(report.ttf_bins([0.0, 1.99, 2.0, 5.5, -0.1, 11.0]), [0, 0, 1, 2, 0, 5])


def test_missing_run_folder(tmp_path):
    with pytest.raises(LabquakeError, match="run folder not found"):
        report.run_report(tmp_path / "nope")


@pytest.mark.parametrize(
    "victim", ["summary.json", "config.json", "train.json", "oof.parquet", "test.parquet", "lgbm/importance.csv", "lgbm/curves.csv", "nn/runs.json"]
)
def test_missing_required_file_names_it(tiny_run, tmp_path, victim):
    run = copy_run(tiny_run, tmp_path)
    (run / victim).unlink()
    with pytest.raises(LabquakeError, match=victim.split("/")[-1]) as err:
        report.run_report(run)
    assert "\n" not in str(err.value)
    assert not (run / "report").exists()


@pytest.mark.parametrize(
    "victim", ["config.json", "oof.parquet", "test.parquet", "summary.json", "train.json", "nn/history.csv", "nn/runs.json", "lgbm/importance.csv"]
)
def test_corrupt_file_names_it(tiny_run, tmp_path, victim):
    run = copy_run(tiny_run, tmp_path)
    (run / victim).write_bytes(b"\x00garbage\xff{[" * 10)
    with pytest.raises(LabquakeError, match=victim.split("/")[-1]) as err:
        report.run_report(run)
    assert "\n" not in str(err.value)
    assert not (run / "report").exists()  # everything is read before anything is drawn


def test_record_without_a_key_it_reads_names_it(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    summary = RunFolder(run).summary()
    del summary["oof_mae"]
    RunFolder(run).write_summary(summary)
    with pytest.raises(LabquakeError, match=r"summary.json: no oof_mae"):
        report.run_report(run)


def test_cli_report(tiny_run, tmp_path):
    from labquake.cli import main

    run = copy_run(tiny_run, tmp_path)
    assert main(["report", "--run", str(run), "-q"]) == 0
    assert (run / "report" / "report.md").is_file()
    assert main(["report", "--run", str(tmp_path / "nope"), "-q"]) == 2
