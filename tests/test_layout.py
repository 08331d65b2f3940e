"""The package's shape: no import circle, no import from a lower layer to a higher one, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "labquake"

# Bottom to top. A module may import its own layer or a lower one; the test below finds the rest.
LAYERS = [
    ("", "util", "features.table", "config", "metric", "stats", "plotting", "integrity"),  # "": labquake/__init__.py (__version__)
    (
        "data",
        "targets",
        "shift",
        "synth",
        "cluster",
        "features.folder",
        "features.kernels",
        "features.segment",
        "features.reference",
        "features.sequences",
        "features.chunks",
    ),
    ("features.stage", "features", "trainset"),
    ("models.base", "models.network", "models.lgbm", "models.nn", "models.seq", "models.svr", "models.registry", "models.folder"),
    ("models.cv", "models.train", "models"),
    ("blend", "predict", "drift", "report", "kernel", "verify"),
    ("cli", "__main__", "templates"),  # templates: package data, the kernel's script (it runs the command line)
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every labquake module a file imports, at the top or inside a function (not for type checkers only)."""
    found = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labquake"):
            base = node.module.removeprefix("labquake").lstrip(".")
            for alias in node.names:  # `from labquake.models import cv` imports the module models.cv
                sub = f"{base}.{alias.name}" if base else alias.name
                found.add(sub if (SRC / sub.replace(".", "/")).with_suffix(".py").exists() or (SRC / sub.replace(".", "/")).is_dir() else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("labquake").lstrip(".") for a in node.names if a.name.startswith("labquake")}
    return found


def layer(name: str) -> int:
    """The layer of a module: its own entry, else its package's (synth.signal is synth's)."""
    while True:
        for i, names in enumerate(LAYERS):
            if name in names:
                return i
        if "." not in name:
            raise KeyError(name)
        name = name.rsplit(".", 1)[0]


GRAPH = {module_name(p): imports(p) - {module_name(p)} for p in SRC.rglob("*.py")}


def test_every_module_has_a_layer():
    for name in GRAPH:
        layer(name)


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_no_import_from_a_lower_layer_to_a_higher_one(name):
    up = sorted(m for m in GRAPH[name] if layer(m) > layer(name))
    assert not up, f"{name} (layer {layer(name)}) imports {up}"


def test_no_import_circle():
    edges = {n: {m for m in deps if m in GRAPH} for n, deps in GRAPH.items()}
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for m in sorted(edges[n]):
            if state.get(m) == 1:
                raise AssertionError(" -> ".join([*path[path.index(m) :], m]) if m in path else f"{n} -> {m}")
            if m not in state:
                visit(m, [*path, m])
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n, [n])


def test_modules_stay_small():
    sizes = {module_name(p): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    assert not {n: s for n, s in sizes.items() if s > 450}, "split a module past about 400 lines"


def test_long_functions_say_why():
    """A function over about 60 lines has its reason in a comment just above it."""
    unexplained = []
    for path in SRC.rglob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 60:
                first = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
                if not lines[first - 1].strip().startswith("# Long by design:"):
                    unexplained.append(f"{module_name(path)}.{node.name}")
    assert not unexplained
