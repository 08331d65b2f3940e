"""report.md: the scores, every plot, each network's draws, timings and configuration of a run.

``run_report`` reads the run (``report.load``), draws the plots (``report.plots``) and writes
``RUN/report/report.md`` last, so an unreadable input fails the report before it writes anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labquake.config import Config, flatten
from labquake.metric import mae
from labquake.models.folder import rejection_notes
from labquake.models.registry import MODELS
from labquake.report import plots
from labquake.report.load import RunData, load_run
from labquake.util import log, write_text

_KEY_SETTINGS = (
    "preset",
    "data.train_cycles",
    "cv.scheme",
    "cv.n_splits",
    "cv.seed",
    "lgbm.objective",
    "lgbm.num_leaves",
    "lgbm.learning_rate",
    "lgbm.num_boost_round",
    "lgbm.early_stopping_rounds",
    "lgbm.seeds",
    "nn.learning_rate",
    "nn.batch_size",
    "nn.epochs",
    "nn.patience",
    "nn.loss_weights",
    "nn.runs",
    "nn.reject_ratio",
    "nn.on_reject",
    "nn.min_steps_per_epoch",
    "seq.arch",
    "seq.learning_rate",
    "seq.batch_size",
    "seq.epochs",
    "seq.runs",
    "seq.on_reject",
    "blend.models",
    "blend.weights",
    "blend.clip_min",
)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, bool) or v is None:
        return {True: "yes", False: "no", None: "—"}[v]
    return str(v).replace("|", "\\|")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return lines + [""]


def _scheme_words(scheme: str) -> str:
    if scheme == "cycles":
        return "of whole cycles (`cv.scheme=cycles`: out-of-fold scores are on cycles the models never saw)"
    return "of shuffled segments (`cv.scheme=kfold`, the recipe's: neighbours of a held-out segment were trained on, so out-of-fold scores are optimistic)"


def blend_line(d: RunData) -> str:
    """What the blend is: its models and weights, as submit blends them."""
    c, w = d.clip_min, d.weights
    names = list(w)
    left_out = [m for m in d.models if m not in w]
    why = f" ({', '.join(left_out)} left out: see the warning above)" if left_out else ""
    if len(names) == 1:
        return f"The blend is {plots.label(names[0])} alone, `clip({names[0]}, {c:g})`{why}."
    if len(names) == 2 and w[names[0]] == w[names[1]]:
        return f"The blend is `sqrt(clip({names[0]}, {c:g}) * clip({names[1]}, {c:g}))`{why}, computed here from oof.parquet."
    formula = " * ".join(f"clip({m}, {c:g})^{v:.3g}" for m, v in w.items())
    fitted = (d.config.get("blend") or {}).get("weights") == "fitted"
    kind = "weights fitted on the out-of-fold predictions (`blend.weights=fitted`)" if fitted else "equal weights"
    return f"The blend is the weighted geometric mean of {', '.join(names)}, `{formula}`, {kind}{why}, computed here from oof.parquet."


def _scores_section(d: RunData) -> list[str]:
    oof, summary = d.oof, d.summary
    reported = {**summary["oof_mae"], "blend": None}  # summary.json has no blend: submit scores it
    weight = {m: d.weights.get(m, "—") for m in d.models}  # "—": left out of the blend
    rows = [[plots.label(m), round(mae(oof["target"], oof[m]), 4), reported.get(m), weight.get(m, "")] for m in d.columns]
    baseline = mae(oof["target"], np.full(len(oof), float(np.median(oof["target"]))))
    rows.append(["constant: median of the target", round(baseline, 4), summary["baseline_median_mae"], ""])
    lines = ["## Scores", ""]
    lines += _md_table(["model", "OOF MAE (s), computed here", "in summary.json", "blend weight"], rows)
    lines += [
        blend_line(d) + " The constant baseline here is the median of all trained targets (summary.json's uses each fold's training median).",
        "",
        "<details><summary>summary.json</summary>",
        "",
        "```json",
        json.dumps(summary, indent=2, sort_keys=True),
        "```",
        "",
        "</details>",
        "",
    ]
    return lines


def _runs_section(name: str, runs: dict[str, Any]) -> list[str]:
    lines = [f"### {plots.label(name).capitalize()} runs ({name}/runs.json)", ""]
    extra = [f"{k} {_fmt(v)}" for k, v in runs.items() if k != "runs" and _cell_ok(v)]
    if extra:
        lines += ["; ".join(extra) + " (a run is rejected when its predictions are constant or its OOF MAE reaches the bound).", ""]
    keys: list[str] = []
    for it in runs["runs"]:
        keys += [k for k, v in it.items() if k not in keys and _cell_ok(v)]
    return lines + _md_table(keys, [[it.get(k) for k in keys] for it in runs["runs"]])


def _cell_ok(v: Any) -> bool:
    """Fit for a table cell: a scalar, or a short list of numbers."""
    if isinstance(v, list):
        return len(v) <= 12 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    return not isinstance(v, dict)


def _timings_section(d: RunData) -> list[str]:
    records = [("features", d.features_record)] if d.features_record is not None else []
    records += [(s, d.records[s]) for s in ("train", "blend") if s in d.records]
    rows = []
    for stage, rec in records:
        t = rec["timings_s"]
        total = t["total"]
        for step, s in t.items():
            if step != "total":
                rows.append([stage, step, f"{s:.2f}", f"{100 * s / total:.0f}%" if total > 0 else "—"])
        rows.append([stage, "**total**", f"**{total:.2f}**", f"finished {rec['finished']}"])
    lines = ["## Timings", ""] + _md_table(["stage", "step", "seconds", "share of stage / when"], rows)
    missing = [s for s in ("features", "train", "blend") if s not in dict(records)]
    if missing:
        lines += [f"_No record of: {', '.join(missing)}._", ""]
    return lines


def _config_section(d: RunData) -> list[str]:
    flat = flatten(d.config)
    default = flatten(Config().to_dict())

    def used(key: str) -> bool:  # no settings of a model the run did not train
        return key.split(".")[0] not in MODELS or key.split(".")[0] in d.models

    rows = [[k, flat[k], "" if _same(flat[k], default.get(k)) else _fmt(default.get(k))] for k in _KEY_SETTINGS if k in flat and used(k)]
    changed = [k for k in flat if k not in _KEY_SETTINGS and k != "preset" and k in default and not _same(flat[k], default[k]) and used(k)]
    rows += [[k, flat[k], _fmt(default[k])] for k in changed]
    lines = ["## Configuration", ""]
    lines += _md_table(["setting", "value", "recipe default (where different)"], rows)
    lines += [
        "<details><summary>Full configuration (config.json)</summary>",
        "",
        "```json",
        json.dumps(d.config, indent=2, sort_keys=True),
        "```",
        "",
        "</details>",
        "",
    ]
    return lines


def _same(a: Any, b: Any) -> bool:
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    return norm(a) == norm(b)


def _regime_section(d: RunData) -> list[str]:
    """What the run did for the test's regime (shift.py: summary.json's ``regime``), and the test's
    mean time to failure as estimated without test labels, beside the truth when there is one."""
    r = d.summary.get("regime")
    if not r:
        return []  # a run of an older labquake
    lines = ["## Training for the test's regime", ""]
    if r.get("targets") == "fraction":
        lines.append(
            f"Targets: fractions of the cycle; test predictions x {r['test_scale']:.3f} s (targets.scale={r['scale']}), "
            f"out-of-fold x {r['oof_scale']:.3f} s (the trained segments' mean cycle length)."
        )
    else:
        lines.append("Targets: the time to failure in seconds (the recipe).")
    w = r.get("weight_record")
    if w:
        use = "the models fit with them" if r.get("weights") == "adversarial" else "for the scale only"
        lines.append(
            f"Covariate-shift weights ({use}): train-vs-test AUC {w['auc']:.3f}, effective sample size {w['effective_size']:.0f} of "
            f"{w['n_train']}, {100 * w['clipped_share']:.1f}% clipped to {w['bounds']} x the mean."
        )
        wm = r.get("weighted_oof_mae", {})
        lines.append("Weighted OOF MAE, an estimate of the test MAE: " + ", ".join(f"{plots.label(m)} {v:.4f}" for m, v in wm.items()) + ".")
    est = r.get("test_mean_ttf", {})
    rows = [[k.replace("_", " "), round(v, 3)] for k, v in est.items() if k != "predictions"]
    rows += [[f"{plots.label(m)}: mean test prediction", round(float(d.test[m].mean()), 3)] for m in d.columns]
    if d.truth is not None:
        rows.append(["true (test_truth.csv)", round(float(d.truth["target"].mean()), 3)])
    lines += ["", "The test's mean time to failure (s):", ""] + _md_table(["estimate", "seconds"], rows) + [""]
    return lines


# Long by design: the report's sections in the order they appear in report.md.
def run_report(run_dir: Path, features_dir: Path | None = None, truth: Path | None = None) -> Path:
    """Write RUN/report/*.png and RUN/report/report.md (last); return the path of report.md.

    ``features_dir``: the feature folder (for the feature plots); default: the one train.json
    records. ``truth``: a ``seg_id,time_to_failure`` CSV of the test answers; default: the one
    blend.json names, if any. Every input is read before anything is drawn, so an unreadable file
    fails the report before it writes anything.
    """
    d = load_run(Path(run_dir), features_dir, truth)
    out = d.run / "report"
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    def plot(name: str, func: Callable[..., None], *args: Any) -> str:
        func(*args, out / name)
        written.append(name)
        return f"![{name}]({name})"

    def skipped(why: str) -> str:
        log.info("report: skipped a plot: %s", why)
        return f"_Plot skipped: {why}._"

    md: list[str] = [f"# Report of run `{d.run.resolve().name}`", ""]
    md += [
        f"Run folder: `{d.run}`; preset `{d.config['preset']}`; "
        f"{len(d.oof)} trained segments in {d.oof['cycle'].nunique()} cycles, {d.oof['fold'].nunique()} folds "
        + _scheme_words(d.summary["cv_scheme"])
        + ".",
        "",
    ]
    for note in rejection_notes(d.summary):  # the blend is not the one configured: say so before any number
        md += [f"> **Warning:** {note}.", ""]
    md += _scores_section(d) + _regime_section(d)

    md += ["## Out-of-fold predictions along the train timeline", ""]
    md += [plot("oof_timeline.png", plots.plot_oof_timeline, d), ""]
    md += ["## Errors per cycle and per time to failure", ""]
    md += [plot("mae_by_cycle.png", plots.plot_mae_by_cycle, d), ""]
    md += [plot("mae_by_ttf.png", plots.plot_mae_by_ttf, d), ""]

    if d.importance is not None and d.curves is not None:
        md += ["## LightGBM", ""]
        md += [plot("lgbm_importance.png", plots.plot_lgbm_importance, d.importance), ""]
        if d.feature_table is not None:
            md += [plot("lgbm_features.png", plots.plot_lgbm_features, d.feature_table, d.lgbm_features), ""]
        else:
            md += [skipped(d.features_note), ""]
        md += [plot("lgbm_curves.png", plots.plot_lgbm_curves, d.curves), ""]

    if d.drift is not None:
        low = d.drift[d.drift["p_value"] < 0.05]
        md += ["## Train against test", ""]
        md += [
            f"Two-sample KS test of each feature, trained segments against test: {len(low)} of {len(d.drift)} features "
            "differ at p < 0.05 (`--set features.ks_min_p=0.05` would drop them; `labquake drift` adds an "
            "adversarial-validation AUC and every feature's distributions).",
            "",
        ]
        md += _md_table(
            ["feature", "KS statistic", "p-value"], [[r.feature, round(r.ks_stat, 4), f"{r.p_value:.2g}"] for r in d.drift.head(8).itertuples()]
        )
        md += ["", plot("drift_ks.png", plots.plot_drift, d.drift), ""]

    for name, runs in d.runs.items():
        md += [f"## {plots.label(name).capitalize()} (`{name}`)", ""]
        md += [plot(plots.history_plot(name), plots.plot_network_history, d.history[name], runs, name), ""]
        md += _runs_section(name, runs)

    md += ["## Test predictions", ""]
    md += [plot("test_distribution.png", plots.plot_test_distribution, d), ""]
    ks, p = plots.oof_test_ks(d)
    md += [
        f"Out-of-fold against test predictions of the blend: KS {ks:.3f} (p {p:.2g}); "
        "validation scored predictions distributed like these only if the KS is small.",
        "",
        plot("oof_vs_test.png", plots.plot_oof_vs_test, d),
        "",
    ]
    if d.truth is not None:
        md += [f"Truth: {d.truth_note}.", "", plot("test_vs_truth.png", plots.plot_test_vs_truth, d.truth, d.columns), ""]
    else:
        md += [skipped(d.truth_note), ""]

    md += _timings_section(d)
    md += _config_section(d)

    for stale in sorted(set(plots.PLOTS) - set(written)):  # plots of an earlier report that this one skips
        (out / stale).unlink(missing_ok=True)
    report = out / "report.md"
    write_text(report, "\n".join(md).rstrip() + "\n")
    log.info("report: %d plots and %s", len(written), report)
    return report
