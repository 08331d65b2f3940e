"""Do two sets of segments look alike? (`labquake compare`, and `labquake drift` on top of it)

``compare`` sets any two feature tables side by side (two feature folders, a folder and a parquet
file, or the train and the test of one folder); ``drift`` compares a feature folder's training
segments (the selected cycles) with its test segments. Both give, for each feature, the two-sample
Kolmogorov-Smirnov statistic and p-value, and an adversarial-validation AUC: a LightGBM classifier
that tells the two sides' rows apart, scored out of fold (0.5: indistinguishable).

Writes to ``out/``: ``NAME.csv`` (``feature, ks_stat, p_value``, one row per feature, largest
statistic first), ``NAME.json`` (the AUC, the median and largest KS, the configuration and
timings), ``ks.png`` (the statistics) and ``distributions.png`` (histograms of every feature), with
NAME ``compare`` or ``drift``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from labquake.config import Config
from labquake.plotting import plot_distributions, plot_ks
from labquake.stats import NOT_FEATURES, adversarial_auc, ks_table
from labquake.util import LabquakeError, Timer, atomic_path, log, read_table, stage_record, write_json


def compare_tables(
    a: pd.DataFrame, b: pd.DataFrame, features: list[str], out_dir: Path, name: str, labels: tuple[str, str], record: dict[str, Any], timer: Timer
) -> dict[str, Any]:
    """KS per feature and the adversarial AUC of ``a`` against ``b``; writes NAME.csv, NAME.json and the plots."""
    import matplotlib

    matplotlib.use("Agg")
    with timer.step("ks"):
        table = ks_table(a, b, features)
    with timer.step("adversarial"):
        auc = adversarial_auc(a, b, features)
    out_dir.mkdir(parents=True, exist_ok=True)
    with timer.step("write"):
        with atomic_path(out_dir / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        plot_ks(table, out_dir / "ks.png", labels)
        plot_distributions(a, b, table, out_dir / "distributions.png", labels)
    summary = {
        "adversarial_auc": auc,
        "features": len(features),
        "median_ks": float(table["ks_stat"].median()),
        "p_below_0.05": int((table["p_value"] < 0.05).sum()),
        "largest_ks": table.iloc[0][["feature", "ks_stat", "p_value"]].to_dict(),
        "segments": [len(a), len(b)],
        "labels": list(labels),
    }
    write_json(out_dir / f"{name}.json", stage_record(name, record.pop("config", {}), timer, **record, summary=summary))
    log.info(
        "%s: adversarial AUC %.3f; median KS %.3f; %d of %d features with KS p < 0.05 (largest: %s, KS %.3f) -> %s",
        name,
        auc,
        summary["median_ks"],
        summary["p_below_0.05"],
        len(features),
        summary["largest_ks"]["feature"],
        summary["largest_ks"]["ks_stat"],
        out_dir,
    )
    return summary


def run_drift(cfg: Config, features_dir: Path, out_dir: Path) -> dict[str, Any]:
    """The drift stage: read a feature folder, compare train (selected cycles) and test, write ``out_dir``."""
    from labquake.models import training_data
    from labquake.trainset import union

    timer = Timer()
    with timer.step("load"):
        data = training_data(cfg, Path(features_dir))
        features = union(data.reads)
    record = {"config": cfg.to_dict(), "features_dir": str(features_dir)}
    return compare_tables(data.train, data.test, features, Path(out_dir), "drift", ("train", "test"), record, timer)


def read_side(path: Path, which: str) -> pd.DataFrame:
    """One side of a comparison: a parquet file, or the ``which`` table (train or test) of a feature folder."""
    path = Path(path)
    if not path.exists():
        raise LabquakeError(f"{path}: not found (give a feature folder or a parquet file)")
    if path.is_dir():
        path = path / f"{which}.parquet"
        if not path.exists():
            raise LabquakeError(f"{path}: not found (is {path.parent} a feature folder? `labquake features` writes one)")
    return read_table(path)


def run_compare(a: Path, b: Path | None, out_dir: Path, which: tuple[str, str] = ("test", "test")) -> dict[str, Any]:
    """The compare stage: two feature tables side by side (``b`` None: ``a``'s train against its test)."""
    timer = Timer()
    with timer.step("load"):
        if b is None:
            if not Path(a).is_dir():
                raise LabquakeError(f"{a}: a table alone has nothing to be compared with (give a second one, or a feature folder)")
            b, which = a, ("train", "test")
        left, right = read_side(a, which[0]), read_side(b, which[1])
    numeric = [c for c in left.columns if c in right.columns and pd.api.types.is_numeric_dtype(left[c]) and pd.api.types.is_numeric_dtype(right[c])]
    features = [c for c in numeric if c not in NOT_FEATURES]
    if not features:
        raise LabquakeError(f"{a} and {b}: no feature column in common")
    for side, table in ((a, left), (b, right)):
        if len(table) < 2:
            raise LabquakeError(f"{side}: {len(table)} row(s); a comparison needs at least 2 segments on each side")
    labels = (f"{Path(a).name}:{which[0]}" if Path(a).is_dir() else Path(a).stem, f"{Path(b).name}:{which[1]}" if Path(b).is_dir() else Path(b).stem)
    if labels[0] == labels[1]:
        labels = ("A: " + labels[0], "B: " + labels[1])
    record = {"a": str(a), "b": str(b), "tables": list(which)}
    return compare_tables(left, right, features, Path(out_dir), "compare", labels, record, timer)
