"""Analysis of staircase circuits on real hardware models (``docs/design/math.md``, section 7).

* Export (:mod:`qtnn.analysis.export`): a :class:`qtnn.staircase.Staircase` to
  Qiskit and to OpenQASM 2 / 3, and back.  Qubit order is converted once,
  here: qtnn qubit ``q`` (qubit 0 = the most significant bit of a basis index)
  is Qiskit qubit ``n - 1 - q``.  Because Qiskit is little-endian, the two
  conventions then give the *same* integer basis index, so ``Statevector``
  and ``Operator`` data of an exported circuit equal :meth:`Staircase.state`
  and :meth:`Staircase.to_matrix` entry by entry.
* Depth (:mod:`qtnn.analysis.depth`): transpile for an IBM device model and
  report two-qubit gates, depth, SWAPs, layout, duration and success
  probability, against a dense unitary; sweep the number of layers.
* The ``circuits/`` catalogue (:mod:`qtnn.apps.catalogue`).

Qiskit and matplotlib are imported lazily, inside the functions: ``import
qtnn.analysis`` is cheap.

Examples
--------
>>> import numpy as np
>>> from qtnn.staircase import Staircase
>>> from qtnn.analysis import to_qiskit, circuit_unitary
>>> c = Staircase.random(3, 2, seed=0)
>>> bool(np.allclose(circuit_unitary(to_qiskit(c)), c.to_matrix(), rtol=0, atol=1e-12))
True
"""

from qtnn.analysis.depth import (
                                 DepthReport,
                                 dense_baseline,
                                 depth_report,
                                 depth_sweep,
                                 encoding_report,
                                 model_circuit,
                                 model_depth_report,
                                 qsd_cx_count,
)
from qtnn.analysis.export import circuit_unitary, load_qasm, save_qasm, to_qasm2, to_qasm3, to_qiskit
from qtnn.analysis.plot import plot_depth_sweep

__all__ = ["to_qiskit", "to_qasm2", "to_qasm3", "save_qasm", "load_qasm", "circuit_unitary",
           "DepthReport", "depth_report", "dense_baseline", "depth_sweep", "qsd_cx_count",
           "encoding_report", "model_depth_report", "model_circuit",
           "plot_depth_sweep"]
