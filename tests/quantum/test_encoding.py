"""Bounded-depth input encodings (``qtnn.quantum.encoding``): exact float64 checks of the prepared
states and fidelities, the cache, the QuantumHead option on both backends, and the cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qtnn import QtnnError
from qtnn.nn import QuantumHead
from qtnn.quantum import StaircaseQNode, device
from qtnn.quantum.encoding import StaircaseEncoder, encoding_cost, prepare_states, shared_encoder


def _digits(count=120):
    from sklearn.datasets import load_digits

    return load_digits().data[:count]


def test_fidelities_are_the_overlaps_of_the_prepared_states():
    x = _digits()
    res = StaircaseEncoder(2).encode(x)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    states = prepare_states(res.gates)
    np.testing.assert_allclose(np.linalg.norm(states, axis=1), 1.0, rtol=0, atol=1e-12)
    ov = np.einsum("bi,bi->b", xn, states)
    assert np.all(ov > 0)                                          # global sign fixed
    np.testing.assert_allclose(res.fidelities, ov**2, rtol=0, atol=1e-12)
    gtg = np.einsum("bdjki,bdjkl->bdjil", res.gates, res.gates)   # real orthogonal gates
    np.testing.assert_allclose(gtg, np.broadcast_to(np.eye(4), gtg.shape), rtol=0, atol=1e-12)


def test_bond_two_states_are_exact_with_one_layer_and_depth_helps():
    rng = np.random.default_rng(3)
    # a product state on 5 qubits has bond 1: one layer prepares it exactly
    prod = rng.normal(size=(4, 5, 2))
    x = prod[:, 0]
    for q in range(1, 5):
        x = np.einsum("bi,bj->bij", x, prod[:, q]).reshape(4, -1)
    assert np.all(StaircaseEncoder(1, sweeps=20).encode(x).fidelities > 1 - 1e-10)
    d = _digits(60)
    means = [StaircaseEncoder(layers).encode(d).fidelity_mean for layers in (1, 2, 4)]
    assert means[0] < means[1] < means[2] and means[2] > 0.99


def test_cache_per_data_set():
    enc = StaircaseEncoder(2)
    d = _digits(50)
    first = enc.encode(d)
    assert first.computed == 50
    again = enc.encode(d[::-1])
    assert again.computed == 0
    np.testing.assert_array_equal(again.gates, first.gates[::-1])
    assert enc.encode(np.vstack([d[:3], _digits(53)[50:]])).computed == 3
    assert shared_encoder(2) is shared_encoder(2) and shared_encoder(2) is not shared_encoder(3)


def test_qnode_batched_encoding_prepares_the_same_states():
    x = torch.tensor(_digits(8), dtype=torch.float64)
    qn = StaircaseQNode(device("default.qubit", 6), 6, layers=0, encoding="staircase", readout="state",
                        encoding_layers=2, encoding_method="batched")
    out = qn(x, torch.zeros(0, 5, 6)).numpy()
    res = shared_encoder(2).encode(x)
    assert res.computed == 0                                               # cached by the QNode's call
    np.testing.assert_allclose(out, prepare_states(res.gates), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(qn.last_fidelities, res.fidelities)


def test_quantum_head_staircase_encoding_reference_equals_pennylane():
    torch.manual_seed(0)
    head = QuantumHead(64, n_qubits=6, layers=2, n_classes=10, encoding="staircase", encoding_layers=3,
                       dtype=torch.float64)
    x = torch.tensor(_digits(16), dtype=torch.float64)
    ref = head(x)
    f_ref = head.last_encoding_fidelity
    assert head.encoding == "staircase" and 0.9 < f_ref < 1
    head.set_backend("pennylane", device("default.qubit", 6))
    out = head(x)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), rtol=0, atol=1e-10)
    assert head.last_encoding_fidelity == pytest.approx(f_ref, abs=1e-12)
    out.sum().backward()                                           # trainable through the encoding
    assert head.body.circuit.angles.grad is not None


def test_bad_inputs():
    with pytest.raises(QtnnError, match="layers must be"):
        StaircaseEncoder(0)
    with pytest.raises(QtnnError, match=r"x must have 2\*\*n features"):
        StaircaseEncoder(1).encode(np.ones((2, 6)))
    with pytest.raises(QtnnError, match="row 1 is zero"):
        StaircaseEncoder(1).encode(np.vstack([np.ones(4), np.zeros(4)]))
    with pytest.raises(QtnnError, match="encoding"):
        QuantumHead(64, n_qubits=6, layers=1, n_classes=10, encoding="mps")


def test_encoding_cost_is_linear_in_n_and_far_below_stateprep():
    costs = {n: encoding_cost(n, 2, optimization_level=1) for n in (4, 6)}
    for n, c in costs.items():
        assert c["staircase"]["two_qubit"] <= 3 * 2 * (n - 1)      # at most 3 CZ per gate, on a line
    assert costs[6]["stateprep"]["two_qubit"] > 2 * costs[6]["staircase"]["two_qubit"]
