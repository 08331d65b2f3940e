"""The report's plots: matplotlib's object API on an Agg canvas, deterministic bytes.

No ``pyplot``, so the caller's backend and global figure state are never touched; a fixed size and
fixed style settings (whatever the user's matplotlibrc says) and no metadata, so the same inputs
give the same bytes. Each ``plot_*`` function draws one figure from what ``report.load`` read.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake.metric import mae
from labquake.models.registry import MODELS
from labquake.models.registry import color as model_color
from labquake.models.registry import label as model_label
from labquake.report.load import RunData, networks
from labquake.util import atomic_path

DPI = 100
SIZE = (12.0, 6.0)  # inches: 1200 x 600 pixels at DPI
TTF_BIN_S = 2.0
COLORS = {"truth": "black", "blend": "#2ca02c"}
BARS = "#1f77b4"  # the importance and feature plots


def label(m: str) -> str:
    return "blend (geometric mean)" if m == "blend" else model_label(m)


def color(m: str) -> str:
    return COLORS.get(m) or model_color(m)


def history_plot(name: str) -> str:
    """The training-curves plot of a network: nn_history.png, seq_history.png."""
    return f"{name}_history.png"


# Every plot this module may write; files of these names that a run no longer produces are removed.
PLOTS = (
    "oof_timeline.png",
    "mae_by_cycle.png",
    "mae_by_ttf.png",
    "lgbm_importance.png",
    "lgbm_features.png",
    "lgbm_curves.png",
    *(history_plot(n) for n in networks(list(MODELS))),
    "test_distribution.png",
    "oof_vs_test.png",
    "drift_ks.png",
    "test_vs_truth.png",
)


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = SIZE, **kw: Any):
    """A figure on an Agg canvas with fixed style settings, and its axes array (2-D)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _styled(func: Callable[..., None]) -> Callable[..., None]:
    """Draw under matplotlib's default style plus ours, whatever the user's matplotlibrc says."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        import matplotlib.style

        with matplotlib.style.context(["default", _STYLE]):
            func(*args, **kwargs)

    return wrapper


_STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        # No Software/date metadata: identical inputs give identical bytes across versions.
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def _segments_break(x: np.ndarray, cycle: np.ndarray) -> np.ndarray:
    """Indices where a line must break: a new cycle, or a gap (cycles left out of training)."""
    if len(x) < 2:
        return np.zeros(0, dtype=np.int64)
    dx = np.diff(x)
    step = np.median(dx[dx > 0]) if np.any(dx > 0) else 1.0
    return np.flatnonzero((dx > 1.5 * step) | (np.diff(cycle) != 0)) + 1


def _with_breaks(x: np.ndarray, y: np.ndarray, breaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.insert(x, breaks, np.nan), np.insert(np.asarray(y, dtype=np.float64), breaks, np.nan)


def _shade_cycles(ax: Any, x: np.ndarray, cycle: np.ndarray, label_top: bool) -> None:
    cycles = pd.unique(cycle)
    step = np.median(np.diff(x)) if len(x) > 1 else 1.0
    for i, c in enumerate(cycles):
        xs = x[cycle == c]
        lo, hi = xs.min() - step / 2, xs.max() + step / 2
        ax.axvspan(lo, hi, color="0.5" if i % 2 else "0.75", alpha=0.15, lw=0, zorder=0)
        ax.axvline(lo, color="0.4", lw=0.6, ls=":", zorder=1)
        if label_top:
            ax.text((lo + hi) / 2, 1.01, str(c), transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8, color="0.3")


@_styled
def plot_oof_timeline(d: RunData, path: Path) -> None:
    oof = d.oof
    cycle = oof["cycle"].to_numpy()
    breaks = _segments_break(d.x, cycle)
    models = d.columns
    fig, axes = _figure(len(models), 1, size=(12.0, max(6.0, 2.0 + 1.6 * len(models))), sharex=True, sharey=True)
    xt, yt = _with_breaks(d.x, oof["target"], breaks)
    marker = "." if len(oof) < 400 else None
    for ax, m in zip(axes[:, 0], models):
        _shade_cycles(ax, d.x, cycle, label_top=ax is axes[0, 0])
        ax.plot(xt, yt, color=COLORS["truth"], lw=1.2, zorder=4, label="true time\nto failure")
        xm, ym = _with_breaks(d.x, oof[m], breaks)
        text = f"{label(m)}\n(OOF MAE {mae(oof['target'], oof[m]):.3f} s)".replace(" (geometric mean)", "")
        ax.plot(xm, ym, color=color(m), lw=0.9, marker=marker, ms=3, alpha=0.9, label=text)
        ax.set_ylabel("time to failure (s)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), framealpha=0.85)
        ax.set_ylim(bottom=min(0.0, float(np.nanmin(oof[models].to_numpy()))))
    axes[-1, 0].set_xlabel(d.x_label)
    fig.suptitle(f"Out-of-fold predictions against the true time to failure ({len(oof)} segments; shaded bands: quake cycles, numbered on top)")
    _save(fig, path)


def _grouped_bars(ax: Any, groups: list[str], values: dict[str, list[float]], models: list[str]) -> None:
    n = len(models)
    width = 0.8 / n
    pos = np.arange(len(groups))
    for i, m in enumerate(models):
        ax.bar(pos + (i - (n - 1) / 2) * width, values[m], width=width, color=color(m), label=label(m))
    ax.set_xticks(pos, groups)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    top = max((v for vs in values.values() for v in vs if np.isfinite(v)), default=1.0)
    ax.set_ylim(0, 1.18 * top)  # headroom for the legend above the bars
    ax.legend(loc="upper left", ncols=n, framealpha=0.9)
    ax.grid(axis="x", visible=False)


def _mae_per_group(d: RunData, parts: Iterable[tuple[Any, pd.DataFrame]]) -> tuple[list[str], dict[str, list[float]]]:
    """Bar labels ("<label>\\nn=<rows>") and each model's OOF MAE for (label, rows) pairs."""
    groups, values = [], {m: [] for m in d.columns}
    for text, g in parts:
        groups.append(f"{text}\nn={len(g)}")
        for m in d.columns:
            values[m].append(mae(g["target"], g[m]))
    return groups, values


