"""Synthetic LANL data in Kaggle's layout (`labquake synth`), following docs/data.md.

What is written in ``out/``:

- ``train.csv`` (``acoustic_data,time_to_failure``): one continuous recording of several quake
  cycles; the first cycle is partial, the last is cut off.
- ``test/seg_XXXXXX.csv`` (``acoustic_data``, exactly 150,000 rows each): segments cut at random,
  non-overlapping positions from cycles that continue the recording after the train interval (the
  rest of train's cut-off cycle is skipped, so no test segment shares a cycle with train). Names are
  ``seg_`` + 6 random lowercase hex digits.
- ``sample_submission.csv`` (``seg_id,time_to_failure``, ids sorted, every value 0, like Kaggle's).
- ``test_truth.csv`` (same columns): the true time to failure at each test segment's last row. It
  lies beside the Kaggle files, never inside ``test/``.

Text format, as in the real files: LF line ends and a final newline, integers for the signal, times
printed in fixed point with up to 10 decimals and trailing zeros dropped (``1.4690999832``,
``1.46909997``; at least one decimal is kept: ``12.0``).

Time base. Time to failure is held as integers in units of 1e-10 s, so every printed time is exact.
Rows come in blocks of 4,096 (one block in 1,280 has 4,095). Inside a block time to failure falls by
1.1e-9 s per row; block starts lie on a 0.1 ms grid and are 1.0 ms or 1.1 ms apart (64% of them
1.1 ms, spread evenly as in the real file), so the drop from a block's last row to the next block's
first is 0.9955 ms or 1.0955 ms. A cycle ends with the last block whose last row is still positive;
the next row starts the next cycle at its full length.

Presets (one option):

======  ===========  =============  ======================  ====================================
preset  train rows   test segments  time between blocks     cycles
======  ===========  =============  ======================  ====================================
tiny    5,500,000    10             32 x real (34 ms)        ~5 (about 8 segments per cycle)
demo    36,000,000   200            10 x real (10.6 ms)      ~10 (about 25 segments per cycle)
full    629,145,480  2,624          real (1.06 ms)           ~17 (about 250 segments per cycle)
======  ===========  =============  ======================  ====================================

``tiny`` and ``demo`` keep cycle lengths in *seconds* like the real ones (so targets span the real
0-16 s and MAE figures are comparable) but record more sparsely in time: the step between blocks is
multiplied by the "time scale", so a cycle holds tens of segments instead of ~250. Inside a block
(and so inside a segment) the signal is the same 4 MHz-like signal at every scale.

Fault model. The signal shows the fault's state, not the time left (docs/synthetic.md). Each cycle
loads linearly from its post-slip stress, at its own rate, up to its own failure threshold; the slip
drops the stress by about a fixed amount. Cycle lengths follow from these, with the real mean, sd
and lag-1 anti-correlation (a high threshold ends one cycle late and starts the next one high).

Test regime (default; ``--no-test-shift`` turns it off). As in the real competition, the test
interval's cycles are longer than train's: its slips are larger (so its cycles start lower, and
quieter, through the memory effect), then its loading rates are scaled until the test recording's
mean time to failure is 1.11 times the train segments' (real: 6.32 s against 5.68 s). Train is the
same either way.

Signal model (int16, rounded), its constants measured on real segments (``synth.measured``,
``bench/measure_real.py``): ``baseline + wander + floor + tone + low + emission``.

- *Activity* ``a`` rises with the loading state ``u`` (0 at the mean post-slip stress, 1 at the mean
  threshold): ``0.55 u**2``, plus precursors in the last second (``0.3 exp(-ttf/0.6 s)``), plus a
  state noise (a fast part about one segment long, a slow part of a few seconds, a per-cycle offset)
  and a slow drift over the experiment. After the emission, up to the labelled failure, the fault is
  quiet. A per-cycle gain, a slow modulation and the memory effect (a cycle that follows a large
  slip starts quiet) set the loudness; the power state ``v = a * loudness`` is mapped through its
  quantiles (``STATE_KNOTS``) to the real test segments' quantiles of the tone's weight.
- *Floor*: Gaussian noise with the measured floor spectrum, the same in every segment.
- *Tone* and *low* part: Gaussian noise with the measured spectra of the two varying parts, at their
  per-block weights (the low part's tied to the tone's by the real rank correlation), under the
  envelopes of acoustic-emission events that start at once and decay slowly, as the real ones do
  (``--bursts events``, the default; ``--bursts envelopes``: log-normal envelopes with the real
  frame-to-frame scatter, the generator before 2026-12-07).
- *Wander*: the baseline's slow wander inside a segment (AR(1) parts, measured).
- *Emission*: a very large burst (peak +-2,900 to +-5,500) starting 0.32 s before the labelled
  failure, so that it lies in the segment that ends 0.28-0.32 s before it, as in all 15 real cycles.
- *Baseline*: 4.52 in train and 4.14 in test (the real test segments' means), with a slow wander
  of sd 0.28 between segments (real: the test segments and the windows around a failure alike).

Modules: ``timebase`` (cycles, the test regime, the clock, recordings), ``signal`` (activity, the
measured spectra's weights and envelopes, rendering), ``measured`` (the constants measured on real
segments), ``text`` (Kaggle's text form); this one draws the experiment and writes the files.

Generation is vectorised numpy in chunks of whole blocks, on a small thread pool (numpy releases
the GIL), formatted to text with table look-ups and a byte mask. Every chunk and every test
segment draws from its own generator seeded by (seed, stream, index), so the bytes depend on the
seed alone. Files are written under temporary names and renamed when complete.
"""

