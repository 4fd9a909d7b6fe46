"""Pure tensor-network math: MPS, MPO, TT-SVD, canonical forms, truncation,
contraction planning and entropies.  Imports numpy (and torch only where a
torch tensor is passed in); never PennyLane or Qiskit.

Examples
--------
>>> import numpy as np
>>> from qtnn.tn import MPO
>>> W = np.random.default_rng(1).normal(size=(16, 16))
>>> mpo = MPO.from_dense(W, max_bond=4)
>>> mpo.bond_dims
[4, 4, 4]
"""

from qtnn.tn.contract import mpo_apply_cost, mpo_apply_expression
from qtnn.tn.factorize import balanced_dims, qubit_dims
from qtnn.tn.mpo import MPO
from qtnn.tn.mps import MPS
from qtnn.tn.npz import load_tt, save_tt
from qtnn.tn.tensortrain import TensorTrain, tt_svd

__all__ = ["MPS", "MPO", "TensorTrain", "tt_svd", "balanced_dims", "qubit_dims",
           "mpo_apply_expression", "mpo_apply_cost", "save_tt", "load_tt"]
