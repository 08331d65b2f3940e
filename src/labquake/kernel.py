"""`labquake kernel`: bundle the package into one Kaggle kernel script.

After lopuhin/kaggle-imet-2019's build.py: the package's own source files (read from the
installed package at build time, so there is no second copy of any code) are zipped, base64
encoded and pasted into the script template (package data: templates/kernel_script.py) together
with the configuration, written as the
`--preset`/`--set` arguments that rebuild it. On Kaggle the script unpacks the package and runs
the same `labquake features/train/submit/report` commands as a local run; only the folders
differ (the template's kernel_paths). The build is deterministic: sorted files, fixed zip
timestamps and modes, no build time, so the same sources and configuration give the same script.

The output folder is what `kaggle kernels push -p FOLDER` expects: the script and a
kernel-metadata.json (fields as the Kaggle command line reads them).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

from labquake import __version__
from labquake.config import PRESETS, Config, load_config
from labquake.util import LabquakeError, atomic_path, log

COMPETITION = "LANL-Earthquake-Prediction"
CODE_FILE = "labquake_kernel.py"
METADATA_FILE = "kernel-metadata.json"
TEMPLATE = "templates/kernel_script.py"  # package data: read, never imported
# The steps of a local `make submit` (features, train, submit, then report), which the kernel runs in
# this order; tests/test_kernel.py holds them to the Makefile's.
STEPS = ("features", "train", "submit", "report")
BUILD_TOKEN = '"__LABQUAKE_BUILD__"'
PACKAGE_TOKEN = '"__LABQUAKE_PACKAGE__"'
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold: no build time in the bundle

# Kaggle kernel slugs: lowercase words joined by single hyphens (what Kaggle makes of a title),
# at least five characters (the Kaggle command line refuses shorter ones).
SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
USER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MIN_SLUG = 5

ID_HELP = (
    "pass --id USER/SLUG (make kernel LQFLAGS='--id USER/SLUG'), or set KAGGLE_USERNAME, or put the "
    "API token from kaggle.com > Settings > API > Create New Token in ~/.kaggle/kaggle.json"
)


# ----------------------------------------------------------------------------- the package bundle


def package_dir() -> Path:
    """The folder of the labquake package being run: the bundle is read from here."""
    import labquake

    return Path(labquake.__file__).resolve().parent


def package_files(root: Path | None = None) -> dict[str, bytes]:
    """The package's Python sources, its subpackages' included, by archive name (labquake/...), sorted."""
    root = package_dir() if root is None else Path(root)
    files = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if "__pycache__" in rel.parts or rel.parts[0] == "templates" or any(part.startswith(".") for part in rel.parts):
            continue
        files[(Path("labquake") / rel).as_posix()] = path.read_bytes()
    if "labquake/__init__.py" not in files or "labquake/cli.py" not in files:
        raise LabquakeError(f"{root}: not the labquake package (no __init__.py or cli.py)")
    return dict(sorted(files.items()))


def pack(files: dict[str, bytes]) -> bytes:
    """A deterministic zip: sorted names, fixed dates and modes, fixed compression level."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever builds it
            info.external_attr = 0o100644 << 16
            zf.writestr(info, files[name], compresslevel=9)
    return buf.getvalue()


