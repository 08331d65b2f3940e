"""The 24 features of docs/recipe.md computed the slow, obvious way: the parity oracle.

Every feature is a straight call of the library that defines it (librosa, PyWavelets, pandas,
NumPy), so the code reads like the recipe. As in the recipe's own kernel, a library call that yields
a family of features (the 20 MFCC means, the 7 contrast bands) is made once per signal; nothing
else is shared. ``features.segment`` must give the same numbers (tests/test_features.py) and be
faster (bench/run.py compares the two).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labquake.config import FeatureConfig
from labquake.features.segment import FEATURE_NAMES, noise_vector

# --- preprocessing -------------------------------------------------------------------------------


def preprocess(x: np.ndarray, fc: FeatureConfig) -> np.ndarray:
    """``z = x + noise; z -= median(z)`` (docs/recipe.md, preparing a segment, steps 1-2)."""
    z = np.asarray(x, dtype=np.float64) + noise_vector(fc, len(x))
    return z - np.median(z)


def wavelet_denoise(z: np.ndarray, fc: FeatureConfig, threshold: float | None = None) -> np.ndarray:
    """Full ``db4`` decomposition, hard threshold on every detail level, reconstruction.

    ``threshold=None``: the universal threshold sigma * sqrt(2 ln n), sigma = mean absolute deviation
    (around the mean) of the finest detail coefficients / 0.6745.
    """
    import pywt

    coeffs = pywt.wavedec(z, fc.wavelet, mode=fc.wavelet_mode)
    if threshold is None:
        finest = coeffs[-1]
        sigma = np.mean(np.abs(finest - np.mean(finest))) / 0.6745
        threshold = sigma * np.sqrt(2 * np.log(len(z)))
    coeffs[1:] = [pywt.threshold(c, value=threshold, mode="hard") for c in coeffs[1:]]
    return pywt.waverec(coeffs, fc.wavelet, mode=fc.wavelet_mode)


# --- the feature definitions ---------------------------------------------------------------------


def rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    return pd.Series(x).rolling(window).std().dropna().to_numpy()


def number_peaks(x: np.ndarray, n: int) -> int:
    """tsfresh's number_peaks: samples strictly greater than the n neighbours on each side."""
    core = x[n:-n]
    res = np.ones(len(core), dtype=bool)
    for i in range(1, n + 1):
        res &= core > x[n - i : len(x) - n - i]
        res &= core > x[n + i : len(x) - n + i]
    return int(np.sum(res))


def autocorrelation(x: np.ndarray, lag: int) -> float:
    """tsfresh's autocorrelation: sum((x[t]-m)(x[t+lag]-m)) / ((n-lag) var(x))."""
    m = np.mean(x)
    return float(np.sum((x[: len(x) - lag] - m) * (x[lag:] - m)) / ((len(x) - lag) * np.var(x)))


def mfcc_means(y: np.ndarray, fc: FeatureConfig) -> np.ndarray:
    """librosa's MFCCs (Slaney mel bank and norm, dB with ref 1, ortho DCT-II), mean over frames."""
    import librosa

    m = librosa.feature.mfcc(y=y, sr=fc.sr, n_mfcc=fc.n_mfcc, n_mels=fc.n_mels, n_fft=fc.n_fft, hop_length=fc.hop_length, pad_mode="reflect")
    return np.mean(m, axis=1)


def spectral_contrast_means(y: np.ndarray, fc: FeatureConfig) -> np.ndarray:
    import librosa

    c = librosa.feature.spectral_contrast(
        y=y,
        sr=fc.sr,
        n_fft=fc.n_fft,
        hop_length=fc.hop_length,
        pad_mode="reflect",
        fmin=fc.contrast_fmin,
        n_bands=fc.contrast_bands,
        quantile=fc.contrast_quantile,
    )
    return np.mean(c, axis=1)


def zero_crossing_rate_mean(y: np.ndarray, fc: FeatureConfig) -> float:
    import librosa

    # librosa 0.11's defaults are the recipe's: centred frames padded with edge values.
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=fc.n_fft, hop_length=fc.hop_length, center=True)
    return float(np.mean(zcr))


