"""The numba kernels of the fast path: the loops NumPy cannot do in one call, or does slower.

Each is compiled on its first call (``cache=True``: on later runs it is loaded from numba's cache),
so importing this module stays cheap. They take and fill plain arrays; ``features.segment`` owns
the buffers. ``warm_up`` calls each once on a tiny input, so the compile or load happens up front.
"""

from __future__ import annotations

import numpy as np

from labquake.util import lazy_njit


@lazy_njit
def sign_changes(x):  # pragma: no cover - compiled
    """Positions where np.sign of consecutive samples differs."""
    count = 0
    prev = (x[0] > 0) - (x[0] < 0)
    for i in range(1, x.shape[0]):
        s = (x[i] > 0) - (x[i] < 0)
        if s != prev:
            count += 1
        prev = s
    return count


@lazy_njit
def count_peaks(x, n):  # pragma: no cover - compiled
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


@lazy_njit
def zcr_mean(x, frame, hop, threshold):  # pragma: no cover - compiled
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


@lazy_njit
def rolling_var(x, w, out):  # pragma: no cover - compiled
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


# Long by design: one numba loop, kept whole so that it compiles to a single pass over the data.
@lazy_njit
def band_extremes(power, bands, peak, valley):  # pragma: no cover - compiled
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


@lazy_njit
def hard_threshold(x, threshold, out):  # pragma: no cover - compiled
    """pywt.threshold(x, threshold, "hard"): values with |v| < threshold become 0."""
    for i in range(x.shape[0]):
        v = x[i]
        out[i] = v if abs(v) >= threshold else 0.0
    return out


@lazy_njit
def autocorrelation(x, lag):  # pragma: no cover - compiled
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


@lazy_njit
def abs_sum_greater(x, limit):  # pragma: no cover - compiled
    total = 0.0
    for i in range(x.shape[0]):
        a = abs(x[i])
        if a > limit:
            total += a
    return total


@lazy_njit
def mel_power(power, weights, lo, hi, out):  # pragma: no cover - compiled
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


@lazy_njit
def abs_squared(spec, out):  # pragma: no cover - compiled
    """|spec|**2 as re**2 + im**2 (np.abs squared, within an ulp, without hypot's cost)."""
    for t in range(spec.shape[0]):
        for j in range(spec.shape[1]):
            v = spec[t, j]
            out[t, j] = v.real * v.real + v.imag * v.imag
    return out


@lazy_njit
def windowed_frames(y, first, hop, window, out):  # pragma: no cover - compiled
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


# Long by design: one numba loop, kept whole so that it compiles to a single pass over the data.
@lazy_njit
def select_pair(a, r, buf):  # pragma: no cover - compiled
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


def warm_up(zcr_threshold: float) -> None:
    """Load (or on a first run compile) every kernel."""
    p = np.linspace(-1.0, 1.0, 64)
    sign_changes(p), count_peaks(p, 2), abs_sum_greater(p, 0.5), select_pair(p, 3, np.empty(64))
    zcr_mean(p, 16, 4, zcr_threshold), rolling_var(p, 4, np.empty(61))
    band_extremes(p.reshape(2, 32), np.array([[0, 32, 2]]), np.empty((1, 2)), np.empty((1, 2)))
    mel_power(p.reshape(2, 32), np.ones((1, 32)), np.zeros(1, np.int64), np.ones(1, np.int64), np.empty((2, 1)))
    abs_squared(np.ones((2, 3), np.complex128), np.empty((2, 3)))
    windowed_frames(p, 0, 4, np.ones(8), np.empty((2, 8)))
    hard_threshold(p, 0.5, np.empty(64)), autocorrelation(p, 5)
