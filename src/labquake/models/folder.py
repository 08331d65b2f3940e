"""A run folder: its layout, "finished", its configuration check and its summary, in one place.

    config.json    configuration and features key of the run; written first, checked on every rerun
    NAME/          per model: drawDD/ per draw (fold models, result.npz, folds.json, history.csv; a
                   rerun loads finished draws, never redoes them), runs.json (per draw: seed, OOF
                   MAE, per-fold facts, accepted, why rejected, kept), history.csv (all draws), and
                   what the model adds (lgbm: importance.csv, curves.csv)
    cycles.json    data.train_cycles=auto: the cycle search (and cycles.png)
    oof.parquet    one row per training segment: start, cycle, target, tsf, binary, fold, one column per model
    test.parquet   seg_id, one column per model (means over folds, then over kept draws)
    train.json     the stage record: configuration, timings per model, summary
    summary.json   written last (its presence means the run is complete): models, blend_weights,
                   oof_mae, fold_mae, baselines, and per model under ``model`` its seeds, the columns
                   it read and, for models that reject draws, runs, accepted, draws, reject_bound and
                   fallback (null, or what NAME.on_reject did when every draw was rejected)
    blend.json     after ``submit``: the blend's record
    report.md      after ``report``, with its plots

A run folder made with another configuration or other features is refused, never overwritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labquake.config import PRESETS, Config, load_config
from labquake.integrity import CHECKSUMS, check_files
from labquake.models.registry import model
from labquake.util import LabquakeError, json_key, log, read_json, write_json

TRAIN_HINT = "run `labquake train` first"
FLAT_KEYS = ("seeds", "runs", "accepted", "draws", "reject_bound", "reject_relative_to", "fallback")  # NAME_KEY before nesting


def train_sections(cfg: Config) -> tuple[str, ...]:
    """The configuration a training run depends on: data, folds and the sections of its models."""
    return ("data", "targets", "cv", *(model(n).name for n in cfg.blend.models))


def train_key(cfg: Config) -> str:
    """The key of a training run's configuration: its sections, its models and the feature selection."""
    return json_key({"sections": cfg.section_hash(*train_sections(cfg)), "models": list(cfg.blend.models), "ks_min_p": cfg.features.ks_min_p})


def run_name(cfg: Config) -> str:
    """The default run folder's name: the preset, or ``PRESET-KEY`` when the settings a run depends
    on (its training sections and the features') differ from the preset's, so that another
    configuration gets its own folder."""

    def key(c: Config) -> str:
        return json_key({"features": c.section_hash("features"), "train": train_key(c)})

    base = load_config(cfg.preset) if cfg.preset in PRESETS else Config()
    return cfg.preset if key(cfg) == key(base) else f"{cfg.preset}-{key(cfg)[:8]}"


def default_run_dir(cfg: Config) -> Path:
    """Where ``train``, ``submit`` and ``report`` find the run when no --run is given."""
    return Path(cfg.paths.models) / run_name(cfg)


def nested(summary: dict[str, Any]) -> dict[str, Any]:
    """summary.json with its per-model facts under ``model`` (a run of an older labquake wrote them
    flat, as NAME_KEY: read the same way)."""
    if not isinstance(summary, dict) or "model" in summary:
        return summary
    out = dict(summary, model={})
    for name in summary.get("models", []):
        out["model"][name] = {f: out.pop(f"{name}_{f}") for f in FLAT_KEYS if f"{name}_{f}" in out}
    return out


