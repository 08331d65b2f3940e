"""Per-window sequences (fast against the plain loop, known answers) and the overlapping training windows
(which exist, their targets, and the mask that keeps them out of their validation fold's rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from labquake import targets
from labquake.config import FeatureConfig, load_config, with_overrides
from labquake.features import reference
from labquake.features.segment import noise_vector
from labquake.features.sequences import SEQ_CHANNELS, segment_sequence
from labquake.util import LabquakeError

RTOL, ATOL = 1e-5, 1e-6  # float32 output; ratio channels can be near zero, hence the small absolute part


def _assert_parity(x: np.ndarray, fc: FeatureConfig) -> None:
    fast, ref = segment_sequence(x, fc), reference.sequence(x, fc)
    assert fast.dtype == np.float32 and fast.shape == ref.shape == (len(x) // fc.seq_window, len(SEQ_CHANNELS))
    np.testing.assert_allclose(fast, ref, rtol=RTOL, atol=ATOL)


# --- sequences -----------------------------------------------------------------------------------


def test_channels_are_named_once():
    assert 4 <= len(SEQ_CHANNELS) <= 8 and len(set(SEQ_CHANNELS)) == len(SEQ_CHANNELS)


def test_parity_on_real_segments(real_dir):
    test_seg = pd.read_csv(real_dir / "seg_00030f.csv")["acoustic_data"].to_numpy(np.int16)
    _assert_parity(test_seg, FeatureConfig())
    _assert_parity(test_seg, FeatureConfig(seq_window=375))  # odd windows: the other median branch
    train = pd.read_csv(real_dir / "train_head.csv")["acoustic_data"].to_numpy(np.int16)
    _assert_parity(train[:149_000], FeatureConfig())  # the real train head is one row short of a segment
    _assert_parity(train[: 375 * 399], FeatureConfig(seq_window=375))  # odd length: the other segment-median branch


@pytest.mark.parametrize("window", [500, 1000, 3000])
def test_parity_on_random_int16(window):
    rng = np.random.default_rng(window)
    x = rng.normal(0, rng.uniform(2, 50), 150_000).round().astype(np.int16)
    x[rng.integers(0, 150_000, 30)] = rng.integers(-32768, 32767, 30)  # bursts up to int16's range
    fc = FeatureConfig(seq_window=window)
    _assert_parity(x, fc)
    assert segment_sequence(x, fc).shape == (150_000 // window, len(SEQ_CHANNELS))


def test_known_answers_on_a_constant_signal():
    """A constant signal leaves the noise alone (shifted by its median), whose statistics are known."""
    fc = FeatureConfig()
    seq = segment_sequence(np.full(150_000, 7, np.int16), fc)
    noise = noise_vector(fc).reshape(-1, fc.seq_window)
    col = {name: seq[:, i] for i, name in enumerate(SEQ_CHANNELS)}
    np.testing.assert_allclose(col["log_std"], np.log1p(noise.std(axis=1)), rtol=1e-6)  # std ignores the shift
    assert np.mean(np.expm1(col["log_std"])) == pytest.approx(0.5, abs=0.01)  # the noise's sd
    assert np.mean(np.expm1(col["log_abs_median"])) == pytest.approx(0.5 * 0.6745, abs=0.01)  # median |N(0, s)| = 0.6745 s
    assert np.mean(col["zero_cross_rate"]) == pytest.approx(0.5, abs=0.01)  # white noise changes sign half the time
    # std(diff) of white noise is sqrt(2) sd
    assert np.mean(col["log_diff_ratio"]) == pytest.approx(np.log1p(0.5 * np.sqrt(2)) - np.log1p(0.5), abs=0.01)


def test_known_answers_on_constructed_windows():
    fc = FeatureConfig()
    x = np.zeros(150_000, np.int16)
    x[:1000] = np.where(np.arange(1000) % 2, -10, 10)  # window 0 alternates sign at every sample
    x[1500] = 1000  # window 1 holds one spike
    seq = segment_sequence(x, fc)
    zcr, peak = SEQ_CHANNELS.index("zero_cross_rate"), SEQ_CHANNELS.index("log_peak_ratio")
    assert seq[0, zcr] == 1.0
    assert seq[0, SEQ_CHANNELS.index("log_std")] == pytest.approx(np.log1p(np.sqrt(10**2 + 0.5**2)), abs=1e-3)  # signal and noise add in variance
    assert seq[1, peak] > np.log1p(900) - np.log1p(40)  # std of the window is about 1000 / sqrt(1000)
    assert seq[1, peak] > 2 * seq[2:, peak].max()


def test_deterministic_and_leaves_the_input_alone():
    fc = FeatureConfig()
    x = np.random.default_rng(0).integers(-50, 50, 150_000).astype(np.int16)
    x.flags.writeable = False  # segments come from a read-only memmap
    first = segment_sequence(x, fc)
    assert np.array_equal(first, segment_sequence(x, fc))
    assert np.isfinite(first).all()


def test_window_that_does_not_split_the_input_is_an_error():
    with pytest.raises(LabquakeError):
        segment_sequence(np.zeros(1000, np.int16), FeatureConfig(seq_window=3000))


# --- overlapping windows -------------------------------------------------------------------------


def _ttf_with_quakes(n: int, quakes: list[int], rng: np.random.Generator | None = None) -> np.ndarray:
    """Time to failure falling to ~0 before each row of ``quakes`` and jumping up there."""
    bounds = [0, *quakes, n]
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        top = 1.0 + (rng.uniform(0, 10) if rng is not None else hi - lo)
        parts.append(np.linspace(top, 0.001, hi - lo))
    return np.concatenate(parts)


def test_overlap_segments_by_hand():
    """Cycles [0, 23), [23, 42), [42, 50); half-offset windows of 10 start at 5, 15, 25, 35."""
    cfg = load_config("recipe")
    ttf = _ttf_with_quakes(50, [23, 42])
    t = targets.overlap_segments(ttf, cfg, seg=10)
    assert list(t.columns) == ["start", "cycle", "target", "tsf", "binary"]
    assert t["start"].tolist() == [5, 25]  # [15, 25) and [35, 45) cross a quake
    assert t["cycle"].tolist() == [0, 1]
    assert t["target"].tolist() == [ttf[14], ttf[34]]
    assert t["tsf"].tolist() == [ttf[0] - ttf[14], ttf[23] - ttf[34]]
    assert t["binary"].tolist() == [int(ttf[14] < 0.5), int(ttf[34] < 0.5)]
    # the same cycle numbers as the non-overlapping segments of the same cycles
    seg = targets.segment_targets(ttf, cfg, seg=10)
    assert seg.set_index("start").loc[[0, 20], "cycle"].tolist() == [0, 1]


def test_overlap_segments_are_every_half_offset_window_without_a_quake():
    cfg = load_config("recipe")
    rng = np.random.default_rng(1)
    for _ in range(20):
        n, seg = int(rng.integers(200, 2000)), int(rng.integers(4, 60))
        ttf = _ttf_with_quakes(n, sorted(rng.choice(np.arange(1, n), rng.integers(0, 8), replace=False).tolist()), rng)
        t = targets.overlap_segments(ttf, cfg, seg=seg)
        jump_up = np.r_[False, ttf[1:] > ttf[:-1]]  # rows that start a cycle
        expect = [s for s in range(seg // 2, n - seg + 1, seg) if not jump_up[s + 1 : s + seg].any()]
        assert t["start"].tolist() == expect
        for s, c in zip(t["start"], t["cycle"]):
            assert c == np.count_nonzero(jump_up[: s + 1])  # cycles before the window's first row
        assert np.array_equal(t["target"], ttf[t["start"] + seg - 1])


def _brute_force_mask(extra: np.ndarray, starts: np.ndarray, folds: np.ndarray, seg: int, n_rows: int) -> np.ndarray:
    """The mask from row sets: a window may train fold k unless one of its rows is validated in fold k."""
    mask = np.empty((len(extra), folds.max() + 1), dtype=bool)
    for k in range(folds.max() + 1):
        validated = np.zeros(n_rows + seg, dtype=bool)
        for s in starts[folds == k]:
            validated[s : s + seg] = True
        mask[:, k] = [not validated[e : e + seg].any() for e in extra]
    return mask


def test_overlap_train_mask_by_hand():
    starts, folds = np.array([0, 10, 20, 30]), np.array([0, 1, 2, 0])
    mask = targets.overlap_train_mask(np.array([5, 15, 25, 9, 10, 40]), starts, folds, seg=10)
    assert mask.tolist() == [
        [False, False, True],  # [5, 15) shares rows with 0 (fold 0) and 10 (fold 1)
        [True, False, False],
        [False, True, False],
        [False, False, True],  # [9, 19): row 9 is segment 0's last
        [True, False, True],  # [10, 20) is segment 10 itself
        [True, True, True],  # [40, 50) touches segment 30's end without sharing a row
    ]
    with pytest.raises(LabquakeError):
        targets.overlap_train_mask(np.array([5]), starts, folds[:3], seg=10)


@pytest.mark.parametrize("scheme", ["kfold", "cycles", "random"])
def test_overlap_train_mask_never_trains_on_validated_rows(scheme):
    """Shuffled KFold, cycle folds and arbitrary folds, with some cycles left out: exact against row sets."""
    base = load_config("recipe")
    rng = np.random.default_rng(7)
    for trial in range(10):
        seg = int(rng.integers(10, 40))
        n = seg * int(rng.integers(30, 80)) + int(rng.integers(0, seg))
        ttf = _ttf_with_quakes(n, sorted(rng.choice(np.arange(seg, n - seg), 6, replace=False).tolist()), rng)
        table = targets.segment_targets(ttf, base, seg=seg)
        kept = sorted(rng.choice(table["cycle"].unique(), 5, replace=False).tolist())
        selected = targets.select_segments(table, tuple(kept))
        if scheme == "random":
            folds = rng.integers(0, 4, len(selected))
            folds[:4] = np.arange(4)
        else:
            cfg = with_overrides(base, {"cv.scheme": scheme, "cv.n_splits": 3, "cv.seed": trial})
            folds = targets.fold_ids(selected["cycle"].to_numpy(), cfg)
        extra = targets.overlap_segments(ttf, base, seg=seg)["start"].to_numpy()
        starts = selected["start"].to_numpy()
        mask = targets.overlap_train_mask(extra, starts, folds, seg=seg)
        assert mask.shape == (len(extra), folds.max() + 1)
        assert np.array_equal(mask, _brute_force_mask(extra, starts, folds, seg, n))
        # a window that may train fold k shares no row with any of fold k's validation segments
        for k in range(mask.shape[1]):
            for e in extra[mask[:, k]]:
                assert not np.any(np.abs(starts[folds == k] - e) < seg)


# --- computed only when a model reads them --------------------------------------------------------


def test_sequences_only_when_read_then_only_what_is_missing(tiny_raw, tiny_features, tmp_path, caplog):
    """Tables alone when no model reads sequences (features.json says so); a later call that wants them
    computes the sequences only, keeps the tables' bytes, and equals a run that made both at once."""
    import json
    import logging

    from labquake.features import run_features
    from labquake.models.registry import reads_sequences

    assert not reads_sequences(load_config("recipe")) and reads_sequences(load_config("recipe", None, ["blend.models=[lgbm,seq]"]))
    cfg, out = load_config("fast"), tmp_path / "features"
    run_features(cfg, tiny_raw, out, tmp_path / "interim", jobs=1, sequences=False)
    record = json.loads((out / "features.json").read_text())
    assert record["sequences"] is False and not list(out.glob("*.npy"))
    tables = {n: (out / n).read_bytes() for n in ("train.parquet", "test.parquet")}
    assert tables == {n: (tiny_features / n).read_bytes() for n in tables}  # the same tables as with sequences
    with caplog.at_level(logging.INFO, logger="labquake"):
        run_features(cfg, tiny_raw, out, tmp_path / "interim", jobs=1, sequences=True)
    assert any("sequences only" in r.getMessage() for r in caplog.records)
    assert {n: (out / n).read_bytes() for n in tables} == tables
    for n in ("train_seq.npy", "test_seq.npy"):
        assert np.array_equal(np.load(out / n), np.load(tiny_features / n))
    assert json.loads((out / "features.json").read_text())["sequences"] is True
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="labquake"):
        run_features(cfg, tiny_raw, out, tmp_path / "interim", jobs=1, sequences=False)  # a superset is up to date
    assert any("is up to date" in r.getMessage() for r in caplog.records)


def test_seq_on_tables_without_sequences_is_one_line(tmp_path):
    from fakes import cli, one_line_error, write_feature_dir

    feats = write_feature_dir(tmp_path / "f")
    out = cli("train", "--features", feats, "--run", tmp_path / "run", "--set", "blend.models=[seq]", "--fast")
    one_line_error(out, "no sequences here", "blend.models")
