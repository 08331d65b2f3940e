"""The 24 per-segment features of docs/recipe.md: exact, fast, parallel and cached.

``SegmentFeaturizer`` computes all 24 features of one segment, sharing the expensive parts between
them: selections instead of sorts for the quantiles, one wavelet decomposition for both denoisings,
one real FFT per signal, one power STFT per signal feeding both the MFCCs and the spectral contrast
(the mean of the MFCCs over frames is the DCT of the mean log-mel spectrum), computed in
cache-sized blocks of frames, O(n) rolling variances (square roots only of the order statistics
used) and small numba kernels for the counts. ``labquake.features_reference`` is the slow, obvious
statement of the same features (straight library calls); tests/test_features.py holds the two to 1e-6 relative
(counts equal) and bench/run.py measures the speed-up.

``build_features`` writes one feature table for train (a row per 150,000-row segment) and one for
test (a row per test segment, in sample_submission.csv order). Segments are read from the
memory-mapped binary cache of ``labquake.data``; workers get chunks of segment indices and open
the cache themselves. Finished chunks are kept beside the output, in ``.FEATDIR.parts/<key>/``
(key: inputs and settings), so an interrupted run resumes; the output folder (both tables and
``features.json``) is swapped in whole only when everything succeeded.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from labquake.config import SEGMENT_ROWS, Config, FeatureConfig
from labquake.util import LabquakeError, log, usable_cpus

# The output format: the recipe's names, in its order (docs/recipe.md).
FEATURE_NAMES: list[str] = [
    "NN_zero_crossings_denoise",
    "NN_LGBM_percentile_roll20_std_50",
    "NN_q95_roll20_std",
    "NN_LGBM_mfcc_mean4",
    "NN_lib_spectral_contrast0",
    "NN_num_peaks_3_denoise",
    "NN_mfcc_mean_denoise_simple2",
    "NN_mfcc_mean5",
    "NN_mfcc_mean2",
    "NN_mfcc_mean_denoise_simple5",
    "NN_absquant95",
    "NN_median_roll50_std_denoise_simple",
    "NN_mfcc_mean_denoise_simple1",
    "NN_quant99",
    "NN_lib_zero_cross_rate_denoise_simple",
    "NN_fftr_max_denoise",
    "NN_abssumgreater15",
    "NN_LGBM_mfcc_mean18",
    "NN_lib_spectral_contrast_denoise_simple2",
    "NN_fftr_sum",
    "NN_mfcc_mean_denoise_simple10",
    "LGBM_num_peaks_2_denoise_simple",
    "LGBM_autocorr5",
    "LGBM_fftrhann20000_diff_rate",
]
NN_FEATURES: list[str] = [f for f in FEATURE_NAMES if "NN" in f]
LGBM_FEATURES: list[str] = [f for f in FEATURE_NAMES if "LGBM" in f]
# Features that are counts: integers, compared exactly.
COUNT_FEATURES: list[str] = ["NN_zero_crossings_denoise", "NN_num_peaks_3_denoise", "LGBM_num_peaks_2_denoise_simple"]

# librosa's power_to_db defaults, which the recipe uses (docs/recipe.md: ref 1.0, amin 1e-10, top_db 80).
DB_REF = 1.0
DB_AMIN = 1e-10
DB_TOP = 80.0
ZCR_THRESHOLD = 1e-10  # librosa.zero_crossings: |y| <= this counts as 0 (positive)
MAD_SCALE = 0.6745  # sigma of the universal wavelet threshold = MAD / 0.6745
HANN_BINS = 20_000  # LGBM_fftrhann20000_diff_rate: bins 0..19,999

TRAIN_META = ["start", "cycle", "target", "tsf", "binary"]
TEST_META = ["seg_id"]
STFT_BLOCK = 32  # frames per block of the spectrogram work (see SegmentFeaturizer._spectral)
DEFAULT_CHUNK = 64  # segments per resumable chunk (env LABQUAKE_FEATURE_CHUNK overrides)


@functools.lru_cache(maxsize=4)
def _noise(seed: int, sd: float, n: int) -> np.ndarray:
    v = np.random.RandomState(seed).normal(0, sd, n)
    v.setflags(write=False)
    return v


def noise_vector(fc: FeatureConfig, n: int = SEGMENT_ROWS) -> np.ndarray:
    """The fixed noise added to every segment: ``RandomState(seed).normal(0, sd, n)`` (read-only)."""
    return _noise(fc.noise_seed, fc.noise_sd, n)


@functools.lru_cache(maxsize=1)
def tune_malloc() -> bool:
    """Keep freed memory in the process instead of unmapping it (glibc only; a no-op elsewhere).

    Every segment allocates and frees a few dozen arrays of about a megabyte (PyWavelets, FFTs). By
    default glibc serves such blocks with fresh mmaps, so each call pays thousands of page faults,
    about a quarter of the fast path's time. A fixed mmap threshold of 32 MiB (the most glibc allows) and no trimming make
    the blocks reused instead; the process keeps at most its peak working set (tens of MB).
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 << 20) == 1
        return bool(libc.mallopt(m_trim_threshold, 256 << 20) == 1 and ok)
    except (OSError, AttributeError):
        return False


