"""Deprecated aliases of modules that moved into :mod:`qtnn.apps` (kept for one release).

``qtnn.train``, ``qtnn.demo``, ``qtnn.distributed``, ``qtnn.bench`` and
``qtnn.lm`` were top-level modules; they now live in :mod:`qtnn.apps` (and the
language-model evaluation in :mod:`qtnn.compress`).  Each old module resolves
a name on first use from its new home and warns once per name.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

#: old module -> the modules its names now live in (searched in order)
MOVED: dict[str, tuple[str, ...]] = {
    "qtnn.train": ("qtnn.apps.train", "qtnn.apps.digits", "qtnn.apps.loop"),
    "qtnn.demo": ("qtnn.apps.demo", "qtnn.apps.digits"),
    "qtnn.distributed": ("qtnn.apps.distributed",),
    "qtnn.bench": ("qtnn.apps.bench",),
    "qtnn.lm": ("qtnn.apps.lm", "qtnn.compress.llm"),
}


def forwarder(old: str, homes: Sequence[str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that finds ``name`` in ``homes`` and warns that it moved."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for home in homes:
            mod = importlib.import_module(home)
            if hasattr(mod, name):
                obj = getattr(mod, name)
                where = getattr(obj, "__module__", None)
                where = where if isinstance(where, str) and where.startswith("qtnn.") else home
                warnings.warn(f"{old}.{name} moved to {where}.{name}; the old name will be removed in "
                              "the next release", DeprecationWarning, stacklevel=2)
                return obj
        raise AttributeError(f"module {old!r} has no attribute {name!r} (it moved to "
                             f"{' / '.join(homes)})")

    return __getattr__
