"""Checksums of artifacts, and the check before use: is a file what was written?

Every stage records the checksum (sha256, ``util.digest``) of each artifact it writes in its
manifest (a draw folder's CHECKSUMS file, features.json, the cache's records, summary.json), computed
from the bytes as they are written. A reader checks the files it uses before it uses them. Folders
of an older labquake have no checksums: their files are checked by loading them.
"""

from __future__ import annotations

from pathlib import Path

from labquake.util import file_digest, read_json

CHECKSUMS = "checksums.json"  # a draw folder's manifest: its files' checksums


def loads(path: Path) -> str | None:
    """Why an artifact without a checksum does not load (None: it does), by its kind."""
    import numpy as np
    import pandas as pd

    try:
        if path.suffix == ".parquet":
            pd.read_parquet(path)
        elif path.suffix == ".npz":
            with np.load(path) as npz:
                [npz[k] for k in npz.files]
        elif path.suffix == ".txt":
            import lightgbm as lgb

            text = path.read_text()
            if "end of trees" not in text or "end of parameters" not in text:  # LightGBM aborts the process on a cut model
                return f"{path}: does not load (a LightGBM model cut short)"
            lgb.Booster(model_str=text)
        elif path.name.endswith(".h5"):
            import h5py

            with h5py.File(path, "r") as fh:
                fh.visit(lambda _: None)
        elif path.suffix == ".joblib":
            import joblib

            joblib.load(path)
    except Exception as exc:  # whatever the library raises for a damaged file
        return f"{path}: does not load ({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else 'damaged'})"
    return None


def check_files(folder: Path, names: list[str] | None = None, manifest: dict[str, str] | None = None) -> list[str]:
    """Problems of a folder's artifacts against their checksums (``manifest``, default its CHECKSUMS
    file); ``names``: only these. Without checksums (a folder of an older labquake), each is loaded instead."""
    folder = Path(folder)
    if manifest is None:
        path = folder / CHECKSUMS
        manifest = read_json(path) if path.is_file() else None
    if manifest is None:
        return [p for p in (loads(folder / n) for n in names or []) if p]
    problems = []
    for name, expected in manifest.items():
        if names is not None and name not in names:
            continue
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif file_digest(path) != expected:
            problems.append(f"{path}: does not match its checksum (changed since it was written)")
    return problems