# --- numba kernels: compiled on first use (cache=True), so importing this module stays cheap -------


def _lazy_njit(func: Callable) -> Callable:
    compiled: Callable | None = None

    @functools.wraps(func)
    def wrapper(*args: Any) -> Any:
        nonlocal compiled
        if compiled is None:
            import numba

            compiled = numba.njit(cache=True, nogil=True)(func)
        return compiled(*args)

    return wrapper


@_lazy_njit
def _sign_changes(x):  # pragma: no cover - compiled
    """Positions where np.sign of consecutive samples differs."""
    count = 0
    prev = (x[0] > 0) - (x[0] < 0)
    for i in range(1, x.shape[0]):
        s = (x[i] > 0) - (x[i] < 0)
        if s != prev:
            count += 1
        prev = s
    return count


@_lazy_njit
def _count_peaks(x, n):  # pragma: no cover - compiled
    """tsfresh number_peaks: samples strictly greater than the n neighbours on each side.

    Skips what cannot be a peak: the sample after one smaller than its left neighbour, and the n
    samples after a peak. Three times faster than testing every sample on noise.
    """
    count = 0
    i = n
    stop = x.shape[0] - n
    while i < stop:
        v = x[i]
        if not v > x[i + 1]:
            i += 1
            continue
        ok = True
        for j in range(1, n + 1):
            if not (v > x[i - j] and v > x[i + j]):
                ok = False
                break
        if ok:
            count += 1
            i += n + 1  # x[i+1..i+n] < v: none of them is a peak
        else:
            i += 2  # x[i+1] < v: not a peak
    return count


@_lazy_njit
def _zcr_mean(x, frame, hop, threshold):  # pragma: no cover - compiled
    """librosa.feature.zero_crossing_rate (centred, edge padding, pad=False), mean over frames.

    Edge padding adds no crossings, so frame t counts the crossings at original positions i in
    [t*hop - frame/2 + 1, t*hop + frame/2 - 1] (crossing at i: sign(x[i-1]) != sign(x[i]), values with
    |v| <= threshold count as positive zeros).
    """
    n = x.shape[0]
    csum = np.zeros(n, dtype=np.int64)  # csum[i] = crossings at positions 1..i
    prev = x[0] < -threshold
    c = 0
    for i in range(1, n):
        cur = x[i] < -threshold
        if cur != prev:
            c += 1
        csum[i] = c
        prev = cur
    half = frame // 2
    n_frames = 1 + n // hop
    total = 0
    for t in range(n_frames):
        lo = t * hop - half + 1
        hi = t * hop + half - 1
        if lo < 1:
            lo = 1
        if hi > n - 1:
            hi = n - 1
        if hi >= lo:
            total += csum[hi] - csum[lo - 1]
    return total / (frame * n_frames)


