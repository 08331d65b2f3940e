"""All configuration in one typed place.

The defaults are the recipe of docs/recipe.md (preset ``recipe``). Other presets and
user overrides (a TOML file, ``--set section.key=value`` flags) are applied on top of it and
recorded beside every output, so a result always says how it was made.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_type_hints

from labquake.features.table import read_by
from labquake.util import LabquakeError, json_key

SEGMENT_ROWS = 150_000
BURSTS = ("events", "envelopes")  # labquake synth --bursts, the first the default: how the emission's power comes in time (synth.signal._render)
SUBMISSION_COLUMNS = ("seg_id", "time_to_failure")  # sample_submission.csv and every submission file
REAL_TRAIN_ROWS = 629_145_480  # the size of Kaggle's train.csv
# Kaggle's real train.csv is recognised by its content, never by its size: the sha256 of its first
# REAL_HEAD_ROWS rows as int16 signal bytes then float64 time bytes (tests/data/train_head.csv holds them)
REAL_HEAD_ROWS = 149_999
REAL_HEAD_KEY = "13447982abebea2f30ff58db751a9984cb4ef8bb52cc06c2eec6a083a6b4ffb6"
OnReject = Literal["drop", "best", "error"]  # values of NAME.on_reject for the networks
CVScheme = Literal["kfold", "cycles"]
SeqArch = Literal["conv_gru", "causal_lstm"]
BlendWeights = Literal["equal", "fitted"]
TargetKind = Literal["ttf", "fraction"]
Weights = Literal["none", "adversarial"]
SCALES = ("train", "cycles", "weights")  # targets.scale by name (or a number of seconds)


def check_choices(settings: Any, section: str) -> None:
    """Every ``Literal`` field of a section holds one of its values: one check, one wording."""
    for name, hint in get_type_hints(type(settings)).items():
        if typing.get_origin(hint) is Literal and getattr(settings, name) not in typing.get_args(hint):
            choices = ", ".join(typing.get_args(hint))
            raise LabquakeError(f"config: {section}.{name} must be one of {choices}, got {getattr(settings, name)!r}")


@dataclass(frozen=True)
class Paths:
    """Where the command line reads and writes when no --data/--out/--run/... is given."""

    raw: str = "data/raw"  # Kaggle layout: train.csv, test/seg_*.csv, sample_submission.csv
    interim: str = "data/interim"  # binary caches of the raw CSV files
    features: str = "data/features"
    models: str = "models"
    submissions: str = "submissions"


@dataclass(frozen=True)
class DataConfig:
    # Segments are always SEGMENT_ROWS long: Kaggle's test files are, and so is the binary cache.
    # Cycles trained on. None: the recipe's list on real Kaggle data, every cycle otherwise.
    # "auto": the subset of complete cycles whose features look most like the test's (trainset.choose_cycles).
    train_cycles: tuple[int, ...] | str | None = None
    recipe_cycles: tuple[int, ...] = (0, 1, 2, 4, 7, 9, 10, 11, 13, 14)
    auto_share: float = 0.6  # "auto": subset size, as a share of the complete cycles (at least 2)
    auto_draws: int = 2000  # "auto": random subsets tried (the winners drew up to 10,000)
    auto_seed: int = 0

    binary_threshold: float = 0.5  # seconds: the network's third target is ttf < this
    # "adversarial": every model fits with covariate-shift weights (shift.adversarial_weights, docs/shift.md)
    weights: Weights = "none"
    weight_bounds: tuple[float, float] = (0.1, 10.0)
    weight_seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.train_cycles, str) and self.train_cycles != "auto":
            raise LabquakeError(f'config: data.train_cycles must be a list of cycles or "auto", got {self.train_cycles!r}')
        if not 0 < self.auto_share <= 1 or self.auto_draws < 1:
            raise LabquakeError("config: data.auto_share must be in (0, 1] and data.auto_draws >= 1")
        check_choices(self, "data")
        lo, hi = (tuple(self.weight_bounds) + (0.0, 0.0))[:2]
        if len(self.weight_bounds) != 2 or not 0 < lo <= 1 <= hi:
            raise LabquakeError(f"config: data.weight_bounds must be two numbers lo <= 1 <= hi, lo > 0, got {list(self.weight_bounds)}")


@dataclass(frozen=True)
class TargetConfig:
    """What the models learn: "ttf", seconds (the recipe), or "fraction" of the cycle, multiplied back
    by ``scale``: "train", "cycles", "weights" (mean cycle lengths) or seconds (docs/shift.md)."""

    kind: TargetKind = "ttf"
    scale: str | float = "train"

    def __post_init__(self) -> None:
        check_choices(self, "targets")
        if isinstance(self.scale, str) and self.scale not in SCALES:
            raise LabquakeError(f"config: targets.scale must be one of {', '.join(SCALES)} or a number of seconds, got {self.scale!r}")
        if not isinstance(self.scale, str) and not self.scale > 0:
            raise LabquakeError(f"config: targets.scale must be a positive number of seconds, got {self.scale!r}")


@dataclass(frozen=True)
class FeatureConfig:
    noise_seed: int = 1337
    noise_sd: float = 0.5
    wavelet: str = "db4"
    wavelet_mode: str = "periodization"
    simple_threshold: float = 10.0
    sr: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mfcc: int = 20
    n_mels: int = 128
    contrast_fmin: float = 200.0
    contrast_bands: int = 6
    contrast_quantile: float = 0.02
    # Before training, drop the features whose train-vs-test KS p-value is below this (the winners
    # kept p > 0.05); None: keep all. It selects columns and does not change the tables, so it is
    # left out of their cache key and belongs to the training run's key instead.
    ks_min_p: float | None = None
    # The sequence model's input (models/seq.py): the segment cut into time steps of this many
    # samples (it must divide the segment), each described by a few statistics (features/sequences.py).
    seq_window: int = 1000
    # Extra training sequences for `seq`: windows shifted by half a segment, inside one cycle.
    seq_overlap: bool = False

    def __post_init__(self) -> None:
        if self.seq_window < 1 or SEGMENT_ROWS % self.seq_window:
            raise LabquakeError(f"config: features.seq_window must divide the segment's {SEGMENT_ROWS} rows, got {self.seq_window}")

    def table_settings(self) -> dict[str, Any]:
        """The settings the feature tables depend on (all but the training-time selection)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "ks_min_p"}


