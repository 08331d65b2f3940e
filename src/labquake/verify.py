"""``labquake verify PATH``: is a cache, a feature folder or a run folder what was written?

Every file is checked against the checksum its stage recorded (folders of an older labquake, which
have none, by loading each file); the bad ones are listed, one line each, with what to rerun.
"""

from __future__ import annotations

from pathlib import Path

from labquake.util import LabquakeError


def run_verify(path: Path) -> tuple[str, list[str], int]:
    """What ``path`` is ("cache", "feature folder" or "run folder"), its problems, and the files checked."""
    path = Path(path)
    if not path.is_dir():
        raise LabquakeError(f"{path}: not found (give a cache folder, a feature folder or a run folder)")
    if (path / "features.json").is_file():
        from labquake.features.folder import FeatureFolder

        folder = FeatureFolder(path)
        names = sorted(p.name for p in path.iterdir() if p.suffix in (".parquet", ".npy"))
        return "feature folder", folder.verify(), len(names)
    if (path / "config.json").is_file():
        from labquake.models.folder import RunFolder

        run = RunFolder(path)
        run.require_finished()
        files = [p for p in path.rglob("*") if p.is_file() and (p.name.startswith("fold") or p.suffix in (".parquet", ".npz"))]
        return "run folder", run.verify(), len(files)
    if (path / "train.json").is_file() or (path / "test.json").is_file():
        from labquake.data.cache import verify_cache

        problems, checked = verify_cache(path)
        return "cache", problems, checked
    raise LabquakeError(f"{path}: neither a cache, a feature folder nor a run folder (no train.json, features.json or config.json)")
