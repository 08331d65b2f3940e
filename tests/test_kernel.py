"""The Kaggle kernel: its metadata, the bundled sources, and a full run in a Kaggle-like folder."""

from __future__ import annotations

import hashlib
import json
import os
import re
import runpy
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import labquake
from labquake import kernel
from labquake.cli import _config, build_parser
from labquake.cli import main as cli_main
from labquake.config import load_config
from labquake.util import LabquakeError

SRC = Path(__file__).resolve().parents[1] / "src" / "labquake"
# The script template is package data, not a module: loaded as a script, as Kaggle runs it.
TEMPLATE = runpy.run_path(str(SRC / kernel.TEMPLATE), run_name="kernel_template")
KernelError, find_competition_data, kernel_paths = TEMPLATE["KernelError"], TEMPLATE["find_competition_data"], TEMPLATE["kernel_paths"]
KID = "tester/labquake-fast"

# What `kaggle kernels push` reads from kernel-metadata.json (kaggle-api, KaggleApi.kernels_push).
KAGGLE_FIELDS = {
    "id",
    "id_no",
    "title",
    "code_file",
    "language",
    "kernel_type",
    "is_private",
    "enable_gpu",
    "enable_tpu",
    "enable_internet",
    "dataset_sources",
    "competition_sources",
    "kernel_sources",
    "model_sources",
    "keywords",
    "docker_image_pinning_type",
}


def kaggle_slugify(text: str) -> str:
    """python-slugify's default, as the Kaggle command line uses it to compare a title with the id."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"['\"]+", "", text)
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def check_kaggle_metadata(folder: Path) -> dict:
    """The checks `kaggle kernels push` makes before it uploads, plus what this kernel needs."""
    meta = json.loads((folder / "kernel-metadata.json").read_text())
    assert set(meta) <= KAGGLE_FIELDS, f"fields Kaggle does not read: {set(meta) - KAGGLE_FIELDS}"
    # id: "{username}/{kernel-slug}", slug at least five characters
    user, _, slug = meta["id"].partition("/")
    assert user and slug and "/" not in slug and len(slug) >= 5
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug)
    # title: at least five characters, and its slug is the id's slug (else Kaggle warns and may rename)
    assert isinstance(meta["title"], str) and len(meta["title"]) >= 5
    assert kaggle_slugify(meta["title"]) == slug.lower()
    # the code file exists in the folder
    assert meta["code_file"] and (folder / meta["code_file"]).is_file()
    assert meta["language"] == "python" and meta["kernel_type"] == "script"
    assert meta["is_private"] is True and meta["enable_gpu"] is True and meta["enable_internet"] is False
    assert meta["competition_sources"] == ["LANL-Earthquake-Prediction"]
    assert meta["dataset_sources"] == [] and meta["kernel_sources"] == []
    return meta


def sha(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


@pytest.fixture
def no_kaggle(monkeypatch, tmp_path) -> Path:
    """No Kaggle identity anywhere: a fresh HOME and none of Kaggle's environment variables."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kernel") / "kernel"
    kernel.run_kernel(out, load_config("fast"), KID)
    return out


# ----------------------------------------------------------------------------- metadata and id


def test_metadata_is_what_kaggle_push_accepts(built):
    meta = check_kaggle_metadata(built)
    assert meta["id"] == KID and meta["code_file"] == kernel.CODE_FILE


def test_id_from_kaggle_username(no_kaggle, monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    kernel.run_kernel(tmp_path / "k", load_config("fast"), None)
    meta = check_kaggle_metadata(tmp_path / "k")
    assert meta["id"] == "alice/labquake-fast" and meta["title"] == "Labquake fast"


@pytest.mark.parametrize("where", ["home", "xdg", "config_dir"])
def test_id_from_kaggle_json(no_kaggle, monkeypatch, tmp_path, where):
    folder = {"home": no_kaggle / ".kaggle", "xdg": no_kaggle / ".config" / "kaggle", "config_dir": tmp_path / "kc"}[where]
    folder.mkdir(parents=True)
    (folder / "kaggle.json").write_text(json.dumps({"username": "bob", "key": "0123"}))
    if where == "config_dir":
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(folder))
    assert kernel.resolve_kernel_id(None, load_config()) == "bob/labquake-recipe"
    assert kernel.resolve_kernel_id("my-lanl-kernel", load_config()) == "bob/my-lanl-kernel"


