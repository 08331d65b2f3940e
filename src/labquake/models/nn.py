"""The recipe's network (docs/recipe.md): the 21 NN features as a sequence of one time step.

BatchNormalization, an LSTM, three Conv1D (kernel 2, "same") and two Dense layers, then the three
heads. On one time step the LSTM runs a single step and each Conv1D is a dense layer that uses only
one tap of its kernel (docs/recipe.md, "The one-step point"; tests/test_models.py shows it): it stays
exactly as it is, because it is the recipe. ``seq`` is the network that sees time.

Draw d uses seed ``nn.seed + d``; files ``nn/drawDD/foldK.weights.h5``. Features are min-max scaled
on each training fold (the scaling is kept in folds.json, for ``predict``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from labquake.config import Config
from labquake.models.base import Base, FoldFit
from labquake.models.network import fold_fit, heads, predict_ttf, reused, targets_of
from labquake.trainset import TrainingData


def build_network(cfg: Config, n_features: int, compile: bool = True):
    """The recipe's network: one time step of ``n_features`` in, three named heads out."""
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
    return heads(x, inputs, "labquake_nn", c, compile)


@dataclass(frozen=True)
class Inputs:
    X: np.ndarray
    y: dict[str, np.ndarray]
    X_test: np.ndarray
    device: str
    w: np.ndarray | None = None  # sample weights (data.weights), or None


def min_max_scaler(lo: np.ndarray, hi: np.ndarray):
    """sklearn's MinMaxScaler with these column minima and maxima (fit on the two rows they make)."""
    from sklearn.preprocessing import MinMaxScaler

    return MinMaxScaler().fit(np.vstack([lo, hi]))


def _scale(scaler, x: np.ndarray) -> np.ndarray:
    """Scaled, as one time step of float32."""
    return scaler.transform(x).astype(np.float32).reshape(len(x), 1, x.shape[1])


def network(cfg: Config, n_features: int, device: str):
    return reused(("nn", cfg.nn, n_features), lambda compile: build_network(cfg, n_features, compile), device)


class Network(Base):
    name = "nn"
    label = "network"
    color = "#ff7f0e"
    rejects = True
    isolate = True

    def seed(self, cfg: Config, draw: int) -> int:
        return cfg.nn.seed + draw

    def prepare(self, cfg: Config, data: TrainingData, device: str = "auto") -> Inputs:
        cols = list(data.reads[self.name])
        return Inputs(data.train[cols].to_numpy(np.float64), targets_of(data.train), data.test[cols].to_numpy(np.float64), device, data.weights)

    def fit_fold(self, cfg: Config, inputs: Inputs, folds: np.ndarray, k: int, seed: int, fold_dir: Path) -> FoldFit:
        """Min-max scaling fit on the training fold, then the recipe's fit."""
        X = inputs.X
        tr, va = folds != k, folds == k
        lo, hi = X[tr].min(axis=0), X[tr].max(axis=0)
        y_tr = {h: v[tr] for h, v in inputs.y.items()}
        y_va = {h: v[va] for h, v in inputs.y.items()}
        net = network(cfg, X.shape[1], inputs.device)
        scaler = min_max_scaler(lo, hi)
        xs = [_scale(scaler, a) for a in (X[tr], X[va], inputs.X_test)]
        w = None if inputs.w is None else inputs.w[tr]
        info = {"min": lo.tolist(), "max": hi.tolist()}
        return fold_fit(cfg.nn, net, xs[0], y_tr, xs[1], y_va, xs[2], fold_dir / f"fold{k}.weights.h5", seed, info, w)

    def predict_saved(
        self, cfg: Config, draw_dir: Path, folds: list[dict], table: pd.DataFrame, sequences: np.ndarray | None, device: str = "auto"
    ) -> np.ndarray:
        """The mean over the draw's saved fold networks, each on its fold's scaling."""
        X = table.to_numpy(np.float64)
        net = network(cfg, X.shape[1], device).model
        preds = []
        for k, info in enumerate(folds):
            net.load_weights(str(draw_dir / f"fold{k}.weights.h5"))
            preds.append(predict_ttf(net, _scale(min_max_scaler(np.asarray(info["min"]), np.asarray(info["max"])), X)))
        return np.mean(preds, axis=0)


MODEL = Network()
