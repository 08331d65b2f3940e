"""Training: LightGBM and the network, cross-validated on one shared split (docs/recipe.md).

``train`` reads a feature folder (train.parquet, test.parquet, features.json) and fills a run folder:

    config.json    configuration and features key of the run; written first, checked on every rerun
    parts/         one file per finished LightGBM seed / network draw; a rerun loads them, never redoes them
                   (network draws RR = 0, 1, ... use seed nn.seed + RR; rejected draws are kept too)
    lgbm/          seedSS_foldK.txt boosters, importance.csv (gain per seed, fold, feature), curves.csv
    nn/            runRR/foldK.weights.h5 and runRR/history.csv per draw, history.csv (all draws), runs.json
                   (per draw: OOF MAE, why rejected, whether kept, batch size and best epoch per fold)
    oof.parquet    one row per training segment: start, cycle, target, tsf, binary, fold, lgbm, nn
    test.parquet   seg_id, lgbm, nn (means over folds, then over seeds / accepted runs)
    train.json     the stage record: configuration, timings per model, summary
    summary.json   written last (its presence means the run is complete): OOF MAEs and baselines,
                   and nn_fallback: null, or what nn.on_reject did when every network draw was rejected

A run folder made with another configuration or other features is refused, never overwritten.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake import targets
from labquake.blend import mae, network_note
from labquake.config import REAL_TRAIN_ROWS, Config
from labquake.util import LabquakeError, Timer, atomic_path, log, progress, read_json, read_table, stage_record, usable_cpus, write_json

LGBM_TAG = "LGBM"  # LightGBM uses the features whose name contains this
NN_TAG = "NN"  # the network uses the features whose name contains this
META_COLUMNS = ("start", "cycle", "target", "tsf", "binary")
FEATURES_HINT = " (run `labquake features` first)"
HEADS = ("ttf", "tsf", "binary")  # network outputs, in the order of cfg.nn.loss_weights
MONITOR = "val_ttf_mae"  # Keras 3's name for the validation MAE of the output layer named "ttf"
DEAD_STD = 0.01  # a draw whose OOF predictions in a fold vary less than this x the target's std is dead
MEAN_REJECT_RATIO = 0.7  # the reject bound x predict-the-mean's OOF MAE, when there is no LightGBM reference


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class TrainingData:
    """The selected training segments, the test segments and the shared folds."""

    train: pd.DataFrame  # META_COLUMNS + feature columns, selected cycles only
    test: pd.DataFrame  # seg_id + the same feature columns
    folds: np.ndarray  # fold of each train row
    features_key: str
    n_rows: int  # rows of the raw train.csv the features were computed from
    dropped_features: tuple[str, ...] = ()  # by features.ks_min_p
    cycle_choice: dict[str, Any] | None = None  # data.train_cycles=auto: drift.choose_cycles' record


def model_features(columns: list[str] | pd.Index) -> list[str]:
    """Every feature some model uses, once each, in table order (LightGBM's, then the network's)."""
    return list(dict.fromkeys(feature_columns(columns, LGBM_TAG) + feature_columns(columns, NN_TAG)))


def feature_columns(columns: list[str] | pd.Index, tag: str) -> list[str]:
    """The feature columns a model uses, in table order: those whose name contains ``tag``."""
    return [c for c in columns if tag in c]


def feature_folder_key(meta: dict[str, Any]) -> str:
    """The cache key a feature folder's features.json records (what a run folder is tied to)."""
    if isinstance(meta.get("key"), str) and meta["key"]:
        return meta["key"]
    raise LabquakeError("features.json: no cache key (rebuild the features with `labquake features`)")


def check_features_record(cfg: Config, meta: dict[str, Any], path: Path) -> None:
    """Feature tables must come from this version and this run's feature settings."""
    from labquake import __version__

    if "version" in meta and meta["version"] != __version__:
        raise LabquakeError(f"{path}: made by labquake {meta['version']}, this is {__version__}; rebuild with `labquake features`")
    ours = json.loads(json.dumps(cfg.features.table_settings()))  # as recorded: tuples become lists
    made = (meta.get("config") or {}).get("features")
    made = None if made is None else {k: v for k, v in made.items() if k in ours}
    if made is not None and made != ours:
        changed = ", ".join(f"features.{k}" for k in sorted(ours) if made.get(k) != ours[k])
        raise LabquakeError(f"{path}: made with other feature settings ({changed}); rebuild with `labquake features` and the same options")


