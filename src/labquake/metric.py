"""The competition's metric and the blend's maths: pure functions, no files.

``mae`` is Kaggle's score; the blend is the geometric mean of the models' predictions, each clipped
below at ``blend.clip_min`` (``clip``), equal-weighted as the recipe (``geomean``) or weighted
(``weighted_geomean``, weights from ``fit_weights`` on out-of-fold predictions).
"""

from __future__ import annotations

from typing import Any

import numpy as np

BLEND = "geomean"  # the blend's name in files and tables: submission_geomean.csv is the file to upload


def clip(pred: Any, clip_min: float) -> np.ndarray:
    """Predictions clipped below at ``clip_min`` (never above)."""
    return np.maximum(np.asarray(pred, dtype=np.float64), clip_min)


def geomean(lgbm: Any, nn: Any, clip_min: float) -> np.ndarray:
    """The recipe's blend: ``sqrt(clip(lgbm) * clip(nn))``."""
    return np.sqrt(clip(lgbm, clip_min) * clip(nn, clip_min))


def weighted_geomean(preds: dict[str, Any], weights: dict[str, float], clip_min: float) -> np.ndarray:
    """``prod(clip(p_m) ** w_m)`` over the weighted models (weights sum to 1); equal weights of two
    models give the recipe's ``sqrt(lgbm * nn)``, which it computes that way, bit for bit."""
    names = list(weights)
    if len(names) == 2 and weights[names[0]] == weights[names[1]]:
        return geomean(preds[names[0]], preds[names[1]], clip_min)
    if len(names) == 1:
        return clip(preds[names[0]], clip_min)
    logs = sum(w * np.log(clip(preds[m], clip_min)) for m, w in weights.items())
    return np.exp(logs)


def fit_weights(preds: dict[str, Any], y: Any, clip_min: float) -> dict[str, float]:
    """Weights (>= 0, summing to 1) of the weighted geometric mean with the least MAE on ``preds``
    (out-of-fold predictions): Nelder-Mead on a softmax, from equal weights (deterministic)."""
    from scipy.optimize import minimize

    names = list(preds)
    logs = np.stack([np.log(clip(preds[m], clip_min)) for m in names])
    y = np.asarray(y, np.float64)

    def weights(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max())
        return e / e.sum()

    def loss(z: np.ndarray) -> float:
        return float(np.mean(np.abs(y - np.exp(weights(z) @ logs))))

    best = minimize(loss, np.zeros(len(names)), method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 2000})
    w = weights(best.x) if best.fun <= loss(np.zeros(len(names))) else np.full(len(names), 1 / len(names))
    return {m: float(v) for m, v in zip(names, w)}


def mae(y: Any, pred: Any) -> float:
    return float(np.mean(np.abs(np.asarray(y, dtype=np.float64) - np.asarray(pred, dtype=np.float64))))


def predictions(preds: dict[str, Any], weights: dict[str, float], clip_min: float) -> dict[str, np.ndarray]:
    """What is submitted: the blend (BLEND) of the weighted models, then each model clipped the same way."""
    return {BLEND: weighted_geomean(preds, weights, clip_min), **{m: clip(p, clip_min) for m, p in preds.items()}}
