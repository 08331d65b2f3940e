"""Reading the Kaggle CSV layout into the binary cache: values, validation messages, staleness."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labquake import data
from labquake.config import SEGMENT_ROWS
from labquake.util import LabquakeError

SEG = "seg_00030f"


# --- helpers -----------------------------------------------------------------------------------------
def small_raw(real_dir: Path, out: Path, extra_row: bytes = b"7,1.4688\n") -> Path:
    """A minimal valid data folder from the real samples: train_head + one row (one segment), one test segment."""
    out.mkdir(parents=True)
    (out / "train.csv").write_bytes((real_dir / "train_head.csv").read_bytes() + extra_row)
    (out / "test").mkdir()
    shutil.copy(real_dir / f"{SEG}.csv", out / "test" / f"{SEG}.csv")
    (out / "sample_submission.csv").write_bytes(b"seg_id,time_to_failure\n" + SEG.encode() + b",0\n")
    return out


def replace_line(path: Path, line_no: int, new: bytes) -> None:
    """Replace 1-based line ``line_no`` of a file (keeping its line end)."""
    lines = path.read_bytes().split(b"\n")
    lines[line_no - 1] = new
    path.write_bytes(b"\n".join(lines))


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(LabquakeError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and "\r" not in msg, msg
    return msg


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def run_cache(raw: Path, interim: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labquake", "cache", "--data", str(raw), "--interim", str(interim), *flags],
        capture_output=True,
        text=True,
        timeout=300,
    )


def collect_train(path: Path, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    data.read_train(path, lambda s, t: parts.append((s, t)), **kwargs)
    if not parts:
        return np.empty(0, np.int16), np.empty(0, np.float64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@pytest.fixture()
def raw(real_dir, tmp_path) -> Path:
    return small_raw(real_dir, tmp_path / "raw")


@pytest.fixture()
def logs(caplog):
    """Log records of the labquake logger (which may not propagate to the root logger)."""
    logger = logging.getLogger("labquake")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # each record once
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)
    logger.propagate = propagate


# --- round trips -------------------------------------------------------------------------------------
def test_tiny_synthetic_round_trip(tiny_raw, tmp_path):
    interim = tmp_path / "interim"
    train = data.load_train(tiny_raw, interim)
    ref = pd.read_csv(tiny_raw / "train.csv")
    assert isinstance(train.signal, np.memmap) and not train.signal.flags.writeable and not train.ttf.flags.writeable
    assert train.signal.dtype == np.int16 and train.ttf.dtype == np.float64
    assert train.n_rows == len(ref) and train.signal.shape == (len(ref),)
    np.testing.assert_array_equal(train.signal, ref["acoustic_data"].to_numpy())
    np.testing.assert_array_equal(train.ttf, ref["time_to_failure"].to_numpy())

    test = data.load_test(tiny_raw, interim)
    ids = pd.read_csv(tiny_raw / "sample_submission.csv")["seg_id"].tolist()
    assert test.seg_ids == ids
    assert test.signal.shape == (len(ids), SEGMENT_ROWS) and test.signal.dtype == np.int16
    for i, sid in enumerate(ids):
        np.testing.assert_array_equal(test.signal[i], pd.read_csv(tiny_raw / "test" / f"{sid}.csv")["acoustic_data"].to_numpy())
    assert len(train.fingerprint) == 16 and len(test.fingerprint) == 16 and train.fingerprint != test.fingerprint


def test_real_samples_round_trip(raw, real_dir, tmp_path):
    train = data.load_train(raw, tmp_path / "interim")
    ref = pd.read_csv(raw / "train.csv")
    assert train.n_rows == SEGMENT_ROWS == len(ref)
    np.testing.assert_array_equal(train.signal, ref["acoustic_data"].to_numpy())
    np.testing.assert_array_equal(train.ttf, ref["time_to_failure"].to_numpy())
    test = data.load_test(raw, tmp_path / "interim")
    assert test.seg_ids == [SEG]
    np.testing.assert_array_equal(test.signal[0], pd.read_csv(real_dir / f"{SEG}.csv")["acoustic_data"].to_numpy())


def test_real_train_head_is_one_row_short(real_dir, tmp_path):
    raw = small_raw(real_dir, tmp_path / "raw", extra_row=b"")
    msg = error_of(data.load_train, raw, tmp_path / "interim")
    assert msg == f"{raw / 'train.csv'}: 149,999 data rows, fewer than one segment (150,000 rows)"
    assert not (tmp_path / "interim" / data.TRAIN_RECORD).exists()


@pytest.mark.parametrize("chunk_bytes", [1000, 65_536, data.CHUNK_BYTES])
def test_chunking_does_not_change_values(real_dir, chunk_bytes):
    signal, ttf = collect_train(real_dir / "train_head.csv", min_rows=1, chunk_bytes=chunk_bytes)
    ref = pd.read_csv(real_dir / "train_head.csv")
    np.testing.assert_array_equal(signal, ref["acoustic_data"].to_numpy())
    np.testing.assert_array_equal(ttf, ref["time_to_failure"].to_numpy())


_DIGITS = st.text("0123456789", min_size=1, max_size=7)  # two of them: at most 14 digits


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(-32768, 32767), st.booleans(), _DIGITS, _DIGITS),
        min_size=1,
        max_size=200,
    )
)
def test_plain_train_parser_gives_pyarrows_values(rows):
    """Kaggle's plain lines (signed int16, "-0", a decimal of up to 15 digits, leading zeros and all)
    parse to pyarrow's exact values: the same int16 and the same float64 bits."""
    from labquake.data import csv

    text = "".join(f"{'-0' if neg and v == 0 else v},{whole}.{frac}\n" for v, neg, whole, frac in rows)
    text += "-32768,0.00000000000001\n32767,99999999999999.9\n"  # the extremes: 15 digits
    chunk = text.encode()
    plain = csv.parse_plain(chunk, csv.TRAIN_COLUMNS)
    ref = csv.parse_arrow(chunk, 2, Path("train.csv"), csv.TRAIN_COLUMNS)
    assert plain is not None and np.array_equal(plain[0], ref[0]) and plain[0].dtype == ref[0].dtype
    assert np.array_equal(plain[1].view(np.int64), ref[1].view(np.int64))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-32768, 32767), st.booleans()), min_size=1, max_size=300))
