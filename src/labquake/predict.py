"""Time to failure along a continuous recording (`labquake predict`): windows, features, a run's models.

``run_predict`` slides SEGMENT_ROWS-row windows over one recording (starts 0, step, 2 step, ...;
the last window ends inside the file), computes the features and sequences of every window with the
features stage (``features.stage.compute_windows``: the same code as the tables, no second
implementation), and predicts them with a finished run's saved models and its blend. Into ``DIR``:

    predictions.csv   start_row, end_row (0-based data rows, end exclusive: the window is rows
                      start_row .. end_row - 1), time_to_failure (the truth at the window's last row,
                      when the file has it), one column per model, blend; every prediction clipped
                      below at blend.clip_min, as in the submission files
    predictions.png   the predictions along the recording, against the truth when known
    predict.json      the stage record: configuration, run, recording, windows, timings, MAE per
                      model and of the blend (truth known), written last
    .cache/KEY/       the recording's binary cache (labquake.data.load_recording; KEY: its fingerprint)
    .parts/KEY/       finished chunks of window features (KEY: recording, feature settings, step),
                      so an interrupted run resumes; kept, so a rerun (another run folder, say) reuses them

Memory stays bounded whatever the recording's size: the CSV is converted in chunks, the features
stream from the memory-mapped cache, and only per-window rows (features, sequences, predictions)
are held. Bad input (step, run folder, recording) is a one-line ``LabquakeError`` raised before any
output is written; the three outputs are renamed into place together, at the end.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake import data
from labquake.config import SEGMENT_ROWS, Config
from labquake.util import LabquakeError, Timer, atomic_path, json_key, log, stage_record, write_json

TRAIN_HINT = "run `labquake train` with this configuration"
OUTPUTS = ("predictions.csv", "predictions.png", "predict.json")
PARTS_NAME = "windows"  # compute_windows' part files: .parts/KEY/windows_NNNNN.npy


def window_starts(n_rows: int, step: int, rows: int = SEGMENT_ROWS) -> np.ndarray:
    """Starts 0, step, 2 step, ... of the ``rows``-row windows that fit in ``n_rows`` rows."""
    if step <= 0:
        raise LabquakeError(f"--step must be a positive number of rows, got {step}")
    if n_rows < rows:
        return np.empty(0, np.int64)
    return np.arange(0, n_rows - rows + 1, step, dtype=np.int64)


def check_run(cfg: Config, run_dir: Path) -> dict[str, float]:
    """A finished run made with this configuration's feature settings: its blend weights {model: weight}."""
    from labquake.features.folder import changed_settings
    from labquake.models.folder import RunFolder

    run = RunFolder(run_dir)
    run.require_finished(f"{TRAIN_HINT} (it resumes where it stopped)")
    run_features = run.config().get("config", {}).get("features")
    if not isinstance(run_features, dict):
        raise LabquakeError(f"{run.config_path}: no config.features: not a run folder of this labquake")
    differ = changed_settings(cfg, run_features)
    if differ:
        more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
        key = differ[0].split(".", 1)[1]
        first = f"{differ[0]}: {run_features.get(key)!r} in the run, {getattr(cfg.features, key)!r} here"
        raise LabquakeError(f"{run.path}: made with other feature settings ({first}{more}); predict with the run's settings (--set, --config)")
    run.require_intact(("models",))
    weights = run.summary().get("blend_weights")
    if not isinstance(weights, dict) or not weights or not all(isinstance(w, (int, float)) for w in weights.values()):
        raise LabquakeError(f"{run.summary_path}: no blend_weights (a run of an older labquake); {TRAIN_HINT} into a new folder")
    unknown = sorted(set(weights) - set(cfg.blend.models))
    if unknown:
        raise LabquakeError(f"{run.path}: its blend uses {', '.join(unknown)}, not in this configuration's blend.models {list(cfg.blend.models)}")
    return {str(m): float(w) for m, w in weights.items()}


def parts_key(cfg: Config, recording: data.Recording, step: int) -> str:
    """What the window features depend on: the recording, the feature code and settings, the windows."""
    from labquake import __version__
    from labquake.features.stage import FEATURES_VERSION

    return json_key(
        {
            "recording": recording.fingerprint,
            "version": FEATURES_VERSION,
            "labquake": __version__,
            "features": cfg.features.table_settings(),
            "rows": SEGMENT_ROWS,
            "step": step,
        }
    )


def _parts_dir(out_dir: Path, key: str) -> Path:
    root = out_dir / ".parts"
    for stale in root.glob("*") if root.is_dir() else []:
        if stale.is_dir() and stale.name != key:  # windows of another recording, step or setting
            shutil.rmtree(stale, ignore_errors=True)
    return root / key


def _mae_table(scores: dict[str, float]) -> str:
    head = f"{'model':<12}{'MAE':>10}"
    return "\n".join([head, "-" * len(head), *(f"{name:<12}{value:>10.4f}" for name, value in scores.items())])