@_lazy_njit
def _rolling_var(x, w, out):  # pragma: no cover - compiled
    """Sample variance (ddof 1, at least 0) over trailing windows of w, complete windows only: out[i]
    for x[i:i+w]. The square roots are left to the few order statistics the features use.

    Running sums of data shifted by a recent sample, re-summed from scratch every 1024 windows, so
    rounding error neither cancels catastrophically nor accumulates.
    """
    m = x.shape[0] - w + 1
    i = 0
    while i < m:
        k = x[i]
        s1 = 0.0
        s2 = 0.0
        for j in range(i, i + w):
            d = x[j] - k
            s1 += d
            s2 += d * d
        stop = min(i + 1024, m)
        out[i] = (s2 - s1 * s1 / w) / (w - 1)
        for j in range(i + 1, stop):
            a = x[j - 1] - k
            b = x[j + w - 1] - k
            s1 += b - a
            s2 += b * b - a * a
            out[j] = (s2 - s1 * s1 / w) / (w - 1)
        i = stop
    for i in range(m):
        out[i] = max(out[i], 0.0)
    return out


@_lazy_njit
def _band_extremes(power, bands, peak, valley):  # pragma: no cover - compiled
    """Per frame and band (first bin, end bin, q): the mean magnitude of the q largest and of the q
    smallest bins (librosa.feature.spectral_contrast's peak and valley), from the power spectrum.

    Powers order like magnitudes, so the selection runs on powers and only the 2q chosen values pay
    for a square root. Of q disjoint slots of the band, the largest slot minimum bounds the q-th
    smallest value from above (and the smallest slot maximum the q-th largest from below), so one
    pass keeps a few dozen candidates and a bounded insertion sort picks among them.
    """

    def mean_root_of_smallest(buf, m, q):
        """Mean of sqrt(|v|) over the q smallest of buf[:m] (m >= q), summed in ascending order."""
        for i in range(1, m):
            v = buf[i]
            if i >= q:
                if not v < buf[q - 1]:
                    continue
                p = q - 1
            else:
                p = i
            while p > 0 and buf[p - 1] > v:
                buf[p] = buf[p - 1]
                p -= 1
            buf[p] = v
        s = 0.0
        for i in range(q):
            s += np.sqrt(abs(buf[i]))
        return s / q

    wmax = 1
    qmax = 1
    for k in range(bands.shape[0]):
        wmax = max(wmax, bands[k, 1] - bands[k, 0])
        qmax = max(qmax, bands[k, 2])
    low = np.empty(wmax)  # candidates
    high = np.empty(wmax)
    mins = np.empty(qmax)  # slot extremes
    maxs = np.empty(qmax)
    for t in range(power.shape[0]):
        row = power[t]
        for k in range(bands.shape[0]):
            lo, hi, q = bands[k, 0], bands[k, 1], bands[k, 2]
            if q == 1:
                mn = row[lo]
                mx = row[lo]
                for j in range(lo + 1, hi):
                    v = row[j]
                    mn = v if v < mn else mn
                    mx = v if v > mx else mx
                valley[k, t] = np.sqrt(mn)
                peak[k, t] = np.sqrt(mx)
                continue
            # slot i holds bins lo+i, lo+i+q, ...: interleaved, so that smooth spectra bound as tight
            # as noisy ones (contiguous chunks of a falling spectrum would keep most of the band)
            for i in range(q):
                mins[i] = row[lo + i]
                maxs[i] = row[lo + i]
            for s in range(lo + q, hi, q):
                for i in range(min(q, hi - s)):
                    v = row[s + i]
                    mins[i] = v if v < mins[i] else mins[i]
                    maxs[i] = v if v > maxs[i] else maxs[i]
            below = mins[0]
            above = maxs[0]
            for i in range(1, q):
                below = mins[i] if mins[i] > below else below
                above = maxs[i] if maxs[i] < above else above
            a = 0
            b = 0
            for j in range(lo, hi):  # branch-free: candidates are rare and unpredictable
                v = row[j]
                low[a] = v
                a += v <= below
                high[b] = -v  # the largest powers as the smallest negated ones
                b += v >= above
            valley[k, t] = mean_root_of_smallest(low, a, q)
            peak[k, t] = mean_root_of_smallest(high, b, q)


