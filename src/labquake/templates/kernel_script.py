"""LANL Earthquake Prediction with labquake, as one Kaggle kernel script.

This file is the template of the script that `labquake kernel` writes (see kernel.py): package
data, not a module of the package (nothing imports it; the tests load it as a script). The built
script carries the labquake package inside it (a base64 zip, at the end). When it runs it unpacks
the package into a scratch folder, finds the competition data and runs the same command-line
steps as a local `make submit` (features, train, submit, report), then copies the blend to
submission.csv in the working folder, where Kaggle's Output tab offers it for submission.

A Kaggle run and a local run differ only in where the folders are, decided in `kernel_paths`.
Do not edit a built script: edit the package sources and run `labquake kernel` again.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

COMPETITION = "LANL-Earthquake-Prediction"

# Filled in by `labquake kernel`: what was built (version, preset, the configuration as
# command-line arguments, the packed files). The package itself is at the end of the script.
BUILD = "__LABQUAKE_BUILD__"

log = logging.getLogger("labquake_kernel")


class KernelError(Exception):
    """A problem the kernel cannot get past (no data, a failed step); printed as one line."""


@dataclass(frozen=True)
class KernelPaths:
    """Every folder of a kernel run. Only the three roots differ from a local run."""

    input_root: Path  # read-only data sources (Kaggle: /kaggle/input)
    working: Path  # outputs kept by Kaggle (Kaggle: /kaggle/working)
    scratch: Path  # unpacked package and binary caches, not kept (Kaggle: the temporary folder)

    @property
    def package(self) -> Path:
        return self.scratch / "src"

    @property
    def interim(self) -> Path:
        return self.scratch / "interim"

    @property
    def features(self) -> Path:
        return self.working / "features"

    def run(self, preset: str) -> Path:
        return self.working / "models" / preset

    @property
    def submissions(self) -> Path:
        return self.working / "submissions"

    @property
    def submission(self) -> Path:
        return self.working / "submission.csv"


def kernel_paths(environ: dict[str, str] | None = None) -> KernelPaths:
    """The one place where paths are decided: Kaggle's folders, or the LABQUAKE_KAGGLE_* overrides."""
    env = os.environ if environ is None else environ
    scratch = env.get("LABQUAKE_KAGGLE_SCRATCH") or str(Path(tempfile.gettempdir()) / "labquake")
    return KernelPaths(
        input_root=Path(env.get("LABQUAKE_KAGGLE_INPUT") or "/kaggle/input"),
        working=Path(env.get("LABQUAKE_KAGGLE_WORKING") or "/kaggle/working"),
        scratch=Path(scratch),
    )


def _is_data_dir(path: Path) -> bool:
    return (path / "train.csv").is_file() and (path / "sample_submission.csv").is_file() and (path / "test").is_dir()


def find_competition_data(input_root: Path, max_depth: int = 3) -> Path:
    """The folder holding train.csv, sample_submission.csv and test/ under Kaggle's input folder.

    Kaggle mounts the competition at <input>/LANL-Earthquake-Prediction; otherwise the folders
    below the input root are searched breadth first, in name order (test/ folders are skipped).
    """
    preferred = input_root / COMPETITION
    if _is_data_dir(preferred):
        return preferred
    level = [input_root]
    for _ in range(max_depth + 1):
        found = [d for d in level if _is_data_dir(d)]
        if found:
            return found[0]
        level = [child for d in level for child in sorted(_subdirs(d)) if child.name != "test"]
    present = ", ".join(sorted(p.name for p in _subdirs(input_root))) or "nothing"
    raise KernelError(
        f"no competition data under {input_root} (found: {present}): expected a folder with train.csv, "
        f"sample_submission.csv and test/. Attach the {COMPETITION} competition data to the kernel "
        "(Add Input > Competitions), or point LABQUAKE_KAGGLE_INPUT at the folder that holds it."
    )