def unpack(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def bundled_files(script: str | Path) -> dict[str, bytes]:
    """The package files carried by a built kernel script (without running it)."""
    text = Path(script).read_text()
    match = re.search(r'^PACKAGE_ZIP_B64 = """([A-Za-z0-9+/=\s]*)"""$', text, flags=re.M)
    if match is None:
        raise LabquakeError(f"{script}: not a kernel script built by `labquake kernel`")
    return unpack(base64.b64decode(match.group(1)))


# ----------------------------------------------------------------------------- configuration


def config_args(cfg: Config) -> list[str]:
    """Command-line arguments (--preset and --set) that rebuild ``cfg`` exactly.

    Only the settings that differ from the preset are written; the result is checked by loading
    it back, so a setting that cannot travel this way is an error here, not a surprise on Kaggle.
    """
    preset = cfg.preset if cfg.preset in PRESETS else "recipe"
    base = load_config(preset)
    sets: list[str] = [] if preset == cfg.preset else [f"preset={cfg.preset}"]
    for section in dataclasses.fields(cfg):
        ours, theirs = getattr(cfg, section.name), getattr(base, section.name)
        if not dataclasses.is_dataclass(ours) or section.name == "runtime":  # how this machine runs, not the kernel
            continue
        for f in dataclasses.fields(ours):
            value = getattr(ours, f.name)
            if value != getattr(theirs, f.name):
                sets.append(f"{section.name}.{f.name}={json.dumps(value)}")
    if dataclasses.replace(load_config(preset, sets=sets), runtime=cfg.runtime) != cfg:
        raise LabquakeError("this configuration cannot be written as --set arguments; report it as a bug")
    return ["--preset", preset, *[a for s in sets for a in ("--set", s)]]


# ----------------------------------------------------------------------------- Kaggle identity


def kaggle_config_files(environ: dict[str, str] | None = None) -> list[Path]:
    """Where the Kaggle command line looks for kaggle.json, in its order."""
    env = os.environ if environ is None else environ
    home = Path(env.get("HOME") or Path.home())
    if env.get("KAGGLE_CONFIG_DIR"):
        return [Path(env["KAGGLE_CONFIG_DIR"]) / "kaggle.json"]
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return [home / ".kaggle" / "kaggle.json", xdg / "kaggle" / "kaggle.json"]


def kaggle_username(environ: dict[str, str] | None = None) -> str | None:
    """The Kaggle user name: KAGGLE_USERNAME, else "username" in kaggle.json; None if neither."""
    env = os.environ if environ is None else environ
    if env.get("KAGGLE_USERNAME"):
        return env["KAGGLE_USERNAME"].strip()
    for path in kaggle_config_files(env):
        if not path.is_file():
            continue
        try:
            user = json.loads(path.read_text()).get("username")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
            raise LabquakeError(f"{path}: not a valid kaggle.json ({exc}); {ID_HELP}") from None
        if isinstance(user, str) and user.strip():
            return user.strip()
    return None


def resolve_kernel_id(requested: str | None, cfg: Config, environ: dict[str, str] | None = None) -> str:
    """USER/SLUG from --id (a bare SLUG takes the Kaggle user name), else USER/labquake-PRESET."""
    if requested and "/" in requested:
        user, slug = requested.split("/", 1)
    else:
        user = kaggle_username(environ)
        if not user:
            raise LabquakeError(f"no Kaggle user name to make the kernel id from: {ID_HELP}")
        slug = requested or slugify(f"labquake {cfg.preset}")
    if not USER_RE.fullmatch(user):
        raise LabquakeError(f"{user!r} is not a Kaggle user name; expected --id USER/SLUG")
    if not SLUG_RE.fullmatch(slug) or len(slug) < MIN_SLUG:
        hint = slugify(slug)
        raise LabquakeError(
            f"{slug!r} is not a Kaggle kernel slug: lowercase letters, digits and single hyphens, "
            f"at least {MIN_SLUG} characters" + (f" (e.g. {hint!r})" if len(hint) >= MIN_SLUG else "")
        )
    return f"{user}/{slug}"


def slugify(text: str) -> str:
    """Kaggle's slug of a title (ASCII titles): lowercase, runs of other characters become '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("'", "")).strip("-")


def title_for(slug: str) -> str:
    """A title whose slug is ``slug``: Kaggle derives the kernel's URL from its title."""
    title = slug.replace("-", " ")
    return title[:1].upper() + title[1:]


def kernel_metadata(kid: str, *, private: bool = True, gpu: bool = True) -> dict[str, Any]:
    """kernel-metadata.json, field by field as `kaggle kernels push` reads it."""
    return {
        "id": kid,
        "title": title_for(kid.split("/", 1)[1]),
        "code_file": CODE_FILE,
        "language": "python",
        "kernel_type": "script",
        "is_private": private,
        "enable_gpu": gpu,
        "enable_internet": False,  # the kernel installs nothing: only Kaggle's image and the bundle
        "dataset_sources": [],
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
    }


# ----------------------------------------------------------------------------- the kernel folder


def render_script(cfg: Config, files: dict[str, bytes] | None = None) -> str:
    """The kernel script: the template with the build record and the packed package pasted in."""
    files = package_files() if files is None else files
    path = package_dir() / TEMPLATE
    if not path.is_file():
        raise LabquakeError(f"{path}: the package has no kernel script template")
    template = path.read_text()
    blob = pack(files)
    build = {
        "version": __version__,
        "preset": cfg.preset,
        "steps": list(STEPS),
        "config_args": config_args(cfg),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "files": sorted(files),
    }
    payload = base64.encodebytes(blob).decode()  # 76-character lines; b64decode skips the newlines
    for token, value in ((BUILD_TOKEN, _literal(build)), (PACKAGE_TOKEN, f'"""\n{payload}"""')):
        if template.count(token) != 1:
            raise LabquakeError(f"{TEMPLATE} must hold {token} exactly once")
        template = template.replace(token, value)
    header = (
        f"# Built by `labquake kernel` from labquake {__version__} (package sha256 {build['sha256'][:16]}).\n"
        "# Generated file: edit the package sources and rebuild; do not edit this script.\n"
    )
    return header + template


def _literal(obj: dict[str, Any]) -> str:
    """A readable Python literal of the build record, one key per line."""
    lines = ["{"] + [f"    {k!r}: {v!r}," for k, v in obj.items()] + ["}"]
    return "\n".join(lines)


def run_kernel(out: Path, cfg: Config, kernel_id: str | None = None, *, private: bool = True, gpu: bool = True) -> Path:
    """Write the kernel folder (script and kernel-metadata.json) that `kaggle kernels push -p` uploads."""
    out = Path(out)
    kid = resolve_kernel_id(kernel_id, cfg)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / METADATA_FILE).is_file())):
        raise LabquakeError(f"{out}: exists and is not a kernel folder; choose another --out")
    script = render_script(cfg)
    meta = kernel_metadata(kid, private=private, gpu=gpu)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / CODE_FILE).write_text(script)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("wrote %s (%s, %.0f kB) for kernel %s", out, CODE_FILE, len(script) / 1e3, kid)
    log.info("upload it with: kaggle kernels push -p %s   (or: make kernel-push)", out)
    return out / CODE_FILE
