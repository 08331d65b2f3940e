"""Stand-ins and helpers shared by the tests: feature tables shaped like the features stage's, a
network that trains without TensorFlow (the run folder around them is written by the real
``models.run_train``), and the command line run as a user meets it (``cli``, ``snapshot``,
``one_line_error``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from labquake.features import FEATURE_NAMES


def synthetic_tables(n_cycles: int = 4, per_cycle: int = 60, n_test: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature tables shaped like the features stage's: meta columns and the 24 features, correlated with target."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_cycles):
        length = rng.uniform(6, 14)
        ttf = np.linspace(length, 0.05, per_cycle)
        rows.append(pd.DataFrame({"cycle": c, "target": ttf, "tsf": length - ttf}))
    train = pd.concat(rows, ignore_index=True)
    train.insert(0, "start", np.arange(len(train), dtype=np.int64) * 150_000)
    train["binary"] = (train["target"] < 0.5).astype(np.int8)
    test_ttf = rng.uniform(0.05, 12, n_test)

    def feats(ttf: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for j, name in enumerate(FEATURE_NAMES):
            scale = 10.0 ** (j % 5 - 2)  # very different scales, as the real features have
            signal = np.log1p(ttf) if j % 2 else -ttf
            out[name] = scale * (signal + rng.normal(0, 0.6, len(ttf)) + j)
        return out

    train = train.assign(**feats(train["target"].to_numpy()))
    test = pd.DataFrame({"seg_id": [f"seg_{i:06x}" for i in range(n_test)], **feats(test_ttf)})
    return train, test.assign(_truth=test_ttf)


def fake_sequences(ttf: np.ndarray, seed: int, steps: int = 150, channels: int = 5) -> np.ndarray:
    """(n, steps, channels) float32 like the features stage's: channel 0 rises towards the failure."""
    rng = np.random.default_rng(seed)
    seq = rng.normal(0, 1, (len(ttf), steps, channels)).astype(np.float32)
    seq[:, :, 0] += (-np.asarray(ttf, np.float32) / 3)[:, None]
    return seq


def write_feature_dir(path: Path, key: str = "k1", sequences: bool = False, **kw) -> Path:
    """A feature folder like the features stage's (``sequences``: with train_seq.npy and test_seq.npy)."""
    train, test = synthetic_tables(**kw)
    path.mkdir(parents=True, exist_ok=True)
    train.to_parquet(path / "train.parquet", index=False)
    test.drop(columns="_truth").to_parquet(path / "test.parquet", index=False)
    if sequences:
        np.save(path / "train_seq.npy", fake_sequences(train["target"].to_numpy(), 1))
        np.save(path / "test_seq.npy", fake_sequences(test["_truth"].to_numpy(), 2))
    (path / "features.json").write_text(json.dumps({"n_rows": int(len(train) * 150_000 + 1234), "key": key}))
    return path


def fake_network(monkeypatch, quality: dict[int, float] | None = None) -> list[dict]:
    """Train without TensorFlow: the network's ``fit_fold`` becomes valid = truth + noise (sd
    ``quality[draw]``, default 0.1), test = the draw's seed. Returns one record per draw trained."""
    from labquake.models import nn
    from labquake.models.base import FoldFit

    calls: list[dict] = []

    def fit_fold(cfg, inputs, folds, k, seed, fold_dir):
        draw = seed - cfg.nn.seed
        if k == 0:
            calls.append({"seed": seed, "draw": draw, "folds": folds.copy(), "out_dir": fold_dir})
        rng = np.random.default_rng([seed, k])
        va = folds == k
        (fold_dir / f"fold{k}.weights.h5").write_bytes(b"")
        hist = pd.DataFrame({"epoch": [1, 2], "val_ttf_mae": 1.0})
        valid = inputs.y["ttf"][va] + rng.normal(0, (quality or {}).get(draw, 0.1), int(va.sum()))
        info = {"best_epoch": 1, "epochs": 2, "batch_size": 16}
        return FoldFit(valid, np.full(len(inputs.X_test), float(seed)), info, hist)

    monkeypatch.setattr(nn.MODEL, "fit_fold", fit_fold)  # the registered instance: what the loop calls
    return calls


def cli(*args, env=None, cwd=None, limit: int | None = None) -> subprocess.CompletedProcess:
    """`labquake ARGS` in a fresh process; ``limit``: RLIMIT_FSIZE in bytes there (a full disk for any larger file)."""
    code = "import sys; from labquake.cli import main; sys.exit(main(sys.argv[1:]))"
    if limit is not None:  # SIGXFSZ ignored, so a write past the limit fails with EFBIG instead of killing the process
        code = f"import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); {code}"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a folder and its bytes: what "earlier outputs are intact" compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(out: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, no traceback, exactly one error line, holding every needle; the line."""
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = [line for line in out.stderr.strip().splitlines() if "error:" in line]
    assert len(lines) == 1, out.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
