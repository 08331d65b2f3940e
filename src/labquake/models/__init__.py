"""The models, behind one interface (``models.cv``), and training (``models.train``).

A model is one module and one name here: ``lgbm`` (the recipe's LightGBM), ``nn`` (the recipe's
network), ``seq`` (the sequence network). ``blend.models`` chooses which are trained and blended.
Nothing heavy is imported until a model trains.
"""

from labquake.models.run import (
    LGBM_TAG,
    META_COLUMNS,
    NN_TAG,
    TrainingData,
    feature_columns,
    feature_folder_key,
    fold_baseline,
    load_training_data,
    model_features,
)
from labquake.models.train import predict_saved, train

MODELS = {
    "lgbm": "labquake.models.lgbm",
    "nn": "labquake.models.nn",
    "seq": "labquake.models.seq",
}

__all__ = [
    "LGBM_TAG",
    "META_COLUMNS",
    "MODELS",
    "NN_TAG",
    "TrainingData",
    "feature_columns",
    "feature_folder_key",
    "fold_baseline",
    "load_training_data",
    "model_features",
    "predict_saved",
    "train",
]
