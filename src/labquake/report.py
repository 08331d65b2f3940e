"""Plots and a Markdown report of one run folder, for a person to look at.

``build_report(RUN)`` reads what ``train`` and ``submit`` left in the run folder and writes
``RUN/report/*.png`` and ``RUN/report/report.md`` (last), which embeds every plot:

=======================  ===================================================================
``oof_timeline.png``     out-of-fold predictions of LightGBM, the network and the blend against
                         the true time to failure along the train timeline, cycles shaded
``mae_by_cycle.png``     OOF MAE of each model per quake cycle (grouped bars)
``mae_by_ttf.png``       OOF MAE of each model per 2-second bin of the true time to failure
``lgbm_importance.png``  LightGBM gain importance, mean and spread over seeds and folds
``lgbm_features.png``    each LightGBM feature against time to failure (FEATDIR/train.parquet)
``lgbm_curves.png``      LightGBM validation MAE per boosting round, a panel per fold, a line per seed
``nn_history.png``       the network's training curves, one column of panels per fold, a line per run
``test_distribution.png``  test predictions against the distribution of the train target
``test_vs_truth.png``    test predictions against the true answers, where a truth file exists
=======================  ===================================================================

What it reads (the run folder layout written by ``models.train`` and ``blend.submit``):

- ``config.json`` (required): the configuration, ``Config.to_dict()``; ``blend.clip_min`` is used.
- ``oof.parquet`` (required): one row per trained segment; the true target (``target``), the OOF
  predictions (``lgbm``, ``nn``), and where present ``start`` (first row), ``cycle`` and ``fold``.
- ``test.parquet``: ``seg_id`` and the test predictions (``lgbm``, ``nn``).
- ``summary.json``, ``train.json`` (stage record; ``features_dir`` names the feature folder),
  ``blend.json`` (stage record; ``truth`` may name a truth CSV), ``lgbm/importance.csv``
  (``feature``, ``gain``, per seed and fold), ``lgbm/curves.csv`` (``seed``, ``fold``,
  ``iteration``, ``valid_mae``), ``nn/history.csv`` (``fold``, ``run``, ``epoch`` and
  Keras' ``loss``/``val_*`` columns), ``nn/runs.json``.

Columns are those the writers write. A missing optional input skips its plot with a line in the
report saying why; a missing or unreadable required one, or a missing column, raises a one-line
:class:`LabquakeError` naming the file.

Plots are drawn with matplotlib's object API on an Agg canvas (no ``pyplot``, so the caller's
backend and global figure state are never touched), at a fixed size and with fixed style settings,
so the same inputs give the same bytes.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake.blend import mae, network_note, predictions
from labquake.util import LabquakeError, atomic_path, log, read_json, read_table, write_text

DPI = 100
SIZE = (12.0, 6.0)  # inches: 1200 x 600 pixels at DPI
TTF_BIN_S = 2.0
COLORS = {"truth": "black", "lgbm": "#1f77b4", "nn": "#ff7f0e", "blend": "#2ca02c"}
LABELS = {"lgbm": "LightGBM", "nn": "network", "blend": "blend (geometric mean)"}

# Every plot this module may write; files of these names that a run no longer produces are removed.
PLOTS = (
    "oof_timeline.png",
    "mae_by_cycle.png",
    "mae_by_ttf.png",
    "lgbm_importance.png",
    "lgbm_features.png",
    "lgbm_curves.png",
    "nn_history.png",
    "test_distribution.png",
    "test_vs_truth.png",
)

_KEY_SETTINGS = (
    "preset",
    "data.train_cycles",
    "cv.n_splits",
    "cv.seed",
    "lgbm.objective",
    "lgbm.num_leaves",
    "lgbm.learning_rate",
    "lgbm.num_boost_round",
    "lgbm.early_stopping_rounds",
    "lgbm.seeds",
    "nn.learning_rate",
    "nn.batch_size",
    "nn.epochs",
    "nn.patience",
    "nn.loss_weights",
    "nn.runs",
    "nn.reject_ratio",
    "nn.on_reject",
    "nn.min_steps_per_epoch",
    "blend.clip_min",
)


# ----------------------------------------------------------------------------------------------
# Reading the run folder


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise LabquakeError(f"{path}: not found") from None
    except (ValueError, UnicodeDecodeError) as exc:  # ParserError, EmptyDataError
        raise LabquakeError(f"{path}: unreadable CSV ({_one_line(exc)})") from None
    if df.empty:
        raise LabquakeError(f"{path}: no rows")
    return df


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _optional_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    obj = read_json(path)  # corrupt: LabquakeError naming the file
    return obj if isinstance(obj, dict) else {"value": obj}


@dataclass
class RunData:
    """Everything the plots need, read and checked once."""

    run: Path
    config: dict[str, Any]
    clip_min: float
    oof: pd.DataFrame  # columns: target, start or None, cycle, fold?, and one per model
    models: list[str]  # "lgbm", "nn", "blend" in that order, those available
    x: np.ndarray  # position of each OOF row on the timeline
    x_label: str
    test: pd.DataFrame | None = None
    test_note: str = ""
    summary: dict[str, Any] | None = None
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> stage record
    runs: Any = None
    notes: list[str] = field(default_factory=list)


def _require(df: pd.DataFrame, path: Path, columns: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise LabquakeError(f"{path}: missing columns {', '.join(missing)}")
    return df


def load_run(run_dir: Path) -> RunData:
    run = Path(run_dir)
    if not run.is_dir():
        raise LabquakeError(f"{run}: run folder not found (train first: labquake train --run {run})")
    cfg_path = run / "config.json"
    config = read_json(cfg_path)
    config = config.get("config") if isinstance(config, dict) else None
    if not isinstance(config, dict):
        raise LabquakeError(f"{cfg_path}: no configuration object (written by `labquake train`)")
    clip_min = float((config.get("blend") or {}).get("clip_min", 0.1))

    oof_path = run / "oof.parquet"
    oof = read_table(oof_path, ("start", "cycle", "target"))
    base = [m for m in ("lgbm", "nn") if m in oof.columns]
    if not base:
        raise LabquakeError(f"{oof_path}: no prediction columns (expected lgbm and/or nn)")
    if len(oof) == 0:
        raise LabquakeError(f"{oof_path}: no rows")
    models = list(base)
    summary = _optional_json(run / "summary.json")
    use_nn = (summary or {}).get("nn_fallback") != "drop"  # as submit blends: LightGBM alone when the network was dropped
    if base == ["lgbm", "nn"]:
        oof["blend"] = predictions(oof["lgbm"], oof["nn"], clip_min, use_nn)["geomean"]
        models.append("blend")

    x = oof["start"].to_numpy(dtype=np.float64) / 1e6
    x_label = "segment start (million rows of train.csv)"
    data = RunData(run=run, config=config, clip_min=clip_min, oof=oof, models=models, x=x, x_label=x_label, summary=summary)

    test_path = run / "test.parquet"
    if test_path.is_file():
        test = read_table(test_path)
        tm = [m for m in ("lgbm", "nn") if m in test.columns]
        if tm == ["lgbm", "nn"]:
            test["blend"] = predictions(test["lgbm"], test["nn"], clip_min, use_nn)["geomean"]
        data.test = test if tm else None
        if not tm:
            data.test_note = f"{test_path} has no prediction columns"
    else:
        data.test_note = f"no {test_path.name} in the run folder"

    for stage in ("train", "blend"):
        rec = _optional_json(run / f"{stage}.json")
        if rec is not None:
            data.records[stage] = rec
    runs_path = run / "nn" / "runs.json"
    if runs_path.is_file():
        data.runs = read_json(runs_path)
    return data


# ----------------------------------------------------------------------------------------------
# Figures


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
    fig, axes = _figure(len(d.models), 1, size=(12.0, max(6.0, 2.0 + 1.6 * len(d.models))), sharex=True, sharey=True)
    xt, yt = _with_breaks(d.x, oof["target"], breaks)
    marker = "." if len(oof) < 400 else None
    for ax, m in zip(axes[:, 0], d.models):
        _shade_cycles(ax, d.x, cycle, label_top=ax is axes[0, 0])
        ax.plot(xt, yt, color=COLORS["truth"], lw=1.2, zorder=4, label="true time\nto failure")
        xm, ym = _with_breaks(d.x, oof[m], breaks)
        label = f"{LABELS[m]}\n(OOF MAE {mae(oof['target'], oof[m]):.3f} s)".replace(" (geometric mean)", "")
        ax.plot(xm, ym, color=COLORS[m], lw=0.9, marker=marker, ms=3, alpha=0.9, label=label)
        ax.set_ylabel("time to failure (s)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), framealpha=0.85)
        ax.set_ylim(bottom=min(0.0, float(np.nanmin(oof[d.models].to_numpy()))))
    axes[-1, 0].set_xlabel(d.x_label)
    fig.suptitle(f"Out-of-fold predictions against the true time to failure ({len(oof)} segments; shaded bands: quake cycles, numbered on top)")
    _save(fig, path)


def _grouped_bars(ax: Any, groups: list[str], values: dict[str, list[float]], models: list[str]) -> None:
    n = len(models)
    width = 0.8 / n
    pos = np.arange(len(groups))
    for i, m in enumerate(models):
        ax.bar(pos + (i - (n - 1) / 2) * width, values[m], width=width, color=COLORS[m], label=LABELS[m])
    ax.set_xticks(pos, groups)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    top = max((v for vs in values.values() for v in vs if np.isfinite(v)), default=1.0)
    ax.set_ylim(0, 1.18 * top)  # headroom for the legend above the bars
    ax.legend(loc="upper left", ncols=n, framealpha=0.9)
    ax.grid(axis="x", visible=False)


def _mae_per_group(d: RunData, parts: Iterable[tuple[Any, pd.DataFrame]]) -> tuple[list[str], dict[str, list[float]]]:
    """Bar labels ("<label>\\nn=<rows>") and each model's OOF MAE for (label, rows) pairs."""
    groups, values = [], {m: [] for m in d.models}
    for label, g in parts:
        groups.append(f"{label}\nn={len(g)}")
        for m in d.models:
            values[m].append(mae(g["target"], g[m]))
    return groups, values