@dataclass(frozen=True)
class CVConfig:
    # "kfold": the recipe's shuffled KFold over segments (adjacent segments of one cycle land in
    # different folds, so out-of-fold scores are optimistic). "cycles": folds of whole cycles
    # (GroupKFold), so no cycle is in two folds; n_splits equal to the number of cycles is
    # leave-one-cycle-out, more is an error.
    scheme: CVScheme = "kfold"
    n_splits: int = 3
    shuffle: bool = True
    seed: int = 1337

    def __post_init__(self) -> None:
        check_choices(self, "cv")
        if self.n_splits < 2:
            raise LabquakeError(f"config: cv.n_splits must be >= 2, got {self.n_splits}")


@dataclass(frozen=True)
class LGBMConfig:
    objective: str = "fair"
    metric: str = "mae"
    num_leaves: int = 4
    min_data_in_leaf: int = 5
    max_depth: int = -1
    learning_rate: float = 0.01
    boosting: str = "gbdt"
    boost_from_average: bool = True
    feature_fraction: float = 0.9
    bagging_freq: int = 1
    bagging_fraction: float = 0.5
    bagging_seed: int = 0
    max_bin: int = 500
    reg_alpha: float = 0.0
    reg_lambda: float = 0.0
    num_boost_round: int = 1_000_000
    early_stopping_rounds: int = 1000
    seeds: tuple[int, ...] = tuple(range(10))
    device_type: str = "cpu"  # "gpu" is LightGBM's OpenCL path
    features: tuple[str, ...] = read_by("lgbm")  # the columns it reads: the recipe's six by default


@dataclass(frozen=True)
class DrawConfig:
    """What every network's draws share (NNConfig, SeqConfig): the recipe's loss, callbacks, batch
    rule and bad-draw rejection. Each network states its own defaults where they differ."""

    loss_weights: tuple[float, float, float] = (8.0, 1.0, 1.0)  # ttf, tsf, binary
    learning_rate: float = 0.008
    batch_size: int = 256
    epochs: int = 1000
    patience: int = 20
    lr_patience: int = 5
    lr_factor: float = 0.5
    min_delta: float = 1e-4
    # The recipe's dynamics on smaller data: patience and LR steps count epochs, and with fewer
    # rows than a batch an epoch is one gradient step (on the real data, several). The batch is cut to
    # min(batch_size, max(16, n_train // min_steps_per_epoch)) so an epoch has about this many
    # steps; from 1,536 training rows a fold (the real data has ~1,700+) it stays 256. 0: off.
    min_steps_per_epoch: int = 6
    runs: int = 8
    # A draw is rejected when it failed to learn: its OOF predictions are constant within a fold
    # (std < 1% of the target's: a dead ReLU output), or its OOF MAE >= reject_ratio * LightGBM's
    # OOF MAE on the same folds, a reference that scales with the data's difficulty. The winners'
    # LightGBM scored about 1.83 on the real data, so 1.1 gives the recipe's bound of 2.0.
    reject_ratio: float = 1.1
    max_redraws: int = 8
    # When every draw is rejected. "drop": the blend leaves the network out (a network that fails the
    # bound drags the geometric mean towards its errors; the best draws stay in its column, for
    # inspection). "best": blend the best `runs` draws anyway. "error": stop (`train --strict`).
    on_reject: OnReject = "drop"
    seed: int = 0

    def __post_init__(self) -> None:
        section = self.SECTION  # type: ignore[attr-defined]
        check_choices(self, section)
        if self.min_steps_per_epoch < 0:
            raise LabquakeError(f"config: {section}.min_steps_per_epoch must be >= 0, got {self.min_steps_per_epoch}")
        if self.runs < 1 or self.max_redraws < 0:
            raise LabquakeError(f"config: {section}.runs must be >= 1 and {section}.max_redraws >= 0, got {self.runs} and {self.max_redraws}")


