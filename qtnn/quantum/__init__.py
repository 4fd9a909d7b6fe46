"""PennyLane glue: devices, the staircase template and batched QNodes (``docs/design/math.md``, section 5).

Importing this package loads PennyLane only when :class:`StaircaseTemplate` or
:class:`StaircaseQNode` is first used (``import qtnn`` and ``import qtnn.tn``
never load it).

Examples
--------
>>> import numpy as np, torch
>>> from qtnn.quantum import device, StaircaseQNode
>>> qn = StaircaseQNode(device("default.qubit", 2), 2, layers=1, readout="probs")
>>> p = qn(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.zeros(1, 1, 6))
>>> np.round(p.numpy(), 12).tolist()
[[1.0, 0.0, 0.0, 0.0]]
"""

from __future__ import annotations

import importlib
from typing import Any

from qtnn.quantum.devices import (
    QDevice,
    device,
    device_names,
    fake_backend_names,
    gpu_backends,
    runtime_batch,
)
from qtnn.staircase.magic import magic_angles, magic_gates

__all__ = ["QDevice", "device", "device_names", "fake_backend_names", "gpu_backends", "runtime_batch",
           "StaircaseTemplate", "StaircaseQNode", "magic_gates", "magic_angles"]

_LAZY = {"StaircaseTemplate": "qtnn.quantum.template", "StaircaseQNode": "qtnn.quantum.qnode"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qtnn.quantum' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
