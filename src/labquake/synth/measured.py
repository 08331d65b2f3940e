"""Constants of the synthetic signal measured on real LANL segments (bench/measure_real.py).

Source: the 100 real test segments of Kaggle's LANL Earthquake Prediction (test_sample.npz), read by
``python bench/measure_real.py REAL_DIR --module src/labquake/synth/measured.py``, which rewrites
these tables. Each segment's Welch spectrum (2,048-sample frames, median removed) is a floor that
every segment shares plus two parts whose weights vary from segment to segment; a non-negative
factorisation with the floor's weight fixed at 1 fits all 100 to a median log error of 0.07
(about Welch's own scatter):

    power(f) = FLOOR(f) + tone * TONE(f) + low * LOW(f)

- ``FLOOR``: a Gaussian background (kurtosis 0.1 above 0.1 cycles/sample) with the recorder's
  resonance at 0.064 cycles/sample and a falling floor to 0.5; variance 10 (sd 3.2, as in the
  quietest segments and in the windows around a failure).
- ``TONE``: the varying part at 0.03-0.08 cycles/sample, peak near 0.063; its weight ``tone`` has
  the quantiles ``TONE_LEVEL`` over the segments. It comes in bursts: the band 0.02-0.1 has kurtosis
  47-85, rising with the weight.
- ``LOW``: the part at 0.01-0.04 cycles/sample (peak 0.021), weight ``low`` with quantiles
  ``LOW_LEVEL``, heavy-tailed; it rises with the tone (Spearman ``LOW_TONE_SPEARMAN`` over the segments).
- ``WANDER``: the baseline's slow wander inside a segment, below the floor's resolution.

Powers are one-sided densities in signal units squared per (cycles/sample), at ``FREQ_KNOTS``.
"""

from __future__ import annotations

import numpy as np


def _parse_table(text: str) -> np.ndarray:
    return np.array(text.split(), dtype=np.float64)