def test_plain_segment_parser_gives_pyarrows_values(rows):
    """A test segment's plain lines (signed int16, "-0" and "007" included) parse to pyarrow's values;
    any other form goes to pyarrow."""
    from labquake.data import csv

    chunk = "".join(f"{'-0' if pad and v == 0 else f'00{v}' if pad and 0 < v < 1000 else v}\n" for v, pad in rows).encode()
    plain = csv.parse_plain(chunk, csv.TEST_COLUMNS)
    ref = csv.parse_arrow(chunk, 2, Path("seg.csv"), csv.TEST_COLUMNS)
    assert plain is not None and len(plain) == 1 and np.array_equal(plain[0], ref[0]) and plain[0].dtype == ref[0].dtype
    for other in (b"5,1\n", b" 5\n", b"+5\n", b"5\r\n", b"40000\n", b"\n", b"5.0\n"):
        assert csv.parse_plain(chunk + other, csv.TEST_COLUMNS) is None


@pytest.mark.parametrize(
    "line",
    ["5,1e-3", "5,1.0\r", "+5,1.0", "5,.5", "5,5.", "5,5", "40000,1.0", "-32769,1.0", "5, 1.0", "5,1.0,2", "5,-1.0",
     "5,1.234567890123456", "1234567890123456,1.0", "\ufeff5,1.0", "0x10,1.0", "5,nan", ",1.0", "5,"],
)  # fmt: skip
def test_other_train_lines_go_to_pyarrow(line):
    """Any line outside the plain form sends its chunk to pyarrow (and its checks), never a guess."""
    from labquake.data import csv

    chunk = f"7,2.5\n{line}\n3,0.25\n".encode()
    assert csv.parse_plain(chunk, csv.TRAIN_COLUMNS) is None
    path = Path("train.csv")
    try:
        ref = csv.parse_arrow(chunk, 2, path, csv.TRAIN_COLUMNS)
    except LabquakeError as exc:
        with pytest.raises(LabquakeError, match=str(exc).split(": ", 1)[1][:20].replace("(", ".").replace(")", ".")):
            csv.parse_rows(chunk, 2, path, csv.TRAIN_COLUMNS)
        return
    got = csv.parse_rows(chunk, 2, path, csv.TRAIN_COLUMNS)
    assert all(np.array_equal(a, b) for a, b in zip(got, ref))


