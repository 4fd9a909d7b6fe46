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


@pytest.mark.parametrize("n,batch", [(4, 6), (10, 70)])
def test_quantum_staircase_state_equals_staircase_apply(n, batch):
    # n=10: the kernel runs the batch in chunks of 32 rows (the last one partial)
    torch.manual_seed(0)
    layer = QuantumStaircase(n, 3, in_features=2**n - 3)
    x = torch.randn(batch, 2**n - 3)
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
        from qtnn.staircase import apply_gates
        from qtnn.staircase.magic import magic_gates
        g = magic_gates(a, layer.circuit.dets.double().numpy())
        return apply_gates(x.detach() / x.detach().norm(dim=-1, keepdim=True), g, 3, 2)

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
    (lambda: QuantumStaircase(3, 1, backend="pennylane"), "needs a qdevice"),
    (lambda: QuantumStaircase(3, 1, backend="cuda"), "backend must be one of"),
    (lambda: QuantumHead(8, 2, 1, 10), "n_classes=10 needs 4 readout qubits, more than n_qubits=2"),
    (lambda: DisentangledLinear(8, 4, 1, 1, 0), "max_bond must be a positive integer or None, got 0"),
    (lambda: DisentangledLinear.from_linear(torch.nn.Conv1d(1, 1, 1), 1, 1, 2), "linear must be a torch.nn.Linear"),
])
def test_bad_input(call, match):
    with pytest.raises(QtnnError, match=match):
        call()


def _autograd_reference(x, angles, dets, n, probs, inverse):
    """The kernel's result by plain torch autograd: magic gates, then one matmul per gate."""
    from qtnn.staircase import apply_gates
    from qtnn.staircase.magic import magic_gates

    g = magic_gates(angles, dets)
    if inverse:
        y = apply_gates(x, g.flip(0).transpose(-1, -2), n, 2, descending=True)
    else:
        y = apply_gates(x, g, n, 2)
    return y**2 / (x**2).sum(dim=-1, keepdim=True) if probs else y


@pytest.mark.parametrize("probs", [False, True])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("n,layers", [(2, 1), (3, 2), (4, 1), (5, 3), (6, 2)])
def test_reference_kernel_gradcheck_angles_and_input(n, layers, inverse, probs):
    # the compiled kernel's analytic gradients (undoing each gate, shift identity for the
    # angles) against finite differences
    torch.manual_seed(n)
    gates = StaircaseGates(n, layers, dtype=torch.float64)
    with torch.no_grad():
        gates.dets[0, 0] = -1  # include a det -1 gate
    x = torch.randn(3, 2**n, requires_grad=True)
    ang = gates.angles.detach().clone().requires_grad_(True)
    dets = gates.dets_numpy()
    kernel = ql._staircase_kernel()
    assert torch.autograd.gradcheck(
        lambda xx, aa: kernel.apply(xx, aa, dets, n, probs, inverse, False), (x, ang))


@pytest.mark.parametrize("probs", [False, True])
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("n,batch", [(7, 5), (10, 70)])
def test_reference_kernel_matches_autograd_path(n, batch, inverse, probs):
    # n=10, batch 70: chunks of 32 rows, the last one partial
    torch.manual_seed(9)
    gates = StaircaseGates(n, 3, dtype=torch.float64)
    with torch.no_grad():
        gates.dets[1, 2] = -1
    x = torch.randn(batch, 2**n, requires_grad=True)
    w = torch.randn(batch, 2**n)
    dets = gates.dets_numpy()
    y1 = ql._staircase_kernel().apply(x, gates.angles, dets, n, probs, inverse, False)
    g1 = torch.autograd.grad((y1 * w).sum(), (gates.angles, x))
    y2 = _autograd_reference(x, gates.angles, dets, n, probs, inverse)
    g2 = torch.autograd.grad((y2 * w).sum(), (gates.angles, x))
    torch.testing.assert_close(y1, y2, rtol=0, atol=1e-12)
    torch.testing.assert_close(g1[0], g2[0], rtol=0, atol=1e-10 * batch)
    torch.testing.assert_close(g1[1], g2[1], rtol=0, atol=1e-12)


