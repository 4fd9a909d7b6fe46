"""Analysis of staircase circuits on real hardware models (``DESIGN.md`` section 7).

This first part exports a :class:`qtnn.staircase.Staircase` to Qiskit and to
OpenQASM 2 / 3 (:mod:`qtnn.analysis.export`).  Qubit order is converted once,
here: qtnn qubit ``q`` (qubit 0 = the most significant bit of a basis index)
is Qiskit qubit ``n - 1 - q``.  Because Qiskit is little-endian, the two
conventions then give the *same* integer basis index, so ``Statevector`` and
``Operator`` data of an exported circuit equal :meth:`Staircase.state` and
:meth:`Staircase.to_matrix` entry by entry.

Qiskit is imported lazily, inside the functions: ``import qtnn.analysis`` is
cheap and does not need Qiskit.

Examples
--------
>>> import numpy as np
>>> from qtnn.staircase import Staircase
>>> from qtnn.analysis import to_qiskit, circuit_unitary
>>> c = Staircase.random(3, 2, seed=0)
>>> bool(np.allclose(circuit_unitary(to_qiskit(c)), c.to_matrix(), rtol=0, atol=1e-12))
True
"""

from qtnn.analysis.export import (circuit_unitary, load_qasm, save_qasm, to_qasm2, to_qasm3,
                                  to_qiskit)

__all__ = ["to_qiskit", "to_qasm2", "to_qasm3", "save_qasm", "load_qasm", "circuit_unitary"]
