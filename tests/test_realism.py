"""The synthetic signal against real segments (tests/data): spectrum, tails, events, the 24 features,
the emission's position, the quiet failure windows and the test interval's regime.

Synthetic segments are rendered on the `full` preset's time base (the real 1.06 ms block spacing),
which is cheap because only the rendered windows are computed. The real ones are 20 of Kaggle's test
segments (``real_test_segments.npz``), the 24 features of all 2,624 (``real_test_features.parquet``)
and 4 of the 16 train windows that hold a failure (``real_quake_windows.npz``). The thresholds allow
for sampling: 20 real against 60 synthetic segments; ``make bench-realism`` measures the same at
scale.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from labquake import synth
from labquake.config import SEGMENT_ROWS
from labquake.stats import adversarial_auc, signal_stats

W = SEGMENT_ROWS
UNITS = synth.UNITS_PER_S


@pytest.fixture(scope="module")
def real(real_dir):
    return np.load(real_dir / "real_test_segments.npz")["acoustic_data"]


@pytest.fixture(scope="module")
def exp_full():
    return synth._experiment(synth.SIZES["full"], 0)


def _test_segments(exp) -> np.ndarray:
    """60 segments of the experiment's test recording, at random positions."""
    rec = exp.test
    starts = np.sort(np.random.default_rng(11).choice(rec.n_rows - W, 60, replace=False))
    return np.array([synth._render(exp, rec, int(s), int(s) + W, np.random.default_rng([0, 10, i]), 0) for i, s in enumerate(starts)])


@pytest.fixture(scope="module")
def synthetic_test(exp_full):
    return _test_segments(exp_full)


@pytest.fixture(scope="module")
def synthetic_envelopes(exp_full):
    """The same segments with ``synth --bursts envelopes`` (the generator before the events)."""
    return _test_segments(dataclasses.replace(exp_full, bursts="envelopes"))


@pytest.mark.parametrize("bursts", ["events", "envelopes"])
def test_plain_statistics_match_the_real_test(real, synthetic_test, synthetic_envelopes, bursts):
    r, s = signal_stats(real), signal_stats(synthetic_test if bursts == "events" else synthetic_envelopes)
    if bursts == "envelopes":
        # The log-normal envelopes rise as slowly as they fall: their bursts' asymmetry is 0.0-0.6
        # (10-90%) against the real 2.0-3.6 (docs/synthetic.md); the events have the real one
        assert s["burst_asymmetry"].quantile(0.9) < r["burst_asymmetry"].quantile(0.1)
        r, s = r.drop(columns="burst_asymmetry"), s.drop(columns="burst_asymmetry")
    else:
        assert abs(s["burst_asymmetry"].median() / r["burst_asymmetry"].median() - 1) < 0.2
    # The floor above 0.2 cycles/sample is the same in every real segment to 0.7%: there the medians
    # must agree to 2% (a KS statistic would only measure how constant each side is)
    floor = ["band_0.2", "band_0.35"]
    for c in floor:
        assert abs(s[c].median() / r[c].median() - 1) < 0.02, (c, s[c].median(), r[c].median())
    ks = {c: stats.ks_2samp(r[c], s[c]).statistic for c in r.columns if c not in floor}
    # 20 against 60 segments: a KS statistic of 0.43 is p = 0.01; the old generator failed most
    # (its zero crossings, low bands and frame powers did not overlap the real ones at all)
    bad = {c: round(v, 2) for c, v in ks.items() if v > 0.45}
    assert not bad, bad
    assert np.median(list(ks.values())) < 0.3, ks
    # medians; the tone's band scatters by 40% from segment to segment, so 20 real segments pin its
    # median to about 10% (1 sd), the others (spread 5-17%) to a few percent
    for c, tol in (("band_0.05", 0.3), ("band_0.1", 0.1), ("sd", 0.15), ("zero_crossings", 0.05), ("frame_log_power_sd", 0.2)):
        assert abs(s[c].median() / r[c].median() - 1) < tol, (c, s[c].median(), r[c].median())


def test_test_baseline_like_the_real_test(real, synthetic_test):
    """The test segments' means: the real ones average 4.14 (sd 0.28 over 100), below train's 4.52."""
    r, s = real.astype(np.float64).mean(axis=1), synthetic_test.astype(np.float64).mean(axis=1)
    assert abs(np.median(s) - np.median(r)) < 0.2, (np.median(s), np.median(r))
    assert 0.5 * r.std() < s.std() < 1.6 * r.std(), (s.std(), r.std())