def test_missing_identity_is_a_clear_error(no_kaggle, tmp_path, capsys):
    with pytest.raises(LabquakeError, match=r"--id USER/SLUG.*KAGGLE_USERNAME.*kaggle\.json"):
        kernel.run_kernel(tmp_path / "k", load_config("fast"), None)
    assert not (tmp_path / "k").exists()
    assert cli_main(["kernel", "--out", str(tmp_path / "k"), "--fast"]) == 2
    assert "--id USER/SLUG" in capsys.readouterr().err


def test_corrupt_kaggle_json_is_a_clear_error(no_kaggle):
    (no_kaggle / ".kaggle").mkdir()
    (no_kaggle / ".kaggle" / "kaggle.json").write_text("{not json")
    with pytest.raises(LabquakeError, match="kaggle.json"):
        kernel.resolve_kernel_id(None, load_config())


@pytest.mark.parametrize("bad", ["alice/abc", "alice/My_Kernel", "alice/", "/labquake-x", "a b/labquake-x", "alice/two--dashes"])
def test_bad_ids_are_refused(no_kaggle, bad):
    with pytest.raises(LabquakeError, match=r"is not a Kaggle (user name|kernel slug)"):
        kernel.resolve_kernel_id(bad, load_config())


def test_titles_resolve_to_their_slugs():
    for slug in ["labquake-recipe", "lanl-2019-geomean", "abcde"]:
        assert kaggle_slugify(kernel.title_for(slug)) == slug


def test_cli_builds_the_kernel(no_kaggle, tmp_path):
    out = tmp_path / "k"
    assert cli_main(["kernel", "--out", str(out), "--id", "carol/lanl-fast", "--fast", "--set", "nn.runs=1"]) == 0
    assert check_kaggle_metadata(out)["id"] == "carol/lanl-fast"


def test_never_overwrites_a_folder_that_is_not_a_kernel(tmp_path, built):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(LabquakeError, match="not a kernel folder"):
        kernel.run_kernel(other, load_config("fast"), KID)
    assert (other / "notes.txt").read_text() == "keep me"
    # a kernel folder is rebuilt whole: stale files go
    again = tmp_path / "again"
    kernel.run_kernel(again, load_config("fast"), KID)
    (again / "stale.py").write_text("")
    kernel.run_kernel(again, load_config("fast"), KID)
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in built.iterdir())


# ----------------------------------------------------------------------------- the script


def test_script_carries_the_current_sources(built):
    script = built / kernel.CODE_FILE
    compile(script.read_text(), str(script), "exec")  # valid Python
    assert Path(labquake.__file__).resolve().parent == SRC  # the tests see the working tree
    on_disk = {
        f"labquake/{p.relative_to(SRC).as_posix()}": p.read_bytes()
        for p in SRC.rglob("*.py")
        if "__pycache__" not in p.parts and "templates" not in p.parts
    }
    assert sha(kernel.bundled_files(script)) == sha(on_disk)
    assert "labquake/cli.py" in on_disk and not any("templates" in name for name in kernel.bundled_files(script))  # the template is the script
    # the subpackages travel too, every module of them
    for package in ("features", "models", "report"):
        modules = {f"labquake/{package}/{p.name}" for p in (SRC / package).glob("*.py")}
        assert f"labquake/{package}/__init__.py" in modules and len(modules) >= 4 and modules <= set(on_disk)


def test_build_is_deterministic(built, tmp_path):
    kernel.run_kernel(tmp_path / "k", load_config("fast"), KID)
    for name in (kernel.CODE_FILE, kernel.METADATA_FILE):
        assert (tmp_path / "k" / name).read_bytes() == (built / name).read_bytes()


