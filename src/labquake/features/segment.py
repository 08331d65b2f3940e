"""The 24 features of one segment (docs/recipe.md), computed fast and exactly.

``SegmentFeaturizer`` computes all 24 features of one segment, sharing the expensive parts between
them: selections instead of sorts for the quantiles, one wavelet decomposition for both denoisings,
one real FFT per signal, one power STFT per signal feeding both the MFCCs and the spectral contrast
(the mean of the MFCCs over frames is the DCT of the mean log-mel spectrum), computed in
cache-sized blocks of frames, O(n) rolling variances (square roots only of the order statistics
used) and small numba kernels (``features.kernels``) for the counts. ``features.reference`` is the
slow, obvious statement of the same features (straight library calls); tests/test_features.py holds
the two to 1e-6 relative (counts equal) and bench/run.py measures the speed-up.
"""

from __future__ import annotations

import functools

import numpy as np

from labquake.config import SEGMENT_ROWS, FeatureConfig
from labquake.features import kernels
from labquake.features.table import FEATURE_NAMES
from labquake.util import LabquakeError

# librosa's power_to_db defaults, which the recipe uses (docs/recipe.md: ref 1.0, amin 1e-10, top_db 80).
DB_REF = 1.0
DB_AMIN = 1e-10
DB_TOP = 80.0
ZCR_THRESHOLD = 1e-10  # librosa.zero_crossings: |y| <= this counts as 0 (positive)
MAD_SCALE = 0.6745  # sigma of the universal wavelet threshold = MAD / 0.6745
HANN_BINS = 20_000  # LGBM_fftrhann20000_diff_rate: bins 0..19,999
STFT_BLOCK = 32  # frames per block of the spectrogram work (see SegmentFeaturizer._spectral)


@functools.lru_cache(maxsize=4)
def _noise(seed: int, sd: float, n: int) -> np.ndarray:
    v = np.random.RandomState(seed).normal(0, sd, n)
    v.setflags(write=False)
    return v


def noise_vector(fc: FeatureConfig, n: int = SEGMENT_ROWS) -> np.ndarray:
    """The fixed noise added to every segment: ``RandomState(seed).normal(0, sd, n)`` (read-only)."""
    return _noise(fc.noise_seed, fc.noise_sd, n)


