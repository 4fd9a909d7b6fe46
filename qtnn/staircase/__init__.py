"""Staircase circuits as arrays: MPS -> circuit (state preparation), MPO -> U . M . V^T
(disentangling), classical simulation of circuits.  Imports :mod:`qtnn.tn`, numpy
and (lazily) torch; never PennyLane or Qiskit.

Examples
--------
>>> from qtnn.staircase import Staircase, encode_mps
>>> from qtnn.tn import MPS
>>> circuit, report = encode_mps(MPS.random(6, 2, seed=0), layers=1, method="ran")
>>> round(report.final_fidelity, 10)
1.0
"""

from qtnn.staircase.circuit import Staircase, apply_gates, gates_from_params
from qtnn.staircase.encode import EncodeReport, encode_mps
from qtnn.staircase.targets import heisenberg_ground_state, ising_ground_state

__all__ = ["Staircase", "apply_gates", "gates_from_params", "encode_mps", "EncodeReport",
           "heisenberg_ground_state", "ising_ground_state"]

# MPO disentangling lives in qtnn/staircase/disentangle.py, written separately; export it
# only once that module exists so this package imports either way.
try:
    from qtnn.staircase.disentangle import Disentangled, disentangle  # noqa: F401
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the state of the tree
    if _exc.name != "qtnn.staircase.disentangle":
        raise
else:
    __all__ += ["disentangle", "Disentangled"]
