"""Atomic outputs, cache keys, the bounded thread-pool map and stage records."""

import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from labquake.util import LabquakeError, Timer, atomic_path, json_key, ordered_map, read_json, stage_record, write_json


def test_atomic_file_replaced_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left behind
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_directory(tmp_path):
    target = tmp_path / "folder"
    target.mkdir()
    (target / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "a").write_text("partial")
            raise RuntimeError
    assert (target / "a").read_text() == "old"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_json_round_trip_and_corrupt_file(tmp_path):
    import numpy as np

    write_json(tmp_path / "a.json", {"x": np.float64(1.5), "t": (1, 2)})
    assert read_json(tmp_path / "a.json") == {"t": [1, 2], "x": 1.5}
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(LabquakeError, match=r"b\.json: corrupt JSON"):
        read_json(tmp_path / "b.json")
    with pytest.raises(LabquakeError, match=r"c\.json: not found"):
        read_json(tmp_path / "c.json")


def test_stage_record_has_config_and_timings():
    timer = Timer()
    with timer.step("work"):
        sum(range(1000))
    rec = stage_record("demo", {"a": 1}, timer, rows=3)
    assert rec["stage"] == "demo" and rec["config"] == {"a": 1} and rec["rows"] == 3
    assert set(rec["timings_s"]) == {"work", "total"} and rec["timings_s"]["total"] >= rec["timings_s"]["work"] >= 0
    json.dumps(rec)


def test_json_key_is_the_sha256_of_sorted_json():
    obj = {"b": [1, 2], "a": {"y": 1.5, "x": None}}
    assert json_key(obj) == hashlib.sha256(b'{"a": {"x": null, "y": 1.5}, "b": [1, 2]}').hexdigest()[:16]
    assert json_key(obj) == json_key({"a": {"x": None, "y": 1.5}, "b": [1, 2]})  # key order does not matter


def test_ordered_map_keeps_order_and_bounds_work_in_flight():
    lock, running, seen = threading.Lock(), [0], []

    def work(i):
        with lock:
            running[0] += 1
            seen.append(running[0])
        time.sleep(0.002 * (i % 3))  # finish out of order
        with lock:
            running[0] -= 1
        return i * i

    with ThreadPoolExecutor(8) as pool:
        assert list(ordered_map(pool, work, iter(range(40)), ahead=3)) == [i * i for i in range(40)]
        assert max(seen) <= 3
        started = []
        gen = ordered_map(pool, lambda i: started.append(i) or i, range(100), ahead=4)
        assert next(gen) == 0
        gen.close()  # the caller stops: what was not started is cancelled, nothing more is submitted
        time.sleep(0.05)
        assert len(started) <= 5