@pytest.mark.parametrize("variant", ["crlf", "no_final_newline", "bom", "trailing_blank_lines"])
def test_accepted_text_variants(real_dir, tmp_path, variant):
    text = (real_dir / "train_head.csv").read_bytes()
    text = {
        "crlf": text.replace(b"\n", b"\r\n"),
        "no_final_newline": text.rstrip(b"\n"),
        "bom": data.BOM + text,
        "trailing_blank_lines": text + b"\n\r\n\n",
    }[variant]
    path = tmp_path / "train.csv"
    path.write_bytes(text)
    signal, ttf = collect_train(path, min_rows=1, chunk_bytes=4096)
    ref = pd.read_csv(real_dir / "train_head.csv")
    np.testing.assert_array_equal(signal, ref["acoustic_data"].to_numpy())
    np.testing.assert_array_equal(ttf, ref["time_to_failure"].to_numpy())

    seg = tmp_path / "seg.csv"
    seg.write_bytes(
        {
            "crlf": b"acoustic_data\r\n1\r\n-2\r\n",
            "no_final_newline": b"acoustic_data\n1\n-2",
            "bom": data.BOM + b"acoustic_data\n1\n-2\n",
            "trailing_blank_lines": b"acoustic_data\n1\n-2\n\n",
        }[variant]
    )
    np.testing.assert_array_equal(data.read_segment(seg, rows=2), [1, -2])


# --- bad train.csv -----------------------------------------------------------------------------------
BAD_TRAIN_LINES = [
    # (line number, new text, what the message says after "line N: ")
    (1234, b"40000,1.4690999", "acoustic_data '40000' is not an int16 integer"),
    (2, b"-32769,1.4690999", "acoustic_data '-32769' is not an int16 integer"),
    (500, b"abc,1.4690999", "acoustic_data 'abc' is not an int16 integer"),
    (501, b"0x10,1.4690999", "acoustic_data '0x10' is not an int16 integer"),  # pyarrow would take it
    (502, data.BOM + b"12,1.4690999", "acoustic_data '\\ufeff12' is not an int16 integer"),
    (77_777, b"12.5,1.4690999", "acoustic_data '12.5' is not an int16 integer"),
    (150_000, b",1.4690999", "acoustic_data is empty"),
    (3, b"12,", "time_to_failure is empty"),
    (99_999, b"12,nan", "time_to_failure 'nan' is not finite"),
    (100, b"12,inf", "time_to_failure 'inf' is not finite"),
    (101, b"12,1e999", "time_to_failure '1e999' is not finite"),
    (60_001, b"12,-0.5", "time_to_failure '-0.5' is negative"),
    (42, b"12,1.2.3", "time_to_failure '1.2.3' is not a number"),
    (1000, b"12,1.4690999,3", "3 fields, expected 2 (acoustic_data,time_to_failure): '12,1.4690999,3'"),
    (1001, b"12", "1 fields, expected 2 (acoustic_data,time_to_failure): '12'"),
    (5000, b"", "empty line"),
]


@pytest.mark.parametrize("line_no,text,what", BAD_TRAIN_LINES, ids=[f"line{n}" for n, _, _ in BAD_TRAIN_LINES])
def test_bad_train_line_is_reported_with_its_line_number(raw, tmp_path, line_no, text, what):
    path = raw / "train.csv"
    replace_line(path, line_no, text)
    msg = error_of(data.load_train, raw, tmp_path / "interim")
    assert msg == f"{path}: line {line_no}: {what}"
    # the same with CRLF line ends and with pieces cut anywhere
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert error_of(collect_train, crlf, chunk_bytes=10_007) == f"{crlf}: line {line_no}: {what}"


