"""The registered models: one line each. Adding a model is its module, one entry here and its test."""

from __future__ import annotations

from pathlib import Path

from labquake.config import Config
from labquake.models import lgbm, nn, seq, svr
from labquake.models.base import Model
from labquake.trainset import TrainingData, load_training_data
from labquake.util import LabquakeError

MODELS: dict[str, Model] = {m.name: m for m in (lgbm.MODEL, nn.MODEL, seq.MODEL, svr.MODEL)}


def model(name: str) -> Model:
    """The model named in blend.models."""
    if name not in MODELS:
        raise LabquakeError(f"blend.models: unknown model {name!r} (known: {', '.join(MODELS)})")
    return MODELS[name]


def reads(cfg: Config, names: tuple[str, ...] | list[str] | None = None) -> dict[str, tuple[str, ...]]:
    """The feature columns each model of ``names`` (default blend.models) reads, for those that read any."""
    out = {}
    for name in names or cfg.blend.models:
        cols = model(name).features(cfg)
        if cols:
            out[name] = cols
    return out


def reads_sequences(cfg: Config) -> bool:
    """Whether a model of blend.models reads the segments' sequences (it reads no feature columns):
    the features stage computes them only then."""
    return any(not model(name).features(cfg) for name in cfg.blend.models)


def label(name: str) -> str:
    """A model's label in tables and plots (its name, if it is not a registered model)."""
    return MODELS[name].label if name in MODELS else name


def color(name: str) -> str:
    return MODELS[name].color if name in MODELS else "0.4"


def training_data(cfg: Config, features_dir: Path) -> TrainingData:
    """The feature folder's training data for the models of blend.models (the columns they read)."""
    return load_training_data(cfg, Path(features_dir), reads(cfg))