def load_training_data(cfg: Config, features_dir: Path) -> TrainingData:
    """Read and check a feature folder; select the training cycles; make the shared folds."""
    features_dir = Path(features_dir)
    meta_path = features_dir / "features.json"
    if not meta_path.exists():
        raise LabquakeError(f"{features_dir}: no features.json (run `labquake features` first)")
    meta = read_json(meta_path)
    if not isinstance(meta.get("n_rows"), int):
        raise LabquakeError(f"{meta_path}: no n_rows (rebuild the features with `labquake features`)")
    check_features_record(cfg, meta, meta_path)
    train = read_table(features_dir / "train.parquet", META_COLUMNS, FEATURES_HINT)
    test = read_table(features_dir / "test.parquet", ("seg_id",), FEATURES_HINT)
    feats = model_features(train.columns)
    if not feature_columns(train.columns, LGBM_TAG) or not feature_columns(train.columns, NN_TAG):
        raise LabquakeError(f"{features_dir / 'train.parquet'}: needs feature columns named *{LGBM_TAG}* and *{NN_TAG}*")
    missing = sorted(set(feats) - set(test.columns))
    if missing:
        raise LabquakeError(f"{features_dir / 'test.parquet'}: missing feature columns {', '.join(missing)}")
    for name, table in (("train", train), ("test", test)):
        values = table[sorted(set(feats))].to_numpy(dtype=np.float64)
        bad = sorted({c for c, ok in zip(sorted(set(feats)), np.isfinite(values).all(axis=0)) if not ok})
        if bad:
            raise LabquakeError(f"{features_dir / (name + '.parquet')}: non-finite values in {', '.join(bad)}")
    choice = None
    if cfg.data.train_cycles == "auto":
        from labquake.drift import choose_cycles

        d = cfg.data
        recipe = d.recipe_cycles if meta["n_rows"] == REAL_TRAIN_ROWS else None
        choice = choose_cycles(train, test, feats, d.auto_share, d.auto_draws, d.auto_seed, recipe)
        log.info(f"data.train_cycles=auto: cycles {choice['chosen']} (mean KS {choice['score']:.4f}; all cycles {choice['all_cycles_score']:.4f})")
        selected = targets.select_segments(train, tuple(choice["chosen"]))
    else:
        selected = targets.select_segments(train, targets.train_cycles(cfg, meta["n_rows"]))
    dropped: tuple[str, ...] = ()
    if cfg.features.ks_min_p is not None:
        from labquake.drift import ks_table

        ks = ks_table(selected, test, feats)
        dropped = tuple(ks.loc[ks["p_value"] < cfg.features.ks_min_p, "feature"])
        keep = [c for c in train.columns if c not in dropped]
        if not feature_columns(keep, LGBM_TAG) or not feature_columns(keep, NN_TAG):
            raise LabquakeError(f"features.ks_min_p={cfg.features.ks_min_p:g} drops every feature of a model ({', '.join(dropped)}); lower it")
        selected, test = selected[keep], test[[c for c in test.columns if c not in dropped]]
        log.info(
            f"features.ks_min_p={cfg.features.ks_min_p:g}: dropped {len(dropped)} of {len(set(feats))} features ({', '.join(dropped) or 'none'})"
        )
    if len(selected) < 2 * cfg.cv.n_splits:
        raise LabquakeError(f"{features_dir}: only {len(selected)} training segments in the selected cycles")
    return TrainingData(
        train=selected,
        test=test.reset_index(drop=True),
        folds=targets.fold_ids(selected["cycle"].to_numpy(), cfg),
        features_key=feature_folder_key(meta),
        n_rows=meta["n_rows"],
        dropped_features=dropped,
        cycle_choice=choice,
    )


def fold_baseline(y: np.ndarray, folds: np.ndarray, stat: Callable[[np.ndarray], float]) -> np.ndarray:
    """OOF predictions of a constant model: ``stat`` of each training fold, on its validation rows."""
    pred = np.empty(len(y), dtype=np.float64)
    for k in np.unique(folds):
        pred[folds == k] = stat(y[folds != k])
    return pred


# ---------------------------------------------------------------------------------------------
# LightGBM


@dataclass
class LGBMResult:
    """One seed, all folds: OOF and fold-mean test predictions, importances, learning curves."""

    seed: int
    oof: np.ndarray
    test: np.ndarray
    best_iteration: np.ndarray  # per fold
    importance: np.ndarray  # gain, folds x features
    curve_fold: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    curve_mae: np.ndarray = field(default_factory=lambda: np.zeros(0))
    boosters: list = field(default_factory=list)  # per fold, when trained in this process (not saved in parts)


