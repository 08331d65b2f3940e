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
  per-block weights (the low part's tied to the tone's by the real rank correlation), under
  log-normal envelopes with the real frame-to-frame scatter: emission comes in short events.
- *Wander*: the baseline's slow wander inside a segment (AR(1) parts, measured).
- *Emission*: a very large burst (peak +-2,900 to +-5,500) starting 0.32 s before the labelled
  failure, so that it lies in the segment that ends 0.28-0.32 s before it, as in all 15 real cycles.
- *Baseline*: drifts slowly upward over the experiment (about 4.3 to 4.7).

Generation is vectorised numpy in chunks of whole blocks, on a small thread pool (numpy releases
the GIL), formatted to text with table look-ups and a byte mask. Every chunk and every test
segment draws from its own generator seeded by (seed, stream, index), so the bytes depend on the
seed alone. Files are written under temporary names and renamed when complete.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labquake.config import SEGMENT_ROWS, SUBMISSION_COLUMNS
from labquake.synth import measured
from labquake.synth.measured import FREQ_KNOTS  # noqa: F401 (bench/measure_real.py tabulates at these)
from labquake.util import LabquakeError, atomic_path, io_threads, log, ordered_map, progress

# --- time base (units of 1e-10 s) -----------------------------------------------------------------
UNITS_PER_S = 10**10
ROW_STEP = 11  # 1.1e-9 s per row inside a block
BLOCK_ROWS = 4096
SHORT_BLOCK_EVERY = 1280  # one block in 1,280 has 4,095 rows
BLOCK_GAP_SHORT = 10_000_000  # 1.0 ms between block starts
BLOCK_GAP_EXTRA = 1_000_000  # +0.1 ms for the long gaps (1.1 ms)
LONG_GAP_SHARE = 0.64  # share of 1.1 ms gaps in the real file (mean block period 1.064 ms)

# --- cycles: lengths follow from the fault's stress (see FaultModel); kept inside CYCLE_RANGE s
CYCLE_RANGE = (5.5, 17.0)
SHIFT_GAIN, SHIFT_SHARE = 1.6, 0.35  # synth --shift: loudness of the shifted regime, share of train cycles in it

TRAIN_HEADER = b"acoustic_data,time_to_failure"
TEST_HEADER = b"acoustic_data"
SUB_HEADER = ",".join(SUBMISSION_COLUMNS)
CHUNK_BLOCKS = 512  # rows per generated chunk: about 2.1 million
WARMUP = 4096  # samples run through the filters before a piece, then dropped (longer than the FIRs and a few event decays)


@dataclass(frozen=True)
class Preset:
    train_rows: int
    test_segments: int
    time_scale: int  # the gap between blocks, as a multiple of the real one
    test_coverage: float = 0.9  # share of the test recording covered by segments


PRESETS: dict[str, Preset] = {
    "tiny": Preset(train_rows=5_500_000, test_segments=10, time_scale=32),
    "demo": Preset(train_rows=36_000_000, test_segments=200, time_scale=10),
    "full": Preset(train_rows=629_145_480, test_segments=2_624, time_scale=1, test_coverage=0.94),
}


@dataclass(frozen=True)
class FaultModel:
    """The fault's stress through its cycles, in units of the mean failure threshold.

    Each cycle loads linearly from its post-slip stress at its own rate and fails at its own
    threshold; the slip then drops the stress by about ``drop``. So a cycle's length is
    (threshold - start) / rate, and since a high threshold ends one cycle late and starts the next
    one high, consecutive lengths are anti-correlated (var T / (2 var T + var drop) at most 0.5).
    Calibrated to the 15 full real cycles: mean 10.7 s, sd 2.7 s, lag-1 correlation -0.44.
    """

    threshold_half_width: float = 0.185  # thresholds uniform in 1 +- this
    drop: float = 0.6  # mean stress drop at a slip (so cycles start near 0.4)
    drop_sd: float = 0.035  # normal, truncated at 2 sd
    rate_sd: float = 0.025  # log-sd of the per-cycle loading rate, truncated at 2 sd
    mean_seconds: float = 10.7  # mean cycle length: sets the mean loading rate
    # The test interval's regime (synth's default; --no-test-shift draws test cycles like train's):
    # larger slips, so its cycles start lower, quieter (the memory effect) and last longer; then its
    # loading rates are scaled so that the test segments' mean time to failure is test_ratio times
    # train's, as on the real data (6.32 s against 5.68 s, from leaderboard probing).
    test_drop: float = 1.11  # the test interval's mean stress drop, relative to train's
    test_ratio: float = 6.32 / 5.68