def _subdirs(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as it:
            return [Path(e.path) for e in it if e.is_dir()]
    except OSError:
        return []


def _build() -> dict:
    if not isinstance(BUILD, dict):
        raise KernelError("this is the kernel template, not a built kernel: run `labquake kernel` to build one")
    return BUILD


def unpack_package(dest: Path) -> Path:
    """Unpack the embedded package into ``dest``, put it first on sys.path and import it from there."""
    build = _build()
    blob = base64.b64decode(PACKAGE_ZIP_B64)
    if hashlib.sha256(blob).hexdigest() != build["sha256"]:
        raise KernelError("the embedded package does not match its checksum: the script was edited; rebuild it")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        zf.extractall(dest)
    sys.path.insert(0, str(dest))
    for name in [m for m in sys.modules if m == "labquake" or m.startswith("labquake.")]:
        del sys.modules[name]  # never mix in another copy of the package
    importlib.invalidate_caches()
    import labquake

    where = Path(labquake.__file__).resolve().parent
    if where != (dest / "labquake").resolve():
        raise KernelError(f"imported labquake from {where}, not from the unpacked bundle in {dest}")
    return where


def pipeline(data: Path, paths: KernelPaths, build: dict) -> list[list[str]]:
    """The command lines of a local `make submit` (the build's steps, kernel.STEPS), with the kernel's folders."""
    cfg = list(build["config_args"])
    run = paths.run(build["preset"])
    folders = {
        "features": ["--data", str(data), "--out", str(paths.features), "--interim", str(paths.interim)],
        "train": ["--features", str(paths.features), "--run", str(run)],
        "submit": ["--run", str(run), "--data", str(data), "--out", str(paths.submissions)],
        "report": ["--run", str(run)],
    }
    unknown = [s for s in build["steps"] if s not in folders]
    if unknown:
        raise KernelError(f"this kernel script does not know the step {unknown[0]!r}: rebuild it with `labquake kernel`")
    return [[step, *folders[step], *cfg] for step in build["steps"]]


def run_step(argv: list[str]) -> None:
    from labquake.cli import main as labquake_main

    log.info("labquake %s", " ".join(argv))
    t0 = time.perf_counter()
    try:
        rc = labquake_main(argv)
    except SystemExit as exc:  # argparse rejects its arguments
        rc = exc.code if isinstance(exc.code, int) else 1
    if rc:
        raise KernelError(f"`labquake {argv[0]}` failed (exit status {rc}); its error is in the log above")
    log.info("labquake %s: done in %.0f s", argv[0], time.perf_counter() - t0)


def _report(argv: list[str]) -> None:
    try:
        run_step(argv)
    except KernelError as exc:
        log.warning("warning: %s (the submission is written)", exc)


def main() -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s kernel: %(message)s", "%H:%M:%S"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        if sys.version_info < (3, 11):  # noqa: UP036 - the kernel runs on Kaggle's Python, not ours
            raise KernelError(f"labquake needs Python 3.11 or later, this is {sys.version.split()[0]}")
        build = _build()
        paths = kernel_paths()
        log.info("labquake %s kernel, preset %s, %d files", build["version"], build["preset"], len(build["files"]))
        data = find_competition_data(paths.input_root)
        log.info("competition data: %s", data)
        package = unpack_package(paths.package)
        log.info("labquake from %s", package)
        for argv in pipeline(data, paths, build):
            if argv[0] == "report":  # after the submission exists: a failed report only warns
                _report(argv)
                continue
            run_step(argv)
            if argv[0] == "submit":
                blend = paths.submissions / "submission_geomean.csv"
                if not blend.is_file():
                    raise KernelError(f"`labquake submit` wrote no {blend.name} in {paths.submissions}")
                shutil.copyfile(blend, paths.submission)
                log.info("wrote %s (the geometric-mean blend): submit it from the Output tab", paths.submission)
    except KernelError as exc:
        log.error("error: %s", exc)
        return 2
    return 0


# The labquake package: a zip of its sources, base64 (filled in by `labquake kernel`).
PACKAGE_ZIP_B64 = "__LABQUAKE_PACKAGE__"

if __name__ == "__main__":
    sys.exit(main())
