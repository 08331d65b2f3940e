"""The 24 per-segment features of docs/recipe.md: exact, fast, parallel and cached.

- ``table``: the feature table (name, family, the models that read it by default, count or not);
- ``segment``: ``SegmentFeaturizer``, the 24 features of one segment by name, sharing work
  between features;
- ``kernels``: the numba loops it uses;
- ``reference``: the same features as plain library calls, the parity oracle;
- ``stage``: ``run_features``, the feature tables of train and test (binary cache in, parquet
  out, chunked over worker processes, resumable, keyed by inputs and settings).

A new feature goes into ``segment`` (its value, under its name), into ``reference`` (its
definition as library calls) and is one row of ``table``; tests/test_features.py holds the two together.
Imports are lazy: the table costs nothing, numba and librosa load with the featurizer.
"""

from __future__ import annotations

import importlib

from labquake.features.table import FEATURE_NAMES, FEATURES

_LAZY = {
    "SegmentFeaturizer": "segment",
    "featurizer": "segment",
    "noise_vector": "segment",
    "segment_features": "segment",
    "run_features": "stage",
}

__all__ = ["FEATURES", "FEATURE_NAMES", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"labquake.features.{_LAZY[name]}"), name)
    raise AttributeError(name)
