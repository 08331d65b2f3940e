"""The synthetic signal: the fault's activity, the measured spectra's weights and envelopes, and the
int16 samples of any rows of a recording (see the package docstring and ``synth.measured``)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from labquake.synth import measured
from labquake.synth.timebase import BLOCK_GAP_EXTRA, BLOCK_GAP_SHORT, LONG_GAP_SHARE, UNITS_PER_S, Timeline, _expand

if TYPE_CHECKING:
    from labquake.synth import _Experiment

SHIFT_GAIN, SHIFT_SHARE = 1.6, 0.35  # synth --shift: loudness of the shifted regime, share of train cycles in it
WARMUP = 4096  # samples run through the filters before a piece, then dropped (longer than the FIRs and a few event decays)


@dataclass(frozen=True)
class SignalModel:
    """Parameters of the fault's state, calibrated against difficulty; the signal's spectra, levels
    and envelopes are measured on real segments (``synth.measured``).

    The signal follows the fault's state, not the clock: activity ``a`` rises with the loading
    state ``u`` (0 at the mean post-slip stress, 1 at the mean threshold), plus precursors in the last
    second or so, plus a random state noise that every statistic of the signal shares.
    """

    # the baseline (the signal's mean), in train and in test: the real train's mean is 4.52, the 100
    # real test segments' means average 4.14 (sd 0.28); the 16 real windows around a failure scatter
    # as widely (sd 0.28) with no trend along the file (Spearman 0.01 with their position)
    baseline: tuple[float, float] = (4.52, 4.14)
    baseline_sd: float = 0.28  # of its slow wander between segments
    baseline_seconds: float = 1.0  # correlation time of the wander: segments of one cycle share it
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


MODEL = SignalModel()
# Quantiles (measured.LEVEL_QUANTILES) of the power state v over the test recordings of `full`,
# seeds 0 and 1 (bench/measure_real.py --calibrate): v at these quantiles gets the real test
# segments' quantiles of the tone's weight.
STATE_KNOTS = measured._parse_table(
    """
    -0.2343 -0.07981 -0.03433 -0.00941 0.009234 0.02501 0.04043 0.05651 0.07507 0.09708 0.1215
    0.1491 0.1795 0.216 0.2572 0.3059 0.3583 0.4352 0.5539 0.7223 1.434
    """
)


def fir(knots: np.ndarray, power: np.ndarray, taps: int) -> np.ndarray:
    """A minimum-phase FIR filter whose output, for unit white noise in, has the power spectrum
    ``power`` at ``knots`` (cycles/sample, linear between them); causal, so a burst rings after it starts."""
    from scipy.signal import minimum_phase

    f = np.fft.rfftfreq(2 * taps - 1)
    p = np.interp(f, knots, power)
    p = np.maximum(p, 1e-7 * p.max())  # the log of the homomorphic method needs no zeros
    # linear phase with |H|^2 = p (minimum_phase(half=True) returns the square root's magnitude)
    h = np.roll(np.fft.irfft(p, 2 * taps - 1), taps - 1) * np.hanning(2 * taps - 1)
    h = minimum_phase(h, method="homomorphic")[:taps]
    # unit white noise in: output variance = the spectrum's integral over 0-0.5 cycles/sample
    return h * np.sqrt(np.trapezoid(p, f) / np.sum(h * h))


@functools.cache
def _filters(taps: int) -> dict[str, np.ndarray]:
    """The filters of the measured spectra (synth.measured): ``floor``, ``tone`` and ``low``."""
    floor = measured.FLOOR + np.pad(measured.FLOOR_FILL, (0, len(measured.FLOOR) - len(measured.FLOOR_FILL)))
    parts = (("floor", floor), ("tone", measured.TONE), ("low", measured.LOW))
    return {name: fir(measured.FREQ_KNOTS, power, taps).astype(np.float32) for name, power in parts}


def _filter(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    from scipy.signal import oaconvolve

    return oaconvolve(x, h)[: len(x)]


def _ar1(rng: np.random.Generator, n: int, length: float) -> np.ndarray:
    """A stationary unit-variance AR(1) series of ``n`` steps with correlation length ``length`` steps."""
    from scipy.signal import lfilter

    phi = np.exp(-1.0 / length)
    warm = int(5 * length) + 1
    e = rng.standard_normal(n + warm)
    return lfilter([np.sqrt(1 - phi * phi)], [1.0, -phi], e)[warm:]


SMOOTH_STEP = 16  # samples between the knots of the signal's slow series (correlation lengths of 300 and more)


def _smooth(rng: np.random.Generator, n: int, parts: list[tuple[float, float]]) -> np.ndarray:
    """A sum of stationary AR(1) series, ``(correlation length in samples, sd)`` each, over ``n``
    samples: drawn every SMOOTH_STEP samples and interpolated, which costs 1/16 of the random draws."""
    k = n // SMOOTH_STEP + 2
    knots = sum(sd * _ar1(rng, k, length / SMOOTH_STEP) for length, sd in parts)
    return np.interp(np.arange(n, dtype=np.float64), np.arange(k) * SMOOTH_STEP, knots).astype(np.float32)


def stress(exp: _Experiment, rec: Timeline) -> np.ndarray:
    """Per block: the fault's loading state u (0 at the mean post-slip stress, 1 at the mean threshold)."""
    c = exp.cycles
    tsf = c.seconds[rec.cycle] - rec.ttf0 / UNITS_PER_S  # seconds since the cycle started
    s = c.start[rec.cycle] + c.rate[rec.cycle] * tsf
    return (s - c.rest) / (1 - c.rest)