@_styled
def plot_mae_by_cycle(d: RunData, path: Path) -> None:
    oof = d.oof
    groups, values = _mae_per_group(d, oof.groupby("cycle", sort=True))
    fig, axes = _figure()
    ax = axes[0, 0]
    _grouped_bars(ax, groups, values, d.columns)
    for m in d.columns:
        ax.axhline(mae(oof["target"], oof[m]), color=color(m), lw=1, ls="--")
    ax.set_xlabel("quake cycle (n = trained segments in the cycle)")
    ax.set_ylabel("mean absolute error (s)")
    ax.set_title("Out-of-fold MAE per quake cycle (dashed: overall MAE of each model)")
    _save(fig, path)


def ttf_bins(target: Any, width: float = TTF_BIN_S) -> np.ndarray:
    """Bin index of each time to failure: [0, w), [w, 2w), ...; negative values go to bin 0."""
    return np.maximum(np.floor(np.asarray(target, dtype=np.float64) / width), 0).astype(np.int64)


@_styled
def plot_mae_by_ttf(d: RunData, path: Path) -> None:
    oof = d.oof
    bins = ttf_bins(oof["target"])
    parts = ((f"{b * TTF_BIN_S:g}-{(b + 1) * TTF_BIN_S:g}", oof[bins == b]) for b in np.unique(bins))
    groups, values = _mae_per_group(d, parts)
    fig, axes = _figure()
    ax = axes[0, 0]
    _grouped_bars(ax, groups, values, d.columns)
    ax.set_xlabel(f"true time to failure (s), bins of {TTF_BIN_S:g} s (n = segments in the bin)")
    ax.set_ylabel("mean absolute error (s)")
    ax.set_title("Out-of-fold MAE per time-to-failure bin")
    _save(fig, path)