# every bin of a 2,048-sample frame up to 0.12 cycles/sample, where the varying parts live, then every
# 8 bins (the floor's shape there: linear between knots 0.02 apart, it missed the real floor by 1-2%)
FREQ_KNOTS = np.r_[np.arange(0, 0.12, 1 / 2048), np.arange(0.12, 0.5, 1 / 256), 0.5]
FLOOR = _parse_table(
    """
    6.223 6.223 15.29 13.54 12.92 12.11 11.82 11.18 10.78 10.49 10.77 11.38
    11.11 10.83 11.21 11.97 11.96 11.79 11.88 12.57 12.84 13.16 13.57 14.44
    13.93 12.5 13.6 14.94 16.25 14.93 14.64 14.81 14.63 14.81 13.93 13.43
    14.14 15.49 16.05 16.08 14.02 10.08 6.205 2.988 0 0.4793 4.763 9.803
    10.57 13.83 18.76 19.51 19.98 19.91 18.07 19.29 21.35 21.2 20.42 21.97
    23.36 23.2 23.5 24.68 25.62 26.85 24.51 20.67 18.03 13.79 6.171 2.414
    0.0372 0.3912 10.88 15.31 15.66 17.71 21.36 26.47 28.52 27.66 31.27 31.52
    29.27 25.25 21.28 17.32 13.51 11.78 10.7 10.15 12.5 13.23 12.32 13.7
    17.59 20.64 21.73 25.07 28.82 27.24 31.49 36.11 32.7 31.33 32.89 35.76
    34.32 31.46 32.05 32.75 30.17 27.39 28.98 32.98 37.49 41.15 40.95 39.79
    43.05 40.47 39.43 34.8 33.98 34.39 31.39 23.68 18.23 12.71 13.29 15.22
    13.55 12.37 16.34 21.8 25.08 27.37 30.21 34.55 43 44.75 47.13 44.34
    42.1 40.83 38.93 37.43 37.06 36.27 34.54 36.11 37.14 36.36 34.83 33.65
    31.98 30.96 31 30.75 30.17 29.01 29.73 31.41 31.13 30.44 30.63 29.98
    28.97 28.34 29.05 30.08 30.21 28.64 29 29.17 28.81 28.24 28.41 30.09
    30.05 29.78 29.02 29.32 30.25 30.58 31.51 32.81 32.82 32.49 31.23 30.71
    32.24 32.8 31.59 31.73 32.69 32.8 33.6 34.05 32.69 31.48 31.12 30.23
    30.59 30.43 29.43 30.24 30.15 30.01 29.89 29.78 29.21 29.44 29.35 28.86
    28.04 26.95 26.46 26.67 26.45 25.7 24.67 25.01 25.19 25.64 25.23 24.94
    25.54 25.62 25.09 24.14 24.2 24.23 23.6 23.78 24.31 24.1 23.59 23.35
    22.95 23.08 23.1 22.57 22.2 21.95 22.26 21.48 20.81 20.74 20.11 19.95
    19.62 19.09 18.86 18.82 18.47 18.23 17.94 17.62 17.68 17.16 16.78 16.76
    16.65 16.3 15.99 15.86 15.54 15.25 15.22 14.91 14.82 14.33 14.23 14.15
    13.78 13.64 13.45 13.23 13.02 12.67 12.53 12.42 12.12 12.02 11.72 11.51
    11.41 11.17 10.96 10.74 10.47 10.44 10.28 9.992 9.797 9.582 9.434 9.229
    9.054 8.843 8.721 8.497 8.405 8.216 8.063 7.971 7.727 7.65 7.544 7.219
    7.157 6.95 6.783 6.651 6.602 6.438 6.259 6.161 6.05 5.919 5.782 5.756
    5.583 5.43 5.331 5.257 5.162 5.08 4.96 4.904 4.809 4.778 4.712 4.617
    4.622 4.586 4.532 4.523 4.472 4.447 4.41 4.428 4.575
    """
)
TONE = _parse_table(
    """
    0 0 0.0066 0 0 0.0145 0.0172 0.1286 0.2721 0.3804 0.2716 0.0589
    0 0 0.0361 0.072 0.0845 0.0093 0.0211 0.3599 0.9572 5.19 16.81 21.25
    6.745 7.76 11.68 11.09 9.955 9.198 10.29 9.545 1.831 0 0 0
    0 0 0 3.523 22.96 41.32 31.39 20.03 12.26 7.473 10.12 18.89
    20.41 34.65 37.08 29.42 19.52 13.87 6.568 4.163 6.977 15.51 26.18 33.41
    51.72 50.13 38.59 40.88 52.8 60.91 78.81 115.5 155.4 181.9 257.9 367.2
    414.4 407.3 326.2 309.4 328.3 296 234.3 189.7 186 210.4 192.5 181.2
    205.5 282.7 390 467.3 516.9 549.8 601.1 619.8 581.4 534 514.5 474.9
    403.9 364.9 324.3 259.7 214.2 206.8 182 155.9 170.2 192.9 188 179.1
    183.5 187.2 185.2 196.9 235.6 277.1 303.6 322.8 332.2 345.6 373.1 402.6
    419.5 475.1 514.4 631 762.9 895.4 985.7 1080 1221 1360 1286 1187
    1214 1246 1165 1002 851.6 732.7 606.3 464.9 352.1 309.9 275.1 236.4
    194.1 160.3 131.9 120.2 109.1 100.7 93.97 73.1 60.62 52.6 46.89 40.65
    38.31 36.91 32.59 29.6 27.92 26.44 23.51 21.51 22.12 22.03 19.16 17.17
    17.72 18.75 17.26 14.59 13.67 13.11 10.99 11.15 11.26 10.98 10.56 10.94
    13.01 15.87 17.06 17.99 20.43 23.39 25.15 26.27 29.57 31.91 34.07 35.01
    34.52 32.93 30.58 29.44 30.65 31.8 31.44 32.47 27.77 25.18 23.67 24.7
    23.68 23.49 23.38 22.87 21.64 20.78 19.48 18.72 17.96 16.07 14.15 12.21
    9.637 8.769 8.459 7.828 6.979 6.876 7.557 7.235 6.644 5.838 6.216 6.27
    5.503 5.097 5.541 5.435 5.136 4.562 4.403 3.941 3.24 3.007 3.082 2.95
    2.597 2.321 2.272 2.038 1.816 1.776 1.599 0.8318 0.6918 0.4674 0.3545 0.1973
    0.2025 0.2969 0.1784 0.1111 0.0845 0.0523 0.0899 0.0382 0.0354 0.041 0.0391 0.0281
    0.023 0.0249 0.0057 0.0155 0.0134 0.0358 0.0111 0.0019 0.0224 0.017 0.0097 0.0041
    0.018 0.013 0.0136 0.0235 0.0127 0.0147 0.0058 0.0047 0.017 0.0104 0.019 0.0105
    0.0089 0.0096 0.0195 0.0088 0.0151 0.0131 0.004 0.0112 0.0066 0.0067 0.0123 0.0093
    0.0336 0.0202 0.0016 0.0083 0.0065 0.0085 0.0013 0.0108 0.0046 0.0037 0.009 0.0064
    0.0012 0.0014 0.0014 0.0158 0.0043 0.0033 0.0125 0.0004 0.0139 0.0007 0.0089 0.0134
    0.0054 0.0043 0.0017 0.0025 0.0136 0.0017 0.0061 0.0026 0.0046 0.0027 0.0034 0.0027
    0.0036 0.0019 0.0036 0.0022 0.0093 0.0027 0.0086 0 0.0236
    """
)
LOW = _parse_table(
    """
    1.32 1.32 1.132 1.102 1.108 1.138 0.9435 0.6395 0.5515 0.2825 0.3857 0.9903
    2.47 2.945 2.824 2.212 2.871 4.801 7.746 11.67 16.7 12.66 19.88 65.6
    171.9 179.3 143.1 91.17 49.89 45.21 49.94 62.58 86.37 98.79 129.6 159.1
    175.9 184.6 182.7 213 300.8 488.8 769.1 1052 1352 1387 1159 837.3
    719.8 547.7 415.3 330.9 302.5 356.4 507.1 476.1 287.1 220 252.7 243.4
    179.6 143.4 117.1 113.9 120.3 135 135 142.3 209.3 418.1 629.5 625.6
    687.1 672.7 374.7 230.3 199.6 137.4 57.16 36.74 26.64 22.13 15.33 22.68
    32.64 50.59 34.55 13.38 43.82 46.87 18.21 28.3 66.65 134.6 198.7 170.4
    105.1 56.38 39.56 47.42 63.3 67.02 38.94 22.8 43.17 40.85 29.16 30.61
    41.12 66.27 79.17 96.06 127.3 131.1 123.9 84.79 63.87 64.16 84.04 113.7
    125.1 111 92.76 82.62 82.42 82.2 101.9 127.3 83.45 66.49 76.59 77.43
    22.3 18.13 27.65 26.99 23.51 18.39 44.98 118.8 106.2 51.61 31.79 53.55
    72.92 87.99 101.4 91.49 80.14 56.24 31.51 22.48 19.38 23 19.7 14.9
    15.38 12.05 8.974 8.443 4.184 0.87 2.335 4.403 8.695 10.96 10.68 6.542
    4.021 2.355 0.7649 0.337 1.51 2.546 2.535 3.618 6.044 6.662 6.234 5.468
    6.068 7.029 7.734 8.322 6.842 4.624 3.247 4.148 4.577 2.433 1.155 5.795
    8.745 10.26 11.48 8.384 5.729 4.021 2.434 3.294 6.202 6.265 4.182 1.751
    0.2537 0.255 0.2175 0.8823 1.78 1.235 0.5133 0.0644 0.2455 0.9378 1.336 1.595
    2.017 0.9305 0.3907 0.3677 0.2709 0.0665 0.2802 0.998 1.681 1.516 0.7959 0.4868
    0.5714 0.8827 0.0883 0.1127 0.5432 0.3647 0.1209 0.5516 0.5043 0.4937 0.3129 0.0874
    0.1972 0.4937 0.2203 0.1348 0.1902 0.3617 0.1415 0.0217 0.0822 0.0328 0.0163 0.0176
    0.0224 0.0287 0.0274 0.0056 0.0097 0.0348 0.0063 0.0052 0.0142 0.003 0.0048 0.0021
    0.0138 0.0052 0.0048 0.0018 0.0107 0.0072 0.0015 0.0031 0.0064 0.0034 0.0002 0.0067
    0.0035 0.0033 0.0121 0.0013 0.0012 0.0047 0.0096 0.0033 0.0002 0.0005 0 0.0047
    0.0012 0.0014 0.0018 0.0002 0.0012 0.0025 0.0025 0.0107 0.0008 0.0017 0.003 0.003
    0.0028 0.0031 0.0048 0.0021 0.0028 0.0032 0.0021 0.0004 0.0042 0.0017 0.0016 0.0001
    0.0051 0.004 0.0011 0.0032 0.0006 0.0017 0.0024 0.001 0.0004 0.0017 0.0029 0.0031
    0.0013 0.0023 0.0008 0.0009 0.0015 0.0002 0.0029 0.0031 0.0004 0.0061 0.0047 0.0016
    0.0057 0.0056 0.0008 0.0002 0.0002 0.0004 0.0024 0.0006 0.0017
    """
)
LEVEL_QUANTILES = np.linspace(0, 1, 21)
TONE_LEVEL = _parse_table(
    """
    0.0519 0.2257 0.3576 0.4815 0.5283 0.5619 0.7038 0.8 0.8803 0.9505 1.03
    1.236 1.339 1.514 1.717 1.823 2.053 2.17 2.511 2.943 5.967
    """
)
LOW_LEVEL = _parse_table(
    """
    0.0182 0.0233 0.0501 0.0801 0.1076 0.1218 0.1333 0.1601 0.1801 0.1873 0.2221
    0.2355 0.2666 0.3021 0.4233 0.4815 0.5618 0.6714 1.077 1.987 15.42
    """
)
LOW_TONE_SPEARMAN = 0.81  # rank correlation of the two weights over the segments
# A slow wander of the baseline within a segment, below about 0.003 cycles/sample (32,768-sample
# frames): the excess over the floor, fitted by AR(1) processes as (correlation length in samples,
# variance). Small (sd 0.23), but it sets the spectral contrast of the band below 200 Hz (0.009 cycles/sample).
WANDER = ((300, 0.0181), (1000, 0.0236), (3000, 0.0031), (10000, 0.0115))
# Tuned, not measured: the 2,048-sample frames of the features (spectral contrast below 200 Hz, the
# lowest mel band) see more of the slower parts than the 32,768-sample fit gives; these factors on
# the parts' variances were chosen with `bench/realism.py --quick` (KS of NN_lib_spectral_contrast0
# 0.25 -> 0.13, the lowest mel band's mean log power within 0.1 dB of the real).
WANDER_SCALE = (1.0, 1.3, 2.0, 1.5)
# Emission comes in short events. Within a segment, the tone's power in 2,048-sample frames has a
# log sd of 1.8 (median 0.13 of the mean), frames only 0.1 correlated with the next, and the low
# part's log power correlates 0.53 with the tone's. Log-normal amplitude envelopes whose frames show
# the same figures are a little too smooth inside a frame for the 24 features and for the mel bands'
# mean log power, and the real low part grows burstier than the tone; these sds (rather than the 1.0
# that matches the frames) were chosen with `bench/realism.py --quick`: the tone's falls from 1.3 in
# the quietest segments to 1.1 in the loudest, the low part's is 1.5 (median KS of the 24 features
# 0.146 -> 0.125, largest 0.49 -> 0.27, with the floor's finer knots and WANDER_SCALE).
# sd of the tone's log amplitude and of the low part's, at the lowest and at the highest tone level
ENVELOPE_SD = {"tone": (1.3, 1.1), "low": (1.5, 1.5)}
ENVELOPE_LENGTH = 600.0  # correlation length of the log envelopes, in samples
ENVELOPE_CORR = 0.55  # of the two parts' log envelopes
# Where the factorisation's floor dips under the real quietest frames: at the varying parts' peaks
# the real frames never fall quiet, and the fit put the floor near 0 there. The shortfall of the 10%
# quantile of the frame power (all frames of the 100 real test segments against 300 rendered), added
# to the floor at every bin below 0.12 cycles/sample; three damped steps of bench/realism.py
# --floor-fill (half the shortfall each, from a zero fill) left it at 19 bins: 0.020-0.024,
# 0.034-0.036, 0.046 and 0.063-0.065 cycles/sample.
FLOOR_FILL = _parse_table(
    """
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 5.419 8.832 17.68 17.74 22.09 13.68 8.443
    7.538 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 9.788 5.994 16.24 12.51 6.078 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 11.31 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 9.88 11.56 11.74 11.14 18.45 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
    0 0 0 0 0 0
    """
)
# synth --bursts events: the real bursts are acoustic-emission events. Their envelope (the power
# over 128 samples) rises at once and decays slowly: from its peak to e^-4 of it in a median of 172
# samples before and 676 after (768 after for the 716 events over 30x the floor; 100 real test
# segments, bench/measure_real.py's event_shapes), where the log-normal envelopes rise and fall
# alike (333 and 373). A power decay of EVENT_DECAY samples gives the real shape.
# The rate, its power of the weight and the log sds were chosen with `bench/realism.py --quick`
# (docs/synthetic.md): the rate is pinned by the bursts' asymmetry (a denser stream of events
# overlaps into a symmetric fuzz), the sds by the mel bands' mean log power.
EVENT_DECAY = 220.0  # samples, of the power
EVENT_RATE = 0.002  # onsets per sample at a tone weight of 1 (the real test's median weight is 1.03)
EVENT_RATE_POWER = 0.75  # the rate goes as the tone weight to this power; the energies carry the rest
EVENT_SD = 2.5  # log sd of an event's energy
EVENT_LOW_SD = 1.5  # log sd of an event's low share: the real low part is burstier than the tone
