"""Training on a Dask cluster: LightGBM seeds x folds and network draws x folds as tasks, the local run's bytes."""

from __future__ import annotations

import pandas as pd
import pytest

from labquake import models
from labquake.config import load_config

SETS = ["lgbm.seeds=[0, 1]", "lgbm.num_boost_round=300", "lgbm.early_stopping_rounds=30"]
SETS += ["nn.runs=1", "nn.epochs=3", "nn.patience=2", "nn.max_redraws=0", "nn.reject_ratio=100.0"]


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as lc:
        yield lc


def test_train_on_the_cluster_predicts_the_local_bytes(dask_cluster, tiny_features, tmp_path):
    cfg = load_config("fast", None, SETS)
    local = models.run_train(cfg, tiny_features, tmp_path / "local", device="cpu")
    remote = models.run_train(cfg, tiny_features, tmp_path / "remote", device="cpu", scheduler=dask_cluster.scheduler_address)
    assert remote["oof_mae"] == local["oof_mae"]
    for table in ("oof.parquet", "test.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "remote" / table), pd.read_parquet(tmp_path / "local" / table), check_exact=True)
    for path in ("lgbm/draw01/fold2.txt", "lgbm/draw00/result.npz", "nn/draw00/result.npz", "nn/draw00/folds.json"):
        assert (tmp_path / "remote" / path).read_bytes() == (tmp_path / "local" / path).read_bytes(), path
