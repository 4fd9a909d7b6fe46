"""qtnn: quantum-classical hybrid tensorized neural networks.

Weight matrices are held as Matrix Product Operators (:mod:`qtnn.tn`), split
into bounded-depth staircase circuits and a small residual MPO
(:mod:`qtnn.staircase`), run as PennyLane QNodes (:mod:`qtnn.quantum`) and
trained in PyTorch together with classical tensorized layers (:mod:`qtnn.nn`).

Sub-packages are imported lazily, so ``import qtnn`` is cheap.

Examples
--------
>>> import numpy as np, qtnn
>>> W = np.arange(12.0).reshape(3, 4)
>>> mpo = qtnn.tn.MPO.from_dense(W)
>>> bool(np.allclose(mpo.to_dense(), W, rtol=0, atol=1e-12))
True
"""

from __future__ import annotations

import importlib
from typing import Any

from qtnn.errors import QtnnBackendError, QtnnError, QtnnSizeError, QtnnTimeoutError, QtnnTypeError

__version__ = "0.1.0"
__all__ = ["QtnnError", "QtnnTypeError", "QtnnSizeError", "QtnnBackendError", "QtnnTimeoutError",
           "__version__",
           "tn", "nn", "staircase", "quantum", "analysis", "compress"]

# ``compress`` is the module qtnn.compress, which is callable: ``qtnn.compress(model, ...)``
# runs :func:`qtnn.compress.compress`.
_SUBMODULES = {"tn", "nn", "staircase", "quantum", "analysis", "compress", "apps", "cli", "validate"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"qtnn.{name}")
    raise AttributeError(f"module 'qtnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
