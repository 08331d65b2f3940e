"""Measure the real LANL segments that the synthetic generator's constants come from.

    python bench/measure_real.py REAL_DIR [--out bench/out/measure_real.json]

REAL_DIR holds the real samples (test_sample.npz: 100 real test segments; quake_windows.npz: the
16 train windows that hold a failure; train_targets.csv: the real cycle structure). Prints, and
writes as JSON:

- the power spectrum as a constant floor plus two varying components: each segment's Welch
  spectrum (2,048-sample frames, median removed) = floor(f) + m * tone(f) + l * low(f), fitted by
  non-negative factorisation with the floor's weight fixed at 1 (Kullback-Leibler updates). The
  three shapes at the knots of ``synth.measured.FREQ_KNOTS`` are the generator's ``FLOOR``, ``TONE`` and
  ``LOW``; the quantiles of m and l across the segments are its ``TONE_LEVEL`` and ``LOW_LEVEL``;
- how the tails move with the level m (kurtosis of the band 0.02-0.1 cycles/sample, share of
  samples over 20, 50, 100, the 0.999 quantile of |x|), which the burst constants were tuned to;
- the quiet failure windows, and the cycles of train_targets.csv.
- how the bursts rise and decay (``EVENT_DECAY``): from each peak of the power over 128 samples,
  the samples to e^-4 of it after the peak and before it.

- the baseline's slow wander inside a segment (``WANDER``: AR(1) parts fitted to the excess over
  the floor below 0.003 cycles/sample, in 32,768-sample frames).

Nothing in the package reads REAL_DIR: ``--module src/labquake/synth/measured.py`` writes the
tables into the package's source, where they live with a comment naming their source.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.signal import butter, sosfiltfilt, welch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from labquake.stats import BURST_WINDOW  # noqa: E402
from labquake.synth.measured import FREQ_KNOTS  # noqa: E402

FRAME = 2048
QUANTILES = np.linspace(0, 1, 21)


def real_segments(real_dir: Path) -> np.ndarray:
    """The 100 real test segments (REAL_DIR/test_sample.npz), int16, 100 x 150,000."""
    return np.load(real_dir / "test_sample.npz")["acoustic_data"]


def frame_spectra(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed periodograms of consecutive 2,048-sample frames: (freqs, segments x frames x bins)."""
    n = z.shape[1] // FRAME
    fr = z[:, : n * FRAME].reshape(len(z), n, FRAME)
    fr = fr - fr.mean(axis=2, keepdims=True)
    w = np.hanning(FRAME)
    p = np.abs(np.fft.rfft(fr * w, axis=2)) ** 2 * (2 / (w * w).sum())  # one-sided density
    p[..., 0] = p[..., 1]
    return np.fft.rfftfreq(FRAME), p


