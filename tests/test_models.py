"""Training: shared folds, the recipe's LightGBM and network, OOF hygiene, rejection, run folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakes import fake_network, write_feature_dir

from labquake import models, targets, trainset
from labquake.config import load_config
from labquake.features import FEATURE_NAMES
from labquake.metric import mae
from labquake.models import cv, lgbm, network, nn
from labquake.util import LabquakeError

# A network small in epochs (not in architecture): enough to check plumbing quickly.
QUICK_NN = ["nn.runs=1", "nn.epochs=3", "nn.patience=2", "nn.max_redraws=0"]
QUICK_LGBM = ["lgbm.seeds=[0]", "lgbm.num_boost_round=300", "lgbm.early_stopping_rounds=30"]


@pytest.fixture(scope="module")
def feat_dir(tmp_path_factory) -> Path:
    return write_feature_dir(tmp_path_factory.mktemp("feat") / "features")


@pytest.fixture(scope="module")
def data(feat_dir):
    return models.training_data(load_config("fast"), feat_dir)


@pytest.fixture
def no_tf(monkeypatch):
    """Train with the fake network; returns the list of its calls."""
    return fake_network(monkeypatch)


# ---------------------------------------------------------------------------------------------
# Inputs and folds


def test_feature_columns_are_the_recipes_lists_by_default():
    cfg = load_config()
    assert len(cfg.lgbm.features) == 6 and len(cfg.nn.features) == 21 and cfg.svr.features == cfg.nn.features
    assert cfg.lgbm.features[0] == "NN_LGBM_percentile_roll20_std_50"  # in table order
    assert [c for c in FEATURE_NAMES if c in cfg.lgbm.features] == list(cfg.lgbm.features)
    assert models.reads(cfg) == {"lgbm": cfg.lgbm.features, "nn": cfg.nn.features} and models.reads(cfg, ["seq"]) == {}


def test_load_selects_cycles_and_makes_shared_folds(feat_dir):
    cfg = load_config("fast", None, ["data.train_cycles=[0, 2, 3]"])
    d = models.training_data(cfg, feat_dir)
    assert sorted(d.train["cycle"].unique()) == [0, 2, 3] and d.features_key == "k1"
    assert np.array_equal(d.folds, targets.fold_ids(d.train["cycle"].to_numpy(), cfg))
    assert sorted(np.bincount(d.folds)) == [60, 60, 60]  # every row in exactly one validation fold


def test_cycle_scheme_folds_hold_whole_cycles(feat_dir):
    cfg = load_config("fast", None, ["cv.scheme=cycles", "data.train_cycles=[0,1,2,3]"])
    d = models.training_data(cfg, feat_dir)
    per_cycle = d.train.assign(fold=d.folds).groupby("cycle")["fold"].nunique()
    assert (per_cycle == 1).all() and len(np.unique(d.folds)) == 3


def test_ks_min_p_drops_the_features_that_differ_from_test(feat_dir):
    from labquake.stats import ks_table

    base = models.training_data(load_config("fast"), feat_dir)
    feats = list(dict.fromkeys(base.reads["lgbm"] + base.reads["nn"]))
    ks = ks_table(base.train, base.test, feats).set_index("feature")["p_value"]
    p = float(np.median(ks))  # about half the features fall below it
    cfg = load_config("fast", None, [f"features.ks_min_p={p!r}"])
    d = models.training_data(cfg, feat_dir)  # the tables' feature settings still match
    assert set(d.dropped_features) == set(ks.index[ks < p]) and 0 < len(d.dropped_features) < len(feats)
    assert not set(d.dropped_features) & set(d.train.columns) and not set(d.dropped_features) & set(d.test.columns)
    assert models.train_key(cfg) != models.train_key(load_config("fast"))  # a run with a selection is another run
    with pytest.raises(LabquakeError, match="drops every feature of a model"):
        models.training_data(load_config("fast", None, ["features.ks_min_p=1.01"]), feat_dir)


def test_auto_train_cycles_are_chosen_recorded_and_plotted(tmp_path, no_tf):
    feat_dir = write_feature_dir(tmp_path / "features", n_cycles=6, per_cycle=30)
    cfg = load_config("fast", None, [*QUICK_LGBM, "data.train_cycles=auto", "data.auto_draws=50", "nn.runs=1"])
    d = models.training_data(cfg, feat_dir)
    assert sorted(d.train["cycle"].unique().tolist()) == d.cycle_choice["chosen"]
    summary = models.run_train(cfg, feat_dir, tmp_path / "run", device="cpu")
    record = json.loads((tmp_path / "run" / "cycles.json").read_text())
    assert record["chosen"] == summary["train_cycles"] == d.cycle_choice["chosen"] and len(record["draw_scores"]) == 50
    assert (tmp_path / "run" / "cycles.png").read_bytes()[:4] == b"\x89PNG"


def test_auto_cycles_and_cycle_folds_on_tiny(tiny_features, tmp_path, no_tf):
    """On the tiny synthetic data: the choice is seeded and recorded, and the folds hold whole cycles."""
    sets = [*QUICK_LGBM, "data.train_cycles=auto", "data.auto_draws=30", "cv.scheme=cycles", "cv.n_splits=2", "nn.runs=1"]
    cfg = load_config("fast", None, sets)
    first, again = models.training_data(cfg, tiny_features), models.training_data(cfg, tiny_features)
    assert first.cycle_choice["chosen"] == again.cycle_choice["chosen"] and first.cycle_choice["draw_scores"] == again.cycle_choice["draw_scores"]
    summary = models.run_train(cfg, tiny_features, tmp_path / "run", device="cpu")
    assert summary["cv_scheme"] == "cycles" and summary["train_cycles"] == first.cycle_choice["chosen"]
    oof = pd.read_parquet(tmp_path / "run" / "oof.parquet")
    assert (oof.groupby("cycle")["fold"].nunique() == 1).all()
    assert json.loads((tmp_path / "run" / "cycles.json").read_text())["chosen"] == first.cycle_choice["chosen"]


def test_bad_feature_folder_is_one_line_error(tmp_path, feat_dir):
    with pytest.raises(LabquakeError, match="features.json"):
        models.training_data(load_config("fast"), tmp_path)
    bad = write_feature_dir(tmp_path / "nan")
    table = pd.read_parquet(bad / "test.parquet")
    table.loc[3, "NN_quant99"] = np.nan
    table.to_parquet(bad / "test.parquet")
    with pytest.raises(LabquakeError, match=r"test\.parquet: non-finite values in NN_quant99"):
        models.training_data(load_config("fast"), bad)


def test_features_of_another_version_or_configuration_are_refused(tmp_path):
    import dataclasses

    import labquake

    path = write_feature_dir(tmp_path / "f")
    meta = json.loads((path / "features.json").read_text())
    made = load_config("fast", None, ["features.wavelet=db8"])
    (path / "features.json").write_text(json.dumps({**meta, "version": labquake.__version__, "config": made.to_dict()}))
    with pytest.raises(LabquakeError, match=r"other feature settings \(features\.wavelet\)"):
        models.training_data(load_config("fast"), path)
    assert models.training_data(made, path).n_rows == meta["n_rows"]  # the same settings: accepted
    (path / "features.json").write_text(json.dumps({**meta, "version": "0.0.1", "config": {"features": dataclasses.asdict(made.features)}}))
    with pytest.raises(LabquakeError, match="made by labquake 0.0.1"):
        models.training_data(made, path)


# ---------------------------------------------------------------------------------------------
# LightGBM


def _lgbm(cfg, data, seed, draw_dir):
    return cv.cross_validate("lgbm", cfg, lgbm.MODEL.prepare(cfg, data), data.folds, len(data.test), seed, draw_dir)


def test_lgbm_gets_the_recipe_parameters(data, tmp_path, monkeypatch):
    import lightgbm as lgb

    seen: list[dict] = []
    real_train = lgb.train
    monkeypatch.setattr(lgb, "train", lambda params, *a, **kw: seen.append(params) or real_train(params, *a, **kw))
    cfg = load_config("recipe", None, ["lgbm.num_boost_round=50", "lgbm.early_stopping_rounds=10"])
    res = _lgbm(cfg, data, 7, tmp_path)
    assert len(seen) == 3
    expected = {
        "objective": "fair",
        "metric": "mae",
        "num_leaves": 4,
        "min_data_in_leaf": 5,
        "max_depth": -1,
        "learning_rate": 0.01,
        "boosting": "gbdt",
        "boost_from_average": True,
        "feature_fraction": 0.9,
        "bagging_freq": 1,
        "bagging_fraction": 0.5,
        "bagging_seed": 0,
        "max_bin": 500,
        "reg_alpha": 0.0,
        "reg_lambda": 0.0,
        "seed": 7,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    assert {k: seen[0].get(k) for k in expected} == expected
    assert "[max_bin: 500]" in (tmp_path / "fold0.txt").read_text()  # reached the Dataset
    gains = np.array([f["gain"] for f in res.folds])
    assert gains.shape == (3, 6) and (gains >= 0).all()


def test_lgbm_oof_rows_come_from_boosters_that_did_not_see_them(data, monkeypatch, tmp_path):
    import lightgbm as lgb

    seen: list[np.ndarray] = []
    real_train = lgb.train

    def spy(params, train_set, *args, **kwargs):
        seen.append(np.asarray(train_set.data.index))  # a DataFrame slice keeps the row labels
        return real_train(params, train_set, *args, **kwargs)

    monkeypatch.setattr(lgb, "train", spy)
    cfg = load_config("fast", None, QUICK_LGBM)
    cols = list(cfg.lgbm.features)
    X = data.train[cols]
    res = _lgbm(cfg, data, 0, tmp_path)
    for k, rows in enumerate(seen):
        valid = np.flatnonzero(data.folds == k)
        assert not np.intersect1d(rows, valid).size and len(rows) + len(valid) == len(X)
        booster = lgb.Booster(model_file=str(tmp_path / f"fold{k}.txt"))  # saved at its best iteration
        assert booster.current_iteration() == res.folds[k]["best_iteration"]
        assert np.array_equal(res.oof[valid], booster.predict(X.iloc[valid]))
    assert np.isfinite(res.oof).all()


def test_lgbm_is_deterministic_per_seed(data, tmp_path):
    cfg = load_config("fast", None, QUICK_LGBM)
    a, b, c = _lgbm(cfg, data, 3, tmp_path / "a"), _lgbm(cfg, data, 3, tmp_path / "b"), _lgbm(cfg, data, 4, tmp_path / "c")
    assert np.array_equal(a.oof, b.oof) and np.array_equal(a.test, b.test)
    assert not np.array_equal(a.oof, c.oof)


# ---------------------------------------------------------------------------------------------
# The network


def test_network_architecture():
    import keras

    cfg = load_config("recipe")
    model = nn.build_network(cfg, 21)
    assert tuple(model.input_shape) == (None, 1, 21)
    body = [(type(x).__name__, getattr(x, "units", getattr(x, "filters", None))) for x in model.layers if x.name not in network.HEADS]
    assert body == [
        ("InputLayer", None),
        ("BatchNormalization", None),
        ("LSTM", 128),
        ("Conv1D", 128),
        ("Conv1D", 84),
        ("Conv1D", 64),
        ("Flatten", None),
        ("Dense", 64),
        ("Dense", 32),
    ]
    lstm = model.get_layer(index=2)
    assert lstm.return_sequences
    for conv in [x for x in model.layers if isinstance(x, keras.layers.Conv1D)]:
        assert conv.kernel_size == (2,) and conv.padding == "same" and conv.activation.__name__ == "relu"
    heads = {h: (model.get_layer(h).units, model.get_layer(h).activation.__name__) for h in network.HEADS}
    assert heads == {"ttf": (1, "relu"), "tsf": (1, "linear"), "binary": (1, "sigmoid")}
    assert sorted(model.output_names) == ["binary", "tsf", "ttf"]
    compiled = model.get_compile_config()
    assert compiled["loss"] == {"ttf": "mae", "tsf": "mae", "binary": "binary_crossentropy"}
    assert compiled["loss_weights"] == {"ttf": 8.0, "tsf": 1.0, "binary": 1.0}
    assert compiled["metrics"] == {"ttf": ["mae"]}
    assert compiled["optimizer"]["class_name"] == "Nadam"
    assert compiled["optimizer"]["config"]["learning_rate"] == pytest.approx(0.008)


def test_fit_monitors_a_logged_metric_and_is_reproducible(data, tmp_path):
    network.setup_tensorflow("cpu")
    cfg = load_config("fast", None, QUICK_NN)
    inputs = nn.MODEL.prepare(cfg, data)
    X = inputs.X[:100]
    x = (X / np.abs(X).max(axis=0)).astype(np.float32).reshape(100, 1, -1)
    yy = {h: v[:100] for h, v in inputs.y.items()}

    def build(compile):
        return nn.build_network(cfg, x.shape[-1], compile)

    def fit(name, seed, net=None, **kw):
        model, hist = network.fit_network(cfg.nn, net or network.ReusedNetwork(build), x, yy, x, yy, tmp_path / name, seed=seed, **kw)
        return network.predict_ttf(model, x), hist

    a, hist = fit("a.weights.h5", 0)
    assert network.MONITOR in hist.columns and len(hist) == 3 and (tmp_path / "a.weights.h5").is_file()
    # the weights kept (and saved) are those of the best epoch, not the last
    assert mae(yy["ttf"], a) == pytest.approx(hist[network.MONITOR].min(), rel=1e-5)
    fresh = nn.build_network(cfg, x.shape[-1])
    fresh.load_weights(str(tmp_path / "a.weights.h5"))
    np.testing.assert_allclose(network.predict_ttf(fresh, x), a, rtol=0, atol=1e-6)
    b, _ = fit("b.weights.h5", 0)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)  # same seed, same network
    c, _ = fit("c.weights.h5", 1)
    assert np.abs(a - c).max() > 1e-4  # another seed, another network
    # a compiled network reused after another fit (and a learning rate cut) starts like a new one
    net = network.ReusedNetwork(build)
    c2, _ = fit("c2.weights.h5", 1, net)
    np.testing.assert_allclose(c2, c, rtol=0, atol=1e-6)
    net.model.optimizer.learning_rate.assign(1e-6)
    a2, hist2 = fit("a2.weights.h5", 0, net)
    np.testing.assert_allclose(a2, a, rtol=0, atol=1e-6)
    np.testing.assert_allclose(hist2[network.MONITOR], hist[network.MONITOR], rtol=1e-6)
    with pytest.raises(RuntimeError, match="'val_ttf_mean_absolute_error' is not logged"):
        fit("d.weights.h5", 0, monitor="val_ttf_mean_absolute_error")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        fit("e.h5", 0)


def test_steps_per_execution_leaves_the_fit_unchanged(data, tmp_path, monkeypatch):
    """Several training steps per graph call (network.STEPS_PER_EXECUTION) give the bytes of one a call."""
    network.setup_tensorflow("cpu")
    cfg = load_config("fast", None, ["nn.epochs=4", "nn.patience=4", "nn.batch_size=32", "nn.min_steps_per_epoch=0"])
    inputs = nn.MODEL.prepare(cfg, data)
    x = (inputs.X / np.abs(inputs.X).max(axis=0)).astype(np.float32).reshape(len(inputs.X), 1, -1)  # 180 rows: 6 steps an epoch

    def fit(steps):
        monkeypatch.setattr(network, "STEPS_PER_EXECUTION", steps)
        net = network.ReusedNetwork(lambda compile: nn.build_network(cfg, x.shape[-1], compile))
        model, hist = network.fit_network(cfg.nn, net, x, inputs.y, x, inputs.y, tmp_path / f"s{steps}.weights.h5", 3)
        return network.predict_ttf(model, x), hist[network.MONITOR].to_numpy()

    (p1, h1), (p32, h32) = fit(1), fit(32)
    assert np.array_equal(p1, p32) and np.array_equal(h1, h32)


def test_network_oof_rows_come_from_networks_that_did_not_see_them(data, tmp_path, monkeypatch):
    from sklearn.preprocessing import MinMaxScaler

    network.setup_tensorflow("cpu")
    cfg = load_config("fast", None, QUICK_NN)
    inputs = nn.MODEL.prepare(cfg, data, "cpu")
    seen: list[tuple] = []
    real_fit = network.fit_network

    def spy(c, net, x_train, y_train, x_valid, y_valid, weights_path, seed, **kw):
        model, hist = real_fit(c, net, x_train, y_train, x_valid, y_valid, weights_path, seed, **kw)
        seen.append((y_train["ttf"].copy(), y_valid["ttf"].copy(), x_train.copy(), network.predict_ttf(model, x_valid)))
        return model, hist

    monkeypatch.setattr(network, "fit_network", spy)
    res = cv.cross_validate("nn", cfg, inputs, data.folds, len(data.test), 5, tmp_path)
    y = inputs.y["ttf"]
    for k, (ytr, yva, xtr, pred) in enumerate(seen):
        assert np.array_equal(yva, y[data.folds == k]) and np.array_equal(ytr, y[data.folds != k])  # validated on fold k, trained on the rest
        # min-max scaled on the training fold alone, as sklearn's MinMaxScaler does it
        expected = MinMaxScaler().fit(inputs.X[data.folds != k]).transform(inputs.X[data.folds != k]).astype(np.float32)
        assert xtr.shape == (int((data.folds != k).sum()), 1, 21) and np.array_equal(xtr[:, 0], expected)
        assert np.array_equal(res.oof[data.folds == k], pred)  # OOF of fold k from that network
    assert len(seen) == 3 and np.isfinite(res.oof).all() and np.isfinite(res.test).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"fold{k}.weights.h5" for k in range(3)]
    assert [f["best_epoch"] for f in res.folds] == [int(np.argmin(h)) + 1 for h in res.history.groupby("fold")[network.MONITOR].apply(list)]
    # predict from the saved folds gives the test predictions of training
    saved = nn.MODEL.predict_saved(cfg, tmp_path, res.folds, data.test[list(cfg.nn.features)], None, "cpu")
    np.testing.assert_allclose(saved, res.test, rtol=0, atol=1e-6)


def test_recipe_conv1d_on_one_step_is_a_dense_layer_of_its_first_tap():
    """The recipe's Conv1D (kernel 2, "same") on its one-step input: the output of a Dense layer made of
    the kernel's first tap. On a real sequence the second tap is used: it is not a dense layer."""
    import keras

    network.setup_tensorflow("cpu")
    keras.utils.set_random_seed(0)
    conv = keras.layers.Conv1D(8, 2, padding="same", activation="relu")
    x1 = np.random.default_rng(0).normal(size=(5, 1, 6)).astype(np.float32)
    out1 = np.asarray(conv(x1))
    kernel, bias = (np.asarray(w) for w in conv.get_weights())  # kernel: (taps, in, out)
    dense = keras.layers.Dense(8, activation="relu")
    dense.build((None, 6))
    dense.set_weights([kernel[0], bias])
    np.testing.assert_allclose(out1[:, 0], np.asarray(dense(x1[:, 0])), rtol=1e-6, atol=1e-6)
    # padding "same" with kernel 2 pads one zero step at the end: the second tap only ever sees it
    x = np.random.default_rng(1).normal(size=(5, 4, 6)).astype(np.float32)
    out = np.asarray(conv(x))
    by_first_tap = np.asarray(dense(x.reshape(-1, 6))).reshape(5, 4, 8)
    assert np.abs(out[:, :-1] - by_first_tap[:, :-1]).max() > 1e-2  # the next step's tap counts
    both = np.maximum(x[:, :-1] @ kernel[0] + x[:, 1:] @ kernel[1] + bias, 0)
    np.testing.assert_allclose(out[:, :-1], both, rtol=1e-5, atol=1e-5)


