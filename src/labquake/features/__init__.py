"""The 24 per-segment features of docs/recipe.md: exact, fast, parallel and cached.

- ``segment``: ``SegmentFeaturizer``, the 24 features of one segment by name (``FEATURE_NAMES``,
  the output format), sharing work between features;
- ``kernels``: the numba loops it uses;
- ``reference``: the same features as plain library calls, the parity oracle;
- ``stage``: ``build_features``, the feature tables of train and test (binary cache in, parquet
  out, chunked over worker processes, resumable, keyed by inputs and settings).

A new feature goes into ``segment`` (its value, under its name in ``FEATURE_NAMES``) and into
``reference`` (its definition as library calls); tests/test_features.py holds the two together.
"""

from labquake.features.segment import FEATURE_NAMES, SegmentFeaturizer, featurizer, noise_vector, segment_features
from labquake.features.stage import build_features

__all__ = ["FEATURE_NAMES", "SegmentFeaturizer", "build_features", "featurizer", "noise_vector", "segment_features"]