@pytest.mark.parametrize("chunk_bytes", [7, 1000, 1 << 20])
def test_bad_lines_are_numbered_in_the_whole_file_whatever_the_pieces(tmp_path, chunk_bytes):
    """Pieces are parsed as if each began at line 1; the error still names the file's line."""
    from labquake.data import csv

    path = tmp_path / "train.csv"
    path.write_bytes(b"acoustic_data,time_to_failure\n" + b"1,1.5\n" * 4998 + b"x,1.0\n" + b"1,1.0\n" * 5)
    with pytest.raises(LabquakeError, match=r"line 5000: acoustic_data 'x'"):
        csv.read_train(path, lambda *a: None, min_rows=1, chunk_bytes=chunk_bytes)
    path.write_bytes(b"acoustic_data,time_to_failure\n" + b"1,1.0\n" * 10 + b"2" * (csv.MAX_LINE + 10) + b",1.0\n")
    if chunk_bytes < csv.MAX_LINE:
        with pytest.raises(LabquakeError, match=r"line 12: longer than"):
            csv.read_train(path, lambda *a: None, min_rows=1, chunk_bytes=chunk_bytes)


def test_bad_header_shows_what_was_found(raw, tmp_path):
    path = raw / "train.csv"
    replace_line(path, 1, b"signal,ttf" + b"x" * 200)
    msg = error_of(data.load_train, raw, tmp_path / "interim")
    shown = repr(("signal,ttf" + "x" * 200)[:60]) + "..."  # truncated
    assert msg == f"{path}: line 1: header is {shown}, expected 'acoustic_data,time_to_failure'"


def test_empty_train_file(raw, tmp_path):
    (raw / "train.csv").write_bytes(b"")
    msg = error_of(data.load_train, raw, tmp_path / "interim")
    assert msg == f"{raw / 'train.csv'}: empty file (expected the header 'acoustic_data,time_to_failure' and rows)"


def test_header_only_train_file(raw, tmp_path):
    (raw / "train.csv").write_bytes(b"acoustic_data,time_to_failure\n")
    assert error_of(data.load_train, raw, tmp_path / "interim").endswith(": 0 data rows, fewer than one segment (150,000 rows)")


def test_lone_carriage_return_inside_a_line(raw, tmp_path):
    replace_line(raw / "train.csv", 10, b"12\r5,1.4690999")
    assert error_of(data.load_train, raw, tmp_path / "interim") == f"{raw / 'train.csv'}: line 10: acoustic_data '12\\r5' is not an int16 integer"


@pytest.mark.parametrize("missing", ["folder", "train.csv", "test", "sample_submission.csv"])
def test_missing_inputs_say_what_to_put_there(raw, tmp_path, missing):
    target = raw if missing == "folder" else raw / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    msg = error_of(data.run_cache, raw, tmp_path / "interim")
    assert msg.startswith(f"{target}: ")
    assert "labquake synth" in msg and "not found" in msg
    if missing != "folder":
        assert f"Kaggle's {missing}" in msg


# --- bad test segments and sample submission ----------------------------------------------------------
@pytest.mark.parametrize("rows", [SEGMENT_ROWS - 1, SEGMENT_ROWS + 1])
def test_segment_of_wrong_length(raw, tmp_path, rows):
    seg = raw / "test" / f"{SEG}.csv"
    lines = seg.read_bytes().splitlines()
    seg.write_bytes(b"\n".join(lines[: rows + 1] if rows < SEGMENT_ROWS else lines + [b"5"]) + b"\n")
    msg = error_of(data.load_test, raw, tmp_path / "interim")
    assert msg == f"{seg}: {rows:,} rows, expected 150,000"


def test_bad_value_in_segment(raw, tmp_path):
    seg = raw / "test" / f"{SEG}.csv"
    replace_line(seg, 70_000, b"99999")
    assert error_of(data.load_test, raw, tmp_path / "interim") == f"{seg}: line 70000: acoustic_data '99999' is not an int16 integer"
    replace_line(seg, 70_000, b"1,2")
    assert error_of(data.load_test, raw, tmp_path / "interim") == f"{seg}: line 70000: 2 fields, expected 1 (acoustic_data): '1,2'"


def test_bad_segment_header(raw, tmp_path):
    seg = raw / "test" / f"{SEG}.csv"
    replace_line(seg, 1, b"acoustic_data,time_to_failure")
    assert error_of(data.load_test, raw, tmp_path / "interim") == (
        f"{seg}: line 1: header is 'acoustic_data,time_to_failure', expected 'acoustic_data'"
    )