@_styled
def plot_mae_by_cycle(d: RunData, path: Path) -> None:
    oof = d.oof
    groups, values = _mae_per_group(d, oof.groupby("cycle", sort=True))
    fig, axes = _figure()
    ax = axes[0, 0]
    _grouped_bars(ax, groups, values, d.models)
    for m in d.models:
        ax.axhline(mae(oof["target"], oof[m]), color=COLORS[m], lw=1, ls="--")
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
    _grouped_bars(ax, groups, values, d.models)
    ax.set_xlabel(f"true time to failure (s), bins of {TTF_BIN_S:g} s (n = segments in the bin)")
    ax.set_ylabel("mean absolute error (s)")
    ax.set_title("Out-of-fold MAE per time-to-failure bin")
    _save(fig, path)


def _importance_table(run: Path) -> tuple[pd.DataFrame | None, str]:
    path = run / "lgbm" / "importance.csv"
    if not path.is_file():
        return None, "no lgbm/importance.csv in the run folder (LightGBM was not trained?)"
    imp = _read_csv(path)
    _require(imp, path, ("feature", "gain"))
    out = pd.DataFrame({"feature": imp["feature"].astype(str), "gain": pd.to_numeric(imp["gain"], errors="coerce")})
    out = out.dropna()
    if out.empty:
        return None, f"{path} has no gain values"
    return out, ""


