"""A support-vector regressor (scikit-learn's SVR) on the network's features, min-max scaled on each
training fold as the network's are. The recipe team's full blend had one; it is an option here
(``blend.models=[lgbm,nn,svr]``), not part of the recipe.

One deterministic draw; files ``svr/draw00/foldK.joblib`` (the fitted scaler and regressor).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from labquake.config import Config
from labquake.models.base import Base, FoldFit
from labquake.models.nn import min_max_scaler
from labquake.trainset import TrainingData
from labquake.util import write_bytes


@dataclass(frozen=True)
class Inputs:
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    w: np.ndarray | None = None  # sample weights (data.weights), or None


class SupportVector(Base):
    name = "svr"
    label = "SVR"
    color = "#9467bd"

    def seed(self, cfg: Config, draw: int) -> int:
        return cfg.svr.seeds[draw]

    def prepare(self, cfg: Config, data: TrainingData, device: str = "auto") -> Inputs:
        cols = list(data.reads[self.name])
        return Inputs(
            data.train[cols].to_numpy(np.float64), data.train["target"].to_numpy(np.float64), data.test[cols].to_numpy(np.float64), data.weights
        )

    def fit_fold(self, cfg: Config, inputs: Inputs, folds: np.ndarray, k: int, seed: int, fold_dir: Path) -> FoldFit:
        import io

        import joblib
        from sklearn.svm import SVR

        c = cfg.svr
        tr, va = folds != k, folds == k
        X = inputs.X
        scaler = min_max_scaler(X[tr].min(axis=0), X[tr].max(axis=0))
        svr = SVR(kernel=c.kernel, C=c.C, epsilon=c.epsilon, gamma=c.gamma).fit(
            scaler.transform(X[tr]), inputs.y[tr], sample_weight=None if inputs.w is None else inputs.w[tr]
        )
        buf = io.BytesIO()
        joblib.dump({"scaler": scaler, "svr": svr}, buf)
        files = {f"fold{k}.joblib": write_bytes(fold_dir / f"fold{k}.joblib", buf.getvalue())}
        return FoldFit(
            valid=svr.predict(scaler.transform(X[va])),
            test=svr.predict(scaler.transform(inputs.X_test)),
            info={"support_vectors": int(len(svr.support_))},
            history=pd.DataFrame({"n_train": [int(tr.sum())]}),
            files=files,
        )

    def predict_saved(
        self, cfg: Config, draw_dir: Path, folds: list[dict], table: pd.DataFrame, sequences: np.ndarray | None, device: str = "auto"
    ) -> np.ndarray:
        """The mean over the draw's saved folds."""
        import joblib

        X = table.to_numpy(np.float64)
        preds = []
        for k in range(len(folds)):
            fit = joblib.load(draw_dir / f"fold{k}.joblib")
            preds.append(fit["svr"].predict(fit["scaler"].transform(X)))
        return np.mean(preds, axis=0)


MODEL = SupportVector()
