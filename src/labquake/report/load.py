"""Reading a run folder for the report: every file, checked, before anything is drawn.

What is read is what ``models.run_train`` and ``blend.run_submit`` write (``models/folder.py`` has
the run folder's layout):

- required, from ``train`` (a finished run: ``summary.json`` is written last): ``config.json``,
  ``oof.parquet`` and ``test.parquet`` (a column per model of summary.json's ``models``, checked
  against their checksums), ``summary.json``, ``train.json``; ``NAME/importance.csv`` and
  ``NAME/curves.csv`` of the model whose ``extras`` name them (LightGBM); ``NAME/runs.json`` and
  ``NAME/history.csv`` of each model that rejects draws (the networks);
- optional: ``blend.json`` (after ``submit``; it names the truth file, if there was one, and the
  ``clip_min`` the submission used), the feature folder ``train.json`` names (for the feature plots;
  it may have been moved or rebuilt since), and the truth file.

A missing or unreadable required file, or a missing column, is a one-line :class:`LabquakeError`
naming the file. A missing optional input is a reason, which the report prints instead of its plot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake.blend import read_submission
from labquake.metric import BLEND, predictions
from labquake.models.folder import RunFolder, nested
from labquake.models.registry import model
from labquake.util import LabquakeError, read_json, read_table


def networks(names: list[str] | tuple[str, ...]) -> list[str]:
    """The models whose bad draws are rejected (the networks), with runs.json and per-epoch history.csv."""
    return [n for n in names if model(n).rejects]


@dataclass
class RunData:
    """Everything the report needs, read and checked once."""

    run: Path
    config: dict[str, Any]  # the configuration the run was trained with (config.json)
    clip_min: float  # of the blend: blend.json's when submitted, else the run's configuration's
    models: list[str]  # summary.json's models: a prediction column each in oof and test
    weights: dict[str, float]  # summary.json's blend_weights: the models the blend uses and their weights
    oof: pd.DataFrame  # start, cycle, target, fold, one column per model, blend
    test: pd.DataFrame  # seg_id, one column per model, blend
    summary: dict[str, Any]
    records: dict[str, dict[str, Any]]  # stage -> stage record: train, and blend when submitted
    runs: dict[str, dict[str, Any]]  # network -> NAME/runs.json
    history: dict[str, pd.DataFrame]  # network -> NAME/history.csv: run, fold, epoch and Keras' loss and val_* columns
    importance: pd.DataFrame | None = None  # feature, gain (per seed and fold); None without LightGBM
    curves: pd.DataFrame | None = None  # seed, fold, iteration, valid_mae; None without LightGBM
    features_record: dict[str, Any] | None = None  # FEATDIR/features.json
    feature_table: pd.DataFrame | None = None  # FEATDIR/train.parquet
    lgbm_features: list[str] | None = None  # the LightGBM features to plot, most important first
    features_note: str = ""  # why there is no feature table
    drift: pd.DataFrame | None = None  # feature, ks_stat, p_value: trained segments against test
    truth: pd.DataFrame | None = None  # test rows with their true target
    truth_note: str = ""  # which truth file, or why there is none

    @property
    def columns(self) -> list[str]:
        """The prediction columns of oof and test: the models, then the blend."""
        return [*self.models, "blend"]

    @property
    def x(self) -> np.ndarray:
        """Position of each OOF row on the train timeline."""
        return self.oof["start"].to_numpy(dtype=np.float64) / 1e6

    x_label = "segment start (million rows of train.csv)"


def read_run_csv(path: Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A CSV table with the ``required`` columns, or a one-line error naming the file."""
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise LabquakeError(f"{path}: not found") from None
    except (ValueError, UnicodeDecodeError) as exc:  # ParserError, EmptyDataError
        text = str(exc).strip().splitlines()
        raise LabquakeError(f"{path}: unreadable CSV ({type(exc).__name__}: {text[0][:200] if text else ''})") from None
    if df.empty:
        raise LabquakeError(f"{path}: no rows")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise LabquakeError(f"{path}: missing columns {', '.join(missing)}")
    return df


def _object(path: Path, *keys: str) -> dict[str, Any]:
    """A JSON object with the top-level ``keys``, or a one-line error naming the file."""
    obj = read_json(path)  # missing or corrupt: LabquakeError naming the file
    if not isinstance(obj, dict):
        raise LabquakeError(f"{path}: not a JSON object")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise LabquakeError(f"{path}: no {', '.join(missing)} (written by an older labquake? train again)")
    return obj


STAGE_KEYS = ("timings_s", "finished")  # what the report reads of every stage record (util.stage_record)