def factorise(p: np.ndarray, k: int = 3, iters: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """p (frames x bins) = w @ h, non-negative, w[:, 0] = 1 (a floor every frame shares).

    Kullback-Leibler multiplicative updates. (Itakura-Saito, the exponential likelihood of a
    periodogram bin, was tried: it moves half of the floor into the low part, and the synthetic
    features match the real ones far worse: median KS 0.31 against 0.17.)
    """
    rng = np.random.default_rng(seed)
    w = rng.random((len(p), k)) + 0.5
    w[:, 0] = 1
    h = rng.random((k, p.shape[1])) * p.mean(0) + 1e-3
    for _ in range(iters):
        h *= (w.T @ (p / (w @ h))) / w.sum(0)[:, None]
        w *= ((p / (w @ h)) @ h.T) / h.sum(1)[None, :]
        w[:, 0] = 1
    # order the varying parts: the one peaking higher in frequency first (the tone)
    order = [0] + sorted(range(1, k), key=lambda j: -np.argmax(h[j]))
    return w[:, order], h[order]


def at_knots(f: np.ndarray, power: np.ndarray) -> np.ndarray:
    """A spectrum at FREQ_KNOTS: the bin itself where the knots are every bin, else the mean of the
    bins within half a knot spacing (one bin of a factorised spectrum scatters by several %)."""
    out = np.interp(FREQ_KNOTS, f, power)
    half = np.diff(FREQ_KNOTS, append=FREQ_KNOTS[-1]) / 2
    for i, (k, w) in enumerate(zip(FREQ_KNOTS, half)):
        if w > 1 / FRAME:
            out[i] = power[np.abs(f - k) <= w].mean()
    return out


def wander(z: np.ndarray, floor_level: float) -> list[tuple[int, float]]:
    """The slow wander below 0.003 cycles/sample (32,768-sample frames): its excess over the flat
    floor fitted by AR(1) processes of a few correlation lengths, as (length, variance)."""
    from scipy.optimize import nnls

    f, p = welch(z, nperseg=32768, axis=-1)
    m = (f > 0) & (f < 0.003)
    excess = np.maximum(np.median(p, 0)[m] - floor_level, 0.5)
    lengths = np.array([300, 1000, 3000, 10000, 30000])
    phi = np.exp(-1 / lengths)[None, :]
    basis = 2 * (1 - phi**2) / np.abs(1 - phi * np.exp(-2j * np.pi * f[m])[:, None]) ** 2  # AR(1) spectra, unit variance
    var, _ = nnls(basis / excess[:, None], np.ones(len(excess)))  # relative errors
    return [(int(n), round(float(v), 4)) for n, v in zip(lengths, var) if v > 0]


def ar1_spectrum(f: np.ndarray, parts: list[tuple[int, float]]) -> np.ndarray:
    out = np.zeros_like(f)
    for n, v in parts:
        phi = np.exp(-1 / n)
        out += v * 2 * (1 - phi**2) / np.abs(1 - phi * np.exp(-2j * np.pi * f)) ** 2
    return out


def write_module(path: Path, out: dict) -> None:
    """Rewrite the tables of src/labquake/synth/measured.py with this measurement."""
    import re

    text = path.read_text()
    for name, key in [
        ("FLOOR", "floor"),
        ("TONE", "tone"),
        ("LOW", "low"),
        ("TONE_LEVEL", "tone_level_quantiles"),
        ("LOW_LEVEL", "low_level_quantiles"),
    ]:
        cells = [f"{float(v):.4g}" for v in out[key]]
        per = 11 if key.endswith("quantiles") else 12
        body = "\n".join("    " + " ".join(cells[i : i + per]) for i in range(0, len(cells), per))
        text = re.sub(
            rf'^{name} = _parse_table\(\n    """\n.*?\n    """\n\)\n',
            f'{name} = _parse_table(\n    """\n{body}\n    """\n)\n',
            text,
            flags=re.S | re.M,
        )
    text = re.sub(r"^LOW_TONE_SPEARMAN = [0-9.]+", f"LOW_TONE_SPEARMAN = {out['low_tone_spearman']:.2f}", text, flags=re.M)
    text = re.sub(r"^WANDER = .*$", f"WANDER = {tuple(tuple(w) for w in out['wander'])}", text, flags=re.M)
    path.write_text(text)


def tails(z: np.ndarray) -> dict[str, float]:
    band = sosfiltfilt(butter(4, [0.04, 0.2], "bandpass", output="sos"), z)
    a = np.abs(z)
    return {
        "sd": float(z.std()),
        "band_kurtosis": float(stats.kurtosis(band)),
        "s20": float(np.mean(a > 20)),
        "s50": float(np.mean(a > 50)),
        "s100": float(np.mean(a > 100)),
        "q999": float(np.quantile(a, 0.999)),
        "max": float(a.max()),
    }


def event_shapes(z: np.ndarray, window: int = BURST_WINDOW, apart: int = 3000, least: float = 4.0) -> dict:
    """How the bursts rise and decay (synth.measured.EVENT_DECAY): in each segment's power over
    ``window`` samples, the peaks over ``least`` times the segment's median power, ``apart`` samples
    apart; from each, the samples until the excess over the median falls to e^-4 of the peak's, after
    it and before it. Quantiles (10, 50, 90%) over all peaks, and over those over 30x the median."""
    from scipy.ndimage import maximum_filter1d, uniform_filter1d

    rows = []
    for x in z:
        power = uniform_filter1d(x * x, window)
        floor = np.median(power)
        excess = power - floor
        peaks = np.flatnonzero((power == maximum_filter1d(power, 2 * apart + 1)) & (power > least * floor))
        for k in peaks[(peaks >= apart) & (peaks + apart <= len(x))]:
            after = np.flatnonzero(excess[k : k + apart] < excess[k] * np.exp(-4))
            before = np.flatnonzero(excess[k - apart : k][::-1] < excess[k] * np.exp(-4))
            rows.append((excess[k] / floor, after[0] if len(after) else apart, before[0] if len(before) else apart))
    e = np.array(rows)
    big = e[e[:, 0] > 30]
    q = (0.1, 0.5, 0.9)
    return {
        "peaks_per_segment": len(e) / len(z),
        "after": np.quantile(e[:, 1], q).tolist(),
        "before": np.quantile(e[:, 2], q).tolist(),
        "large": len(big),
        "large_after": np.quantile(big[:, 1], q).tolist(),
        "large_before": np.quantile(big[:, 2], q).tolist(),
    }


def calibrate() -> None:
    """synth.STATE_KNOTS: the quantiles of the power state over the test recordings of `full`, seeds 0 and 1."""
    from labquake import synth

    v = np.concatenate([synth._experiment(synth.SIZES["full"], seed).test.power for seed in (0, 1)])
    print("STATE_KNOTS =", " ".join(f"{x:.4g}" for x in np.quantile(v, synth.measured.LEVEL_QUANTILES)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("real_dir", type=Path)
    ap.add_argument("--out", type=Path, default=Path("bench/out/measure_real.json"))
    ap.add_argument("--calibrate", action="store_true", help="also print synth.STATE_KNOTS (the generator's side of the level map)")
    ap.add_argument("--module", type=Path, help="rewrite the tables of this measured.py (src/labquake/synth/measured.py) with the measurement")
    args = ap.parse_args()
    if args.calibrate:
        calibrate()
    seg = real_segments(args.real_dir).astype(np.float64)
    z = seg - np.median(seg, axis=1, keepdims=True)
    f, frames = frame_spectra(z)
    n_seg, n_frames = frames.shape[:2]
    w, h = factorise(frames.reshape(n_seg * n_frames, -1))
    p = frames.reshape(n_seg * n_frames, -1)
    err = float(np.median(np.abs(np.log((w @ h)[:, 1:] / p[:, 1:]))))
    shapes = {name: at_knots(f, h[j]) for j, name in enumerate(["floor", "tone", "low"])}
    # the wander is its own component: take its share out of the floor's lowest knots
    slow = wander(z, floor_level=float(np.median(h[0][(f > 0.002) & (f < 0.008)])))
    shapes["floor"] = np.maximum(shapes["floor"] - ar1_spectrum(FREQ_KNOTS, slow) * (FREQ_KNOTS > 0), 0.0)
    shapes["floor"][0] = shapes["floor"][1]  # a frame's mean is removed: its zero bin says nothing
    # the real floor includes the rounding to integers (white, variance 1/12, so a density of 1/6);
    # the generator rounds too, so it is taken out here
    shapes["floor"] = np.maximum(shapes["floor"] - 1 / 6, 0.0)
    tone, low = (w[:, j].reshape(n_seg, n_frames) for j in (1, 2))
    lt, ll = np.log(tone + 1e-4), np.log(low + 1e-4)
    envelope = {
        "log_power_sd": float(np.median(lt.std(axis=1))),
        "lag1_corr": float(np.median([np.corrcoef(x[:-1], x[1:])[0, 1] for x in lt])),
        "tone_low_corr": float(np.median([np.corrcoef(a, b)[0, 1] for a, b in zip(lt, ll)])),
        "median_over_mean": float(np.median(tone / tone.mean(axis=1, keepdims=True))),
    }
    t = pd.DataFrame([tails(s) for s in z])
    t["m"], t["l"] = tone.mean(axis=1), low.mean(axis=1)
    by_level = t.groupby(pd.qcut(t["m"], 5), observed=True).median()
    quake = np.load(args.real_dir / "quake_windows.npz")
    qz = quake["acoustic_data"].astype(np.float64)
    qz -= np.median(qz, axis=1, keepdims=True)
    ttf = pd.read_csv(args.real_dir / "train_targets.csv")["time_to_failure"].to_numpy()
    starts = np.flatnonzero(np.diff(ttf) > 0) + 1
    lengths = ttf[starts[:-1]] - ttf[starts[1:] - 1]  # complete cycles: first to last segment
    out = {
        "fit_median_log_error": err,
        "floor_variance": float(np.trapezoid(h[0], f)),
        "envelope": envelope,
        "knots": FREQ_KNOTS.tolist(),
        **{k: np.round(v, 4).tolist() for k, v in shapes.items()},
        "tone_level_quantiles": np.round(np.quantile(t["m"], QUANTILES), 4).tolist(),
        "low_level_quantiles": np.round(np.quantile(t["l"], QUANTILES), 4).tolist(),
        "low_tone_spearman": float(stats.spearmanr(t["m"], t["l"])[0]),
        "wander": slow,
        "tails_by_level": by_level.round(5).reset_index(drop=True).to_dict(orient="list"),
        "quake_windows": {"sd": np.round(qz.std(1), 2).tolist(), "max_abs": np.abs(qz).max(1).astype(int).tolist()},
        "events": event_shapes(z),
        "cycles": {"complete": len(lengths), "mean_s": float(lengths.mean()), "sd_s": float(lengths.std(ddof=1)), "mean_ttf_s": float(ttf.mean())},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    if args.module:
        write_module(args.module, out)
    np.set_printoptions(linewidth=150, precision=4, suppress=True)
    print(f"spectrum: floor + tone + low fits each frame to a median log error of {err:.3f}; floor variance {out['floor_variance']:.2f}")
    for k in shapes:
        print(f"{k.upper()} =", np.array2string(np.round(shapes[k], 3), separator=", "))
    print("TONE_LEVEL =", out["tone_level_quantiles"])
    print("LOW_LEVEL =", out["low_level_quantiles"])
    print(f"LOW_TONE_SPEARMAN = {out['low_tone_spearman']:.2f}")
    print("WANDER =", slow)
    print("envelope (tone's frame power within a segment):", {k: round(v, 3) for k, v in envelope.items()})
    print("tails by quintile of the tone level:\n", by_level.round(4).to_string())
    print("quake windows: sd", out["quake_windows"]["sd"], "max |x|", out["quake_windows"]["max_abs"])
    print("events (samples to e^-4 of the peak's power, 10/50/90%):", out["events"])
    print("cycles:", out["cycles"])


if __name__ == "__main__":
    main()
