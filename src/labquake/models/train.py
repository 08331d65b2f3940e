"""``labquake train``: every model of blend.models cross-validated on one shared split, and the blend's weights.

It fills a run folder (``models.folder.RunFolder``; its docstring has the layout). The reference
model (LightGBM) trains first: its OOF MAE is the reference of the rejecting models' bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake.config import Config
from labquake.features.folder import META_COLUMNS
from labquake.metric import fit_weights, mae
from labquake.models.cv import ModelRun, train_model
from labquake.models.folder import RunFolder, rejection_note
from labquake.models.registry import model, training_data
from labquake.shift import weighted_mae
from labquake.trainset import TrainingData, fold_baseline
from labquake.util import LabquakeError, Timer, log, read_json, stage_record, write_json, write_parquet


def training_order(names: tuple[str, ...]) -> list[str]:
    """The reference model first (the rejecting models' bound is relative to it), then the others as configured."""
    return sorted(names, key=lambda n: not model(n).reference)  # an unknown name fails here, before anything is trained


def blend_weights(cfg: Config, runs: dict[str, ModelRun], oof: dict[str, np.ndarray], y: np.ndarray) -> dict[str, float]:
    """The models the blend uses (all but those dropped by their on_reject) and their weights
    (``oof``: each model's out-of-fold predictions in seconds)."""
    used = [n for n in cfg.blend.models if runs[n].fallback != "drop"] or list(cfg.blend.models)
    if cfg.blend.weights == "fitted" and len(used) > 1:
        return fit_weights({n: oof[n] for n in used}, y, cfg.blend.clip_min)
    return {n: 1.0 / len(used) for n in used}


def run_train(
    cfg: Config, features_dir: Path, run_dir: Path, device: str = "auto", strict: bool = False, scheduler: str | None = None, jobs: int = 1
) -> dict[str, Any]:
    """Cross-validate every model of blend.models on the feature folder; fill ``run_dir`` (module docstring).

    ``strict``: stop with an error when every draw of a network is rejected, whatever its on_reject says.
    ``scheduler``: a Dask scheduler's address; the folds of each batch of draws run there.
    ``jobs``: local worker processes for the networks' folds (0: every core; 1: this process).
    """
    timer = Timer()
    run = RunFolder(run_dir)
    run_dir = run.path
    order = training_order(cfg.blend.models)
    with timer.step("load"):
        data = training_data(cfg, features_dir)
    run.claim(cfg, data.features_key)
    if data.cycle_choice is not None:
        import matplotlib

        matplotlib.use("Agg")
        from labquake.plotting import plot_cycle_choice

        write_json(run_dir / "cycles.json", data.cycle_choice)
        plot_cycle_choice(data.cycle_choice, run_dir / "cycles.png")
    y = data.seconds
    n_folds = int(data.folds.max()) + 1
    log.info(f"train: {', '.join(order)} on {len(data.train)} segments, {len(data.test)} test segments, {n_folds} folds -> {run_dir}")
    runs: dict[str, ModelRun] = {}
    oof_s: dict[str, np.ndarray] = {}  # the predictions in seconds (targets.kind=fraction: times the scales)
    test_s: dict[str, np.ndarray] = {}
    for name in order:
        ref = next((n for n in runs if model(n).reference), None)
        reference = (ref, runs[ref].oof) if ref else None
        with timer.step(name):
            runs[name] = train_model(name, cfg, data, run_dir, device, reference, "error" if strict else None, scheduler, jobs)
        kept = sum(runs[name].kept)
        oof_s[name], test_s[name] = runs[name].oof * data.oof_scale, runs[name].test * data.test_scale
        log.info(f"{name}: OOF MAE {mae(y, oof_s[name]):.4f} ({sum(runs[name].accepted)} accepted of {len(runs[name].draws)} draws, {kept} kept)")
    weights = blend_weights(cfg, runs, oof_s, y)
    with timer.step("write"):
        meta = data.train[list(META_COLUMNS)] if data.meta is None else data.meta
        oof = meta.assign(fold=data.folds, **{n: oof_s[n] for n in cfg.blend.models})
        checksums = {
            run.oof_path.name: write_parquet(run.oof_path, oof),
            run.test_path.name: write_parquet(
                run.test_path, pd.DataFrame({"seg_id": data.test["seg_id"], **{n: test_s[n] for n in cfg.blend.models}})
            ),
        }
    summary = {**make_summary(cfg, data, runs, oof_s, test_s, weights, run.config()), "checksums": checksums}
    write_json(run.record_path("train"), stage_record("train", cfg.to_dict(), timer, features_dir=str(features_dir), device=device, summary=summary))
    run.write_summary(summary)
    scores = ", ".join(f"{n} {summary['oof_mae'][n]:.4f}" for n in cfg.blend.models)
    log.info(f"train: OOF MAE {scores}, median baseline {summary['baseline_median_mae']:.4f}; blend weights {weights}")
    for name in runs:
        note = rejection_note(summary, name)
        if note:
            log.warning(note)
    return summary


def make_summary(
    cfg: Config,
    data: TrainingData,
    runs: dict[str, ModelRun],
    oof: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    weights: dict[str, float],
    identity: dict[str, Any],
) -> dict[str, Any]:
    """summary.json: the scores, the baselines, the blend's weights, each model's facts (nested under
    ``model``) and the training regime's record (``regime``). ``oof``, ``test``: predictions in seconds."""
    y = data.seconds
    n_folds = int(data.folds.max()) + 1
    regime = {**data.regime, "test_mean_ttf": {**data.regime.get("test_mean_ttf", {}), "predictions": {n: float(np.mean(test[n])) for n in test}}}
    if data.importance is not None:  # the OOF error re-weighted towards the test: an estimate of the test MAE
        regime["weighted_oof_mae"] = {n: weighted_mae(y, oof[n], data.importance) for n in cfg.blend.models}
    summary = {
        "models": list(cfg.blend.models),
        "blend_weights": weights,
        "oof_mae": {n: mae(y, oof[n]) for n in cfg.blend.models},
        "fold_mae": {n: [mae(y[data.folds == k], oof[n][data.folds == k]) for k in range(n_folds)] for n in cfg.blend.models},
        "baseline_median_mae": mae(y, fold_baseline(y, data.folds, np.median)),
        "baseline_mean_mae": mae(y, fold_baseline(y, data.folds, np.mean)),
        "n_train": len(data.train),
        "n_test": len(data.test),
        "n_folds": n_folds,
        "cv_scheme": cfg.cv.scheme,
        "dropped_features": list(data.dropped_features),
        "train_cycles": sorted(int(c) for c in data.train["cycle"].unique()),
        **{k: identity[k] for k in ("train_key", "features_key")},
        "regime": regime,
        "model": {},
    }
    for name, r in runs.items():
        facts: dict[str, Any] = {"seeds": [d.seed for d, keep in zip(r.draws, r.kept) if keep], "features": list(data.reads.get(name, ()))}
        if model(name).rejects:
            facts.update(
                runs=model(name).settings(cfg).runs,
                accepted=sum(r.accepted),
                draws=len(r.draws),
                reject_bound=r.bound,
                reject_relative_to=r.relative_to,
                fallback=r.fallback,  # "drop": left out of the blend; "best": rejected draws blended
            )
        summary["model"][name] = facts
    return summary


def predict_saved(cfg: Config, run_dir: Path, table: pd.DataFrame, sequences: np.ndarray | None, device: str = "auto") -> dict[str, np.ndarray]:
    """Each model of a finished run on new segments, from its saved fold models: the mean over folds,
    then over the kept draws, as the run's test predictions were made."""
    run = RunFolder(run_dir)
    run.require_finished()
    summary = run.summary()
    out = {}
    for name in summary.get("models", []):
        m = model(name)
        cols = summary["model"].get(name, {}).get("features")
        if cols is None:  # a run of an older labquake: the model's columns less those ks_min_p dropped
            cols = [c for c in m.features(cfg) if c not in summary.get("dropped_features", [])]
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise LabquakeError(
                f"{run.path}: {name} reads {missing[0]}, a column labquake does not compute (a feature table of your own); predict needs its features"
            )
        kept = [r for r in read_json(run.runs_path(name))["runs"] if r["kept"]]
        draws = [
            m.predict_saved(cfg, run.path / r["dir"], read_json(run.path / r["dir"] / "folds.json"), table[list(cols)], sequences, device)
            for r in kept
        ]
        # targets.kind=fraction: the models predict phases, times the run's test scale in seconds
        out[name] = np.mean(draws, axis=0) * summary.get("regime", {}).get("test_scale", 1.0)
    return out