def lgbm_params(cfg: Config, seed: int) -> dict[str, Any]:
    """Booster parameters: the recipe's (cfg.lgbm) plus reproducibility and quiet settings."""
    c = cfg.lgbm
    return {
        "objective": c.objective,
        "metric": c.metric,
        "num_leaves": c.num_leaves,
        "min_data_in_leaf": c.min_data_in_leaf,
        "max_depth": c.max_depth,
        "learning_rate": c.learning_rate,
        "boosting": c.boosting,
        "boost_from_average": c.boost_from_average,
        "feature_fraction": c.feature_fraction,
        "bagging_freq": c.bagging_freq,
        "bagging_fraction": c.bagging_fraction,
        "bagging_seed": c.bagging_seed,
        "reg_alpha": c.reg_alpha,
        "reg_lambda": c.reg_lambda,
        "max_bin": c.max_bin,  # a Dataset parameter: also given to the Datasets below
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": usable_cpus(),
        "device_type": c.device_type,
        "verbosity": -1,
    }


def cv_lgbm(
    cfg: Config, X: pd.DataFrame, y: np.ndarray, folds: np.ndarray, X_test: pd.DataFrame, seed: int, model_dir: Path | None = None
) -> LGBMResult:
    """One seed of LightGBM over the folds; a fresh booster per fold, early-stopped on its validation fold."""
    import lightgbm as lgb

    params = lgbm_params(cfg, seed)
    dataset_params = {"max_bin": cfg.lgbm.max_bin, "verbosity": -1}
    n_folds = int(folds.max()) + 1
    oof = np.full(len(y), np.nan)
    test = np.zeros(len(X_test))
    best = np.zeros(n_folds, dtype=np.int64)
    importance = np.zeros((n_folds, X.shape[1]))
    curve_fold, curve_mae, boosters = [], [], []
    period = 1000 if log.isEnabledFor(logging.DEBUG) else 0
    for k in range(n_folds):
        tr, va = folds != k, folds == k
        dtrain = lgb.Dataset(X[tr], y[tr], params=dataset_params)
        dvalid = lgb.Dataset(X[va], y[va], reference=dtrain, params=dataset_params)
        record: dict[str, Any] = {}
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=cfg.lgbm.num_boost_round,
            valid_sets=[dvalid],
            valid_names=["valid"],
            callbacks=[
                lgb.early_stopping(cfg.lgbm.early_stopping_rounds, verbose=False),
                lgb.log_evaluation(period),
                lgb.record_evaluation(record),
            ],
        )
        best[k] = booster.best_iteration or booster.current_iteration()
        oof[va] = booster.predict(X[va], num_iteration=best[k])
        test += booster.predict(X_test, num_iteration=best[k]) / n_folds
        importance[k] = booster.feature_importance("gain", iteration=best[k])
        curve = next(iter(record["valid"].values()))
        curve_fold.append(np.full(len(curve), k))
        curve_mae.append(np.asarray(curve))
        boosters.append(booster)
        if model_dir is not None:
            with atomic_path(model_dir / f"seed{seed:02d}_fold{k}.txt") as tmp:
                booster.save_model(tmp, num_iteration=int(best[k]))
    return LGBMResult(seed, oof, test, best, importance, np.concatenate(curve_fold), np.concatenate(curve_mae), boosters)


# ---------------------------------------------------------------------------------------------
# The network


def setup_tensorflow(device: str = "auto") -> str:
    """Import TensorFlow quietly and reproducibly on the requested device; return "gpu" or "cpu"."""
    if device not in ("auto", "cpu", "gpu"):
        raise LabquakeError(f"--device {device!r}: choose auto, cpu or gpu")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN kernels are not bitwise reproducible
    import absl.logging
    import tensorflow as tf

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise LabquakeError("--device gpu: TensorFlow sees no GPU (install the CUDA build with `make install GPU=1`, or use --device cpu)")
    if device == "cpu" and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # TensorFlow already initialised in this process
            if tf.config.get_visible_devices("GPU"):
                raise LabquakeError("--device cpu: TensorFlow already started on the GPU in this process") from None
    tf.config.experimental.enable_op_determinism()
    return "gpu" if gpus and device != "cpu" else "cpu"


