"""StaircaseTemplate: PennyLane validity, exact matrix against the classical Staircase."""

from __future__ import annotations

import numpy as np
import pennylane as qml
import pytest
import torch

from qtnn import QtnnError
from qtnn.quantum import StaircaseTemplate
from qtnn.staircase import Staircase
from qtnn.staircase.magic import magic_gates

ATOL = 1e-12


def random_case(n, layers, seed):
    rng = np.random.default_rng(seed)
    w = rng.uniform(-np.pi, np.pi, size=(layers, n - 1, 6))
    dets = rng.choice([-1, 1], size=(layers, n - 1))
    return w, dets


@pytest.mark.parametrize("n,layers", [(2, 1), (3, 2), (4, 3), (5, 2)])
def test_decomposition_matrix_equals_staircase(n, layers):
    w, dets = random_case(n, layers, seed=10 * n + layers)
    op = StaircaseTemplate(w, dets=dets, wires=range(n))
    u = qml.matrix(qml.tape.QuantumScript(op.decomposition()), wire_order=range(n))
    ref = Staircase(n, layers, gates=magic_gates(w, dets)).to_matrix()
    np.testing.assert_allclose(u, ref, rtol=0, atol=ATOL)
    np.testing.assert_allclose(qml.matrix(op, wire_order=range(n)), ref, rtol=0, atol=ATOL)


def test_wire_labels_and_order():
    """wires[0] is qubit 0 whatever the labels; a permuted wire_order permutes the matrix."""
    w, dets = random_case(3, 2, seed=1)
    ref = Staircase(3, 2, gates=magic_gates(w, dets)).to_matrix()
    op = StaircaseTemplate(w, dets=dets, wires=["c", "a", "b"])
    np.testing.assert_allclose(qml.matrix(op, wire_order=["c", "a", "b"]), ref, rtol=0, atol=ATOL)


def test_assert_valid():
    w, dets = random_case(3, 2, seed=2)
    qml.ops.functions.assert_valid(StaircaseTemplate(qml.numpy.array(w), dets=dets, wires=[0, 1, 2]))
    qml.ops.functions.assert_valid(StaircaseTemplate(w[:, :1], dets=None, wires=["x", "y"]))


def test_assert_valid_with_graph_decomposition():
    w, dets = random_case(3, 1, seed=3)
    qml.decomposition.enable_graph()
    try:
        qml.ops.functions.assert_valid(StaircaseTemplate(w, dets=dets, wires=[0, 1, 2]),
                                       skip_differentiation=True)
    finally:
        qml.decomposition.disable_graph()


def test_decomposition_gate_set_and_counts():
    w, _ = random_case(4, 2, seed=4)
    dets = [[1, -1, 1], [-1, -1, 1]]
    ops = StaircaseTemplate(w, dets=dets, wires=range(4)).decomposition()
    names = [op.name for op in ops]
    g = 2 * 3
    assert names.count("RZ") == 4 * g and names.count("RY") == 2 * g
    assert names.count("CNOT") == 2 * g and names.count("Hadamard") == 2 * g
    assert names.count("S") == 2 * g and names.count("Adjoint(S)") == 2 * g
    assert names.count("CZ") == 3
    assert set(names) == {"RZ", "RY", "CNOT", "Hadamard", "S", "Adjoint(S)", "CZ"}
    trainable = [op for op in ops if op.num_params]
    assert all(op.name in ("RZ", "RY") for op in trainable)


def test_parameter_broadcasting():
    rng = np.random.default_rng(5)
    wb = rng.normal(size=(4, 2, 2, 6))
    dets = [[1, -1], [-1, 1]]
    op = StaircaseTemplate(wb, dets=dets, wires=range(3))
    assert op.batch_size == 4
    mats = qml.matrix(op, wire_order=range(3))
    assert mats.shape == (4, 8, 8)
    for b in range(4):
        ref = Staircase(3, 2, gates=magic_gates(wb[b], dets)).to_matrix()
        np.testing.assert_allclose(mats[b], ref, rtol=0, atol=ATOL)


def test_torch_parameter_shift_equals_backprop():
    w, dets = random_case(3, 1, seed=6)
    x = torch.tensor(w, requires_grad=True)

    def circuit(weights):
        StaircaseTemplate(weights, dets=dets, wires=range(3))
        return qml.expval(qml.Z(0) @ qml.X(2))

    dev = qml.device("default.qubit", wires=3)
    grads = []
    for method in ("backprop", "parameter-shift"):
        x.grad = None
        qml.QNode(circuit, dev, interface="torch", diff_method=method)(x).backward()
        grads.append(x.grad.clone())
    # both are exact analytic gradients: they agree to rounding
    np.testing.assert_allclose(grads[0].numpy(), grads[1].numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(weights=np.zeros((1, 2, 6)), wires=[0]), "at least 2 wires"),
    (dict(weights=np.zeros((1, 2, 6)), wires=[0, 1]), r"weights must have shape \(layers, n_wires-1, 6\)"),
    (dict(weights=np.zeros((1, 1, 5)), wires=[0, 1]), "weights must have shape"),
    (dict(weights=np.zeros((0, 1, 6)), wires=[0, 1]), "D >= 1"),
    (dict(weights=np.full((1, 1, 6), np.nan), wires=[0, 1]), "weights must be finite"),
    (dict(weights=np.zeros((1, 1, 6)), wires=[0, 1], dets=[[2]]), r"dets must all be \+1 or -1"),
    (dict(weights=np.zeros((1, 1, 6)), wires=[0, 1], dets=[[1, 1]]), r"dets must have shape"),
    (dict(weights=np.zeros((1, 1, 6)), wires=None), "wires must be given"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(QtnnError, match=match):
        StaircaseTemplate(**kwargs)


def test_shape_helper():
    assert StaircaseTemplate.shape(3, 5) == (3, 4, 6)
    assert StaircaseTemplate.shape(n_layers=3, n_wires=5) == (3, 4, 6)


def test_brickwall_template_matrix_and_errors():
    import pennylane as qml

    from qtnn import QtnnError
    from qtnn.quantum.template import StaircaseTemplate
    from qtnn.staircase import Staircase
    from qtnn.staircase.magic import magic_gates

    w = np.random.default_rng(3).normal(size=(2, 4, 6))
    dets = [[1, -1, 1, 1], [-1, 1, 1, -1]]
    op = StaircaseTemplate(w, dets=dets, wires=range(5), layout="brickwall")
    ref = Staircase(5, 2, gates=magic_gates(w, dets), layout="brickwall").to_matrix()
    np.testing.assert_allclose(qml.matrix(op, wire_order=range(5)), ref, rtol=0, atol=1e-12)
    with pytest.raises(QtnnError, match="layout must be one of"):
        StaircaseTemplate(w, dets=dets, wires=range(5), layout="ladder")
