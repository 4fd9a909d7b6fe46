"""The torch modules give the same numbers on the reference path and on PennyLane devices."""

import numpy as np
import pytest
import torch

from qtnn import QtnnError
from qtnn.nn import DisentangledLinear, QuantumHead, QuantumStaircase
from qtnn.quantum import device

pytestmark = pytest.mark.usefixtures("float64_default")


@pytest.mark.parametrize("name", ["default.qubit", "lightning.qubit", "qiskit.aer"])
def test_state_readout_agrees_with_reference(name):
    torch.manual_seed(0)
    layer = QuantumStaircase(4, 2, readout="state")
    x = torch.randn(5, 16)
    ref = layer(x)
    layer.set_backend("pennylane", device(name, wires=4))
    with torch.no_grad():  # "state" is differentiable on default.qubit only (backprop)
        torch.testing.assert_close(layer(x), ref.detach(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("inverse", [False, True])
def test_inverse_qnode_matches_reference(inverse):
    from qtnn.quantum import StaircaseQNode
    from qtnn.staircase import apply_gates

    torch.manual_seed(1)
    qn = StaircaseQNode(device("default.qubit", 3), 3, 2, readout="state", inverse=inverse)
    w = qn.random_weights(seed=3)
    x = torch.randn(4, 8)
    xn = x / x.norm(dim=-1, keepdim=True)
    g = qn.gates(w)
    ref = (apply_gates(xn, g.flip(0).transpose(-1, -2), 3, 2, descending=True) if inverse
           else apply_gates(xn, g, 3, 2))
    torch.testing.assert_close(qn(x, w), ref, rtol=0, atol=1e-12)
    qn2 = StaircaseQNode(device("lightning.qubit", 3), 3, 2, readout="state", inverse=inverse,
                         gate_mode="native")
    with torch.no_grad():
        torch.testing.assert_close(qn2(x, w), ref.detach(), rtol=0, atol=1e-10)


def _same_outputs_and_gradients_on_both_backends(dl, x):
    """``dl``'s outputs and gradients (input and every parameter) on the reference path, then as
    QNodes on default.qubit: equal to 1e-8."""
    y_ref = dl(x)
    g_ref = torch.autograd.grad(y_ref.pow(2).sum(), [x, *dl.parameters()])
    dl.set_backend("pennylane", device("default.qubit", wires=4))
    y_pl = dl(x)
    g_pl = torch.autograd.grad(y_pl.pow(2).sum(), [x, *dl.parameters()])
    torch.testing.assert_close(y_pl, y_ref, rtol=0, atol=1e-8)
    for a, b in zip(g_pl, g_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-8)


def test_disentangled_linear_same_outputs_and_gradients_on_both_backends():
    torch.manual_seed(2)
    lin = torch.nn.Linear(16, 8)
    dl = DisentangledLinear.from_linear(lin, out_layers=1, in_layers=2, max_bond=2)
    _same_outputs_and_gradients_on_both_backends(dl, torch.randn(6, 16, requires_grad=True))


def test_quantum_head_probs_with_shots_on_aer_within_shot_noise():
    torch.manual_seed(3)
    head = QuantumHead(16, 4, 2, 4)
    x = torch.rand(6, 16)
    p_exact = head.body(x).detach()
    shots = 20000
    head.set_backend("pennylane", device("qiskit.aer", wires=4, shots=shots, seed=11))
    with torch.no_grad():
        p_shot = head.body(x)
    # per-entry binomial bound: 6 sigma (false alarm ~1e-9 per entry) plus 1/shots
    bound = 6 * torch.sqrt(p_exact * (1 - p_exact) / shots) + 1.0 / shots
    assert torch.all((p_shot - p_exact).abs() <= bound)


def test_state_on_shot_device_uses_the_signed_estimator():
    """(Its accuracy is tested in tests/quantum/test_signed.py.)  Forward only: with weights that
    require grad outside no_grad it is a QtnnError, not a silent result without gradient."""
    layer = QuantumStaircase(3, 1, readout="state")
    layer.set_backend("pennylane", device("qiskit.aer", wires=3, shots=100))
    with torch.no_grad():
        y = layer(torch.randn(2, 8))
    assert y.shape == (2, 8)
    with pytest.raises(QtnnError, match="diff_method=None"):
        layer(torch.randn(2, 8))


def test_switching_backends_keeps_weights():
    layer = QuantumStaircase(3, 1, readout="probs")
    before = [p.detach().clone() for p in layer.parameters()]
    layer.set_backend("pennylane", "default.qubit")
    layer.set_backend("reference")
    for a, b in zip(before, layer.parameters()):
        assert torch.equal(a, b)
    assert np.isclose(float(layer(torch.rand(2, 8)).sum().detach()), 2.0)


@pytest.mark.parametrize("gate_mode", ["matrix", "native"])
@pytest.mark.parametrize("inverse", [False, True])
def test_brickwall_qnode_matches_the_circuit(inverse, gate_mode):
    from qtnn.quantum import StaircaseQNode
    from qtnn.staircase import Staircase

    torch.manual_seed(4)
    qn = StaircaseQNode(device("lightning.qubit", 5), 5, 2, readout="state", inverse=inverse,
                        gate_mode=gate_mode, layout="brickwall")
    w = qn.random_weights(seed=5)
    x = torch.randn(3, 32)
    xn = x / x.norm(dim=-1, keepdim=True)
    for dets in (None, [[1, -1, 1, -1], [-1, 1, 1, -1]]):   # with reflections on some gates
        c = Staircase(5, 2, 2, qn.gates(w, dets).detach().numpy(), layout="brickwall")
        u = torch.as_tensor(c.to_matrix())
        ref = xn @ (u if inverse else u.T)
        with torch.no_grad():
            torch.testing.assert_close(qn(x, w, dets), ref, rtol=0, atol=1e-10)


def test_brickwall_layers_agree_on_both_backends():
    from qtnn.staircase import disentangle

    torch.manual_seed(6)
    layer = QuantumStaircase(4, 2, readout="probs", layout="brickwall")
    x = torch.randn(5, 16)
    ref = layer(x)
    layer.set_backend("pennylane", device("default.qubit", wires=4))
    torch.testing.assert_close(layer(x), ref, rtol=0, atol=1e-10)
    lin = torch.nn.Linear(16, 8)
    res = disentangle(lin.weight.detach().double().numpy(), 1, 2, max_bond=2, layout="brickwall",
                      refine=5)
    dl = DisentangledLinear._from_result(res, 16, 8, 1, 2, 2, lin.bias.detach(), torch.float64)
    _same_outputs_and_gradients_on_both_backends(dl, torch.randn(6, 16, requires_grad=True))


def test_brickwall_disentangled_linear_built_directly_on_both_backends():
    torch.manual_seed(11)
    dl = DisentangledLinear(16, 8, 2, 2, 2, layout="brickwall")
    with torch.no_grad():
        dl.U.angles.uniform_(0.0, 6.0)
        dl.V.angles.uniform_(0.0, 6.0)
        dl.V.dets[0, 2] = -1
    x = torch.randn(3, 16)
    ref = dl(x)
    dl.set_backend("pennylane", device("default.qubit", wires=4))
    torch.testing.assert_close(dl(x), ref, rtol=0, atol=1e-10)
