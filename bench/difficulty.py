"""`make bench-difficulty`: how hard the synthetic data is to predict, against the real data's anchors.

For each preset and seed: `labquake synth`, `features` and `train` (the recipe: LightGBM and the
network on shuffled 3-fold CV), then, from the run folder and the true test answers:

- shuffled 3-fold OOF MAE over the median baseline on the same folds (real: about 0.64x);
- leave-cycles-out OOF MAE of the recipe's LightGBM (3 groups of whole cycles) over its baseline;
- test MAE over the train median's test MAE (real: about 0.8x);
- |Pearson r| of the peak count (NN_num_peaks_3_denoise) with time to failure (real: about 0.67),
  over all train segments and over those that hold no quake emission (demo's sparse time base puts
  one emission in every ~25 segments, against one in ~250 at real scale, and a handful of such
  outliers decides a Pearson r);
- the network's accepted draws and median best epoch, and the blend against each member.

Targets (issue 11): shuffled 0.55-0.75x, test 0.70-0.88x, |r| 0.55-0.75. Results go to
bench/out/difficulty/results.json, a table on stdout and difficulty.png. ``--presets``/``--seeds``
choose the cases; ``--reuse`` keeps data, features and runs already there for the same case.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import OUT, measure  # noqa: E402

from labquake.metric import mae  # noqa: E402

DIFF = OUT / "difficulty"
TARGETS = {"shuffled": (0.55, 0.75), "test": (0.70, 0.88), "r_peaks_clean": (0.55, 0.75)}
PEAKS = "NN_num_peaks_3_denoise"


def fold_median(y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """OOF predictions of the median of each training fold: the baseline on the same folds."""
    from labquake.trainset import fold_baseline

    return fold_baseline(y, folds, np.median)


def prepare(preset: str, seed: int, reuse: bool, flags: list[str], name: str) -> tuple[Path, Path, dict]:
    """Data, features and the recipe's run for one case; timings of each step."""
    lq = [sys.executable, "-m", "labquake"]
    raw, case = DIFF / f"raw_{preset}", DIFF / f"{preset}_s{seed}"
    marker = raw / "bench_case.json"
    steps: dict = {}
    same = marker.is_file() and json.loads(marker.read_text()) == {"preset": preset, "seed": seed}
    if not (reuse and same):
        shutil.rmtree(raw, ignore_errors=True)
        shutil.rmtree(case, ignore_errors=True)
        case.mkdir(parents=True)
        steps["synth"] = measure([*lq, "synth", "--out", str(raw), "--preset", preset, "--seed", str(seed)], case / "synth.log")
        marker.write_text(json.dumps({"preset": preset, "seed": seed}))
    case.mkdir(parents=True, exist_ok=True)
    feats, run = case / "features", case / name
    if not (reuse and (feats / "features.json").is_file() and same_features(feats, flags)):
        # the feature settings of the run (features.seq_window, ...) reach the features stage too
        # and blend.models, which says whether the sequences are computed
        stage = ("features.", "blend.models")
        feature_flags = [x for i, x in enumerate(flags) if x.startswith(stage) or (x == "--set" and flags[i + 1].startswith(stage))]
        args = ["features", "--data", str(raw), "--out", str(feats), "--interim", str(DIFF / f"interim_{preset}"), *feature_flags]
        steps["features"] = measure([*lq, *args], case / "features.log")
    if not (reuse and (run / "summary.json").is_file()):
        shutil.rmtree(run, ignore_errors=True)
        steps["train"] = measure([*lq, "train", "--features", str(feats), "--run", str(run), *flags], case / f"{name}.log")
    return raw, case, steps


def same_features(feats: Path, flags: list[str]) -> bool:
    """Whether the feature folder was made with the run's feature settings (else it is rebuilt)."""
    from labquake.config import load_config

    sets = [flags[i + 1] for i, x in enumerate(flags) if x == "--set"]
    from labquake.models.registry import reads_sequences

    record = json.loads((feats / "features.json").read_text())
    made, cfg = record.get("config", {}).get("features", {}), load_config("recipe", None, sets)
    ours = json.loads(json.dumps(cfg.features.table_settings()))
    return {k: made.get(k) for k in ours} == ours and (record.get("sequences", True) or not reads_sequences(cfg))


