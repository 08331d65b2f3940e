"""`make bench-cluster`: `labquake features` on a Dask cluster against the local run (about 8 minutes on 2 cores at full size).

1. The synthetic data (`--preset full`: Kaggle's size, 629,145,480 train rows and 2,624 test segments;
   `demo` for a quick look), written once into BENCH_RAW (default /tmp/full or /tmp/demo) and
   reused; its binary cache built once.
2. The features stage from the cache, three times into fresh folders: locally (`--jobs 2`), then with
   `--scheduler` on a `distributed.LocalCluster` on the loopback of 1 worker process and of 2 (one
   thread each). Wall time of the command (the cluster is started before, as a standing cluster
   would be; its start-up is reported apart), the stage's compute time from features.json, the
   speed-up of 2 workers over 1 and the overhead of the cluster against the local run. The three
   output folders must be byte-identical (tables and sequences), else exit status 1.
3. What the sequences cost inside the stage: the stage's own chunk task on the same 64 segments with
   features and sequences, and with sequences only (best of 3 each); the added share is
   sequences / (both - sequences).

Results go to bench/out/cluster/results.json and a table on stdout. Run it alone (`flock
/tmp/labquake-bench.lock make bench-cluster` where several people share the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "cluster"
OUTPUTS = ("train.parquet", "test.parquet", "train_seq.npy", "test_seq.npy")
LQ = [sys.executable, "-m", "labquake"]


def run(cmd: list[str], log: Path, env: dict | None = None) -> float:
    """Run a command (its output to ``log``); wall seconds. A failure stops the bench."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env).returncode
    if rc:
        sys.exit(f"bench: {' '.join(cmd)} failed (exit {rc}); see {log}")
    return time.perf_counter() - t0


def features_run(raw: Path, interim: Path, out: Path, log: Path, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.parent / f".{out.name}.parts", ignore_errors=True)
    cmd = [*LQ, "features", "--data", str(raw), "--out", str(out), "--interim", str(interim), *extra]
    load = os.getloadavg()[0]
    wall = run(cmd, log, env={**os.environ, "OMP_NUM_THREADS": "1"})
    record = json.loads((out / "features.json").read_text())
    return {
        "wall_s": round(wall, 1),
        "compute_s": round(record["timings_s"]["compute"], 1),
        "segments": record["n_train"] + record["n_test"],
        "load_before_after": [round(load, 2), round(os.getloadavg()[0], 2)],  # the machine's 1-minute load average: others' work skews the times
    }


def on_cluster(n_workers: int, raw: Path, interim: Path, out: Path) -> dict:
    from distributed import LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=n_workers, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as lc:
        start = time.perf_counter() - t0
        res = features_run(raw, interim, out, OUT / f"features_dask{n_workers}.log", ["--scheduler", lc.scheduler_address])
    res["cluster_start_s"] = round(start, 1)
    return res


def sequence_cost(interim_raw: Path, interim: Path, n: int = 64) -> dict:
    """The chunk task on n train segments: features and sequences, and sequences only (best of 3)."""
    import tempfile

    from labquake import data
    from labquake.config import SEGMENT_ROWS, FeatureConfig
    from labquake.features import stage

    source = stage._cache_file(data.load_train(interim_raw, interim).signal)
    starts = np.arange(n, dtype=np.int64) * SEGMENT_ROWS
    fc = FeatureConfig()
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stage._chunk_features(fc, source, starts[:2], SEGMENT_ROWS, f"{tmp}/warm.npz")  # compile and warm up
        for _ in range(3):
            for label, with_features in (("both", True), ("sequences", False)):
                t0 = time.perf_counter()
                stage._chunk_features(fc, source, starts, SEGMENT_ROWS, f"{tmp}/{label}.npz", with_features)
                times[label] = min(times.get(label, float("inf")), time.perf_counter() - t0)
    seq, both = times["sequences"], times["both"]
    return {
        "segments": n,
        "both_ms_per_segment": round(1000 * both / n, 2),
        "sequences_ms_per_segment": round(1000 * seq / n, 2),
        "added_share": round(seq / (both - seq), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="full", choices=["demo", "full"], help="synthetic data size (default full: Kaggle's)")
    args = parser.parse_args()
    raw = Path(os.environ.get("BENCH_RAW", f"/tmp/{args.preset}"))
    work = Path(os.environ.get("BENCH_WORK", f"/tmp/labquake-bench-cluster-{args.preset}"))
    OUT.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    interim = work / "interim"
    results: dict = {"preset": args.preset, "cpus": len(os.sched_getaffinity(0))}
    if not ((raw / "train.csv").is_file() and (raw / "sample_submission.csv").is_file()):
        results["synth_s"] = round(run([*LQ, "synth", "--out", str(raw), "--preset", args.preset, "--seed", "0"], OUT / "synth.log"), 1)
    results["cache_s"] = round(run([*LQ, "cache", "--data", str(raw), "--interim", str(interim)], OUT / "cache.log"), 1)

    runs = {"local": features_run(raw, interim, work / "local", OUT / "features_local.log", ["--jobs", "2"])}
    runs["dask1"] = on_cluster(1, raw, interim, work / "dask1")
    runs["dask2"] = on_cluster(2, raw, interim, work / "dask2")
    results["runs"] = runs
    for name in ("dask1", "dask2"):
        for f in OUTPUTS:
            if (work / name / f).read_bytes() != (work / "local" / f).read_bytes():
                sys.exit(f"bench: {work / name / f} differs from the local run's")
    results["byte_identical"] = True
    results["speedup_2_over_1"] = round(runs["dask1"]["wall_s"] / runs["dask2"]["wall_s"], 2)
    results["overhead_dask2_vs_local"] = round(runs["dask2"]["wall_s"] / runs["local"]["wall_s"] - 1, 3)
    results["sequences"] = sequence_cost(raw, interim)
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    print(f"features stage, preset {args.preset}, {runs['local']['segments']} segments, {results['cpus']} cpus")
    print(f"{'run':24} {'wall s':>8} {'compute s':>10} {'cluster start s':>16} {'load before/after':>18}")
    for name, label in (("local", "local, --jobs 2"), ("dask1", "LocalCluster, 1 worker"), ("dask2", "LocalCluster, 2 workers")):
        r = runs[name]
        load = "/".join(map(str, r["load_before_after"]))
        print(f"{label:24} {r['wall_s']:8.1f} {r['compute_s']:10.1f} {r.get('cluster_start_s', ''):>16} {load:>18}")
    s = results["sequences"]
    print(
        f"speed-up 2 workers / 1: {results['speedup_2_over_1']}x; overhead of 2 workers against the local run: "
        f"{100 * results['overhead_dask2_vs_local']:+.1f}%; outputs byte-identical"
    )
    print(
        f"sequences in the chunk task: {s['sequences_ms_per_segment']} ms of {s['both_ms_per_segment']} ms a segment, "
        f"+{100 * s['added_share']:.1f}% over the features alone"
    )


if __name__ == "__main__":
    main()