@_styled
def plot_lgbm_importance(imp: pd.DataFrame, path: Path) -> None:
    stats = imp.groupby("feature")["gain"].agg(["mean", "std", "count"]).fillna(0.0)
    stats = stats.sort_values(["mean"], ascending=True, kind="stable")
    n_models = int(stats["count"].max())
    fig, axes = _figure()
    ax = axes[0, 0]
    pos = np.arange(len(stats))
    ax.barh(pos, stats["mean"], xerr=stats["std"], color=COLORS["lgbm"], alpha=0.75, capsize=4, label="mean ± sd")
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


def _feature_frame(features_dir: Path, lgbm_features: list[str] | None) -> tuple[pd.DataFrame | None, list[str], str]:
    path = features_dir / "train.parquet"
    if not path.is_file():
        return None, [], f"no train.parquet in the feature folder {features_dir}"
    tab = read_table(path, ("cycle", "target"))
    feats = [f for f in (lgbm_features or []) if f in tab.columns][:9]
    if not feats:
        feats = sorted(c for c in tab.columns if "LGBM" in str(c))
    if not feats:
        return None, [], f"{path} has no LightGBM feature columns (names containing LGBM)"
    return tab, feats, ""


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
        ax.scatter(y, v, s=6, alpha=0.4, color=COLORS["lgbm"], lw=0)
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


