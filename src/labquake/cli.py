"""The `labquake` command line: the real interface; the Makefile only calls it.

Each subcommand imports its stage module when it runs, so `labquake --help` and `labquake synth`
never pay for TensorFlow or librosa. A folder not given on the command line comes from the
configuration's ``paths`` section (``--set paths.raw=...``, or ``[paths]`` in a TOML file); the run
folder from ``config.run_dir``: ``paths.models`` / the preset's name, plus a key of the settings
when they differ from the preset's, so that each configuration trains into its own folder.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from labquake import __version__
from labquake.cluster import SCHEDULER_ENV, scheduler_address
from labquake.config import BURSTS, PRESETS, Config, load_config
from labquake.util import LabquakeError, is_no_space, log, no_space, setup_logging

DEFAULTS = Config().paths  # for the help texts; the loaded configuration's paths are used


def _config(args: argparse.Namespace, preset: str | None = None) -> Config:
    preset = preset or ("fast" if getattr(args, "fast", False) else args.preset)
    return load_config(preset, args.config, args.set)


def _path(given: str | None, default: str) -> Path:
    return Path(given if given is not None else default)


def _run(args: argparse.Namespace, cfg: Config) -> Path:
    from labquake.models.folder import default_run_dir

    return Path(args.run) if args.run else default_run_dir(cfg)


def cmd_synth(args: argparse.Namespace) -> None:
    paths = _config(args, preset="recipe").paths  # synth's own --preset is the dataset's size
    from labquake import synth

    synth.run_synth(_path(args.out, paths.raw), args.preset, args.seed, shift=args.shift, test_shift=args.test_shift, bursts=args.bursts)


def cmd_cache(args: argparse.Namespace) -> None:
    paths = _config(args, preset="recipe").paths
    from labquake import data

    data.run_cache(_path(args.data, paths.raw), _path(args.interim, paths.interim), force=args.force)


def cmd_features(args: argparse.Namespace) -> None:
    cfg = _config(args)
    from labquake import features

    p = cfg.paths
    scheduler = scheduler_address(args.scheduler, cfg.runtime.scheduler)
    from labquake.models.registry import reads_sequences

    out = _path(args.out, p.features)
    features.run_features(
        cfg, _path(args.data, p.raw), out, _path(args.interim, p.interim), jobs=args.jobs, scheduler=scheduler, sequences=reads_sequences(cfg)
    )


def cmd_train(args: argparse.Namespace) -> None:
    cfg = _config(args)
    from labquake import models

    features_dir, scheduler = _path(args.features, cfg.paths.features), scheduler_address(args.scheduler, cfg.runtime.scheduler)
    models.run_train(cfg, features_dir, _run(args, cfg), device=args.device, strict=args.strict, scheduler=scheduler, jobs=args.jobs)


def cmd_predict(args: argparse.Namespace) -> None:
    cfg = _config(args)
    from labquake import predict

    scheduler = scheduler_address(args.scheduler, cfg.runtime.scheduler)
    predict.run_predict(cfg, _run(args, cfg), Path(args.recording), Path(args.out), step=args.step, jobs=args.jobs, scheduler=scheduler)


def cmd_drift(args: argparse.Namespace) -> None:
    cfg = _config(args)
    from labquake import drift

    drift.run_drift(cfg, _path(args.features, cfg.paths.features), _path(args.out, f"{cfg.paths.features}/drift"))


def cmd_compare(args: argparse.Namespace) -> None:
    from labquake import drift

    a, b = Path(args.a), Path(args.b) if args.b else None
    out = Path(args.out) if args.out else (a if a.is_dir() else a.parent) / "compare"
    drift.run_compare(a, b, out, which=tuple(args.tables))


def cmd_submit(args: argparse.Namespace) -> None:
    cfg = _config(args)
    from labquake import blend

    blend.run_submit(cfg, _run(args, cfg), _path(args.data, cfg.paths.raw), _path(args.out, cfg.paths.submissions))


def cmd_score(args: argparse.Namespace) -> None:
    from labquake import blend

    mae = blend.score_files(Path(args.submission), Path(args.truth))
    print(f"MAE {mae:.4f}  ({args.submission} against {args.truth})")


def cmd_verify(args: argparse.Namespace) -> None:
    from labquake.verify import run_verify

    kind, problems, checked = run_verify(Path(args.path))
    for p in problems:
        print(p)
    if problems:
        raise LabquakeError(f"{args.path}: {len(problems)} bad file(s) in this {kind} (listed above)")
    print(f"{args.path}: {kind}, {checked} files checked, all intact")


def cmd_report(args: argparse.Namespace) -> None:
    cfg = _config(args)
    from labquake import report

    report.run_report(_run(args, cfg))


def cmd_kernel(args: argparse.Namespace) -> None:
    cfg = _config(args)
    from labquake import kernel

    kernel.run_kernel(Path(args.out), cfg, kernel_id=args.id)


RUN_HELP = f"run folder (default: paths.models/NAME, {DEFAULTS.models}/NAME: the preset, PRESET-KEY when the settings differ from it)"


# Long by design: one declarative table of every command and its flags.
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labquake",
        description="Time to failure of laboratory earthquakes from their acoustic signal (the LANL Earthquake Prediction winning recipe).",
    )
    parser.add_argument("--version", action="version", version=f"labquake {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log lines")
    common.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    settable = argparse.ArgumentParser(add_help=False)
    settable.add_argument("--config", metavar="TOML", help="TOML file of overrides ([lgbm] seeds = [0, 1], [paths] raw = ..., ...)")
    settable.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting, e.g. nn.runs=2 (repeatable)")
    configurable = argparse.ArgumentParser(add_help=False, parents=[settable])
    configurable.add_argument("--preset", default="recipe", choices=sorted(PRESETS), help="named configuration (default: recipe)")
    configurable.add_argument("--fast", action="store_true", help="same as --preset fast: fewer seeds and runs, for quick checks")
    scheduled = argparse.ArgumentParser(add_help=False)
    scheduled.add_argument(
        "--scheduler", metavar="ADDRESS", help=f"run on this Dask scheduler, e.g. tcp://10.0.0.1:8786 (default: ${SCHEDULER_ENV}, else this machine)"
    )

    def add(name: str, func, help: str, parents: list) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=parents)
        p.set_defaults(func=func)
        return p

    p = add("synth", cmd_synth, "write a synthetic dataset in Kaggle's layout", [common, settable])
    p.add_argument("--out", help=f"output folder (default: paths.raw, {DEFAULTS.raw})")
    p.add_argument("--preset", default="demo", choices=["tiny", "demo", "full"], help="size (default: demo)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--shift", action="store_true", help="a known train/test shift: test and some train cycles louder (regime.json)")
    p.add_argument(
        "--no-test-shift",
        dest="test_shift",
        action="store_false",
        help="draw the test interval's cycles like train's (default: longer, as in the real test: mean time to failure 1.11x train's)",
    )
    p.add_argument(
        "--bursts",
        default=BURSTS[0],
        choices=BURSTS,
        help="how the emission's power comes in time: events with sudden onsets and slow decays, as the real ones (default), or the older log-normal envelopes",
    )

    p = add("cache", cmd_cache, "convert train.csv and the test segments into a memory-mappable binary cache", [common, settable])
    p.add_argument("--data", help=f"Kaggle data folder (default: paths.raw, {DEFAULTS.raw})")
    p.add_argument("--interim", help=f"cache folder (default: paths.interim, {DEFAULTS.interim})")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")

    p = add("features", cmd_features, "compute the 24 per-segment features of train and test", [common, configurable, scheduled])
    p.add_argument("--data", help=f"Kaggle data folder (default: paths.raw, {DEFAULTS.raw})")
    p.add_argument("--out", help=f"feature folder (default: paths.features, {DEFAULTS.features})")
    p.add_argument("--interim", help=f"binary cache folder (default: paths.interim, {DEFAULTS.interim})")
    p.add_argument("--jobs", type=int, default=0, help="worker processes (default 0: all cores)")

    p = add("train", cmd_train, "cross-validate the models of blend.models; save models and predictions", [common, configurable, scheduled])
    p.add_argument("--features", help=f"feature folder (default: paths.features, {DEFAULTS.features})")
    p.add_argument("--run", help=RUN_HELP)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"], help="where TensorFlow runs (default: auto)")
    p.add_argument("--strict", action="store_true", help="stop with an error when every network draw is rejected (nn.on_reject=error for this call)")
    p.add_argument("--jobs", type=int, default=0, help="worker processes for the networks' folds (default 0: all cores; 1: this process)")

    p = add("predict", cmd_predict, "predict time to failure along a continuous recording with a trained run", [common, configurable, scheduled])
    p.add_argument("--run", help=RUN_HELP)
    p.add_argument(
        "--recording", required=True, help="the recording: a CSV in Kaggle's train layout (acoustic_data[,time_to_failure]) or raw int16 (.i16)"
    )
    p.add_argument("--out", required=True, help="output folder: predictions.csv, predictions.png, predict.json")
    p.add_argument("--step", type=int, default=150_000, help="rows between window starts (default 150000: no overlap)")
    p.add_argument("--jobs", type=int, default=0, help="worker processes for the features (default 0: all cores)")

    p = add("drift", cmd_drift, "compare train and test feature distributions (KS per feature, adversarial AUC)", [common, configurable])
    p.add_argument("--features", help=f"feature folder (default: paths.features, {DEFAULTS.features})")
    p.add_argument("--out", help=f"output folder (default: FEATURES/drift, {DEFAULTS.features}/drift)")
    p = add("compare", cmd_compare, "do two sets of segments look alike? KS per feature, adversarial AUC, plots", [common])
    p.add_argument("a", help="a feature folder or a feature table (.parquet)")
    p.add_argument("b", nargs="?", help="another one (default: A's train against A's test)")
    p.add_argument(
        "--tables",
        nargs=2,
        default=["test", "test"],
        choices=["train", "test"],
        metavar=("A_TABLE", "B_TABLE"),
        help="which table of a folder (default: test test)",
    )
    p.add_argument("--out", help="output folder (default: A/compare, or beside a table)")
    p = add("submit", cmd_submit, "blend the models and write the submission files", [common, configurable])
    p.add_argument("--run", help=RUN_HELP)
    p.add_argument("--data", help=f"Kaggle data folder, for sample_submission.csv (default: paths.raw, {DEFAULTS.raw})")
    p.add_argument("--out", help=f"submission folder (default: paths.submissions, {DEFAULTS.submissions})")

    p = add("score", cmd_score, "MAE of a submission file against a truth file", [common])
    p.add_argument("submission", help="seg_id,time_to_failure CSV")
    p.add_argument("truth", help="seg_id,time_to_failure CSV (synth writes test_truth.csv)")

    p = add("verify", cmd_verify, "check a cache, a feature folder or a run folder against its checksums", [common])
    p.add_argument("path", help="the folder")

    p = add("report", cmd_report, "plots and report.md of a run", [common, configurable])
    p.add_argument("--run", help=RUN_HELP)

    p = add("kernel", cmd_kernel, "bundle the package into a Kaggle kernel folder", [common, configurable])
    p.add_argument("--out", default="build/kernel", help="kernel folder (default: build/kernel)")
    p.add_argument("--id", help="kernel id USER/SLUG (default: from the Kaggle user name)")
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before anything can import TensorFlow: quiet start-up, reproducible (oneDNN off) kernels.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    args = build_parser().parse_args(argv)
    setup_logging(-1 if args.quiet else args.verbose)
    try:
        args.func(args)
    except LabquakeError as exc:
        print(f"labquake {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if not is_no_space(exc):
            raise
        print(f"labquake {args.command}: error: {no_space(exc.filename or 'a file', exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log.warning("interrupted: outputs of finished steps are kept, nothing partial was written")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
