"""Torch modules: tensorized layers (MPO linear, Tucker / CP convolutions) and the
hybrid quantum layers (staircase, disentangled linear, quantum head)."""

from __future__ import annotations

import importlib
from typing import Any

from qtnn.nn.mpo_linear import MPOLinear

__all__ = ["MPOLinear", "TuckerConv2d", "CPConv2d", "QuantumStaircase", "DisentangledLinear",
           "QuantumHead", "LowRankLinear"]

_LAZY = {"TuckerConv2d": "qtnn.nn.conv", "CPConv2d": "qtnn.nn.conv",
         "QuantumStaircase": "qtnn.nn.quantum_layers", "DisentangledLinear": "qtnn.nn.quantum_layers",
         "QuantumHead": "qtnn.nn.quantum_layers", "LowRankLinear": "qtnn.nn.low_rank"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qtnn.nn' has no attribute {name!r}")