@dataclass(frozen=True)
class SignalModel:
    """Parameters of the fault's state, calibrated against difficulty; the signal's spectra, levels
    and envelopes are measured on real segments (``synth.measured``).

    The signal follows the fault's state, not the clock: activity ``a`` rises with the loading
    state ``u`` (0 at the mean post-slip stress, 1 at the mean threshold), plus precursors in the last
    second or so, plus a random state noise that every statistic of the signal shares.
    """

    baseline: tuple[float, float] = (4.3, 4.7)  # at the start and at the end of the whole recording
    load_gain: float = 0.55  # a = load_gain * max(u, 0) ** load_power + precursor + noise
    load_power: float = 2.0
    precursor: float = 0.3  # weight of exp(-ttf / precursor_tau): foreshocks just before a slip
    precursor_tau: float = 0.6  # s
    noise_sd: tuple[float, float, float] = (0.03, 0.09, 0.07)  # state noise: fast, slow and per-cycle parts
    noise_blocks: float = 40.0  # correlation length of the fast part, in recorded blocks (~1 segment)
    noise_seconds: float = 2.0  # correlation time of the slow part, in seconds of the experiment
    drift: float = 0.12  # activity gained over the whole experiment (the gouge wears): test lies beyond train
    memory: float = 0.25  # log-drop of loudness at a cycle's start per sd of the slip before it
    memory_tau: float = 2.0  # s: how long the memory of the last slip lasts
    cycle_gain_sd: float = 0.12  # log-sd of a per-cycle loudness factor
    mod_sd: float = 0.1  # log-sd of the slow random modulation of loudness
    mod_periods: tuple[float, float] = (0.3, 3.0)  # s
    # the measured spectrum (synth.measured): the tone's and the low part's weights follow the
    # power state v = a * loudness through its quantiles over the test interval (STATE_KNOTS, so
    # that the synthetic test's weights have the real test's quantiles), the low part's also a noise
    low_blocks: float = 40.0  # correlation length of the low part's own noise, in recorded blocks
    quiet: float = 0.02  # activity after the emission, up to the labelled failure (the real windows there are quiet)
    fir_taps: int = 2047  # length of the spectral filters (0.0005 cycles/sample resolution)
    emission_peak: tuple[float, float] = (2900.0, 5500.0)  # real: the cycle's largest |x|, 2,900-5,500
    # s before the labelled failure: the real emission lies in the segment that ends 0.28-0.32 s before
    # it, in all 15 cycles; a segment spans 0.0385 s, so the emission starts about 0.32 s before
    emission_lead: tuple[float, float] = (0.318, 0.322)
    emission_tau: float = 4000.0  # samples
    emission_rows: int = 40_000


FAULT = FaultModel()
MODEL = SignalModel()
# Quantiles (measured.LEVEL_QUANTILES) of the power state v over the test recordings of `full`,
# seeds 0 and 1 (bench/measure_real.py --calibrate): v at these quantiles gets the real test
# segments' quantiles of the tone's weight. None: each experiment's own test quantiles.
STATE_KNOTS: np.ndarray | None = measured._table(
    """
    -0.2343 -0.07981 -0.03433 -0.00941 0.009234 0.02501 0.04043 0.05651 0.07507 0.09708 0.1215
    0.1491 0.1795 0.216 0.2572 0.3059 0.3583 0.4352 0.5539 0.7223 1.434
    """
)


# --- the time base ---------------------------------------------------------------------------------
@dataclass
class Recording:
    """Per-block description of one continuous recording (train, or the test interval)."""

    start_row: np.ndarray  # int64, first row of each block
    rows: np.ndarray  # int64, rows in each block
    ttf0: np.ndarray  # int64 units, time to failure at each block's first row
    cycle: np.ndarray  # int64, cycle index (global over train and test)
    time: np.ndarray  # float64 s since the start of the experiment, at each block's first row
    n_rows: int
    emissions: list[tuple[int, int]]  # (first row, cycle) of each large emission in this recording
    cycle_rows: list[int]  # rows where a cycle starts (0 and every jump up)
    # per block, set by _experiment: activity in [0, 1], loudness factor, baseline
    activity: np.ndarray | None = None
    loudness: np.ndarray | None = None
    baseline: np.ndarray | None = None
    power: np.ndarray | None = None  # the power state: unclipped activity * loudness
    tone: np.ndarray | None = None  # weights of the measured spectra (synth.measured)
    low: np.ndarray | None = None


