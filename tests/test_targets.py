"""Segments, cycles, targets and folds against hand-worked answers (docs/recipe.md, 'Segments, cycles and targets')."""

import numpy as np
import pytest

from labquake import data, targets
from labquake.config import REAL_TRAIN_ROWS, load_config
from labquake.util import LabquakeError


def test_segment_starts_drop_incomplete_window():
    assert targets.segment_starts(10, 3).tolist() == [0, 3, 6]
    assert targets.segment_starts(2, 3).tolist() == []
    # The real train.csv has 4,194 full segments.
    assert len(targets.segment_starts(REAL_TRAIN_ROWS, 150_000)) == 4194


def test_cycle_starts_are_upward_jumps_in_any_chunking():
    ttf = np.array([3.0, 2.0, 1.0, 5.0, 4.0, 3.0, 2.0, 6.0, 5.0])
    for chunk in (1, 2, 3, 100):
        assert targets.cycle_starts(ttf, chunk=chunk).tolist() == [0, 3, 7]
    assert targets.cycle_starts(np.array([2.0, 1.0])).tolist() == [0]  # no quake: one cycle


def test_assign_cycles_later_cycle_wins_at_boundaries():
    # 3 cycles starting at rows 0, 10, 25; n = 40; segments of 5 rows at 0, 5, ..., 35.
    starts = targets.segment_starts(40, 5)
    cycles = targets.assign_cycles(starts, np.array([0, 10, 25]), 40, 5)
    # s=5: s+5 >= 10 and s <= 25-5 -> cycle 1 wins over cycle 0 (the recipe's ">=").
    # s=20: s+5 >= 25 -> cycle 2; s=20 also fits cycle 1 (20 <= 20) but the later wins.
    assert cycles.tolist() == [0, 1, 1, 1, 2, 2, 2, 2]


def test_segment_targets_tsf_and_binary():
    ttf = np.array([1.0, 0.9, 0.45, 0.4, 3.0, 2.9, 2.0, 1.9, 1.8])  # cycles start at rows 0 and 4
    table = targets.segment_targets(ttf, load_config(), seg=2)
    assert table["start"].tolist() == [0, 2, 4, 6]
    assert table["cycle"].tolist() == [0, 1, 1, 1]  # start 2: 2+2 >= 4, the later cycle wins
    assert table["target"].tolist() == [0.9, 0.4, 2.9, 1.9]
    np.testing.assert_allclose(table["tsf"], [1.0 - 0.9, 3.0 - 0.4, 3.0 - 2.9, 3.0 - 1.9])
    assert table["binary"].tolist() == [0, 1, 0, 0]


def test_train_cycles_recipe_list_only_on_real_data():
    cfg = load_config()
    cycles = np.repeat(np.arange(5), 3)
    assert targets.train_cycles(cfg, True, cycles)[0] == (0, 1, 2, 4, 7, 9, 10, 11, 13, 14)  # Kaggle's real recording
    assert targets.train_cycles(cfg, False, cycles)[0] == (1, 2, 3)  # elsewhere every complete cycle
    assert targets.train_cycles(cfg, False, np.array([0, 0, 1]))[0] is None  # none complete: every cycle
    cfg = load_config("recipe", None, ["data.train_cycles=[1,2]"])
    assert targets.train_cycles(cfg, False, cycles)[0] == (1, 2)


def test_folds_match_sklearn_kfold_and_cover_every_row_once():
    from sklearn.model_selection import KFold

    cfg = load_config()
    folds = targets.fold_ids(np.repeat(np.arange(10), 10), cfg)
    assert sorted(np.bincount(folds).tolist()) == [33, 33, 34]
    for k, (_, valid) in enumerate(KFold(3, shuffle=True, random_state=1337).split(np.arange(100))):
        assert np.flatnonzero(folds == k).tolist() == valid.tolist()
    assert np.array_equal(folds, targets.fold_ids(np.repeat(np.arange(10), 10), cfg))  # deterministic