@dataclass(frozen=True)
class NNConfig(DrawConfig):
    SECTION = "nn"
    lstm_units: int = 128
    conv_filters: tuple[int, ...] = (128, 84, 64)
    conv_kernel: int = 2
    dense_units: tuple[int, ...] = (64, 32)
    features: tuple[str, ...] = read_by("nn")  # the columns it reads: the recipe's 21 by default


@dataclass(frozen=True)
class SeqConfig(DrawConfig):
    """The sequence network (models/seq.py): the segment's time steps in, the recipe's three heads out."""

    SECTION = "seq"
    # "conv_gru": Conv1D + MaxPooling1D blocks that shorten the sequence, then a GRU.
    # "causal_lstm": a causal Conv1D, then stacked LSTMs.
    arch: SeqArch = "conv_gru"
    conv_filters: tuple[int, ...] = (32, 64)
    conv_kernel: int = 5
    pool: int = 2
    gru_units: int = 64  # conv_gru's GRU
    lstm_units: tuple[int, ...] = (64, 32)  # causal_lstm's stacked LSTMs
    dense_units: tuple[int, ...] = (32,)
    dropout: float = 0.1
    learning_rate: float = 0.003
    batch_size: int = 64
    epochs: int = 300
    runs: int = 3
    max_redraws: int = 3


@dataclass(frozen=True)
class SVRConfig:
    """scikit-learn's SVR on the network's features, min-max scaled per training fold (models/svr.py).
    The recipe team's full blend had one; its settings were not published: scikit-learn's defaults."""

    kernel: Literal["rbf", "linear", "poly", "sigmoid"] = "rbf"
    C: float = 1.0
    epsilon: float = 0.1
    gamma: str | float = "scale"
    features: tuple[str, ...] = read_by("nn")
    seeds: tuple[int, ...] = (0,)  # an SVR fit is deterministic: one draw

    def __post_init__(self) -> None:
        check_choices(self, "svr")


@dataclass(frozen=True)
class BlendConfig:
    clip_min: float = 0.1
    # The models trained and blended, by name (labquake.models.MODELS); the recipe's pair by default.
    models: tuple[str, ...] = ("lgbm", "nn")
    # "equal": the geometric mean, sqrt(lgbm * nn) for the recipe. "fitted": a weighted geometric
    # mean, weights >= 0 summing to 1 fitted on the out-of-fold predictions (blend.json records them).
    weights: BlendWeights = "equal"

    def __post_init__(self) -> None:
        if not self.models or len(set(self.models)) != len(self.models):
            raise LabquakeError(f"config: blend.models must name at least one model, each once, got {list(self.models)}")
        check_choices(self, "blend")


@dataclass(frozen=True)
class RuntimeConfig:
    """How a command runs, not what it computes: part of no cache key and no run key.

    Each setting may also come from its environment variable (RUNTIME_ENV), which a TOML file or
    --set overrides; ``--scheduler`` overrides ``runtime.scheduler``.
    """

    feature_chunk: int = 64  # segments per resumable chunk of the features stage (a task on a cluster)
    scheduler: str | None = None  # a Dask scheduler's address; None: this machine
    scheduler_timeout: float = 20.0  # seconds to wait for the scheduler to answer

    def __post_init__(self) -> None:
        if self.feature_chunk < 1 or self.scheduler_timeout <= 0:
            raise LabquakeError("config: runtime.feature_chunk must be >= 1 and runtime.scheduler_timeout > 0")


RUNTIME_ENV = {
    "LABQUAKE_FEATURE_CHUNK": "runtime.feature_chunk",
    "LABQUAKE_SCHEDULER": "runtime.scheduler",
    "LABQUAKE_SCHEDULER_TIMEOUT": "runtime.scheduler_timeout",
}