def plot_predictions(table: pd.DataFrame, models: list[str], path: Path, title: str) -> None:
    """Predictions of every window (at its last row) along the recording, the truth beneath them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = (table["end_row"].to_numpy() - 1) / 1e6
    fig, ax = plt.subplots(figsize=(12, 4.5))
    if "time_to_failure" in table:
        ax.plot(x, table["time_to_failure"], color="black", lw=1.5, label="truth")
    for name in models:
        ax.plot(x, table[name], lw=0.8, alpha=0.7, label=name)
    ax.plot(x, table["blend"], color="tab:red", lw=1.4, label="blend")
    ax.set(xlabel="window's last row (millions)", ylabel="time to failure (s)", title=title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


# Long by design: the stage's steps in order, each timed; it reads top to bottom.
def run_predict(
    cfg: Config,
    run_dir: Path,
    recording: Path,
    out_dir: Path,
    step: int = SEGMENT_ROWS,
    jobs: int = 0,
    scheduler: str | None = None,
) -> dict[str, Any]:
    """Predict every window of ``recording`` with the run ``run_dir``; write ``out_dir`` (see the module
    docstring). Returns the stage record (predict.json)."""
    from labquake import metric, models
    from labquake.features import FEATURE_NAMES
    from labquake.features.stage import compute_windows

    timer = Timer()
    run_dir, recording, out_dir = Path(run_dir), Path(recording), Path(out_dir)
    window_starts(SEGMENT_ROWS, step)  # a bad step is refused before anything is read
    weights = check_run(cfg, run_dir)
    with timer.step("cache"):
        rec = data.load_recording(recording, out_dir / ".cache")
    starts = window_starts(rec.n_rows, step)
    ends = starts + SEGMENT_ROWS
    log.info(f"predict: {len(starts):,} windows of {SEGMENT_ROWS:,} rows every {step:,} rows of {rec.n_rows:,} ({recording.name}) -> {out_dir}")

    key = parts_key(cfg, rec, step)
    with timer.step("features"):
        source = data.mapped_file(rec.signal)
        assert source is not None  # load_recording returns memmaps
        features, sequences = compute_windows(cfg, source, starts, _parts_dir(out_dir, key), PARTS_NAME, jobs=jobs, scheduler=scheduler)
    with timer.step("predict"):
        preds = models.predict_saved(cfg, run_dir, pd.DataFrame(features, columns=FEATURE_NAMES), sequences)
        missing = sorted(set(weights) - set(preds))
        if missing:
            raise LabquakeError(f"{run_dir}: no saved models of {', '.join(missing)}, which its blend uses")
        clip_min = cfg.blend.clip_min
        blended = metric.weighted_geomean({m: preds[m] for m in weights}, weights, clip_min)

    table = pd.DataFrame({"start_row": starts, "end_row": ends})
    if rec.ttf is not None:
        table["time_to_failure"] = data.read_at(rec.ttf, ends - 1)
    names = [m for m in cfg.blend.models if m in preds] + sorted(set(preds) - set(cfg.blend.models))
    for name in names:
        table[name] = metric.clip(preds[name], clip_min)
    table["blend"] = np.asarray(blended, dtype=np.float64)
    scores = None
    if rec.ttf is not None:
        y = table["time_to_failure"].to_numpy()
        scores = {name: metric.mae(y, table[name]) for name in [*names, "blend"]}

    record = stage_record(
        "predict",
        cfg.to_dict(),
        timer,
        run=str(run_dir),
        recording=str(recording),
        recording_format=rec.format,
        recording_fingerprint=rec.fingerprint,
        n_rows=rec.n_rows,
        window_rows=SEGMENT_ROWS,
        step=step,
        n_windows=len(starts),
        end_row="exclusive",
        models=names,
        blend_weights=weights,
        clip_min=clip_min,
        has_truth=rec.ttf is not None,
        mae=scores,
        parts_key=key,
    )
    # All three outputs are written under temporary names first and renamed together at the end
    # (predict.json last): a failure leaves the earlier outputs, never a mix.
    with timer.step("write"), contextlib.ExitStack() as stack:
        record_tmp, csv_tmp, png_tmp = (
            stack.enter_context(atomic_path(out_dir / name)) for name in ("predict.json", "predictions.csv", "predictions.png")
        )
        table.to_csv(csv_tmp, index=False)  # shortest round-trip repr: the values exactly
        plot_predictions(table, names, png_tmp, f"{recording.name}: {len(starts):,} windows, step {step:,} (run {run_dir.name})")
        record["timings_s"] = {**timer.timings, "total": timer.total()}
        write_json(record_tmp, record)
    if scores is not None:
        print(_mae_table(scores))
    log.info(f"predict: wrote {out_dir}/predictions.csv ({len(table):,} windows) in {timer.total():.1f} s")
    return record