def test_reference_kernel_float32_and_second_backward():
    # float32 in, float32 out (computed in float64); a retained graph can be differentiated twice
    torch.manual_seed(3)
    layer = QuantumStaircase(4, 2, readout="probs", dtype=torch.float32)
    x = torch.rand(5, 16, dtype=torch.float32)
    y = layer(x)
    assert y.dtype == torch.float32
    ref = _autograd_reference(x.double(), layer.circuit.angles.double(), layer.circuit.dets_numpy(),
                              4, True, False)
    torch.testing.assert_close(y.double(), ref, rtol=0, atol=1e-6)
    loss = (y * torch.arange(16.0)).sum()
    g1 = torch.autograd.grad(loss, layer.circuit.angles, retain_graph=True)[0]
    g2 = torch.autograd.grad(loss, layer.circuit.angles)[0]
    assert g1.dtype == torch.float32
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)


def test_reference_kernel_refuses_double_differentiation():
    torch.manual_seed(4)
    layer = QuantumStaircase(3, 1, readout="probs")
    x = torch.rand(2, 8, dtype=torch.float64)
    g = torch.autograd.grad(layer(x).pow(2).sum(), layer.circuit.angles, create_graph=True)[0]
    with pytest.raises(RuntimeError, match="differentiate twice"):
        g.sum().backward()


def test_dets_cache_follows_changes():
    g = StaircaseGates(3, 2, dtype=torch.float64)
    first = g.dets_numpy()
    np.testing.assert_array_equal(first, np.ones((2, 2)))
    with torch.no_grad():
        g.dets[1, 0] = -1
    np.testing.assert_array_equal(g.dets_numpy(), [[1, 1], [-1, 1]])
    g.load_state_dict({"angles": g.angles.detach(), "dets": torch.ones(2, 2, dtype=torch.int8)})
    np.testing.assert_array_equal(g.dets_numpy(), np.ones((2, 2)))
    g.dets = torch.full((2, 2), -1, dtype=torch.int8)
    np.testing.assert_array_equal(g.dets_numpy(), -np.ones((2, 2)))
    with torch.inference_mode():  # built under inference mode: no version counter, no cache
        layer = QuantumStaircase(3, 1, readout="probs", dtype=torch.float64)
        assert layer(torch.rand(2, 8, dtype=torch.float64)).shape == (2, 8)


def test_reference_kernel_detects_inputs_modified_before_backward():
    layer = QuantumStaircase(3, 1, readout="probs", dtype=torch.float64)
    x = torch.rand(2, 8, dtype=torch.float64, requires_grad=True)
    xx = x * 1.0
    y = layer(xx).sum()
    with torch.no_grad():
        xx.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_reference_kernel_refuses_bad_angles_and_zero_rows():
    layer = QuantumStaircase(3, 1, readout="probs", dtype=torch.float64)
    with pytest.raises(QtnnError, match="all-zero rows"):
        layer(torch.tensor([[1.0] * 8, [0.0] * 8], dtype=torch.float64))
    with torch.no_grad():
        layer.circuit.angles[0, 0, 2] = float("nan")
    with pytest.raises(QtnnError, match="angles must be finite"):
        layer(torch.rand(2, 8, dtype=torch.float64))


@pytest.mark.parametrize("probs", [False, True])
@pytest.mark.parametrize("inverse", [False, True])
def test_device_ops_path_equals_the_kernel(monkeypatch, probs, inverse):
    # large batches on a GPU run as torch ops on the device; forced here on the CPU (the same
    # code, measured on an H200), against the compiled kernel: values and gradients
    torch.manual_seed(5)
    gates = StaircaseGates(5, 2, dtype=torch.float64)
    with torch.no_grad():
        gates.dets[1, 3] = -1
    x = torch.randn(7, 32, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, 32, dtype=torch.float64)
    results = []
    for forced in (False, True):
        monkeypatch.setattr(ql, "_device_ops", lambda x, n, forced=forced: forced)
        y = ql._run_staircase(x, gates, 5, probs=probs, inverse=inverse, nonzero=True)
        results.append((y, *torch.autograd.grad((y * w).sum(), (gates.angles, x))))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    with pytest.raises(QtnnError, match="all-zero rows"):
        ql._run_staircase(torch.zeros(2, 32, dtype=torch.float64), gates, 5, probs=True, nonzero=True)