def _curves_frame(run: Path) -> tuple[pd.DataFrame | None, str]:
    path = run / "lgbm" / "curves.csv"
    if not path.is_file():
        return None, "no lgbm/curves.csv in the run folder"
    return _require(_read_csv(path), path, ("seed", "fold", "iteration", "valid_mae")), ""


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


def _history_frame(run: Path) -> tuple[pd.DataFrame | None, str]:
    path = run / "nn" / "history.csv"
    if not path.is_file():
        return None, "no nn/history.csv in the run folder (the network was not trained)"
    hist = _require(_read_csv(path), path, ("run", "fold", "epoch"))
    if "loss" not in hist.columns and not any(str(c).startswith("val_") for c in hist.columns):
        return None, f"{path} has neither loss nor val_* columns"
    return hist, ""


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
        for suffix in ("_mae", "_mean_absolute_error", "_loss"):
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


def _rejected_runs(runs: Any) -> set[tuple[Any, Any]]:
    """(fold or None, run) pairs that runs.json marks as rejected, if it says so."""
    items = runs.get("runs", runs.get("attempts")) if isinstance(runs, dict) else runs
    out: set[tuple[Any, Any]] = set()
    if not isinstance(items, list):
        return out
    for it in items:
        if not isinstance(it, dict) or "run" not in it:
            continue
        rejected = it.get("rejected", None)
        if rejected is None and "accepted" in it:
            rejected = not it["accepted"]
        if rejected:
            out.add((it.get("fold"), it["run"]))
    return out


@_styled
def plot_nn_history(hist: pd.DataFrame, runs: Any, path: Path) -> None:
    folds = sorted(hist["fold"].unique())
    rows = _history_rows(hist)
    run_ids = sorted(hist["run"].unique())
    rejected = _rejected_runs(runs)
    if "accepted" in hist.columns:
        flags = hist.groupby(["fold", "run"])["accepted"].first()
        rejected |= {(f, r) for (f, r), ok in flags.items() if str(ok).lower() in ("false", "0")}
    fig, axes = _figure(len(rows), len(folds), size=(12.0, max(6.0, 2.4 * len(rows))), sharex="col", sharey="row")
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    colors = {r: cmap(i / max(len(run_ids) - 1, 1) * 0.9) for i, r in enumerate(run_ids)}
    for j, fold in enumerate(folds):
        hf = hist[hist["fold"] == fold]
        for r, g in hf.groupby("run", sort=True):
            g = g.sort_values("epoch")
            bad = (fold, r) in rejected or (None, r) in rejected
            style = {"color": "0.6" if bad else colors[r], "lw": 1.0, "alpha": 0.9}
            label = f"run {r}" + (" (rejected)" if bad else "")
            for i, (_, _, col) in enumerate(rows):
                ax = axes[i, j]
                if col is None:
                    if "loss" in g.columns:
                        ax.plot(g["epoch"], g["loss"], ls="-", label=label, **style)
                    if "val_loss" in g.columns:
                        ax.plot(g["epoch"], g["val_loss"], ls="--", **style)
                else:
                    ax.plot(g["epoch"], g[col], ls="-", label=label, **style)
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
    fig.suptitle("Network training curves per fold, a line per run (dot: best validation TTF MAE, the kept weights)")
    _save(fig, path)


@_styled
def plot_test_distribution(d: RunData, path: Path) -> None:
    assert d.test is not None
    models = [m for m in ("lgbm", "nn", "blend") if m in d.test.columns]
    y = d.oof["target"].to_numpy(dtype=np.float64)
    allv = np.concatenate([y] + [d.test[m].to_numpy(dtype=np.float64) for m in models])
    lo, hi = float(np.nanmin(allv)), float(np.nanmax(allv))
    edges = np.linspace(min(lo, 0.0), hi + 1e-9, 41)
    fig, axes = _figure()
    ax = axes[0, 0]
    ax.hist(y, bins=edges, density=True, color="0.6", alpha=0.6, label=f"train target (n={len(y)})")
    for m in models:
        v = d.test[m].to_numpy(dtype=np.float64)
        ax.hist(v, bins=edges, density=True, histtype="step", lw=2, color=COLORS[m], label=f"test, {LABELS[m]} (mean {np.mean(v):.2f} s)")
    ax.axvline(np.mean(y), color="0.3", ls="--", lw=1, label=f"train target mean {np.mean(y):.2f} s")
    ax.set_xlabel("time to failure (s)")
    ax.set_ylabel("density (1/s)")
    ax.set_title(f"Test predictions ({len(d.test)} segments) against the distribution of the train target")
    ax.legend(loc="upper right")
    _save(fig, path)