@dataclass
class Cycles:
    """Per cycle (global index over train and test): the fault's stress path and the length it gives."""

    threshold: np.ndarray  # stress at failure
    start: np.ndarray  # stress after the previous slip
    rate: np.ndarray  # stress per second
    slip: np.ndarray  # size of the previous slip in sd units (0 for the first cycle)
    seconds: np.ndarray  # length: (threshold - start) / rate
    rest: float  # the mean post-slip stress (1 - the mean drop): where the loading state u is 0


def _truncnorm(rng: np.random.Generator, sd: float, n: int) -> np.ndarray:
    """Normal(0, sd) draws truncated at +-2 sd (redrawn, so the shape stays normal inside)."""
    out = rng.normal(0, sd, n)
    bad = np.abs(out) > 2 * sd
    while bad.any():
        out[bad] = rng.normal(0, sd, int(bad.sum()))
        bad = np.abs(out) > 2 * sd
    return out


def _cycles(rng: np.random.Generator, n: int, fault: FaultModel = FAULT, after: float | None = None, longer: float = 1.0) -> Cycles:
    """Stress paths of ``n`` consecutive cycles; a threshold that would give a cycle outside
    CYCLE_RANGE is moved to the range's edge (a few percent of cycles), the next start follows it.

    ``after``: the threshold of the cycle before the first (the first then starts after its slip);
    ``longer``: mean stress drop (and CYCLE_RANGE) relative to ``fault``'s, for the test's regime.
    Slips are always measured against ``fault.drop``, so larger ones carry the memory effect.
    """
    w = fault.threshold_half_width
    threshold = 1 + rng.uniform(-w, w, n)
    drops = fault.drop * longer + _truncnorm(rng, fault.drop_sd, n + 1)
    rate = fault.drop / fault.mean_seconds * np.exp(_truncnorm(rng, fault.rate_sd, n))
    lo, hi = CYCLE_RANGE[0] * longer, CYCLE_RANGE[1] * longer
    start = np.empty(n)
    s = (1 if after is None else after) - drops[0]
    for i in range(n):
        start[i] = s
        threshold[i] = np.clip(threshold[i], s + rate[i] * lo, s + rate[i] * hi)
        s = threshold[i] - drops[i + 1]
    slip = (drops[:n] - fault.drop) / fault.drop_sd
    if after is None:
        slip[0] = 0.0  # the first cycle of the experiment: no slip before it
    return Cycles(threshold, start, rate, slip, (threshold - start) / rate, 1 - fault.drop)


def _replace_cycles(cycles: Cycles, first: int, new: Cycles) -> None:
    """Cycles ``first``.. become ``new``'s (the test interval's regime)."""
    for name in ("threshold", "start", "rate", "slip", "seconds"):
        getattr(cycles, name)[first:] = getattr(new, name)[: len(cycles.seconds) - first]


