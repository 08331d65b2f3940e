"""What the networks share: TensorFlow set-up, the recipe's three heads and loss, and one fit.

``nn`` (the recipe's network) and ``seq`` (the sequence network) differ only in their body and
input; both end in the recipe's heads (time to failure, time since failure, failure within 0.5 s)
with its loss weights, and train with its callbacks (early stopping on the validation TTF MAE with
the best weights restored, learning rate cut on plateaus), seeded per draw.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from labquake.util import LabquakeError, file_digest, log, write_bytes

HEADS = ("ttf", "tsf", "binary")  # network outputs, in the order of the loss weights
MONITOR = "val_ttf_mae"  # Keras 3's name for the validation MAE of the output layer named "ttf"
DEAD_STD = 0.01  # predictions that vary less than this x the target's std are constant: a dead output
# Training steps per call of the compiled graph. The recipe's network does a few milliseconds of
# arithmetic a step, so Python's per-step dispatch was a quarter of an epoch (78.6 -> 57.6 ms an
# epoch of 11 steps); the updates, and so the results, are the same bytes.
STEPS_PER_EXECUTION = 32
# TensorFlow's threads in every process. seq's results depend on the count (its sums split by
# thread), so a fixed one makes them the same on every machine and for any train --jobs; the
# networks' steps are too small to gain from a second thread (103 against 106 ms an epoch), and
# train --jobs keeps the cores busy with processes instead.
TF_THREADS = 1


def setup_tensorflow(device: str = "auto") -> str:
    """Import TensorFlow quietly and reproducibly on the requested device; return "gpu" or "cpu".

    Its thread pools get TF_THREADS threads, set on the first call (a process where TensorFlow
    already started keeps its own)."""
    if device not in ("auto", "cpu", "gpu"):
        raise LabquakeError(f"--device {device!r}: choose auto, cpu or gpu")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN kernels are not bitwise reproducible
    import absl.logging
    import tensorflow as tf

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise LabquakeError("--device gpu: TensorFlow sees no GPU (install the CUDA build with `make install GPU=1`, or use --device cpu)")
    if device == "cpu" and gpus:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # TensorFlow already initialised in this process
            if tf.config.get_visible_devices("GPU"):
                raise LabquakeError("--device cpu: TensorFlow already started on the GPU in this process") from None
    if tf.config.threading.get_intra_op_parallelism_threads() != TF_THREADS:
        with contextlib.suppress(RuntimeError):  # TensorFlow already initialised in this process
            tf.config.threading.set_intra_op_parallelism_threads(TF_THREADS)
            tf.config.threading.set_inter_op_parallelism_threads(TF_THREADS)
    tf.config.experimental.enable_op_determinism()
    return "gpu" if gpus and device != "cpu" else "cpu"


def heads(x, inputs, name: str, c: Any, compile: bool):
    """The recipe's three named heads on ``x``, compiled with its loss (``c``: the section's settings)."""
    import keras
    from keras import layers

    outputs = {
        "ttf": layers.Dense(1, activation="relu", name="ttf")(x),
        "tsf": layers.Dense(1, name="tsf")(x),
        "binary": layers.Dense(1, activation="sigmoid", name="binary")(x),
    }
    model = keras.Model(inputs, outputs, name=name)
    if compile:
        model.compile(
            optimizer=keras.optimizers.Nadam(learning_rate=c.learning_rate),
            loss={"ttf": "mae", "tsf": "mae", "binary": "binary_crossentropy"},
            loss_weights=dict(zip(HEADS, c.loss_weights)),
            metrics={"ttf": ["mae"]},
            steps_per_execution=STEPS_PER_EXECUTION,
        )
    return model


def _require_metric(monitor: str):
    """A callback that fails the fit when ``monitor`` is not logged: Keras 3's callbacks only warn."""
    import keras

    class RequireMetric(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if monitor not in (logs or {}):
                raise RuntimeError(f"monitored metric {monitor!r} is not logged (logged: {', '.join(sorted(logs or {}))})")

    return RequireMetric()


def batch_size(c: Any, n_train: int) -> int:
    """The batch for ``n_train`` rows: the section's, cut so an epoch has ``min_steps_per_epoch`` steps."""
    if c.min_steps_per_epoch <= 0:
        return c.batch_size
    return min(c.batch_size, max(16, n_train // c.min_steps_per_epoch))


class ReusedNetwork:
    """One compiled network for every fold and draw of a run.

    Keras traces its training and validation steps on a model's first fit, about 4 s on CPU: more
    than a whole fold's training on small data. So the compiled model is kept, and each fit starts
    it from the weights of a network freshly built from the fit's seed and from the optimizer's
    initial state, which is what a new model would start from (a test holds the two equal).
    ``build(compile)`` builds the network.
    """

    def __init__(self, build: Callable[[bool], Any]) -> None:
        import keras

        keras.backend.clear_session()
        keras.utils.set_random_seed(0)  # nothing of the compiled model comes from an unseeded draw
        self.build = build
        self.model = build(True)
        self.model.optimizer.build(self.model.trainable_variables)
        self.optimizer_start = [v.numpy() for v in self.model.optimizer.variables]

    def fresh(self, seed: int):
        """The model, reset to the start of a fit from ``seed``."""
        import keras

        keras.utils.set_random_seed(seed)
        # every variable, not only the weights: the state of a Dropout's seed generator is a
        # variable too, and left alone its masks would depend on the fits before this one
        template = self.build(False)
        for v, start in zip(self.model.variables, template.variables, strict=True):
            v.assign(start)
        for v, start in zip(self.model.optimizer.variables, self.optimizer_start):
            v.assign(start)
        return self.model


_NETWORK: dict[Any, ReusedNetwork] = {}  # this process's compiled network: one at a time


def reused(key: Any, build: Callable[[bool], Any], device: str) -> ReusedNetwork:
    """This process's compiled network for ``key`` (model, settings, input shape): built once per run
    and per worker process; a new key replaces it."""
    if key not in _NETWORK:
        where = setup_tensorflow(device)
        log.info(f"{key[0]}: compiled network on {where}")
        _NETWORK.clear()
        _NETWORK[key] = ReusedNetwork(build)
    return _NETWORK[key]


def fit_network(
    c: Any,
    network: ReusedNetwork,
    x_train,
    y_train: dict,
    x_valid,
    y_valid: dict,
    weights_path: Path,
    seed: int,
    monitor: str = MONITOR,
    sample_weight: np.ndarray | None = None,
):
    """Train one network from ``seed``; end with the weights of its best epoch (saved at ``weights_path``).

    ``sample_weight``: the training rows' weights (data.weights), on every head's loss; the monitored
    validation MAE stays plain (Keras weighs only ``weighted_metrics``). None: the recipe."""
    import keras

    if not str(weights_path).endswith(".weights.h5"):
        raise ValueError(f"{weights_path}: Keras 3 weight files must end in .weights.h5")
    model = network.fresh(seed)
    callbacks = [
        _require_metric(monitor),  # first, so it fires before the others silently skip
        # The recipe's best-epoch checkpoint, kept in memory: Keras 3.15 restores the best weights
        # at the end of training, stopped early or not. A file write per improvement cost more
        # than the epoch itself on small data; the file is written once, below.
        keras.callbacks.EarlyStopping(monitor=monitor, mode="min", patience=c.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="min", factor=c.lr_factor, patience=c.lr_patience, min_delta=c.min_delta),
    ]
    # tf.data instead of arrays: Keras builds a new iterator over numpy data four times an epoch,
    # which cost 3-4x the training step itself on this small network (56 -> 15 ms an epoch).
    import tensorflow as tf

    # tf.data's autotuning and graph rewrites cost a fifth of an epoch here (85 -> 66 ms) for
    # pipelines of one shuffle and one batch; neither changes an element (the same bytes).
    plain = tf.data.Options()
    plain.autotune.enabled = False
    plain.experimental_optimization.apply_default_optimizations = False
    rows = (x_train, y_train) if sample_weight is None else (x_train, y_train, {h: np.asarray(sample_weight, np.float32) for h in y_train})
    train = tf.data.Dataset.from_tensor_slices(rows)
    train = train.shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True).batch(batch_size(c, len(x_train))).with_options(plain)
    valid = tf.data.Dataset.from_tensor_slices((x_valid, y_valid)).batch(max(min(len(x_valid), 4096), 1)).cache().with_options(plain)
    history = model.fit(train, validation_data=valid, epochs=c.epochs, callbacks=callbacks, shuffle=False, verbose=0)  # shuffled above
    save_weights(model, weights_path)
    return model, pd.DataFrame(history.history)


def save_weights(model, path: Path) -> str:
    """``model.save_weights(path)``, by Keras's own HDF5 writer into memory, then written as every
    other artifact (util.write_bytes; its checksum returned). Keras writes a path itself, and when
    that write fails (a full disk) h5py prints a traceback for each handle it closes, which no hook
    silences; a failed write of bytes is one OSError. The file loads as save_weights' (a test holds it).
    """
    import io

    from keras.src.saving import saving_lib  # save_weights' own store (Keras 3.15): it takes a BytesIO

    buf = io.BytesIO()
    store = saving_lib.H5IOStore(buf, mode="w")
    saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    store.close()
    return write_bytes(path, buf.getvalue())


def predict_ttf(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=4096, verbose=0)["ttf"], dtype=np.float64).reshape(-1)


def targets_of(table: pd.DataFrame, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The three heads' targets (float32) of a train table's rows."""
    t = table if rows is None else table.iloc[rows]
    return {"ttf": t["target"].to_numpy(np.float32), "tsf": t["tsf"].to_numpy(np.float32), "binary": t["binary"].to_numpy(np.float32)}


def fold_fit(c: Any, network: ReusedNetwork, x_tr, y_tr, x_va, y_va, x_te, weights_path: Path, seed: int, info: dict, sample_weight=None):
    """Fit one fold and predict its validation and test rows: the FoldFit both networks return."""
    from labquake.models.base import FoldFit

    model, hist = fit_network(c, network, x_tr, y_tr, x_va, y_va, weights_path, seed, sample_weight=sample_weight)
    best = int(hist[MONITOR].to_numpy().argmin()) + 1
    log.info(f"seed {seed} {weights_path.name.split('.')[0]}: best epoch {best} of {len(hist)} (batch {batch_size(c, len(x_tr))})")
    info = {**info, "best_epoch": best, "epochs": len(hist), "batch_size": batch_size(c, len(x_tr))}
    files = {weights_path.name: file_digest(weights_path)}  # read back: a small file, just written
    return FoldFit(predict_ttf(model, x_va), predict_ttf(model, x_te), info, hist.assign(epoch=np.arange(1, len(hist) + 1)), files)
