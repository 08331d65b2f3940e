"""Training for the test's regime (docs/shift.md): targets as a fraction of the cycle, covariate-shift
weights, and the test's mean time to failure estimated without test labels. Pure functions on the
train and test feature tables; ``trainset`` applies them and ``models.train`` records them.

The real test interval's cycles were longer than train's (mean time to failure 6.32 s against
5.68 s), and the top of the LANL leaderboard was decided by how teams fitted the training set or
the target scale to it. These are three of their tools beside the recipe, each an option.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from labquake.config import Config
from labquake.stats import ADVERSARIAL_FOLDS
from labquake.util import LabquakeError


def check_settings(cfg: Config) -> None:
    """The combinations that one section's own check cannot see (one line, before anything is written)."""
    t = cfg.targets
    if t.kind == "fraction" and t.scale == "cycles" and cfg.data.train_cycles != "auto":
        raise LabquakeError("config: targets.scale=cycles is the length of the cycles data.train_cycles=auto chooses; set data.train_cycles=auto")


def wants_weights(cfg: Config) -> bool:
    """Whether the run needs the covariate-shift weights: to fit with them, or for the scale."""
    return cfg.data.weights == "adversarial" or (cfg.targets.kind == "fraction" and cfg.targets.scale == "weights")


def cycle_length(train: pd.DataFrame) -> np.ndarray:
    """Per train segment, the length of its cycle in seconds: the time to failure at the cycle's first
    row, which is the segment's time to failure plus its time since failure (targets.segment_targets).
    For the file's first cycle this is only what was recorded of it (its start is not)."""
    return (train["target"] + train["tsf"]).to_numpy(np.float64)


def adversarial_weights(
    train: pd.DataFrame, test: pd.DataFrame, features: list[str], bounds: tuple[float, float], seed: int
) -> tuple[np.ndarray, dict]:
    """Importance weights of the train rows towards the test's feature distribution.

    A small LightGBM classifier (stats.adversarial_auc's) tells test rows (1) from train rows (0),
    out of fold; a train row's weight is p / (1 - p) times n_train / n_test, the density ratio
    test / train where the classifier is calibrated. Clipped to ``bounds`` times the mean, then
    normalised to mean 1. Returns the weights and their record (the classifier's AUC, the effective
    sample size, the share clipped).
    """
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    if len(test) < 2:
        raise LabquakeError(
            f"data.weights=adversarial: {len(test)} test segments to weight the train segments against (the test features are needed)"
        )
    X = pd.concat([train[features], test[features]], ignore_index=True)
    y = np.r_[np.zeros(len(train)), np.ones(len(test))]
    p = np.zeros(len(y))
    params = {"objective": "binary", "num_leaves": 8, "learning_rate": 0.05, "min_data_in_leaf": 20, "seed": seed, "verbosity": -1, "num_threads": 1}
    n_splits = int(min(ADVERSARIAL_FOLDS, len(train), len(test)))
    for tr, va in StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(X, y):
        booster = lgb.train(params, lgb.Dataset(X.iloc[tr], y[tr]), num_boost_round=200)
        p[va] = booster.predict(X.iloc[va])
    q = np.clip(p[: len(train)], 1e-6, 1 - 1e-6)
    raw = q / (1 - q) * len(train) / len(test)
    w, clipped = clip_weights(raw, bounds)
    record = {
        "auc": float(roc_auc_score(y, p)),
        "effective_size": effective_size(w),
        "n_train": len(train),
        "bounds": list(bounds),
        "clipped_share": clipped,
        "min": float(w.min()),
        "max": float(w.max()),
        "seed": seed,
    }
    return w, record


def clip_weights(w: np.ndarray, bounds: tuple[float, float]) -> tuple[np.ndarray, float]:
    """Weights clipped to ``bounds`` times their mean, normalised to mean 1; and the share clipped."""
    w = np.asarray(w, np.float64)
    lo, hi = bounds[0] * w.mean(), bounds[1] * w.mean()
    out = np.clip(w, lo, hi)
    return out / out.mean(), float(np.mean((w < lo) | (w > hi)))


def effective_size(w: np.ndarray) -> float:
    """Kish's effective sample size of weights: (sum w)^2 / sum w^2 (n for equal weights)."""
    w = np.asarray(w, np.float64)
    return float(w.sum() ** 2 / np.sum(w * w))


def weighted_mae(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> float:
    """MAE with importance weights: the train error re-weighted towards the test, an estimate of the test MAE."""
    return float(np.average(np.abs(np.asarray(y, np.float64) - np.asarray(pred, np.float64)), weights=w))


def scale_seconds(cfg: Config, lengths: np.ndarray, weights: np.ndarray | None, chosen: np.ndarray | None) -> float:
    """The test cycle scale the fraction predictions are multiplied by (``targets.scale``).

    ``lengths``: the cycle length of each trained segment. A mean over segments, not cycles, so that
    scale x the mean fraction is the mean time to failure: a long cycle holds more segments.
    ``chosen``: which trained segments lie in the cycles data.train_cycles=auto chose.
    """
    s = cfg.targets.scale
    if not isinstance(s, str):
        return float(s)
    if s == "weights":
        return float(np.average(lengths, weights=weights))
    if s == "cycles":
        return float(lengths[chosen].mean())
    return float(lengths.mean())


def to_fraction(train: pd.DataFrame, lengths: np.ndarray, threshold: float, scale: float) -> pd.DataFrame:
    """A train table with its three targets as phases of the cycle: the time to failure and the time
    since failure over the cycle's length (they sum to 1), and the binary target at the phase where
    a cycle of ``scale`` seconds is ``threshold`` seconds from failure."""
    frac = train["target"].to_numpy(np.float64) / lengths
    return train.assign(target=frac, tsf=train["tsf"].to_numpy(np.float64) / lengths, binary=(frac < threshold / scale).astype(np.int8))


def test_mean_estimates(seconds: np.ndarray, weights: np.ndarray | None, chosen: np.ndarray | None) -> dict[str, Any]:
    """The test's mean time to failure, estimated without test labels: the trained segments' mean,
    that of the cycles auto chose, and the weighted mean (the test predictions' mean is the run's)."""
    out: dict[str, Any] = {"train_mean": float(np.mean(seconds))}
    if chosen is not None:
        out["chosen_cycles_mean"] = float(np.mean(seconds[chosen]))
    if weights is not None:
        out["weighted_mean"] = float(np.average(seconds, weights=weights))
    return out
