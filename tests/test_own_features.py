"""Bring your own features: a feature table of one's own trains through the same CV, blend and report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fakes import fake_network, write_feature_dir

from labquake import models
from labquake.cli import main
from labquake.config import load_config

QUICK = ["lgbm.seeds=[0]", "lgbm.num_boost_round=300", "lgbm.early_stopping_rounds=30", "nn.runs=1"]


@pytest.fixture
def own(tmp_path):
    """A feature folder with an extra column of the user's, which tracks the target."""
    path = write_feature_dir(tmp_path / "own")
    train, test = pd.read_parquet(path / "train.parquet"), pd.read_parquet(path / "test.parquet")
    rng = np.random.default_rng(5)
    train["my_rms"] = np.log1p(train["target"]) + rng.normal(0, 0.05, len(train))
    test["my_rms"] = rng.uniform(0, 2.5, len(test))
    train.to_parquet(path / "train.parquet", index=False)
    test.to_parquet(path / "test.parquet", index=False)
    return path


def _sets(*extra: str) -> list[str]:
    cfg = load_config()
    return [*QUICK, f"lgbm.features={json.dumps([*cfg.lgbm.features, 'my_rms'])}", *extra]


def test_an_extra_column_is_read_when_named_and_helps(own, tmp_path, monkeypatch):
    fake_network(monkeypatch)
    base = models.run_train(load_config("fast", None, QUICK), own, tmp_path / "base", device="cpu")
    cfg = load_config("fast", None, _sets())
    summary = models.run_train(cfg, own, tmp_path / "run", device="cpu")
    assert summary["model"]["lgbm"]["features"][-1] == "my_rms" and "my_rms" not in summary["model"]["nn"]["features"]
    imp = pd.read_csv(tmp_path / "run" / "lgbm" / "importance.csv")
    assert imp.groupby("feature")["gain"].mean().idxmax() == "my_rms"  # the column LightGBM leans on
    assert summary["oof_mae"]["lgbm"] < 0.6 * base["oof_mae"]["lgbm"]  # it carries the target: it helps
    assert "my_rms" not in base["model"]["lgbm"]["features"]  # unnamed, an extra column is ignored


@pytest.mark.parametrize(
    "change,expected",
    [
        (lambda t: t.drop(columns="my_rms"), "train.parquet: no column my_rms, which a model reads"),
        (lambda t: t.assign(my_rms="x"), "train.parquet: column my_rms is not numeric"),
        (lambda t: t.assign(my_rms=np.where(t.index == 3, np.nan, t["my_rms"])), "train.parquet: non-finite values in my_rms"),
        (lambda t: t.drop(columns="tsf"), "train.parquet: missing column"),
        (lambda t: pd.concat([t, t.iloc[:1]]), "train.parquet: start 0 appears twice"),
    ],
)
def test_a_bad_own_table_is_one_line_exit_2(own, tmp_path, capsys, change, expected):
    path = own / "train.parquet"
    before = path.read_bytes()
    change(pd.read_parquet(path)).to_parquet(path, index=False)
    args = ["train", "--features", str(own), "--run", str(tmp_path / "run"), "--fast"]
    assert main([*args, *(a for s in _sets() for a in ("--set", s))]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "run" / "summary.json").exists()
    path.write_bytes(before)


def test_predict_refuses_a_run_that_reads_a_feature_it_cannot_compute(own, tmp_path, monkeypatch):
    fake_network(monkeypatch)
    cfg = load_config("fast", None, _sets())
    models.run_train(cfg, own, tmp_path / "run", device="cpu")
    table = pd.read_parquet(own / "test.parquet").drop(columns="my_rms")  # what labquake computes
    from labquake.util import LabquakeError

    with pytest.raises(LabquakeError, match="lgbm reads my_rms, a column labquake does not compute"):
        models.predict_saved(cfg, tmp_path / "run", table, None)