def test_sample_id_without_segment_file(raw, tmp_path):
    (raw / "sample_submission.csv").write_bytes(f"seg_id,time_to_failure\n{SEG},0\nseg_abcdef,0\nseg_123456,0\n".encode())
    msg = error_of(data.load_test, raw, tmp_path / "interim")
    assert msg == f"{raw / 'test' / 'seg_abcdef.csv'}: not found, but sample_submission.csv line 3 lists seg_id 'seg_abcdef' (and 1 more)"


def test_duplicate_sample_ids(raw, tmp_path):
    sub = raw / "sample_submission.csv"
    sub.write_bytes(f"seg_id,time_to_failure\r\n{SEG},0\r\nseg_1,0\r\n{SEG},0\r\n".encode())
    assert error_of(data.load_test, raw, tmp_path / "interim") == f"{sub}: line 4: duplicate seg_id '{SEG}' (first on line 2)"


@pytest.mark.parametrize(
    "text,what",
    [
        (b"", "empty file (expected the header 'seg_id,time_to_failure' and rows)"),
        (b"seg_id,time_to_failure\n", "no seg_id rows"),
        (b"id,ttf\nseg_1,0\n", "line 1: header is 'id,ttf', expected 'seg_id,time_to_failure'"),
        (b"seg_id,time_to_failure\nseg_1\n", "line 2: 1 fields, expected 2 (seg_id,time_to_failure): 'seg_1'"),
        (b"seg_id,time_to_failure\nseg_1,0\n\nseg_2,0\n", "line 3: empty line"),
        (b"seg_id,time_to_failure\n../train,0\n", "line 2: seg_id '../train' is not a segment name (letters, digits, '_', '-')"),
    ],
)
def test_bad_sample_submission(tmp_path, text, what):
    path = tmp_path / "sample_submission.csv"
    path.write_bytes(text)
    assert error_of(data.read_sample_ids, path) == f"{path}: {what}"


def test_sample_submission_bom_crlf_no_final_newline(tmp_path):
    path = tmp_path / "sample_submission.csv"
    path.write_bytes(data.BOM + b"seg_id,time_to_failure\r\nseg_b,0\r\nseg_a,0")
    assert data.read_sample_ids(path) == ["seg_b", "seg_a"]


def test_real_sample_submission(real_dir):
    ids = data.read_sample_ids(real_dir / "sample_submission.csv")
    assert ids == pd.read_csv(real_dir / "sample_submission.csv")["seg_id"].tolist() and len(ids) == 2624


def test_extra_segment_files_are_a_warning(raw, tmp_path, logs):
    shutil.copy(raw / "test" / f"{SEG}.csv", raw / "test" / "seg_ffffff.csv")
    test = data.load_test(raw, tmp_path / "interim")
    assert test.seg_ids == [SEG]
    warnings = [r.getMessage() for r in logs.records if r.levelno == logging.WARNING]
    assert warnings == [f"{raw / 'test'}: 1 segment file(s) not in sample_submission.csv, ignored: seg_ffffff"]


# --- the command line ---------------------------------------------------------------------------------
def test_cli_errors_are_one_line_and_keep_the_good_cache(raw, tmp_path):
    interim = tmp_path / "interim"
    ok = run_cache(raw, interim, "-q")
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in interim.iterdir()) == sorted(
        [data.TRAIN_SIGNAL, data.TRAIN_TTF, data.TRAIN_RECORD, data.TEST_SIGNAL, data.TEST_RECORD]
    )
    before = snapshot(interim)

    replace_line(raw / "train.csv", 1234, b"40000,1.4690999")
    out = run_cache(raw, interim, "-q")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"labquake cache: error: {raw / 'train.csv'}: line 1234: acoustic_data '40000' is not an int16 integer"
    assert snapshot(interim) == before  # no partial rebuild, no temporaries left

    replace_line(raw / "train.csv", 1234, b"4,1.4690999")
    seg = raw / "test" / f"{SEG}.csv"
    seg.write_bytes(seg.read_bytes() + b"1\n")
    out = run_cache(raw, interim)  # with progress and log lines: the error is still one line, the last
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"labquake cache: error: {seg}: 150,001 rows, expected 150,000"
    assert snapshot(interim)[data.TEST_SIGNAL] == before[data.TEST_SIGNAL]
    assert snapshot(interim)[data.TEST_RECORD] == before[data.TEST_RECORD]


