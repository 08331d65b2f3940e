"""Kaggle's text form of the synthetic files, written fast: table look-ups and a byte mask."""

from __future__ import annotations

import functools
import itertools

import numpy as np

from labquake.config import SUBMISSION_COLUMNS
from labquake.synth.timebase import UNITS_PER_S

TRAIN_HEADER = b"acoustic_data,time_to_failure"
TEST_HEADER = b"acoustic_data"
SUB_HEADER = ",".join(SUBMISSION_COLUMNS)

# A row of train.csv is built in a fixed 24-byte frame from three 8-byte table look-ups, then the
# unused bytes are dropped with a keep mask (one look-up too):
#   col 0 '\n' | 1 unused | 2-7 signal, right-aligned | 8 ',' | 9-10 whole seconds | 11 '.' |
#   12-21 ten decimals | 22-23 unused.
# Each row *starts* with its newline: the header is written without one and the file ends with one.
_W = 24


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) ASCII digits, zero-padded."""
    out = np.empty((len(values), width), np.uint8)
    v = values.astype(np.int64)
    for j in range(width):
        out[:, width - 1 - j] = v % 10 + 48
        v //= 10
    return out


def _trailing_zeros(digits: np.ndarray) -> np.ndarray:
    tz = np.zeros(len(digits), np.int16)
    run = np.ones(len(digits), bool)
    for j in range(digits.shape[1] - 1, -1, -1):
        run &= digits[:, j] == 48
        tz += run
    return tz


@functools.cache
def _tables() -> dict[str, np.ndarray]:
    x = np.arange(-32768, 32768)
    a = np.abs(x)
    nd = 1 + (a >= 10).astype(np.int16) + (a >= 100) + (a >= 1000) + (a >= 10_000)
    neg = x < 0
    sig = np.zeros((65536, 8), np.uint8)
    sig[:, 0] = 10
    sig[:, 3:8] = _digits(a, 5)
    sig[np.flatnonzero(neg), 7 - nd[neg]] = 45
    i = np.arange(1_000_000)
    head = np.empty((1_000_000, 8), np.uint8)  # ',' + two digits of whole seconds + '.' + 4 decimals
    head[:, 0], head[:, 3] = 44, 46
    head[:, 1:3] = _digits(i // 10_000, 2)
    head[:, 4:8] = _digits(i % 10_000, 4)
    tail = np.zeros((1_000_000, 8), np.uint8)  # the last 6 decimals
    tail[:, :6] = _digits(i, 6)
    pat = np.zeros((6, 2, 10, _W), bool)  # signal start col - 2, two-digit seconds, decimals - 1
    for s, two, k in itertools.product(range(6), range(2), range(10)):
        p = pat[s, two, k]
        p[[0, 8, 10, 11]] = True
        p[2 + s : 8] = True
        p[9] = bool(two)
        p[12 : 13 + k] = True
    return {
        "sig": sig.view(np.uint64).ravel(),
        "sig_start": (6 - nd - neg).astype(np.int16),  # first used col - 2
        "sig_pat": np.array([[True, False] + [c >= s for c in range(2, 8)] for s in range(2, 8)]),
        "head": head.view(np.uint64).ravel(),
        "tail": tail.view(np.uint64).ravel(),
        "tz6": _trailing_zeros(tail[:, :6]),
        "tz4": _trailing_zeros(_digits(np.arange(10_000), 4)),
        "pat": pat.reshape(-1, _W).view(np.dtype((np.void, _W))).ravel(),
    }


def format_train_rows(x: np.ndarray, ttf_units: np.ndarray) -> np.ndarray:
    """Rows ``\n<signal>,<time>`` as uint8 text; times from int64 units of 1e-10 s (< 100 s)."""
    t = _tables()
    xi = x.astype(np.int32) + 32768
    whole = ttf_units // UNITS_PER_S
    if len(whole) and (whole.max() >= 100 or whole.min() < 0):
        raise AssertionError("time to failure outside [0, 100) s")
    frac = ttf_units - whole * UNITS_PER_S
    first4 = frac // 10**6
    last6 = frac - first4 * 10**6
    words = np.empty((len(xi), 3), np.uint64)
    words[:, 0] = t["sig"][xi]
    words[:, 1] = t["head"][whole * 10_000 + first4]
    words[:, 2] = t["tail"][last6]
    tz = t["tz6"][last6]
    z = np.flatnonzero(last6 == 0)
    tz[z] += t["tz4"][first4[z]]
    code = (t["sig_start"][xi] * 2 + (whole >= 10)) * 10 + 9 - np.minimum(tz, 9)
    return words.view(np.uint8).ravel()[t["pat"][code].view(bool)]


def format_signal_rows(x: np.ndarray) -> np.ndarray:
    """Rows ``\n<signal>`` as uint8 text."""
    t = _tables()
    xi = x.astype(np.int32) + 32768
    return t["sig"][xi].view(np.uint8)[t["sig_pat"][t["sig_start"][xi]].ravel()]


def format_times(ttf_units: np.ndarray) -> list[str]:
    """Times as text, the same format as in train.csv (for the small truth file)."""
    text = format_train_rows(np.zeros(len(ttf_units), np.int16), np.asarray(ttf_units, np.int64)).tobytes()
    return [line[2:] for line in text.decode().split("\n")[1:]]