class RunFolder:
    """One run folder (see the module docstring); ``path`` need not exist yet."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    config_path = property(lambda self: self.path / "config.json")
    summary_path = property(lambda self: self.path / "summary.json")
    oof_path = property(lambda self: self.path / "oof.parquet")
    test_path = property(lambda self: self.path / "test.parquet")

    def record_path(self, stage: str) -> Path:
        """The stage record: train.json, blend.json."""
        return self.path / f"{stage}.json"

    def model_dir(self, name: str) -> Path:
        return self.path / name

    def draw_dir(self, name: str, draw: int) -> Path:
        return self.path / name / f"draw{draw:02d}"

    def draw_finished(self, name: str, draw: int) -> bool:
        return (self.draw_dir(name, draw) / "folds.json").is_file()

    def runs_path(self, name: str) -> Path:
        return self.path / name / "runs.json"

    def history_path(self, name: str) -> Path:
        return self.path / name / "history.csv"

    # -----------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.summary_path.is_file()

    def require_finished(self, hint: str = TRAIN_HINT) -> None:
        """A one-line error unless training finished here (summary.json is written last)."""
        if not self.path.is_dir():
            raise LabquakeError(f"{self.path}: run folder not found; {hint}, or pass --run")
        if not self.finished:
            raise LabquakeError(f"{self.path}: no finished training run (no summary.json); {hint}")

    def config(self) -> dict[str, Any]:
        cfg = read_json(self.config_path)
        if not isinstance(cfg, dict):
            raise LabquakeError(f"{self.config_path}: not a run folder's config.json")
        return cfg

    def summary(self) -> dict[str, Any]:
        """summary.json, nested per model (older flat ones read the same way)."""
        summary = read_json(self.summary_path)
        if not isinstance(summary, dict):
            raise LabquakeError(f"{self.summary_path}: not a JSON object")
        return nested(summary)

    def claim(self, cfg: Config, features_key: str) -> None:
        """Write config.json, or check that the existing one is this configuration and these features."""
        identity = {"train_key": train_key(cfg), "features_key": features_key}
        if self.config_path.exists():
            old = self.config()
            for key, what in (("train_key", "configuration"), ("features_key", "features")):
                if old.get(key) != identity[key]:
                    raise LabquakeError(f"{self.path}: made with a different {what}; choose another --run folder or delete this one")
            return
        write_json(self.config_path, {**identity, "config": cfg.to_dict()})

    def check_trained_with(self, cfg: Config) -> None:
        """The run was trained with this configuration (what submit needs to blend it as trained)."""
        if self.config().get("train_key") != train_key(cfg):
            raise LabquakeError(
                f"{self.path}: trained with another configuration than this one (--preset/--config/--set must match `labquake train`)"
            )

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.summary_path, summary)

    def verify(self, parts: tuple[str, ...] = ("tables", "models")) -> list[str]:
        """Every artifact of a finished run checked against its checksum (fold models, result.npz,
        oof.parquet, test.parquet); a run of an older labquake, without checksums, by loading each
        (said once in the log). ``parts``: "tables" (what submit and report read), "models" (what
        predict reads). Returns the problems, one line each, with what to rerun."""
        summary = self.summary()
        problems = []
        tables = summary.get("checksums")
        for p in check_files(self.path, [self.oof_path.name, self.test_path.name], tables) if "tables" in parts else []:
            problems.append(f"{p}; rerun `labquake train` (finished draws are loaded, the tables written again)")
        old = tables is None and "tables" in parts
        for name in summary.get("models", []) if "models" in parts else []:
            runs = read_json(self.runs_path(name)) if self.runs_path(name).is_file() else {"runs": []}
            for r in runs.get("runs", []):
                draw = self.path / r["dir"]
                if not draw.is_dir():
                    problems.append(f"{draw}: missing; rerun `labquake train` (it trains that draw again)")
                    continue
                old = old or not (draw / CHECKSUMS).is_file()
                names = [*sorted(p.name for p in draw.iterdir() if p.name.startswith("fold") and p.suffix != ".json"), "result.npz"]
                found = check_files(draw, None if (draw / CHECKSUMS).is_file() else names)
                problems += [f"{p}; delete {draw} and rerun `labquake train` (it trains that draw again)" for p in found]
        if old:
            log.info(f"{self.path}: written before labquake recorded checksums: its files were checked by loading them")
        return problems

    def require_intact(self, parts: tuple[str, ...] = ("tables", "models")) -> None:
        """A one-line error naming the first damaged artifact of ``parts`` (``labquake verify`` lists them all)."""
        problems = self.verify(parts)
        if problems:
            more = f" ({len(problems) - 1} more: `labquake verify {self.path}`)" if len(problems) > 1 else ""
            raise LabquakeError(problems[0] + more)


def rejection_note(summary: dict[str, Any], name: str) -> str | None:
    """One line on how a model's rejected draws changed the blend (summary.json), or None."""
    facts = nested(summary).get("model", {}).get(name, {})
    drawn, accepted, runs = facts.get("draws"), facts.get("accepted"), facts.get("runs")
    kept = len(facts.get("seeds") or [])
    fallback = facts.get("fallback")
    others = "+".join(m for m in summary.get("models", []) if m != name) or "nothing"
    if fallback == "drop":
        return f"{name}: all {drawn} draws rejected ({name}/runs.json says why); {name}.on_reject=drop: the blend is {others}, the {name} column holds the best {kept} for inspection"
    if fallback == "best":
        return f"{name}: all {drawn} draws rejected ({name}/runs.json says why); {name}.on_reject=best: the blend uses the best {kept} anyway"
    if isinstance(accepted, int) and isinstance(runs, int) and accepted < runs:
        return f"{name}: only {accepted} of {runs} runs accepted after {drawn} draws; the blend uses those ({name}.max_redraws allows more draws)"
    return None


def rejection_notes(summary: dict[str, Any]) -> list[str]:
    return [n for n in (rejection_note(summary, m) for m in summary.get("models", [])) if n]
