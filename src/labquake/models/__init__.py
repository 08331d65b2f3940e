"""The models, behind one contract (``models.base.Model``), registered in ``models.registry``.

``lgbm`` (the recipe's LightGBM), ``nn`` (the recipe's network), ``seq`` (the sequence network) and
``svr`` (a support-vector regressor, an option); ``blend.models`` chooses which are trained and
blended. ``models.cv`` is the one cross-validation loop, ``models.train`` the stage, and
``models.folder.RunFolder`` owns the run folder. Nothing heavy is imported until a model trains.
"""

from labquake.models.folder import RunFolder, default_run_dir, run_name, train_key
from labquake.models.registry import MODELS, model, reads, training_data
from labquake.models.train import predict_saved, run_train

__all__ = ["MODELS", "RunFolder", "default_run_dir", "model", "predict_saved", "reads", "run_name", "run_train", "train_key", "training_data"]
