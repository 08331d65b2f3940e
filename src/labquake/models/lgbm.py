"""The recipe's LightGBM (docs/recipe.md): the six LGBM features, one booster per fold, every seed kept.

Draw d is seed ``lgbm.seeds[d]``. Files: ``lgbm/drawDD/foldK.txt`` (the booster at its best iteration),
``lgbm/importance.csv`` (gain per seed, fold, feature) and ``lgbm/curves.csv`` (validation MAE per round).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake.config import Config
from labquake.models.base import Base, Draw, FoldFit
from labquake.trainset import TrainingData
from labquake.util import log, usable_cpus, write_bytes, write_csv


@dataclass(frozen=True)
class Inputs:
    X: pd.DataFrame
    y: np.ndarray
    X_test: pd.DataFrame
    threads: int  # LightGBM's results depend on its thread count: fixed by the process that plans the run
    w: np.ndarray | None = None  # sample weights (data.weights), or None


def params(cfg: Config, seed: int, threads: int | None = None) -> dict[str, Any]:
    """Booster parameters: the recipe's (cfg.lgbm) plus reproducibility and quiet settings."""
    c = cfg.lgbm
    return {
        "objective": c.objective,
        "metric": c.metric,
        "num_leaves": c.num_leaves,
        "min_data_in_leaf": c.min_data_in_leaf,
        "max_depth": c.max_depth,
        "learning_rate": c.learning_rate,
        "boosting": c.boosting,
        "boost_from_average": c.boost_from_average,
        "feature_fraction": c.feature_fraction,
        "bagging_freq": c.bagging_freq,
        "bagging_fraction": c.bagging_fraction,
        "bagging_seed": c.bagging_seed,
        "reg_alpha": c.reg_alpha,
        "reg_lambda": c.reg_lambda,
        "max_bin": c.max_bin,  # a Dataset parameter: also given to the Datasets below
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": threads or usable_cpus(),
        "device_type": c.device_type,
        "verbosity": -1,
    }


class LightGBM(Base):
    name = "lgbm"
    label = "LightGBM"
    color = "#1f77b4"
    reference = True  # the networks' reject bound is relative to its OOF MAE
    extras = ("importance.csv", "curves.csv")

    def seed(self, cfg: Config, draw: int) -> int:
        return cfg.lgbm.seeds[draw]

    def prepare(self, cfg: Config, data: TrainingData, device: str = "auto") -> Inputs:
        cols = list(data.reads[self.name])
        return Inputs(data.train[cols], data.train["target"].to_numpy(np.float64), data.test[cols], usable_cpus(), data.weights)

    def fit_fold(self, cfg: Config, inputs: Inputs, folds: np.ndarray, k: int, seed: int, fold_dir: Path | None) -> FoldFit:
        """A fresh booster on the rows not in fold k, early-stopped on fold k; saved at its best iteration."""
        import lightgbm as lgb

        X, y = inputs.X, inputs.y
        tr, va = folds != k, folds == k
        dataset_params = {"max_bin": cfg.lgbm.max_bin, "verbosity": -1}
        # weights (data.weights) on the training rows; early stopping on the plain validation MAE, as the networks'
        dtrain = lgb.Dataset(X[tr], y[tr], weight=None if inputs.w is None else inputs.w[tr], params=dataset_params)
        dvalid = lgb.Dataset(X[va], y[va], reference=dtrain, params=dataset_params)
        record: dict[str, Any] = {}
        booster = lgb.train(
            params(cfg, seed, inputs.threads),
            dtrain,
            num_boost_round=cfg.lgbm.num_boost_round,
            valid_sets=[dvalid],
            valid_names=["valid"],
            callbacks=[
                lgb.early_stopping(cfg.lgbm.early_stopping_rounds, verbose=False),
                lgb.log_evaluation(1000 if log.isEnabledFor(logging.DEBUG) else 0),
                lgb.record_evaluation(record),
            ],
        )
        best = int(booster.best_iteration or booster.current_iteration())
        files = {}
        if fold_dir is not None:  # save_model's text, checksummed as it is written
            files[f"fold{k}.txt"] = write_bytes(fold_dir / f"fold{k}.txt", booster.model_to_string(num_iteration=best).encode())
        curve = np.asarray(next(iter(record["valid"].values())))
        return FoldFit(
            valid=booster.predict(X[va], num_iteration=best),
            test=booster.predict(inputs.X_test, num_iteration=best),
            info={"best_iteration": best, "gain": booster.feature_importance("gain", iteration=best).tolist()},
            history=pd.DataFrame({"iteration": np.arange(1, len(curve) + 1), "valid_mae": curve}),
            files=files,
        )

    def predict_saved(
        self, cfg: Config, draw_dir: Path, folds: list[dict], table: pd.DataFrame, sequences: np.ndarray | None, device: str = "auto"
    ) -> np.ndarray:
        """The mean over the draw's saved fold boosters, as its test predictions were made."""
        import lightgbm as lgb

        X = table
        return np.mean([lgb.Booster(model_file=str(draw_dir / f"fold{k}.txt")).predict(X) for k in range(len(folds))], axis=0)

    def write_extras(self, draws: list[Draw], model_dir: Path, data: TrainingData) -> None:
        cols = data.reads[self.name]
        rows = [
            {"seed": r.seed, "fold": k, "feature": f, "gain": float(info["gain"][j]), "best_iteration": int(info["best_iteration"])}
            for r in draws
            for k, info in enumerate(r.folds)
            for j, f in enumerate(cols)
        ]
        write_csv(model_dir / "importance.csv", pd.DataFrame(rows))
        write_csv(model_dir / "curves.csv", pd.concat([r.history.assign(seed=r.seed) for r in draws], ignore_index=True))


MODEL = LightGBM()