def test_cli_missing_folder(tmp_path):
    out = run_cache(tmp_path / "nowhere", tmp_path / "interim")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"labquake cache: error: {tmp_path / 'nowhere'}: data folder not found")
    assert not (tmp_path / "interim").exists()


# --- staleness -------------------------------------------------------------------------------------------
def test_unchanged_is_not_rebuilt_changed_is(raw, tmp_path, logs):
    interim = tmp_path / "interim"
    first = data.run_cache(raw, interim)
    assert first["train"]["rebuilt"] and first["test"]["rebuilt"]
    assert first["train"]["n_rows"] == SEGMENT_ROWS and first["test"]["seg_ids"] == [SEG]
    before = snapshot(interim)
    again = data.run_cache(raw, interim)
    assert not again["train"]["rebuilt"] and not again["test"]["rebuilt"]
    assert snapshot(interim) == before

    # touched: same bytes, new mtime -> rebuilt, same values
    st = (raw / "train.csv").stat()
    os.utime(raw / "train.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    out = data.run_cache(raw, interim)
    assert out["train"]["rebuilt"] and not out["test"]["rebuilt"]
    assert "the source files changed" in logs.text
    assert out["train"]["fingerprint"] != first["train"]["fingerprint"]

    # changed content: one more row
    with open(raw / "train.csv", "ab") as f:
        f.write(b"-3,1.2\n")
    train = data.load_train(raw, interim)
    assert train.n_rows == SEGMENT_ROWS + 1 and train.signal[-1] == -3 and train.ttf[-1] == 1.2

    # a test segment touched -> only the test cache is rebuilt
    seg = raw / "test" / f"{SEG}.csv"
    os.utime(seg, ns=(seg.stat().st_atime_ns, seg.stat().st_mtime_ns + 10**9))
    out = data.run_cache(raw, interim)
    assert not out["train"]["rebuilt"] and out["test"]["rebuilt"]

    assert data.run_cache(raw, interim, force=True)["train"]["rebuilt"]


@pytest.mark.parametrize("damage", ["truncate_signal", "truncate_ttf", "delete_ttf", "garbage_record", "record_not_object", "old_format"])
def test_damaged_cache_is_rebuilt(raw, tmp_path, damage, logs):
    interim = tmp_path / "interim"
    good = data.load_train(raw, interim)
    signal, ttf = np.array(good.signal), np.array(good.ttf)
    del good
    if damage == "truncate_signal":
        os.truncate(interim / data.TRAIN_SIGNAL, 1000)
    elif damage == "truncate_ttf":
        os.truncate(interim / data.TRAIN_TTF, (interim / data.TRAIN_TTF).stat().st_size - 8)
    elif damage == "delete_ttf":
        (interim / data.TRAIN_TTF).unlink()
    elif damage == "garbage_record":
        (interim / data.TRAIN_RECORD).write_bytes(b"{\x00 not json")
    elif damage == "record_not_object":
        (interim / data.TRAIN_RECORD).write_text("[1, 2]")
    else:
        (interim / data.TRAIN_RECORD).write_text((interim / data.TRAIN_RECORD).read_text().replace('"format": 1', '"format": 0'))
    again = data.load_train(raw, interim)
    assert "building the train cache" in logs.text
    np.testing.assert_array_equal(again.signal, signal)
    np.testing.assert_array_equal(again.ttf, ttf)


def test_interrupted_build_keeps_old_cache_and_recovers(raw, tmp_path):
    interim = tmp_path / "interim"
    data.run_cache(raw, interim)
    before = snapshot(interim)
    real_parse = data.parse_rows
    calls = []

    def parse_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real_parse(*args, **kwargs)

    from labquake.data import csv

    with mock.patch.object(csv, "parse_rows", parse_then_interrupt), mock.patch.object(csv, "CHUNK_BYTES", 100_000):
        with pytest.raises(KeyboardInterrupt):
            data.run_cache(raw, interim, force=True)
    assert snapshot(interim) == before

    # a temporary left by a killed process (one that no longer exists) is cleaned up
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = interim / f".{data.TRAIN_SIGNAL}.tmp{int(dead.stdout)}"
    stale.write_bytes(b"\x00" * 100)
    data.run_cache(raw, interim, force=True)
    assert not stale.exists()
    assert sorted(p.name for p in interim.iterdir()) == sorted(before)


# --- property tests: any input gives arrays or a LabquakeError, the same however it is cut ---------------
TOKENS = [
    b"0",
    b"7",
    b"-",
    b"+",
    b".",
    b"e",
    b"5",
    b"40000",
    b"nan",
    b"inf",
    b",",
    b"\n",
    b"\r",
    b"\r\n",
    b" ",
    b"\t",
    b"\x0b",
    b"\x0c",
    b"\x00",
    b"\xff",
    b'"',
    data.BOM,
    b"1.4690999",
    b"-32768",
    b"0x1",
    b"X",
    b"E",
    b"a",
]
TRAIN_HEADER, TRAIN_BODY = b"acoustic_data,time_to_failure\n", b"12,1.4690999832\n6,1.4690999821\n-8,0.5\n0,0\n"
SEG_HEADER, SEG_BODY = b"acoustic_data\n", b"4\n0\n-32768\n"
SUB = b"seg_id,time_to_failure\nseg_a,0\nseg_b,0\n"


def outcome(fn, *args, **kwargs):
    try:
        return ("ok", [a.tolist() for a in fn(*args, **kwargs)])
    except LabquakeError as exc:
        assert "\n" not in str(exc) and "\r" not in str(exc)
        return ("error", str(exc))


def train_arrays(path: Path, chunk_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    return collect_train(path, min_rows=2, chunk_bytes=chunk_bytes, threads=2)


def slow_only(fn, *args):
    """The same reader with every piece parsed by the line-by-line scanner."""
    with mock.patch.object(data, "parse_rows", data.scan_rows):
        return fn(*args)


def inputs(header: bytes, body: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, a valid file with its rows mutated (mostly), or with anything mutated, or extended."""
    return st.one_of(
        st.binary(max_size=200),
        mutated(body).map(lambda b: header + b),
        mutated(header + body),
        st.binary(max_size=40).map(lambda b: header + body + b),
    )


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    text = valid
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        token = draw(st.sampled_from(TOKENS))
        if kind == "insert":
            text = text[:pos] + token + text[pos:]
        elif kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 5)) :]
        else:
            text = text[:pos] + token + text[pos + len(token) :]
    return text


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prop")


PROPS = settings(max_examples=80, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(text=inputs(TRAIN_HEADER, TRAIN_BODY), chunk_bytes=st.integers(1, 64))
def test_train_reader_any_bytes(scratch, text, chunk_bytes):
    path = scratch / "train.csv"
    path.write_bytes(text)
    fast = outcome(train_arrays, path, chunk_bytes)
    assert fast == outcome(slow_only, train_arrays, path, 1 << 20)
    if fast[0] == "ok":
        assert len(fast[1][0]) >= 2 and all(t >= 0 and np.isfinite(t) for t in fast[1][1])


@PROPS
@given(text=inputs(SEG_HEADER, SEG_BODY), chunk_bytes=st.integers(1, 64))
def test_segment_reader_any_bytes(scratch, text, chunk_bytes):
    path = scratch / "seg.csv"
    path.write_bytes(text)
    fast = outcome(lambda: [data.read_segment(path, rows=3, chunk_bytes=chunk_bytes)])
    assert fast == outcome(slow_only, lambda: [data.read_segment(path, rows=3, chunk_bytes=1 << 20)])
    if fast[0] == "ok":
        assert len(fast[1][0]) == 3


@PROPS
@given(text=inputs(SUB[:23], SUB[23:]))
def test_sample_reader_any_bytes(scratch, text):
    path = scratch / "sample_submission.csv"
    path.write_bytes(text)
    result = outcome(lambda: [np.array(data.read_sample_ids(path))])
    if result[0] == "ok":
        assert len(set(result[1][0])) == len(result[1][0]) > 0


def test_unwritable_cache_folder_is_one_line_error(raw, tmp_path):
    interim = tmp_path / "interim"
    interim.write_text("a file where the cache folder should be")
    msg = error_of(data.run_cache, raw, interim)
    assert msg.startswith(f"{interim}: ")
