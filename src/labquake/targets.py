"""Segments, quake cycles, the three targets and the shared cross-validation folds (docs/recipe.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from labquake.config import SEGMENT_ROWS, Config
from labquake.data import read_at, read_rows
from labquake.util import LabquakeError


def segment_starts(n_rows: int, segment_rows: int) -> np.ndarray:
    """Non-overlapping windows from row 0; the last incomplete one is dropped."""
    return np.arange(n_rows // segment_rows, dtype=np.int64) * segment_rows


def cycle_starts(ttf: np.ndarray, chunk: int = 1 << 24) -> np.ndarray:
    """Rows where a new cycle starts: row 0 and every row where time to failure jumps up.

    Works in chunks so a 629M-row column is never copied whole.
    """
    starts = [np.zeros(1, dtype=np.int64)]
    for lo in range(1, len(ttf), chunk):
        hi = min(lo + chunk, len(ttf))
        window = read_rows(ttf, lo - 1, hi)
        starts.append(np.flatnonzero(window[1:] > window[:-1]).astype(np.int64) + lo)
    return np.concatenate(starts)


def assign_cycles(starts: np.ndarray, cycle_rows: np.ndarray, n_rows: int, segment_rows: int) -> np.ndarray:
    """Cycle of each segment, by the recipe's rule.

    Segment at ``s`` belongs to cycle i if ``s + segment_rows >= cycle_start`` and
    ``s <= cycle_end - segment_rows`` (cycle_end: the next cycle's start row, or n_rows);
    when several match, the later cycle wins.
    """
    ends = np.append(cycle_rows[1:], n_rows)
    cycles = np.full(len(starts), -1, dtype=np.int64)
    for i, (lo, hi) in enumerate(zip(cycle_rows, ends)):
        match = (starts + segment_rows >= lo) & (starts <= hi - segment_rows)
        cycles[match] = i  # later cycles overwrite earlier ones
    return cycles


def segment_targets(ttf: np.ndarray, cfg: Config, seg: int = SEGMENT_ROWS) -> pd.DataFrame:
    """One row per train segment of ``seg`` rows: start row, cycle, target (ttf at the last row), tsf, binary.

    ``seg`` is Kaggle's segment length everywhere but in tests that work the rules out by hand.
    """
    n = len(ttf)
    starts = segment_starts(n, seg)
    cycle_rows = cycle_starts(ttf)
    cycles = assign_cycles(starts, cycle_rows, n, seg)
    target = read_at(ttf, starts + seg - 1).astype(np.float64)
    first_ttf = read_at(ttf, cycle_rows).astype(np.float64)
    tsf = first_ttf[cycles] - target
    return pd.DataFrame(
        {
            "start": starts,
            "cycle": cycles,
            "target": target,
            "tsf": tsf,
            "binary": (target < cfg.data.binary_threshold).astype(np.int8),
        }
    )


def train_cycles(cfg: Config, real: bool, cycles: np.ndarray) -> tuple[tuple[int, ...] | None, str]:
    """Cycles to train on, and why: configured, else the recipe's list on Kaggle's real recording
    (``real``: recognised by its content, features.json's ``real_train``), else every complete cycle
    of the table (``cycles``: its segments' cycles; all but the file's first and last, which the
    recording cuts), else every cycle (None) when there are none."""
    if cfg.data.train_cycles is not None:
        return cfg.data.train_cycles, "data.train_cycles"
    if real:
        return cfg.data.recipe_cycles, "the recipe's list: Kaggle's real recording"
    complete = tuple(int(c) for c in np.unique(cycles)[1:-1])
    if complete:
        return complete, "every complete cycle (all but the file's first and last): not Kaggle's real recording"
    return None, "every cycle: not Kaggle's real recording, and no complete cycle"


def select_segments(table: pd.DataFrame, cycles: tuple[int, ...] | None) -> pd.DataFrame:
    """The rows of a train feature table that the models train on, in their original order."""
    if cycles is None:
        return table.reset_index(drop=True)
    return table[table["cycle"].isin(cycles)].reset_index(drop=True)


def fold_ids(cycles: np.ndarray, cfg: Config) -> np.ndarray:
    """Fold of each selected segment (``cycles``: its cycle): one split shared by every model.

    cv.scheme "kfold": KFold over the segments, shuffled and seeded (the recipe). "cycles": GroupKFold
    over whole cycles, n_splits folds (at most the number of cycles: then one cycle each), so no
    cycle is in two folds.
    """
    from sklearn.model_selection import GroupKFold, KFold

    cycles = np.asarray(cycles)
    n = len(cycles)
    if cfg.cv.scheme == "cycles":
        n_groups = len(np.unique(cycles))
        if n_groups < 2 or cfg.cv.n_splits > n_groups:
            raise LabquakeError(
                f"cv.scheme=cycles: cv.n_splits={cfg.cv.n_splits} folds of whole cycles, but the selected segments hold {n_groups} cycles"
                " (cv.n_splits equal to the number of cycles leaves one cycle out)"
            )
        splits = GroupKFold(n_splits=cfg.cv.n_splits).split(np.arange(n), groups=cycles)
    else:
        kf = KFold(n_splits=cfg.cv.n_splits, shuffle=cfg.cv.shuffle, random_state=cfg.cv.seed if cfg.cv.shuffle else None)
        splits = kf.split(np.arange(n))
    folds = np.empty(n, dtype=np.int64)
    for k, (_, valid) in enumerate(splits):
        folds[valid] = k
    return folds


def overlap_segments(ttf: np.ndarray, cfg: Config, seg: int = SEGMENT_ROWS) -> pd.DataFrame:
    """Extra training windows at half-segment offsets (start = k*seg + seg//2), each wholly inside one cycle
    (never crossing a quake): columns start, cycle, target, tsf, binary, like ``segment_targets``.

    A window of cycle i lies in [cycle_starts[i], cycle_starts[i+1]) (the last cycle ends with the file),
    so its cycle number is ``segment_targets``' and its target never mixes two cycles.
    """
    n = len(ttf)
    starts = np.arange(seg // 2, n - seg + 1, seg, dtype=np.int64)
    cycle_rows = cycle_starts(ttf)
    ends = np.append(cycle_rows[1:], n)
    cycles = np.searchsorted(cycle_rows, starts, side="right") - 1  # the cycle holding the first row
    inside = starts + seg <= ends[cycles]
    starts, cycles = starts[inside], cycles[inside]
    target = read_at(ttf, starts + seg - 1).astype(np.float64)
    first_ttf = read_at(ttf, cycle_rows).astype(np.float64)
    return pd.DataFrame(
        {
            "start": starts,
            "cycle": cycles,
            "target": target,
            "tsf": first_ttf[cycles] - target,
            "binary": (target < cfg.data.binary_threshold).astype(np.int8),
        }
    )


def overlap_train_mask(extra_starts: np.ndarray, starts: np.ndarray, folds: np.ndarray, seg: int = SEGMENT_ROWS) -> np.ndarray:
    """(n_extra, n_folds) bool: extra window i may train fold k only if it shares no row with any segment
    (``starts``, the selected training segments, with their ``folds``) validated in fold k.

    Windows [e, e+seg) and [s, s+seg) share a row exactly when |e - s| < seg, so for each fold this counts
    the fold's validation starts in the open interval (e - seg, e + seg) with two binary searches.
    """
    extra_starts, starts, folds = (np.asarray(a, dtype=np.int64) for a in (extra_starts, starts, folds))
    if starts.shape != folds.shape:
        raise LabquakeError(f"overlap_train_mask: {len(starts)} segment starts but {len(folds)} fold ids")
    n_folds = int(folds.max()) + 1 if len(folds) else 0
    mask = np.empty((len(extra_starts), n_folds), dtype=bool)
    for k in range(n_folds):
        valid = np.sort(starts[folds == k])
        hits = np.searchsorted(valid, extra_starts + seg, side="left") - np.searchsorted(valid, extra_starts - seg, side="right")
        mask[:, k] = hits == 0
    return mask