@_styled
def plot_lgbm_importance(imp: pd.DataFrame, path: Path) -> None:
    stats = imp.groupby("feature")["gain"].agg(["mean", "std", "count"]).fillna(0.0)
    stats = stats.sort_values(["mean"], ascending=True, kind="stable")
    n_models = int(stats["count"].max())
    fig, axes = _figure()
    ax = axes[0, 0]
    pos = np.arange(len(stats))
    ax.barh(pos, stats["mean"], xerr=stats["std"], color=BARS, alpha=0.75, capsize=4, label="mean ± sd")
    rng = np.random.default_rng(0)  # fixed jitter: deterministic output
    for i, feat in enumerate(stats.index):
        vals = imp.loc[imp["feature"] == feat, "gain"].to_numpy()
        ax.scatter(vals, i + rng.uniform(-0.25, 0.25, len(vals)), s=9, color="black", alpha=0.5, zorder=3, label="one model" if i == 0 else None)
    ax.set_yticks(pos, list(stats.index))
    ax.set_xlabel("gain: total loss reduction of the feature's splits (objective units)")
    ax.set_title(f"LightGBM feature importance (gain) over {n_models} models (seeds x folds)")
    ax.legend(loc="lower right")
    ax.grid(axis="y", visible=False)
    _save(fig, path)


@_styled
def plot_lgbm_features(tab: pd.DataFrame, feats: list[str], path: Path) -> None:
    n = len(feats)
    ncols = 3 if n > 4 else max(n, 1)
    nrows = math.ceil(n / ncols)
    fig, axes = _figure(nrows, ncols, size=(12.0, max(6.0, 3.0 * nrows)))
    y = tab["target"].to_numpy(dtype=np.float64)
    bins = ttf_bins(y, 1.0)
    for ax, feat in zip(axes.flat, feats):
        v = pd.to_numeric(tab[feat], errors="coerce").to_numpy(dtype=np.float64)
        ax.scatter(y, v, s=6, alpha=0.4, color=BARS, lw=0)
        # Median of the feature per 1-second bin of time to failure: the trend through the cloud.
        med = pd.Series(v).groupby(bins).median()
        ax.plot(med.index.to_numpy() + 0.5, med.to_numpy(), color="black", lw=1.5, label="median per 1 s")
        rho = pd.Series(v).corr(pd.Series(y), method="spearman")
        ax.set_title(f"{feat}\nSpearman ρ = {rho:+.2f}", fontsize=9)
        ax.set_xlabel("time to failure (s)")
        ax.set_ylabel("feature value")
        ax.legend(loc="best", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"LightGBM features against time to failure ({len(tab)} train segments in {tab['cycle'].nunique()} cycles, from the feature table)")
    _save(fig, path)


@_styled
def plot_lgbm_curves(cur: pd.DataFrame, path: Path) -> None:
    import matplotlib

    folds = sorted(cur["fold"].unique())
    seeds = sorted(cur["seed"].unique())
    cmap = matplotlib.colormaps["viridis"]
    fig, axes = _figure(1, len(folds), sharey=True)
    for ax, fold in zip(axes[0], folds):
        for i, (seed, g) in enumerate(cur[cur["fold"] == fold].groupby("seed", sort=True)):
            color = cmap(i / max(len(seeds) - 1, 1) * 0.9)
            ax.plot(g["iteration"], g["valid_mae"], color=color, lw=1.0, label=f"seed {seed}")
            k = g["valid_mae"].idxmin()
            ax.plot(g.loc[k, "iteration"], g.loc[k, "valid_mae"], marker="o", ms=4, color=color)
        ax.set_title(f"fold {fold}")
        ax.set_xlabel("boosting round")
    axes[0, 0].set_ylabel("validation MAE (s)")
    if len(seeds) <= 12:
        axes[0, -1].legend(loc="upper right", fontsize=8, ncols=2 if len(seeds) > 5 else 1)
    fig.suptitle("LightGBM validation MAE per boosting round, a line per seed (dot: best round, where early stopping cut)")
    _save(fig, path)


