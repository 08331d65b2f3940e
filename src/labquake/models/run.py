"""Training data and the run folder: what every model's cross-validation reads and writes.

``load_training_data`` reads and checks a feature folder, selects the training cycles and makes the
folds every model shares; ``claim_run`` ties a run folder to one configuration and one feature
folder (another is refused, never overwritten). The run folder's layout is in ``models.train``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake import targets
from labquake.config import REAL_TRAIN_ROWS, Config
from labquake.util import LabquakeError, atomic_path, log, read_json, read_table, write_json

LGBM_TAG = "LGBM"  # LightGBM uses the features whose name contains this
NN_TAG = "NN"  # the network uses the features whose name contains this
META_COLUMNS = ("start", "cycle", "target", "tsf", "binary")
FEATURES_HINT = " (run `labquake features` first)"


# ---------------------------------------------------------------------------------------------
# Inputs


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
    cycle_choice: dict[str, Any] | None = None  # data.train_cycles=auto: drift.choose_cycles' record


def model_features(columns: list[str] | pd.Index) -> list[str]:
    """Every feature some model uses, once each, in table order (LightGBM's, then the network's)."""
    return list(dict.fromkeys(feature_columns(columns, LGBM_TAG) + feature_columns(columns, NN_TAG)))


def feature_columns(columns: list[str] | pd.Index, tag: str) -> list[str]:
    """The feature columns a model uses, in table order: those whose name contains ``tag``."""
    return [c for c in columns if tag in c]


def feature_folder_key(meta: dict[str, Any]) -> str:
    """The cache key a feature folder's features.json records (what a run folder is tied to)."""
    if isinstance(meta.get("key"), str) and meta["key"]:
        return meta["key"]
    raise LabquakeError("features.json: no cache key (rebuild the features with `labquake features`)")


def check_features_record(cfg: Config, meta: dict[str, Any], path: Path) -> None:
    """Feature tables must come from this version and this run's feature settings."""
    from labquake import __version__

    if "version" in meta and meta["version"] != __version__:
        raise LabquakeError(f"{path}: made by labquake {meta['version']}, this is {__version__}; rebuild with `labquake features`")
    ours = json.loads(json.dumps(cfg.features.table_settings()))  # as recorded: tuples become lists
    made = (meta.get("config") or {}).get("features")
    made = None if made is None else {k: v for k, v in made.items() if k in ours}
    if made is not None and made != ours:
        changed = ", ".join(f"features.{k}" for k in sorted(ours) if made.get(k) != ours[k])
        raise LabquakeError(f"{path}: made with other feature settings ({changed}); rebuild with `labquake features` and the same options")


def load_training_data(cfg: Config, features_dir: Path) -> TrainingData:
    """Read and check a feature folder; select the training cycles; make the shared folds."""
    features_dir = Path(features_dir)
    meta_path = features_dir / "features.json"
    if not meta_path.exists():
        raise LabquakeError(f"{features_dir}: no features.json (run `labquake features` first)")
    meta = read_json(meta_path)
    if not isinstance(meta.get("n_rows"), int):
        raise LabquakeError(f"{meta_path}: no n_rows (rebuild the features with `labquake features`)")
    check_features_record(cfg, meta, meta_path)
    train = read_table(features_dir / "train.parquet", META_COLUMNS, FEATURES_HINT)
    test = read_table(features_dir / "test.parquet", ("seg_id",), FEATURES_HINT)
    feats = model_features(train.columns)
    if not feature_columns(train.columns, LGBM_TAG) or not feature_columns(train.columns, NN_TAG):
        raise LabquakeError(f"{features_dir / 'train.parquet'}: needs feature columns named *{LGBM_TAG}* and *{NN_TAG}*")
    missing = sorted(set(feats) - set(test.columns))
    if missing:
        raise LabquakeError(f"{features_dir / 'test.parquet'}: missing feature columns {', '.join(missing)}")
    for name, table in (("train", train), ("test", test)):
        values = table[sorted(set(feats))].to_numpy(dtype=np.float64)
        bad = sorted({c for c, ok in zip(sorted(set(feats)), np.isfinite(values).all(axis=0)) if not ok})
        if bad:
            raise LabquakeError(f"{features_dir / (name + '.parquet')}: non-finite values in {', '.join(bad)}")
    choice = None
    if cfg.data.train_cycles == "auto":
        from labquake.drift import choose_cycles

        d = cfg.data
        recipe = d.recipe_cycles if meta["n_rows"] == REAL_TRAIN_ROWS else None
        choice = choose_cycles(train, test, feats, d.auto_share, d.auto_draws, d.auto_seed, recipe)
        log.info(f"data.train_cycles=auto: cycles {choice['chosen']} (mean KS {choice['score']:.4f}; all cycles {choice['all_cycles_score']:.4f})")
        cycles = tuple(choice["chosen"])
    else:
        cycles = targets.train_cycles(cfg, meta["n_rows"])
    selected = targets.select_segments(train, cycles)
    rows = np.arange(len(train)) if cycles is None else np.flatnonzero(train["cycle"].isin(cycles).to_numpy())
    dropped: tuple[str, ...] = ()
    if cfg.features.ks_min_p is not None:
        from labquake.drift import ks_table

        ks = ks_table(selected, test, feats)
        dropped = tuple(ks.loc[ks["p_value"] < cfg.features.ks_min_p, "feature"])
        keep = [c for c in train.columns if c not in dropped]
        if not feature_columns(keep, LGBM_TAG) or not feature_columns(keep, NN_TAG):
            raise LabquakeError(f"features.ks_min_p={cfg.features.ks_min_p:g} drops every feature of a model ({', '.join(dropped)}); lower it")
        selected, test = selected[keep], test[[c for c in test.columns if c not in dropped]]
        log.info(
            f"features.ks_min_p={cfg.features.ks_min_p:g}: dropped {len(dropped)} of {len(set(feats))} features ({', '.join(dropped) or 'none'})"
        )
    if len(selected) < 2 * cfg.cv.n_splits:
        raise LabquakeError(f"{features_dir}: only {len(selected)} training segments in the selected cycles")
    return TrainingData(
        train=selected,
        test=test.reset_index(drop=True),
        folds=targets.fold_ids(selected["cycle"].to_numpy(), cfg),
        features_key=feature_folder_key(meta),
        n_rows=meta["n_rows"],
        features_dir=features_dir,
        rows=rows,
        dropped_features=dropped,
        cycle_choice=choice,
    )


def fold_baseline(y: np.ndarray, folds: np.ndarray, stat: Callable[[np.ndarray], float]) -> np.ndarray:
    """OOF predictions of a constant model: ``stat`` of each training fold, on its validation rows."""
    pred = np.empty(len(y), dtype=np.float64)
    for k in np.unique(folds):
        pred[folds == k] = stat(y[folds != k])
    return pred


# ---------------------------------------------------------------------------------------------
# Run folder and resume


def run_identity(cfg: Config, data: TrainingData) -> dict[str, Any]:
    return {"train_key": cfg.train_key(), "features_key": data.features_key}


def claim_run(cfg: Config, data: TrainingData, run_dir: Path) -> None:
    """Write RUN/config.json, or check that the existing one is this configuration and these features."""
    identity = run_identity(cfg, data)
    path = run_dir / "config.json"
    if path.exists():
        old = read_json(path)
        for key, what in (("train_key", "configuration"), ("features_key", "features")):
            if old.get(key) != identity[key]:
                raise LabquakeError(f"{run_dir}: made with a different {what}; choose another --run folder or delete this one")
        return
    write_json(path, {**identity, "config": cfg.to_dict()})


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def write_parquet(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)
