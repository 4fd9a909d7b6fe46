"""The package's architecture, checked on every import statement (also the lazy ones in functions).

Layers, bottom to top (a module may import its own layer and the layers below it, never above)::

    base      qtnn.errors < qtnn.validate < qtnn.io < qtnn.checkpoint
    library   qtnn.tn < qtnn.staircase < qtnn.quantum < qtnn.nn < qtnn.analysis < qtnn.compress
    apps      qtnn.apps
    cli       qtnn.cli

Further rules: no import cycle between modules (lazy imports included); no module imports a
private name (or a private module) of another package; nothing imports the deprecated aliases
(``qtnn.train``, ``qtnn.lm``, ...), which only forward to their new homes.
"""

from __future__ import annotations

import ast
import collections
import pathlib

import pytest

import qtnn

ROOT = pathlib.Path(qtnn.__file__).parent

LAYERS = ["qtnn.errors", "qtnn.validate", "qtnn.io", "qtnn.checkpoint",
          "qtnn.tn", "qtnn.staircase", "qtnn.quantum", "qtnn.nn", "qtnn.analysis", "qtnn.compress",
          "qtnn.apps", "qtnn.cli"]
#: the package root (version, lazy sub-package access) may be imported by anything
ROOT_MODULE = "qtnn"
#: deprecated forwarding modules: they may import anything, nothing may import them
ALIASES = {"qtnn.train", "qtnn.demo", "qtnn.distributed", "qtnn.bench", "qtnn.lm", "qtnn._moved"}


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = ["qtnn", *p.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _resolve(name: str) -> str:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(mod: str) -> list[tuple[int, str, str]]:
    """``(line, target module, imported name or '')`` for every qtnn import in ``mod``."""
    path = MODULES[mod]
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "qtnn":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in MODULES:
                    out.append((node.lineno, full, ""))
                else:
                    out.append((node.lineno, _resolve(base), alias.name))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, _resolve(a.name), "") for a in node.names if a.name.split(".")[0] == "qtnn"]
    return out


def _layer(mod: str) -> int | None:
    for i, top in enumerate(LAYERS):
        if mod == top or mod.startswith(top + "."):
            return i
    return None


def _package(mod: str) -> str:
    """The top package a module belongs to (``qtnn.staircase`` for ``qtnn.staircase._grow``)."""
    return ".".join(mod.split(".")[:2])


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if m != ROOT_MODULE and m not in ALIASES and _layer(m) is None]
    assert not missing, f"modules outside every layer (add them to LAYERS or move them): {missing}"


def test_no_import_runs_up_the_layers():
    bad = []
    for mod in MODULES:
        if mod in ALIASES or mod == ROOT_MODULE:
            continue
        for line, target, _ in _imports(mod):
            if target in (ROOT_MODULE, mod):
                continue
            if target in ALIASES:
                bad.append(f"{mod}:{line} imports the deprecated alias {target}")
            elif _layer(target) > _layer(mod):
                bad.append(f"{mod}:{line} imports {target}, a higher layer")
    assert not bad, "\n".join(bad)


def test_no_private_name_of_another_package():
    bad = []
    for mod in MODULES:
        if mod in ALIASES:
            continue
        for line, target, name in _imports(mod):
            if target == ROOT_MODULE or _package(target) == _package(mod):
                continue
            private_module = any(p.startswith("_") for p in target.split(".")[1:])
            private_name = name.startswith("_") and not name.startswith("__")
            if private_module or private_name:
                bad.append(f"{mod}:{line} imports {target}{'.' + name if name else ''}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph = collections.defaultdict(set)
    for mod in MODULES:
        for _, target, _ in _imports(mod):
            if target != mod:
                graph[mod].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for mod in sorted(MODULES):
        if mod not in index:
            visit(mod)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("source, expected", [
    ("from qtnn.apps.digits import HybridConfig\n", "a higher layer"),
    ("from qtnn.staircase._grow import grow\n", "qtnn.staircase._grow"),
])
def test_the_checks_catch_a_violation(tmp_path, monkeypatch, source, expected):
    """A planted bad import in a library module is reported (the checks are not vacuous)."""
    fake = tmp_path / "fake.py"
    fake.write_text(source)
    monkeypatch.setitem(MODULES, "qtnn.nn._planted", fake)
    with pytest.raises(AssertionError, match=expected):
        test_no_import_runs_up_the_layers()
        test_no_private_name_of_another_package()