def runtime_from_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The runtime settings the environment sets, as overrides ({"runtime.KEY": value})."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for var, key in RUNTIME_ENV.items():
        raw = env.get(var, "").strip()
        if not raw:
            continue
        if key == "runtime.scheduler":
            out[key] = raw
            continue
        try:
            out[key] = float(raw) if key == "runtime.scheduler_timeout" else int(raw)
        except ValueError:
            raise LabquakeError(f"{var}={raw!r}: not a number") from None
    return out


@dataclass(frozen=True)
class Config:
    preset: str = "recipe"
    paths: Paths = field(default_factory=Paths)
    data: DataConfig = field(default_factory=DataConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    lgbm: LGBMConfig = field(default_factory=LGBMConfig)
    nn: NNConfig = field(default_factory=NNConfig)
    seq: SeqConfig = field(default_factory=SeqConfig)
    svr: SVRConfig = field(default_factory=SVRConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def section_hash(self, *sections: str) -> str:
        """A short stable hash of some sections: the cache key of the outputs that depend on them."""
        return json_key({s: dataclasses.asdict(getattr(self, s)) for s in sections})


# Presets are overrides of the recipe, stated as the same dotted keys a user would pass.
PRESETS: dict[str, dict[str, Any]] = {
    "recipe": {},
    # Quick checks and tests: fewer seeds, runs and rounds; the same models otherwise.
    "fast": {
        "lgbm.seeds": (0, 1),
        "lgbm.num_boost_round": 5000,
        "lgbm.early_stopping_rounds": 100,
        "nn.runs": 2,
        "nn.epochs": 60,
        "nn.patience": 10,
        "nn.max_redraws": 2,
        # 60 epochs on a few dozen segments learn less than LightGBM: reject only draws far behind it
        "nn.reject_ratio": 1.5,
    },
    # the option of `make bench-shift` that helped under the test shift and cost nothing without it (docs/shift.md)
    "shift": {"targets.kind": "fraction", "targets.scale": "train"},
}


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Turn a value from TOML or the command line into the field's declared type."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass  # a plain string
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType):  # "X | None", and "X | str | None" for a named choice
        if value is None or (isinstance(value, str) and str in args):
            return value
        hint = next(a for a in args if a not in (type(None), str))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str) and value.startswith("[") and value.endswith("]") and args[0] is str:
            # [lgbm,nn,seq]: a list of names whose quotes a shell (or make) removed
            value = [v.strip().strip("\"'") for v in value[1:-1].split(",") if v.strip()]
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_coerce(v, args[0], key) for v in items)
    if typing.get_origin(hint) is Literal:
        return value  # checked against its choices by the section (check_choices)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not hint:
        raise LabquakeError(f"config: {key} must be {hint.__name__}, got {value!r}")
    return value


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Apply dotted-key overrides ("lgbm.seeds": [0, 1]) and return a new Config."""
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in overrides.items():
        if "." not in key:
            if key != "preset":
                raise LabquakeError(f"config: unknown key {key!r} (use section.key)")
            top[key] = value
            continue
        section, name = key.split(".", 1)
        sub = getattr(cfg, section, None)
        if not dataclasses.is_dataclass(sub):
            raise LabquakeError(f"config: unknown section {section!r} in {key!r}")
        hints = get_type_hints(type(sub))
        if name not in hints:
            raise LabquakeError(f"config: unknown key {key!r}")
        sections.setdefault(section, {})[name] = _coerce(value, hints[name], key)
    changes = {s: dataclasses.replace(getattr(cfg, s), **kv) for s, kv in sections.items()}
    return dataclasses.replace(cfg, **changes, **top)


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: {"nn": {"runs": 2}} -> {"nn.runs": 2}."""
    flat: dict[str, Any] = {}
    for k, v in table.items():
        if isinstance(v, dict):
            flat.update(flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def load_config(preset: str = "recipe", file: str | Path | None = None, sets: list[str] | None = None) -> Config:
    """The recipe, then the preset, then a TOML file, then ``key=value`` strings, in that order."""
    if preset not in PRESETS:
        raise LabquakeError(f"config: unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    cfg = with_overrides(Config(), {**PRESETS[preset], "preset": preset})
    try:
        cfg = with_overrides(cfg, runtime_from_env())
    except LabquakeError as exc:  # a bad value names its variable
        raise LabquakeError(str(exc).replace("config: runtime.", "environment: runtime.")) from None
    if file is not None:
        path = Path(file)
        try:
            table = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise LabquakeError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise LabquakeError(f"{path}: not valid TOML ({exc})") from None
        cfg = with_overrides(cfg, flatten(table))
    for item in sets or []:
        if "=" not in item:
            raise LabquakeError(f"--set {item!r}: expected section.key=value")
        key, value = item.split("=", 1)
        cfg = with_overrides(cfg, {key.strip(): value.strip()})
    return cfg
