"""The sequence network: the segment's own time axis, beside the recipe's one-step network.

Input: the segment as ``150,000 / features.seq_window`` time steps of a few statistics each
(``features/sequences.py``, computed and cached by the features stage), standardised per channel
on each training fold. Two standard bodies (``seq.arch``):

- ``conv_gru``: Conv1D + MaxPooling1D blocks that shorten the sequence, then a GRU;
- ``causal_lstm``: a causal Conv1D, then stacked LSTMs.

Then the recipe's three heads, loss weights, callbacks, seeding and bad-draw rejection
(``models/network.py``). With ``features.seq_overlap`` the training folds also get windows shifted
by half a segment inside a cycle; one is used in fold k only if it shares no row with a segment
validated in fold k (``targets.overlap_train_mask``), so no OOF row was seen, even in part, in training.

Draw d uses seed ``seq.seed + d``; files ``seq/drawDD/foldK.weights.h5``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from labquake.config import Config
from labquake.features.folder import FeatureFolder
from labquake.models.base import Base, FoldFit
from labquake.models.network import fold_fit, heads, predict_ttf, reused, targets_of
from labquake.trainset import TrainingData


def _conv_gru(x, c):
    """Conv1D + MaxPooling1D blocks that shorten the sequence, then a GRU."""
    from keras import layers

    for filters in c.conv_filters:
        x = layers.Conv1D(filters, c.conv_kernel, padding="same", activation="relu")(x)
        x = layers.MaxPooling1D(c.pool)(x)
    return layers.GRU(c.gru_units)(x)


def _causal_lstm(x, c):
    """A causal Conv1D, then stacked LSTMs."""
    from keras import layers

    x = layers.Conv1D(c.conv_filters[0], c.conv_kernel, padding="causal", activation="relu")(x)
    for i, units in enumerate(c.lstm_units):
        x = layers.LSTM(units, return_sequences=i < len(c.lstm_units) - 1)(x)
    return x


BODIES = {"conv_gru": _conv_gru, "causal_lstm": _causal_lstm}  # seq.arch: its Literal's values


def build_network(cfg: Config, steps: int, channels: int, compile: bool = True):
    """``seq.arch``'s body on (steps, channels), then the recipe's heads."""
    import keras
    from keras import layers

    c = cfg.seq
    inputs = keras.Input(shape=(steps, channels), name="sequence")
    x = BODIES[c.arch](inputs, c)
    if c.dropout > 0:
        x = layers.Dropout(c.dropout)(x)
    for units in c.dense_units:
        x = layers.Dense(units, activation="relu")(x)
    return heads(x, inputs, f"labquake_seq_{c.arch}", c, compile)


@dataclass(frozen=True)
class Inputs:
    S: np.ndarray  # (n, steps, channels): the selected training segments
    y: dict[str, np.ndarray]
    S_test: np.ndarray
    device: str
    extra: np.ndarray | None = None  # seq_overlap: (m, steps, channels) shifted windows
    extra_y: dict[str, np.ndarray] | None = None
    extra_ok: np.ndarray | None = None  # (m, n_folds): may window i train fold k
    w: np.ndarray | None = None  # sample weights (data.weights), or None
    extra_w: np.ndarray | None = None  # the shifted windows': their nearest segment's


def _standardise(S: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((S - mean) / std).astype(np.float32)


def network(cfg: Config, steps: int, channels: int, device: str):
    return reused(("seq", cfg.seq, steps, channels), lambda compile: build_network(cfg, steps, channels, compile), device)


class Sequence(Base):
    name = "seq"
    label = "sequence network"
    color = "#d62728"
    rejects = True
    isolate = True

    def seed(self, cfg: Config, draw: int) -> int:
        return cfg.seq.seed + draw

    def prepare(self, cfg: Config, data: TrainingData, device: str = "auto") -> Inputs:
        from labquake import targets

        folder = FeatureFolder(data.features_dir)
        S = np.asarray(folder.sequences("train")[data.rows], np.float32)
        S_test = np.asarray(folder.sequences("test"), np.float32)
        if not cfg.features.seq_overlap:
            return Inputs(S, targets_of(data.train), S_test, device, w=data.weights)
        meta = pd.read_parquet(folder.table_path("train_extra"))
        keep = np.flatnonzero(meta["cycle"].isin(data.train["cycle"].unique()).to_numpy())
        meta = meta.iloc[keep].reset_index(drop=True)
        extra = np.asarray(folder.sequences("train_extra")[keep], np.float32)
        ok = targets.overlap_train_mask(meta["start"].to_numpy(), data.train["start"].to_numpy(), data.folds)
        extra_w = None
        if data.weights is not None:
            starts = data.train["start"].to_numpy()
            near = np.clip(np.searchsorted(starts, meta["start"].to_numpy()), 0, len(starts) - 1)
            extra_w = data.weights[near]
        return Inputs(S, targets_of(data.train), S_test, device, extra, targets_of(meta), ok, data.weights, extra_w)

    def fit_fold(self, cfg: Config, inputs: Inputs, folds: np.ndarray, k: int, seed: int, fold_dir: Path) -> FoldFit:
        """Channels standardised on the training fold (and its leak-free shifted windows), then the fit."""
        tr, va = folds != k, folds == k
        x_tr, y_tr = inputs.S[tr], {h: v[tr] for h, v in inputs.y.items()}
        w = None if inputs.w is None else inputs.w[tr]
        if inputs.extra is not None:
            use = inputs.extra_ok[:, k]
            x_tr = np.concatenate([x_tr, inputs.extra[use]])
            y_tr = {h: np.concatenate([y_tr[h], inputs.extra_y[h][use]]) for h in y_tr}
            if w is not None:
                w = np.concatenate([w, inputs.extra_w[use]])
        mean = x_tr.mean(axis=(0, 1), dtype=np.float64)
        std = np.maximum(x_tr.std(axis=(0, 1), dtype=np.float64), 1e-6)
        net = network(cfg, inputs.S.shape[1], inputs.S.shape[2], inputs.device)
        xs = [_standardise(a, mean, std) for a in (x_tr, inputs.S[va], inputs.S_test)]
        y_va = {h: v[va] for h, v in inputs.y.items()}
        info = {"mean": mean.tolist(), "std": std.tolist(), "n_train": len(x_tr)}
        return fold_fit(cfg.seq, net, xs[0], y_tr, xs[1], y_va, xs[2], fold_dir / f"fold{k}.weights.h5", seed, info, w)

    def predict_saved(
        self, cfg: Config, draw_dir: Path, folds: list[dict], table: pd.DataFrame, sequences: np.ndarray | None, device: str = "auto"
    ) -> np.ndarray:
        """The mean over the draw's saved fold networks, each on its fold's standardisation."""
        if sequences is None:
            raise ValueError("seq predicts from sequences")
        net = network(cfg, sequences.shape[1], sequences.shape[2], device).model
        preds = []
        for k, info in enumerate(folds):
            net.load_weights(str(draw_dir / f"fold{k}.weights.h5"))
            preds.append(predict_ttf(net, _standardise(np.asarray(sequences, np.float32), np.asarray(info["mean"]), np.asarray(info["std"]))))
        return np.mean(preds, axis=0)


MODEL = Sequence()
