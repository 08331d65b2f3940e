"""The synthetic experiment's time base: the fault's cycles (and the test interval's regime), the
clock that hands out Kaggle's blocks of rows, and per-block recordings (see the package docstring)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from labquake.config import SEGMENT_ROWS

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


FAULT = FaultModel()


@dataclass
class Timeline:
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


def _segment_ends(rec: Timeline) -> np.ndarray:
    """The last row of each whole 150,000-row segment of a recording (the train targets' rows)."""
    return np.arange(1, rec.n_rows // SEGMENT_ROWS + 1, dtype=np.int64) * SEGMENT_ROWS - 1


def _mean_ttf(rec: Timeline) -> float:
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
) -> tuple[Timeline, int]:
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
    return Timeline(start_row, rows, ttf0, cyc, times, n_rows, emissions, cycle_rows), cut_cycle


def _expand(rec: Timeline, lo: int, hi: int, values: list[np.ndarray]) -> list[np.ndarray]:
    """Per-row copies of per-block values for rows [lo, hi)."""
    b0 = int(np.searchsorted(rec.start_row, lo, side="right")) - 1
    b1 = int(np.searchsorted(rec.start_row, hi, side="left"))
    first = rec.start_row[b0:b1]
    counts = np.minimum(first + rec.rows[b0:b1], hi) - np.maximum(first, lo)
    return [np.repeat(v[b0:b1], counts) for v in values]


def _ttf_units(rec: Timeline, lo: int, hi: int) -> np.ndarray:
    """Time to failure of rows [lo, hi), int64 units."""
    first, ttf0 = _expand(rec, lo, hi, [rec.start_row, rec.ttf0])
    return ttf0 - ROW_STEP * (np.arange(lo, hi, dtype=np.int64) - first)


def _ttf_at(rec: Timeline, rows: np.ndarray) -> np.ndarray:
    """Time to failure at some rows, int64 units (without expanding the whole recording)."""
    rows = np.asarray(rows, np.int64)
    b = np.searchsorted(rec.start_row, rows, side="right") - 1
    return rec.ttf0[b] - ROW_STEP * (rows - rec.start_row[b])
