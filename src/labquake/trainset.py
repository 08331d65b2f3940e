"""Training data: what every model's cross-validation reads, and the choice of training cycles.

``load_training_data`` reads and checks a feature folder (``FeatureFolder``) for the columns the
models read, selects the training cycles (the configuration's list, or ``data.train_cycles=auto``:
``choose_cycles``) and makes the folds every model shares. It names no model: the caller says which
columns each one reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake import targets
from labquake.config import Config
from labquake.features.folder import HINT, META_COLUMNS, FeatureFolder
from labquake.stats import ks_table, mean_ks
from labquake.util import LabquakeError, log, read_table


@dataclass(frozen=True)
class TrainingData:
    """The selected training segments, the test segments and the shared folds."""

    train: pd.DataFrame  # META_COLUMNS + feature columns, selected cycles only
    test: pd.DataFrame  # seg_id + the same feature columns
    folds: np.ndarray  # fold of each train row
    features_key: str
    n_rows: int  # rows of the raw train.csv the features were computed from
    features_dir: Path = Path(".")
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rows of train.parquet selected, in order
    dropped_features: tuple[str, ...] = ()  # by features.ks_min_p
    cycle_choice: dict[str, Any] | None = None  # data.train_cycles=auto: choose_cycles' record
    reads: dict[str, tuple[str, ...]] = field(default_factory=dict)  # model -> the columns it reads (after ks_min_p)


def union(reads: dict[str, tuple[str, ...]]) -> list[str]:
    """Every column some model reads, once each, in the models' order."""
    return list(dict.fromkeys(c for cols in reads.values() for c in cols))


def check_columns(path: Path, table: pd.DataFrame, columns: list[str]) -> None:
    """The columns a model reads: there, numeric and finite (one line naming the file otherwise)."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise LabquakeError(f"{path}: no column {missing[0]}{more}, which a model reads (set its NAME.features, docs/features.md)")
    text = [c for c in columns if not pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(table[c])]
    if text:
        raise LabquakeError(f"{path}: column {text[0]} is not numeric ({table[text[0]].dtype})")
    finite = np.isfinite(table[columns].to_numpy(dtype=np.float64)).all(axis=0)
    bad = [c for c, ok in zip(columns, finite) if not ok]
    if bad:
        raise LabquakeError(f"{path}: non-finite values in {', '.join(sorted(bad))}")


def load_training_data(cfg: Config, features_dir: Path, reads: dict[str, tuple[str, ...]]) -> TrainingData:
    """Read and check a feature folder for the columns ``reads`` names; select the training cycles;
    make the shared folds."""
    folder = FeatureFolder(features_dir)
    meta = folder.record()
    folder.check_settings(cfg, meta)
    folder.require_intact([folder.table_path("train").name, folder.table_path("test").name])
    train = read_table(folder.table_path("train"), META_COLUMNS, HINT)
    test = read_table(folder.table_path("test"), ("seg_id",), HINT)
    feats = union(reads)
    for which, table in (("train", train), ("test", test)):
        check_columns(folder.table_path(which), table, feats)
    dup = train["start"].duplicated()
    if dup.any():
        raise LabquakeError(f"{folder.table_path('train')}: start {int(train['start'][dup].iloc[0])} appears twice (one row per segment)")
    if test["seg_id"].duplicated().any():
        raise LabquakeError(f"{folder.table_path('test')}: seg_id {test['seg_id'][test['seg_id'].duplicated()].iloc[0]} appears twice")
    choice = None
    real = real_recording(meta, folder)
    if cfg.data.train_cycles == "auto":
        d = cfg.data
        recipe = d.recipe_cycles if real else None
        choice = choose_cycles(train, test, feats, d.auto_share, d.auto_draws, d.auto_seed, recipe)
        log.info(f"data.train_cycles=auto: cycles {choice['chosen']} (mean KS {choice['score']:.4f}; all cycles {choice['all_cycles_score']:.4f})")
        cycles = tuple(choice["chosen"])
    else:
        cycles = targets.train_cycles(cfg, real)
        if cfg.data.train_cycles is None:
            which = f"the recipe's list {list(cycles)}: Kaggle's real recording" if real else "every cycle: not Kaggle's real recording"
            log.info(f"data.train_cycles: {which}")
    selected = targets.select_segments(train, cycles)
    rows = np.arange(len(train)) if cycles is None else np.flatnonzero(train["cycle"].isin(cycles).to_numpy())
    dropped: tuple[str, ...] = ()
    if cfg.features.ks_min_p is not None:
        ks = ks_table(selected, test, feats)
        dropped = tuple(ks.loc[ks["p_value"] < cfg.features.ks_min_p, "feature"])
        old, reads = reads, {m: tuple(c for c in cols if c not in dropped) for m, cols in reads.items()}
        empty = [m for m, cols in reads.items() if not cols]
        if empty:
            gone = ", ".join(c for c in union(old) if c in dropped and c in old[empty[0]])
            raise LabquakeError(f"features.ks_min_p={cfg.features.ks_min_p:g} drops every feature of a model (all of {empty[0]}'s: {gone}); lower it")
        selected, test = selected.drop(columns=list(dropped)), test.drop(columns=list(dropped))
        log.info(f"features.ks_min_p={cfg.features.ks_min_p:g}: dropped {len(dropped)} of {len(feats)} features ({', '.join(dropped) or 'none'})")
    if len(selected) < 2 * cfg.cv.n_splits:
        raise LabquakeError(f"{features_dir}: only {len(selected)} training segments in the selected cycles")
    return TrainingData(
        train=selected,
        test=test.reset_index(drop=True),
        folds=targets.fold_ids(selected["cycle"].to_numpy(), cfg),
        features_key=folder.key(meta),
        n_rows=meta["n_rows"],
        features_dir=Path(features_dir),
        rows=rows,
        dropped_features=dropped,
        cycle_choice=choice,
        reads=reads,
    )


def real_recording(meta: dict[str, Any], folder: FeatureFolder) -> bool:
    """Whether the features came from Kaggle's real train.csv (features.json's ``real_train``, which
    the features stage decides by the file's first rows). A record without it (an older labquake,
    or a table of your own) is taken as not real, and the log says so."""
    if "real_train" not in meta:
        log.info(
            f"{folder.record_path}: no real_train: taken as not Kaggle's real recording (every cycle trains unless data.train_cycles says otherwise)"
        )
    return meta.get("real_train") is True


def fold_baseline(y: np.ndarray, folds: np.ndarray, stat: Callable[[np.ndarray], float]) -> np.ndarray:
    """OOF predictions of a constant model: ``stat`` of each training fold, on its validation rows."""
    pred = np.empty(len(y), dtype=np.float64)
    for k in np.unique(folds):
        pred[folds == k] = stat(y[folds != k])
    return pred


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