def fft_abs(y: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.fft(y))


def segment_features(x: np.ndarray, fc: FeatureConfig | None = None) -> dict[str, float]:
    """The 24 features of one 150,000-row segment, in the recipe's order."""
    fc = fc or FeatureConfig()
    z = preprocess(x, fc)
    den = wavelet_denoise(z, fc)
    den_s = wavelet_denoise(z, fc, threshold=fc.simple_threshold)
    n = len(z)
    half = n // 2
    hann = np.hanning(n)  # the symmetric Hann window of length n
    a = np.sum(fft_abs(hann * z)[:20000])
    b = np.sum(fft_abs(hann * den)[:20000])
    absz = np.abs(z)
    # one library call per signal and feature family (the recipe's own kernel did the same)
    mfcc_z, mfcc_s = mfcc_means(z, fc), mfcc_means(den_s, fc)
    contrast_z, contrast_s = spectral_contrast_means(z, fc), spectral_contrast_means(den_s, fc)
    f = {
        "NN_zero_crossings_denoise": int(np.count_nonzero(np.diff(np.sign(den)))),
        "NN_LGBM_percentile_roll20_std_50": float(np.percentile(rolling_std(z, 20), 50)),
        "NN_q95_roll20_std": float(np.quantile(rolling_std(z, 20), 0.95)),
        "NN_LGBM_mfcc_mean4": float(mfcc_z[4]),
        "NN_lib_spectral_contrast0": float(contrast_z[0]),
        "NN_num_peaks_3_denoise": number_peaks(den, 3),
        "NN_mfcc_mean_denoise_simple2": float(mfcc_s[2]),
        "NN_mfcc_mean5": float(mfcc_z[5]),
        "NN_mfcc_mean2": float(mfcc_z[2]),
        "NN_mfcc_mean_denoise_simple5": float(mfcc_s[5]),
        "NN_absquant95": float(np.quantile(absz, 0.95)),
        "NN_median_roll50_std_denoise_simple": float(np.median(rolling_std(den_s, 50))),
        "NN_mfcc_mean_denoise_simple1": float(mfcc_s[1]),
        "NN_quant99": float(np.quantile(z, 0.99)),
        "NN_lib_zero_cross_rate_denoise_simple": zero_crossing_rate_mean(den_s, fc),
        "NN_fftr_max_denoise": float(np.max(fft_abs(den)[:half])),
        "NN_abssumgreater15": float(np.sum(absz[absz > 15])),
        "NN_LGBM_mfcc_mean18": float(mfcc_z[18]),
        "NN_lib_spectral_contrast_denoise_simple2": float(contrast_s[2]),
        "NN_fftr_sum": float(np.sum(fft_abs(z)[:half])),
        "NN_mfcc_mean_denoise_simple10": float(mfcc_s[10]),
        "LGBM_num_peaks_2_denoise_simple": number_peaks(den_s, 2),
        "LGBM_autocorr5": autocorrelation(z, 5),
        "LGBM_fftrhann20000_diff_rate": float((a - b) / a),
    }
    assert list(f) == FEATURE_NAMES
    return f


# --- the sequence network's input ----------------------------------------------------------------


def sequence(x: np.ndarray, fc: FeatureConfig) -> np.ndarray:
    """``features.sequences.segment_sequence`` one window at a time: (steps, channels) float32."""
    z = preprocess(x, fc)
    rows = []
    for lo in range(0, len(z), fc.seq_window):
        w = z[lo : lo + fc.seq_window]
        std = np.std(w)
        rows.append(
            [
                np.log1p(std),  # log_std
                np.log1p(np.quantile(np.abs(w), 0.5)),  # log_abs_median
                np.log1p(np.max(np.abs(w))) - np.log1p(std),  # log_peak_ratio
                np.mean((w[1:] < 0) != (w[:-1] < 0)),  # zero_cross_rate
                np.log1p(np.std(np.diff(w))) - np.log1p(std),  # log_diff_ratio
            ]
        )
    return np.array(rows, dtype=np.float32)