def test_device_gpu_without_gpu_is_a_clear_error():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    with pytest.raises(LabquakeError, match="--device gpu: TensorFlow sees no GPU"):
        network.setup_tensorflow("gpu")
    assert network.setup_tensorflow("auto") == "cpu"


# ---------------------------------------------------------------------------------------------
# The sequence network

QUICK_SEQ = ["seq.runs=1", "seq.epochs=4", "seq.patience=2", "seq.max_redraws=0", "seq.reject_ratio=100.0"]


def test_seq_architectures_are_the_two_standard_patterns():
    from labquake.models import seq

    def body(model):
        return [type(x).__name__ for x in model.layers if x.name not in network.HEADS]

    gru = seq.build_network(load_config("recipe"), 150, 5)
    assert tuple(gru.input_shape) == (None, 150, 5)
    assert body(gru) == ["InputLayer", "Conv1D", "MaxPooling1D", "Conv1D", "MaxPooling1D", "GRU", "Dropout", "Dense"]
    assert gru.get_layer(index=5).input.shape[1] == 150 // 4  # the pooling shortened the sequence before the GRU
    lstm = seq.build_network(load_config("recipe", None, ["seq.arch=causal_lstm"]), 150, 5)
    assert body(lstm) == ["InputLayer", "Conv1D", "LSTM", "LSTM", "Dropout", "Dense"]
    import typing

    from labquake.config import SeqArch

    assert tuple(seq.BODIES) == typing.get_args(SeqArch)  # every choice of seq.arch has its body
    assert lstm.get_layer(index=1).padding == "causal" and lstm.get_layer(index=2).return_sequences
    for model in (gru, lstm):  # the recipe's heads and loss
        compiled = model.get_compile_config()
        assert compiled["loss"] == {"ttf": "mae", "tsf": "mae", "binary": "binary_crossentropy"}
        assert compiled["loss_weights"] == {"ttf": 8.0, "tsf": 1.0, "binary": 1.0}