def _history_rows(hist: pd.DataFrame) -> list[tuple[str, str, str | None]]:
    """(title, y label, validation column) per row of panels; the first row is the total loss."""
    rows: list[tuple[str, str, str | None]] = []
    if "loss" in hist.columns or "val_loss" in hist.columns:
        rows.append(("total loss (solid: train, dashed: validation)", "weighted loss", None))
    heads: dict[str, str] = {}
    for col in hist.columns:
        c = str(col)
        if not c.startswith("val_") or c == "val_loss":
            continue
        for suffix in ("_mae", "_loss"):
            if c.endswith(suffix):
                head = c[4 : -len(suffix)]
                if head and (head not in heads or suffix != "_loss"):
                    heads[head] = c
                break
    order = sorted(heads, key=lambda h: (0 if "ttf" in h else 1 if "tsf" in h else 2, h))
    for head in order:
        col = heads[head]
        # The recipe's TTF and TSF losses are MAE themselves: their loss is their MAE, in seconds.
        is_mae = not col.endswith("_loss") or "ttf" in head or "tsf" in head
        what = "MAE" if is_mae else "loss (binary cross-entropy)" if "bin" in head else "loss"
        unit = "MAE (s)" if is_mae and ("ttf" in head or "tsf" in head) else "MAE" if is_mae else "loss"
        rows.append((f"{head} head: validation {what}", unit, col))
    return rows


@_styled
def plot_network_history(hist: pd.DataFrame, runs: Any, name: str, path: Path) -> None:
    """The training curves of network ``name`` (NAME/history.csv), a column of panels per fold, a line per run."""
    folds = sorted(hist["fold"].unique())
    rows = _history_rows(hist)
    run_ids = sorted(hist["run"].unique())
    rejected = {r["run"] for r in runs["runs"] if not r["accepted"]}
    fig, axes = _figure(len(rows), len(folds), size=(12.0, max(6.0, 2.4 * len(rows))), sharex="col", sharey="row")
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    colors = {r: cmap(i / max(len(run_ids) - 1, 1) * 0.9) for i, r in enumerate(run_ids)}
    for j, fold in enumerate(folds):
        hf = hist[hist["fold"] == fold]
        for r, g in hf.groupby("run", sort=True):
            g = g.sort_values("epoch")
            bad = r in rejected
            style = {"color": "0.6" if bad else colors[r], "lw": 1.0, "alpha": 0.9}
            tag = f"run {r}" + (" (rejected)" if bad else "")
            for i, (_, _, col) in enumerate(rows):
                ax = axes[i, j]
                if col is None:
                    if "loss" in g.columns:
                        ax.plot(g["epoch"], g["loss"], ls="-", label=tag, **style)
                    if "val_loss" in g.columns:
                        ax.plot(g["epoch"], g["val_loss"], ls="--", **style)
                else:
                    ax.plot(g["epoch"], g[col], ls="-", label=tag, **style)
                    if "ttf" in col and g[col].notna().any():
                        k = g[col].idxmin()  # the epoch whose weights are kept
                        ax.plot(g.loc[k, "epoch"], g.loc[k, col], marker="o", ms=4, color=style["color"])
        axes[0, j].set_title(f"fold {fold}\n{rows[0][0]}", fontsize=10)
        for i in range(1, len(rows)):
            axes[i, j].set_title(rows[i][0], fontsize=10)
        axes[-1, j].set_xlabel("epoch")
    for i, (_, unit, _) in enumerate(rows):
        axes[i, 0].set_ylabel(unit)
    if len(run_ids) <= 12:
        axes[0, -1].legend(loc="upper right", fontsize=8, ncols=2 if len(run_ids) > 4 else 1)
    fig.suptitle(f"{label(name).capitalize()} ({name}) training curves per fold, a line per run (dot: best validation TTF MAE, the kept weights)")
    _save(fig, path)


