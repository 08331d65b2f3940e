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

from labquake import shift, targets
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
    # Training for the test's regime (shift.py, for_the_test). ``train``'s targets are what the
    # models fit: with targets.kind=fraction, phases of the cycle; their predictions are multiplied
    # by oof_scale (out of fold) and test_scale (the test) to give seconds.
    meta: pd.DataFrame | None = None  # the train rows' META_COLUMNS in seconds (``train``'s, before the targets' change)
    weights: np.ndarray | None = None  # the models' sample weights (data.weights=adversarial), mean 1
    importance: np.ndarray | None = None  # covariate-shift weights, whenever computed (for the scale, the weighted MAE)
    oof_scale: float = 1.0
    test_scale: float = 1.0
    regime: dict[str, Any] = field(default_factory=dict)  # the options' record (summary.json "regime")

    @property
    def seconds(self) -> np.ndarray:
        """The train rows' time to failure in seconds."""
        return (self.train if self.meta is None else self.meta)["target"].to_numpy(np.float64)


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
    shift.check_settings(cfg)
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
    cycles, choice = _cycles(cfg, train, test, feats, real_recording(meta, folder))
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
    selected, regime = for_the_test(cfg, selected, test, union(reads), choice)
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
        **regime,
    )


def _cycles(cfg: Config, train: pd.DataFrame, test: pd.DataFrame, feats: list[str], real: bool) -> tuple[tuple[int, ...] | None, dict | None]:
    """The cycles to train on (None: all), and data.train_cycles=auto's record of its choice."""
    choice = None
    if cfg.data.train_cycles == "auto":
        d = cfg.data
        recipe = d.recipe_cycles if real else None
        choice = choose_cycles(train, test, feats, d.auto_share, d.auto_draws, d.auto_seed, recipe)
        log.info(f"data.train_cycles=auto: cycles {choice['chosen']} (mean KS {choice['score']:.4f}; all cycles {choice['all_cycles_score']:.4f})")
        cycles = tuple(choice["chosen"])
    else:
        cycles, why = targets.train_cycles(cfg, real, train["cycle"].to_numpy())
        if cfg.data.train_cycles is None:
            log.info(f"data.train_cycles: {why}" + (f" {list(cycles)}" if cycles is not None else ""))
    if cfg.targets.kind == "fraction":
        # the file's first cycle started before the recording: its length, and so its phases, are unknown
        first = int(train["cycle"].min())
        if cycles is None or first in cycles:
            log.info(f"targets.kind=fraction: cycle {first} left out (the file's first: its length is not recorded)")
            cycles = tuple(int(c) for c in (np.unique(train["cycle"]) if cycles is None else cycles) if c != first)
    return cycles, choice


def for_the_test(
    cfg: Config, train: pd.DataFrame, test: pd.DataFrame, features: list[str], choice: dict | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The options that train for the test's regime (shift.py): covariate-shift weights, targets as
    fractions of the cycle and their scale. Returns the train table with the targets the models fit,
    and TrainingData's fields for the rest."""
    seconds = train["target"].to_numpy(np.float64)
    train_meta = train[list(META_COLUMNS)].copy()
    lengths = shift.cycle_length(train)
    chosen = train["cycle"].isin(choice["chosen"]).to_numpy() if choice is not None else None
    importance, record = None, {"targets": cfg.targets.kind, "weights": cfg.data.weights}
    if shift.wants_weights(cfg):
        importance, record["weight_record"] = shift.adversarial_weights(train, test, features, cfg.data.weight_bounds, cfg.data.weight_seed)
        w = record["weight_record"]
        log.info(f"covariate-shift weights: train-vs-test AUC {w['auc']:.3f}, effective sample size {w['effective_size']:.0f} of {len(train)}")
    record["test_mean_ttf"] = shift.test_mean_estimates(seconds, importance, chosen)
    oof_scale = test_scale = 1.0
    if cfg.targets.kind == "fraction":
        oof_scale = float(lengths.mean())
        test_scale = shift.scale_seconds(cfg, lengths, importance, chosen)
        train = shift.to_fraction(train, lengths, cfg.data.binary_threshold, oof_scale)
        record.update(scale=cfg.targets.scale, test_scale=test_scale, oof_scale=oof_scale)
        log.info(f"targets.kind=fraction: test predictions x {test_scale:.3f} s (targets.scale={cfg.targets.scale}), out-of-fold x {oof_scale:.3f} s")
    fields = {"meta": train_meta, "importance": importance, "oof_scale": oof_scale, "test_scale": test_scale, "regime": record}
    fields["weights"] = importance if cfg.data.weights == "adversarial" else None
    return train, fields


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