def _truth_frame(d: RunData, truth: Path | None) -> tuple[pd.DataFrame | None, str]:
    if d.test is None:
        return None, "no test predictions"
    if truth is None:
        rec = d.records.get("blend", {})
        named = next((rec[k] for k in ("truth", "test_truth", "truth_path") if isinstance(rec.get(k), str)), None)
        if named is None:
            return None, "no truth file (pass truth=DATA/test_truth.csv, or blend.json names none)"
        truth = Path(named)
    truth = Path(truth)
    if not truth.is_file():
        return None, f"truth file {truth} not found"
    t = _require(_read_csv(truth), truth, ("seg_id", "time_to_failure")).rename(columns={"time_to_failure": "target"})
    if "seg_id" not in d.test.columns:
        return None, f"no seg_id column in {d.run / 'test.parquet'} to match rows"
    merged = d.test.merge(t[["seg_id", "target"]], on="seg_id", how="inner")
    if merged.empty:
        return None, f"no seg_id of {truth} matches the test predictions"
    return merged, f"{truth} ({len(merged)} of {len(d.test)} test segments matched)"


@_styled
def plot_test_vs_truth(merged: pd.DataFrame, path: Path) -> None:
    models = [m for m in ("lgbm", "nn", "blend") if m in merged.columns]
    fig, axes = _figure(1, len(models), sharex=True, sharey=True)
    y = merged["target"].to_numpy(dtype=np.float64)
    hi = float(np.nanmax(np.concatenate([y] + [merged[m].to_numpy(dtype=np.float64) for m in models]))) * 1.05
    for ax, m in zip(axes[0], models):
        ax.scatter(y, merged[m], s=12, alpha=0.6, color=COLORS[m], lw=0)
        ax.plot([0, hi], [0, hi], color="black", lw=1, ls="--", label="y = x")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
        ax.set_title(f"{LABELS[m]}: test MAE {mae(y, merged[m]):.3f} s")
        ax.set_xlabel("true time to failure (s)")
        ax.legend(loc="upper left")
    axes[0, 0].set_ylabel("predicted time to failure (s)")
    fig.suptitle(f"Test predictions against the truth ({len(merged)} segments)")
    _save(fig, path)


# ----------------------------------------------------------------------------------------------
# Markdown


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = obj
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, bool) or v is None:
        return {True: "yes", False: "no", None: "—"}[v]
    return "—" if v is None else str(v).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return lines + [""]


def _scores_section(d: RunData) -> list[str]:
    oof = d.oof
    summ = _flatten(d.summary) if d.summary else {}
    baseline = mae(oof["target"], np.full(len(oof), float(np.median(oof["target"]))))
    rows = []
    for m in d.models:
        reported = next((v for k, v in summ.items() if isinstance(v, (int, float)) and m in k.lower().split(".") and "mae" in k.lower()), None)
        rows.append([LABELS[m], round(mae(oof["target"], oof[m]), 4), reported if reported is not None else "—"])
    reported = next((v for k, v in summ.items() if isinstance(v, (int, float)) and "median" in k.lower() and "mae" in k.lower()), None)
    rows.append(["constant: median of the target", round(baseline, 4), reported if reported is not None else "—"])
    lines = ["## Scores", ""]
    lines += _table(["model", "OOF MAE (s), computed here", "in summary.json"], rows)
    if "blend" not in d.models:
        blend_line = "No blend: the run has predictions of only one model."
    elif (d.summary or {}).get("nn_fallback") == "drop":
        blend_line = f"The blend is LightGBM alone, `clip(lgbm, {d.clip_min:g})`: the network was dropped (see the warning above)."
    else:
        blend_line = f"The blend is `sqrt(clip(lgbm, {d.clip_min:g}) * clip(nn, {d.clip_min:g}))`, computed here from oof.parquet."
    lines += [
        blend_line + " The constant baseline here is the median of all trained targets (summary.json's may use each fold's training median).",
        "",
    ]
    if d.summary:
        lines += [
            "<details><summary>summary.json</summary>",
            "",
            "```json",
            json.dumps(d.summary, indent=2, sort_keys=True),
            "```",
            "",
            "</details>",
            "",
        ]
    return lines


