"""The blend and the submission files (docs/recipe.md, Blend and submission).

The maths are in ``labquake.metric``; here is the file I/O:
``submit`` turns a finished run folder into submission files (the blend, then one per model of
blend.models) and RUN/blend.json; ``score_files`` scores one submission against a truth file. The
blend is the geometric mean of the models, weighted as training recorded (summary.json's
blend_weights: equal, or fitted on OOF with blend.weights=fitted); a network whose every draw was
rejected with on_reject=drop is left out of it. Submission files are checked before they are written
(every id of sample_submission.csv in its order, every value finite and non-negative) and written
atomically; files read are checked too, with one-line errors naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake import data
from labquake.config import SUBMISSION_COLUMNS, Config
from labquake.metric import BLEND, mae, predictions
from labquake.models.folder import RunFolder, rejection_notes
from labquake.models.registry import label
from labquake.util import LabquakeError, Timer, atomic_path, log, read_table, stage_record, write_json

TRAIN_HINT = " (run `labquake train` first)"


def submission_file(name: str) -> str:
    return f"submission_{name}.csv"


# ---------------------------------------------------------------------------------------------
# Files


def read_submission(path: str | Path) -> pd.DataFrame:
    """A ``seg_id,time_to_failure`` file, checked: header, unique ids, finite numbers. Rows as in the file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            header = fh.readline().strip()
            table = pd.read_csv(fh, header=None, names=list(SUBMISSION_COLUMNS), dtype={"seg_id": str}, keep_default_na=False)
    except FileNotFoundError:
        raise LabquakeError(f"{path}: not found") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise LabquakeError(f"{path}: not a seg_id,time_to_failure CSV ({str(exc).splitlines()[0]})") from None
    if header != ",".join(SUBMISSION_COLUMNS):
        raise LabquakeError(f"{path}: header must be {','.join(SUBMISSION_COLUMNS)!r}, found {header[:60]!r}")
    if table.empty:
        raise LabquakeError(f"{path}: no rows")
    ids = table["seg_id"].str.strip()
    if (ids == "").any():
        raise LabquakeError(f"{path}: empty seg_id on line {int(np.flatnonzero(ids == '')[0]) + 2}")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise LabquakeError(f"{path}: duplicate seg_id {dup.iloc[0]} ({len(dup)} duplicates)")
    values = pd.to_numeric(table["time_to_failure"], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise LabquakeError(f"{path}: time_to_failure missing or not a finite number for {ids.iloc[bad[0]]} (line {bad[0] + 2})")
    return pd.DataFrame({"seg_id": ids.to_numpy(), "time_to_failure": values})


def check_submission(path: str | Path, table: pd.DataFrame, ids: Sequence[str]) -> None:
    """Before writing: the sample's ids in its order, every value finite and non-negative."""
    if list(table.columns) != list(SUBMISSION_COLUMNS):
        raise LabquakeError(f"{path}: columns must be {','.join(SUBMISSION_COLUMNS)}, got {','.join(map(str, table.columns))}")
    if table["seg_id"].tolist() != list(ids):
        raise LabquakeError(f"{path}: seg_id rows differ from sample_submission.csv")
    values = table["time_to_failure"].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if len(bad):
        raise LabquakeError(f"{path}: time_to_failure {values[bad[0]]} for {table['seg_id'].iloc[bad[0]]} (must be finite and >= 0)")


def write_submission(path: str | Path, table: pd.DataFrame, ids: Sequence[str]) -> None:
    check_submission(path, table, ids)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def _aligned(ids: pd.Series, table: pd.DataFrame, path: Path, what: str) -> pd.DataFrame:
    """``table`` (indexed by seg_id) in the order of ``ids``; every id must be there."""
    missing = pd.Index(ids).difference(table.index)
    if len(missing):
        raise LabquakeError(f"{path}: {len(missing)} seg_id of {what} missing, e.g. {missing[0]}")
    return table.loc[ids.to_numpy()]


def _scores_table(rows: list[tuple[str, float | None, float | None]], with_test: bool) -> str:
    head = f"{'model':<18}{'OOF MAE':>10}" + (f"{'test MAE':>10}" if with_test else "")
    lines = [head, "-" * len(head)]
    for name, oof, test in rows:
        cell = f"{oof:>10.4f}" if oof is not None else f"{'':>10}"
        lines.append(f"{name:<18}{cell}" + (f"{test:>10.4f}" if with_test and test is not None else ""))
    return "\n".join(lines)


def run_submit(cfg: Config, run_dir: Path, data_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Blend a finished run; write the submission files (the blend, then one per model) and RUN/blend.json; print the scores."""
    timer = Timer()
    run, data_dir, out_dir = RunFolder(run_dir), Path(data_dir), Path(out_dir)
    run_dir = run.path
    run.require_finished()
    summary = run.summary()
    run.check_trained_with(cfg)
    run.require_intact(("tables",))
    clip_min = cfg.blend.clip_min
    names = list(summary.get("models") or cfg.blend.models)
    weights = summary.get("blend_weights") or {m: 1 / len(names) for m in names}
    with timer.step("read"):
        oof = read_table(run.oof_path, ("target", *names), TRAIN_HINT)
        test = read_table(run.test_path, ("seg_id", *names), TRAIN_HINT).set_index("seg_id")
        ids = pd.Series(data.read_sample_ids(data_dir / "sample_submission.csv"))  # the rows, in order
        test = _aligned(ids, test, run.test_path, "sample_submission.csv")
    oof_pred = predictions({m: oof[m] for m in names}, weights, clip_min)
    test_pred = predictions({m: test[m] for m in names}, weights, clip_min)
    files = {name: str(out_dir / submission_file(name)) for name in test_pred}
    with timer.step("write"):
        for name, pred in test_pred.items():
            write_submission(files[name], pd.DataFrame({"seg_id": ids.to_numpy(), "time_to_failure": pred}), ids)
    oof_mae = {name: mae(oof["target"], p) for name, p in oof_pred.items()}
    truth_path = data_dir / "test_truth.csv"
    truth, test_mae = _truth(truth_path, ids), None
    if truth is not None:
        test_mae = {name: mae(truth, p) for name, p in test_pred.items()}
        # what predicting the median of the training targets scores on the same segments
        test_mae["median_baseline"] = mae(truth, np.full(len(truth), np.median(oof["target"])))
    estimates = test_mean_ttf(summary, test_pred, truth)
    used = "+".join(weights)
    rows = [(f"blend ({used})" if n == BLEND else label(n), oof_mae[n], test_mae[n] if test_mae else None) for n in test_pred]
    rows.append(("median baseline", summary.get("baseline_median_mae"), test_mae["median_baseline"] if test_mae else None))
    for note in rejection_notes(summary):
        print(f"warning: {note}")
    print(_scores_table(rows, test_mae is not None))
    if len(weights) > 1 and len(set(weights.values())) > 1:
        print("blend weights (fitted on OOF): " + ", ".join(f"{m} {w:.3f}" for m, w in weights.items()))
    print("test mean time to failure (s): " + ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in _flat(estimates).items()), flush=True)
    record = stage_record(
        "blend",
        cfg.to_dict(),
        timer,
        run_dir=str(run_dir),
        clip_min=clip_min,
        models=names,
        weights=weights,
        blend=used,
        fallbacks={m: f["fallback"] for m, f in summary["model"].items() if "fallback" in f},
        oof_mae=oof_mae,
        test_mae=test_mae,
        truth=str(truth_path) if test_mae else None,
        baseline_median_mae=summary.get("baseline_median_mae"),
        test_mean_ttf=estimates,
        submissions=files,
    )
    write_json(run.record_path("blend"), record)
    log.info(f"submit: wrote {', '.join(files.values())} (upload {files[BLEND]})")
    return record


def _truth(path: Path, ids: pd.Series) -> pd.Series | None:
    """The true time to failure of the submission's rows, in order, when the data has a truth file (synthetic data)."""
    if not path.is_file():
        return None
    return _aligned(ids, read_submission(path).set_index("seg_id"), path, "sample_submission.csv")["time_to_failure"]


def test_mean_ttf(summary: dict[str, Any], test_pred: dict[str, np.ndarray], truth: pd.Series | None) -> dict[str, Any]:
    """The test's mean time to failure: the run's estimates without test labels (summary.json's
    ``regime``: the trained segments' mean, the chosen cycles', the weighted), the mean of each
    submission's predictions, and the truth when the data has it (synthetic data)."""
    est = {k: v for k, v in summary.get("regime", {}).get("test_mean_ttf", {}).items() if k != "predictions"}
    est["predictions"] = {name: float(np.mean(p)) for name, p in test_pred.items()}
    if truth is not None:
        est["true"] = float(np.mean(truth))
    return est


def _flat(est: dict[str, Any]) -> dict[str, float]:
    """The estimates, then each submission's mean prediction, then the truth, as one flat table."""
    preds = {f"{'blend' if n == BLEND else label(n)} predictions": v for n, v in est["predictions"].items()}
    return {**{k: v for k, v in est.items() if k not in ("predictions", "true")}, **preds, **({"true": est["true"]} if "true" in est else {})}


def score_files(submission: str | Path, truth: str | Path) -> float:
    """MAE of a submission against a truth file; both checked, ids must match as sets."""
    sub, ref = read_submission(submission), read_submission(truth)
    sub_ids, ref_ids = pd.Index(sub["seg_id"]), pd.Index(ref["seg_id"])
    missing, extra = ref_ids.difference(sub_ids), sub_ids.difference(ref_ids)
    if len(missing) or len(extra):
        example = missing[0] if len(missing) else extra[0]
        raise LabquakeError(f"{submission}: seg_id do not match {truth} ({len(missing)} missing, {len(extra)} unexpected, e.g. {example})")
    sub = sub.set_index("seg_id").loc[ref["seg_id"].to_numpy()]
    return mae(ref["time_to_failure"], sub["time_to_failure"])
