"""Every public name has a numpydoc docstring with a runnable example (run by --doctest-modules)."""

from __future__ import annotations

import importlib
import inspect

import pytest

#: Modules whose ``__all__`` is the public API.
PUBLIC_MODULES = [
    "qtnn", "qtnn.errors", "qtnn.validate", "qtnn.io", "qtnn.checkpoint",
    "qtnn.tn", "qtnn.tn.npz", "qtnn.staircase", "qtnn.staircase.magic", "qtnn.quantum", "qtnn.quantum.ibm",
    "qtnn.nn", "qtnn.analysis", "qtnn.compress",
    "qtnn.apps.digits", "qtnn.apps.loop", "qtnn.apps.train", "qtnn.apps.distributed", "qtnn.apps.demo",
    "qtnn.apps.bench", "qtnn.apps.bench_circuits", "qtnn.apps.catalogue", "qtnn.apps.lm", "qtnn.apps.models",
    "qtnn.cli", "qtnn.cli.compress",
]


def _public():
    for mod_name in PUBLIC_MODULES:
        mod = importlib.import_module(mod_name)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.ismodule(obj) or name.startswith("__"):
                continue
            if not (inspect.isclass(obj) or inspect.isfunction(obj) or callable(obj)):
                continue  # constants are documented where they are defined
            yield f"{mod_name}.{name}", obj


PUBLIC = dict(_public())


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_name_has_example(name):
    doc = inspect.getdoc(PUBLIC[name]) or ""
    assert doc.strip(), f"{name} has no docstring"
    assert ">>>" in doc, f"{name}: the docstring has no runnable example (Examples section)"


@pytest.mark.parametrize("name", sorted(n for n, o in PUBLIC.items() if inspect.isclass(o)))
def test_public_methods_are_documented(name):
    cls = PUBLIC[name]
    missing = []
    for attr, value in vars(cls).items():
        if attr.startswith("_"):
            continue
        func = value.__func__ if isinstance(value, (classmethod, staticmethod)) else (
            value.fget if isinstance(value, property) else value)
        if callable(func) and not (inspect.getdoc(func) or "").strip():
            missing.append(attr)
    assert not missing, f"{name}: public methods without a docstring: {missing}"


def test_the_public_api_is_counted():
    assert len(PUBLIC) >= 60