from __future__ import annotations

import copy
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labquake.config import BURSTS, SEGMENT_ROWS
from labquake.synth.signal import MODEL, SHIFT_GAIN, SHIFT_SHARE, STATE_KNOTS, SignalModel, _activity, _ar1, _levels, _render, stress  # noqa: F401
from labquake.synth.text import SUB_HEADER, TEST_HEADER, TRAIN_HEADER, _tables, format_signal_rows, format_times, format_train_rows
from labquake.synth.timebase import (  # noqa: F401 (the tests and benches read these here)
    CYCLE_RANGE,
    FAULT,
    ROW_STEP,
    UNITS_PER_S,
    Cycles,
    FaultModel,
    Timeline,
    _Clock,
    _cycles,
    _mean_ttf,
    _record,
    _replace_cycles,
    _segment_ends,
    _to_units,
    _ttf_at,
    _ttf_units,
)
from labquake.util import LabquakeError, atomic_path, io_threads, log, ordered_map, progress

CHUNK_BLOCKS = 512  # rows per generated chunk: about 2.1 million


@dataclass(frozen=True)
class Size:
    """A synthetic dataset's size (`labquake synth --preset NAME`); config.PRESETS are the configuration's."""

    train_rows: int
    test_segments: int
    time_scale: int  # the gap between blocks, as a multiple of the real one
    test_coverage: float = 0.9  # share of the test recording covered by segments


SIZES: dict[str, Size] = {
    "tiny": Size(train_rows=5_500_000, test_segments=10, time_scale=32),
    "demo": Size(train_rows=36_000_000, test_segments=200, time_scale=10),
    "full": Size(train_rows=629_145_480, test_segments=2_624, time_scale=1, test_coverage=0.94),
}


@dataclass
class _Experiment:
    train: Timeline
    test: Timeline
    cycles: Cycles
    cycle_gain: np.ndarray
    cycle_offset: np.ndarray  # unit-sd activity offset of each cycle
    emission_peak: np.ndarray
    emission_lead: np.ndarray  # s before the labelled failure
    mod: tuple[np.ndarray, np.ndarray, np.ndarray]  # amplitudes, periods, phases of the modulation
    total_time: float
    time_scale: int
    regime: np.ndarray | None = None  # per cycle: in the shifted amplitude regime (synth --shift)
    bursts: str = BURSTS[0]  # how the emission's power comes in time (synth --bursts, config.BURSTS)

    @property
    def cycle_seconds(self) -> np.ndarray:
        return self.cycles.seconds


