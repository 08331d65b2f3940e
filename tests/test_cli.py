"""The command line: fast start, one-line errors, no traceback."""

import subprocess
import sys

HEAVY = ("tensorflow", "keras", "librosa", "lightgbm", "numba", "matplotlib", "sklearn")


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "labquake", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def heavy_imports(*argv):
    """Modules a CLI call imports, checked in-process (import-time cost is what users feel)."""
    code = f"import sys; from labquake.cli import main; rc = main({list(argv)!r}); print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def test_help_lists_every_subcommand():
    out = run_cli("--help")
    assert out.returncode == 0
    for cmd in ("synth", "cache", "features", "drift", "compare", "train", "submit", "score", "report", "kernel"):
        assert cmd in out.stdout
        sub = run_cli(cmd, "--help")
        assert sub.returncode == 0 and f"usage: labquake {cmd}" in sub.stdout


def test_synth_does_not_import_heavy_libraries(tmp_path):
    assert heavy_imports("synth", "--out", str(tmp_path / "raw"), "--preset", "tiny", "-q") == ""


def test_bad_config_is_one_line_error_exit_2():
    out = run_cli("train", "--set", "nn.runs=x")
    assert out.returncode == 2
    assert out.stderr.strip() == "labquake train: error: config: nn.runs must be int, got 'x'"
    assert "Traceback" not in out.stderr


def test_missing_data_folder_is_one_line_error(tmp_path):
    out = run_cli("features", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "f"), "--interim", str(tmp_path / "i"))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "nowhere" in out.stderr


def test_segment_length_is_not_a_setting():
    out = run_cli("features", "--set", "data.segment_rows=100000")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == "labquake features: error: config: unknown key 'data.segment_rows'"


def test_folders_default_from_the_paths_settings(tmp_path, monkeypatch):
    """Every --data/--out/--interim/--features/--run left out comes from the configuration's paths."""
    from labquake import blend, data, features, models, report, synth
    from labquake.cli import main

    calls = {}
    monkeypatch.setattr(synth, "run_synth", lambda out, preset, seed, shift, test_shift, bursts: calls.update(synth=out))
    monkeypatch.setattr(data, "run_cache", lambda raw, interim, force: calls.update(cache=(raw, interim)))
    monkeypatch.setattr(
        features, "run_features", lambda cfg, raw, out, interim, jobs, scheduler, sequences: calls.update(features=(raw, out, interim))
    )
    monkeypatch.setattr(models, "run_train", lambda cfg, feats, run, device, strict, scheduler, jobs: calls.update(train=(feats, run)))
    monkeypatch.setattr(blend, "run_submit", lambda cfg, run, raw, out: calls.update(submit=(run, raw, out)))
    monkeypatch.setattr(report, "run_report", lambda run: calls.update(report=run))
    toml = tmp_path / "paths.toml"
    toml.write_text(f'[paths]\nraw = "{tmp_path}/raw"\ninterim = "{tmp_path}/interim"\nfeatures = "{tmp_path}/feats"\n')
    sets = ["--config", str(toml), "--set", f"paths.models={tmp_path}/models", "--set", f"paths.submissions={tmp_path}/subs"]
    for command in ("synth", "cache", "features", "train", "submit", "report"):
        assert main([command, *sets, "-q"]) == 0
    t = tmp_path
    assert calls == {
        "synth": t / "raw",
        "cache": (t / "raw", t / "interim"),
        "features": (t / "raw", t / "feats", t / "interim"),
        "train": (t / "feats", t / "models" / "recipe"),
        "submit": (t / "models" / "recipe", t / "raw", t / "subs"),
        "report": t / "models" / "recipe",
    }
    # a flag wins over the setting; a changed setting trains into its own run folder
    assert main(["train", *sets, "--features", str(t / "f2"), "--set", "nn.runs=3", "-q"]) == 0
    feats, run = calls["train"]
    assert feats == t / "f2" and run.parent == t / "models" and run.name.startswith("recipe-")


def test_make_passes_a_changed_configuration_every_time():
    """make's stage targets always call their command (which skips what is up to date), so a new
    LQFLAGS or PRESET is never ignored because outputs of another configuration exist."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert shutil.which("make"), "make is needed (the Makefile is the documented entry point)"
    out = subprocess.run(
        ["make", "-n", "-s", "submit", "PRESET=fast", "LQFLAGS=--set nn.runs=4"], capture_output=True, text=True, cwd=root, timeout=60
    )
    assert out.returncode == 0, out.stderr
    steps = [line for line in out.stdout.splitlines() if "labquake " in line]
    for command in ("features", "train", "submit", "report"):
        line = next(s for s in steps if f"labquake {command} " in s)
        assert "--preset fast --set nn.runs=4" in line and "--run" not in line, line
