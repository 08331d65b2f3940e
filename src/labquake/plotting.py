"""The plotting helpers shared by the stages (drift, compare, train's cycle choice, the report):
matplotlib figures written atomically as PNG. Matplotlib is imported when a plot is drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake.util import atomic_path


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
