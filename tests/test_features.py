"""The 24 features: the fast path (features.segment) against the libraries (features.reference),
kernels on edge cases, and the stage (cache, resume, determinism)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from labquake import features
from labquake.config import FeatureConfig, load_config
from labquake.features import kernels, reference, segment, stage, table

RTOL = 1e-6  # the bound; what is reached is printed by test_parity_* on failure
COUNT_FEATURES = table.COUNT_FEATURES  # integers, compared exactly


def _real_segment(real_dir):
    return pd.read_csv(real_dir / "seg_00030f.csv")["acoustic_data"].to_numpy(np.int16)


def _assert_parity(x: np.ndarray, fc: FeatureConfig | None = None) -> None:
    fast = features.segment_features(x, fc)
    ref = reference.segment_features(x, fc)
    assert list(fast) == list(ref) == features.FEATURE_NAMES
    for name in features.FEATURE_NAMES:
        if name in COUNT_FEATURES:
            assert fast[name] == ref[name], name
        else:
            assert fast[name] == pytest.approx(ref[name], rel=RTOL, abs=1e-12), name


def test_feature_table_is_the_recipes():
    names = features.FEATURE_NAMES
    assert len(names) == 24 and len(set(names)) == 24 and names == [f.name for f in table.FEATURES]
    # what each model reads by default: the recipe's lists (its names carry them as NN_/LGBM_ prefixes)
    assert len(table.read_by("nn")) == 21 and len(table.read_by("lgbm")) == 6
    assert list(table.read_by("nn")) == [n for n in names if "NN" in n] and list(table.read_by("lgbm")) == [n for n in names if "LGBM" in n]
    assert COUNT_FEATURES == ["NN_zero_crossings_denoise", "NN_num_peaks_3_denoise", "LGBM_num_peaks_2_denoise_simple"]
    both = [f.name for f in table.FEATURES if set(f.models) == {"lgbm", "nn"}]
    assert both == ["NN_LGBM_percentile_roll20_std_50", "NN_LGBM_mfcc_mean4", "NN_LGBM_mfcc_mean18"]
    # every value the featurizer and the reference compute is a row of the table, in its order
    x = np.random.default_rng(0).normal(0, 5, 150_000).round().astype(np.int16)
    assert list(features.segment_features(x)) == list(reference.segment_features(x)) == names


def test_noise_is_the_recipes_fixed_vector():
    v = features.noise_vector(FeatureConfig())
    assert np.array_equal(v, np.random.RandomState(1337).normal(0, 0.5, 150_000))
    assert not v.flags.writeable


def test_parity_on_the_real_test_segment(real_dir):
    _assert_parity(_real_segment(real_dir))


def test_parity_on_synthetic_segments(tiny_raw):
    """Windows of the synthetic train file near and far from failure, and one with the emission."""
    from labquake import data

    train = data.load_train(tiny_raw, tiny_raw.parent / "interim")
    loudest = int(np.abs(train.signal).argmax())
    for start in (0, train.n_rows // 2 - 75_000, max(0, loudest - 75_000)):
        _assert_parity(np.asarray(train.signal[start : start + 150_000]))


def test_parity_on_odd_signals_and_settings():
    rng = np.random.default_rng(0)
    x = np.clip(rng.standard_t(3, 150_000) * 6 + 4, -32768, 32767).astype(np.int16)
    x[1000:1100] = 7  # a flat run: ties in every quantile and sign pattern
    _assert_parity(x)
    _assert_parity(x, FeatureConfig(wavelet="db8", simple_threshold=5.0, contrast_quantile=0.05))


def test_rolling_std_matches_pandas_and_stays_exact_on_hard_inputs():
    from numpy.lib.stride_tricks import sliding_window_view

    rng = np.random.default_rng(1)
    steps = np.r_[np.zeros(100), np.full(100, 3.0), rng.normal(0, 1, 3000)]
    for w in (2, 20, 50):
        ours = np.sqrt(kernels.rolling_var(steps, w, np.empty(len(steps) - w + 1)))
        np.testing.assert_allclose(ours, reference.rolling_std(steps, w), rtol=1e-7, atol=1e-9)
    # A large offset: pandas' running sums lose digits (1.7e-4 relative at w=2); ours re-centres.
    far = rng.normal(1e4, 1.0, 5000)
    for w in (2, 20, 50):
        exact = sliding_window_view(far, w).std(axis=1, ddof=1)
        ours = np.sqrt(kernels.rolling_var(far, w, np.empty(len(far) - w + 1)))
        pandas = reference.rolling_std(far, w)
        assert np.max(np.abs(ours - exact) / exact) < 1e-6
        assert np.max(np.abs(ours - exact)) <= np.max(np.abs(pandas - exact))


@pytest.mark.parametrize("q", [0.0, 0.01, 0.5, 0.95, 0.99, 1.0])
def test_quantile_selection_matches_numpy(q):
    rng = np.random.default_rng(2)
    f = features.featurizer(FeatureConfig())
    for a in (rng.normal(size=10_001), rng.integers(-3, 4, 7000).astype(float), np.array([5.0, 1.0])):
        assert f._quantile(a.copy(), q) == np.quantile(a, q)
        assert f._median(a.copy()) == np.median(a)
        b = np.abs(a)  # the order statistics of the variances give those of the stds
        assert f._quantile(b, q, root=True) == np.quantile(np.sqrt(b), q)
        assert f._median(b, root=True) == np.median(np.sqrt(b))


def test_count_kernels_on_known_answers():
    x = np.array([0.0, 3, 0, 0, 5, 1, 2, 9, 2, 1, 0])
    # support 1: 3 (i=1), 5 (i=4), 9 (i=7); support 2: 5 and 9; support 3: 9 only (5 < 9, three ahead)
    assert kernels.count_peaks(x, 1) == reference.number_peaks(x, 1) == 3
    assert kernels.count_peaks(x, 2) == reference.number_peaks(x, 2) == 2
    assert kernels.count_peaks(x, 3) == reference.number_peaks(x, 3) == 1
    s = np.array([1.0, -1, -2, 0, 0, 3, -1])
    assert kernels.sign_changes(s) == np.count_nonzero(np.diff(np.sign(s))) == 4


def test_peak_count_skipping_matches_the_plain_count_on_ties():
    """The kernel skips samples that cannot be peaks; plateaus and repeated values are where a wrong
    skip would show."""
    rng = np.random.default_rng(4)
    for x in (rng.integers(0, 4, 20_000).astype(float), np.repeat(rng.normal(size=3000), 3), rng.normal(size=20_001)):
        for n in (1, 2, 3, 5):
            assert kernels.count_peaks(x, n) == reference.number_peaks(x, n)


def test_autocorrelation_matches_tsfresh_statement():
    rng = np.random.default_rng(5)
    for n in (150_000, 1001, 17):  # lengths that do and do not divide into the kernel's four sums
        x = rng.normal(3.0, 5.0, n)
        assert kernels.autocorrelation(x, 5) == pytest.approx(reference.autocorrelation(x, 5), rel=1e-12)


def test_windowed_frames_and_power_match_librosa_stft():
    import librosa

    rng = np.random.default_rng(6)
    window = features.featurizer(FeatureConfig()).window
    for n in (5000, 150_000):
        y = rng.normal(size=n)
        ref = np.abs(librosa.stft(y, n_fft=2048, hop_length=512, center=True, pad_mode="reflect")).T ** 2
        frames = kernels.windowed_frames(y, 0, 512, window, np.empty((1 + n // 512, 2048)))
        power = kernels.abs_squared(np.fft.rfft(frames, axis=-1), np.empty(ref.shape))
        np.testing.assert_allclose(power, ref, rtol=1e-9, atol=1e-9 * ref.max())


def test_mel_power_matches_the_dense_product():
    f = features.featurizer(FeatureConfig())
    rng = np.random.default_rng(7)
    for frames in (1, 5, 8):  # below, beside and at the kernel's four-frame step
        power = rng.exponential(size=(frames, 1025))
        ours = kernels.mel_power(power, f.mel, f.mel_lo, f.mel_hi, np.empty((frames, f.mel.shape[0])))
        np.testing.assert_allclose(ours, power @ f.mel.T, rtol=1e-12)


def test_band_extremes_match_librosa_spectral_contrast_on_hard_spectra():
    """Noisy, smoothly falling, flat and tied spectra: the selection's bounds must hold on all of them."""
    import librosa

    fc = FeatureConfig()
    f = features.featurizer(fc)
    rng = np.random.default_rng(8)
    frames = 9
    spectra = {
        "noise": rng.exponential(size=(1025, frames)),
        "falling": np.outer(np.exp(-np.arange(1025) / 100.0), np.ones(frames)) + 1e-3,
        "flat": np.ones((1025, frames)),
        "ties": rng.integers(1, 4, (1025, frames)).astype(float),
    }
    for name, mag in spectra.items():
        ref = librosa.feature.spectral_contrast(
            S=mag, sr=fc.sr, n_fft=fc.n_fft, fmin=fc.contrast_fmin, n_bands=fc.contrast_bands, quantile=fc.contrast_quantile
        )
        peak, valley = np.empty((len(f.bands), frames)), np.empty((len(f.bands), frames))
        kernels.band_extremes(np.ascontiguousarray(mag.T) ** 2, f.bands, peak, valley)
        ours = features.SegmentFeaturizer._contrast_means(peak, valley)
        np.testing.assert_allclose(ours, ref.mean(axis=1), rtol=1e-9, atol=1e-9, err_msg=name)