@_styled
def plot_test_distribution(d: RunData, path: Path) -> None:
    models = d.columns
    y = d.oof["target"].to_numpy(dtype=np.float64)
    allv = np.concatenate([y] + [d.test[m].to_numpy(dtype=np.float64) for m in models])
    lo, hi = float(np.nanmin(allv)), float(np.nanmax(allv))
    edges = np.linspace(min(lo, 0.0), hi + 1e-9, 41)
    fig, axes = _figure()
    ax = axes[0, 0]
    ax.hist(y, bins=edges, density=True, color="0.6", alpha=0.6, label=f"train target (n={len(y)})")
    for m in models:
        v = d.test[m].to_numpy(dtype=np.float64)
        ax.hist(v, bins=edges, density=True, histtype="step", lw=2, color=color(m), label=f"test, {label(m)} (mean {np.mean(v):.2f} s)")
    ax.axvline(np.mean(y), color="0.3", ls="--", lw=1, label=f"train target mean {np.mean(y):.2f} s")
    ax.set_xlabel("time to failure (s)")
    ax.set_ylabel("density (1/s)")
    ax.set_title(f"Test predictions ({len(d.test)} segments) against the distribution of the train target")
    ax.legend(loc="upper right")
    _save(fig, path)


@_styled
def plot_drift(table: pd.DataFrame, path: Path) -> None:
    from labquake.plotting import draw_ks

    fig, axes = _figure()
    draw_ks(axes[0, 0], table)
    axes[0, 0].set_title("Train against test (the trained segments), feature by feature")
    _save(fig, path)


def oof_test_ks(d: RunData, model: str = "blend") -> tuple[float, float]:
    """KS statistic and p-value between a model's out-of-fold and test predictions."""
    from scipy.stats import ks_2samp

    res = ks_2samp(d.oof[model].to_numpy(np.float64), d.test[model].to_numpy(np.float64))
    return float(res.statistic), float(res.pvalue)


@_styled
def plot_oof_vs_test(d: RunData, path: Path) -> None:
    fig, axes = _figure(1, len(d.columns), sharex=True)
    for ax, m in zip(axes[0], d.columns):
        oof, test = d.oof[m].to_numpy(np.float64), d.test[m].to_numpy(np.float64)
        edges = np.linspace(min(oof.min(), test.min()), max(oof.max(), test.max()) + 1e-9, 31)
        ax.hist(oof, bins=edges, density=True, color="0.6", alpha=0.6, label=f"out of fold (n={len(oof)})")
        ax.hist(test, bins=edges, density=True, histtype="step", lw=2, color=color(m), label=f"test (n={len(test)})")
        ks, p = oof_test_ks(d, m)
        ax.set_title(f"{label(m)}: KS {ks:.3f} (p {p:.2g})")
        ax.set_xlabel("predicted time to failure (s)")
        ax.legend(loc="upper right", fontsize=8)
    axes[0, 0].set_ylabel("density (1/s)")
    fig.suptitle("Out-of-fold against test predictions: a large KS says test looks unlike what validation scored")
    _save(fig, path)


@_styled
def plot_test_vs_truth(merged: pd.DataFrame, models: list[str], path: Path) -> None:
    fig, axes = _figure(1, len(models), sharex=True, sharey=True)
    y = merged["target"].to_numpy(dtype=np.float64)
    hi = float(np.nanmax(np.concatenate([y] + [merged[m].to_numpy(dtype=np.float64) for m in models]))) * 1.05
    for ax, m in zip(axes[0], models):
        ax.scatter(y, merged[m], s=12, alpha=0.6, color=color(m), lw=0)
        ax.plot([0, hi], [0, hi], color="black", lw=1, ls="--", label="y = x")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_title(f"{label(m)}: test MAE {mae(y, merged[m]):.3f} s")
        ax.set_xlabel("true time to failure (s)")
        ax.legend(loc="upper left")
    axes[0, 0].set_ylabel("predicted time to failure (s)")
    fig.suptitle(f"Test predictions against the truth ({len(merged)} segments)")
    _save(fig, path)