class SegmentFeaturizer:
    """The 24 features of one segment, with every constant (noise, windows, filter banks) made once.

    It keeps work buffers between calls (large temporaries cost page faults on every call), so one
    instance must not be shared between threads; ``featurizer()`` gives one per process.
    """

    def __init__(self, fc: FeatureConfig | None = None, n: int = SEGMENT_ROWS) -> None:
        import librosa
        import scipy.signal

        self.fc = fc = fc or FeatureConfig()
        if n < max(fc.n_fft, 2 * HANN_BINS, 64):
            raise ValueError(f"segments of {n} samples are too short for these features")
        self.n = n
        self.noise = noise_vector(fc, n)
        self.hann = np.hanning(n)  # symmetric Hann window of length n
        self.window = scipy.signal.get_window("hann", fc.n_fft, fftbins=True)  # librosa.stft's window
        # librosa's mel bank is float32; melspectrogram multiplies it with the float64 spectrogram.
        # Each Slaney filter is non-zero on one run of bins: only that run is summed.
        mel = librosa.filters.mel(sr=fc.sr, n_fft=fc.n_fft, n_mels=fc.n_mels).astype(np.float64)
        self.mel = np.ascontiguousarray(mel)
        nonzero = [np.flatnonzero(row) for row in mel]
        self.mel_lo = np.array([nz[0] if len(nz) else 0 for nz in nonzero], dtype=np.int64)
        self.mel_hi = np.array([nz[-1] + 1 if len(nz) else 0 for nz in nonzero], dtype=np.int64)
        self.bands = np.array(_contrast_bands(fc), dtype=np.int64)
        self.n_frames = 1 + n // fc.hop_length
        # work buffers
        self._z = np.empty(n)
        self._tmp = np.empty(n)
        self._sel = np.empty(n)
        self._roll = np.empty(n)
        self._pair = np.empty((2, n))
        self._pair_spec = np.empty((2, n // 2 + 1), dtype=np.complex128)
        self._details = np.empty(n + 64)  # periodized levels of odd length round up: a few extra
        self._kept = np.empty(n + 64)
        self._frames = np.empty((STFT_BLOCK, fc.n_fft))
        self._stft = np.empty((STFT_BLOCK, fc.n_fft // 2 + 1), dtype=np.complex128)
        self._power = np.empty((STFT_BLOCK, fc.n_fft // 2 + 1))
        self._melspec = np.empty((self.n_frames, fc.n_mels))
        self._peak = np.empty((len(self.bands), self.n_frames))
        self._valley = np.empty_like(self._peak)
        kernels.warm_up(ZCR_THRESHOLD)

    # the pieces shared between features
    def _quantile(self, a: np.ndarray, q: float, root: bool = False) -> float:
        """np.quantile(a, q) (linear): the same two order statistics and the same interpolation.

        ``root``: np.quantile(np.sqrt(a), q) instead.
        """
        n = len(a)
        virtual = (n - 1) * q
        r = min(int(np.floor(virtual)), n - 1)
        lo, hi = kernels.select_pair(a, r, self._sel)
        if root:
            lo, hi = np.sqrt(lo), np.sqrt(hi)
        if virtual >= n - 1:
            return float(hi if r + 1 < n else lo)
        return _lerp(lo, hi, virtual - r)

    def _median(self, a: np.ndarray, root: bool = False) -> float:
        """np.median(a): the middle value, or the mean of the two middle values (``root``: of np.sqrt(a))."""
        n = len(a)
        lo, hi = kernels.select_pair(a, (n - 1) // 2, self._sel)
        if root:
            lo, hi = np.sqrt(lo), np.sqrt(hi)
        return float(lo) if n % 2 else float(np.mean(np.array([lo, hi])))

    def _wavelet(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``den`` (universal threshold) and ``den_s`` (fixed threshold) from one decomposition."""
        import pywt

        fc = self.fc
        coeffs = pywt.wavedec(z, fc.wavelet, mode=fc.wavelet_mode)
        finest = coeffs[-1]
        sigma = np.mean(np.abs(finest - np.mean(finest))) / MAD_SCALE
        sizes = [len(c) for c in coeffs[1:]]
        details = np.concatenate(coeffs[1:], out=self._details[: sum(sizes)])
        ends = np.cumsum(sizes)[:-1]
        out = []
        for thr in (sigma * np.sqrt(2 * np.log(len(z))), fc.simple_threshold):
            kept = kernels.hard_threshold(details, thr, self._kept[: len(details)])  # pywt.threshold(c, thr, "hard")
            out.append(pywt.waverec([coeffs[0], *np.split(kept, ends)], fc.wavelet, mode=fc.wavelet_mode))
        return out[0], out[1]

    def _spectra_abs(self, y0: np.ndarray, y1: np.ndarray, stop: int, window: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """abs(FFT(window * y)) of y0 and y1 over bins 0..stop-1 (the real FFT's bins; stop <= n/2).

        One call for both: numpy's FFT runs two rows at a time in SIMD lanes, twice as fast as two calls.
        """
        pair = self._pair
        for row, y in zip(pair, (y0, y1)):
            if window is None:
                row[:] = y
            else:
                np.multiply(window, y, out=row)
        spec = np.fft.rfft(pair, axis=-1, out=self._pair_spec)
        return np.abs(spec[0, :stop], out=self._tmp[:stop]), np.abs(spec[1, :stop], out=self._sel[:stop])

    def _spectral(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MFCC means and spectral contrast means of y, from one |STFT|**2 (librosa.stft's centred
        frames, reflect padding, periodic Hann).

        The frames go through in blocks of STFT_BLOCK, so that the windowed frames, their spectra
        and powers stay in the core's cache: the whole spectrogram (12 MB) would go to memory.
        """
        for t0 in range(0, self.n_frames, STFT_BLOCK):
            t1 = min(t0 + STFT_BLOCK, self.n_frames)
            k = t1 - t0
            kernels.windowed_frames(y, t0, self.fc.hop_length, self.window, self._frames[:k])
            np.fft.rfft(self._frames[:k], axis=-1, out=self._stft[:k])
            power = kernels.abs_squared(self._stft[:k], self._power[:k])
            kernels.mel_power(power, self.mel, self.mel_lo, self.mel_hi, self._melspec[t0:t1])
            kernels.band_extremes(power, self.bands, self._peak[:, t0:t1], self._valley[:, t0:t1])
        return self._mfcc_means(self._melspec), self._contrast_means(self._peak, self._valley)

    def _mfcc_means(self, mel: np.ndarray) -> np.ndarray:
        """librosa.feature.mfcc(...).mean(axis=1) from the power mel spectrogram: dB, ortho DCT-II.

        The DCT is linear, so the mean over frames of the MFCCs is the DCT of the mean log-mel frame.
        """
        import scipy.fft

        return scipy.fft.dct(_power_to_db(mel).mean(axis=0), type=2, norm="ortho")[: self.fc.n_mfcc]

    @staticmethod
    def _contrast_means(peak: np.ndarray, valley: np.ndarray) -> np.ndarray:
        """librosa.feature.spectral_contrast(S=|STFT|).mean(axis=1) from the band peaks and valleys."""
        return (_power_to_db(peak) - _power_to_db(valley)).mean(axis=1)

    def __call__(self, x: np.ndarray) -> dict[str, float]:
        """The 24 features of one segment (int16 or float samples) by name, in FEATURE_NAMES order."""
        fc = self.fc
        n = self.n
        if x.shape != (n,):
            raise ValueError(f"expected {n} samples, got shape {x.shape}")
        z = np.add(x, self.noise, out=self._z)  # float64
        z -= self._median(z)
        q99 = self._quantile(z, 0.99)
        absq95 = self._quantile(np.abs(z, out=self._tmp), 0.95)
        den, den_s = self._wavelet(z)
        half = n // 2

        # quantiles of the rolling std: sqrt is monotonic, so the same order statistics of the variances
        var = kernels.rolling_var(z, 20, self._roll[: n - 19])
        roll20_50, roll20_95 = self._quantile(var, 0.5, root=True), self._quantile(var, 0.95, root=True)
        roll50_median = self._median(kernels.rolling_var(den_s, 50, self._roll[: n - 49]), root=True)

        fz, fden = self._spectra_abs(z, den, half)
        fz_sum, fden_max = fz.sum(), fden.max()
        hz, hden = self._spectra_abs(z, den, HANN_BINS, window=self.hann)
        a, b = hz.sum(), hden.sum()

        mfcc_z, contrast_z = self._spectral(z)
        mfcc_s, contrast_s = self._spectral(den_s)

        f = {
            "NN_zero_crossings_denoise": kernels.sign_changes(den),
            "NN_LGBM_percentile_roll20_std_50": roll20_50,
            "NN_q95_roll20_std": roll20_95,
            "NN_LGBM_mfcc_mean4": mfcc_z[4],
            "NN_lib_spectral_contrast0": contrast_z[0],
            "NN_num_peaks_3_denoise": kernels.count_peaks(den, 3),
            "NN_mfcc_mean_denoise_simple2": mfcc_s[2],
            "NN_mfcc_mean5": mfcc_z[5],
            "NN_mfcc_mean2": mfcc_z[2],
            "NN_mfcc_mean_denoise_simple5": mfcc_s[5],
            "NN_absquant95": absq95,
            "NN_median_roll50_std_denoise_simple": roll50_median,
            "NN_mfcc_mean_denoise_simple1": mfcc_s[1],
            "NN_quant99": q99,
            "NN_lib_zero_cross_rate_denoise_simple": kernels.zcr_mean(den_s, fc.n_fft, fc.hop_length, ZCR_THRESHOLD),
            "NN_fftr_max_denoise": fden_max,
            "NN_abssumgreater15": kernels.abs_sum_greater(z, 15.0),
            "NN_LGBM_mfcc_mean18": mfcc_z[18],
            "NN_lib_spectral_contrast_denoise_simple2": contrast_s[2],
            "NN_fftr_sum": fz_sum,
            "NN_mfcc_mean_denoise_simple10": mfcc_s[10],
            "LGBM_num_peaks_2_denoise_simple": kernels.count_peaks(den_s, 2),
            "LGBM_autocorr5": kernels.autocorrelation(z, 5),
            "LGBM_fftrhann20000_diff_rate": (a - b) / a,
        }
        assert list(f) == FEATURE_NAMES
        return {name: float(v) for name, v in f.items()}


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's quantile interpolation, operation for operation."""
    diff = b - a
    return float(b - diff * (1 - t)) if t >= 0.5 else float(a + diff * t)


def _power_to_db(s: np.ndarray) -> np.ndarray:
    db = 10.0 * np.log10(np.maximum(DB_AMIN, s))
    db -= 10.0 * np.log10(max(DB_AMIN, DB_REF))
    return np.maximum(db, db.max() - DB_TOP)


def _contrast_bands(fc: FeatureConfig) -> list[tuple[int, int, int]]:
    """librosa.feature.spectral_contrast's sub-bands as (first bin, end bin, quantile count)."""
    freq = np.fft.rfftfreq(fc.n_fft, 1.0 / fc.sr)  # librosa.fft_frequencies
    octa = np.zeros(fc.contrast_bands + 2)
    octa[1:] = fc.contrast_fmin * (2.0 ** np.arange(0, fc.contrast_bands + 1))
    if np.any(octa[:-1] >= 0.5 * fc.sr):
        raise LabquakeError("features: spectral contrast band exceeds Nyquist (reduce contrast_fmin or contrast_bands)")
    bands = []
    for k, (f_low, f_high) in enumerate(zip(octa[:-1], octa[1:])):
        current = (freq >= f_low) & (freq <= f_high)
        idx = np.flatnonzero(current)
        if k > 0:
            current[idx[0] - 1] = True
        if k == fc.contrast_bands:
            current[idx[-1] + 1 :] = True
        rows = np.flatnonzero(current)
        if k < fc.contrast_bands:
            rows = rows[:-1]
        q = int(max(np.rint(fc.contrast_quantile * np.sum(current)), 1))
        assert np.all(np.diff(rows) == 1)
        bands.append((int(rows[0]), int(rows[-1]) + 1, q))
    return bands


@functools.lru_cache(maxsize=4)
def featurizer(fc: FeatureConfig, n: int = SEGMENT_ROWS) -> SegmentFeaturizer:
    return SegmentFeaturizer(fc, n)


def segment_features(x: np.ndarray, fc: FeatureConfig | None = None) -> dict[str, float]:
    """The 24 features of one segment as a name -> value dict (``features.reference`` is the oracle)."""
    return featurizer(fc or FeatureConfig(), len(x))(x)
