"""Training for the test's regime (shift.py): fraction targets and their scale, covariate-shift
weights, the test's mean time to failure estimated without labels, and their settings' errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fakes import cli, one_line_error, snapshot, synthetic_tables, write_feature_dir

from labquake import shift
from labquake.config import load_config
from labquake.trainset import load_training_data
from labquake.util import LabquakeError

LGBM = {"lgbm": ("LGBM_num_peaks_2_denoise_simple",)}


def test_clip_and_effective_size_known_answers():
    assert shift.effective_size(np.ones(10)) == pytest.approx(10)
    assert shift.effective_size([1, 0, 0, 0]) == pytest.approx(1)
    assert shift.effective_size([2.0, 1, 1]) == pytest.approx(16 / 6)
    w, share = shift.clip_weights(np.array([0.01, 1, 1, 1.99]), (0.1, 10.0))  # mean 1: 0.01 is clipped to 0.1
    np.testing.assert_allclose(w, np.array([0.1, 1, 1, 1.99]) / 1.0225)
    assert share == 0.25 and w.mean() == pytest.approx(1)


def test_fraction_targets_known_answers():
    train = pd.DataFrame({"target": [8.0, 2.0, 0.3], "tsf": [2.0, 8.0, 4.7], "binary": [0, 0, 1], "cycle": [1, 1, 2]})
    lengths = shift.cycle_length(train)
    np.testing.assert_allclose(lengths, [10, 10, 5])
    out = shift.to_fraction(train, lengths, 0.5, 10.0)
    np.testing.assert_allclose(out["target"], [0.8, 0.2, 0.06])
    np.testing.assert_allclose(out["target"] + out["tsf"], 1.0)  # phases of the cycle
    assert out["binary"].tolist() == [0, 0, 0]  # 0.06 is not below 0.5 s of a 10 s cycle (0.05)
    assert train["target"].tolist() == [8.0, 2.0, 0.3]  # the input is left alone


def test_scale_seconds_by_each_method():
    lengths, w, chosen = np.array([10.0, 10, 5, 5]), np.array([1.0, 3, 0, 0]), np.array([False, False, True, True])

    def scale(value):
        return shift.scale_seconds(load_config("recipe", None, [f"targets.scale={value}"]), lengths, w, chosen)

    assert scale("train") == 7.5  # a mean over segments: scale x the mean phase is the mean time to failure
    assert scale("weights") == 10.0
    assert scale("cycles") == 5.0
    assert scale(6.5) == 6.5


def test_adversarial_weights_lean_towards_the_test():
    train, _ = synthetic_tables(n_cycles=6, per_cycle=80)
    test = train[train["target"] > 6].sample(200, replace=True, random_state=0)  # a test of late-cycle, long-to-go segments
    feats = [c for c in train.columns if c.startswith(("NN_", "LGBM_"))][:6]
    w, rec = shift.adversarial_weights(train, test, feats, (0.1, 10.0), 0)
    assert w.mean() == pytest.approx(1) and w.max() / w.min() <= 100 + 1e-9  # clipped to 0.1-10x the mean, then normalised
    assert rec["auc"] > 0.6 and rec["effective_size"] < len(train)
    y = train["target"].to_numpy()
    assert np.average(y, weights=w) > y.mean() + 1.0  # the weighted mean moves towards the test's
    again, _ = shift.adversarial_weights(train, test, feats, (0.1, 10.0), 0)
    assert np.array_equal(w, again)  # seeded


def test_same_distribution_gives_flat_weights():
    train, test = synthetic_tables(n_cycles=6, per_cycle=80, n_test=300)
    feats = ["NN_num_peaks_3_denoise", "LGBM_num_peaks_2_denoise_simple"]
    w, rec = shift.adversarial_weights(train, train.sample(300, random_state=1), feats, (0.1, 10.0), 0)
    assert rec["auc"] < 0.6
    assert rec["effective_size"] > 0.7 * len(train)


def test_load_training_data_with_fraction_targets(tmp_path):
    feats = write_feature_dir(tmp_path / "f", n_cycles=5)
    cfg = load_config("recipe", None, ["targets.kind=fraction", "targets.scale=weights"])
    data = load_training_data(cfg, feats, LGBM)
    train = pd.read_parquet(feats / "train.parquet")
    assert sorted(data.train["cycle"].unique()) == [1, 2, 3]  # complete cycles; never the file's first
    assert data.train["target"].between(0, 1).all()
    np.testing.assert_allclose(data.train["target"] + data.train["tsf"], 1.0)
    kept = train[train["cycle"].isin([1, 2, 3])]
    np.testing.assert_allclose(data.seconds, kept["target"])  # seconds kept beside
    lengths = (kept["target"] + kept["tsf"]).to_numpy()
    assert data.oof_scale == pytest.approx(lengths.mean())
    assert data.test_scale == pytest.approx(np.average(lengths, weights=data.importance))
    assert data.weights is None  # the weights set the scale only: the models fit unweighted
    r = data.regime
    assert r["targets"] == "fraction" and r["test_scale"] == data.test_scale and "weighted_mean" in r["test_mean_ttf"]
    # a cycle list that names the first cycle: it is left out under fractions
    data = load_training_data(load_config("recipe", None, ["targets.kind=fraction", "data.train_cycles=[0,1,2]"]), feats, LGBM)
    assert sorted(data.train["cycle"].unique()) == [1, 2]


def test_weights_reach_lightgbm(tmp_path):
    from labquake.models import lgbm

    feats = write_feature_dir(tmp_path / "f", n_cycles=5)
    cfg = load_config("fast")
    plain = load_training_data(cfg, feats, LGBM)
    weighted = load_training_data(load_config("fast", None, ["data.weights=adversarial"]), feats, LGBM)
    assert plain.weights is None and weighted.weights is not None and len(weighted.weights) == len(weighted.train)
    inputs = lgbm.MODEL.prepare(cfg, plain)
    ones = lgbm.MODEL.fit_fold(cfg, lgbm.Inputs(inputs.X, inputs.y, inputs.X_test, 1, np.ones(len(inputs.y))), plain.folds, 0, 0, None)
    none = lgbm.MODEL.fit_fold(cfg, lgbm.Inputs(inputs.X, inputs.y, inputs.X_test, 1), plain.folds, 0, 0, None)
    np.testing.assert_allclose(ones.valid, none.valid)  # unit weights: the unweighted fit
    w = np.where(inputs.y > 5, 10.0, 0.1)
    skew = lgbm.MODEL.fit_fold(cfg, lgbm.Inputs(inputs.X, inputs.y, inputs.X_test, 1, w), plain.folds, 0, 0, None)
    assert np.mean(skew.valid) > np.mean(none.valid) + 0.3  # weight on long times to failure lifts the predictions


def test_fraction_run_scales_its_predictions(tiny_features, tmp_path):
    """Two runs that differ only in targets.scale fit the same models: their OOF predictions are the
    same and their test predictions differ by the ratio of the scales; predict reproduces the run."""
    from labquake.features.folder import FeatureFolder
    from labquake.models import run_train
    from labquake.models.train import predict_saved

    sets = ["blend.models=[lgbm]", "targets.kind=fraction"]
    a, b = load_config("fast", None, [*sets, "targets.scale=train"]), load_config("fast", None, [*sets, "targets.scale=12"])
    sa, sb = run_train(a, tiny_features, tmp_path / "a", device="cpu"), run_train(b, tiny_features, tmp_path / "b", device="cpu")
    ta, tb = (pd.read_parquet(tmp_path / r / "test.parquet") for r in ("a", "b"))
    oa, ob = (pd.read_parquet(tmp_path / r / "oof.parquet") for r in ("a", "b"))
    assert sb["regime"]["test_scale"] == 12.0
    np.testing.assert_allclose(tb["lgbm"], ta["lgbm"] * 12.0 / sa["regime"]["test_scale"])
    np.testing.assert_allclose(oa["lgbm"], ob["lgbm"])
    assert oa["target"].max() > 1.5  # oof.parquet holds seconds, not phases
    assert sa["oof_mae"]["lgbm"] < sa["baseline_median_mae"]
    table = pd.read_parquet(FeatureFolder(tiny_features).table_path("test"))
    again = predict_saved(b, tmp_path / "b", table, None, "cpu")["lgbm"]
    np.testing.assert_allclose(again, tb["lgbm"], rtol=1e-9)
    assert sb["regime"]["test_mean_ttf"]["predictions"]["lgbm"] == pytest.approx(tb["lgbm"].mean())


@pytest.mark.parametrize(
    "setting, needle",
    [
        ("targets.kind=phase", "targets.kind must be one of ttf, fraction"),
        ("targets.scale=0", "targets.scale must be a positive number"),
        ("targets.scale=-3", "targets.scale must be a positive number"),
        ("targets.scale=test", "targets.scale must be one of train, cycles, weights"),
        ("data.weights=uniform", "data.weights must be one of none, adversarial"),
        ("data.weight_bounds=[2,10]", "data.weight_bounds"),
    ],
)
def test_bad_settings_are_one_line_and_write_nothing(tmp_path, setting, needle):
    feats = write_feature_dir(tmp_path / "f")
    before = snapshot(tmp_path)
    out = cli("train", "--features", feats, "--run", tmp_path / "run", "--set", setting, "--set", "blend.models=[lgbm]")
    one_line_error(out, needle)
    assert snapshot(tmp_path) == before


def test_cycles_scale_without_auto_and_weights_without_test(tmp_path):
    feats = write_feature_dir(tmp_path / "f")
    before = snapshot(tmp_path)
    out = cli("train", "--features", feats, "--run", tmp_path / "run", "--set", "targets.kind=fraction", "--set", "targets.scale=cycles")
    one_line_error(out, "targets.scale=cycles", "data.train_cycles=auto")
    assert snapshot(tmp_path) == before
    test = pd.read_parquet(feats / "test.parquet").iloc[:1]  # one test segment: nothing to weight against
    test.to_parquet(feats / "test.parquet", index=False)
    before = snapshot(tmp_path)
    out = cli("train", "--features", feats, "--run", tmp_path / "run", "--set", "data.weights=adversarial", "--set", "blend.models=[lgbm]")
    one_line_error(out, "data.weights=adversarial", "1 test segments")
    assert snapshot(tmp_path) == before
    with pytest.raises(LabquakeError, match="test segments"):
        shift.adversarial_weights(*synthetic_tables(n_test=1)[:1], pd.DataFrame(), ["x"], (0.1, 10.0), 0)


def test_sample_weights_reach_the_network(tmp_path):
    """Unit weights train the unweighted network; weights on half the rows train another."""
    from labquake.models import network, nn

    network.setup_tensorflow("cpu")
    cfg = load_config("fast", None, ["nn.epochs=3", "nn.patience=3"])
    rng = np.random.default_rng(0)
    x = rng.random((96, 1, 5)).astype(np.float32)
    ttf = (x[:, 0, 0] * 10).astype(np.float32)
    y = {"ttf": ttf, "tsf": 10 - ttf, "binary": (ttf < 0.5).astype(np.float32)}
    net = nn.network(cfg, 5, "cpu")

    def fit(w):
        model, hist = network.fit_network(cfg.nn, net, x, y, x, y, tmp_path / "w.weights.h5", 0, sample_weight=w)
        return network.predict_ttf(model, x)

    plain, ones, half = fit(None), fit(np.ones(96)), fit(np.where(ttf > 5, 1.0, 0.0))
    np.testing.assert_allclose(ones, plain, rtol=0, atol=1e-5)
    assert np.abs(half - plain).max() > 1e-3


def test_preset_shift_trains_fractions_from_the_command_line(tmp_path):
    feats = write_feature_dir(tmp_path / "f", n_cycles=5)
    out = cli("train", "--features", feats, "--run", tmp_path / "run", "--preset", "shift", "--set", "blend.models=[lgbm]", "--set", "lgbm.seeds=[0]")
    assert out.returncode == 0, out.stderr[-2000:]
    regime = json.loads((tmp_path / "run" / "summary.json").read_text())["regime"]
    lengths = pd.read_parquet(feats / "train.parquet").query("cycle in [1, 2, 3]").eval("target + tsf")
    assert regime["targets"] == "fraction" and regime["scale"] == "train" and regime["test_scale"] == pytest.approx(lengths.mean())
