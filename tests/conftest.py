"""Shared fixtures: one tiny synthetic dataset, its features and a fast run, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REAL = Path(__file__).resolve().parent / "data"  # real Kaggle samples (see tests/data/README.md)


@pytest.fixture(scope="session")
def real_dir() -> Path:
    return REAL


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory) -> Path:
    """The `tiny` synthetic preset, seed 0, in Kaggle's layout."""
    from labquake import synth

    out = tmp_path_factory.mktemp("tiny") / "raw"
    synth.run_synth(out, "tiny", 0)
    return out


@pytest.fixture(scope="session")
def tiny_features(tiny_raw, tmp_path_factory) -> Path:
    from labquake import features
    from labquake.config import load_config

    base = tmp_path_factory.mktemp("tiny_features")
    out = base / "features"
    features.run_features(load_config("fast"), tiny_raw, out, base / "interim", jobs=2)
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_features, tmp_path_factory) -> Path:
    from labquake import models
    from labquake.config import load_config

    run = tmp_path_factory.mktemp("tiny_run") / "fast"
    models.run_train(load_config("fast"), tiny_features, run, device="cpu")
    return run
