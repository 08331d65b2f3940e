"""The sequence model's input: a segment cut into time steps, each described by a few statistics.

(First cut, to be replaced by the measured design: one channel, the log standard deviation.)
"""

from __future__ import annotations

import numpy as np

from labquake.config import FeatureConfig
from labquake.features.segment import noise_vector

SEQ_CHANNELS: list[str] = ["log_std"]


def segment_sequence(x: np.ndarray, fc: FeatureConfig) -> np.ndarray:
    """(steps, channels) float32: statistics of each ``fc.seq_window``-sample window of one segment."""
    z = np.asarray(x, dtype=np.float64) + noise_vector(fc, len(x))
    z -= np.median(z)
    w = z.reshape(-1, fc.seq_window)
    return np.log(w.std(axis=1) + 1.0)[:, None].astype(np.float32)
