"""The feature table: every per-segment feature, in the tables' column order, with its facts.

Each row says what a feature is (its family), which models read it by default (``lgbm.features``,
``nn.features``, ... default to these lists, which are the recipe's) and whether it is a count (an
integer, compared exactly). Names, routing and the tests' counts derive from it. A new feature is
its computation (``features/segment.py``), its reference (``features/reference.py``) and one row.

Pure data: importing it costs nothing, so the configuration can take its defaults from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    name: str  # the recipe's name (its NN_/LGBM_ prefixes are names only: routing is ``models``)
    family: str
    models: tuple[str, ...]  # the models that read it by default
    count: bool = False  # an integer count (peaks, sign changes)


_NN, _LGBM, _BOTH = ("nn",), ("lgbm",), ("lgbm", "nn")

FEATURES: tuple[Feature, ...] = (
    Feature("NN_zero_crossings_denoise", "zero crossings", _NN, count=True),
    Feature("NN_LGBM_percentile_roll20_std_50", "rolling std", _BOTH),
    Feature("NN_q95_roll20_std", "rolling std", _NN),
    Feature("NN_LGBM_mfcc_mean4", "mfcc", _BOTH),
    Feature("NN_lib_spectral_contrast0", "spectral contrast", _NN),
    Feature("NN_num_peaks_3_denoise", "peaks", _NN, count=True),
    Feature("NN_mfcc_mean_denoise_simple2", "mfcc", _NN),
    Feature("NN_mfcc_mean5", "mfcc", _NN),
    Feature("NN_mfcc_mean2", "mfcc", _NN),
    Feature("NN_mfcc_mean_denoise_simple5", "mfcc", _NN),
    Feature("NN_absquant95", "quantile", _NN),
    Feature("NN_median_roll50_std_denoise_simple", "rolling std", _NN),
    Feature("NN_mfcc_mean_denoise_simple1", "mfcc", _NN),
    Feature("NN_quant99", "quantile", _NN),
    Feature("NN_lib_zero_cross_rate_denoise_simple", "zero crossings", _NN),
    Feature("NN_fftr_max_denoise", "fft", _NN),
    Feature("NN_abssumgreater15", "amplitude", _NN),
    Feature("NN_LGBM_mfcc_mean18", "mfcc", _BOTH),
    Feature("NN_lib_spectral_contrast_denoise_simple2", "spectral contrast", _NN),
    Feature("NN_fftr_sum", "fft", _NN),
    Feature("NN_mfcc_mean_denoise_simple10", "mfcc", _NN),
    Feature("LGBM_num_peaks_2_denoise_simple", "peaks", _LGBM, count=True),
    Feature("LGBM_autocorr5", "autocorrelation", _LGBM),
    Feature("LGBM_fftrhann20000_diff_rate", "fft", _LGBM),
)

FEATURE_NAMES: list[str] = [f.name for f in FEATURES]  # the tables' feature columns, in order
COUNT_FEATURES: list[str] = [f.name for f in FEATURES if f.count]


def read_by(model: str) -> tuple[str, ...]:
    """The features a model reads by default, in table order (the recipe's list for lgbm and nn)."""
    return tuple(f.name for f in FEATURES if model in f.models)