def test_hard_threshold_matches_pywt():
    import pywt

    x = np.random.default_rng(9).normal(0, 10, 5000)
    x[:3] = [10.0, -10.0, 9.999]  # at and just below the threshold
    np.testing.assert_array_equal(kernels.hard_threshold(x, 10.0, np.empty_like(x)), pywt.threshold(x, 10.0, "hard"))


def test_zero_crossing_rate_matches_librosa_on_short_signals():
    import librosa

    rng = np.random.default_rng(3)
    for n in (4096, 5000, 10_241):
        y = rng.normal(size=n)
        y[::7] = 0.0
        ref = librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512, center=True).mean()
        assert kernels.zcr_mean(y, 2048, 512, segment.ZCR_THRESHOLD) == pytest.approx(ref, rel=1e-12)


def test_segment_of_wrong_length_is_refused():
    with pytest.raises(ValueError, match="expected 150000 samples"):
        features.featurizer(FeatureConfig())(np.zeros(149_999, np.int16))


# --- the stage -------------------------------------------------------------------------------------


def test_tables_have_the_recipes_columns_and_targets(tiny_raw, tiny_features):
    from labquake import data, targets

    train = pd.read_parquet(tiny_features / "train.parquet")
    test = pd.read_parquet(tiny_features / "test.parquet")
    assert list(train.columns) == ["start", "cycle", "target", "tsf", "binary", *features.FEATURE_NAMES]
    assert list(test.columns) == ["seg_id", *features.FEATURE_NAMES]
    raw_train = data.load_train(tiny_raw, tiny_raw.parent / "interim")
    expected = targets.segment_targets(np.asarray(raw_train.ttf), load_config("fast"))
    pd.testing.assert_frame_equal(train[["start", "cycle", "target", "tsf", "binary"]], expected)
    sample = pd.read_csv(tiny_raw / "sample_submission.csv")
    assert test["seg_id"].tolist() == sample["seg_id"].tolist()
    # the table's rows are the features of the right segments
    seg = pd.read_csv(tiny_raw / "test" / f"{test['seg_id'].iloc[-1]}.csv")["acoustic_data"].to_numpy(np.int16)
    np.testing.assert_array_equal(test[features.FEATURE_NAMES].iloc[-1].to_numpy(), list(features.segment_features(seg).values()))
    meta = json.loads((tiny_features / "features.json").read_text())
    assert meta["n_rows"] == raw_train.n_rows and meta["n_train"] == len(train) and meta["key"]
    assert {"cache", "compute", "total"} <= set(meta["timings_s"]) and meta["config"]["features"]["noise_seed"] == 1337


