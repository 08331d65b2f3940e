"""``labquake train``: every model of blend.models cross-validated on one shared split, and the blend's weights.

The run folder:

    config.json    configuration and features key of the run; written first, checked on every rerun
    NAME/          per model (lgbm, nn, seq): drawDD/ per draw (fold models, result.npz, folds.json,
                   history.csv; a rerun loads finished draws, never redoes them), runs.json (per draw:
                   seed, OOF MAE, per-fold facts, accepted, why rejected, kept), history.csv (all draws);
                   lgbm/ also importance.csv and curves.csv
    oof.parquet    one row per training segment: start, cycle, target, tsf, binary, fold, one column per model
    test.parquet   seg_id, one column per model (means over folds, then over kept draws)
    train.json     the stage record: configuration, timings per model, summary
    summary.json   written last (its presence means the run is complete): OOF MAEs, baselines, the
                   blend's models and weights (blend_weights), and per network NAME_fallback: null, or
                   what NAME.on_reject did when every draw was rejected

LightGBM trains first: its OOF MAE is the reference of the networks' reject bound. A run folder made
with another configuration or other features is refused, never overwritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake.blend import fit_weights, mae, network_note
from labquake.config import Config
from labquake.models.cv import ModelRun, model, train_model
from labquake.models.run import META_COLUMNS, claim_run, fold_baseline, load_training_data, run_identity, write_parquet
from labquake.util import LabquakeError, Timer, log, read_json, stage_record, write_json


def training_order(names: tuple[str, ...]) -> list[str]:
    """LightGBM first (the networks' reject bound is relative to it), then the others as configured."""
    for name in names:
        model(name)  # an unknown name fails here, before anything is trained
    return sorted(names, key=lambda n: n != "lgbm")


def blend_weights(cfg: Config, runs: dict[str, ModelRun], y: np.ndarray) -> dict[str, float]:
    """The models the blend uses (all but those dropped by their on_reject) and their weights."""
    used = [n for n in cfg.blend.models if runs[n].fallback != "drop"] or list(cfg.blend.models)
    if cfg.blend.weights == "fitted" and len(used) > 1:
        return fit_weights({n: runs[n].oof for n in used}, y, cfg.blend.clip_min)
    return {n: 1.0 / len(used) for n in used}


def train(cfg: Config, features_dir: Path, run_dir: Path, device: str = "auto", strict: bool = False, scheduler: str | None = None) -> dict[str, Any]:
    """Cross-validate every model of blend.models on the feature folder; fill ``run_dir`` (module docstring).

    ``strict``: stop with an error when every draw of a network is rejected, whatever its on_reject says.
    ``scheduler``: a Dask scheduler's address; the folds of each batch of draws run there.
    """
    timer = Timer()
    run_dir = Path(run_dir)
    order = training_order(cfg.blend.models)
    with timer.step("load"):
        data = load_training_data(cfg, features_dir)
    claim_run(cfg, data, run_dir)
    if data.cycle_choice is not None:
        import matplotlib

        matplotlib.use("Agg")
        from labquake.drift import plot_cycle_choice

        write_json(run_dir / "cycles.json", data.cycle_choice)
        plot_cycle_choice(data.cycle_choice, run_dir / "cycles.png")
    y = data.train["target"].to_numpy(np.float64)
    n_folds = int(data.folds.max()) + 1
    log.info(f"train: {', '.join(order)} on {len(data.train)} segments, {len(data.test)} test segments, {n_folds} folds -> {run_dir}")
    runs: dict[str, ModelRun] = {}
    for name in order:
        reference = runs["lgbm"].oof if "lgbm" in runs else None
        with timer.step(name):
            runs[name] = train_model(name, cfg, data, run_dir, device, reference, "error" if strict else None, scheduler)
        kept = sum(runs[name].kept)
        log.info(f"{name}: OOF MAE {mae(y, runs[name].oof):.4f} ({sum(runs[name].accepted)} accepted of {len(runs[name].draws)} draws, {kept} kept)")
    weights = blend_weights(cfg, runs, y)
    with timer.step("write"):
        oof = data.train[list(META_COLUMNS)].assign(fold=data.folds, **{n: runs[n].oof for n in cfg.blend.models})
        write_parquet(run_dir / "oof.parquet", oof)
        write_parquet(run_dir / "test.parquet", pd.DataFrame({"seg_id": data.test["seg_id"], **{n: runs[n].test for n in cfg.blend.models}}))
    summary = {
        "models": list(cfg.blend.models),
        "blend_weights": weights,
        "oof_mae": {n: mae(y, runs[n].oof) for n in cfg.blend.models},
        "fold_mae": {n: [mae(y[data.folds == k], runs[n].oof[data.folds == k]) for k in range(n_folds)] for n in cfg.blend.models},
        "baseline_median_mae": mae(y, fold_baseline(y, data.folds, np.median)),
        "baseline_mean_mae": mae(y, fold_baseline(y, data.folds, np.mean)),
        "n_train": len(data.train),
        "n_test": len(data.test),
        "n_folds": n_folds,
        "cv_scheme": cfg.cv.scheme,
        "dropped_features": list(data.dropped_features),
        "train_cycles": sorted(int(c) for c in data.train["cycle"].unique()),
        **run_identity(cfg, data),
    }
    for name, r in runs.items():
        summary[f"{name}_seeds"] = [d.seed for d, keep in zip(r.draws, r.kept) if keep]
        if model(name).REJECTS:
            summary.update(
                {
                    f"{name}_runs": model(name).SECTION(cfg).runs,
                    f"{name}_accepted": sum(r.accepted),
                    f"{name}_draws": len(r.draws),
                    f"{name}_reject_bound": r.bound,
                    f"{name}_reject_relative_to": r.relative_to,
                    f"{name}_fallback": r.fallback,  # "drop": left out of the blend; "best": rejected draws blended
                }
            )
    write_json(run_dir / "train.json", stage_record("train", cfg.to_dict(), timer, features_dir=str(features_dir), device=device, summary=summary))
    write_json(run_dir / "summary.json", summary)
    scores = ", ".join(f"{n} {summary['oof_mae'][n]:.4f}" for n in cfg.blend.models)
    log.info(f"train: OOF MAE {scores}, median baseline {summary['baseline_median_mae']:.4f}; blend weights {weights}")
    for name in runs:
        note = network_note(summary, name)
        if note:
            log.warning(note)
    return summary


def predict_saved(cfg: Config, run_dir: Path, table: pd.DataFrame, sequences: np.ndarray | None, device: str = "auto") -> dict[str, np.ndarray]:
    """Each model of a finished run on new segments, from its saved fold models: the mean over folds,
    then over the kept draws, as the run's test predictions were made."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file():
        raise LabquakeError(f"{run_dir}: no finished training run (no summary.json); run `labquake train` first")
    out = {}
    for name in read_json(run_dir / "summary.json").get("models", ["lgbm", "nn"]):
        m = model(name)
        runs = read_json(run_dir / name / "runs.json")["runs"]
        kept = [r for r in runs if r["kept"]]
        draws = []
        for r in kept:
            folds = read_json(run_dir / r["dir"] / "folds.json")
            draws.append(m.predict_saved(cfg, run_dir / r["dir"], folds, table, sequences, device))
        out[name] = np.mean(draws, axis=0)
    return out