def test_device_ops_only_for_large_batches_off_the_cpu():
    n = 10
    big = torch.empty(ql.GPU_OPS_MIN_ENTRIES // 2**n, 2**n, device="meta")
    assert ql._device_ops(big, n)
    assert not ql._device_ops(big[:-1], n)
    assert not ql._device_ops(torch.empty(4096, 2**n), n)        # CPU tensors: the host kernel


# ------------------------------------------------------------------ brickwall layout
def test_brickwall_gates_kernel_equals_torch_ops_and_dense():
    from qtnn.nn.quantum_layers import StaircaseGates, _apply_circuit, _run_staircase, circuit_matrix

    torch.manual_seed(0)
    for n in (2, 3, 6):
        g = StaircaseGates(n, 3, layout="brickwall", dtype=torch.float64)
        x = torch.randn(5, 2**n, dtype=torch.float64)
        U = torch.as_tensor(g.to_staircase().to_matrix())
        assert g.to_staircase().layout == "brickwall"
        for inverse in (False, True):
            want = x @ (U if inverse else U.T)
            got = _run_staircase(x, g, n, inverse=inverse)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
            torch.testing.assert_close(_apply_circuit(x, g.gates(), n, inverse=inverse,
                                                      layout="brickwall"), want, rtol=0, atol=1e-12)
        torch.testing.assert_close(circuit_matrix(g.gates(), n, layout="brickwall"), U.T, rtol=0,
                                   atol=1e-12)


@pytest.mark.parametrize("forced", [False, True])
def test_brickwall_mixed_dets_both_paths_match_the_circuit(monkeypatch, forced):
    # reflections (det -1) on some gates: the kernel reorders the dets with the angles;
    # forced=True runs the torch-ops path (GPU dispatch) on the CPU
    st = Staircase.random(5, 3, seed=21, layout="brickwall")
    g = StaircaseGates(5, 3, layout="brickwall", dtype=torch.float64)
    g.load_staircase(st)
    assert set(g.dets.flatten().tolist()) == {-1, 1}
    monkeypatch.setattr(ql, "_device_ops", lambda x, n: forced)
    U = torch.as_tensor(st.to_matrix())
    x = torch.randn(4, 32, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 32, dtype=torch.float64)
    for inverse in (False, True):
        y = ql._run_staircase(x, g, 5, inverse=inverse)
        torch.testing.assert_close(y, x @ (U if inverse else U.T), rtol=0, atol=1e-12)
        ga, gx = torch.autograd.grad((y * w).sum(), (g.angles, x))
        torch.testing.assert_close(gx, w @ (U.T if inverse else U), rtol=0, atol=1e-12)
        z = ql._apply_circuit(x, g.gates(), 5, inverse=inverse, layout="brickwall")
        (gb,) = torch.autograd.grad((z * w).sum(), [g.angles])
        torch.testing.assert_close(ga, gb, rtol=0, atol=1e-10)


@pytest.mark.parametrize("inverse", [False, True])
def test_brickwall_kernel_gradcheck(inverse):
    from qtnn.nn.quantum_layers import StaircaseGates, _staircase_kernel

    torch.manual_seed(1)
    g = StaircaseGates(4, 2, layout="brickwall", dtype=torch.float64)
    x = torch.randn(3, 16, dtype=torch.float64, requires_grad=True)
    a = g.angles.detach().clone().requires_grad_(True)
    d = g.dets_numpy()
    assert torch.autograd.gradcheck(
        lambda x_, a_: _staircase_kernel().apply(x_, a_, d, 4, False, inverse, False, "brickwall"),
        (x, a))


def test_brickwall_disentangled_linear_matches_dense_and_refuses_mixing():
    from qtnn import QtnnError
    from qtnn.nn import DisentangledLinear
    from qtnn.nn.quantum_layers import StaircaseGates
    from qtnn.staircase import Staircase, disentangle

    torch.manual_seed(2)
    lin = torch.nn.Linear(20, 12).double()
    res = disentangle(lin.weight.detach().numpy(), 2, 2, max_bond=1, layout="brickwall", refine=10)
    dl = DisentangledLinear._from_result(res, 20, 12, 2, 2, 1, lin.bias.detach(), torch.float64)
    assert dl.U.layout == dl.V.layout == "brickwall"
    x = torch.randn(4, 20, dtype=torch.float64)
    want = x @ torch.as_tensor(res.to_dense()).T + lin.bias
    torch.testing.assert_close(dl(x), want, rtol=0, atol=1e-12)
    with pytest.raises(QtnnError, match="layout='staircase'"):
        StaircaseGates(4, 1, layout="brickwall").load_staircase(Staircase.random(4, 1))


def test_brickwall_disentangled_linear_built_directly_matches_dense():
    # random gates and cores (not from disentangle): y = U M V^T x + b with U, V the dense
    # brickwall circuits of to_staircase() and M the residual MPO
    torch.manual_seed(7)
    dl = DisentangledLinear(12, 6, 2, 3, 2, layout="brickwall", dtype=torch.float64)
    assert dl.U.layout == dl.V.layout == "brickwall"
    with torch.no_grad():
        dl.U.angles.uniform_(0.0, 6.0)
        dl.V.angles.uniform_(0.0, 6.0)
        dl.U.dets[0, 1] = -1
        dl.V.dets[1, 0] = -1
    U, V = dl.U.to_staircase(), dl.V.to_staircase()
    assert U.layout == V.layout == "brickwall"
    W = U.to_matrix() @ dl.mpo.to_dense() @ V.to_matrix().T         # (8, 16)
    x = torch.randn(5, 12)
    want = x @ torch.as_tensor(W[:6, :12]).T + dl.bias
    torch.testing.assert_close(dl(x), want, rtol=0, atol=1e-12)
    # the staircase order of the same gates is another layer
    st = DisentangledLinear(12, 6, 2, 3, 2, dtype=torch.float64)
    st.load_state_dict(dl.state_dict())
    assert (st(x) - dl(x)).abs().max() > 1e-3


def test_brickwall_kernel_gradients_equal_torch_ops_and_load_round_trip():
    from qtnn.nn.quantum_layers import _apply_circuit, _run_staircase

    torch.manual_seed(8)
    g = StaircaseGates(5, 2, layout="brickwall", dtype=torch.float64)
    x = torch.randn(4, 32)
    for inverse in (False, True):
        for probs in (False, True):
            a = g.angles
            y = _run_staircase(x, g, 5, probs=probs, inverse=inverse)
            (ga,) = torch.autograd.grad(y.pow(3).sum(), [a])
            z = _apply_circuit(x, g.gates(), 5, inverse=inverse, layout="brickwall")
            if probs:
                z = z * z / (x * x).sum(dim=-1, keepdim=True)
            (gb,) = torch.autograd.grad(z.pow(3).sum(), [a])
            torch.testing.assert_close(y, z.detach(), rtol=0, atol=1e-12)
            torch.testing.assert_close(ga, gb, rtol=0, atol=1e-10)
    # load_staircase / to_staircase keep the layout and the gates
    st = Staircase.random(5, 2, seed=9, layout="brickwall")
    h = StaircaseGates(5, 2, layout="brickwall", dtype=torch.float64)
    h.load_staircase(st)
    assert h.to_staircase().layout == "brickwall"
    np.testing.assert_allclose(h.to_staircase().to_matrix(), st.to_matrix(), rtol=0, atol=1e-10)
    with pytest.raises(QtnnError, match="layout='brickwall'"):
        StaircaseGates(5, 2).load_staircase(st)
    with pytest.raises(QtnnError, match="layout must be one of"):
        StaircaseGates(5, 2, layout="ladder")


def test_brickwall_quantum_staircase_probs_match_dense():
    torch.manual_seed(10)
    layer = QuantumStaircase(4, 2, readout="probs", layout="brickwall")
    x = torch.randn(3, 16)
    U = torch.as_tensor(layer.circuit.to_staircase().to_matrix())
    want = (x @ U.T) ** 2 / (x * x).sum(dim=-1, keepdim=True)
    torch.testing.assert_close(layer(x), want, rtol=0, atol=1e-12)


def test_brickwall_quantum_head_matches_dense():
    torch.manual_seed(12)
    head = QuantumHead(16, n_qubits=4, layers=2, n_classes=3, layout="brickwall")
    assert head.body.circuit.layout == "brickwall"
    x = torch.randn(5, 16)
    U = torch.as_tensor(head.body.circuit.to_staircase().to_matrix())
    p = (x @ U.T) ** 2 / (x * x).sum(dim=-1, keepdim=True)
    marg = p.reshape(5, 4, 4).sum(dim=-1)                   # readout wires 0, 1
    torch.testing.assert_close(head(x), torch.log(marg[:, :3] + head.eps), rtol=0, atol=1e-12)