def grouped_lgbm(feats: Path, seeds: tuple[int, ...]) -> tuple[float, float, int]:
    """Leave-cycles-out OOF MAE of the recipe's LightGBM (3 groups of whole cycles) and its baseline."""
    import tempfile

    from labquake.config import load_config
    from labquake.models.cv import cross_validate
    from labquake.models.lgbm import Inputs
    from labquake.util import usable_cpus

    cfg = load_config("recipe")
    train = pd.read_parquet(feats / "train.parquet")
    y = train["target"].to_numpy()
    cycles = np.unique(train["cycle"])
    folds = np.searchsorted(cycles, train["cycle"].to_numpy()) % 3  # cycles dealt round-robin
    X = train[list(cfg.lgbm.features)]
    inputs = Inputs(X, y, X.iloc[:1], usable_cpus())
    with tempfile.TemporaryDirectory() as tmp:
        oof = np.mean([cross_validate("lgbm", cfg, inputs, folds, 1, seed, Path(tmp) / str(seed)).oof for seed in seeds], axis=0)
    return mae(oof, y), mae(fold_median(y, folds), y), len(cycles)


def emission_segments(preset: str, seed: int, starts: np.ndarray, rows: int = 150_000) -> np.ndarray:
    """Train segments that overlap a quake's large emission (from the generator's own record)."""
    from labquake import synth

    exp = synth._experiment(synth.SIZES[preset], seed)
    hit = np.zeros(len(starts), bool)
    for row, _ in exp.train.emissions:
        hit |= (starts < row + synth.MODEL.emission_rows) & (starts + rows > row)
    return hit


def network_stats(run: Path, name: str = "nn") -> dict:
    """Accepted draws, best epochs and batch sizes, from the run folder's NAME/runs.json."""
    record = json.loads((run / name / "runs.json").read_text())
    runs = record["runs"]
    best = [e for r in runs for e in r["best_epoch"]]
    ran = [e for r in runs for e in r["epochs"]]
    return {
        "drawn": len(runs),
        "accepted": sum(bool(r["accepted"]) for r in runs),
        "median_best_epoch": float(np.median(best)),
        "median_epochs_run": float(np.median(ran)),
        "batch_size": sorted({b for r in runs for b in r["batch_size"]}),
        "reject_bound": round(record["reject_bound"], 4),
        "fallback": record["fallback"],
        "rejected_because": [r["rejected_because"] for r in runs if r["rejected_because"]],
    }


