"""Train against test: KS per feature against scipy, the adversarial AUC on known shifts, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from labquake import stats, trainset


def tables(shift: float, n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    train = pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.normal(0, 1, n)})
    test = pd.DataFrame({"a": rng.normal(shift, 1, n // 2), "b": rng.normal(0, 1, n // 2)})
    return train, test


def test_ks_table_is_scipy_per_feature_largest_first():
    train, test = tables(shift=1.0)
    t = stats.ks_table(train, test, ["b", "a"])
    assert list(t.columns) == ["feature", "ks_stat", "p_value"] and t["feature"].tolist() == ["a", "b"]
    for _, row in t.iterrows():
        ref = ks_2samp(train[row["feature"]], test[row["feature"]])
        assert row["ks_stat"] == pytest.approx(ref.statistic, abs=0) and row["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert t.loc[0, "ks_stat"] > 0.3 and t.loc[0, "p_value"] < 1e-10  # shifted by one sd
    same = stats.ks_table(train, train, ["a"])
    assert same.loc[0, "ks_stat"] == 0 and same.loc[0, "p_value"] == 1


def test_adversarial_auc_sees_a_shift_and_not_its_absence():
    train, test = tables(shift=0.0)
    assert abs(stats.adversarial_auc(train, test, ["a", "b"]) - 0.5) < 0.1
    train, test = tables(shift=2.0)
    assert stats.adversarial_auc(train, test, ["a", "b"]) > 0.85


def test_drift_command_writes_table_json_and_plots(tiny_features, tmp_path):
    out = tmp_path / "drift"
    run = subprocess.run(
        [sys.executable, "-m", "labquake", "drift", "--features", str(tiny_features), "--out", str(out), "--preset", "fast"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    table = pd.read_csv(out / "drift.csv")
    assert list(table.columns) == ["feature", "ks_stat", "p_value"] and len(table) == 24
    assert table["ks_stat"].between(0, 1).all() and table["p_value"].between(0, 1).all()
    record = json.loads((out / "drift.json").read_text())
    assert 0 <= record["summary"]["adversarial_auc"] <= 1 and record["stage"] == "drift"
    for name in ("ks.png", "distributions.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_drift_on_a_missing_folder_is_one_line_error(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "labquake", "drift", "--features", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr


def test_ks_statistic_is_scipys_with_ties():
    rng = np.random.default_rng(3)
    for a, b in [(rng.normal(0, 1, 300), rng.normal(0.2, 1, 170)), (rng.integers(0, 5, 200) * 1.0, rng.integers(0, 6, 90) * 1.0)]:
        assert stats.ks_statistic(np.sort(a), np.sort(b)) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)


def cycle_table(like_test: set[int], n_cycles: int = 8, per_cycle: int = 60, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cycles whose features match the test's, and others shifted by one sd (a known shift)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_cycles):
        shift = 0.0 if c in like_test else 1.0
        rows.append(pd.DataFrame({"cycle": c, "a": rng.normal(shift, 1, per_cycle), "b": rng.normal(-shift, 1, per_cycle)}))
    test = pd.DataFrame({"a": rng.normal(0, 1, 300), "b": rng.normal(0, 1, 300)})
    return pd.concat(rows, ignore_index=True), test


def test_choose_cycles_finds_the_cycles_that_look_like_test():
    train, test = cycle_table({2, 3, 5, 0})  # 0 is the partial first cycle: never chosen
    choice = trainset.choose_cycles(train, test, ["a", "b"], share=0.5, draws=200, seed=1)
    assert choice["complete_cycles"] == [1, 2, 3, 4, 5, 6] and choice["subset_size"] == 3
    assert choice["chosen"] == [2, 3, 5]
    assert choice["score"] == min(choice["draw_scores"]) < choice["all_cycles_score"]
    assert "recipe_score" not in choice
    again = trainset.choose_cycles(train, test, ["a", "b"], share=0.5, draws=200, seed=1)
    assert again["draw_scores"] == choice["draw_scores"]  # seeded
    with_recipe = trainset.choose_cycles(train, test, ["a", "b"], share=0.5, draws=50, seed=1, recipe=(1, 2, 4))
    assert with_recipe["recipe_overlap"] == sorted({1, 2, 4} & set(with_recipe["chosen"])) and with_recipe["recipe_score"] > choice["score"]


def test_choose_cycles_needs_three_complete_cycles():
    from labquake.util import LabquakeError

    train, test = cycle_table({1}, n_cycles=4)
    with pytest.raises(LabquakeError, match="at least 3 complete cycles"):
        trainset.choose_cycles(train, test, ["a"], share=0.5, draws=5, seed=0)


def test_train_cycles_setting_takes_auto_or_a_list():
    from labquake.config import load_config
    from labquake.util import LabquakeError

    assert load_config("recipe", None, ["data.train_cycles=auto"]).data.train_cycles == "auto"
    assert load_config("recipe", None, ["data.train_cycles=[1, 2]"]).data.train_cycles == (1, 2)
    with pytest.raises(LabquakeError, match='list of cycles or "auto"'):
        load_config("recipe", None, ["data.train_cycles=best"])


def compare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labquake", "compare", *args], capture_output=True, text=True, timeout=600)


def test_compare_two_tables_writes_ks_auc_and_plots(tmp_path):
    """Two feature tables (parquet files) with a known shift in one column."""
    train, test = tables(shift=2.0)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    train.assign(seg_id=[f"s{i}" for i in range(len(train))]).to_parquet(a)
    test.assign(extra=1.0).to_parquet(b)  # a column only one side has is not compared
    run = compare(str(a), str(b), "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    table = pd.read_csv(tmp_path / "out" / "compare.csv")
    assert table["feature"].tolist() == ["a", "b"]  # seg_id is no feature; largest statistic first
    assert table.loc[0, "ks_stat"] == pytest.approx(ks_2samp(train["a"], test["a"]).statistic, abs=1e-6)
    summary = json.loads((tmp_path / "out" / "compare.json").read_text())["summary"]
    assert summary["adversarial_auc"] > 0.85 and summary["features"] == 2
    assert summary["median_ks"] == pytest.approx(table["ks_stat"].median(), abs=1e-6)
    for name in ("ks.png", "distributions.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_one_folder_is_its_train_against_its_test(tiny_features, tmp_path):
    run = compare(str(tiny_features), "--out", str(tmp_path / "one"))
    assert run.returncode == 0, run.stderr
    record = json.loads((tmp_path / "one" / "compare.json").read_text())
    assert record["tables"] == ["train", "test"] and record["summary"]["features"] == 24
    # the same as a folder against itself with the tables named
    run = compare(str(tiny_features), str(tiny_features), "--tables", "train", "test", "--out", str(tmp_path / "two"))
    assert run.returncode == 0, run.stderr
    assert pd.read_csv(tmp_path / "one" / "compare.csv").equals(pd.read_csv(tmp_path / "two" / "compare.csv"))


@pytest.mark.parametrize("case", ["missing", "no_common", "one_row", "not_parquet", "table_alone"])
def test_compare_bad_input_is_one_line_exit_2(tmp_path, case):
    good = tmp_path / "good.parquet"
    tables(shift=0.0)[0].to_parquet(good)
    other = tmp_path / "other.parquet"
    if case == "missing":
        other = tmp_path / "nothing"
    elif case == "no_common":
        pd.DataFrame({"c": [1.0, 2.0, 3.0]}).to_parquet(other)
    elif case == "one_row":
        pd.DataFrame({"a": [1.0], "b": [2.0]}).to_parquet(other)
    elif case == "not_parquet":
        other.write_text("not a table")
    run = compare(str(good), *([] if case == "table_alone" else [str(other)]), "--out", str(tmp_path / "out"))
    assert run.returncode == 2, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert str(good if case == "table_alone" else other) in run.stderr
    assert not (tmp_path / "out").exists()  # nothing written