def test_config_travels_as_cli_arguments(tmp_path):
    cfg = load_config(
        "fast",
        sets=[
            "nn.runs=1",
            "lgbm.seeds=[3, 4]",
            "data.train_cycles=[0, 2]",
            "nn.learning_rate=0.005",
            "cv.shuffle=false",
            "lgbm.objective=huber",
            "features.wavelet=db8",
        ],
    )
    kernel.run_kernel(tmp_path / "k", cfg, KID)
    import runpy

    build = runpy.run_path(str(tmp_path / "k" / kernel.CODE_FILE), run_name="kernel_bundle")["BUILD"]
    assert build["preset"] == "fast" and build["version"] == labquake.__version__
    args = build_parser().parse_args(["train", *build["config_args"]])
    assert _config(args) == cfg
    # the recipe itself travels as no overrides at all
    assert kernel.config_args(load_config()) == ["--preset", "recipe"]


def test_unpacked_package_imports_from_the_bundle(built, tmp_path):
    dest = tmp_path / "unpacked"
    code = (
        "import runpy, sys; from pathlib import Path\n"
        f"ns = runpy.run_path({str(built / kernel.CODE_FILE)!r}, run_name='kernel_bundle')\n"
        f"where = ns['unpack_package'](Path({str(dest)!r}))\n"
        "import labquake, labquake.cli, labquake.config, labquake.features.stage, labquake.report.markdown\n"
        "labquake.cli.build_parser(); labquake.config.load_config('fast')\n"
        "print(labquake.__file__); print(labquake.cli.__file__)\n"
        "print(labquake.features.stage.__file__); print(labquake.report.markdown.__file__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.split():
        assert Path(line).resolve().is_relative_to(dest.resolve())
    assert sha(kernel.package_files(dest / "labquake")) == sha(kernel.bundled_files(built / kernel.CODE_FILE))


def test_edited_script_is_refused(built, tmp_path):
    text = (built / kernel.CODE_FILE).read_text()
    edited = re.sub(r"'sha256': '[0-9a-f]+'", "'sha256': '" + "0" * 64 + "'", text)
    (tmp_path / "k.py").write_text(edited)
    code = (
        "import runpy; from pathlib import Path\n"
        f"ns = runpy.run_path({str(tmp_path / 'k.py')!r}, run_name='kernel_bundle')\n"
        f"ns['unpack_package'](Path({str(tmp_path / 'u')!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "checksum" in proc.stderr


def test_kernel_without_data_says_what_to_attach(built, tmp_path):
    (tmp_path / "input" / "some-dataset").mkdir(parents=True)
    env = {
        **os.environ,
        "LABQUAKE_KAGGLE_INPUT": str(tmp_path / "input"),
        "LABQUAKE_KAGGLE_WORKING": str(tmp_path / "working"),
        "LABQUAKE_KAGGLE_SCRATCH": str(tmp_path / "scratch"),
    }
    proc = subprocess.run([sys.executable, str(built / kernel.CODE_FILE)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "no competition data" in proc.stderr and "some-dataset" in proc.stderr
    assert "LANL-Earthquake-Prediction" in proc.stderr


def test_the_template_itself_refuses_to_run():
    with pytest.raises(KernelError, match="labquake kernel"):
        TEMPLATE["unpack_package"](Path("/nonexistent"))


def test_the_kernel_runs_the_makefiles_steps():
    """`make submit` is features, train, submit, then report: the kernel's steps, in that order."""
    makefile = (SRC.parents[1] / "Makefile").read_text()
    steps: list[str] = []

    def follow(target: str) -> None:
        m = re.search(rf"^{target}: ([^#\n]*)(?:##.*)?\n((?:\t.*\n)*)", makefile, flags=re.M)
        for dep in m.group(1).split():
            if dep != "$(STAMP)":
                follow(dep)
        steps.extend(re.findall(r"\$\(LQ\) ([a-z]+)", m.group(2)))

    follow("submit")
    assert tuple(steps) == kernel.STEPS == ("features", "train", "submit", "report")
    build = {"config_args": ["--preset", "fast"], "preset": "fast", "steps": list(kernel.STEPS)}
    argv = TEMPLATE["pipeline"](Path("/data"), kernel_paths({}), build)
    assert [a[0] for a in argv] == list(kernel.STEPS) and all(a[-2:] == ["--preset", "fast"] for a in argv)


# ----------------------------------------------------------------------------- paths on Kaggle


def _data_dir(path: Path) -> Path:
    (path / "test").mkdir(parents=True)
    (path / "train.csv").write_text("acoustic_data,time_to_failure\n")
    (path / "sample_submission.csv").write_text("seg_id,time_to_failure\n")
    return path


def test_kernel_paths_default_to_kaggle_and_follow_the_overrides():
    paths = kernel_paths({})
    assert paths.input_root == Path("/kaggle/input") and paths.working == Path("/kaggle/working")
    assert paths.submission == Path("/kaggle/working/submission.csv")
    paths = kernel_paths({"LABQUAKE_KAGGLE_INPUT": "/i", "LABQUAKE_KAGGLE_WORKING": "/w", "LABQUAKE_KAGGLE_SCRATCH": "/s"})
    assert (paths.input_root, paths.working, paths.scratch) == (Path("/i"), Path("/w"), Path("/s"))
    assert paths.run("fast") == Path("/w/models/fast") and paths.interim == Path("/s/interim")


def test_find_competition_data(tmp_path):
    root = tmp_path / "input"
    (root / "aaa-dataset").mkdir(parents=True)
    nested = _data_dir(root / "competitions" / "lanl-earthquake-prediction")
    assert find_competition_data(root) == nested  # searched below the input root
    preferred = _data_dir(root / "LANL-Earthquake-Prediction")
    assert find_competition_data(root) == preferred  # Kaggle's own mount point first
    assert find_competition_data(preferred) == preferred  # or the input root is the data folder
    with pytest.raises(KernelError, match="no competition data.*aaa-dataset"):
        find_competition_data(tmp_path / "input" / "aaa-dataset")


# ----------------------------------------------------------------------------- a full kernel run


def test_kernel_runs_end_to_end_like_on_kaggle(tiny_raw, tmp_path):
    """The built script, run by a bare interpreter in a Kaggle-like layout, writes a valid submission:
    with the sequence network in the blend, which the bundle carries and its features stage feeds."""
    sets = ["nn.runs=1", "lgbm.seeds=[0]", "nn.epochs=30", 'blend.models=["lgbm","nn","seq"]', "seq.runs=1", "seq.epochs=15", "seq.max_redraws=0"]
    cfg = load_config("fast", sets=sets)
    out = tmp_path / "build"
    kernel.run_kernel(out, cfg, KID)
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "LANL-Earthquake-Prediction").symlink_to(tiny_raw, target_is_directory=True)
    working, scratch = tmp_path / "working", tmp_path / "scratch"
    working.mkdir()
    env = {
        **os.environ,
        "LABQUAKE_KAGGLE_INPUT": str(tmp_path / "input"),
        "LABQUAKE_KAGGLE_WORKING": str(working),
        "LABQUAKE_KAGGLE_SCRATCH": str(scratch),
    }
    proc = subprocess.run([sys.executable, str(out / kernel.CODE_FILE)], cwd=working, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"labquake from {scratch / 'src' / 'labquake'}" in proc.stderr  # the bundle, not src/

    sub = pd.read_csv(working / "submission.csv")
    sample = pd.read_csv(tiny_raw / "sample_submission.csv")
    assert list(sub.columns) == list(sample.columns) == ["seg_id", "time_to_failure"]
    assert sub["seg_id"].tolist() == sample["seg_id"].tolist()
    values = sub["time_to_failure"].to_numpy(dtype=float)
    assert np.isfinite(values).all() and (values >= 0).all()
    assert (working / "submission.csv").read_bytes() == (working / "submissions" / "submission_geomean.csv").read_bytes()
    assert (working / "models" / "fast").is_dir() and (working / "features").is_dir()
    assert (working / "submissions" / "submission_seq.csv").is_file() and (working / "features" / "train_seq.npy").is_file()
    assert "seq" in pd.read_parquet(working / "models" / "fast" / "test.parquet").columns
    assert not (working / "interim").exists()  # caches stay in the scratch folder
