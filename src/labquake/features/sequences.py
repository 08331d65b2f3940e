"""The sequence model's input: a segment cut into time steps, each described by a few statistics.

A segment is prepared as for the 24 features (``z = x + noise; z -= median(z)``, docs/recipe.md),
cut into ``fc.seq_window``-sample windows (150 of 1,000 by default) and each window described by
``SEQ_CHANNELS``:

- ``log_std``: ``log1p(std(w))``, the window's loudness.
- ``log_abs_median``: ``log1p(median(|w|))``, the loudness of the window's body, blind to bursts.
- ``log_peak_ratio``: ``log1p(max|w|) - log1p(std(w))``, how far the largest sample stands out (bursts).
- ``zero_cross_rate``: the share of the window's consecutive pairs with one sample negative and the other not.
- ``log_diff_ratio``: ``log1p(std(diff(w))) - log1p(std(w))``, the share of high frequencies.

Scale-heavy statistics go through log1p so the network sees O(1) values; tails and spectrum are
ratios to the loudness so that they do not repeat it. ``features.reference.sequence`` states the
same numbers as a loop over windows (tests/test_sequences.py holds the two within float32 rounding).

How they were chosen (``demo`` data, seed 0: 240 train segments, 200 test segments with their
truth; 1,000-sample windows). |Spearman| of each candidate, averaged over the segment's windows,
with time to failure, train / test: ratio of max|z| to std 0.63 / 0.69, log kurtosis 0.61 / 0.68,
log max|z| 0.58 / 0.67, lag-1 autocorrelation 0.57 / 0.66, ratio of diff std to std 0.57 / 0.66,
log q99|z| 0.56 / 0.67, log std 0.56 / 0.66, log diff std 0.54 / 0.66, share of |z| > 15 0.54 /
0.64, log mean|z| 0.53 / 0.65, log median|z| 0.52 / 0.64, zero-crossing rate 0.40 / 0.53, window
mean 0.09 / 0.08 (dropped). Averaged over a segment every loudness statistic says the same thing
(pairwise |Spearman| 0.97-1.00), so redundancy was judged window by window (pooled |Spearman|
between channels over all 36,000 train windows): log std repeats log mean|z| (0.95), log q99|z|
(0.96), log diff std (0.91), the share above 15 (0.92) and log max|z| (0.91), so only log std is
kept of them; log median|z| differs from it (0.79); the peak ratio (0.64 with log std) repeats log
kurtosis (0.95) and costs far less; the diff ratio repeats the lag-1 autocorrelation (1.00) and
differs from the peak ratio (0.72); the zero-crossing rate is nearly independent of all (<= 0.43).
A small gradient-boosting model on the segment's mean, std and max of each channel (train -> test
MAE, 5 seeds; constant 3.52) could not tell channel sets apart at this size: log std alone 2.60,
these five 2.67, all twelve 2.67; the sequence network is what is meant to use the time axis.

Cost per segment on one core (float64 on a real segment): noise 0.2 ms, median by one partition
0.3 ms (``np.median`` 1.8 ms), std 0.4, median |w| by one partition 0.3, max|w| 0.05, zero
crossings 0.2, diff and its std 0.6. The whole function: 3.0 ms (2.6 ms with windows of 3,000,
3.2 ms with 500) against 36 ms for the 24 features timed alongside on the same loaded machine
(about 20 ms unloaded), i.e. 8-15% added; ``reference.sequence`` takes 18 ms. Left out for cost:
kurtosis (12.7 ms) and several quantiles in one multi-kth partition (2.5 ms).
"""

from __future__ import annotations

import numpy as np

from labquake.config import FeatureConfig
from labquake.features.segment import noise_vector
from labquake.util import LabquakeError

SEQ_CHANNELS: list[str] = ["log_std", "log_abs_median", "log_peak_ratio", "zero_cross_rate", "log_diff_ratio"]


def _median(z: np.ndarray) -> float:
    """``np.median(z)`` by one partition (a median of an even count needs two order statistics)."""
    n = len(z)
    part = np.partition(z, n // 2)
    if n % 2:
        return float(part[n // 2])
    return float(0.5 * (part[: n // 2].max() + part[n // 2]))


def _row_medians(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=1)`` by one partition per row."""
    m = a.shape[1]
    part = np.partition(a, m // 2, axis=1)
    if m % 2:
        return part[:, m // 2]
    return 0.5 * (part[:, : m // 2].max(axis=1) + part[:, m // 2])


def segment_sequence(x: np.ndarray, fc: FeatureConfig) -> np.ndarray:
    """(steps, channels) float32: ``SEQ_CHANNELS`` of each ``fc.seq_window``-sample window of one segment."""
    n, step = len(x), fc.seq_window
    if step < 2 or n % step:
        raise LabquakeError(f"sequences: a segment of {n} rows does not split into windows of {step} (at least 2) samples")
    z = np.asarray(x, dtype=np.float64) + noise_vector(fc, n)
    z -= _median(z)
    w = z.reshape(-1, step)
    a = np.abs(w)
    log_std = np.log1p(w.std(axis=1))
    out = np.empty((len(w), len(SEQ_CHANNELS)), dtype=np.float32)
    out[:, 0] = log_std
    out[:, 1] = np.log1p(_row_medians(a))
    out[:, 2] = np.log1p(a.max(axis=1)) - log_std
    neg = w < 0
    out[:, 3] = np.count_nonzero(neg[:, 1:] != neg[:, :-1], axis=1) / (step - 1)
    out[:, 4] = np.log1p(np.diff(w, axis=1).std(axis=1)) - log_std
    return out
