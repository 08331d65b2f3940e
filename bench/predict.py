"""`labquake predict` over the `full` synthetic train recording (629,145,480 rows, 10.5 GB of CSV):
wall time and peak resident memory of the whole process tree (workers included) and of the main
process, sampled every 0.2 s.

    python bench/predict.py [--raw DIR] [--run RUN] [--step ROWS] [--jobs N]

- ``--raw``: a folder with the full preset's train.csv (default $BENCH_RAW, else /tmp/full); written
  by ``labquake synth --preset full --seed 0`` when absent.
- ``--run``: a finished run with the default feature settings (any: predict's cost hardly depends on
  the models). Default: a ``fast`` run trained on the tiny synthetic data in bench/out/predict/.

Three measurements: the first run (the CSV converted to the binary cache, then every window's
features and the predictions), a rerun from the cache and finished parts (only the predictions),
and a run with the parts removed (the features again, from the cache). Results go to
bench/out/predict/results.json and a table on stdout. Wrap it in ``flock /tmp/labquake-bench.lock``
so that benches never overlap.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, measure  # noqa: E402  (bench/run.py: the same measure as `make bench`)

OUT = ROOT / "bench" / "out" / "predict"
LQ = [sys.executable, "-m", "labquake"]


def ensure_raw(raw: Path) -> None:
    if not (raw / "train.csv").is_file():
        print(f"writing the full preset into {raw} (about 90 s)", flush=True)
        subprocess.run([*LQ, "synth", "--out", str(raw), "--preset", "full", "--seed", "0"], check=True, cwd=ROOT)


def ensure_run(run: Path | None) -> Path:
    if run is not None:
        return run
    run = OUT / "run"
    if (run / "summary.json").is_file():
        return run
    print(f"training a fast run on the tiny data into {run}", flush=True)
    raw, features = OUT / "raw_tiny", OUT / "features"
    if not (raw / "train.csv").is_file():
        subprocess.run([*LQ, "synth", "--out", str(raw), "--preset", "tiny", "--seed", "0"], check=True, cwd=ROOT)
    subprocess.run([*LQ, "features", "--data", str(raw), "--out", str(features), "--interim", str(OUT / "interim"), "--fast"], check=True, cwd=ROOT)
    subprocess.run([*LQ, "train", "--features", str(features), "--run", str(run), "--fast", "--device", "cpu"], check=True, cwd=ROOT)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=Path(os.environ.get("BENCH_RAW", "/tmp/full")))
    parser.add_argument("--run", type=Path)
    parser.add_argument("--step", type=int, default=150_000)
    parser.add_argument("--jobs", type=int, default=0)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    ensure_raw(args.raw)
    run = ensure_run(args.run)
    recording = args.raw / "train.csv"
    out = OUT / "out"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        *LQ,
        "predict",
        "--run",
        str(run),
        "--recording",
        str(recording),
        "--out",
        str(out),
        "--step",
        str(args.step),
        "--jobs",
        str(args.jobs),
        "--fast",
    ]
    results: dict = {
        "recording": str(recording),
        "csv_gb": round(recording.stat().st_size / 1e9, 2),
        "run": str(run),
        "step": args.step,
        "jobs": args.jobs,
    }
    for name, log_name in (("first", "first.log"), ("rerun", "rerun.log"), ("features_from_cache", "features.log")):
        if name == "features_from_cache":
            shutil.rmtree(out / ".parts")
        results[name] = measure(cmd, OUT / log_name, env={"OMP_NUM_THREADS": "1"})
        record = json.loads((out / "predict.json").read_text())
        results[name]["timings_s"] = record["timings_s"]
    results.update(n_windows=record["n_windows"], n_rows=record["n_rows"], mae=record["mae"])
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"predict over {recording} ({results['csv_gb']} GB, {results['n_rows']:,} rows, {results['n_windows']:,} windows, step {args.step:,})")
    for name in ("first", "rerun", "features_from_cache"):
        r = results[name]
        print(f"  {name:<20} {r['seconds']:>8.1f} s   peak RSS tree {r['peak_rss_gb']:.2f} GB, main process {r['peak_rss_main_gb']:.2f} GB")
    print(f"  MAE {results['mae']}")


if __name__ == "__main__":
    main()