def test_seq_fits_do_not_depend_on_the_fits_before_them(tmp_path):
    """A reused network starts every fit from all of a fresh network's variables, the state of its
    Dropout's seed generator included: otherwise the masks, and the results, depend on history."""
    from fakes import fake_sequences

    from labquake.models import seq

    network.setup_tensorflow("cpu")
    cfg = load_config("fast", None, ["seq.epochs=3", "seq.patience=3", "seq.dropout=0.5"])
    y_ttf = np.linspace(0.1, 10, 64)
    x = fake_sequences(y_ttf, 0, steps=40, channels=3)
    y = {"ttf": y_ttf.astype(np.float32), "tsf": (10 - y_ttf).astype(np.float32), "binary": (y_ttf < 0.5).astype(np.float32)}

    def fit(net, seed, name):
        model, _ = network.fit_network(cfg.seq, net, x, y, x, y, tmp_path / f"{name}.weights.h5", seed)
        return network.predict_ttf(model, x)

    first = fit(network.ReusedNetwork(lambda compile: seq.build_network(cfg, 40, 3, compile)), 1, "a")
    reused = network.ReusedNetwork(lambda compile: seq.build_network(cfg, 40, 3, compile))
    fit(reused, 0, "b")
    assert np.array_equal(fit(reused, 1, "c"), first)  # bit for bit


