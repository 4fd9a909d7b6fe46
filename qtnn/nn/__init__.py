"""Torch modules: tensorized layers (MPO linear, Tucker / CP convolutions)."""

from __future__ import annotations

import importlib
from typing import Any

from qtnn.nn.mpo_linear import MPOLinear

__all__ = ["MPOLinear", "TuckerConv2d", "CPConv2d"]


def __getattr__(name: str) -> Any:
    if name in ("TuckerConv2d", "CPConv2d"):
        return getattr(importlib.import_module("qtnn.nn.conv"), name)
    raise AttributeError(f"module 'qtnn.nn' has no attribute {name!r}")