def _segment_ends(rec: Recording) -> np.ndarray:
    """The last row of each whole 150,000-row segment of a recording (the train targets' rows)."""
    return np.arange(1, rec.n_rows // SEGMENT_ROWS + 1, dtype=np.int64) * SEGMENT_ROWS - 1


def _mean_ttf(rec: Recording) -> float:
    """Mean time to failure over a recording's rows, in seconds."""
    mid = rec.ttf0 - ROW_STEP * (rec.rows - 1) / 2
    return float(np.average(mid, weights=rec.rows) / UNITS_PER_S)


class _Clock:
    """Hands out consecutive blocks of the whole experiment: gaps, row counts and times."""

    def __init__(self, rng: np.random.Generator, scale: int) -> None:
        self.scale = scale
        self.block = 0  # global block index
        self.t = 0.0  # s since the start of the experiment
        self.phase = rng.random()
        self.short_phase = int(rng.integers(SHORT_BLOCK_EVERY))

    def gaps(self, k: np.ndarray) -> np.ndarray:
        """Units between the starts of global blocks k and k+1: 1.0 or 1.1 ms, evenly spread."""
        long = np.floor((k + 1) * LONG_GAP_SHARE + self.phase) - np.floor(k * LONG_GAP_SHARE + self.phase)
        return (BLOCK_GAP_SHORT + BLOCK_GAP_EXTRA * long.astype(np.int64)) * self.scale

    def rows(self, k: np.ndarray) -> np.ndarray:
        return np.where((k + self.short_phase) % SHORT_BLOCK_EVERY == 0, BLOCK_ROWS - 1, BLOCK_ROWS).astype(np.int64)

    def cycle(self, start_units: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Blocks of one cycle from ``start_units`` to failure: (block ttf0, block rows, block time)."""
        n_max = int(start_units // (BLOCK_GAP_SHORT * self.scale)) + 2
        k = self.block + np.arange(n_max, dtype=np.int64)
        gaps = self.gaps(k)
        rows = self.rows(k)
        ttf0 = start_units - np.concatenate([[0], np.cumsum(gaps[:-1])])
        n = int(np.count_nonzero(ttf0 - (rows - 1) * ROW_STEP > 0))  # ttf0 falls, so a prefix
        ttf0, rows = ttf0[:n], rows[:n]
        times = self.t + (start_units - ttf0) / UNITS_PER_S
        self.block += n
        self.t = float(times[-1] + gaps[n - 1] / UNITS_PER_S)
        return ttf0, rows, times


def _to_units(seconds: float, offset: int) -> int:
    """Seconds to units on the 0.1 ms grid of block starts, less a fixed sub-grid offset."""
    return int(round(seconds * 1e4)) * 10**6 - offset


def _record(
    clock: _Clock, lengths: itertools.count, n_rows: int, first: tuple[int, int] | None, offset: int, emission_lead: np.ndarray
) -> tuple[Recording, int]:
    """Blocks for ``n_rows`` rows; cycles come from ``lengths`` (cycle index, seconds).

    ``first``: (cycle index, start units) for a partial first cycle. Returns the recording and the
    index of the cycle it was cut in.
    """
    parts: list[tuple[np.ndarray, ...]] = []
    cycle_rows: list[int] = []
    emissions: list[tuple[int, int]] = []
    row = 0
    while row < n_rows:
        if first is not None:
            c, start = first
            first = None
        else:
            c, seconds = next(lengths)
            start = _to_units(seconds, offset)
        ttf0, rows, times = clock.cycle(start)
        starts = row + np.concatenate([[0], np.cumsum(rows[:-1])])
        cycle_rows.append(row)
        hit = np.flatnonzero(ttf0 < emission_lead[c] * UNITS_PER_S)
        if len(hit) and starts[hit[0]] < n_rows:
            emissions.append((int(starts[hit[0]]), c))
        parts.append((starts, rows, ttf0, np.full(len(rows), c, dtype=np.int64), times))
        row += int(rows.sum())
    cut_cycle = c
    cat = [np.concatenate(p) for p in zip(*parts)]
    keep = cat[0] < n_rows
    start_row, rows, ttf0, cyc, times = (a[keep] for a in cat)
    rows = np.minimum(rows, n_rows - start_row)
    return Recording(start_row, rows, ttf0, cyc, times, n_rows, emissions, cycle_rows), cut_cycle


@dataclass
class _Experiment:
    train: Recording
    test: Recording
    cycles: Cycles
    cycle_gain: np.ndarray
    cycle_offset: np.ndarray  # unit-sd activity offset of each cycle
    emission_peak: np.ndarray
    emission_lead: np.ndarray  # s before the labelled failure
    mod: tuple[np.ndarray, np.ndarray, np.ndarray]  # amplitudes, periods, phases of the modulation
    total_time: float
    time_scale: int
    regime: np.ndarray | None = None  # per cycle: in the shifted amplitude regime (synth --shift)

    @property
    def cycle_seconds(self) -> np.ndarray:
        return self.cycles.seconds


def _experiment(
    preset: Preset, seed: int, model: SignalModel = MODEL, fault: FaultModel = FAULT, shift: bool = False, test_shift: bool = True
) -> _Experiment:
    """The whole experiment's time base, cycles and per-block state.

    ``test_shift``: the test interval in the real regime (``FaultModel.test_drop``, ``test_ratio``):
    its cycles are redrawn with larger slips, then their loading rates scaled until the test
    recording's mean time to failure is ``test_ratio`` times the train segments'. Train is the
    same either way.

    ``shift``: a known train/test shift, to test drift diagnostics and the choice of train cycles:
    the test cycles and about a third of the train cycles (seeded) are in a louder amplitude regime
    (``SHIFT_GAIN``); the other draws, and so every other cycle, are unchanged.
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
    exp = _Experiment(train, test, cycles, gain, cycle_offset, peak, lead, mod, clock.t, preset.time_scale)
    if shift:
        exp.regime = np.random.default_rng([seed, 6]).random(n_cycles) < SHIFT_SHARE
        exp.regime[0] = False  # the partial first cycle
        exp.regime[cut + 1 :] = True  # every cycle after train: the test recording
    for i, rec in enumerate((train, test)):
        raw, rec.loudness = _activity(exp, rec, model, np.random.default_rng([seed, 5, i]))
        rec.activity, rec.power = np.clip(raw, 0.0, 1.0), raw * rec.loudness
        rec.baseline = model.baseline[0] + (model.baseline[1] - model.baseline[0]) * rec.time / exp.total_time
    knots = STATE_KNOTS if STATE_KNOTS is not None else np.quantile(test.power, measured.LEVEL_QUANTILES)
    for i, rec in enumerate((train, test)):
        rec.tone, rec.low = _levels(rec, knots, model, np.random.default_rng([seed, 8, i]))
    return exp


# --- the signal ------------------------------------------------------------------------------------
@functools.cache
def _filters(taps: int) -> dict[str, np.ndarray]:
    """Minimum-phase FIR filters whose output, for unit white noise in, has the measured power
    spectra (synth.measured): ``floor``, ``tone`` and ``low``; causal, so a burst rings after it starts."""
    from scipy.signal import minimum_phase

    f = np.fft.rfftfreq(2 * taps - 1)
    out = {}
    for name, power in (("floor", measured.FLOOR), ("tone", measured.TONE), ("low", measured.LOW)):
        p = np.interp(f, measured.FREQ_KNOTS, power)
        p = np.maximum(p, 1e-7 * p.max())  # the log of the homomorphic method needs no zeros
        # linear phase with |H|^2 = p (minimum_phase(half=True) returns the square root's magnitude)
        h = np.roll(np.fft.irfft(p, 2 * taps - 1), taps - 1) * np.hanning(2 * taps - 1)
        h = minimum_phase(h, method="homomorphic")[:taps]
        # unit white noise in: output variance = the spectrum's integral over 0-0.5 cycles/sample
        out[name] = (h * np.sqrt(np.trapezoid(p, f) / np.sum(h * h))).astype(np.float32)
    return out


def _filter(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    from scipy.signal import oaconvolve

    return oaconvolve(x, h)[: len(x)]


def _expand(rec: Recording, lo: int, hi: int, values: list[np.ndarray]) -> list[np.ndarray]:
    """Per-row copies of per-block values for rows [lo, hi)."""
    b0 = int(np.searchsorted(rec.start_row, lo, side="right")) - 1
    b1 = int(np.searchsorted(rec.start_row, hi, side="left"))
    first = rec.start_row[b0:b1]
    counts = np.minimum(first + rec.rows[b0:b1], hi) - np.maximum(first, lo)
    return [np.repeat(v[b0:b1], counts) for v in values]


def _ttf_units(rec: Recording, lo: int, hi: int) -> np.ndarray:
    """Time to failure of rows [lo, hi), int64 units."""
    first, ttf0 = _expand(rec, lo, hi, [rec.start_row, rec.ttf0])
    return ttf0 - ROW_STEP * (np.arange(lo, hi, dtype=np.int64) - first)


def _ttf_at(rec: Recording, rows: np.ndarray) -> np.ndarray:
    """Time to failure at some rows, int64 units (without expanding the whole recording)."""
    rows = np.asarray(rows, np.int64)
    b = np.searchsorted(rec.start_row, rows, side="right") - 1
    return rec.ttf0[b] - ROW_STEP * (rows - rec.start_row[b])


def _ar1(rng: np.random.Generator, n: int, length: float, dtype: type = np.float64) -> np.ndarray:
    """A stationary unit-variance AR(1) series of ``n`` steps with correlation length ``length`` steps
    (float32 for the signal's per-sample series: half the time of float64)."""
    from scipy.signal import lfilter

    phi = np.exp(-1.0 / length)
    warm = int(5 * length) + 1
    e = rng.standard_normal(n + warm, dtype=dtype)
    return lfilter(np.array([np.sqrt(1 - phi * phi)], dtype), np.array([1.0, -phi], dtype), e)[warm:]


SMOOTH_STEP = 16  # samples between the knots of the signal's slow series (correlation lengths of 300 and more)


def _smooth(rng: np.random.Generator, n: int, parts: list[tuple[float, float]]) -> np.ndarray:
    """A sum of stationary AR(1) series, ``(correlation length in samples, sd)`` each, over ``n``
    samples: drawn every SMOOTH_STEP samples and interpolated, which costs 1/16 of the random draws."""
    k = n // SMOOTH_STEP + 2
    knots = sum(sd * _ar1(rng, k, length / SMOOTH_STEP) for length, sd in parts)
    return np.interp(np.arange(n, dtype=np.float64), np.arange(k) * SMOOTH_STEP, knots).astype(np.float32)


def stress(exp: _Experiment, rec: Recording) -> np.ndarray:
    """Per block: the fault's loading state u (0 at the mean post-slip stress, 1 at the mean threshold)."""
    c = exp.cycles
    tsf = c.seconds[rec.cycle] - rec.ttf0 / UNITS_PER_S  # seconds since the cycle started
    s = c.start[rec.cycle] + c.rate[rec.cycle] * tsf
    return (s - c.rest) / (1 - c.rest)


def _activity(exp: _Experiment, rec: Recording, model: SignalModel, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per block: activity a in [0, 1] and loudness factor.

    Activity follows the loading state (not the time left), plus precursors late in the cycle and a
    state noise with a fast part (about one segment of recorded blocks, so every preset scatters its
    segments alike) and a slow part (seconds of the experiment). After the cycle's emission, a few
    tenths of a second before the labelled failure, the fault is quiet. Loudness: a per-cycle gain,
    a slow modulation, and the memory effect (a cycle after a large slip starts quiet).
    """
    ttf = rec.ttf0 / UNITS_PER_S
    u = np.maximum(stress(exp, rec), 0.0)
    block_seconds = (BLOCK_GAP_SHORT + LONG_GAP_SHARE * BLOCK_GAP_EXTRA) / UNITS_PER_S  # at real scale
    noise = model.noise_sd[0] * _ar1(rng, len(ttf), model.noise_blocks) + model.noise_sd[1] * _ar1(rng, len(ttf), model.noise_seconds / block_seconds)
    noise += model.noise_sd[2] * exp.cycle_offset[rec.cycle] + model.drift * (rec.time / exp.total_time - 0.5)
    a = model.load_gain * u**model.load_power + model.precursor * np.exp(-ttf / model.precursor_tau) + noise
    a = np.where(ttf < exp.emission_lead[rec.cycle], model.quiet + 0.2 * noise, a)
    amp, per, ph = exp.mod
    slow = np.sin(2 * np.pi * rec.time[:, None] / per[None, :] + ph[None, :]) @ amp
    tsf = exp.cycles.seconds[rec.cycle] - ttf
    memory = -model.memory * exp.cycles.slip[rec.cycle] * np.exp(-tsf / model.memory_tau)
    loud = exp.cycle_gain[rec.cycle] * np.exp(model.mod_sd * slow + memory)
    if exp.regime is not None:
        loud = loud * np.where(exp.regime[rec.cycle], SHIFT_GAIN, 1.0)
    return a, loud  # a unclipped: below 0 early in a quiet cycle, so the power state stays continuous


def _levels(rec: Recording, knots: np.ndarray, model: SignalModel, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per block: the weights of the measured tone and low spectra (synth.measured).

    The power state v (unclipped activity * loudness) is mapped through its quantiles (``knots``) to the real
    segments' quantiles of the tone's weight; the low part's weight has the real rank correlation
    with it (a Gaussian copula) and a noise of its own.
    """
    from scipy.special import ndtr, ndtri

    q = measured.LEVEL_QUANTILES
    rank = np.interp(rec.power, knots, q)
    tone = np.interp(rank, q, measured.TONE_LEVEL)
    rho = 2 * np.sin(np.pi * measured.LOW_TONE_SPEARMAN / 6)  # Pearson of the copula with that Spearman
    z = rho * ndtri(np.clip(rank, 1e-4, 1 - 1e-4)) + np.sqrt(1 - rho * rho) * _ar1(rng, len(rank), model.low_blocks)
    return tone, np.interp(ndtr(z), q, measured.LOW_LEVEL)


def _emission(exp: _Experiment, seed: int, cycle: int, model: SignalModel) -> np.ndarray:
    rng = np.random.default_rng([seed, 3, cycle])
    n = model.emission_rows
    h = _filters(model.fir_taps)
    carrier = _filter(rng.standard_normal(n + WARMUP).astype(np.float32), h["tone"] + h["low"])[WARMUP:]
    k = np.arange(n)
    env = (1 - np.exp(-k / 40.0)) * np.exp(-k / model.emission_tau)
    wave = env * carrier
    return wave * (exp.emission_peak[cycle] / np.abs(wave).max())


def _render(exp: _Experiment, rec: Recording, lo: int, hi: int, rng: np.random.Generator, seed: int, model: SignalModel = MODEL) -> np.ndarray:
    """The int16 signal of rows [lo, hi) of a recording: the measured floor, plus the tone and the low
    part at their per-block weights, Gaussian noise under log-normal envelopes (short emission
    events), plus the baseline with its slow wander, and the quake's emission."""
    n = hi - lo
    tone, low, base = (v.astype(np.float32) for v in _expand(rec, lo, hi, [rec.tone, rec.low, rec.baseline]))
    h = _filters(model.fir_taps)
    white = rng.standard_normal((3, n + WARMUP), dtype=np.float32)
    pad = lambda v: np.concatenate([np.full(WARMUP, v[0], np.float32), v])  # noqa: E731
    # Emission comes in short events: the tone's and the low part's amplitudes follow log-normal
    # envelopes (measured.ENVELOPE), partly shared (ENVELOPE_CORR), each with mean power 1
    corr = measured.ENVELOPE_CORR
    sd_tone, sd_low, length = (np.float32(v) for v in measured.ENVELOPE)
    shared, own = _smooth(rng, n + WARMUP, [(length, 1.0)]), _smooth(rng, n + WARMUP, [(length, 1.0)])
    log_tone = sd_tone * shared - sd_tone**2
    log_low = sd_low * (np.float32(corr) * shared + np.float32(np.sqrt(1 - corr * corr)) * own) - sd_low**2
    y_tone = _filter(white[1] * np.exp(log_tone) * np.sqrt(pad(tone)), h["tone"])
    y_low = _filter(white[2] * np.exp(log_low) * np.sqrt(pad(low)), h["low"])
    base += _smooth(rng, n, [(length, np.sqrt(var)) for length, var in measured.WANDER])
    y = base + (_filter(white[0], h["floor"]) + y_tone + y_low)[WARMUP:]
    for row, cycle in rec.emissions:
        e0, e1 = max(lo, row), min(hi, row + model.emission_rows)
        if e0 < e1:
            wave = _emission(exp, seed, cycle, model)
            y[e0 - lo : e1 - lo] += wave[e0 - row : e1 - row].astype(np.float32)
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


# --- text formatting ------------------------------------------------------------------------------
# A row of train.csv is built in a fixed 24-byte frame from three 8-byte table look-ups, then the
# unused bytes are dropped with a keep mask (one look-up too):
#   col 0 '\n' | 1 unused | 2-7 signal, right-aligned | 8 ',' | 9-10 whole seconds | 11 '.' |
#   12-21 ten decimals | 22-23 unused.
# Each row *starts* with its newline: the header is written without one and the file ends with one.
_W = 24


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) ASCII digits, zero-padded."""
    out = np.empty((len(values), width), np.uint8)
    v = values.astype(np.int64)
    for j in range(width):
        out[:, width - 1 - j] = v % 10 + 48
        v //= 10
    return out


def _trailing_zeros(digits: np.ndarray) -> np.ndarray:
    tz = np.zeros(len(digits), np.int16)
    run = np.ones(len(digits), bool)
    for j in range(digits.shape[1] - 1, -1, -1):
        run &= digits[:, j] == 48
        tz += run
    return tz


@functools.cache
def _tables() -> dict[str, np.ndarray]:
    x = np.arange(-32768, 32768)
    a = np.abs(x)
    nd = 1 + (a >= 10).astype(np.int16) + (a >= 100) + (a >= 1000) + (a >= 10_000)
    neg = x < 0
    sig = np.zeros((65536, 8), np.uint8)
    sig[:, 0] = 10
    sig[:, 3:8] = _digits(a, 5)
    sig[np.flatnonzero(neg), 7 - nd[neg]] = 45
    i = np.arange(1_000_000)
    head = np.empty((1_000_000, 8), np.uint8)  # ',' + two digits of whole seconds + '.' + 4 decimals
    head[:, 0], head[:, 3] = 44, 46
    head[:, 1:3] = _digits(i // 10_000, 2)
    head[:, 4:8] = _digits(i % 10_000, 4)
    tail = np.zeros((1_000_000, 8), np.uint8)  # the last 6 decimals
    tail[:, :6] = _digits(i, 6)
    pat = np.zeros((6, 2, 10, _W), bool)  # signal start col - 2, two-digit seconds, decimals - 1
    for s, two, k in itertools.product(range(6), range(2), range(10)):
        p = pat[s, two, k]
        p[[0, 8, 10, 11]] = True
        p[2 + s : 8] = True
        p[9] = bool(two)
        p[12 : 13 + k] = True
    return {
        "sig": sig.view(np.uint64).ravel(),
        "sig_start": (6 - nd - neg).astype(np.int16),  # first used col - 2
        "sig_pat": np.array([[True, False] + [c >= s for c in range(2, 8)] for s in range(2, 8)]),
        "head": head.view(np.uint64).ravel(),
        "tail": tail.view(np.uint64).ravel(),
        "tz6": _trailing_zeros(tail[:, :6]),
        "tz4": _trailing_zeros(_digits(np.arange(10_000), 4)),
        "pat": pat.reshape(-1, _W).view(np.dtype((np.void, _W))).ravel(),
    }


def format_train_rows(x: np.ndarray, ttf_units: np.ndarray) -> np.ndarray:
    """Rows ``\n<signal>,<time>`` as uint8 text; times from int64 units of 1e-10 s (< 100 s)."""
    t = _tables()
    xi = x.astype(np.int32) + 32768
    whole = ttf_units // UNITS_PER_S
    if len(whole) and (whole.max() >= 100 or whole.min() < 0):
        raise AssertionError("time to failure outside [0, 100) s")
    frac = ttf_units - whole * UNITS_PER_S
    first4 = frac // 10**6
    last6 = frac - first4 * 10**6
    words = np.empty((len(xi), 3), np.uint64)
    words[:, 0] = t["sig"][xi]
    words[:, 1] = t["head"][whole * 10_000 + first4]
    words[:, 2] = t["tail"][last6]
    tz = t["tz6"][last6]
    z = np.flatnonzero(last6 == 0)
    tz[z] += t["tz4"][first4[z]]
    code = (t["sig_start"][xi] * 2 + (whole >= 10)) * 10 + 9 - np.minimum(tz, 9)
    return words.view(np.uint8).ravel()[t["pat"][code].view(bool)]


def format_signal_rows(x: np.ndarray) -> np.ndarray:
    """Rows ``\n<signal>`` as uint8 text."""
    t = _tables()
    xi = x.astype(np.int32) + 32768
    return t["sig"][xi].view(np.uint8)[t["sig_pat"][t["sig_start"][xi]].ravel()]


def format_times(ttf_units: np.ndarray) -> list[str]:
    """Times as text, the same format as in train.csv (for the small truth file)."""
    text = format_train_rows(np.zeros(len(ttf_units), np.int16), np.asarray(ttf_units, np.int64)).tobytes()
    return [line[2:] for line in text.decode().split("\n")[1:]]


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


def write_dataset(out: Path, preset: str, seed: int, shift: bool = False, test_shift: bool = True) -> dict:
    """Write a synthetic dataset in Kaggle's layout into ``out``; return what was written, which
    ``synth.json`` beside the files records (with the true mean time to failure of train and test).

    ``test_shift``: the test interval in the real regime (longer cycles, ``FaultModel.test_ratio``);
    False draws its cycles like train's. ``shift``: the known train/test shift of ``_experiment``;
    ``regime.json`` beside the files names the train cycles (numbered as the features stage numbers
    them) that share the test's regime.
    """
    if preset not in PRESETS:
        raise LabquakeError(f"synth: unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    if seed < 0:
        raise LabquakeError(f"synth: seed must be >= 0, got {seed}")
    p = PRESETS[preset]
    out = Path(out)
    t0 = time.perf_counter()
    exp = _experiment(p, seed, shift=shift, test_shift=test_shift)
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