def build_network(cfg: Config, n_features: int, compile: bool = True):
    """The recipe's network, compiled: one time step of ``n_features`` in, three named heads out."""
    import keras
    from keras import layers

    c = cfg.nn
    inputs = keras.Input(shape=(1, n_features), name="features")
    x = layers.BatchNormalization()(inputs)
    x = layers.LSTM(c.lstm_units, return_sequences=True)(x)
    for filters in c.conv_filters:
        x = layers.Conv1D(filters, c.conv_kernel, activation="relu", padding="same")(x)
    x = layers.Flatten()(x)
    for units in c.dense_units:
        x = layers.Dense(units, activation="relu")(x)
    outputs = {
        "ttf": layers.Dense(1, activation="relu", name="ttf")(x),
        "tsf": layers.Dense(1, name="tsf")(x),
        "binary": layers.Dense(1, activation="sigmoid", name="binary")(x),
    }
    model = keras.Model(inputs, outputs, name="labquake_nn")
    if not compile:
        return model
    model.compile(
        optimizer=keras.optimizers.Nadam(learning_rate=c.learning_rate),
        loss={"ttf": "mae", "tsf": "mae", "binary": "binary_crossentropy"},
        loss_weights=dict(zip(HEADS, c.loss_weights)),
        metrics={"ttf": ["mae"]},
    )
    return model