def test_cycle_folds_keep_every_cycle_in_one_fold():
    cycles = np.repeat([0, 1, 2, 3, 4, 5, 6], [30, 10, 25, 40, 5, 20, 15])
    cfg = load_config("recipe", None, ["cv.scheme=cycles"])
    folds = targets.fold_ids(cycles, cfg)
    assert len(np.unique(folds)) == 3 and np.array_equal(folds, targets.fold_ids(cycles, cfg))
    for c in np.unique(cycles):
        assert len(np.unique(folds[cycles == c])) == 1  # no cycle in two folds
    # as many folds as cycles: leave one cycle out; more: an error
    loco = targets.fold_ids(cycles, load_config("recipe", None, ["cv.scheme=cycles", "cv.n_splits=7"]))
    assert len(np.unique(loco)) == 7
    assert all(len(np.unique(cycles[loco == k])) == 1 for k in range(7))
    with pytest.raises(LabquakeError, match="cv.n_splits=8 folds of whole cycles, but the selected segments hold 7 cycles"):
        targets.fold_ids(cycles, load_config("recipe", None, ["cv.scheme=cycles", "cv.n_splits=8"]))
    with pytest.raises(LabquakeError, match="hold 1 cycles"):
        targets.fold_ids(np.zeros(20, int), cfg)
    with pytest.raises(LabquakeError, match="cv.scheme must be one of kfold, cycles"):
        load_config("recipe", None, ["cv.scheme=groups"])


@pytest.mark.parametrize("cycles,expected", [(None, [0, 1, 2, 3]), ((1,), [1, 2])])
def test_select_segments(cycles, expected):
    import pandas as pd

    table = pd.DataFrame({"start": [0, 1, 2, 3], "cycle": [0, 1, 1, 2]})
    assert targets.select_segments(table, cycles)["start"].tolist() == expected


def test_memory_mapped_columns_are_read_the_same(tmp_path):
    """Targets from a memory-mapped file (read, not paged in) equal those from the array itself."""
    cfg = load_config()
    ttf = np.array([5.0, 4.0, 3.0, 2.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 7.5, 7.0])
    path = tmp_path / "ttf.f64"
    ttf.tofile(path)
    mapped = np.memmap(path, dtype=np.float64, mode="r", shape=ttf.shape)
    assert data.read_at(mapped, np.array([14, 0, 7])).tolist() == [7.0, 5.0, 6.0]
    assert data.read_rows(mapped, 3, 6).tolist() == [2.0, 9.0, 8.0]
    assert targets.cycle_starts(mapped, chunk=4).tolist() == [0, 4, 13]
    import pandas as pd

    pd.testing.assert_frame_equal(targets.segment_targets(mapped, cfg, seg=3), targets.segment_targets(ttf, cfg, seg=3))


def test_the_real_recording_is_recognised_by_its_first_rows_not_its_size(real_dir):
    """tests/data/train_head.csv is the real train.csv's first rows: they, and only they, make real data."""
    from labquake.config import REAL_HEAD_ROWS
    from labquake.data import TrainData
    from labquake.data.csv import read_train

    parts = []
    read_train(real_dir / "train_head.csv", lambda s, f: parts.append((s.copy(), f.copy())), min_rows=1)
    signal, ttf = (np.concatenate([p[i] for p in parts]) for i in (0, 1))
    assert len(signal) == REAL_HEAD_ROWS
    tail = np.zeros(10, np.int16), np.full(10, 1.0)
    real = TrainData(np.r_[signal, tail[0]], np.r_[ttf, tail[1]], "x")
    assert real.is_real_kaggle
    changed = signal.copy()
    changed[1000] += 1  # one sample differs: not the real recording
    assert not TrainData(np.r_[changed, tail[0]], np.r_[ttf, tail[1]], "x").is_real_kaggle
    # synthetic data of Kaggle's size is not real: the row count decides nothing
    synthetic = TrainData(np.zeros(REAL_TRAIN_ROWS // 1000, np.int16), np.ones(REAL_TRAIN_ROWS // 1000), "x")
    assert not synthetic.is_real_kaggle