def _runs_section(runs: Any) -> list[str]:
    if runs is None:
        return []
    items = runs.get("runs", runs.get("attempts")) if isinstance(runs, dict) else runs
    lines = ["### Network runs (nn/runs.json)", ""]
    if isinstance(runs, dict):
        extra = [f"{k} {_fmt(v)}" for k, v in runs.items() if k not in ("runs", "attempts") and _cell_ok(v)]
        if extra:
            lines += ["; ".join(extra) + " (a run is rejected when its predictions are constant or its OOF MAE reaches the bound).", ""]
    if isinstance(items, list) and items and all(isinstance(i, dict) for i in items):
        keys: list[str] = []
        for it in items:
            keys += [k for k, v in it.items() if k not in keys and _cell_ok(v)]
        lines += _table(keys, [[it.get(k) for k in keys] for it in items])
    else:
        lines += ["```json", json.dumps(runs, indent=2, sort_keys=True), "```", ""]
    return lines


def _cell_ok(v: Any) -> bool:
    """Fit for a table cell: a scalar, or a short list of numbers."""
    if isinstance(v, list):
        return len(v) <= 12 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    return not isinstance(v, dict)


def _timings_section(d: RunData, features_record: dict[str, Any] | None) -> list[str]:
    records = []
    if features_record is not None:
        records.append(("features", features_record))
    records += [(s, d.records[s]) for s in ("train", "blend") if s in d.records]
    lines = ["## Timings", ""]
    if not records:
        return lines + ["_No stage records (train.json, blend.json, features.json) found._", ""]
    rows = []
    for stage, rec in records:
        t = rec.get("timings_s") or {}
        if not isinstance(t, dict):
            continue
        total = t.get("total")
        for step, s in t.items():
            if step == "total" or not isinstance(s, (int, float)):
                continue
            share = f"{100 * s / total:.0f}%" if isinstance(total, (int, float)) and total > 0 else "—"
            rows.append([stage, step, f"{s:.2f}", share])
        if isinstance(total, (int, float)):
            rows.append([stage, "**total**", f"**{total:.2f}**", f"finished {rec.get('finished', '—')}"])
    lines += _table(["stage", "step", "seconds", "share of stage / when"], rows)
    missing = [s for s in ("features", "train", "blend") if s not in dict(records)]
    if missing:
        lines += [f"_No record of: {', '.join(missing)}._", ""]
    return lines


def _config_section(d: RunData) -> list[str]:
    from labquake.config import Config

    flat = _flatten(d.config)
    default = _flatten(Config().to_dict())
    rows = [[k, flat[k], "" if _same(flat[k], default.get(k)) else _fmt(default.get(k))] for k in _KEY_SETTINGS if k in flat]
    changed = [k for k in flat if k not in _KEY_SETTINGS and k != "preset" and k in default and not _same(flat[k], default[k])]
    rows += [[k, flat[k], _fmt(default[k])] for k in changed]
    lines = ["## Configuration", ""]
    lines += _table(["setting", "value", "recipe default (where different)"], rows)
    lines += [
        "<details><summary>Full configuration (config.json)</summary>",
        "",
        "```json",
        json.dumps(d.config, indent=2, sort_keys=True),
        "```",
        "",
        "</details>",
        "",
    ]
    return lines


def _same(a: Any, b: Any) -> bool:
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return norm(a) == norm(b)


# ----------------------------------------------------------------------------------------------
# Entry point