# Long by design: the experiment is drawn from one random stream in a fixed order, visible in one place.
def _experiment(
    preset: Size,
    seed: int,
    model: SignalModel = MODEL,
    fault: FaultModel = FAULT,
    shift: bool = False,
    test_shift: bool = True,
    bursts: str = BURSTS[0],
) -> _Experiment:
    """The whole experiment's time base, cycles and per-block state.

    ``test_shift``: the test interval in the real regime (``FaultModel.test_drop``, ``test_ratio``):
    its cycles are redrawn with larger slips, then their loading rates scaled until the test
    recording's mean time to failure is ``test_ratio`` times the train segments'. Train is the
    same either way.

    ``shift``: a known train/test shift, to test drift diagnostics and the choice of train cycles:
    the test cycles and about a third of the train cycles (seeded) are in a louder amplitude regime
    (``SHIFT_GAIN``); the other draws, and so every other cycle, are unchanged.

    ``bursts``: how the emission's power comes in time (``config.BURSTS``): "events", acoustic-emission
    events with sudden onsets and slow decays (the default), or "envelopes", log-normal envelopes.
    """
    rng = np.random.default_rng([seed, 0])
    n_cycles = 64 + preset.train_rows // 1_000_000  # plenty: unused ones cost nothing
    cycles = _cycles(rng, n_cycles, fault)
    seconds = cycles.seconds
    gain = np.exp(rng.normal(0, model.cycle_gain_sd, n_cycles))
    lead = rng.uniform(*model.emission_lead, n_cycles)
    peak = rng.uniform(*model.emission_peak, n_cycles)
    n_mod = 6
    mod = (
        np.full(n_mod, np.sqrt(2 / n_mod)),
        np.exp(rng.uniform(np.log(model.mod_periods[0]), np.log(model.mod_periods[1]), n_mod)),
        rng.uniform(0, 2 * np.pi, n_mod),
    )
    cycle_offset = rng.standard_normal(n_cycles)
    offset = int(rng.integers(0, 10**6))
    clock = _Clock(rng, preset.time_scale)
    first_start = _to_units(seconds[0] * rng.uniform(0.1, 0.9), offset)
    lengths = ((i, float(seconds[i])) for i in range(1, n_cycles))
    train, cut = _record(clock, lengths, preset.train_rows, (0, first_start), offset, lead)
    # Skip the rest of train's cut-off cycle: test starts with the next cycle, in the same clock.
    rest_units = int(train.ttf0[-1] - (train.rows[-1] - 1) * ROW_STEP)
    clock.t += rest_units / UNITS_PER_S
    test_rows = int(np.ceil(preset.test_segments * SEGMENT_ROWS / preset.test_coverage))
    if test_shift:
        new = _cycles(np.random.default_rng([seed, 7]), n_cycles - cut - 1, fault, after=float(cycles.threshold[cut]), longer=fault.test_drop)
        _replace_cycles(cycles, cut + 1, new)
    target = fault.test_ratio * float(np.mean(_ttf_at(train, _segment_ends(train)))) / UNITS_PER_S
    scale = 1.0
    for _ in range(6 if test_shift else 1):  # the mean is nearly proportional to the scale: a few steps converge
        cycles.rate[cut + 1 :] /= scale
        cycles.seconds[cut + 1 :] *= scale
        test_clock = copy.copy(clock)
        test, _ = _record(test_clock, ((i, float(cycles.seconds[i])) for i in range(cut + 1, n_cycles)), test_rows, None, offset, lead)
        scale = target / _mean_ttf(test)
        if abs(scale - 1) < 1e-3:
            break
    clock = test_clock
    if test.cycle[0] <= cut:
        raise AssertionError("test recording must start with a new cycle")
    exp = _Experiment(train, test, cycles, gain, cycle_offset, peak, lead, mod, clock.t, preset.time_scale, bursts=bursts)
    if shift:
        exp.regime = np.random.default_rng([seed, 6]).random(n_cycles) < SHIFT_SHARE
        exp.regime[0] = False  # the partial first cycle
        exp.regime[cut + 1 :] = True  # every cycle after train: the test recording
    for i, rec in enumerate((train, test)):
        raw, rec.loudness = _activity(exp, rec, model, np.random.default_rng([seed, 5, i]))
        rec.activity, rec.power = np.clip(raw, 0.0, 1.0), raw * rec.loudness
        step = float(np.mean(np.diff(rec.time)))  # s between blocks (the preset's time scale)
        wander = _ar1(np.random.default_rng([seed, 9, i]), len(rec.time), model.baseline_seconds / step)
        rec.baseline = model.baseline[i] + model.baseline_sd * wander
    for i, rec in enumerate((train, test)):
        rec.tone, rec.low = _levels(rec, STATE_KNOTS, model, np.random.default_rng([seed, 8, i]))
    return exp


# --- writing --------------------------------------------------------------------------------------
def _write_train(path: Path, exp: _Experiment, seed: int) -> int:
    rec = exp.train
    bounds = rec.start_row[::CHUNK_BLOCKS].tolist() + [rec.n_rows]
    chunks = list(zip(bounds[:-1], bounds[1:]))

    def work(i: int) -> bytes:
        lo, hi = chunks[i]
        x = _render(exp, rec, lo, hi, np.random.default_rng([seed, 1, i]), seed)
        return format_train_rows(x, _ttf_units(rec, lo, hi))

    written = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f, ThreadPoolExecutor(io_threads()) as pool:
        f.write(TRAIN_HEADER)
        for text in progress(ordered_map(pool, work, range(len(chunks)), ahead=4), total=len(chunks), desc="train.csv"):
            f.write(text)
            written += len(text)
        f.write(b"\n")
        f.flush()
    return written + len(TRAIN_HEADER) + 1


def _test_positions(rng: np.random.Generator, n_rows: int, n_seg: int) -> np.ndarray:
    """Random non-overlapping segment starts in a recording of ``n_rows`` rows (in time order)."""
    slack = n_rows - n_seg * SEGMENT_ROWS
    gaps = np.sort(rng.integers(0, slack + 1, n_seg))
    return gaps + np.arange(n_seg, dtype=np.int64) * SEGMENT_ROWS