def _require_metric(monitor: str):
    """A callback that fails the fit when ``monitor`` is not logged: Keras 3's callbacks only warn."""
    import keras

    class RequireMetric(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if monitor not in (logs or {}):
                raise RuntimeError(f"monitored metric {monitor!r} is not logged (logged: {', '.join(sorted(logs or {}))})")

    return RequireMetric()


def batch_size(cfg: Config, n_train: int) -> int:
    """The batch for ``n_train`` rows: the recipe's, cut so an epoch has ``nn.min_steps_per_epoch`` steps."""
    c = cfg.nn
    if c.min_steps_per_epoch <= 0:
        return c.batch_size
    return min(c.batch_size, max(16, n_train // c.min_steps_per_epoch))


class ReusedNetwork:
    """One compiled network for every fold and draw of a run.

    Keras traces its training and validation steps on a model's first fit, about 4 s on CPU: more
    than a whole fold's training on small data. So the compiled model is kept, and each fit starts
    it from the weights of a network freshly built from the fit's seed and from the optimizer's
    initial state, which is what a new model would start from (a test holds the two equal).
    """

    def __init__(self, cfg: Config, n_features: int) -> None:
        import keras

        keras.backend.clear_session()
        self.model = build_network(cfg, n_features)
        self.model.optimizer.build(self.model.trainable_variables)
        self.optimizer_start = [v.numpy() for v in self.model.optimizer.variables]
        self.cfg, self.n_features = cfg, n_features

    def fresh(self, seed: int):
        """The model, reset to the start of a fit from ``seed``."""
        import keras

        keras.utils.set_random_seed(seed)
        template = build_network(self.cfg, self.n_features, compile=False)
        self.model.set_weights(template.get_weights())
        for v, start in zip(self.model.optimizer.variables, self.optimizer_start):
            v.assign(start)
        return self.model


def fit_network(
    cfg: Config,
    x_train: np.ndarray,
    y_train: dict,
    x_valid: np.ndarray,
    y_valid: dict,
    weights_path: Path,
    seed: int,
    monitor: str = MONITOR,
    network: ReusedNetwork | None = None,
):
    """Train one network from ``seed``; end with the weights of its best epoch (saved at ``weights_path``).

    ``network``: a compiled network to reuse (see ReusedNetwork); without it, a new one is built.
    """
    import keras

    if not str(weights_path).endswith(".weights.h5"):
        raise ValueError(f"{weights_path}: Keras 3 weight files must end in .weights.h5")
    c = cfg.nn
    if network is None:
        network = ReusedNetwork(cfg, x_train.shape[-1])
    model = network.fresh(seed)
    callbacks = [
        _require_metric(monitor),  # first, so it fires before the others silently skip
        # The recipe's best-epoch checkpoint, kept in memory: Keras 3.15 restores the best weights
        # at the end of training, stopped early or not. A file write per improvement cost more
        # than the epoch itself on small data; the file is written once, below.
        keras.callbacks.EarlyStopping(monitor=monitor, mode="min", patience=c.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="min", factor=c.lr_factor, patience=c.lr_patience, min_delta=c.min_delta),
    ]
    # tf.data instead of arrays: Keras builds a new iterator over numpy data four times an epoch,
    # which cost 3-4x the training step itself on this small network (56 -> 15 ms an epoch).
    import tensorflow as tf

    train = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    train = train.shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True).batch(batch_size(cfg, len(x_train)))
    valid = tf.data.Dataset.from_tensor_slices((x_valid, y_valid)).batch(max(len(x_valid), 1)).cache()
    history = model.fit(train, validation_data=valid, epochs=c.epochs, callbacks=callbacks, shuffle=False, verbose=0)  # shuffled above
    model.save_weights(str(weights_path))
    return model, pd.DataFrame(history.history)


def predict_ttf(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=8192, verbose=0)["ttf"], dtype=np.float64).reshape(-1)


@dataclass
class NNResult:
    """One run of the network over the folds."""

    draw: int
    seed: int
    oof: np.ndarray
    test: np.ndarray
    best_epoch: np.ndarray  # per fold, 1-based
    epochs: np.ndarray  # per fold, epochs run
    history: pd.DataFrame | None = None  # fold, epoch, Keras logs
    batch_size: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per fold


def _shape(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32).reshape(len(x), 1, x.shape[1])


def cv_nn(
    cfg: Config,
    X: np.ndarray,
    y: dict[str, np.ndarray],
    folds: np.ndarray,
    X_test: np.ndarray,
    seed: int,
    out_dir: Path,
    draw: int = 0,
    network: ReusedNetwork | None = None,
) -> NNResult:
    """One run of the network over the folds: min-max scaling fit on each training fold."""
    from sklearn.preprocessing import MinMaxScaler

    n_folds = int(folds.max()) + 1
    oof = np.full(len(X), np.nan)
    test = np.zeros(len(X_test))
    best, epochs, histories = np.zeros(n_folds, np.int64), np.zeros(n_folds, np.int64), []
    batches = np.array([batch_size(cfg, int((folds != k).sum())) for k in range(n_folds)], np.int64)
    network = network or ReusedNetwork(cfg, X.shape[1])
    for k in range(n_folds):
        tr, va = folds != k, folds == k
        scaler = MinMaxScaler().fit(X[tr])
        x_tr, x_va, x_te = (_shape(scaler.transform(a)) for a in (X[tr], X[va], X_test))
        y_tr = {h: y[h][tr].astype(np.float32) for h in HEADS}
        y_va = {h: y[h][va].astype(np.float32) for h in HEADS}
        model, hist = fit_network(cfg, x_tr, y_tr, x_va, y_va, out_dir / f"fold{k}.weights.h5", seed, network=network)
        oof[va] = predict_ttf(model, x_va)
        test += predict_ttf(model, x_te) / n_folds
        best[k] = int(hist[MONITOR].to_numpy().argmin()) + 1
        epochs[k] = len(hist)
        histories.append(hist.assign(fold=k, epoch=np.arange(1, len(hist) + 1)))
        log.info(
            f"nn draw {draw} (seed {seed}) fold {k + 1}/{n_folds}: best epoch {best[k]} of {epochs[k]} (batch {batches[k]}), valid MAE {mae(y['ttf'][va], oof[va]):.4f}"
        )
    history = pd.concat(histories, ignore_index=True)
    history = history[["fold", "epoch", *[c for c in history.columns if c not in ("fold", "epoch")]]]
    return NNResult(draw, seed, oof, test, best, epochs, history, batches)


def reject_bound(cfg: Config, y: np.ndarray, folds: np.ndarray, reference: np.ndarray | None) -> tuple[float, str]:
    """The OOF MAE at which a draw is rejected, and what it is relative to (see NNConfig.reject_ratio).

    ``reference``: LightGBM's OOF predictions on the same folds; without it, predict-the-mean's.
    """
    if reference is not None:
        return cfg.nn.reject_ratio * mae(y, reference), "lgbm"
    return MEAN_REJECT_RATIO * mae(y, fold_baseline(y, folds, np.mean)), "mean"


def reject_reason(y: np.ndarray, oof: np.ndarray, folds: np.ndarray, bound: float) -> str | None:
    """Why a draw failed to learn, or None: non-finite or (near) constant predictions, or OOF MAE >= bound."""
    score = mae(y, oof)
    if not np.isfinite(score):
        return "non-finite predictions"
    spread = min(float(np.std(oof[folds == k])) for k in np.unique(folds))
    if spread < DEAD_STD * float(np.std(y)):
        return f"constant predictions (std {spread:.3g} in a fold)"
    if score >= bound:
        return f"OOF MAE {score:.4f} >= bound {bound:.4f}"
    return None


def run_draws(draw: Callable[[int], str | None], runs: int, max_redraws: int) -> list[bool]:
    """Draw runs until ``runs`` are accepted or ``runs + max_redraws`` were drawn.

    ``draw(d)`` trains (or loads) draw ``d`` and returns why it is rejected, or None. Returns
    whether each draw was accepted; what to do with too few is ``keep_runs``' business.
    """
    accepted: list[bool] = []
    while sum(accepted) < runs and len(accepted) < runs + max_redraws:
        reason = draw(len(accepted))
        if reason is not None:
            log.info(f"nn draw {len(accepted)}: rejected, {reason}")
        accepted.append(reason is None)
    return accepted


def keep_runs(scores: list[float], accepted: list[bool], runs: int, on_reject: str) -> tuple[list[bool], str | None]:
    """The draws whose predictions make the nn column, and the fallback taken (None: the accepted ones).

    Every draw rejected: "error" raises; "drop" and "best" keep the ``runs`` best draws by OOF MAE
    ("drop" for inspection only: the blend leaves them out).
    """
    if any(accepted):
        return list(accepted), None
    if on_reject == "error":
        raise LabquakeError(
            f"network: all {len(accepted)} draws rejected (best OOF MAE {np.nanmin(scores):.4f}; nn/runs.json says why); "
            "without --strict, nn.on_reject=drop or best submits anyway; or raise nn.max_redraws or nn.reject_ratio (--set)"
        )
    best = set(np.argsort(np.asarray(scores, np.float64), kind="stable")[:runs].tolist())  # NaN last
    return [d in best for d in range(len(scores))], on_reject


# ---------------------------------------------------------------------------------------------
# Run folder and resume


def _run_identity(cfg: Config, data: TrainingData) -> dict[str, Any]:
    return {"train_key": cfg.train_key(), "features_key": data.features_key}


def claim_run(cfg: Config, data: TrainingData, run_dir: Path) -> None:
    """Write RUN/config.json, or check that the existing one is this configuration and these features."""
    identity = _run_identity(cfg, data)
    path = run_dir / "config.json"
    if path.exists():
        old = read_json(path)
        for key, what in (("train_key", "configuration"), ("features_key", "features")):
            if old.get(key) != identity[key]:
                raise LabquakeError(f"{run_dir}: made with a different {what}; choose another --run folder or delete this one")
        return
    write_json(path, {**identity, "config": cfg.to_dict()})


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def train_lgbm(cfg: Config, data: TrainingData, run_dir: Path) -> list[LGBMResult]:
    """Every LightGBM seed, each saved to RUN/parts as it finishes and loaded from there on a rerun."""
    cols = feature_columns(data.train.columns, LGBM_TAG)
    X, X_test, y = data.train[cols], data.test[cols], data.train["target"].to_numpy(np.float64)
    results = []
    for seed in progress(cfg.lgbm.seeds, desc="lgbm seeds"):
        part = run_dir / "parts" / f"lgbm_seed{seed:02d}.npz"
        if part.exists():
            results.append(LGBMResult(seed=seed, **_load_npz(part)))
            continue
        res = cv_lgbm(cfg, X, y, data.folds, X_test, seed, model_dir=run_dir / "lgbm")
        _save_npz(
            part,
            oof=res.oof,
            test=res.test,
            best_iteration=res.best_iteration,
            importance=res.importance,
            curve_fold=res.curve_fold,
            curve_mae=res.curve_mae,
        )
        log.debug(f"lgbm seed {seed}: OOF MAE {mae(y, res.oof):.4f}, best iterations {res.best_iteration.tolist()}")
        results.append(res)
    rows = [
        {"seed": r.seed, "fold": k, "feature": f, "gain": float(r.importance[k, j]), "best_iteration": int(r.best_iteration[k])}
        for r in results
        for k in range(r.importance.shape[0])
        for j, f in enumerate(cols)
    ]
    _write_csv(run_dir / "lgbm" / "importance.csv", pd.DataFrame(rows))
    curves = [pd.DataFrame({"seed": r.seed, "fold": r.curve_fold, "iteration": _iterations(r.curve_fold), "valid_mae": r.curve_mae}) for r in results]
    _write_csv(run_dir / "lgbm" / "curves.csv", pd.concat(curves, ignore_index=True))
    return results


def _iterations(fold: np.ndarray) -> np.ndarray:
    """1-based iteration numbers of a curve that is the concatenation of one curve per fold."""
    starts = np.r_[0, np.flatnonzero(np.diff(fold)) + 1]
    return np.arange(len(fold)) - np.repeat(starts, np.diff(np.r_[starts, len(fold)])) + 1


@dataclass
class NNDraws:
    """Every draw of the network, which were accepted and which make the nn column."""

    results: list[NNResult]
    accepted: list[bool]
    kept: list[bool]
    fallback: str | None  # None, or nn.on_reject's "drop"/"best" when every draw was rejected
    bound: float
    relative_to: str  # what the bound is relative to: "lgbm" or "mean"


def train_nn(
    cfg: Config, data: TrainingData, run_dir: Path, device: str = "auto", reference: np.ndarray | None = None, on_reject: str | None = None
) -> NNDraws:
    """Runs of the network, redrawn when rejected; each draw saved to RUN/parts as it finishes.

    ``reference``: LightGBM's OOF predictions, for the reject bound. ``on_reject`` overrides
    nn.on_reject for this call (``train --strict``).
    """
    cols = feature_columns(data.train.columns, NN_TAG)
    X = data.train[cols].to_numpy(np.float64)
    X_test = data.test[cols].to_numpy(np.float64)
    y = {
        "ttf": data.train["target"].to_numpy(np.float64),
        "tsf": data.train["tsf"].to_numpy(np.float64),
        "binary": data.train["binary"].to_numpy(np.float64),
    }
    bound, relative_to = reject_bound(cfg, y["ttf"], data.folds, reference)
    results: list[NNResult] = []
    reasons: list[str | None] = []
    network: ReusedNetwork | None = None  # built when the first draw needs training

    def draw(d: int) -> str | None:
        nonlocal network
        seed = cfg.nn.seed + d
        part = run_dir / "parts" / f"nn_run{d:02d}.npz"
        if part.exists():
            arrays = _load_npz(part)
            history = pd.read_csv(run_dir / "nn" / f"run{d:02d}" / "history.csv")
            res = NNResult(draw=d, seed=seed, history=history, **arrays)
        else:
            if network is None:
                where = setup_tensorflow(device)
                log.info(f"network on {where}: {cfg.nn.runs} runs of {int(data.folds.max()) + 1} folds, up to {cfg.nn.epochs} epochs")
                network = ReusedNetwork(cfg, X.shape[1])
            with atomic_path(run_dir / "nn" / f"run{d:02d}") as tmp:
                tmp.mkdir()
                res = cv_nn(cfg, X, y, data.folds, X_test, seed, tmp, draw=d, network=network)
                res.history.to_csv(tmp / "history.csv", index=False)
            _save_npz(part, oof=res.oof, test=res.test, best_epoch=res.best_epoch, epochs=res.epochs, batch_size=res.batch_size)
        results.append(res)
        reasons.append(reject_reason(y["ttf"], res.oof, data.folds, bound))
        log.info(f"nn draw {d} (seed {seed}): OOF MAE {mae(y['ttf'], res.oof):.4f} (reject at >= {bound:.4f})")
        return reasons[-1]

    accepted = run_draws(draw, cfg.nn.runs, cfg.nn.max_redraws)
    scores = [mae(y["ttf"], r.oof) for r in results]

    def record(kept: list[bool], fallback: str | None) -> None:
        runs = [
            {
                "run": r.draw,
                "seed": r.seed,
                "oof_mae": score,
                "fold_mae": [mae(y["ttf"][data.folds == k], r.oof[data.folds == k]) for k in range(len(r.epochs))],
                "accepted": ok,
                "rejected_because": why,
                "kept": keep,
                "batch_size": r.batch_size.tolist(),
                "best_epoch": r.best_epoch.tolist(),
                "epochs": r.epochs.tolist(),
                "weights": [f"nn/run{r.draw:02d}/fold{k}.weights.h5" for k in range(len(r.epochs))],
            }
            for r, score, ok, why, keep in zip(results, scores, accepted, reasons, kept)
        ]
        meta = {
            "reject_bound": bound,
            "reject_ratio": cfg.nn.reject_ratio if relative_to == "lgbm" else MEAN_REJECT_RATIO,
            "reject_relative_to": relative_to,
            "fallback": fallback,
        }
        write_json(run_dir / "nn" / "runs.json", {**meta, "runs": runs})
        history = pd.concat([r.history.assign(run=r.draw, seed=r.seed, accepted=ok) for r, ok in zip(results, accepted)], ignore_index=True)
        _write_csv(run_dir / "nn" / "history.csv", history)

    try:
        kept, fallback = keep_runs(scores, accepted, cfg.nn.runs, on_reject or cfg.nn.on_reject)
    except LabquakeError:
        record([False] * len(results), None)  # to show why every draw was rejected
        raise
    record(kept, fallback)
    return NNDraws(results, accepted, kept, fallback, bound, relative_to)


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def _write_parquet(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)


def train(cfg: Config, features_dir: Path, run_dir: Path, device: str = "auto", strict: bool = False, scheduler: str | None = None) -> dict[str, Any]:
    """Cross-validate both models on the feature folder; fill ``run_dir`` (see the module docstring).

    ``strict``: stop with an error when every network draw is rejected, whatever nn.on_reject says.
    """
    timer = Timer()
    run_dir = Path(run_dir)
    with timer.step("load"):
        data = load_training_data(cfg, features_dir)
    claim_run(cfg, data, run_dir)
    if data.cycle_choice is not None:
        import matplotlib

        matplotlib.use("Agg")
        from labquake.drift import plot_cycle_choice

        write_json(run_dir / "cycles.json", data.cycle_choice)
        plot_cycle_choice(data.cycle_choice, run_dir / "cycles.png")
    y = data.train["target"].to_numpy(np.float64)
    log.info(f"train: {len(data.train)} segments, {len(data.test)} test segments, {int(data.folds.max()) + 1} folds -> {run_dir}")
    with timer.step("lgbm"):
        lgbm = train_lgbm(cfg, data, run_dir)
    lgbm_oof = np.mean([r.oof for r in lgbm], axis=0)
    lgbm_test = np.mean([r.test for r in lgbm], axis=0)
    log.info(f"lgbm: OOF MAE {mae(y, lgbm_oof):.4f} ({len(lgbm)} seeds)")
    with timer.step("nn"):  # after LightGBM: its OOF MAE is the reference of the reject bound
        draws = train_nn(cfg, data, run_dir, device, reference=lgbm_oof, on_reject="error" if strict else None)
    kept = [r for r, keep in zip(draws.results, draws.kept) if keep]
    nn_oof = np.mean([r.oof for r in kept], axis=0)
    nn_test = np.mean([r.test for r in kept], axis=0)
    log.info(f"nn: OOF MAE {mae(y, nn_oof):.4f} ({sum(draws.accepted)} accepted of {len(draws.results)} draws)")
    with timer.step("write"):
        oof = data.train[list(META_COLUMNS)].assign(fold=data.folds, lgbm=lgbm_oof, nn=nn_oof)
        _write_parquet(run_dir / "oof.parquet", oof)
        _write_parquet(run_dir / "test.parquet", pd.DataFrame({"seg_id": data.test["seg_id"], "lgbm": lgbm_test, "nn": nn_test}))
    n_folds = int(data.folds.max()) + 1
    summary = {
        "oof_mae": {"lgbm": mae(y, lgbm_oof), "nn": mae(y, nn_oof)},
        "fold_mae": {name: [mae(y[data.folds == k], p[data.folds == k]) for k in range(n_folds)] for name, p in (("lgbm", lgbm_oof), ("nn", nn_oof))},
        "baseline_median_mae": mae(y, fold_baseline(y, data.folds, np.median)),
        "baseline_mean_mae": mae(y, fold_baseline(y, data.folds, np.mean)),
        "n_train": len(data.train),
        "n_test": len(data.test),
        "n_folds": n_folds,
        "cv_scheme": cfg.cv.scheme,
        "dropped_features": list(data.dropped_features),
        "train_cycles": sorted(int(c) for c in data.train["cycle"].unique()),
        "lgbm_seeds": [r.seed for r in lgbm],
        "nn_seeds": [r.seed for r in kept],
        "nn_runs": cfg.nn.runs,
        "nn_accepted": sum(draws.accepted),
        "nn_draws": len(draws.results),
        "nn_reject_bound": draws.bound,
        "nn_reject_relative_to": draws.relative_to,
        "nn_fallback": draws.fallback,  # "drop": the blend is LightGBM alone; "best": rejected draws blended
        **_run_identity(cfg, data),
    }
    write_json(run_dir / "train.json", stage_record("train", cfg.to_dict(), timer, features_dir=str(features_dir), device=device, summary=summary))
    write_json(run_dir / "summary.json", summary)
    log.info(
        f"train: OOF MAE lgbm {summary['oof_mae']['lgbm']:.4f}, nn {summary['oof_mae']['nn']:.4f}, median baseline {summary['baseline_median_mae']:.4f}"
    )
    note = network_note(summary)
    if note:
        log.warning(note)
    return summary
