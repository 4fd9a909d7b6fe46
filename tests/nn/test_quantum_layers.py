"""Quantum torch modules on the reference path, against qtnn.staircase references."""

import numpy as np
import pytest
import torch

import qtnn.nn.quantum_layers as ql
from qtnn import QtnnError
from qtnn.nn import DisentangledLinear, QuantumHead, QuantumStaircase
from qtnn.nn.quantum_layers import StaircaseGates, circuit_matrix
from qtnn.staircase import Staircase, disentangle

pytestmark = pytest.mark.usefixtures("float64_default")


def test_staircase_gates_round_trip():
    st = Staircase.random(5, 3, seed=4)
    g = StaircaseGates(5, 3, dtype=torch.float64)
    g.load_staircase(st)
    np.testing.assert_allclose(g.gates().detach().numpy(), st.gates, rtol=0, atol=1e-10)
    assert g.to_staircase().to_matrix().shape == (32, 32)


@pytest.mark.parametrize("inverse", [False, True])
def test_circuit_matrix(inverse):
    st = Staircase.random(4, 2, seed=1)
    R = circuit_matrix(torch.tensor(st.gates), 4, inverse=inverse).numpy()
    ref = st.to_matrix().T if inverse else st.to_matrix()
    np.testing.assert_allclose(R.T, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("fuse", [True, False])
def test_quantum_staircase_state_equals_staircase_apply(monkeypatch, fuse):
    monkeypatch.setattr(ql, "FUSE_QUBITS", 10 if fuse else 0)
    torch.manual_seed(0)
    layer = QuantumStaircase(4, 3, in_features=13)
    x = torch.randn(6, 13)
    st = layer.circuit.to_staircase()
    ref = st.apply(np.pad(x.numpy(), ((0, 0), (0, 3))))
    np.testing.assert_allclose(layer(x).detach().numpy(), ref, rtol=0, atol=1e-12)


def test_probs_and_expval_readouts():
    torch.manual_seed(1)
    x = torch.randn(5, 8)
    st_layer = QuantumStaircase(3, 2, readout="state")
    amp = st_layer(x) / x.norm(dim=-1, keepdim=True)
    full = (amp**2).reshape(5, 2, 2, 2)
    for wires in [(0,), (2, 0), (1, 2)]:
        layer = QuantumStaircase(3, 2, readout="probs", readout_wires=wires)
        layer.load_state_dict(st_layer.state_dict())
        keep = [w for w in wires]
        drop = tuple(1 + w for w in range(3) if w not in keep)
        ref = full.sum(dim=drop) if drop else full
        order = sorted(keep)
        ref = ref.permute(0, *[1 + order.index(w) for w in keep]).reshape(5, -1)
        torch.testing.assert_close(layer(x), ref, rtol=0, atol=1e-12)
    ev = QuantumStaircase(3, 2, readout="expval")
    ev.load_state_dict(st_layer.state_dict())
    z = torch.stack([full.sum(dim=tuple(1 + v for v in range(3) if v != w)) for w in range(3)], 1)
    torch.testing.assert_close(ev(x), z[:, :, 0] - z[:, :, 1], rtol=0, atol=1e-12)


def test_gradcheck_reference_path():
    torch.manual_seed(2)
    layer = QuantumStaircase(3, 2, readout="probs")
    x = torch.randn(4, 8, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    ang = layer.circuit.angles

    def f(a):
        with torch.no_grad():
            ang.copy_(a.detach())
        from qtnn.staircase.magic import magic_gates
        g = magic_gates(a, layer.circuit.dets.double().numpy())
        return ql._run_reference(x.detach() / x.detach().norm(dim=-1, keepdim=True), g, 3, 2)

    assert torch.autograd.gradcheck(f, (ang.detach().clone().requires_grad_(True),))


def test_disentangled_linear_matches_disentangle_result():
    torch.manual_seed(3)
    lin = torch.nn.Linear(32, 16)
    dl = DisentangledLinear.from_linear(lin, out_layers=1, in_layers=1, max_bond=2, seed=0)
    res = disentangle(lin.weight.detach().numpy(), 1, 1, 2, seed=0)
    x = torch.randn(7, 32)
    ref = x.numpy() @ res.to_dense()[:16, :32].T + lin.bias.detach().numpy()
    np.testing.assert_allclose(dl(x).detach().numpy(), ref, rtol=0, atol=1e-10)
    assert abs(dl.report.error - res.error) < 1e-12


@pytest.mark.parametrize("shape", [(16, 16), (10, 24), (24, 6)])
def test_disentangled_linear_full_bond_reproduces_layer(shape):
    torch.manual_seed(4)
    lin = torch.nn.Linear(shape[1], shape[0])
    dl = DisentangledLinear.from_linear(lin, out_layers=1, in_layers=1, max_bond=64)
    x = torch.randn(5, shape[1])
    torch.testing.assert_close(dl(x), lin(x), rtol=0, atol=1e-9)


def test_disentangled_linear_gradcheck():
    torch.manual_seed(5)
    dl = DisentangledLinear(8, 4, 1, 1, 2)
    x = torch.randn(3, 8, requires_grad=True)
    assert torch.autograd.gradcheck(dl, (x,))


def test_quantum_head_logits():
    torch.manual_seed(6)
    head = QuantumHead(64, 6, 2, 10)
    x = torch.rand(5, 64)
    logits = head(x)
    p = torch.exp(logits) - head.eps
    probs = head.body(x)
    torch.testing.assert_close(p, probs[:, :10], rtol=0, atol=1e-12)
    assert probs.shape == (5, 16)


@pytest.mark.parametrize("call,match", [
    (lambda: QuantumStaircase(1, 1), "n_qubits must be an integer >= 2, got 1"),
    (lambda: QuantumStaircase(3, -1), "layers must be an integer >= 0, got -1"),
    (lambda: QuantumStaircase(3, 1, readout="amplitudes"), "readout must be one of"),
    (lambda: QuantumStaircase(3, 1, in_features=9), "in_features must be an integer <= 8, got 9"),
    (lambda: QuantumStaircase(3, 1)(torch.randn(2, 7)), r"x must have shape \(\.\.\., 8\), got \(2, 7\)"),
    (lambda: QuantumStaircase(3, 1)(torch.zeros(2, 8)), "all-zero rows"),
    (lambda: QuantumStaircase(3, 1, backend="pennylane"), "needs a device"),
    (lambda: QuantumStaircase(3, 1, backend="cuda"), "backend must be one of"),
    (lambda: QuantumHead(8, 2, 1, 10), "n_classes=10 needs 4 readout qubits, more than n_qubits=2"),
    (lambda: DisentangledLinear(8, 4, 1, 1, 0), "max_bond must be a positive integer or None, got 0"),
    (lambda: DisentangledLinear.from_linear(torch.nn.Conv1d(1, 1, 1), 1, 1, 2), "linear must be a torch.nn.Linear"),
])
def test_bad_input(call, match):
    with pytest.raises(QtnnError, match=match):
        call()


@pytest.mark.parametrize("fuse", [False, True])
@pytest.mark.parametrize("n,layers", [(2, 1), (3, 2), (4, 1), (5, 3), (6, 2)])
def test_reference_kernel_gradcheck_angles_and_input(monkeypatch, n, layers, fuse):
    # the numpy kernel's analytic gradients (shift identity) against finite differences,
    # with single gates and with gates fused in 3-qubit pairs
    from qtnn.nn.quantum_layers import _staircase_kernel

    monkeypatch.setattr(ql, "FUSE_MIN_ENTRIES", 0 if fuse else 1 << 60)
    torch.manual_seed(n)
    gates = StaircaseGates(n, layers, dtype=torch.float64)
    with torch.no_grad():
        gates.dets[0, 0] = -1  # include a det -1 gate
    x = torch.randn(3, 2**n, requires_grad=True)
    ang = gates.angles.detach().clone().requires_grad_(True)
    dets = gates.dets.numpy().astype(np.float64)
    kernel = _staircase_kernel()
    assert torch.autograd.gradcheck(lambda xx, aa: kernel.apply(xx, aa, dets, n), (x, ang))


@pytest.mark.parametrize("fuse", [False, True])
def test_reference_kernel_matches_autograd_path(monkeypatch, fuse):
    from qtnn.nn.quantum_layers import _run_reference, _staircase_kernel

    monkeypatch.setattr(ql, "FUSE_MIN_ENTRIES", 0 if fuse else 1 << 60)
    torch.manual_seed(9)
    gates = StaircaseGates(7, 3, dtype=torch.float64)
    with torch.no_grad():
        gates.dets[1, 2] = -1
    x = torch.randn(5, 128)
    dets = gates.dets.numpy().astype(np.float64)
    y1 = _staircase_kernel().apply(x, gates.angles, dets, 7)
    g1 = torch.autograd.grad((y1 * torch.arange(128.0)).sum(), gates.angles)[0]
    y2 = _run_reference(x, gates.gates(), 7, 2)
    g2 = torch.autograd.grad((y2 * torch.arange(128.0)).sum(), gates.angles)[0]
    torch.testing.assert_close(y1, y2, rtol=0, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=0, atol=1e-10)
