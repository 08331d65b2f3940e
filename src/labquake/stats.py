"""Do two sets of segments look alike? The statistics, as pure functions on feature tables.

The two-sample Kolmogorov-Smirnov statistic per feature (``ks_table``, with scipy's p-value;
``ks_statistic`` and ``mean_ks`` without it, for searches that compute thousands) and an
adversarial-validation AUC (``adversarial_auc``: a small LightGBM classifier telling the two sides'
rows apart, scored out of fold; 0.5 is indistinguishable). ``drift`` draws and writes them.
``signal_stats``: plain statistics of raw segments beyond the 24 features, to set a synthetic signal
against a real one (tests/test_realism.py, bench/realism.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ADVERSARIAL_FOLDS = 5
# columns of a feature table that describe a segment rather than measure it
NOT_FEATURES = ("seg_id", "start", "target", "cycle", "tsf", "binary", "time_to_failure", "segment")


def ks_statistic(a_sorted: np.ndarray, b_sorted: np.ndarray) -> float:
    """Two-sample KS statistic of two sorted samples (scipy's ks_2samp statistic, without its p-value:
    the cycle search computes thousands and needs no p-value)."""
    points = np.concatenate([a_sorted, b_sorted])
    fa = np.searchsorted(a_sorted, points, side="right") / len(a_sorted)
    fb = np.searchsorted(b_sorted, points, side="right") / len(b_sorted)
    return float(np.max(np.abs(fa - fb)))


def mean_ks(train: pd.DataFrame, test_sorted: dict[str, np.ndarray]) -> float:
    """Mean KS statistic over the features between some train rows and the (sorted) test columns."""
    return float(np.mean([ks_statistic(np.sort(train[f].to_numpy(np.float64)), t) for f, t in test_sorted.items()]))


def ks_table(train: pd.DataFrame, test: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Two-sample KS statistic and p-value of each feature, largest statistic first."""
    from scipy.stats import ks_2samp

    rows = []
    for name in features:
        res = ks_2samp(train[name].to_numpy(np.float64), test[name].to_numpy(np.float64))
        rows.append({"feature": name, "ks_stat": float(res.statistic), "p_value": float(res.pvalue)})
    return pd.DataFrame(rows).sort_values("ks_stat", ascending=False, kind="stable").reset_index(drop=True)


def adversarial_auc(train: pd.DataFrame, test: pd.DataFrame, features: list[str], seed: int = 0) -> float:
    """Out-of-fold ROC AUC of a small LightGBM classifier telling test rows (1) from train rows (0)."""
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    X = pd.concat([train[features], test[features]], ignore_index=True)
    y = np.r_[np.zeros(len(train)), np.ones(len(test))]
    pred = np.zeros(len(y))
    params = {"objective": "binary", "num_leaves": 8, "learning_rate": 0.05, "min_data_in_leaf": 5, "seed": seed, "verbosity": -1, "num_threads": 1}
    n_splits = int(min(ADVERSARIAL_FOLDS, len(train), len(test)))
    for tr, va in StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(X, y):
        booster = lgb.train(params, lgb.Dataset(X.iloc[tr], y[tr]), num_boost_round=200)
        pred[va] = booster.predict(X.iloc[va])
    return float(roc_auc_score(y, pred))


SIGNAL_BANDS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.35, 0.5)  # cycles/sample
SIGNAL_LAGS = (1, 2, 5, 10, 50)
FRAME = 2048  # samples: the features' STFT frame
BURST_WINDOW = 128  # samples: the bursts' power is smoothed over this, and its change taken over it


def signal_stats(segments: np.ndarray) -> pd.DataFrame:
    """Plain statistics of each row of ``segments`` (raw signal, one segment a row), on x - median
    unless named otherwise: the mean of x; sd, kurtosis, the 0.99 and 0.999 quantiles and the
    maximum of |x - median| and its share above 20; zero crossings; autocorrelation at SIGNAL_LAGS;
    mean power in SIGNAL_BANDS (Welch, 2,048-sample frames); burstiness: the sd of the log variance
    of 2,048-sample frames, the kurtosis of the 0.02-0.1 cycles/sample band (the tone's), and
    ``burst_asymmetry``, the skewness of the change over BURST_WINDOW samples of the log power over
    BURST_WINDOW samples: positive when bursts rise faster than they decay (real: 2.0-3.6, 10-90%)."""
    from scipy import stats
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import butter, sosfiltfilt, welch

    x = np.asarray(segments, dtype=np.float64)
    z = x - np.median(x, axis=1, keepdims=True)
    a = np.abs(z)
    out = {"mean": x.mean(1), "sd": z.std(1), "kurtosis": stats.kurtosis(z, axis=1)}
    out |= {"q99": np.quantile(a, 0.99, axis=1), "q999": np.quantile(a, 0.999, axis=1), "max_abs": a.max(1), "s20": (a > 20).mean(1)}
    out["zero_crossings"] = (np.sign(z[:, 1:]) != np.sign(z[:, :-1])).mean(1)
    c = z - z.mean(1, keepdims=True)
    var = (c * c).mean(1)
    out |= {f"acf{lag}": (c[:, lag:] * c[:, :-lag]).mean(1) / var for lag in SIGNAL_LAGS}
    f, p = welch(c, nperseg=FRAME, axis=1)
    out |= {f"band_{lo}": p[:, (f >= lo) & (f < hi)].mean(1) for lo, hi in zip(SIGNAL_BANDS[:-1], SIGNAL_BANDS[1:])}
    n = x.shape[1] // FRAME * FRAME
    out["frame_log_power_sd"] = np.log(z[:, :n].reshape(len(z), -1, FRAME).var(axis=2)).std(1)
    tone = sosfiltfilt(butter(4, (0.04, 0.2), "bandpass", output="sos"), c, axis=1)  # 0.02-0.1 cycles/sample
    out["tone_kurtosis"] = stats.kurtosis(tone, axis=1)
    log_power = np.log1p(uniform_filter1d(z * z, BURST_WINDOW, axis=1))  # +1: the floor's power is about 10
    change = log_power[:, BURST_WINDOW :: BURST_WINDOW // 8] - log_power[:, : -BURST_WINDOW : BURST_WINDOW // 8]
    out["burst_asymmetry"] = stats.skew(change, axis=1)
    return pd.DataFrame(out)