def test_rerun_is_cached_and_a_config_change_recomputes(tiny_raw, tiny_features, tmp_path, monkeypatch):
    import shutil

    out = tmp_path / "features"
    shutil.copytree(tiny_features, out)
    interim = tiny_raw.parent / "interim"
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    calls = []
    monkeypatch.setattr(stage, "_chunk_features", lambda *a: calls.append(a) or pytest.fail("recomputed"))
    features.run_features(load_config("fast"), tiny_raw, out, interim, jobs=1)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before and not calls
    monkeypatch.undo()
    cfg = load_config("fast", None, ["features.simple_threshold=12"])
    record = features.run_features(cfg, tiny_raw, out, interim, jobs=1)
    assert record["key"] != json.loads((tiny_features / "features.json").read_text())["key"]
    new = pd.read_parquet(out / "train.parquet")
    old = pd.read_parquet(tiny_features / "train.parquet")
    assert not np.allclose(new["NN_mfcc_mean_denoise_simple2"], old["NN_mfcc_mean_denoise_simple2"])
    np.testing.assert_array_equal(new["NN_quant99"], old["NN_quant99"])  # z does not depend on it


def test_rerun_is_byte_identical_and_jobs_do_not_matter(tiny_raw, tiny_features, tmp_path):
    out = tmp_path / "features"
    features.run_features(load_config("fast"), tiny_raw, out, tiny_raw.parent / "interim", jobs=1)
    for name in ("train.parquet", "test.parquet"):
        assert (out / name).read_bytes() == (tiny_features / name).read_bytes(), name


def test_interrupted_run_resumes_from_finished_chunks(tiny_raw, tiny_features, tmp_path, monkeypatch):
    out = tmp_path / "features"
    interim = tiny_raw.parent / "interim"
    monkeypatch.setenv("LABQUAKE_FEATURE_CHUNK", "8")
    real = stage._chunk_features
    done = []

    def dies_on_third(*args):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(real(*args))
        return done[-1]

    monkeypatch.setattr(stage, "_chunk_features", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        features.run_features(load_config("fast"), tiny_raw, out, interim, jobs=1)
    assert not out.exists()  # nothing partial in place
    monkeypatch.setattr(stage, "_chunk_features", lambda *a: done.append(real(*a)) or done[-1])
    features.run_features(load_config("fast"), tiny_raw, out, interim, jobs=1)
    n_chunks = len(done)
    train_n = len(pd.read_parquet(out / "train.parquet"))
    test_n = len(pd.read_parquet(out / "test.parquet"))
    assert n_chunks == 2 + (-(-train_n // 8) + -(-test_n // 8) - 2)  # the two finished chunks were not redone
    for name in ("train.parquet", "test.parquet"):
        assert (out / name).read_bytes() == (tiny_features / name).read_bytes(), name
    assert not (tmp_path / ".features.parts").exists()  # cleaned up after success