def test_quietest_frames_keep_power_at_the_varying_parts_peaks(real, synthetic_test):
    """At 0.021 and 0.035 cycles/sample (the low part's peaks) the real frames never fall quiet: the
    10% quantile of the 2,048-sample frames' power there is the real one's within 40% (without
    synth.measured.FLOOR_FILL the synthetic one was 4-6x lower)."""
    bins = [43, 44, 45, 71, 72, 73]
    q = []
    for x in (real, synthetic_test):
        z = x.astype(np.float64) - np.median(x, axis=1, keepdims=True)
        n = z.shape[1] // 2048
        fr = z[:, : n * 2048].reshape(-1, 2048)
        p = np.abs(np.fft.rfft((fr - fr.mean(1, keepdims=True)) * np.hanning(2048), axis=1)) ** 2
        q.append(np.quantile(p[:, bins], 0.1, axis=0))
    ratio = q[1] / q[0]
    assert np.all((ratio > 0.6) & (ratio < 1.4)), dict(zip(bins, ratio.round(2)))


def test_the_24_features_match_the_real_test(real_dir, synthetic_test):
    from labquake.features import FEATURE_NAMES, segment_features

    real_f = pd.read_parquet(real_dir / "real_test_features.parquet")
    syn_f = pd.DataFrame([segment_features(x) for x in synthetic_test])
    ks = pd.Series({c: stats.ks_2samp(real_f[c], syn_f[c]).statistic for c in FEATURE_NAMES})
    # 60 synthetic segments: a perfect match gives a median near 0.1; the old generator gave 0.74
    assert ks.median() < 0.25, ks.sort_values().to_dict()
    assert ks.max() < 0.7, ks.sort_values().to_dict()
    # still told apart (bench-realism: 0.98-0.99 at scale), but no longer perfectly, as before
    assert adversarial_auc(real_f[FEATURE_NAMES].sample(600, random_state=0), syn_f, FEATURE_NAMES) < 0.995


def _window(exp, rec, start: int) -> np.ndarray:
    return synth._render(exp, rec, start, start + W, np.random.default_rng([0, 12, start]), 0)


def test_emission_lies_where_the_real_one_does_and_failure_is_quiet(exp_full, real_dir):
    """In every complete cycle the loudest segment ends 0.28-0.32 s before the labelled failure,
    and the segment that holds the failure is quiet (real: max |x| 50-210)."""
    rec = exp_full.train
    quake = np.load(real_dir / "real_quake_windows.npz")["acoustic_data"].astype(np.int64)
    real_quiet = np.abs(quake - np.median(quake, axis=1, keepdims=True)).max(axis=1)
    assert real_quiet.max() < 250
    for row, _ in rec.emissions[1:4]:
        k0 = row // W
        peaks = {}
        for k in range(k0 - 2, k0 + 3):  # the emission's segment and its neighbours
            peaks[k] = int(np.abs(_window(exp_full, rec, k * W).astype(np.int64) - 4).max())
        loudest = max(peaks, key=peaks.get)
        assert 2900 <= peaks[loudest] <= 5600
        ttf_end = synth._ttf_at(rec, np.array([(loudest + 1) * W - 1]))[0] / UNITS
        assert 0.27 <= ttf_end <= 0.33, ttf_end
        # the segment that holds the failure: the cycle's last rows
        end = next(r for r in rec.cycle_rows if r > row) - 1
        x = _window(exp_full, rec, end - W + 1).astype(np.int64)
        assert np.abs(x - np.median(x)).max() < 250


def test_test_interval_is_in_the_real_regime(exp_full):
    """Test cycles are longer: the test recording's mean time to failure is 1.11x the train
    segments' (real: 6.32 s against 5.68 s), for every seed; --no-test-shift draws them like train's."""
    for seed in (0, 1, 2):
        exp = exp_full if seed == 0 else synth._experiment(synth.SIZES["full"], seed)
        train = np.mean(synth._ttf_at(exp.train, synth._segment_ends(exp.train))) / UNITS
        assert abs(synth._mean_ttf(exp.test) / train / synth.FAULT.test_ratio - 1) < 0.005
        # longer because of larger slips, so the test's cycles start quieter (a shift in the signal)
        test_cycles = np.unique(exp.test.cycle)
        train_cycles = np.unique(exp.train.cycle)[1:-1]
        assert exp.cycles.slip[test_cycles].mean() > exp.cycles.slip[train_cycles].mean() + 1
    plain = synth._experiment(synth.SIZES["full"], 0, test_shift=False)
    assert np.array_equal(plain.train.ttf0, exp_full.train.ttf0)  # train is the same either way
    ratio = synth._mean_ttf(plain.test) / (np.mean(synth._ttf_at(plain.train, synth._segment_ends(plain.train))) / UNITS)
    assert abs(ratio - synth.FAULT.test_ratio) > 0.02
    assert abs(plain.cycles.slip[np.unique(plain.test.cycle)].mean()) < 1
