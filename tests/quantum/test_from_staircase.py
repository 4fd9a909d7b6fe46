"""Issue 15: a Staircase's parameters of the wrong kind are refused; from_staircase / weights_for are exact."""

from __future__ import annotations

import numpy as np
import pennylane as qml
import pytest
import torch

from qtnn import QtnnError, QtnnTypeError
from qtnn.quantum import StaircaseQNode, StaircaseTemplate, device
from qtnn.staircase import Staircase
from qtnn.staircase.magic import magic_angles


@pytest.mark.parametrize("layout", ["staircase", "brickwall"])
def test_from_staircase_matches_the_circuit(layout):
    circ = Staircase.random(4, 3, seed=3, layout=layout)
    # det -1 gates included
    assert (np.linalg.det(circ.gates) < 0).any()
    op = StaircaseTemplate.from_staircase(circ, wires=["a", "b", "c", "d"])
    u = qml.matrix(op, wire_order=["a", "b", "c", "d"])
    np.testing.assert_allclose(u, circ.to_matrix(), rtol=0, atol=1e-12)


def test_generator_parameters_are_refused_by_the_template():
    """The trap of the review: StaircaseTemplate(*circ.params()) built a circuit of fidelity ~0."""
    circ = Staircase.random(3, 2, seed=0)
    with pytest.raises(QtnnTypeError, match=r"generator coordinates of Staircase.params\(\)"):
        StaircaseTemplate(*circ.params(), wires=[0, 1, 2])
    # the right routes build the same circuit
    ang, det = magic_angles(circ.gates)
    u = qml.matrix(StaircaseTemplate(ang, dets=det, wires=[0, 1, 2]), wire_order=[0, 1, 2])
    np.testing.assert_allclose(u, circ.to_matrix(), rtol=0, atol=1e-12)


def test_from_staircase_refuses_what_it_cannot_run():
    with pytest.raises(QtnnTypeError, match="circ must be a qtnn.staircase.Staircase"):
        StaircaseTemplate.from_staircase(np.eye(4))
    with pytest.raises(QtnnError, match="k=3"):
        StaircaseTemplate.from_staircase(Staircase.random(4, 1, k=3, seed=0))
    with pytest.raises(QtnnError, match="wires must name the circuit's 3 qubits"):
        StaircaseTemplate.from_staircase(Staircase.random(3, 1, seed=0), wires=[0, 1])


@pytest.mark.parametrize("k", [2, 3])
def test_qnode_weights_for_runs_the_circuit(k):
    circ = Staircase.random(3, 2, k=k, seed=4)
    qn = StaircaseQNode(device("default.qubit", 3), 3, layers=2, k=k, readout="state")
    w, d = qn.weights_for(circ)
    np.testing.assert_allclose(qn.gates(w, d).detach().numpy(), circ.gates, rtol=0, atol=1e-12)
    x = torch.tensor(np.random.default_rng(0).normal(size=(2, 8)))
    out = qn(x, w, d).detach().numpy()
    ref = (circ.to_matrix() @ (x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)).T).T
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)


def test_qnode_refuses_the_other_kind():
    circ = Staircase.random(3, 1, seed=5)
    magic = StaircaseQNode(device("default.qubit", 3), 3, layers=1)
    with pytest.raises(QtnnTypeError, match="magic-basis angles"):
        magic.gates(circ.params()[0])
    with pytest.raises(QtnnError, match="must match this QNode"):
        magic.weights_for(Staircase.random(3, 2, seed=0))
