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

from qtnn.staircase.circuit import Staircase, apply_gates, gates_from_params, window_order
from qtnn.staircase.disentangling import Disentangled, disentangle
from qtnn.staircase.encode import EncodeReport, encode_mps
from qtnn.staircase.targets import heisenberg_ground_state, ising_ground_state

__all__ = ["Staircase", "apply_gates", "gates_from_params", "window_order", "encode_mps", "EncodeReport",
           "heisenberg_ground_state", "ising_ground_state", "disentangle", "Disentangled"]