def _features_dir(d: RunData, features_dir: Path | None) -> tuple[Path | None, str]:
    if features_dir is not None:
        return Path(features_dir), ""
    rec = d.records.get("train", {})
    named = next((rec[k] for k in ("features_dir", "features") if isinstance(rec.get(k), str)), None)
    if named is None:
        return None, "train.json does not record the feature folder (features_dir) and none was given"
    path = Path(named)
    if not path.is_absolute() and not path.is_dir() and (d.run / path).is_dir():
        path = d.run / path
    if not path.is_dir():
        return None, f"the feature folder {named} recorded in train.json was not found"
    return path, ""


def build_report(run_dir: Path, features_dir: Path | None = None, truth: Path | None = None) -> Path:
    """Write RUN/report/*.png and RUN/report/report.md (last); return the path of report.md.

    ``features_dir``: the feature folder (for the feature plots); default: the one train.json
    records. ``truth``: a ``seg_id,time_to_failure`` CSV of the test answers; default: the one
    blend.json names, if any. Every input is read before anything is drawn, so an unreadable file
    fails the report before it writes anything.
    """
    d = load_run(Path(run_dir))
    imp, imp_why = _importance_table(d.run)
    fdir, feat_why = _features_dir(d, features_dir)
    features_record, tab, feats = None, None, []
    if fdir is not None:
        features_record = _optional_json(fdir / "features.json")
        # Most important first, as in the importance plot.
        ranked = imp.groupby("feature")["gain"].mean().sort_values(ascending=False, kind="stable") if imp is not None else None
        tab, feats, feat_why = _feature_frame(fdir, list(ranked.index) if ranked is not None else None)
    else:
        feat_why = f"no feature plots: {feat_why}"
    cur, cur_why = _curves_frame(d.run)
    hist, hist_why = _history_frame(d.run)
    merged, truth_why = _truth_frame(d, truth)

    out = d.run / "report"
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    def plot(name: str, func: Callable[..., None], *args: Any) -> str:
        func(*args, out / name)
        written.append(name)
        return f"![{name}]({name})"

    def skipped(why: str) -> str:
        log.info("report: skipped a plot: %s", why)
        return f"_Plot skipped: {why}._"

    md: list[str] = [f"# Report of run `{d.run.resolve().name}`", ""]
    md += [
        f"Run folder: `{d.run}`; preset `{d.config.get('preset', '?')}`; "
        f"{len(d.oof)} trained segments in {d.oof['cycle'].nunique()} cycles"
        + (f", {d.oof['fold'].nunique()} folds" if "fold" in d.oof.columns else "")
        + ".",
        "",
    ]
    note = network_note(d.summary or {})
    if note:  # the blend is not the recipe's: say so before any number
        md += [f"> **Warning:** {note}.", ""]
    md += _scores_section(d)

    md += ["## Out-of-fold predictions along the train timeline", ""]
    md += [plot("oof_timeline.png", plot_oof_timeline, d), ""]
    md += ["## Errors per cycle and per time to failure", ""]
    md += [plot("mae_by_cycle.png", plot_mae_by_cycle, d), ""]
    md += [plot("mae_by_ttf.png", plot_mae_by_ttf, d), ""]

    md += ["## LightGBM", ""]
    md += [plot("lgbm_importance.png", plot_lgbm_importance, imp) if imp is not None else skipped(imp_why), ""]
    md += [plot("lgbm_features.png", plot_lgbm_features, tab, feats) if tab is not None else skipped(feat_why), ""]
    md += [plot("lgbm_curves.png", plot_lgbm_curves, cur) if cur is not None else skipped(cur_why), ""]

    md += ["## Network", ""]
    md += [plot("nn_history.png", plot_nn_history, hist, d.runs) if hist is not None else skipped(hist_why), ""]
    md += _runs_section(d.runs)

    md += ["## Test predictions", ""]
    md += [plot("test_distribution.png", plot_test_distribution, d) if d.test is not None else skipped(d.test_note), ""]
    if merged is not None:
        md += [f"Truth: {truth_why}.", "", plot("test_vs_truth.png", plot_test_vs_truth, merged), ""]
    else:
        md += [skipped(truth_why), ""]

    md += _timings_section(d, features_record)
    md += _config_section(d)

    for stale in sorted(set(PLOTS) - set(written)):  # plots of an earlier report that this one skips
        (out / stale).unlink(missing_ok=True)
    report = out / "report.md"
    write_text(report, "\n".join(md).rstrip() + "\n")
    log.info("report: %d plots and %s", len(written), report)
    return report