def test_train_with_seq_adds_its_column_and_predicts_from_saved_folds(tmp_path):
    feat = write_feature_dir(tmp_path / "features", sequences=True, n_cycles=6)  # 4 complete cycles of 60 segments
    cfg = load_config("fast", None, [*QUICK_LGBM, *QUICK_NN, "nn.reject_ratio=100.0", *QUICK_SEQ, 'blend.models=["lgbm","nn","seq"]'])
    summary = models.run_train(cfg, feat, tmp_path / "run", device="cpu")
    assert summary["models"] == ["lgbm", "nn", "seq"] and set(summary["blend_weights"]) == {"lgbm", "nn", "seq"}
    assert summary["model"]["seq"]["draws"] == 1 and summary["model"]["seq"]["reject_relative_to"] == "lgbm"
    oof, test = pd.read_parquet(tmp_path / "run" / "oof.parquet"), pd.read_parquet(tmp_path / "run" / "test.parquet")
    assert list(oof.columns[-3:]) == ["lgbm", "nn", "seq"] and list(test.columns) == ["seg_id", "lgbm", "nn", "seq"]
    assert np.isfinite(oof["seq"]).all() and (tmp_path / "run" / "seq" / "draw00" / "fold2.weights.h5").is_file()
    runs = json.loads((tmp_path / "run" / "seq" / "runs.json").read_text())["runs"]
    assert len(runs[0]["best_epoch"]) == 3 and runs[0]["n_train"] == [160, 160, 160]
    sequences = np.load(feat / "test_seq.npy")
    saved = models.predict_saved(cfg, tmp_path / "run", pd.read_parquet(feat / "test.parquet"), sequences, "cpu")
    np.testing.assert_allclose(saved["seq"], test["seq"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(saved["nn"], test["nn"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(saved["lgbm"], test["lgbm"], rtol=1e-12)


def test_overlapping_windows_train_only_folds_they_do_not_leak_into(tmp_path, monkeypatch):
    """seq_overlap: a shifted window joins fold k's training only if it shares no row with fold k's validation."""
    from labquake.models import seq

    feat = write_feature_dir(tmp_path / "features", sequences=True)
    cfg = load_config("fast", None, [*QUICK_SEQ, "features.seq_overlap=true", "data.train_cycles=[0,1,2,3]"])
    train = pd.read_parquet(feat / "train.parquet")
    # half-segment windows inside each cycle (the fake tables put one segment every 150,000 rows)
    extra = train.groupby("cycle").apply(lambda t: t.iloc[:-1], include_groups=False).reset_index(level=0)
    extra = extra.assign(start=extra["start"] + 75_000)[["start", "cycle", "target", "tsf", "binary"]].reset_index(drop=True)
    extra["target"] = 1000.0 + np.arange(len(extra))  # each window's row number, recoverable from what training got
    extra.to_parquet(feat / "train_seq_extra.parquet")
    np.save(feat / "train_seq_extra.npy", np.ones((len(extra), 150, 5), np.float32))
    data = models.training_data(cfg, feat)
    inputs = seq.MODEL.prepare(cfg, data, "cpu")
    seen = {}

    def fake_fit(c, net, x_tr, y_tr, x_va, y_va, path, seed, **kw):
        seen[path.name] = (x_tr, y_tr["ttf"])
        raise StopIteration

    monkeypatch.setattr(network, "fit_network", fake_fit)
    monkeypatch.setattr(seq, "network", lambda *a: None)
    starts = data.train["start"].to_numpy()
    for k in range(3):
        with pytest.raises(StopIteration):
            seq.MODEL.fit_fold(cfg, inputs, data.folds, k, 0, tmp_path)
        x_tr, y_tr = seen[f"fold{k}.weights.h5"]
        n_own = int((data.folds != k).sum())
        assert len(x_tr) == len(y_tr) and np.array_equal(y_tr[:n_own], inputs.y["ttf"][data.folds != k])
        used = np.rint(y_tr[n_own:] - 1000).astype(int)  # the extra windows' row numbers
        valid = starts[data.folds == k]
        leak_free = [i for i, s in enumerate(extra["start"]) if not ((valid < s + 150_000) & (valid + 150_000 > s)).any()]
        assert sorted(used) == leak_free  # by brute force: every window sharing no row with a validation segment, and only those
        assert 0 < len(used) < len(extra)


def test_bad_model_settings_are_one_line_exit_2(tmp_path, capsys):
    from labquake.cli import main

    feat = write_feature_dir(tmp_path / "features")
    for setting, message in [
        ('blend.models=["lgbm","xgb"]', "blend.models: unknown model 'xgb' (known: lgbm, nn, seq, svr)"),
        ("seq.arch=transformer", "seq.arch must be one of conv_gru, causal_lstm"),
        ("features.seq_window=7", "features.seq_window must divide the segment's 150000 rows"),
        ("blend.weights=magic", "blend.weights must be one of equal, fitted"),
    ]:
        assert main(["train", "--features", str(feat), "--run", str(tmp_path / "run"), "--fast", "--set", setting]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written


# ---------------------------------------------------------------------------------------------
# Rejection and redraws


def test_run_draws_rejects_and_redraws_up_to_a_limit():
    bad = {0, 2}  # draws that fail
    batches: list[list[int]] = []

    def draw(ds):
        batches.append(ds)
        return ["failed" if d in bad else None for d in ds]

    assert cv.run_draws(draw, runs=2, max_redraws=3) == [False, True, False, True]
    assert batches == [[0, 1], [2], [3]]  # batches of as many as are missing: none a one-by-one loop would skip
    batches.clear()
    assert cv.run_draws(draw, runs=3, max_redraws=1) == [False, True, False, True]  # 4 draws at most
    assert batches == [[0, 1, 2], [3]]
    assert cv.run_draws(lambda ds: ["failed"] * len(ds), runs=1, max_redraws=1) == [False, False]  # no error here


def test_keep_runs_when_every_draw_is_rejected():
    assert cv.keep_runs([2.0, 1.0, 3.0], [False, True, True], runs=2, on_reject="error") == ([False, True, True], None)
    scores = [2.0, float("nan"), 1.0, 1.5]
    assert cv.keep_runs(scores, [False] * 4, runs=2, on_reject="drop") == ([False, False, True, True], "drop")
    assert cv.keep_runs(scores, [False] * 4, runs=2, on_reject="best") == ([False, False, True, True], "best")
    with pytest.raises(LabquakeError, match=r"all 4 draws rejected \(best OOF MAE 1\.0000; nn/runs.json says why\); without --strict") as err:
        cv.keep_runs(scores, [False] * 4, runs=2, on_reject="error")
    assert "\n" not in str(err.value)
    with pytest.raises(LabquakeError, match="nn.on_reject must be one of drop, best, error"):
        load_config("recipe", None, ["nn.on_reject=maybe"])


def _mixed(y: np.ndarray, folds: np.ndarray, share: float) -> np.ndarray:
    """Predictions with exactly ``share`` x the OOF MAE of predicting each training fold's mean."""
    const = trainset.fold_baseline(y, folds, np.mean)
    return (1 - share) * y + share * const


def test_reject_rule_rejects_what_failed_to_learn_relative_to_lightgbm():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 14, 600)
    folds = rng.integers(0, 3, 600)
    cfg = load_config("recipe")
    constant = mae(y, trainset.fold_baseline(y, folds, np.mean))
    lgbm = _mixed(y, folds, 0.8)  # LightGBM at 0.8 x the constant: hard data
    bound, relative_to = cv.reject_bound(cfg.nn.reject_ratio, y, folds, lgbm)
    assert relative_to == "lgbm" and bound == pytest.approx(1.1 * 0.8 * constant)
    assert cv.reject_reason(y, _mixed(y, folds, 0.85), folds, bound) is None  # 0.85 x the constant: learned
    assert cv.reject_reason(y, _mixed(y, folds, 0.9), folds, bound).startswith("OOF MAE")  # 1.125 x LightGBM
    # dead ReLU output (zeros), and a network that collapsed to its fold's mean: constant in a fold
    assert cv.reject_reason(y, np.zeros_like(y), folds, 100.0).startswith("constant predictions")
    assert cv.reject_reason(y, trainset.fold_baseline(y, folds, np.mean), folds, 100.0).startswith("constant predictions")
    dead_fold = np.where(folds == 1, 7.0, y)  # perfect elsewhere, dead in one fold
    assert cv.reject_reason(y, dead_fold, folds, 100.0).startswith("constant predictions")
    assert cv.reject_reason(y, np.full_like(y, np.nan), folds, 100.0) == "non-finite predictions"
    # without LightGBM: 0.7 x predict-the-mean, as before
    assert cv.reject_bound(cfg.nn.reject_ratio, y, folds, None) == (pytest.approx(0.7 * constant), "mean")
    # the recipe's absolute bound on the real data: the winners' LightGBM CV was about 1.83
    assert cfg.nn.reject_ratio * 1.83 == pytest.approx(2.0, abs=0.02)


def test_batch_keeps_the_recipe_at_real_size_and_steps_on_small_folds():
    cfg = load_config("recipe")
    assert cfg.nn.batch_size == 256 and cfg.nn.min_steps_per_epoch == 6
    for n_train in (1536, 1700, 2800, 100_000):  # real-data folds: the recipe's batch, unchanged
        assert network.batch_size(cfg.nn, n_train) == 256
    assert network.batch_size(cfg.nn, 1535) == 255
    assert network.batch_size(cfg.nn, 170) == 28  # ~170 training rows: 6 steps an epoch, not 1
    assert network.batch_size(cfg.nn, 40) == 16  # never below 16
    off = load_config("recipe", None, ["nn.min_steps_per_epoch=0"])
    assert network.batch_size(off.nn, 170) == 256
    with pytest.raises(LabquakeError, match="min_steps_per_epoch must be >= 0"):
        load_config("recipe", None, ["nn.min_steps_per_epoch=-1"])


def test_train_rejects_bad_runs_and_averages_accepted_ones(feat_dir, tmp_path, monkeypatch):
    # draw 0 is useless (noise far above the bound), draws 1 and 2 are good
    calls = fake_network(monkeypatch, quality={0: 50.0})
    cfg = load_config("fast", None, QUICK_LGBM + ["nn.runs=2", "nn.max_redraws=2", "nn.seed=10"])
    run = tmp_path / "run"
    summary = models.run_train(cfg, feat_dir, run, device="cpu")
    assert [c["seed"] for c in calls] == [10, 11, 12]  # seed = nn.seed + draw: distinct
    runs = json.loads((run / "nn" / "runs.json").read_text())
    assert [r["accepted"] for r in runs["runs"]] == [r["kept"] for r in runs["runs"]] == [False, True, True]
    assert runs["runs"][0]["rejected_because"].startswith("OOF MAE") and runs["runs"][1]["rejected_because"] is None
    oof = pd.read_parquet(run / "oof.parquet")
    assert runs["reject_ratio"] == cfg.nn.reject_ratio == 1.5  # the fast preset's
    assert runs["reject_relative_to"] == summary["model"]["nn"]["reject_relative_to"] == "lgbm"
    assert runs["reject_bound"] == pytest.approx(1.5 * mae(oof["target"], oof["lgbm"]))  # LightGBM on the same folds
    test = pd.read_parquet(run / "test.parquet")
    assert np.allclose(test["nn"], 11.5)  # mean of the accepted draws' test predictions (= their seeds)
    assert summary["model"]["nn"]["seeds"] == [11, 12] and summary["model"]["nn"]["draws"] == 3 and summary["model"]["nn"]["accepted"] == 2
    assert summary["model"]["nn"]["fallback"] is None


def test_every_draw_rejected_still_ends_with_a_submission(feat_dir, tmp_path, no_tf, capsys):
    """`labquake train` + `labquake submit` with an impossible bound: LightGBM alone, said and recorded."""
    from labquake.cli import main

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ids = pd.read_parquet(feat_dir / "test.parquet")["seg_id"].tolist()[::-1]  # the sample's order decides
    pd.DataFrame({"seg_id": ids, "time_to_failure": 0}).to_csv(data_dir / "sample_submission.csv", index=False)
    run, subs = tmp_path / "run", tmp_path / "subs"
    flags = ["--fast", *[a for s in QUICK_LGBM + ["nn.runs=2", "nn.max_redraws=1", "nn.reject_ratio=0.0001"] for a in ("--set", s)]]
    assert main(["train", "--features", str(feat_dir), "--run", str(run), *flags]) == 0
    err = capsys.readouterr().err
    assert "nn: all 3 draws rejected" in err and "nn.on_reject=drop: the blend is lgbm" in err
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["model"]["nn"]["fallback"],
        summary["model"]["nn"]["accepted"],
        summary["model"]["nn"]["draws"],
        summary["model"]["nn"]["runs"],
    ) == ("drop", 0, 3, 2)
    runs = json.loads((run / "nn" / "runs.json").read_text())
    assert runs["fallback"] == "drop" and not any(r["accepted"] for r in runs["runs"]) and sum(r["kept"] for r in runs["runs"]) == 2
    assert len(summary["model"]["nn"]["seeds"]) == 2  # the best two draws stay in the nn column, for inspection

    assert main(["submit", "--run", str(run), "--data", str(data_dir), "--out", str(subs), *flags]) == 0
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "all 3 draws rejected" in warnings[0] and "blend (lgbm)" in out
    sub = pd.read_csv(subs / "submission_geomean.csv")
    lgbm = pd.read_csv(subs / "submission_lgbm.csv")
    assert list(sub.columns) == ["seg_id", "time_to_failure"] and list(sub["seg_id"]) == ids
    assert np.isfinite(sub["time_to_failure"]).all() and (sub["time_to_failure"] >= 0.1).all()
    pd.testing.assert_frame_equal(sub, lgbm)  # the blend is LightGBM alone
    assert (subs / "submission_nn.csv").is_file()
    record = json.loads((run / "blend.json").read_text())
    assert record["fallbacks"] == {"nn": "drop"} and record["weights"] == {"lgbm": 1.0}


def test_on_reject_best_blends_the_best_draws(feat_dir, tmp_path, no_tf):
    cfg = load_config("fast", None, QUICK_LGBM + ["nn.runs=1", "nn.max_redraws=2", "nn.reject_ratio=0.0001", "nn.on_reject=best"])
    summary = models.run_train(cfg, feat_dir, tmp_path / "run", device="cpu")
    runs = json.loads((tmp_path / "run" / "nn" / "runs.json").read_text())["runs"]
    best = min(runs, key=lambda r: r["oof_mae"])
    assert (
        summary["model"]["nn"]["fallback"] == "best"
        and summary["model"]["nn"]["seeds"] == [best["seed"]]
        and [r["kept"] for r in runs].count(True) == 1
    )
    assert np.allclose(pd.read_parquet(tmp_path / "run" / "test.parquet")["nn"], best["seed"])


def test_strict_is_a_one_line_error_exit_2(feat_dir, tmp_path, no_tf, capsys):
    from labquake.cli import main

    run = tmp_path / "run"
    args = ["train", "--features", str(feat_dir), "--run", str(run), "--fast", "--strict", "-q"]
    args += [a for s in QUICK_LGBM + ["nn.runs=1", "nn.max_redraws=1", "nn.reject_ratio=0.0001"] for a in ("--set", s)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("labquake train: error: nn: all 2 draws rejected") and len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert not (run / "summary.json").exists()  # no finished run to submit
    assert [r["rejected_because"] is not None for r in json.loads((run / "nn" / "runs.json").read_text())["runs"]] == [True, True]
    # the same through the setting; a rerun reuses the draws it had
    no_tf.clear()
    cfg = load_config("fast", None, QUICK_LGBM + ["nn.runs=1", "nn.max_redraws=1", "nn.reject_ratio=0.0001", "nn.on_reject=error"])
    with pytest.raises(LabquakeError, match="all 2 draws rejected"):
        models.run_train(cfg, feat_dir, tmp_path / "run2", device="cpu")
    # without --strict, the first run folder finishes from its saved draws
    no_tf.clear()
    assert main([a for a in args if a != "--strict"]) == 0
    assert no_tf == [] and json.loads((run / "summary.json").read_text())["model"]["nn"]["fallback"] == "drop"


def test_tiny_run_records_batch_and_best_epochs(tiny_run):
    """The shared tiny run (the real network): small folds get a smaller batch, recorded per draw."""
    runs = json.loads((tiny_run / "nn" / "runs.json").read_text())
    summary = json.loads((tiny_run / "summary.json").read_text())
    n_train = summary["n_train"]
    for r in runs["runs"]:
        assert len(r["batch_size"]) == len(r["best_epoch"]) == 3
        assert all(16 <= b < 256 and b <= max(16, n_train // 6) for b in r["batch_size"])
        assert all(1 <= b <= e for b, e in zip(r["best_epoch"], r["epochs"]))


def test_network_folds_in_worker_processes_give_the_same_bytes(tiny_features, tiny_run, tmp_path):
    """train --jobs 2: the networks' folds in two worker processes of one TensorFlow thread each give
    the bytes of the shared tiny run (one process, TensorFlow's own threads)."""
    assert cv.local_jobs(2, "cpu", 5) == 2 and cv.local_jobs(0, "cpu", 1) == 1 and cv.local_jobs(4, "gpu", 9) == 1
    run = tmp_path / "run"
    models.run_train(load_config("fast"), tiny_features, run, device="cpu", jobs=2)
    draws = sorted(p.name for p in (tiny_run / "nn").glob("draw*"))
    assert draws and draws == sorted(p.name for p in (run / "nn").glob("draw*"))
    for d in draws:
        a, b = np.load(tiny_run / "nn" / d / "result.npz"), np.load(run / "nn" / d / "result.npz")
        assert np.array_equal(a["oof"], b["oof"]) and np.array_equal(a["test"], b["test"])
    assert (run / "oof.parquet").read_bytes() == (tiny_run / "oof.parquet").read_bytes()


def test_a_worker_reloads_a_feature_folder_recomputed_in_place(tmp_path, no_tf):
    """A long-lived worker keeps a model's inputs per feature folder; a folder rewritten with other
    tables (another key) is loaded again, not served from the worker's cache."""
    cfg = load_config("fast")
    feat = write_feature_dir(tmp_path / "f", key="k1", seed=1)
    first = models.training_data(cfg, feat)
    x1, _ = cv._worker_inputs("lgbm", cfg, (str(feat), first.features_key), "cpu")
    write_feature_dir(tmp_path / "f", key="k2", seed=2)
    second = models.training_data(cfg, feat)
    assert second.features_key != first.features_key
    x2, _ = cv._worker_inputs("lgbm", cfg, (str(feat), second.features_key), "cpu")
    assert not np.array_equal(x1.X, x2.X)
    assert np.array_equal(cv._worker_inputs("lgbm", cfg, (str(feat), first.features_key), "cpu")[0].X, x1.X)  # cached


# ---------------------------------------------------------------------------------------------
# The run folder


def test_train_fills_the_run_folder_and_shares_folds(feat_dir, tmp_path, no_tf, monkeypatch):
    lgbm_folds: list[np.ndarray] = []
    real_fit = lgbm.MODEL.fit_fold

    def spy(cfg, inputs, folds, k, *a, **kw):
        if k == 0:
            lgbm_folds.append(folds.copy())
        return real_fit(cfg, inputs, folds, k, *a, **kw)

    monkeypatch.setattr(lgbm.MODEL, "fit_fold", spy)
    cfg = load_config("fast", None, QUICK_LGBM + ["lgbm.seeds=[0, 1]", "nn.runs=2", "data.train_cycles=[0,1,2,3]"])
    run = tmp_path / "run"
    summary = models.run_train(cfg, feat_dir, run, device="cpu")
    expected = targets.fold_ids(pd.read_parquet(feat_dir / "train.parquet")["cycle"].to_numpy(), cfg)
    for folds in lgbm_folds + [c["folds"] for c in no_tf]:
        assert np.array_equal(folds, expected)  # one split for both models
    oof = pd.read_parquet(run / "oof.parquet")
    assert list(oof.columns) == ["start", "cycle", "target", "tsf", "binary", "fold", "lgbm", "nn"]
    assert np.array_equal(oof["fold"], expected)
    assert list(pd.read_parquet(run / "test.parquet").columns) == ["seg_id", "lgbm", "nn"]
    names = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    assert {
        "config.json",
        "train.json",
        "summary.json",
        "oof.parquet",
        "test.parquet",
        "lgbm/importance.csv",
        "lgbm/curves.csv",
        "nn/runs.json",
        "nn/history.csv",
        "lgbm/runs.json",
        "lgbm/draw00/fold0.txt",
        "lgbm/draw01/result.npz",
        "nn/draw01/fold2.weights.h5",
        "nn/draw01/folds.json",
    } <= names
    assert not [n for n in names if ".tmp" in n]
    assert all(n.endswith(".weights.h5") for n in names if n.endswith(".h5"))
    record = json.loads((run / "train.json").read_text())
    assert {"load", "lgbm", "nn", "write", "total"} <= set(record["timings_s"]) and record["config"]["lgbm"]["seeds"] == [0, 1]
    assert summary["oof_mae"]["lgbm"] < summary["baseline_median_mae"]
    imp = pd.read_csv(run / "lgbm" / "importance.csv")
    assert len(imp) == 2 * 3 * 6 and set(imp.columns) >= {"seed", "fold", "feature", "gain"}
    hist = pd.read_csv(run / "nn" / "history.csv")
    assert set(hist["run"]) == {0, 1} and {"fold", "epoch", "val_ttf_mae"} <= set(hist.columns)

    # Rerun, same configuration: nothing is recomputed, the results are the same.
    lgbm_folds.clear()
    no_tf.clear()
    again = models.run_train(cfg, feat_dir, run, device="cpu")
    assert lgbm_folds == [] and no_tf == [] and again == summary


def test_partial_run_resumes_where_it_stopped(feat_dir, tmp_path, no_tf):
    cfg = load_config("fast", None, QUICK_LGBM + ["nn.runs=2"])
    run = tmp_path / "run"
    models.run_train(cfg, feat_dir, run, device="cpu")
    first = pd.read_parquet(run / "oof.parquet")
    shutil.rmtree(run / "nn" / "draw01")  # as if killed during the second network run (a draw's folder appears whole)
    (run / "summary.json").unlink()
    no_tf.clear()
    models.run_train(cfg, feat_dir, run, device="cpu")
    assert [c["draw"] for c in no_tf] == [1]
    pd.testing.assert_frame_equal(first, pd.read_parquet(run / "oof.parquet"))


def test_a_run_folder_of_another_config_or_features_is_refused(feat_dir, tmp_path, no_tf):
    cfg = load_config("fast", None, QUICK_LGBM + ["nn.runs=1"])
    run = tmp_path / "run"
    models.run_train(cfg, feat_dir, run, device="cpu")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    other = load_config("fast", None, QUICK_LGBM + ["nn.runs=1", "lgbm.learning_rate=0.05"])
    with pytest.raises(LabquakeError, match="different configuration; choose another --run folder or delete this one"):
        models.run_train(other, feat_dir, run, device="cpu")
    feat2 = write_feature_dir(tmp_path / "features2", key="k2")
    with pytest.raises(LabquakeError, match="different features"):
        models.run_train(cfg, feat2, run, device="cpu")
    assert before == {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}  # untouched


def test_the_recipe_cycles_follow_real_train_not_the_row_count(tmp_path):
    from labquake.config import REAL_TRAIN_ROWS

    path = write_feature_dir(tmp_path / "features", n_cycles=6)
    meta = json.loads((path / "features.json").read_text())
    cfg = load_config("fast")
    (path / "features.json").write_text(json.dumps({**meta, "n_rows": REAL_TRAIN_ROWS}))  # full synthetic data's size
    assert sorted(models.training_data(cfg, path).train["cycle"].unique()) == [1, 2, 3, 4]  # every complete cycle
    (path / "features.json").write_text(json.dumps({**meta, "real_train": True}))
    assert sorted(models.training_data(cfg, path).train["cycle"].unique()) == [0, 1, 2, 4]  # the recipe's list
