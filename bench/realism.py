"""`make bench-realism`: does the synthetic data look like the real recording?

For each preset and seed: `labquake synth` and `labquake features`, then `labquake compare` of the
synthetic test segments against the real test's 24 features (REAL_DIR/test_features.parquet, all
2,624 real test segments), and from the synthetic files themselves:

- the out-of-fold adversarial AUC (target at most 0.65) and the median and largest KS statistic
  over the 24 features (targets at most 0.10 and 0.25); two halves of the real test give 0.50 and
  about 0.065;
- the test-to-train ratio of the mean time to failure (real: 6.32 / 5.68 = 1.11);
- what ``data.train_cycles=auto`` recovers: the mean time to failure of the train cycles it chooses
  by their features' likeness to the test's (real: the winners' chosen cycles had 6.26 s against the
  test's 6.32 s, within 1%), against all complete cycles' and the test's true mean;
- plain statistics of the signal beyond the 24 features (``stats.signal_stats``: the mean, tails,
  zero crossings, autocorrelation, band powers, burstiness) of 300 synthetic test segments against
  the 100 real test segments (REAL_DIR/test_sample.npz): adversarial AUC and median KS;
- the emission's position: in each complete train cycle, the time to failure at the end of the
  segment with the largest |x| (real: 0.28-0.32 s in all 15 cycles), and the largest |x| in the
  segments that hold the labelled failure (real: 50-210). Only at `full`: `demo` records 10x more
  sparsely, so one of its segments spans 0.39 s and often holds both the emission and the failure.

    python bench/realism.py --real REAL_DIR [--presets demo full] [--seeds 0 1] [--reuse]
    python bench/realism.py --real REAL_DIR --quick [N] [--bursts envelopes]
    python bench/realism.py --real REAL_DIR --floor-fill [N]
    python bench/realism.py --real REAL_DIR --rerender K

``--rerender K`` renders each of the 100 real test segments from its own frame-by-frame weights (a
K-part factorisation) and sets the rendering against the real segments: how far frame powers go.

``--floor-fill N`` is one step of the fill of the measured floor (``synth.measured.FLOOR_FILL``).

``--quick N`` is the loop the generator's constants were tuned with: N test segments of `full`
(seed 0) rendered in this process, no files, their 24 features against the real test's (26-62 s
for 300 on 2 cores, by the machine's day).

Results: bench/out/realism/results.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_real import real_segments  # noqa: E402
from run import OUT, measure  # noqa: E402

from labquake import synth  # noqa: E402
from labquake.config import BURSTS, SEGMENT_ROWS  # noqa: E402

REAL = OUT / "realism"
TARGETS = {"auc": 0.65, "median_ks": 0.10, "max_ks": 0.25}


@functools.cache
def real_signal_stats(real_dir: Path) -> pd.DataFrame:
    """stats.signal_stats of the 100 real test segments (once a process: every case compares to them)."""
    from labquake.stats import signal_stats

    return signal_stats(real_segments(real_dir))


def plain_compare(syn: np.ndarray, real_dir: Path) -> dict:
    """Plain statistics of the signal (stats.signal_stats: tails, zero crossings, autocorrelation,
    band powers, burstiness) of synthetic segments against the 100 real test segments: AUC and KS."""
    from labquake.stats import adversarial_auc, ks_table, signal_stats

    real = real_signal_stats(real_dir)
    s = signal_stats(syn)
    table = ks_table(s, real, list(real.columns))
    return {
        "auc": adversarial_auc(real, s, list(real.columns)),
        "median_ks": float(table["ks_stat"].median()),
        "largest": table.head(5).round(3).to_dict("records"),
        "burst_asymmetry_ks": float(table.set_index("feature").loc["burst_asymmetry", "ks_stat"]),
    }


def emission_position(interim: Path, train: pd.DataFrame) -> dict:
    """Per complete train cycle: time to failure at the end of its loudest segment; loudness at failure."""
    x = np.memmap(interim / "train_signal.i16", dtype=np.int16, mode="r")
    n = len(train)
    peak = np.abs(np.asarray(x[: n * SEGMENT_ROWS]).reshape(n, SEGMENT_ROWS).astype(np.int32)).max(axis=1)
    t = train.assign(peak=peak)
    cycles = np.unique(t["cycle"])[1:-1]  # complete cycles
    loudest = [t[t["cycle"] == c].nlargest(1, "peak").iloc[0] for c in cycles]
    last = [t[t["cycle"] == c].iloc[-1] for c in cycles]  # the segment that holds the failure (or just before it)
    ttf = np.array([r["target"] for r in loudest])
    return {
        "cycles": len(cycles),
        "ttf_of_loudest": [round(float(v), 3) for v in ttf],
        "loudest_ttf_range": [round(float(ttf.min()), 3), round(float(ttf.max()), 3)],
        "peak_at_failure": [int(r["peak"]) for r in last],
    }


def cached_test_segments(interim: Path, n: int = 300) -> np.ndarray:
    """Up to ``n`` of the synthetic test segments from the cache (evenly spaced in file order)."""
    x = np.memmap(interim / "test_signal.i16", dtype=np.int16, mode="r").reshape(-1, SEGMENT_ROWS)
    return np.asarray(x[np.linspace(0, len(x) - 1, min(n, len(x))).astype(int)])


def auto_recovery(feats: Path) -> dict:
    """The cycle choice of data.train_cycles=auto (its default settings) on a feature folder, and the
    mean time to failure of what it chose."""
    from labquake.config import load_config
    from labquake.models import reads
    from labquake.trainset import choose_cycles, union

    d = load_config("recipe").data
    train, test = pd.read_parquet(feats / "train.parquet"), pd.read_parquet(feats / "test.parquet")
    choice = choose_cycles(train, test, union(reads(load_config("recipe"))), d.auto_share, d.auto_draws, d.auto_seed)
    complete = train["cycle"].isin(choice["complete_cycles"])
    return {
        "chosen": choice["chosen"],
        "chosen_mean_ttf": float(train.loc[train["cycle"].isin(choice["chosen"]), "target"].mean()),
        "complete_mean_ttf": float(train.loc[complete, "target"].mean()),
    }


def case(preset: str, seed: int, real_dir: Path, reuse: bool) -> dict:
    """One preset and seed; the synthetic files and the cache are removed afterwards (the feature
    tables stay, and the case's result, which --reuse takes)."""
    lq = [sys.executable, "-m", "labquake"]
    raw, feats, interim = REAL / f"raw_{preset}_s{seed}", REAL / f"features_{preset}_s{seed}", REAL / f"interim_{preset}_s{seed}"
    done = REAL / f"case_{preset}_s{seed}.json"
    if reuse and done.is_file():
        return json.loads(done.read_text())
    steps = {}
    for p in (raw, feats, interim):
        shutil.rmtree(p, ignore_errors=True)
    REAL.mkdir(parents=True, exist_ok=True)
    steps["synth"] = measure([*lq, "synth", "--out", str(raw), "--preset", preset, "--seed", str(seed)], REAL / f"synth_{preset}_s{seed}.log")
    steps["features"] = measure(
        [*lq, "features", "--data", str(raw), "--out", str(feats), "--interim", str(interim)], REAL / f"features_{preset}_s{seed}.log"
    )
    out = REAL / f"compare_{preset}_s{seed}"
    measure([*lq, "compare", str(feats), str(real_dir / "test_features.parquet"), "--out", str(out)], REAL / f"compare_{preset}_s{seed}.log")
    summary = json.loads((out / "compare.json").read_text())["summary"]
    train = pd.read_parquet(feats / "train.parquet", columns=["start", "cycle", "target"])
    truth = pd.read_csv(raw / "test_truth.csv")["time_to_failure"]
    result = {
        "preset": preset,
        "seed": seed,
        "auc": summary["adversarial_auc"],
        "median_ks": summary["median_ks"],
        "max_ks": summary["largest_ks"]["ks_stat"],
        "max_ks_feature": summary["largest_ks"]["feature"],
        "train_mean_ttf": float(train["target"].mean()),
        "test_mean_ttf": float(truth.mean()),
        "ttf_ratio": float(truth.mean() / train["target"].mean()),
        "emission": emission_position(interim, train),
        "plain": plain_compare(cached_test_segments(interim), real_dir),
        "steps": steps,
    }
    done.write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(raw)
    shutil.rmtree(interim)
    return result


def rendered_test(n: int, bursts: str = BURSTS[0]) -> np.ndarray:
    """N test segments of `full` (seed 0) rendered in this process, no files: the tuning loops' sample."""
    exp = synth._experiment(synth.SIZES["full"], 0, bursts=bursts)
    starts = np.sort(np.random.default_rng([0, 2]).choice(exp.test.n_rows - SEGMENT_ROWS, n, replace=False))
    return np.stack([synth._render(exp, exp.test, int(s), int(s) + SEGMENT_ROWS, np.random.default_rng([0, 4, i]), 0) for i, s in enumerate(starts)])


def quick(real_dir: Path, n: int, bursts: str = BURSTS[0]) -> None:
    """N synthetic test segments of `full` seed 0, rendered in process, against the real test features."""
    from labquake.features import FEATURE_NAMES, segment_features
    from labquake.stats import adversarial_auc, ks_table

    segs = rendered_test(n, bursts)
    syn = pd.DataFrame([segment_features(x) for x in segs])
    real = pd.read_parquet(real_dir / "test_features.parquet")
    table = ks_table(syn, real, FEATURE_NAMES)
    print(table.to_string(index=False))
    auc = adversarial_auc(real[FEATURE_NAMES], syn, FEATURE_NAMES)
    print(f"AUC {auc:.3f}  median KS {table['ks_stat'].median():.3f}  largest KS {table['ks_stat'].max():.3f}")
    plain = plain_compare(segs, real_dir)
    print(f"plain statistics: AUC {plain['auc']:.3f}  median KS {plain['median_ks']:.3f}  largest {plain['largest'][:3]}")
    print(f"burst asymmetry: KS {plain['burst_asymmetry_ks']:.3f}")


def floor_fill(real_dir: Path, n: int, share: float = 0.1, least: float = 0.15) -> None:
    """One step of the measured floor's fill (synth.measured.FLOOR_FILL): where the factorisation's
    floor dips under the real quietest frames. N test segments of `full` (seed 0) are rendered with
    the current fill, and at every bin of the varying parts (below 0.12 cycles/sample) the ``share``
    quantile of the frame power over all frames is set against the 100 real test segments'. Where
    they differ by more than ``least`` of the real quantile, the fill moves by the difference over
    the exponential's quantile (a frame's periodogram bin is about exponential), never below 0.
    Prints the new table for measured.py; run again until nothing moves."""
    from measure_real import frame_spectra

    from labquake.synth import measured

    real = real_segments(real_dir).astype(np.float64)
    syn = rendered_test(n)
    q = []
    for x in (real, syn.astype(np.float64)):
        f, p = frame_spectra(x - np.median(x, axis=1, keepdims=True))
        q.append(np.quantile(p.reshape(-1, p.shape[-1]), share, axis=0)[: len(measured.FLOOR_FILL)])
    short = q[0] - q[1]
    # half the step: quiet frames hold some of the varying parts too, so the full step overshoots
    step = np.where(np.abs(short) > least * q[0], 0.5 * short / -np.log1p(-share), 0.0)
    out = np.maximum(measured.FLOOR_FILL + step, 0.0)
    print(
        f"moved at {np.count_nonzero(step)} of {len(out)} bins (largest shortfall {np.abs(short).max():.2f} at {f[np.argmax(np.abs(short))]:.4f} cycles/sample)"
    )
    print(" ".join(f"{v:.4g}" for v in out))


def rerender(real_dir: Path, k: int, within: float = 0.6) -> None:
    """Each of the 100 real test segments rendered from its own frame-by-frame weights (a K-part
    factorisation of its 2,048-sample frames, as bench/measure_real.py does with K = 3), Gaussian
    noise through the parts' filters under a log-normal envelope of sd ``within`` inside a frame, and
    the rendering set against the real segments: how far frame powers alone go."""
    from measure_real import factorise, frame_spectra
    from scipy.signal import oaconvolve

    from labquake.features import FEATURE_NAMES, segment_features
    from labquake.stats import adversarial_auc, ks_table
    from labquake.synth import measured, signal

    seg = real_segments(real_dir).astype(np.float64)
    med = np.median(seg, axis=1, keepdims=True)
    f, frames = frame_spectra(seg - med)
    n_seg, n_frames, n_bins = frames.shape
    w, h = factorise(frames.reshape(-1, n_bins), k=k, iters=400)
    h[0] = np.maximum(h[0] - 1 / 6, 0)  # the rounding noise is added by the rounding
    filters, weights = [signal.fir(f, part, 2047) for part in h], w.reshape(n_seg, n_frames, k)
    rng, t, centres = np.random.default_rng(0), np.arange(SEGMENT_ROWS), np.arange(n_frames) * 2048 + 1024
    out = []
    for s in range(n_seg):
        y = med[s, 0] + signal._smooth(rng, SEGMENT_ROWS, [(n, np.sqrt(v)) for n, v in measured.WANDER])
        for j in range(k):
            amp = np.sqrt(np.interp(t, centres, weights[s, :, j]))
            if j:
                amp *= np.exp(within * signal._smooth(rng, SEGMENT_ROWS, [(600.0, 1.0)]) - within**2)
            y += oaconvolve(rng.standard_normal(SEGMENT_ROWS) * amp, filters[j])[:SEGMENT_ROWS]
        out.append(np.clip(np.rint(y), -32768, 32767).astype(np.int16))
    syn = pd.DataFrame([segment_features(x) for x in out])
    real = pd.DataFrame([segment_features(x) for x in seg.astype(np.int16)])
    table = ks_table(syn, real, FEATURE_NAMES)
    print(table.head(6).to_string(index=False))
    print(
        f"{k} parts: AUC {adversarial_auc(real, syn, FEATURE_NAMES):.3f}  median KS {table['ks_stat'].median():.3f}  largest KS {table['ks_stat'].max():.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, required=True, help="folder with the real test_features.parquet")
    ap.add_argument("--presets", nargs="+", default=["demo", "full"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--reuse", action="store_true", help="take the cases already measured")
    ap.add_argument("--quick", type=int, nargs="?", const=300, metavar="N", help="only N segments rendered in process (default 300)")
    ap.add_argument("--floor-fill", type=int, nargs="?", const=300, metavar="N", help="measure the floor's fill on N rendered segments")
    ap.add_argument("--bursts", default=BURSTS[0], choices=BURSTS, help="with --quick: the generator's bursts (synth --bursts)")
    ap.add_argument("--rerender", type=int, metavar="K", help="the real segments rendered from their own K-part frame weights")
    args = ap.parse_args()
    if not (args.real / "test_features.parquet").is_file():
        sys.exit(f"bench-realism: {args.real / 'test_features.parquet'}: not found (give --real the folder of the real samples)")
    if args.quick:
        return quick(args.real, args.quick, args.bursts)
    if args.rerender:
        return rerender(args.real, args.rerender)
    if args.floor_fill:
        return floor_fill(args.real, args.floor_fill)
    rows = [case(p, s, args.real, args.reuse) for p in args.presets for s in args.seeds]
    for r in rows:
        r["auto"] = auto_recovery(REAL / f"features_{r['preset']}_s{r['seed']}")
    (REAL / "results.json").write_text(json.dumps({"targets": TARGETS, "cases": rows}, indent=1) + "\n")
    print(
        "| preset | seed | AUC | median KS | largest KS (feature) | test/train mean ttf | auto's cycles / all complete: mean ttf (of test's) "
        "| loudest segment ends at ttf (s) | max abs x at failure | plain statistics: AUC, median KS |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        e, a = r["emission"], r["auto"]
        sparse = synth.SIZES[r["preset"]].time_scale > 1
        where = "n/a (0.39 s segments)" if sparse else f"{e['loudest_ttf_range'][0]}-{e['loudest_ttf_range'][1]} ({e['cycles']} cycles)"
        quiet = "n/a" if sparse else f"{min(e['peak_at_failure'])}-{max(e['peak_at_failure'])}"
        print(
            f"| {r['preset']} | {r['seed']} | {r['auc']:.3f} | {r['median_ks']:.3f} | {r['max_ks']:.3f} ({r['max_ks_feature']}) | "
            f"{r['test_mean_ttf']:.2f} / {r['train_mean_ttf']:.2f} = {r['ttf_ratio']:.3f} | "
            f"{a['chosen_mean_ttf']:.2f} ({a['chosen_mean_ttf'] / r['test_mean_ttf']:.3f}) / {a['complete_mean_ttf']:.2f} "
            f"({a['complete_mean_ttf'] / r['test_mean_ttf']:.3f}) | {where} | {quiet} | {r['plain']['auc']:.3f}, {r['plain']['median_ks']:.3f} |"
        )


if __name__ == "__main__":
    main()
