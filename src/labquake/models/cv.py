"""One cross-validation loop for every model (``models.base.Model``), and the draws of a model
(seeds, redrawn when rejected).

Every draw is one seed over every fold. Its folder ``RUN/NAME/drawDD/`` holds the fold models,
``result.npz`` (OOF and fold-mean test predictions), ``folds.json`` and ``history.csv``; it is swapped in
whole when the draw is finished, so a rerun loads finished draws and redoes nothing. Folds (and the
draws of one batch) are joblib tasks: in this process by default, on a Dask cluster with --scheduler,
where a task gets the feature folder's path and the fold, never arrays, and loads its inputs once per
worker process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake.config import Config
from labquake.integrity import CHECKSUMS, check_files
from labquake.metric import mae
from labquake.models.base import Draw, FoldFit
from labquake.models.folder import RunFolder
from labquake.models.network import DEAD_STD
from labquake.models.registry import model, training_data
from labquake.trainset import TrainingData, fold_baseline
from labquake.util import LabquakeError, atomic_path, load_npz, log, read_json, save_npz, setup_logging, usable_cpus, write_csv, write_json

MEAN_REJECT_RATIO = 0.7  # the reject bound x predict-the-mean's OOF MAE, when there is no LightGBM reference


# ---------------------------------------------------------------------------------------------
# The loop


def draw_from_folds(name: str, draw: int, seed: int, folds: np.ndarray, n_test: int, fits: list[FoldFit]) -> Draw:
    """OOF predictions (each row from the fold that did not see it) and fold-mean test predictions."""
    oof = np.full(len(folds), np.nan)
    test = np.zeros(n_test)
    for k, fit in enumerate(fits):
        oof[folds == k] = fit.valid
        test += np.asarray(fit.test, np.float64) / len(fits)
    history = pd.concat([f.history.assign(fold=k) for k, f in enumerate(fits)], ignore_index=True)
    history = history[["fold", *[c for c in history.columns if c != "fold"]]]
    files = {n: d for f in fits for n, d in f.files.items()}
    return Draw(name, draw, seed, oof, test, [f.info for f in fits], history, files)


def cross_validate(name: str, cfg: Config, inputs: Any, folds: np.ndarray, n_test: int, seed: int, draw_dir: Path, draw: int = 0) -> Draw:
    """One draw of a model over every fold, in this process; fold models saved in ``draw_dir``."""
    m = model(name)
    fits = [m.fit_fold(cfg, inputs, folds, k, seed, draw_dir) for k in range(int(folds.max()) + 1)]
    return draw_from_folds(name, draw, seed, folds, n_test, fits)


@functools.lru_cache(maxsize=2)
def _worker_inputs(name: str, cfg: Config, features: tuple[str, str], device: str) -> tuple[Any, np.ndarray]:
    """A worker's inputs of a model: loaded from the feature folder once per process.

    ``features``: the folder's path and its tables' key, so a folder recomputed in place between
    two runs served by one long-lived worker is loaded again."""
    data = training_data(cfg, Path(features[0]))
    return model(name).prepare(cfg, data, device), data.folds


def _fit_here(name: str, cfg: Config, features: tuple[str, str], device: str, k: int, seed: int, fold_dir: str, pinned: dict) -> FoldFit:
    """A fold as a task: paths and numbers in, the fold's predictions out.

    ``pinned``: inputs the planning process fixed (LightGBM's thread count, on which its results
    depend), so a worker with other cores computes the same bytes.
    """
    inputs, folds = _worker_inputs(name, cfg, features, device)
    return model(name).fit_fold(cfg, dataclasses.replace(inputs, **pinned), folds, k, seed, Path(fold_dir))


def _fit_task(*args: Any) -> FoldFit:
    """A fold as a cluster task (``_fit_here``'s arguments); a network's in a process of its own."""
    return _isolated(*args) if model(args[0]).isolate else _fit_here(*args)


def _isolated(*args: Any) -> FoldFit:
    """A fold in a fresh Python process of its own (the networks, on a cluster).

    A Keras fit inside a Dask worker was not reproducible from one task to the next (the worker's
    own threads run beside TensorFlow's), while a fit in a fresh process always gives the local
    run's bytes. So a network's fold runs in a child process: TensorFlow's start-up (about 10 s)
    is the price of results identical to a local run.
    """
    import pickle
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="labquake-fold-") as tmp:
        job, out = Path(tmp) / "job.pkl", Path(tmp) / "fit.pkl"
        job.write_bytes(pickle.dumps(args))
        code = "import sys; from labquake.models.cv import _child; _child(sys.argv[1], sys.argv[2])"
        proc = subprocess.run([sys.executable, "-c", code, str(job), str(out)], capture_output=True, text=True)
        if proc.returncode != 0 or not out.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise LabquakeError(f"{args[0]} fold {args[4]} (seed {args[5]}): its process failed ({last})")
        return pickle.loads(out.read_bytes())


def _local_fit(level: int, *args: Any) -> FoldFit:
    """A network's fold in a local worker process (``train --jobs``): one process a core keeps the
    cores busy, where one process's TensorFlow threads did not (network.TF_THREADS)."""
    from labquake.models.network import setup_tensorflow

    if not log.handlers:  # a fresh worker: the caller's log level, its lines on stderr
        setup_logging(0)
        log.setLevel(level)
    setup_tensorflow(args[3])
    return _fit_here(*args)


def local_jobs(jobs: int, device: str, tasks: int) -> int:
    """Worker processes for a network's folds: ``jobs`` (0: every core), at most one a task; 1 (this
    process) on a GPU, which the processes would fight over."""
    if device == "gpu" or (device == "auto" and Path("/proc/driver/nvidia/version").exists()):
        return 1
    return max(1, min(jobs or usable_cpus(), tasks))


def _child(job: str, out: str) -> None:
    """The child process of ``_isolated``: load the fold's inputs, fit, pickle the FoldFit."""
    import pickle

    Path(out).write_bytes(pickle.dumps(_fit_here(*pickle.loads(Path(job).read_bytes()))))


def _fit_draws(
    name: str, cfg: Config, data: TrainingData, inputs: Any, draws: list[int], run: RunFolder, device: str, scheduler: str | None, jobs: int = 1
) -> list[Draw]:
    """Train the draws not finished yet (all folds of each), save each; load the finished ones.

    ``jobs``: local worker processes for the folds of a network (``local_jobs``); others run here."""
    m = model(name)
    n_folds = int(data.folds.max()) + 1
    done = {d: load_draw(name, run.draw_dir(name, d), d, m.seed(cfg, d)) for d in draws if run.draw_finished(name, d)}
    todo = [d for d in draws if d not in done]
    if todo:
        with contextlib.ExitStack() as stack:
            tmp = {d: stack.enter_context(atomic_path(run.draw_dir(name, d))) for d in todo}
            for t in tmp.values():
                t.mkdir(parents=True)
            tasks = [(d, k) for d in todo for k in range(n_folds)]
            workers = local_jobs(jobs, device, len(tasks)) if m.isolate else 1
            if scheduler is None and workers == 1:
                fits = [m.fit_fold(cfg, inputs, data.folds, k, m.seed(cfg, d), tmp[d]) for d, k in tasks]
            else:
                from joblib import Parallel, delayed

                from labquake.cluster import joblib_backend

                pinned = {"threads": inputs.threads} if hasattr(inputs, "threads") else {}
                source = (str(data.features_dir.resolve()), data.features_key)
                args = [(name, cfg, source, device, k, m.seed(cfg, d), str(tmp[d].resolve()), pinned) for d, k in tasks]
                if scheduler is None:
                    fits = Parallel(n_jobs=workers, backend="loky", batch_size=1)(delayed(_local_fit)(log.level, *a) for a in args)
                else:
                    with joblib_backend(scheduler, cfg.runtime.scheduler_timeout):
                        fits = Parallel(n_jobs=-1, batch_size=1)(delayed(_fit_task)(*a) for a in args)
            for i, d in enumerate(todo):
                res = draw_from_folds(name, d, m.seed(cfg, d), data.folds, len(data.test), fits[i * n_folds : (i + 1) * n_folds])
                save_draw(res, tmp[d])
                done[d] = res
                log.info(f"{name} draw {d} (seed {res.seed}): OOF MAE {mae(data.train['target'], res.oof):.4f}")
    return [done[d] for d in draws]


def save_draw(res: Draw, draw_dir: Path) -> None:
    """A draw's files; its manifest (CHECKSUMS: the fold models' and result.npz's checksums) before folds.json."""
    files = {**res.files, "result.npz": save_npz(draw_dir / "result.npz", oof=res.oof, test=res.test)}
    res.history.to_csv(draw_dir / "history.csv", index=False)
    write_json(draw_dir / CHECKSUMS, files)
    (draw_dir / "folds.json").write_text(json.dumps(res.folds, indent=1, default=float) + "\n")


def load_draw(name: str, draw_dir: Path, draw: int, seed: int) -> Draw:
    """A finished draw, checked against its manifest before it is used."""
    problems = check_files(draw_dir, ["result.npz"])
    if problems:
        raise LabquakeError(f"{problems[0]}; delete {draw_dir} and rerun `labquake train` (it trains that draw again)")
    arrays = load_npz(draw_dir / "result.npz")
    return Draw(name, draw, seed, arrays["oof"], arrays["test"], read_json(draw_dir / "folds.json"), pd.read_csv(draw_dir / "history.csv"))


# ---------------------------------------------------------------------------------------------
# Draws: every seed, or redrawn when rejected


def reject_bound(ratio: float, y: np.ndarray, folds: np.ndarray, reference: np.ndarray | None, reference_name: str = "lgbm") -> tuple[float, str]:
    """The OOF MAE at which a draw is rejected, and what it is relative to (see DrawConfig.reject_ratio).

    ``reference``: the reference model's OOF predictions on the same folds (``reference_name``'s);
    without it, predict-the-mean's.
    """
    if reference is not None:
        return ratio * mae(y, reference), reference_name
    return MEAN_REJECT_RATIO * mae(y, fold_baseline(y, folds, np.mean)), "mean"


def reject_reason(y: np.ndarray, oof: np.ndarray, folds: np.ndarray, bound: float) -> str | None:
    """Why a draw failed to learn, or None: non-finite or (near) constant predictions, or OOF MAE >= bound."""
    score = mae(y, oof)
    if not np.isfinite(score):
        return "non-finite predictions"
    spread = min(float(np.std(oof[folds == k])) for k in np.unique(folds))
    if spread < DEAD_STD * float(np.std(y)):
        return f"constant predictions (std {spread:.3g} in a fold)"
    if score >= bound:
        return f"OOF MAE {score:.4f} >= bound {bound:.4f}"
    return None


def run_draws(draw: Callable[[list[int]], list[str | None]], runs: int, max_redraws: int) -> list[bool]:
    """Draw until ``runs`` are accepted or ``runs + max_redraws`` were drawn.

    ``draw(ds)`` trains (or loads) the draws ``ds`` and returns why each is rejected, or None. Draws
    are asked for in batches of as many as are still missing, so a batch can run in parallel and no
    draw is trained that one at a time would not have trained. Returns whether each draw was accepted.
    """
    accepted: list[bool] = []
    while sum(accepted) < runs and len(accepted) < runs + max_redraws:
        n = min(runs - sum(accepted), runs + max_redraws - len(accepted))
        batch = list(range(len(accepted), len(accepted) + n))
        for d, reason in zip(batch, draw(batch)):
            if sum(accepted) >= runs:
                break  # enough already: later draws of the batch are not counted
            if reason is not None:
                log.info(f"draw {d}: rejected, {reason}")
            accepted.append(reason is None)
    return accepted


def keep_runs(scores: list[float], accepted: list[bool], runs: int, on_reject: str, name: str = "nn") -> tuple[list[bool], str | None]:
    """The draws whose predictions make the model's column, and the fallback taken (None: the accepted ones).

    Every draw rejected: "error" raises; "drop" and "best" keep the ``runs`` best draws by OOF MAE
    ("drop" for inspection only: the blend leaves them out).
    """
    if any(accepted):
        return list(accepted), None
    if on_reject == "error":
        raise LabquakeError(
            f"{name}: all {len(accepted)} draws rejected (best OOF MAE {np.nanmin(scores):.4f}; {name}/runs.json says why); "
            f"without --strict, {name}.on_reject=drop or best submits anyway; or raise {name}.max_redraws or {name}.reject_ratio (--set)"
        )
    best = set(np.argsort(np.asarray(scores, np.float64), kind="stable")[:runs].tolist())  # NaN last
    return [d in best for d in range(len(scores))], on_reject


@dataclass
class ModelRun:
    """Every draw of one model, which were accepted and which make its column."""

    name: str
    draws: list[Draw]
    accepted: list[bool]
    kept: list[bool]
    fallback: str | None  # None, or on_reject's "drop"/"best" when every draw was rejected
    bound: float | None
    relative_to: str | None  # what the bound is relative to: the reference model's name, or "mean"

    @property
    def oof(self) -> np.ndarray:
        return np.mean([d.oof for d, keep in zip(self.draws, self.kept) if keep], axis=0)

    @property
    def test(self) -> np.ndarray:
        return np.mean([d.test for d, keep in zip(self.draws, self.kept) if keep], axis=0)


def train_model(
    name: str,
    cfg: Config,
    data: TrainingData,
    run_dir: Path,
    device: str = "auto",
    reference: tuple[str, np.ndarray] | None = None,
    on_reject: str | None = None,
    scheduler: str | None = None,
    jobs: int = 1,
) -> ModelRun:
    """Every draw of one model; writes RUN/NAME/runs.json and history.csv (and the model's extras).

    ``reference``: the reference model's name and OOF predictions (LightGBM's), for the reject bound. ``on_reject`` overrides
    the section's on_reject for this call (``train --strict``). ``jobs``: as ``_fit_draws``.
    """
    m = model(name)
    c = m.settings(cfg)
    y = data.train["target"].to_numpy(np.float64)
    run = RunFolder(run_dir)
    model_dir = run.model_dir(name)
    inputs = m.prepare(cfg, data, device)
    if not m.rejects:
        draws = _fit_draws(name, cfg, data, inputs, list(range(m.draws(cfg))), run, device, scheduler, jobs)
        result = ModelRun(name, draws, [True] * len(draws), [True] * len(draws), None, None, None)
        _record(name, model_dir, y, data.folds, draws, result.accepted, result.kept, [None] * len(draws), {})
    else:
        ref_name, ref_oof = reference if reference is not None else ("", None)
        bound, relative_to = reject_bound(c.reject_ratio, y, data.folds, ref_oof, ref_name)
        draws, reasons = [], []

        def draw(batch: list[int]) -> list[str | None]:
            new = _fit_draws(name, cfg, data, inputs, batch, run, device, scheduler, jobs)
            why = [reject_reason(y, r.oof, data.folds, bound) for r in new]
            draws.extend(new)
            reasons.extend(why)
            return why

        accepted = run_draws(draw, c.runs, c.max_redraws)
        draws, reasons = draws[: len(accepted)], reasons[: len(accepted)]
        scores = [mae(y, r.oof) for r in draws]
        try:
            kept, fallback = keep_runs(scores, accepted, c.runs, on_reject or c.on_reject, name)
        except LabquakeError:
            _record(name, model_dir, y, data.folds, draws, accepted, [False] * len(draws), reasons, {"reject_bound": bound, "fallback": None})
            raise
        result = ModelRun(name, draws, accepted, kept, fallback, bound, relative_to)
        meta = {
            "reject_bound": bound,
            "reject_ratio": MEAN_REJECT_RATIO if relative_to == "mean" else c.reject_ratio,
            "reject_relative_to": relative_to,
            "fallback": fallback,
        }
        _record(name, model_dir, y, data.folds, draws, accepted, kept, reasons, meta)
    m.write_extras(result.draws, model_dir, data)
    return result


def _record(name, model_dir: Path, y, folds, draws: list[Draw], accepted, kept, reasons, meta: dict) -> None:
    """RUN/NAME/runs.json (per draw: seed, OOF MAE, per-fold MAE and info, accepted, why not, kept) and history.csv."""
    runs = [
        {
            "run": r.draw,
            "seed": r.seed,
            "oof_mae": mae(y, r.oof),
            "fold_mae": [mae(y[folds == k], r.oof[folds == k]) for k in range(len(r.folds))],
            "accepted": ok,
            "rejected_because": why,
            "kept": keep,
            "dir": f"{name}/draw{r.draw:02d}",
            # the folds' scalar facts (best epoch or iteration, batch size, ...), one list entry per fold
            **{key: [f[key] for f in r.folds] for key in (r.folds[0] if r.folds else {}) if isinstance(r.folds[0][key], (int, float, str))},
        }
        for r, ok, why, keep in zip(draws, accepted, reasons, kept)
    ]
    write_json(model_dir / "runs.json", {**meta, "runs": runs})
    history = [r.history.assign(run=r.draw, seed=r.seed, accepted=ok) for r, ok in zip(draws, accepted)]
    if history:
        write_csv(model_dir / "history.csv", pd.concat(history, ignore_index=True))