def _activity(exp: _Experiment, rec: Timeline, model: SignalModel, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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


def _levels(rec: Timeline, knots: np.ndarray, model: SignalModel, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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


def _event_envelopes(rng: np.random.Generator, tone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the tone's and the low part's amplitude envelopes (mean power 1 each) as
    acoustic-emission events (synth --bursts events), given the tone's weight per sample. Onsets at
    measured.EVENT_RATE per sample times the weight to measured.EVENT_RATE_POWER (louder states have
    more events, not only larger ones), each with a log-normal energy (log sd measured.EVENT_SD) over
    its rate, and a low share of its own (log sd measured.EVENT_LOW_SD); each event's power starts at
    once and decays exponentially (measured.EVENT_DECAY samples), as the real events do."""
    from scipy.signal import lfilter

    n = len(tone)
    rate = measured.EVENT_RATE * np.asarray(tone, dtype=np.float64) ** measured.EVENT_RATE_POWER
    expected = np.cumsum(rate)
    at = np.searchsorted(expected, rng.uniform(0, expected[-1], rng.poisson(expected[-1])))
    sd, low_sd = measured.EVENT_SD, measured.EVENT_LOW_SD
    energy = np.exp(sd * rng.standard_normal(len(at)) - sd * sd / 2) / rate[at]
    share = np.exp(low_sd * rng.standard_normal(len(at)) - low_sd * low_sd / 2)
    phi = np.exp(-1.0 / measured.EVENT_DECAY)
    out = []
    for e in (energy, energy * share):
        impulses = np.bincount(at, weights=e, minlength=n)
        power = lfilter([1 - phi], [1.0, -phi], impulses)  # unit area: mean power 1
        out.append(np.sqrt(np.maximum(power, 0.0)).astype(np.float32))
    return out[0], out[1]


def _render(exp: _Experiment, rec: Timeline, lo: int, hi: int, rng: np.random.Generator, seed: int, model: SignalModel = MODEL) -> np.ndarray:
    """The int16 signal of rows [lo, hi) of a recording: the measured floor, plus the tone and the low
    part at their per-block weights, Gaussian noise under the envelopes of acoustic-emission events
    (``_event_envelopes``) or, with ``exp.bursts`` "envelopes", log-normal envelopes (config.BURSTS),
    plus the baseline with its slow wander, and the quake's emission."""
    n = hi - lo
    tone, low, base = (v.astype(np.float32) for v in _expand(rec, lo, hi, [rec.tone, rec.low, rec.baseline]))
    h = _filters(model.fir_taps)
    white = rng.standard_normal((3, n + WARMUP), dtype=np.float32)
    pad = lambda v: np.concatenate([np.full(WARMUP, v[0], np.float32), v])  # noqa: E731
    tone, low = pad(tone), pad(low)  # the filters' warm-up runs on the first block's weights
    if exp.bursts == "events":
        env_tone, env_low = _event_envelopes(rng, tone)
    else:
        # Emission comes in short events: the tone's and the low part's amplitudes follow log-normal
        # envelopes (measured.ENVELOPE_SD), partly shared (ENVELOPE_CORR), each with mean power 1
        corr, length = measured.ENVELOPE_CORR, measured.ENVELOPE_LENGTH
        # the envelopes' sds move with the level (measured.ENVELOPE_SD): linear in the tone weight's rank
        rank = np.interp(tone, measured.TONE_LEVEL, measured.LEVEL_QUANTILES).astype(np.float32)
        sd_tone, sd_low = (np.float32(a) + np.float32(b - a) * rank for a, b in (measured.ENVELOPE_SD["tone"], measured.ENVELOPE_SD["low"]))
        shared, own = _smooth(rng, n + WARMUP, [(length, 1.0)]), _smooth(rng, n + WARMUP, [(length, 1.0)])
        log_tone = sd_tone * shared - sd_tone**2
        log_low = sd_low * (np.float32(corr) * shared + np.float32(np.sqrt(1 - corr * corr)) * own) - sd_low**2
        env_tone, env_low = np.exp(log_tone), np.exp(log_low)
    y_tone = _filter(white[1] * env_tone * np.sqrt(tone), h["tone"])
    y_low = _filter(white[2] * env_low * np.sqrt(low), h["low"])
    base += _smooth(rng, n, [(samples, np.sqrt(var * k)) for (samples, var), k in zip(measured.WANDER, measured.WANDER_SCALE, strict=True)])
    y = base + (_filter(white[0], h["floor"]) + y_tone + y_low)[WARMUP:]
    for row, cycle in rec.emissions:
        e0, e1 = max(lo, row), min(hi, row + model.emission_rows)
        if e0 < e1:
            wave = _emission(exp, seed, cycle, model)
            y[e0 - lo : e1 - lo] += wave[e0 - row : e1 - row].astype(np.float32)
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)
