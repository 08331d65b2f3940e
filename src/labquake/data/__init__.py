"""Kaggle's raw files, validated, into a memory-mappable binary cache; recordings for ``predict``.

- ``csv``: parsing and validating Kaggle's CSV files (train.csv, the test segments, sample_submission.csv);
- ``cache``: the binary cache of train and test (``run_cache``, ``load_train``, ``load_test``) and
  reads from it (``read_rows``, ``read_at``);
- ``recordings``: one continuous recording in any format of ``RECORDING_FORMATS`` (``load_recording``).

The cache's layout and staleness rules are in ``cache``'s docstring.
"""

from labquake.data.arrays import mapped_file, read_at, read_rows
from labquake.data.cache import (
    TEST_RECORD,
    TEST_SIGNAL,
    TRAIN_RECORD,
    TRAIN_SIGNAL,
    TRAIN_TTF,
    TestData,
    TrainData,
    load_test,
    load_train,
    run_cache,
)
from labquake.data.csv import BOM, CHUNK_BYTES, check_header, parse_rows, read_csv, read_sample_ids, read_segment, read_train, scan_rows
from labquake.data.recordings import RECORDING_FORMATS, Recording, RecordingFormat, load_recording, recording_format

__all__ = [
    "BOM",
    "CHUNK_BYTES",
    "RECORDING_FORMATS",
    "TEST_RECORD",
    "TEST_SIGNAL",
    "TRAIN_RECORD",
    "TRAIN_SIGNAL",
    "TRAIN_TTF",
    "Recording",
    "RecordingFormat",
    "TestData",
    "TrainData",
    "run_cache",
    "check_header",
    "load_recording",
    "load_test",
    "load_train",
    "mapped_file",
    "parse_rows",
    "read_at",
    "read_csv",
    "read_rows",
    "read_sample_ids",
    "read_segment",
    "read_train",
    "recording_format",
    "scan_rows",
]
