"""Train against test: do the feature distributions differ? (`labquake drift`)

For each model feature, the two-sample Kolmogorov-Smirnov statistic and p-value between the train
segments (the selected cycles) and the test segments; and an adversarial-validation AUC: a LightGBM
classifier that tells train rows from test rows, scored out of fold (0.5: indistinguishable).

Writes to ``out/``: ``drift.csv`` (``feature, ks_stat, p_value``, one row per feature, largest
statistic first), ``drift.json`` (the AUC, the configuration and timings), ``ks.png`` (the
statistics) and ``distributions.png`` (train and test histograms of every feature).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake.config import Config
from labquake.util import LabquakeError, Timer, atomic_path, log, stage_record, write_json

ADVERSARIAL_FOLDS = 5


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


def choose_cycles(
    train: pd.DataFrame, test: pd.DataFrame, features: list[str], share: float, draws: int, seed: int, recipe: tuple[int, ...] | None = None
) -> dict[str, Any]:
    """Seeded random search over subsets of complete cycles (all but the file's first and last):
    the subset whose segments' features are closest to the test's, by mean KS statistic.

    Returns the chosen cycles and score, every draw's score, and the scores of all cycles and of the
    recipe's list (when its cycles are all in the table).
    """
    cycles = np.unique(train["cycle"])
    complete = cycles[1:-1]
    if len(complete) < 3:
        raise LabquakeError(f"data.train_cycles=auto: needs at least 3 complete cycles, the train table has {len(complete)}")
    k = max(2, int(round(share * len(complete))))
    test_sorted = {f: np.sort(test[f].to_numpy(np.float64)) for f in features}
    by_cycle = {c: train[train["cycle"] == c] for c in cycles}
    rng = np.random.default_rng(seed)
    best, best_score, scores = None, np.inf, []
    for _ in range(draws):
        subset = tuple(sorted(int(c) for c in rng.choice(complete, k, replace=False)))
        score = mean_ks(pd.concat([by_cycle[c] for c in subset]), test_sorted)
        scores.append(score)
        if score < best_score:
            best, best_score = subset, score
    out: dict[str, Any] = {
        "chosen": list(best),
        "score": best_score,
        "subset_size": k,
        "complete_cycles": [int(c) for c in complete],
        "draws": draws,
        "seed": seed,
        "all_cycles_score": mean_ks(train, test_sorted),
        "draw_scores": scores,
    }
    if recipe is not None and set(recipe) <= set(cycles.tolist()):
        out["recipe_score"] = mean_ks(train[train["cycle"].isin(recipe)], test_sorted)
        out["recipe_overlap"] = sorted(set(recipe) & set(best))
    return out


def plot_cycle_choice(choice: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.hist(choice["draw_scores"], bins=40, color="0.7", label=f"{choice['draws']} random subsets of {choice['subset_size']} cycles")
    ax.axvline(choice["score"], color="#228833", lw=2, label=f"chosen {choice['chosen']}: {choice['score']:.4f}")
    ax.axvline(choice["all_cycles_score"], color="#4477aa", ls="--", label=f"all cycles: {choice['all_cycles_score']:.4f}")
    if "recipe_score" in choice:
        ax.axvline(choice["recipe_score"], color="#ee6677", ls=":", lw=2, label=f"recipe's list: {choice['recipe_score']:.4f}")
    ax.set_xlabel("mean KS statistic, train subset vs test (lower: closer)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


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


def draw_ks(ax, table: pd.DataFrame) -> None:
    """KS statistic of each feature as bars, largest on top, red where p < 0.05 (drift and report)."""
    t = table.iloc[::-1]
    ax.barh(t["feature"], t["ks_stat"], color=np.where(t["p_value"] < 0.05, "#cc6677", "#4477aa"))
    ax.set_xlabel("KS statistic, train vs test (red: p < 0.05)")
    ax.tick_params(axis="y", labelsize=7)


def plot_ks(table: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.28 * len(table) + 1.2))
    draw_ks(ax, table)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot_distributions(train: pd.DataFrame, test: pd.DataFrame, table: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    names = table["feature"].tolist()
    cols = 4
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.4 * rows), squeeze=False)
    for ax, name, ks in zip(axes.ravel(), names, table["ks_stat"]):
        both = np.r_[train[name], test[name]]
        bins = np.histogram_bin_edges(both[np.isfinite(both)], bins=30)
        ax.hist(train[name], bins=bins, density=True, alpha=0.55, label="train", color="#4477aa")
        ax.hist(test[name], bins=bins, density=True, alpha=0.55, label="test", color="#ee6677")
        ax.set_title(f"{name}\nKS {ks:.3f}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def run_drift(cfg: Config, features_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The drift stage: read a feature folder, compare train (selected cycles) and test, write ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    from labquake.models import load_training_data, model_features

    timer = Timer()
    out_dir = Path(out_dir)
    with timer.step("load"):
        data = load_training_data(cfg, Path(features_dir))
        features = model_features(data.train.columns)
    with timer.step("ks"):
        table = ks_table(data.train, data.test, features)
    with timer.step("adversarial"):
        auc = adversarial_auc(data.train, data.test, features)
    out_dir.mkdir(parents=True, exist_ok=True)
    with timer.step("write"):
        with atomic_path(out_dir / "drift.csv") as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        plot_ks(table, out_dir / "ks.png")
        plot_distributions(data.train, data.test, table, out_dir / "distributions.png")
    summary = {
        "adversarial_auc": auc,
        "features": len(features),
        "p_below_0.05": int((table["p_value"] < 0.05).sum()),
        "largest_ks": table.iloc[0][["feature", "ks_stat", "p_value"]].to_dict(),
        "train_segments": len(data.train),
        "test_segments": len(data.test),
    }
    write_json(out_dir / "drift.json", stage_record("drift", cfg.to_dict(), timer, features_dir=str(features_dir), summary=summary))
    log.info(
        "drift: adversarial AUC %.3f; %d of %d features with KS p < 0.05 (largest: %s, KS %.3f) -> %s",
        auc,
        summary["p_below_0.05"],
        len(features),
        summary["largest_ks"]["feature"],
        summary["largest_ks"]["ks_stat"],
        out_dir,
    )
    return summary