def _write_test(out: Path, exp: _Experiment, seed: int, n_seg: int) -> tuple[list[str], list[str], int]:
    rec = exp.test
    rng = np.random.default_rng([seed, 2])
    starts = _test_positions(rng, rec.n_rows, n_seg)
    ids = [f"seg_{v:06x}" for v in rng.choice(16**6, n_seg, replace=False)]
    truth = _ttf_at(rec, starts + SEGMENT_ROWS - 1)  # not _ttf_units of all rows: 13 GB at full scale

    def work(i: int) -> int:
        lo = int(starts[i])
        x = _render(exp, rec, lo, lo + SEGMENT_ROWS, np.random.default_rng([seed, 4, i]), seed)
        text = TEST_HEADER + format_signal_rows(x).tobytes() + b"\n"
        (tmp / f"{ids[i]}.csv").write_bytes(text)
        return len(text)

    with atomic_path(out / "test") as tmp:
        tmp.mkdir()
        with ThreadPoolExecutor(io_threads()) as pool:
            sizes = list(progress(ordered_map(pool, work, range(n_seg), ahead=8), total=n_seg, desc="test segments"))
    return ids, format_times(truth), sum(sizes)


# Long by design: the stage's files in the order they are written, each atomically.
def run_synth(out: Path, preset: str, seed: int, shift: bool = False, test_shift: bool = True, bursts: str = BURSTS[0]) -> dict:
    """Write a synthetic dataset in Kaggle's layout into ``out``; return what was written, which
    ``synth.json`` beside the files records (with the true mean time to failure of train and test).

    ``test_shift``: the test interval in the real regime (longer cycles, ``FaultModel.test_ratio``);
    False draws its cycles like train's. ``shift``: the known train/test shift of ``_experiment``;
    ``regime.json`` beside the files names the train cycles (numbered as the features stage numbers
    them) that share the test's regime. ``bursts``: see ``_experiment``.
    """
    if preset not in SIZES:
        raise LabquakeError(f"synth: unknown preset {preset!r} (choose from {', '.join(SIZES)})")
    if bursts not in BURSTS:
        raise LabquakeError(f"synth: unknown bursts {bursts!r} (choose from {', '.join(BURSTS)})")
    if seed < 0:
        raise LabquakeError(f"synth: seed must be >= 0, got {seed}")
    p = SIZES[preset]
    out = Path(out)
    t0 = time.perf_counter()
    exp = _experiment(p, seed, shift=shift, test_shift=test_shift, bursts=bursts)
    _tables()  # build the formatting tables once, before the worker threads need them
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabquakeError(f"synth: cannot create {out}: {exc.strerror}") from None
    size = _write_train(out / "train.csv", exp, seed)
    ids, truth, test_bytes = _write_test(out, exp, seed, p.test_segments)
    order = np.argsort(ids)
    sub = "".join(f"{ids[i]},0\n" for i in order)
    with atomic_path(out / "sample_submission.csv") as tmp:
        tmp.write_bytes((SUB_HEADER + "\n" + sub).encode())
    with atomic_path(out / "test_truth.csv") as tmp:
        tmp.write_bytes((SUB_HEADER + "\n" + "".join(f"{ids[i]},{truth[i]}\n" for i in order)).encode())
    if shift:
        n_train = len(exp.train.cycle_rows)
        regime = {"gain": SHIFT_GAIN, "train_cycles_in_test_regime": [c for c in range(n_train) if exp.regime[c]]}
        with atomic_path(out / "regime.json") as tmp:
            tmp.write_text(json.dumps(regime) + "\n")
    seconds = time.perf_counter() - t0
    info = {
        "preset": preset,
        "seed": seed,
        "train_rows": exp.train.n_rows,
        "train_cycles": len(exp.train.cycle_rows),
        "train_cycle_rows": exp.train.cycle_rows,
        "train_segments": exp.train.n_rows // SEGMENT_ROWS,
        "test_segments": len(ids),
        "test_cycles": int(len(np.unique(exp.test.cycle))),
        "test_shift": test_shift,
        "bursts": bursts,
        "train_mean_ttf": round(float(np.mean(_ttf_at(exp.train, _segment_ends(exp.train)))) / UNITS_PER_S, 4),
        "test_mean_ttf": round(float(np.mean([float(t) for t in truth])), 4),
        "bytes": size + test_bytes,
        "seconds": round(seconds, 2),
    }
    with atomic_path(out / "synth.json") as tmp:
        tmp.write_text(json.dumps(info, indent=1) + "\n")
    log.info(
        "synth %s (seed %d): %s train rows in %d cycles (%d segments), %d test segments, %.2f GB in %.1f s -> %s",
        preset,
        seed,
        f"{info['train_rows']:,}",
        info["train_cycles"],
        info["train_segments"],
        info["test_segments"],
        info["bytes"] / 1e9,
        seconds,
        out,
    )
    return info