def evaluate(preset: str, seed: int, raw: Path, case: Path, grouped_seeds: tuple[int, ...], name: str) -> dict:
    run, feats = case / name, case / "features"
    summary = json.loads((run / "summary.json").read_text())
    oof = pd.read_parquet(run / "oof.parquet")
    test = pd.read_parquet(run / "test.parquet").set_index("seg_id")
    truth = pd.read_csv(raw / "test_truth.csv").set_index("seg_id")["time_to_failure"].reindex(test.index)
    y, folds = oof["target"].to_numpy(), oof["fold"].to_numpy()
    clip = 0.1
    res: dict = {"preset": preset, "seed": seed, "train_segments": len(oof), "test_segments": len(test)}
    base_oof, base_test = mae(fold_median(y, folds), y), mae(np.full(len(truth), np.median(y)), truth)
    res["baseline_oof"], res["baseline_test"] = round(base_oof, 4), round(base_test, 4)
    from labquake.metric import weighted_geomean

    names = summary["models"]
    pred_oof = {m: np.maximum(oof[m], clip) for m in names}
    pred_test = {m: np.maximum(test[m], clip) for m in names}
    # the blend as submitted, and the recipe's pair and all three beside it (equal weights, same folds)
    blends = {"blend": summary["blend_weights"]}
    if {"lgbm", "nn"} <= set(names):
        blends["blend_lgbm+nn"] = {"lgbm": 0.5, "nn": 0.5}
    if len(names) > 2:
        blends["blend_" + "+".join(names)] = {m: 1 / len(names) for m in names}
    for b, w in blends.items():
        pred_oof[b] = weighted_geomean({m: oof[m] for m in w}, w, clip)
        pred_test[b] = weighted_geomean({m: test[m] for m in w}, w, clip)
    for m in pred_oof:
        res[f"oof_{m}"] = round(mae(pred_oof[m], y), 4)
        res[f"test_{m}"] = round(mae(pred_test[m], truth), 4)
    res["blend_weights"] = summary["blend_weights"]
    res["nn_fallback"] = summary.get("model", {}).get("nn", {}).get("fallback")
    timings = json.loads((run / "train.json").read_text())["timings_s"]
    res["train_seconds"] = {m: timings.get(m) for m in names}
    res["shuffled"] = round(res["oof_lgbm"] / base_oof, 3)
    res["test"] = round(res["test_lgbm"] / base_test, 3)
    g, gb, n_cycles = grouped_lgbm(feats, grouped_seeds)
    res["grouped"], res["grouped_cycles"] = round(g / gb, 3), n_cycles
    train = pd.read_parquet(feats / "train.parquet")
    peaks, target = train[PEAKS].to_numpy(), train["target"].to_numpy()
    clean = ~emission_segments(preset, seed, train["start"].to_numpy())
    res["r_peaks_all"] = round(abs(float(np.corrcoef(peaks, target)[0, 1])), 3)
    res["r_peaks_clean"] = round(abs(float(np.corrcoef(peaks[clean], target[clean])[0, 1])), 3)
    res["emission_segments"] = int((~clean).sum())
    if "nn" in names:
        res["network"] = network_stats(run)
    if "seq" in names:
        res["seq"] = network_stats(run, "seq")
        res["seq_seconds_per_fold"] = round(timings["seq"] / (res["seq"]["drawn"] * len(np.unique(folds))), 1)
    return res


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [
        ("shuffled", "shuffled 3-fold OOF / baseline"),
        ("grouped", "leave-cycles-out OOF / baseline"),
        ("test", "test / baseline"),
        ("r_peaks_clean", "|r| peak count"),
    ]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4))
    for ax, (k, title) in zip(axes, keys):
        labels = [f"{r['preset']} s{r['seed']}" for r in results]
        ax.bar(labels, [r[k] for r in results], color="#4477aa")
        if k in TARGETS:
            ax.axhspan(*TARGETS[k], color="#88cc88", alpha=0.35, label="target")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["demo", "full"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--grouped-seeds", type=int, default=3, help="LightGBM seeds for the leave-cycles-out OOF")
    parser.add_argument("--reuse", action="store_true", help="keep data, features and runs already there")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to labquake train")
    parser.add_argument("--name", default="run", help="the run folder's name in each case, and of the results file (for A/B runs)")
    args = parser.parse_args()
    flags = [x for s in args.set for x in ("--set", s)]
    DIFF.mkdir(parents=True, exist_ok=True)
    path = DIFF / ("results.json" if args.name == "run" else f"results_{args.name}.json")
    results: list[dict] = []
    for preset in args.presets:
        for seed in args.seeds:
            t0 = time.perf_counter()
            raw, case, steps = prepare(preset, seed, args.reuse, flags, args.name)
            res = evaluate(preset, seed, raw, case, tuple(range(args.grouped_seeds)), args.name)
            res["train_flags"] = args.set
            res["steps"], res["seconds"] = steps, round(time.perf_counter() - t0, 1)
            (case / f"difficulty_{args.name}.json").write_text(json.dumps(res, indent=2) + "\n")
            results.append(res)
            scores = "; ".join(f"{k[4:]} OOF {res[k]} test {res['test_' + k[4:]]}" for k in res if k.startswith("oof_"))
            nets = "".join(
                f"; {m} {res[key]['accepted']}/{res[key]['drawn']} accepted, median best epoch {res[key]['median_best_epoch']}"
                for m, key in (("nn", "network"), ("seq", "seq"))
                if key in res
            )
            print(
                f"{preset} seed {seed}: shuffled {res['shuffled']}x, leave-cycles-out {res['grouped']}x, test {res['test']}x, "
                f"|r| peaks {res['r_peaks_clean']} ({res['r_peaks_all']} with emissions); {scores} "
                f"(baselines {res['baseline_oof']} / {res['baseline_test']}){nets}"
                + (f"; seq {res['seq_seconds_per_fold']} s per fold" if "seq" in res else ""),
                flush=True,
            )
    path.write_text(json.dumps(results, indent=2) + "\n")
    png = path.with_suffix(".png")
    plot(results, png)
    print(f"written {path} and {png}")


if __name__ == "__main__":
    main()