@_lazy_njit
def _hard_threshold(x, threshold, out):  # pragma: no cover - compiled
    """pywt.threshold(x, threshold, "hard"): values with |v| < threshold become 0."""
    for i in range(x.shape[0]):
        v = x[i]
        out[i] = v if abs(v) >= threshold else 0.0
    return out


@_lazy_njit
def _autocorrelation(x, lag):  # pragma: no cover - compiled
    """tsfresh autocorrelation: sum((x[t]-m)(x[t+lag]-m)) / ((n-lag) var(x)), m and var over all of x.

    Four interleaved partial sums: the adds do not wait on each other, and the order is fixed, so the
    result does not depend on the machine's thread count (np.dot's would).
    """
    n = x.shape[0]
    m0 = m1 = m2 = m3 = 0.0
    for i in range(0, n // 4 * 4, 4):
        m0 += x[i]
        m1 += x[i + 1]
        m2 += x[i + 2]
        m3 += x[i + 3]
    for i in range(n // 4 * 4, n):
        m0 += x[i]
    m = ((m0 + m1) + (m2 + m3)) / n
    c0 = c1 = c2 = c3 = 0.0
    s0 = s1 = s2 = s3 = 0.0
    stop = (n - lag) // 4 * 4
    for i in range(0, stop, 4):
        d0 = x[i] - m
        d1 = x[i + 1] - m
        d2 = x[i + 2] - m
        d3 = x[i + 3] - m
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
        c0 += d0 * (x[i + lag] - m)
        c1 += d1 * (x[i + 1 + lag] - m)
        c2 += d2 * (x[i + 2 + lag] - m)
        c3 += d3 * (x[i + 3 + lag] - m)
    for i in range(stop, n):
        d = x[i] - m
        s0 += d * d
        if i + lag < n:
            c0 += d * (x[i + lag] - m)
    return ((c0 + c1) + (c2 + c3)) / ((n - lag) * (((s0 + s1) + (s2 + s3)) / n))


@_lazy_njit
def _abs_sum_greater(x, limit):  # pragma: no cover - compiled
    total = 0.0
    for i in range(x.shape[0]):
        a = abs(x[i])
        if a > limit:
            total += a
    return total


@_lazy_njit
def _mel_power(power, weights, lo, hi, out):  # pragma: no cover - compiled
    """out[t, m] = sum_j power[t, j] * weights[m, j] over the non-zero bins lo[m]:hi[m] of filter m.

    Four frames at a time: four independent running sums instead of one that waits on each add.
    """
    frames = power.shape[0]
    t = 0
    while t + 4 <= frames:
        for m in range(weights.shape[0]):
            s0 = s1 = s2 = s3 = 0.0
            for j in range(lo[m], hi[m]):
                w = weights[m, j]
                s0 += power[t, j] * w
                s1 += power[t + 1, j] * w
                s2 += power[t + 2, j] * w
                s3 += power[t + 3, j] * w
            out[t, m] = s0
            out[t + 1, m] = s1
            out[t + 2, m] = s2
            out[t + 3, m] = s3
        t += 4
    for r in range(t, frames):  # the last frames, one at a time
        for m in range(weights.shape[0]):
            s = 0.0
            for j in range(lo[m], hi[m]):
                s += power[r, j] * weights[m, j]
            out[r, m] = s
    return out


@_lazy_njit
def _power(spec, out):  # pragma: no cover - compiled
    """|spec|**2 as re**2 + im**2 (np.abs squared, within an ulp, without hypot's cost)."""
    for t in range(spec.shape[0]):
        for j in range(spec.shape[1]):
            v = spec[t, j]
            out[t, j] = v.real * v.real + v.imag * v.imag
    return out


@_lazy_njit
def _windowed_frames(y, first, hop, window, out):  # pragma: no cover - compiled
    """out[r] = window * frame first + r of y: centred frames, reflect padding (librosa.stft).

    Reads the padding through reflected indices instead of building the padded copy.
    """
    n = y.shape[0]
    size = window.shape[0]
    for r in range(out.shape[0]):
        start = (first + r) * hop - size // 2
        if start >= 0 and start + size <= n:
            for j in range(size):
                out[r, j] = y[start + j] * window[j]
        else:
            for j in range(size):
                i = start + j
                if i < 0:
                    i = -i
                elif i >= n:
                    i = 2 * (n - 1) - i
                out[r, j] = y[i] * window[j]
    return out


@_lazy_njit
def _select_pair(a, r, buf):  # pragma: no cover - compiled
    """The values of rank r and r + 1 (0-based, ascending; r + 1 clipped) of finite a, a unchanged.

    Floyd-Rivest style: a sorted sparse sample brackets the ranks, one pass keeps the values inside
    the bracket (into buf, len(a) long), quickselect finds the rank among them. If the bracket
    misses (never seen in practice), the whole array is selected from instead.
    """
    n = a.shape[0]
    step = max(1, n // 2048)
    sample = np.sort(a[::step])
    m = sample.shape[0]
    p = (r + 0.5) * m / n
    d = 4.0 * np.sqrt(max(p, 1.0) * max(1.0 - p / m, 1.0 / m)) + 4.0
    i_lo = int(p - d)
    i_hi = int(p + d) + 1
    lo = sample[i_lo] if i_lo >= 0 else -np.inf
    hi = sample[i_hi] if i_hi < m else np.inf
    below = 0
    k = 0
    for i in range(n):
        v = a[i]
        below += v < lo
        buf[k] = v
        k += (v >= lo) & (v <= hi)
    if not (below <= r and min(r + 1, n - 1) < below + k):
        for i in range(n):
            buf[i] = a[i]
        below = 0
        k = n
    t = r - below
    # quickselect (Hoare partition, median-of-three pivot) of rank t in buf[:k]
    left = 0
    right = k - 1
    while right > left:
        mid = (left + right) // 2
        x0, x1, x2 = buf[left], buf[mid], buf[right]
        if x0 > x1:
            x0, x1 = x1, x0
        if x1 > x2:
            x1 = x2
        pivot = max(x0, x1)
        i = left
        j = right
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                buf[i], buf[j] = buf[j], buf[i]
                i += 1
                j -= 1
        if t <= j:
            right = j
        elif t >= i:
            left = i
        else:
            break
    v0 = buf[t]
    if r + 1 >= n:
        return v0, v0
    v1 = np.inf
    for i in range(t + 1, k):  # everything after position t is >= v0
        if buf[i] < v1:
            v1 = buf[i]
    return v0, v1


# --- one segment ---------------------------------------------------------------------------------


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
        tune_malloc()
        self._warm_up()

    def _warm_up(self) -> None:
        """Load (or on a first run compile) the numba kernels."""
        p = np.linspace(-1.0, 1.0, 64)
        _sign_changes(p), _count_peaks(p, 2), _abs_sum_greater(p, 0.5), _select_pair(p, 3, np.empty(64))
        _zcr_mean(p, 16, 4, ZCR_THRESHOLD), _rolling_var(p, 4, np.empty(61))
        _band_extremes(p.reshape(2, 32), np.array([[0, 32, 2]]), np.empty((1, 2)), np.empty((1, 2)))
        _mel_power(p.reshape(2, 32), np.ones((1, 32)), np.zeros(1, np.int64), np.ones(1, np.int64), np.empty((2, 1)))
        _power(np.ones((2, 3), np.complex128), np.empty((2, 3)))
        _windowed_frames(p, 0, 4, np.ones(8), np.empty((2, 8)))
        _hard_threshold(p, 0.5, np.empty(64)), _autocorrelation(p, 5)

    # the pieces shared between features
    def _quantile(self, a: np.ndarray, q: float, root: bool = False) -> float:
        """np.quantile(a, q) (linear): the same two order statistics and the same interpolation.

        ``root``: np.quantile(np.sqrt(a), q) instead.
        """
        n = len(a)
        virtual = (n - 1) * q
        r = min(int(np.floor(virtual)), n - 1)
        lo, hi = _select_pair(a, r, self._sel)
        if root:
            lo, hi = np.sqrt(lo), np.sqrt(hi)
        if virtual >= n - 1:
            return float(hi if r + 1 < n else lo)
        return _lerp(lo, hi, virtual - r)

    def _median(self, a: np.ndarray, root: bool = False) -> float:
        """np.median(a): the middle value, or the mean of the two middle values (``root``: of np.sqrt(a))."""
        n = len(a)
        lo, hi = _select_pair(a, (n - 1) // 2, self._sel)
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
            kept = _hard_threshold(details, thr, self._kept[: len(details)])  # pywt.threshold(c, thr, "hard")
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
            _windowed_frames(y, t0, self.fc.hop_length, self.window, self._frames[:k])
            np.fft.rfft(self._frames[:k], axis=-1, out=self._stft[:k])
            power = _power(self._stft[:k], self._power[:k])
            _mel_power(power, self.mel, self.mel_lo, self.mel_hi, self._melspec[t0:t1])
            _band_extremes(power, self.bands, self._peak[:, t0:t1], self._valley[:, t0:t1])
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

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The 24 features of one segment (int16 or float samples), in FEATURE_NAMES order."""
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
        var = _rolling_var(z, 20, self._roll[: n - 19])
        roll20_50, roll20_95 = self._quantile(var, 0.5, root=True), self._quantile(var, 0.95, root=True)
        roll50_median = self._median(_rolling_var(den_s, 50, self._roll[: n - 49]), root=True)

        fz, fden = self._spectra_abs(z, den, half)
        fz_sum, fden_max = fz.sum(), fden.max()
        hz, hden = self._spectra_abs(z, den, HANN_BINS, window=self.hann)
        a, b = hz.sum(), hden.sum()

        mfcc_z, contrast_z = self._spectral(z)
        mfcc_s, contrast_s = self._spectral(den_s)

        values = (
            _sign_changes(den),
            roll20_50,
            roll20_95,
            mfcc_z[4],
            contrast_z[0],
            _count_peaks(den, 3),
            mfcc_s[2],
            mfcc_z[5],
            mfcc_z[2],
            mfcc_s[5],
            absq95,
            roll50_median,
            mfcc_s[1],
            q99,
            _zcr_mean(den_s, fc.n_fft, fc.hop_length, ZCR_THRESHOLD),
            fden_max,
            _abs_sum_greater(z, 15.0),
            mfcc_z[18],
            contrast_s[2],
            fz_sum,
            mfcc_s[10],
            _count_peaks(den_s, 2),
            _autocorrelation(z, 5),
            (a - b) / a,
        )
        return np.array(values, dtype=np.float64)

    def as_dict(self, x: np.ndarray) -> dict[str, float]:
        return dict(zip(FEATURE_NAMES, self(x).tolist()))


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
    """The 24 features of one segment as a name -> value dict (see features_reference for the oracle)."""
    return featurizer(fc or FeatureConfig(), len(x)).as_dict(x)


# --- the stage: feature tables for train and test -------------------------------------------------

FEATURES_VERSION = 2  # bump when a feature's computation changes: invalidates every cached table


def features_key(cfg: Config, train_fingerprint: str, test_fingerprint: str) -> str:
    """Cache key of the feature tables: everything they depend on, and nothing else."""
    import hashlib
    import json

    from labquake import __version__

    payload = {
        "version": FEATURES_VERSION,
        "labquake": __version__,
        "features": asdict(cfg.features),
        "segment_rows": SEGMENT_ROWS,
        "binary_threshold": cfg.data.binary_threshold,
        "train": train_fingerprint,
        "test": test_fingerprint,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def n_jobs(jobs: int) -> int:
    """``--jobs``: 0 means every core this process may use."""
    if jobs > 0:
        return jobs
    return usable_cpus()


def _chunk_features(fc: FeatureConfig, source: tuple[str, int], starts: np.ndarray, rows: int, part: str) -> str:
    """Features of the segments ``signal[start:start + rows]`` of an int16 cache file, saved to ``part``.

    Runs in a worker: it opens the memory-mapped cache itself (``source``: file name and byte
    offset), so only names cross processes, never the signal.
    """
    from labquake.util import atomic_path

    signal = np.memmap(source[0], dtype=np.int16, mode="r", offset=source[1])
    f = featurizer(fc, rows)
    values = np.empty((len(starts), len(FEATURE_NAMES)))
    for i, s in enumerate(starts):
        values[i] = f(np.asarray(signal[s : s + rows]))
    with atomic_path(part) as tmp, open(tmp, "wb") as fh:
        np.save(fh, values)
    return part


def _source(signal: np.ndarray) -> tuple[str, int]:
    """File name and byte offset of a memory-mapped cache array."""
    import mmap

    if not isinstance(signal, np.memmap) or not isinstance(signal.base, mmap.mmap) or signal.filename is None:
        raise TypeError("features need the memory-mapped cache arrays of labquake.data")
    return str(signal.filename), int(signal.offset)


def _load_part(path: Path, n: int) -> np.ndarray | None:
    """A finished chunk, or None if it is missing or damaged (then it is computed again)."""
    try:
        values = np.load(path)
    except (OSError, ValueError, EOFError):
        return None
    return values if values.shape == (n, len(FEATURE_NAMES)) else None


def _compute(cfg: Config, workers: int, parts: Path, tasks: list[tuple[str, tuple[str, int], np.ndarray]], total: int) -> dict[str, np.ndarray]:
    """Features of every task (name, source file, segment starts in it), resuming from ``parts``."""
    from joblib import Parallel, delayed

    from labquake.util import progress

    rows = SEGMENT_ROWS
    chunk = int(os.environ.get("LABQUAKE_FEATURE_CHUNK", DEFAULT_CHUNK))
    done: dict[str, np.ndarray] = {}
    todo = []
    order: dict[str, list[str]] = {}  # each task's part files, in segment order
    for name, source, starts in tasks:
        order[name] = []
        for c, lo in enumerate(range(0, len(starts), chunk)):
            part = str(parts / f"{name}_{c:05d}.npy")
            order[name].append(part)
            values = _load_part(Path(part), len(starts[lo : lo + chunk]))
            if values is None:
                todo.append((source, starts[lo : lo + chunk], part))
            else:
                done[part] = values
    resumed = sum(len(v) for v in done.values())
    if resumed:
        log.info(f"features: resuming, {resumed} of {total} segments already done")
    bar = progress(None, total=total, desc="features")
    bar.update(resumed)
    workers = min(workers, max(1, len(todo)))
    if workers == 1:  # in this process: no start-up cost, and the featurizer stays warm for the next call
        results = (_chunk_features(cfg.features, src, st, rows, p) for src, st, p in todo)
    else:
        call = delayed(_chunk_features)
        results = Parallel(n_jobs=workers, return_as="generator_unordered")(call(cfg.features, src, st, rows, p) for src, st, p in todo)
    sizes = {p: len(st) for _, st, p in todo}
    for part in results:
        done[part] = np.load(part)
        bar.update(sizes[part])
    bar.close()
    return {name: np.concatenate([done[p] for p in paths]) if paths else np.empty((0, len(FEATURE_NAMES))) for name, paths in order.items()}


def _up_to_date(out_dir: Path, key: str) -> bool:
    from labquake.util import read_json

    meta_path = out_dir / "features.json"
    if not (meta_path.is_file() and (out_dir / "train.parquet").is_file() and (out_dir / "test.parquet").is_file()):
        return False
    try:
        return read_json(meta_path).get("key") == key
    except LabquakeError:
        return False  # a damaged record: rebuild


def build_features(cfg: Config, data_dir: Path, out_dir: Path, interim: Path, jobs: int = 0) -> dict[str, Any]:
    """Write ``out_dir/train.parquet``, ``test.parquet`` and ``features.json`` (see the module docstring).

    Returns the stage record. Unchanged inputs and configuration: nothing is computed.
    """
    import pandas as pd

    from labquake import data, targets
    from labquake.util import Timer, atomic_path, read_json, stage_record, write_json

    timer = Timer()
    out_dir = Path(out_dir)
    with timer.step("cache"):
        train = data.load_train(Path(data_dir), Path(interim))
        test = data.load_test(Path(data_dir), Path(interim))
    rows = SEGMENT_ROWS
    key = features_key(cfg, train.fingerprint, test.fingerprint)
    if _up_to_date(out_dir, key):
        log.info(f"features: {out_dir} is up to date (key {key})")
        return read_json(out_dir / "features.json")

    with timer.step("targets"):
        meta = targets.segment_targets(train.ttf, cfg)
    n_cycles = int(meta["cycle"].max()) + 1 if len(meta) else 0
    if n_cycles <= 1:
        log.warning(f"{Path(data_dir) / 'train.csv'}: no quake (time_to_failure never jumps up): one cycle")
    parts_root = out_dir.parent / f".{out_dir.name}.parts"
    parts = parts_root / key
    for stale in parts_root.glob("*") if parts_root.is_dir() else []:
        if stale.name != key:  # chunks of another configuration or other data
            shutil.rmtree(stale, ignore_errors=True)
    parts.mkdir(parents=True, exist_ok=True)
    test_starts = np.arange(len(test.seg_ids), dtype=np.int64) * rows
    tasks = [
        ("train", _source(train.signal), meta["start"].to_numpy()),
        ("test", _source(test.signal), test_starts),
    ]
    workers = n_jobs(jobs)
    log.info(f"features: {len(meta)} train segments in {n_cycles} cycles, {len(test_starts)} test segments, {workers} jobs")
    with timer.step("compute"):
        values = _compute(cfg, workers, parts, tasks, len(meta) + len(test_starts))
    train_table = pd.concat([meta, pd.DataFrame(values["train"], columns=FEATURE_NAMES)], axis=1)
    test_table = pd.concat([pd.DataFrame({"seg_id": test.seg_ids}), pd.DataFrame(values["test"], columns=FEATURE_NAMES)], axis=1)
    with atomic_path(out_dir) as tmp:
        # the folder is swapped whole: old tables or new ones, never a mix of the two
        tmp.mkdir()
        with timer.step("write"):
            train_table.to_parquet(tmp / "train.parquet", index=False)
            test_table.to_parquet(tmp / "test.parquet", index=False)
        record = stage_record(
            "features",
            cfg.to_dict(),
            timer,
            key=key,
            n_rows=train.n_rows,
            n_train=len(train_table),
            n_test=len(test_table),
            n_cycles=n_cycles,
            jobs=workers,
            data_dir=str(data_dir),
            segments_per_s=round((len(train_table) + len(test_table)) / max(timer.timings["compute"], 1e-9), 2),
        )
        write_json(tmp / "features.json", record)
    shutil.rmtree(parts_root, ignore_errors=True)
    log.info(f"features: wrote {out_dir}/train.parquet ({len(train_table)} rows) and test.parquet ({len(test_table)} rows) in {timer.total():.1f} s")
    return record
