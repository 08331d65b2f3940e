"""The model contract: what every model of ``labquake.models`` is, and what one fold gives back.

A model is one module holding one instance of a class that satisfies :class:`Model`, registered by
one line in ``models/__init__.py``. Nothing outside its module names it: the cross-validation
loop, the run folder, the blend, the report and ``predict`` ask the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from labquake.config import Config
from labquake.trainset import TrainingData


@dataclass
class FoldFit:
    """One fold of one draw: predictions of the validation rows and the test rows, and what to keep."""

    valid: np.ndarray
    test: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)  # JSON: best iteration/epoch, scaling, ...
    history: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per iteration/epoch
    files: dict[str, str] = field(default_factory=dict)  # the fold's saved files: name -> checksum (util.digest)


@dataclass
class Draw:
    """One seed of one model over every fold."""

    name: str
    draw: int
    seed: int
    oof: np.ndarray
    test: np.ndarray
    folds: list[dict[str, Any]]  # FoldFit.info per fold
    history: pd.DataFrame  # fold, then the model's columns
    files: dict[str, str] = field(default_factory=dict)  # every fold's saved files: name -> checksum


@runtime_checkable
class Model(Protocol):
    """A model: its facts, then the four steps of its cross-validation.

    ``name`` is its name in ``blend.models``, its folder in a run and its configuration section
    (``cfg.NAME``, which has a ``features`` tuple when it reads feature columns).
    """

    name: str
    label: str  # in tables and plots
    color: str  # in plots
    rejects: bool  # bad draws are rejected and redrawn (NAME.runs, NAME.max_redraws, ...), or every seed kept (NAME.seeds)
    reference: bool  # its OOF MAE bounds the rejecting models' draws: it trains first
    isolate: bool  # on a cluster, each fold in a fresh process (models.cv._isolated says why)
    extras: tuple[str, ...]  # the files write_extras adds to NAME/ (the report reads importance.csv and curves.csv)

    def settings(self, cfg: Config) -> Any:
        """Its configuration section."""

    def features(self, cfg: Config) -> tuple[str, ...]:
        """The feature columns it reads (none: it reads the sequences)."""

    def seed(self, cfg: Config, draw: int) -> int:
        """The seed of draw ``draw``."""

    def draws(self, cfg: Config) -> int:
        """How many draws it trains when it rejects none (rejecting models: how many it keeps)."""

    def prepare(self, cfg: Config, data: TrainingData, device: str) -> Any:
        """Its arrays, from the shared training data (``data.reads[name]``: its columns)."""

    def fit_fold(self, cfg: Config, inputs: Any, folds: np.ndarray, k: int, seed: int, fold_dir: Path) -> FoldFit:
        """Train on the rows not in fold k; predict fold k and the test rows; save ``fold_dir/fold{k}.*``
        and return their checksums in ``FoldFit.files``."""

    def predict_saved(
        self, cfg: Config, draw_dir: Path, folds: list[dict], table: pd.DataFrame, sequences: np.ndarray | None, device: str
    ) -> np.ndarray:
        """New segments from a draw's saved folds (``table``: the columns it was trained on)."""

    def write_extras(self, draws: list[Draw], model_dir: Path, data: TrainingData) -> None:
        """Model-specific tables beside its draws (LightGBM's importance); nothing by default."""


class Base:
    """Defaults shared by the models: the section named like the model, features from its section."""

    name = ""
    label = ""
    color = "0.4"
    rejects = False
    reference = False
    isolate = False
    extras: tuple[str, ...] = ()

    def settings(self, cfg: Config) -> Any:
        return getattr(cfg, self.name)

    def features(self, cfg: Config) -> tuple[str, ...]:
        return tuple(getattr(self.settings(cfg), "features", ()))

    def draws(self, cfg: Config) -> int:
        c = self.settings(cfg)
        return c.runs if self.rejects else len(c.seeds)

    def write_extras(self, draws: list[Draw], model_dir: Path, data: TrainingData) -> None:
        return None
