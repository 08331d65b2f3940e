"""The support-vector regressor: scikit-learn's SVR, held equal to the library, behind the contract."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fakes import fake_network, write_feature_dir

from labquake import blend, models
from labquake.config import load_config
from labquake.models import cv, svr
from labquake.models.base import Model

QUICK = ["lgbm.seeds=[0]", "lgbm.num_boost_round=300", "lgbm.early_stopping_rounds=30", "nn.runs=1"]


@pytest.fixture(scope="module")
def feat_dir(tmp_path_factory):
    return write_feature_dir(tmp_path_factory.mktemp("svr") / "features")


def test_svr_is_a_registered_model_of_the_contract():
    m = models.model("svr")
    assert m is svr.MODEL and isinstance(m, Model)
    assert (m.rejects, m.reference, m.draws(load_config())) == (False, False, 1)
    assert m.features(load_config()) == load_config().nn.features  # the network's columns
    assert "svr" not in load_config().blend.models  # an option, not the recipe


def test_svr_folds_equal_scikit_learn_on_the_fold_scaled_features(feat_dir, tmp_path):
    from sklearn.preprocessing import MinMaxScaler
    from sklearn.svm import SVR

    cfg = load_config("fast", None, ["svr.C=3.0", "svr.epsilon=0.05", "blend.models=[svr]"])
    data = models.training_data(cfg, feat_dir)
    res = cv.cross_validate("svr", cfg, svr.MODEL.prepare(cfg, data), data.folds, len(data.test), 0, tmp_path)
    X, y = data.train[list(cfg.svr.features)].to_numpy(), data.train["target"].to_numpy()
    X_test = data.test[list(cfg.svr.features)].to_numpy()
    test = np.zeros(len(X_test))
    for k in range(3):
        tr, va = data.folds != k, data.folds == k
        scaler = MinMaxScaler().fit(X[tr])
        ref = SVR(C=3.0, epsilon=0.05).fit(scaler.transform(X[tr]), y[tr])
        np.testing.assert_allclose(res.oof[va], ref.predict(scaler.transform(X[va])), rtol=1e-10)
        test += ref.predict(scaler.transform(X_test)) / 3
    np.testing.assert_allclose(res.test, test, rtol=1e-10)
    assert np.mean(np.abs(res.oof - y)) < np.mean(np.abs(y - np.median(y)))  # it learns
    saved = svr.MODEL.predict_saved(cfg, tmp_path, res.folds, data.test[list(cfg.svr.features)], None)
    np.testing.assert_allclose(saved, res.test, rtol=1e-12)  # the saved folds predict as training did


def test_svr_trains_blends_and_submits_beside_the_recipe(feat_dir, tmp_path, monkeypatch):
    fake_network(monkeypatch)
    cfg = load_config("fast", None, [*QUICK, 'blend.models=["lgbm","nn","svr"]'])
    run = tmp_path / "run"
    summary = models.run_train(cfg, feat_dir, run, device="cpu")
    assert summary["models"] == ["lgbm", "nn", "svr"] and set(summary["blend_weights"]) == {"lgbm", "nn", "svr"}
    assert summary["model"]["svr"] == {"seeds": [0], "features": list(cfg.svr.features)}
    assert list(pd.read_parquet(run / "test.parquet").columns) == ["seg_id", "lgbm", "nn", "svr"]
    assert json.loads((run / "svr" / "runs.json").read_text())["runs"][0]["support_vectors"][0] > 0
    raw = tmp_path / "raw"
    raw.mkdir()
    ids = pd.read_parquet(feat_dir / "test.parquet")["seg_id"]
    pd.DataFrame({"seg_id": ids, "time_to_failure": 0.0}).to_csv(raw / "sample_submission.csv", index=False)
    record = blend.run_submit(cfg, run, raw, tmp_path / "subs")
    assert (tmp_path / "subs" / "submission_svr.csv").is_file() and record["blend"] == "lgbm+nn+svr"
    folds = json.loads((run / "svr" / "draw00" / "folds.json").read_text())
    table = pd.read_parquet(feat_dir / "test.parquet")[list(cfg.svr.features)]
    saved = svr.MODEL.predict_saved(cfg, run / "svr" / "draw00", folds, table, None)
    np.testing.assert_allclose(saved, pd.read_parquet(run / "test.parquet")["svr"], rtol=1e-12)
    assert models.train_key(cfg) != models.train_key(load_config("fast", None, QUICK))  # another run


def test_a_damaged_svr_fold_is_found_before_use(feat_dir, tmp_path, monkeypatch):
    from labquake.models.folder import RunFolder

    fake_network(monkeypatch)
    cfg = load_config("fast", None, [*QUICK, 'blend.models=["lgbm","svr"]'])
    run = tmp_path / "run"
    models.run_train(cfg, feat_dir, run, device="cpu")
    assert RunFolder(run).verify() == []
    fold = run / "svr" / "draw00" / "fold1.joblib"
    fold.write_bytes(fold.read_bytes()[:500])  # cut short
    problems = RunFolder(run).verify(("models",))
    assert len(problems) == 1 and "fold1.joblib: does not match its checksum" in problems[0]
    with pytest.raises(Exception, match="fold1.joblib: does not match its checksum"):
        RunFolder(run).require_intact(("models",))