def load_run(run_dir: Path, features_dir: Path | None = None, truth: Path | None = None) -> RunData:
    """Read a finished run folder (see the module docstring).

    ``features_dir``: the feature folder, default the one train.json records. ``truth``: a
    ``seg_id,time_to_failure`` file of the test answers, default the one blend.json names.
    """
    folder = RunFolder(run_dir)
    folder.require_finished(f"train first: labquake train --run {folder.path}")
    run = folder.path
    config = _object(folder.config_path).get("config")
    if not isinstance(config, dict) or not isinstance((config.get("blend") or {}).get("clip_min"), (int, float)):
        raise LabquakeError(f"{folder.config_path}: no configuration with blend.clip_min (written by `labquake train`)")
    records = {"train": _object(folder.record_path("train"), *STAGE_KEYS, "features_dir")}
    if folder.record_path("blend").is_file():
        records["blend"] = _object(folder.record_path("blend"), *STAGE_KEYS, "clip_min", "truth")
    # the blend as submitted: submit's clip_min (a setting that does not change the run) if it ran
    clip_min = float(records.get("blend", config["blend"])["clip_min"])
    summary = nested(_object(folder.summary_path, "models", "blend_weights", "oof_mae", "baseline_median_mae"))
    folder.require_intact(("tables",))
    names, weights = summary["models"], summary["blend_weights"]
    if not isinstance(names, list) or not names or not isinstance(weights, dict) or not weights or not set(weights) <= set(names):
        raise LabquakeError(f"{folder.summary_path}: models must be a list of model names and blend_weights weights of some of them")
    nets = networks(names)
    oof = read_table(folder.oof_path, ("start", "cycle", "target", "fold", *names))
    test = read_table(folder.test_path, ("seg_id", *names))
    if oof.empty:
        raise LabquakeError(f"{folder.oof_path}: no rows")
    for table in (oof, test):  # as submit blends: the models and weights training chose
        table["blend"] = predictions({m: table[m] for m in weights}, weights, clip_min)[BLEND]
    d = RunData(
        run=run,
        config=config,
        clip_min=clip_min,
        models=list(names),
        weights={m: float(w) for m, w in weights.items()},
        oof=oof,
        test=test,
        summary=summary,
        records=records,
        runs={n: _object(folder.runs_path(n), "runs") for n in nets},
        history={n: read_run_csv(folder.history_path(n), ("run", "fold", "epoch")) for n in nets},
    )
    boosted = [n for n in names if "importance.csv" in model(n).extras]  # the model that writes gains: LightGBM
    if boosted:
        imp = read_run_csv(folder.model_dir(boosted[0]) / "importance.csv", ("feature", "gain"))
        d.importance = pd.DataFrame({"feature": imp["feature"].astype(str), "gain": imp["gain"].astype(np.float64)})
        d.curves = read_run_csv(folder.model_dir(boosted[0]) / "curves.csv", ("seed", "fold", "iteration", "valid_mae"))
    _load_features(d, Path(features_dir) if features_dir is not None else None)
    _load_truth(d, Path(truth) if truth is not None else None)
    return d


def _load_features(d: RunData, features_dir: Path | None) -> None:
    if features_dir is None:
        features_dir = Path(d.records["train"]["features_dir"])
        where = f"the feature folder {features_dir} that train.json records"
    else:
        where = f"the feature folder {features_dir}"
    path = features_dir / "train.parquet"
    if not path.is_file():
        d.features_note = f"no feature plots: {where} has no train.parquet (moved or deleted?)"
        return
    if (features_dir / "features.json").is_file():
        d.features_record = _object(features_dir / "features.json", *STAGE_KEYS)
        from labquake.features.folder import FeatureFolder

        problems = FeatureFolder(features_dir).verify(["train.parquet", "test.parquet"])
        if problems:
            d.features_note = f"no feature plots: {problems[0]}"
            return
    if d.importance is not None:  # the features LightGBM used, most important first, as in the importance plot
        ranked = d.importance.groupby("feature")["gain"].mean().sort_values(ascending=False, kind="stable")
        d.feature_table = read_table(path, ("cycle", "target", *ranked.index))
        d.lgbm_features = list(ranked.index[:9])
    else:
        d.feature_table = read_table(path, ("cycle", "target"))
    if (features_dir / "test.parquet").is_file():
        from labquake.stats import ks_table
        from labquake.trainset import union

        train = d.feature_table  # the whole train table (read_table checks the columns, keeps them all)
        test = read_table(features_dir / "test.parquet", ("seg_id",))
        read = union({n: tuple(f.get("features", ())) for n, f in d.summary["model"].items()})
        names = [c for c in read if c in train.columns and c in test.columns]
        d.drift = ks_table(train[train["cycle"].isin(d.oof["cycle"].unique())], test, names)


def _load_truth(d: RunData, truth: Path | None) -> None:
    if truth is None:
        named = d.records.get("blend", {}).get("truth")
        if named is None:
            d.truth_note = "no truth file (pass truth=DATA/test_truth.csv, or blend.json names none)"
            return
        truth = Path(named)
    if not truth.is_file():
        d.truth_note = f"truth file {truth} not found"
        return
    t = read_submission(truth).rename(columns={"time_to_failure": "target"})
    merged = d.test.merge(t, on="seg_id", how="inner")
    if merged.empty:
        d.truth_note = f"no seg_id of {truth} matches the test predictions"
        return
    d.truth = merged
    d.truth_note = f"{truth} ({len(merged)} of {len(d.test)} test segments matched)"
