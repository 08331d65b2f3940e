"""`make bench`: the numbers the issues ask for, measured at full scale (about 12 minutes on 2 cores, 17 GB of disk).

1. Feature speed per core: segments per second of the obvious implementation
   (labquake.features.reference) and of the fast one (labquake.features.segment), one process, the
   same segments, the same outputs (checked: if any feature differs by more than 1e-6 relative, the
   bench stops there with exit status 1 and writes no results), and the ratio of the best of 5
   timings of each (taken in alternating rounds), with the range of the per-round ratios. Then the
   per-window sequences (labquake.features.sequences) of the same segments: ms per segment and their
   share of the fast features' time (issue 15 caps the added features-stage cost at 50%).
2. The `full` synthetic preset (629,145,480 train rows, 2,624 test segments), written once into
   bench/out/raw_full (or BENCH_RAW): time and size of `labquake synth --preset full`.
3. `labquake features` on it from the CSV files (binary cache included; the features' workers run
   beside the cache build, features.prefetch), then again from the cache: wall time and peak
   resident memory of the whole process tree (workers included).
4. The rest of `make run` on those features: `train` (the recipe: LightGBM and the network),
   `submit` and `report`, each timed with its peak memory, and the whole run split by stage (cache
   build, features, LightGBM, network, submit plus report) as issue 24's table.

Results go to bench/out/results.json and a table on stdout. `--skip-full` runs step 1 only and keeps
the last full-scale figures in results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
REPEATS = 5  # rounds of the speed comparison
PARITY_RTOL = 1e-6  # the fast features must equal the reference's within this (tests/test_features.py's bound)
REAL_SEGMENT = ROOT / "tests" / "data" / "seg_00030f.csv"


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
        rss[int(entry.name)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def rss(pid: int) -> int:
    """Resident bytes of one process (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def measure(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> dict:
    """Run a command; wall time and peak resident memory of its process tree and of the process
    itself (sampled every 0.2 s). ``env``: variables added to this process's environment."""
    peak = peak_main = 0
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})})
        done = threading.Event()

        def sample() -> None:
            nonlocal peak, peak_main
            while not done.is_set():
                peak, peak_main = max(peak, tree_rss(proc.pid)), max(peak_main, rss(proc.pid))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = proc.wait()
        done.set()
        sampler.join()
    seconds = time.perf_counter() - t0
    if rc:
        sys.exit(f"bench: {' '.join(map(str, cmd))} failed (exit {rc}); see {log_path}")
    return {
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(peak / 1e9, 2),
        "peak_rss_main_gb": round(peak_main / 1e9, 2),
        "log": str(log_path.relative_to(ROOT)),
    }


