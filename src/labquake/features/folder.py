"""A feature folder: its layout, its record and its checks, in one place.

    train.parquet            one row per training segment: start, cycle, target, tsf, binary, features
    test.parquet             one row per test segment: seg_id, the same features
    train_seq.npy            the sequences of train.parquet's rows (features/sequences.py)
    test_seq.npy             ... and of test.parquet's
    train_seq_extra.npy      features.seq_overlap: extra windows, whose rows are
    train_seq_extra.parquet  start, cycle, target, tsf, binary
    features.json            the stage record (written last): key, n_rows, configuration, timings

``labquake features`` writes one (swapped in whole); a folder of your own tables works too, as
long as it has the two tables and a features.json with ``n_rows`` (docs/features.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from labquake.config import Config
from labquake.integrity import check_files
from labquake.util import LabquakeError, log, read_json

META_COLUMNS = ("start", "cycle", "target", "tsf", "binary")  # a training row's facts, not features
RECORD = "features.json"
TABLES = {"train": "train.parquet", "test": "test.parquet", "train_extra": "train_seq_extra.parquet"}
SEQUENCES = {"train": "train_seq.npy", "test": "test_seq.npy", "train_extra": "train_seq_extra.npy"}
HINT = " (run `labquake features` first)"


class FeatureFolder:
    """One feature folder (see the module docstring); ``path`` need not exist yet."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FeatureFolder({str(self.path)!r})"

    def table_path(self, which: str) -> Path:
        return self.path / TABLES[which]

    def sequences_path(self, which: str) -> Path:
        return self.path / SEQUENCES[which]

    @property
    def record_path(self) -> Path:
        return self.path / RECORD

    def files(self, seq_overlap: bool, sequences: bool = True) -> list[Path]:
        """What a finished folder of ``labquake features`` holds, its record last (``sequences``: with them)."""
        which = ["train", "test", *(["train_extra"] if seq_overlap else [])]
        tables = [self.table_path(w) for w in which]
        return [*tables, *(self.sequences_path(w) for w in which if sequences), self.record_path]

    def finished(self, key: str, seq_overlap: bool, sequences: bool = True) -> bool:
        """Every file there (``sequences``: the sequences too), the record's key is ``key`` and every
        file matches its checksum (a damaged file or record: not finished, so ``labquake features``
        builds the folder again, and says why)."""
        if not all(p.is_file() for p in self.files(seq_overlap, sequences)):
            return False
        try:
            record = read_json(self.record_path)
        except LabquakeError:
            return False
        if record.get("key") != key or (sequences and record.get("sequences") is False):
            return False
        problems = self.verify()
        for p in problems:
            log.warning(f"features: {p}: building the folder again")
        return not problems

    def verify(self, names: list[str] | None = None) -> list[str]:
        """Its files (``names``: only these) against the checksums features.json records; a folder of
        an older labquake, or of your own, without checksums: by loading each."""
        meta = self.record()
        manifest = meta.get("checksums")
        if manifest is None:
            present = [p.name for p in self.path.iterdir() if p.suffix in (".parquet", ".npy")]
            return check_files(self.path, [n for n in present if names is None or n in names])
        return check_files(self.path, names, manifest)

    def require_intact(self, names: list[str]) -> None:
        """A one-line error naming the first damaged file of ``names``, and what to rerun."""
        problems = self.verify(names)
        if problems:
            raise LabquakeError(f"{problems[0]}; rerun `labquake features` (it builds the folder again)")

    def record(self) -> dict[str, Any]:
        """features.json, checked: it must say how many raw rows the features came from."""
        if not self.record_path.exists():
            raise LabquakeError(f"{self.path}: no {RECORD}{HINT}")
        meta = read_json(self.record_path)
        if not isinstance(meta, dict) or not isinstance(meta.get("n_rows"), int):
            raise LabquakeError(f"{self.record_path}: no n_rows (rebuild the features with `labquake features`)")
        return meta

    def key(self, meta: dict[str, Any]) -> str:
        """The cache key the record holds (what a run folder is tied to)."""
        if isinstance(meta.get("key"), str) and meta["key"]:
            return meta["key"]
        raise LabquakeError(f"{self.record_path}: no cache key (rebuild the features with `labquake features`)")

    def check_settings(self, cfg: Config, meta: dict[str, Any]) -> None:
        """Tables must come from this version and this configuration's feature settings."""
        from labquake import __version__

        if "version" in meta and meta["version"] != __version__:
            raise LabquakeError(f"{self.record_path}: made by labquake {meta['version']}, this is {__version__}; rebuild with `labquake features`")
        changed = changed_settings(cfg, (meta.get("config") or {}).get("features"))
        if changed:
            raise LabquakeError(
                f"{self.record_path}: made with other feature settings ({', '.join(changed)}); rebuild with `labquake features` and the same options"
            )

    def sequences(self, which: str) -> np.ndarray:
        """Sequences of a table's rows, memory-mapped: "train", "test" or "train_extra"."""
        if which not in SEQUENCES:
            raise ValueError(f"sequences: which must be one of {sorted(SEQUENCES)}, got {which!r}")
        path = self.sequences_path(which)
        if not path.is_file():
            hint = (
                " with --set features.seq_overlap=true"
                if which == "train_extra"
                else " with the run's blend.models (it computes them when a model reads them)"
            )
            raise LabquakeError(f"{path}: no sequences here: run `labquake features`{hint}")
        self.require_intact([path.name])
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise LabquakeError(f"{path}: unreadable sequences ({exc}): run `labquake features`") from None


def changed_settings(cfg: Config, made: dict[str, Any] | None) -> list[str]:
    """The feature settings (features.KEY) that differ between ``made`` (as recorded) and ``cfg``;
    none when nothing was recorded."""
    if not isinstance(made, dict):
        return []
    ours = json.loads(json.dumps(cfg.features.table_settings()))  # as recorded: tuples become lists
    return [f"features.{k}" for k in sorted(ours) if made.get(k) != ours[k]]
