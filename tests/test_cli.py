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
    for cmd in ("synth", "cache", "features", "train", "submit", "score", "report", "kernel"):
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
