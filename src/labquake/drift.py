"""Do two sets of segments look alike? (`labquake compare`, and `labquake drift` on top of it)

``compare`` sets any two feature tables side by side (two feature folders, a folder and a parquet
file, or the train and the test of one folder); ``drift`` compares a feature folder's training
segments (the selected cycles) with its test segments. Both give, for each feature, the two-sample
Kolmogorov-Smirnov statistic and p-value, and an adversarial-validation AUC: a LightGBM classifier
that tells the two sides' rows apart, scored out of fold (0.5: indistinguishable).

Writes to ``out/``: ``NAME.csv`` (``feature, ks_stat, p_value``, one row per feature, largest
statistic first), ``NAME.json`` (the AUC, the median and largest KS, the configuration and
timings), ``ks.png`` (the statistics) and ``distributions.png`` (histograms of every feature), with
NAME ``compare`` or ``drift``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake.config import Config
from labquake.util import LabquakeError, Timer, atomic_path, log, read_table, stage_record, write_json

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


def draw_ks(ax, table: pd.DataFrame, labels: tuple[str, str] = ("train", "test")) -> None:
    """KS statistic of each feature as bars, largest on top, red where p < 0.05 (drift, compare and report)."""
    t = table.iloc[::-1]
    ax.barh(t["feature"], t["ks_stat"], color=np.where(t["p_value"] < 0.05, "#cc6677", "#4477aa"))
    ax.set_xlabel(f"KS statistic, {labels[0]} vs {labels[1]} (red: p < 0.05)")
    ax.tick_params(axis="y", labelsize=7)


def plot_ks(table: pd.DataFrame, path: Path, labels: tuple[str, str] = ("train", "test")) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.28 * len(table) + 1.2))
    draw_ks(ax, table, labels)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot_distributions(train: pd.DataFrame, test: pd.DataFrame, table: pd.DataFrame, path: Path, labels: tuple[str, str] = ("train", "test")) -> None:
    import matplotlib.pyplot as plt

    names = table["feature"].tolist()
    cols = 4
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.4 * rows), squeeze=False)
    for ax, name, ks in zip(axes.ravel(), names, table["ks_stat"]):
        both = np.r_[train[name], test[name]]
        bins = np.histogram_bin_edges(both[np.isfinite(both)], bins=30)
        ax.hist(train[name], bins=bins, density=True, alpha=0.55, label=labels[0], color="#4477aa")
        ax.hist(test[name], bins=bins, density=True, alpha=0.55, label=labels[1], color="#ee6677")
        ax.set_title(f"{name}\nKS {ks:.3f}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def compare_tables(
    a: pd.DataFrame, b: pd.DataFrame, features: list[str], out_dir: Path, name: str, labels: tuple[str, str], record: dict[str, Any], timer: Timer
) -> dict[str, Any]:
    """KS per feature and the adversarial AUC of ``a`` against ``b``; writes NAME.csv, NAME.json and the plots."""
    import matplotlib

    matplotlib.use("Agg")
    with timer.step("ks"):
        table = ks_table(a, b, features)
    with timer.step("adversarial"):
        auc = adversarial_auc(a, b, features)
    out_dir.mkdir(parents=True, exist_ok=True)
    with timer.step("write"):
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        plot_ks(table, out_dir / "ks.png", labels)
        plot_distributions(a, b, table, out_dir / "distributions.png", labels)
    summary = {
        "adversarial_auc": auc,
        "features": len(features),
        "median_ks": float(table["ks_stat"].median()),
        "p_below_0.05": int((table["p_value"] < 0.05).sum()),
        "largest_ks": table.iloc[0][["feature", "ks_stat", "p_value"]].to_dict(),
        "segments": [len(a), len(b)],
        "labels": list(labels),
    }
    write_json(out_dir / f"{name}.json", stage_record(name, record.pop("config", {}), timer, **record, summary=summary))
    log.info(
        "%s: adversarial AUC %.3f; median KS %.3f; %d of %d features with KS p < 0.05 (largest: %s, KS %.3f) -> %s",
        name,
        auc,
        summary["median_ks"],
        summary["p_below_0.05"],
        len(features),
        summary["largest_ks"]["feature"],
        summary["largest_ks"]["ks_stat"],
        out_dir,
    )
    return summary


def run_drift(cfg: Config, features_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The drift stage: read a feature folder, compare train (selected cycles) and test, write ``out_dir``."""
    from labquake.models import load_training_data, model_features

    timer = Timer()
    with timer.step("load"):
        data = load_training_data(cfg, Path(features_dir))
        features = model_features(data.train.columns)
    record = {"config": cfg.to_dict(), "features_dir": str(features_dir)}
    return compare_tables(data.train, data.test, features, Path(out_dir), "drift", ("train", "test"), record, timer)


def read_side(path: Path, which: str) -> pd.DataFrame:
    """One side of a comparison: a parquet file, or the ``which`` table (train or test) of a feature folder."""
    path = Path(path)
    if not path.exists():
        raise LabquakeError(f"{path}: not found (give a feature folder or a parquet file)")
    if path.is_dir():
        path = path / f"{which}.parquet"
        if not path.exists():
            raise LabquakeError(f"{path}: not found (is {path.parent} a feature folder? `labquake features` writes one)")
    return read_table(path)


def run_compare(a: Path, b: Path | None, out_dir: Path, which: tuple[str, str] = ("test", "test")) -> dict[str, Any]:
    """The compare stage: two feature tables side by side (``b`` None: ``a``'s train against its test)."""
    timer = Timer()
    with timer.step("load"):
        if b is None:
            if not Path(a).is_dir():
                raise LabquakeError(f"{a}: a table alone has nothing to be compared with (give a second one, or a feature folder)")
            b, which = a, ("train", "test")
        left, right = read_side(a, which[0]), read_side(b, which[1])
    numeric = [c for c in left.columns if c in right.columns and pd.api.types.is_numeric_dtype(left[c]) and pd.api.types.is_numeric_dtype(right[c])]
    features = [c for c in numeric if c not in NOT_FEATURES]
    if not features:
        raise LabquakeError(f"{a} and {b}: no feature column in common")
    for side, table in ((a, left), (b, right)):
        if len(table) < 2:
            raise LabquakeError(f"{side}: {len(table)} row(s); a comparison needs at least 2 segments on each side")
    labels = (f"{Path(a).name}:{which[0]}" if Path(a).is_dir() else Path(a).stem, f"{Path(b).name}:{which[1]}" if Path(b).is_dir() else Path(b).stem)
    if labels[0] == labels[1]:
        labels = ("A: " + labels[0], "B: " + labels[1])
    record = {"a": str(a), "b": str(b), "tables": list(which)}
    return compare_tables(left, right, features, Path(out_dir), "compare", labels, record, timer)