def segments(n: int) -> list[np.ndarray]:
    """n test-like segments: the real test segment and windows of the tiny synthetic recording."""
    import pandas as pd

    from labquake import synth

    raw = OUT / "raw_tiny"
    if not (raw / "train.csv").is_file():
        synth.run_synth(raw, "tiny", 0)
    x = pd.read_csv(raw / "train.csv", usecols=["acoustic_data"])["acoustic_data"].to_numpy(np.int16)
    segs = [x[i * 150_000 : (i + 1) * 150_000] for i in range(0, len(x) // 150_000, max(1, len(x) // 150_000 // n))]
    segs[0] = pd.read_csv(REAL_SEGMENT)["acoustic_data"].to_numpy(np.int16)
    return segs[:n]


def feature_speed(n: int) -> dict:
    from labquake import features
    from labquake.config import FeatureConfig
    from labquake.features import reference
    from labquake.util import tune_malloc

    segs = segments(n)
    fc = FeatureConfig()
    tune_malloc()  # as the features stage does in every process that computes features
    reference.segment_features(segs[0], fc)  # warm-up: librosa's numba caches, imports
    fast = features.featurizer(fc)
    fast(segs[0])
    implementations = {"reference": lambda s: reference.segment_features(s, fc), "fast": fast}
    times: dict[str, list[float]] = {k: [] for k in implementations}
    results: dict[str, list] = {}
    # Rounds alternate the two, so that a slow spell of a shared machine hits both alike.
    for _ in range(REPEATS):
        for name, fn in implementations.items():
            t0 = time.perf_counter()
            results[name] = [fn(s) for s in segs]
            times[name].append(time.perf_counter() - t0)
    worst = 0.0
    for r, f in zip(results["reference"], results["fast"]):
        assert list(f) == list(r), "the two implementations name different features"
        r, f = np.array(list(r.values()), dtype=np.float64), np.array(list(f.values()))
        worst = max(worst, float(np.max(np.abs(f - r) / np.maximum(np.abs(r), 1e-300))))
    t_ref, t_fast = min(times["reference"]), min(times["fast"])
    round_ratios = sorted(r / f for r, f in zip(times["reference"], times["fast"]))
    return {
        "segments": len(segs),
        "rounds": REPEATS,
        "reference_seg_per_s": round(len(segs) / t_ref, 2),
        "fast_seg_per_s": round(len(segs) / t_fast, 2),
        "reference_ms_per_segment": round(1000 * t_ref / len(segs), 1),
        "fast_ms_per_segment": round(1000 * t_fast / len(segs), 1),
        "ratio": round(t_ref / t_fast, 2),
        "round_ratios_min_max": [round(round_ratios[0], 2), round(round_ratios[-1], 2)],
        "worst_relative_difference": worst,
    }


def sequence_speed(n: int, features_ms: float) -> dict:
    """Best of REPEATS timings of the per-window sequences on the same segments, against the 24 features' time."""
    from labquake.config import FeatureConfig
    from labquake.features.sequences import segment_sequence

    segs, fc = segments(n), FeatureConfig()
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for s in segs:
            segment_sequence(s, fc)
        times.append(time.perf_counter() - t0)
    ms = 1000 * min(times) / len(segs)
    return {"window": fc.seq_window, "ms_per_segment": round(ms, 2), "share_of_features": round(ms / features_ms, 3)}


def full_scale(raw: Path) -> dict:
    lq = [sys.executable, "-m", "labquake"]
    res: dict = {}
    if not (raw / "train.csv").is_file() or not (raw / "sample_submission.csv").is_file():
        res["synth"] = measure([*lq, "synth", "--out", str(raw), "--preset", "full", "--seed", "0"], OUT / "synth_full.log")
    size = sum(p.stat().st_size for p in raw.rglob("*") if p.is_file())
    res["raw_gb"] = round(size / 1e9, 2)
    interim, feats = OUT / "interim_full", OUT / "features_full"
    for p in (interim, feats):
        shutil.rmtree(p, ignore_errors=True)
    args = ["features", "--data", str(raw), "--out", str(feats), "--interim", str(interim), "--jobs", "0"]
    res["features_from_csv"] = measure([*lq, *args], OUT / "features_from_csv.log")
    record = json.loads((feats / "features.json").read_text())
    res["cache_build_seconds"] = record["timings_s"].get("cache")
    res["prefetched"] = record.get("prefetched", 0)  # segments computed beside the cache build
    shutil.rmtree(feats)
    res["features_from_cache"] = measure([*lq, *args], OUT / "features_from_cache.log")
    record = json.loads((feats / "features.json").read_text())
    res["segments"] = record["n_train"] + record["n_test"]
    res["features_seg_per_s"] = record["segments_per_s"]
    res["cpus"] = len(os.sched_getaffinity(0))
    run = OUT / "run_full"
    shutil.rmtree(run, ignore_errors=True)
    res["train"] = measure([*lq, "train", "--features", str(feats), "--run", str(run)], OUT / "train_full.log")
    subs = OUT / "submissions_full"
    res["submit"] = measure([*lq, "submit", "--run", str(run), "--data", str(raw), "--out", str(subs)], OUT / "submit_full.log")
    res["report"] = measure([*lq, "report", "--run", str(run)], OUT / "report_full.log")
    res["verify"] = verify_costs(interim, res["features_from_cache"]["seconds"], run)
    res["stages"] = stage_table(res, record, json.loads((run / "train.json").read_text()))
    return res


def stage_table(res: dict, features: dict, train: dict) -> dict:
    """`make run` at Kaggle size by stage (seconds): the cache build and the features of the run from
    the CSV files, the models' shares of `train`, then submit plus report; peak RSS over the commands."""
    t = train["timings_s"]
    cache = res["cache_build_seconds"] or 0.0
    stages = {
        "cache build": cache,
        "features": round(res["features_from_csv"]["seconds"] - cache, 1),
        **{name: t[name] for name in ("lgbm", "nn", "seq", "svr") if name in t},
        "train, other": round(res["train"]["seconds"] - sum(t.get(n, 0.0) for n in ("lgbm", "nn", "seq", "svr")), 1),
        "submit + report": round(res["submit"]["seconds"] + res["report"]["seconds"], 1),
    }
    stages["total"] = round(sum(stages.values()), 1)
    peak = max(res[k]["peak_rss_gb"] for k in ("features_from_csv", "train", "submit", "report"))
    # the features run alongside the cache build (features.prefetch): issue 24's target is on the two together
    both = round(stages["cache build"] + stages["features"], 1)
    return {"seconds": stages, "cache_and_features_s": both, "prefetched": res["prefetched"], "peak_rss_gb": peak}


def verify_costs(interim: Path, features_seconds: float, run: Path | None = None) -> dict:
    """What checking checksums costs: the cache as `features` checks it (every file, in parallel
    threads), against the features stage from the cache; and a run folder as `predict` checks it."""
    from labquake.data.cache import TEST_RECORD, TRAIN_RECORD
    from labquake.integrity import damaged_blocks
    from labquake.models.folder import RunFolder

    out: dict = {}
    t0 = time.perf_counter()
    for name in (TRAIN_RECORD, TEST_RECORD):
        record = json.loads((interim / name).read_text())
        assert damaged_blocks(interim, record["checksums"]) is None
    out["cache_seconds"] = round(time.perf_counter() - t0, 2)
    out["cache_gb"] = round(sum(p.stat().st_size for p in interim.glob("*.*") if p.suffix in (".i16", ".f64")) / 1e9, 2)
    out["cache_share_of_features"] = round(out["cache_seconds"] / features_seconds, 4)
    run = run or Path(os.environ.get("BENCH_RUN", "models/recipe"))
    if (run / "summary.json").is_file():
        t0 = time.perf_counter()
        problems = RunFolder(run).verify()
        out["run_seconds"], out["run"], out["run_problems"] = round(time.perf_counter() - t0, 3), str(run), len(problems)
        out["run_files"] = sum(1 for p in run.rglob("*") if p.is_file())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-full", action="store_true", help="feature speed only (minutes, not tens of minutes)")
    parser.add_argument("--segments", type=int, default=36, help="segments for the speed comparison (default 36)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "results.json"
    results: dict = json.loads(path.read_text()) if path.is_file() else {}  # --skip-full keeps the last full-scale figures
    results["feature_speed"] = feature_speed(args.segments)
    s = results["feature_speed"]
    print(
        f"features, one core: reference {s['reference_seg_per_s']} seg/s, fast {s['fast_seg_per_s']} seg/s "
        f"({s['fast_ms_per_segment']} ms/segment), ratio {s['ratio']}x (rounds {s['round_ratios_min_max'][0]}-{s['round_ratios_min_max'][1]}x), "
        f"worst relative difference {s['worst_relative_difference']:.1e}"
    )
    if s["worst_relative_difference"] > PARITY_RTOL:
        sys.exit(
            f"bench: parity broken: the fast features differ from the reference by up to {s['worst_relative_difference']:.1e} (> {PARITY_RTOL:g})"
        )
    results["sequence_speed"] = q = sequence_speed(args.segments, s["fast_ms_per_segment"])
    print(f"sequences, one core: {q['ms_per_segment']} ms/segment, {100 * q['share_of_features']:.0f}% of the features' time")
    if not args.skip_full:
        raw = Path(os.environ.get("BENCH_RAW", OUT / "raw_full"))
        results["full"] = f = full_scale(raw)
        if "synth" in f:
            print(f"synth --preset full: {f['synth']['seconds']} s, {f['raw_gb']} GB, peak RSS {f['synth']['peak_rss_gb']} GB")
        print(
            f"features from CSV (cache included): {f['features_from_csv']['seconds']} s "
            f"(cache build {f['cache_build_seconds']} s), peak RSS {f['features_from_csv']['peak_rss_gb']} GB"
        )
        print(
            f"features from cache: {f['features_from_cache']['seconds']} s, peak RSS {f['features_from_cache']['peak_rss_gb']} GB, "
            f"{f['segments']} segments at {f['features_seg_per_s']} seg/s on {f['cpus']} cores"
        )
        v = f["verify"]
        print(
            f"checksums: the cache ({v['cache_gb']} GB) in {v['cache_seconds']} s, {100 * v['cache_share_of_features']:.1f}% of features from the cache",
            end="",
        )
        print(
            f"; a run folder ({v['run']}, {v['run_files']} files) in {v['run_seconds']} s"
            if "run_seconds" in v
            else " (no run folder: BENCH_RUN=DIR)"
        )
        t = f["stages"]
        print(
            "make run at Kaggle size, by stage (s): " + ", ".join(f"{k} {v}" for k, v in t["seconds"].items()) + f"; peak RSS {t['peak_rss_gb']} GB"
        )
        print(
            f"the cache build and the features together: {t['cache_and_features_s']} s ({t['prefetched']} segments by the workers that run beside the build)"
        )
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {path}")


if __name__ == "__main__":
    main()
