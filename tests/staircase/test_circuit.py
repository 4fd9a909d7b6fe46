"""Staircase circuits against independent dense references (float64, rtol=0)."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import torch

from qtnn import QtnnError, QtnnSizeError
from qtnn.staircase import Staircase, apply_gates, gates_from_params
from qtnn.staircase.circuit import num_gate_params
from qtnn.tn import MPS

ATOL = 1e-12


def kron_reference(c: Staircase) -> np.ndarray:
    """The circuit's unitary from Kronecker products, written independently of apply_gates."""
    n, k = c.n_qubits, c.k
    u = np.eye(2**n, dtype=c.gates.dtype)
    order = range(n - k, -1, -1) if c.descending else range(n - k + 1)
    for layer in range(c.layers):
        for j in order:
            full = np.kron(np.kron(np.eye(2**j), c.gates[layer, j]), np.eye(2 ** (n - j - k)))
            u = full @ u
    return u


CASES = [(n, k, cx) for n in range(1, 7) for k in (1, 2, 3) if k <= n for cx in (False, True)]


# ------------------------------------------------------------------ dense apply
@pytest.mark.parametrize("n,k,cx", CASES)
def test_apply_batch_matches_kron_reference(n, k, cx):
    c = Staircase.random(n, 3, k=k, seed=10 * n + k, complex=cx)
    u = kron_reference(c)
    np.testing.assert_allclose(c.to_matrix(), u, rtol=0, atol=ATOL)
    x = np.random.default_rng(n).normal(size=(2, 3, 2**n))
    y = c.apply(x)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x @ u.T, rtol=0, atol=ATOL)
    # torch input gives the same numbers
    yt = c.apply(torch.as_tensor(x))
    assert isinstance(yt, torch.Tensor)
    np.testing.assert_allclose(yt.numpy(), y, rtol=0, atol=ATOL)
    # the inverse
    ci = c.inverse()
    assert ci.descending and not c.descending
    np.testing.assert_allclose(ci.to_matrix(), u.conj().T, rtol=0, atol=ATOL)
    np.testing.assert_allclose(kron_reference(ci), u.conj().T, rtol=0, atol=ATOL)
    np.testing.assert_allclose(ci.apply(y), x, rtol=0, atol=ATOL)
    assert ci.inverse() == c


@pytest.mark.parametrize("n,k,cx", [(n, k, cx) for (n, k, cx) in CASES if n >= 2])
def test_mps_apply_matches_dense(n, k, cx):
    c = Staircase.random(n, 2, k=k, seed=n + 7, complex=cx)
    psi = MPS.random(n, 3, seed=n, complex=cx)
    out = c.apply(psi)
    assert isinstance(out, MPS) and out.center == n - 1
    np.testing.assert_allclose(out.to_dense(), c.to_matrix() @ psi.to_dense(), rtol=0, atol=ATOL)
    back = c.inverse().apply(out)
    assert back.center == 0
    np.testing.assert_allclose(back.to_dense(), psi.to_dense(), rtol=0, atol=ATOL)
    # the prepared state from |0...0>, MPS and dense
    np.testing.assert_allclose(c.state_mps().to_dense(), c.state(), rtol=0, atol=ATOL)
    np.testing.assert_allclose(c.state(), c.to_matrix()[:, 0], rtol=0, atol=ATOL)


def test_mps_apply_complex_gates_on_real_mps_and_truncation():
    c = Staircase.random(8, 3, seed=1, complex=True)
    psi = MPS.random(8, 4, seed=2)
    out = c.apply(psi)
    assert np.iscomplexobj(out.cores[0])
    np.testing.assert_allclose(out.to_dense(), c.to_matrix() @ psi.to_dense(), rtol=0, atol=ATOL)
    cut = c.apply(psi, max_bond=4)
    assert cut.max_bond <= 4
    exact = out.to_dense()
    approx = cut.to_dense()
    assert 0 < np.linalg.norm(exact - approx) < 1.0
    # identity circuit: bonds do not grow (numerically zero values are dropped)
    same = Staircase(8, 2).apply(psi)
    assert same.bond_dims == psi.bond_dims
    np.testing.assert_allclose(same.to_dense(), psi.to_dense(), rtol=0, atol=ATOL)


def test_zero_layers_and_single_gate_cases():
    psi = MPS.random(3, 2, seed=0)
    c = Staircase(3, 0)
    assert c.num_gates == 0 and c.depth == 0 and c.num_params == 0
    np.testing.assert_allclose(c.apply(psi).to_dense(), psi.to_dense(), rtol=0, atol=0)
    np.testing.assert_allclose(c.to_matrix(), np.eye(8), rtol=0, atol=0)
    full = Staircase.random(3, 2, k=3, seed=4)  # one 8x8 gate per layer
    np.testing.assert_allclose(full.to_matrix(), full.gates[1, 0] @ full.gates[0, 0], rtol=0, atol=ATOL)


def test_dense_apply_large_state_and_size_refusal(monkeypatch):
    n = 16
    c = Staircase.random(n, 1, seed=0)
    x = np.zeros(2**n)
    x[0] = 1.0
    y = c.apply(x)  # 16 qubits, no 2^n x 2^n matrix (that would be 32 GiB)
    np.testing.assert_allclose(y, c.state_mps().to_dense(), rtol=0, atol=ATOL)
    monkeypatch.setenv("QTNN_MAX_BYTES", str(2**16))
    with pytest.raises(QtnnSizeError, match="dense batch of 1 states on 16 qubits"):
        c.apply(x)
    monkeypatch.delenv("QTNN_MAX_BYTES")
    with pytest.raises(QtnnSizeError, match="dense state on 60 qubits"):
        Staircase(60, 1).state()


# ---------------------------------------------------------------- counting
@pytest.mark.parametrize("n,k,d", [(n, k, d) for n in range(1, 9) for k in range(1, 5) if k <= n
                                   for d in range(0, 5)])
def test_depth_formula_matches_asap_schedule(n, k, d):
    c = Staircase(n, d, k=k)
    sched = c.schedule()
    assert c.depth == (int(sched.max()) if sched.size else 0)
    assert c.inverse().schedule().max(initial=0) == c.depth
    g = n - k + 1
    assert c.num_gates == d * g
    m = 2**k
    assert c.num_params == d * g * m * (m - 1) // 2
    assert Staircase(n, d, k=k, complex=True).num_params == d * g * m * m
    if k == 2 and d >= 1 and n >= 3:
        assert c.depth == n - 1 + 2 * (d - 1)


# ------------------------------------------------------------- parametrisation
def _special_gates(m):
    out = [np.eye(m), -np.eye(m), np.diag([-1.0] + [1.0] * (m - 1)), np.diag([-1.0, -1.0] + [1.0] * (m - 2))]
    out.append(np.eye(m)[::-1].copy())                      # reversal permutation
    if m == 4:
        out.append(np.eye(4)[[0, 2, 1, 3]])                 # SWAP: eigenvalue -1, det -1
        out.append(np.eye(4)[[0, 1, 3, 2]])                 # CNOT
        r = np.array([[0.0, -1.0], [1.0, 0.0]])
        out.append(np.kron(r, r))                           # eigenvalues -1 (double)
    return out


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("cx", [False, True])
def test_params_round_trip_haar_and_branch_cuts(k, cx):
    n = k + 1
    c = Staircase.random(n, 20, k=k, seed=k, complex=cx)
    p, s = c.params()
    assert p.shape == (20, 2, num_gate_params(k, cx)) and s.shape == (20, 2)
    np.testing.assert_allclose(gates_from_params(p, s, complex=cx), c.gates, rtol=0, atol=1e-10)
    if not cx:
        assert set(np.unique(s)) == {-1.0, 1.0}             # Haar O(m) has both components
    m = 2**k
    special = np.array(_special_gates(m))
    sp = Staircase(k, len(special), k=k, gates=special[:, None], complex=cx)
    p, s = sp.params()
    np.testing.assert_allclose(gates_from_params(p, s, complex=cx), sp.gates, rtol=0, atol=1e-10)
    rebuilt = Staircase.from_params(k, len(special), p, s, k=k, complex=cx)
    np.testing.assert_allclose(rebuilt.gates, sp.gates, rtol=0, atol=1e-10)


def test_gates_from_params_torch_matches_numpy_and_is_orthogonal():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(3, 28))
    g = gates_from_params(p, signs=[1, -1, 1])
    gt = gates_from_params(torch.as_tensor(p), signs=torch.tensor([1.0, -1.0, 1.0]))
    assert isinstance(gt, torch.Tensor)
    np.testing.assert_allclose(gt.numpy(), g, rtol=0, atol=ATOL)
    np.testing.assert_allclose(g @ np.swapaxes(g, -1, -2), np.broadcast_to(np.eye(8), (3, 8, 8)),
                               rtol=0, atol=ATOL)
    np.testing.assert_allclose(np.linalg.det(g), [1, -1, 1], rtol=0, atol=1e-10)
    h = gates_from_params(rng.normal(size=(2, 16)), complex=True)
    np.testing.assert_allclose(h @ np.conj(np.swapaxes(h, -1, -2)), np.broadcast_to(np.eye(4), (2, 4, 4)),
                               rtol=0, atol=ATOL)


@pytest.mark.parametrize("cx", [False, True])
def test_gradcheck_wrt_gate_params_and_input(cx):
    n, k, d = 4, 2, 2
    g_count = n - k + 1
    torch.manual_seed(0)
    p = torch.randn(d, g_count, num_gate_params(k, cx), dtype=torch.float64, requires_grad=True)
    signs = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]])
    x = torch.randn(3, 2**n, dtype=torch.float64, requires_grad=True)

    def f(p_, x_):
        y = apply_gates(x_, gates_from_params(p_, signs, complex=cx), n, k)
        return torch.view_as_real(y) if y.is_complex() else y

    assert torch.autograd.gradcheck(f, (p, x), eps=1e-6, atol=1e-7, rtol=0)
    # the forward pass equals the Staircase built from the same parameters
    c = Staircase.from_params(n, d, p.detach().numpy(), signs.numpy(), k=k, complex=cx)
    np.testing.assert_allclose(apply_gates(x, gates_from_params(p, signs, complex=cx), n, k).detach().numpy(),
                               c.apply(x.detach().numpy()), rtol=0, atol=ATOL)


def test_gradcheck_wrt_input_through_staircase_apply():
    c = Staircase.random(3, 2, seed=1, complex=True)
    x = torch.randn(2, 8, dtype=torch.complex128, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x_: c.apply(x_), (x,), eps=1e-6, atol=1e-7, rtol=0)


# ----------------------------------------------------------------- save / load
@pytest.mark.parametrize("cx", [False, True])
def test_save_load_round_trip(tmp_path, cx):
    c = Staircase.random(5, 3, k=3, seed=2, complex=cx).inverse()
    path = tmp_path / "circuit.npz"
    c.save(path)
    back = Staircase.load(path)
    assert back == c and back.descending and back.is_complex == cx
    assert not [p for p in os.listdir(tmp_path) if p != "circuit.npz"]  # no temp file left
    c2 = Staircase(3, 0)
    c2.save(str(tmp_path / "empty"))
    assert Staircase.load(str(tmp_path / "empty")) == c2


def _write(path, **fields):
    with open(path, "wb") as fh:
        np.savez(fh, **fields)


def _good_fields(c):
    return dict(format=np.array("qtnn.staircase/1"), n_qubits=np.array(c.n_qubits),
                layers=np.array(c.layers), k=np.array(c.k), complex=np.array(c.is_complex),
                descending=np.array(c.descending), gates=np.asarray(c.gates))


def test_load_refuses_tampered_files(tmp_path):
    c = Staircase.random(3, 1, seed=0)
    bad = tmp_path / "bad.npz"
    f = _good_fields(c)
    f["gates"] = f["gates"] * 1.01
    _write(bad, **f)
    with pytest.raises(QtnnError, match=r"gates\[0, 0\] is not orthogonal"):
        Staircase.load(bad)
    f = _good_fields(c)
    del f["k"]
    _write(bad, **f)
    with pytest.raises(QtnnError, match="expected fields"):
        Staircase.load(bad)
    f = _good_fields(c)
    f["layers"] = np.array(2)
    _write(bad, **f)
    with pytest.raises(QtnnError, match="gates has 1 layers but layers=2"):
        Staircase.load(bad)
    f = _good_fields(c)
    f["gates"] = np.array([c.gates], dtype=object)
    _write(bad, **f)
    with pytest.raises(QtnnError, match="cannot read a Staircase"):
        Staircase.load(bad)
    f = _good_fields(c)
    f["format"] = np.array("something else")
    _write(bad, **f)
    with pytest.raises(QtnnError, match="format must be"):
        Staircase.load(bad)
    f = _good_fields(c)
    f["gates"] = f["gates"].astype(np.float32)
    _write(bad, **f)
    with pytest.raises(QtnnError, match="dtype float64"):
        Staircase.load(bad)
    f = _good_fields(c)
    f["n_qubits"] = np.array(3.0)
    _write(bad, **f)
    with pytest.raises(QtnnError, match="n_qubits must be an integer scalar"):
        Staircase.load(bad)
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(QtnnError, match="cannot read a Staircase"):
        Staircase.load(bad)
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("gates.npy", b"garbage")
    with pytest.raises(QtnnError):
        Staircase.load(bad)
    with pytest.raises(QtnnError, match="does not exist"):
        Staircase.load(tmp_path / "missing.npz")
    with pytest.raises(QtnnError, match="existing directory"):
        c.save(tmp_path / "no" / "such" / "dir.npz")


def test_save_gives_the_permissions_of_a_plain_open(tmp_path):
    import os
    import stat

    plain = tmp_path / "plain.npz"
    plain.write_bytes(b"")
    p = tmp_path / "c.npz"
    Staircase.random(3, 1, seed=0).save(p)   # through qtnn.io.atomic_open: not mkstemp's 0600
    assert stat.S_IMODE(os.stat(p).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


# ------------------------------------------------------------------ bad inputs
def test_bad_inputs_raise_qtnn_errors():
    q = np.linalg.qr(np.random.default_rng(0).normal(size=(4, 4)))[0]
    with pytest.raises(QtnnError, match=r"gates\[0, 1\] is not orthogonal"):
        Staircase(3, 1, gates=np.stack([[q, q * 2]]))
    with pytest.raises(QtnnError, match=r"gates must have shape .*\(D, 2, 4, 4\).*got \(1, 3, 4, 4\)"):
        Staircase(3, 1, gates=np.stack([[q, q, q]]))
    with pytest.raises(QtnnError, match="k must be <= n_qubits=2.*got k=3"):
        Staircase(2, 1, k=3)
    with pytest.raises(QtnnError, match="k must be an integer >= 1, got 0"):
        Staircase(2, 1, k=0)
    with pytest.raises(QtnnError, match="layers must be an integer >= 0, got -1"):
        Staircase(3, -1)
    with pytest.raises(QtnnError, match="gates must be finite"):
        Staircase(2, 1, gates=np.full((1, 1, 4, 4), np.nan))
    with pytest.raises(QtnnError, match="gates must be real when complex=False"):
        Staircase(2, 1, gates=(q * 1j)[None, None])
    with pytest.raises(QtnnError, match="not unitary"):
        Staircase(2, 1, gates=(q + 0.1j)[None, None], complex=True)
    with pytest.raises(QtnnError, match="gates has 1 layers but layers=2"):
        Staircase(2, 2, gates=q[None, None])
    c = Staircase(3, 1)
    with pytest.raises(QtnnError, match=r"x must have shape \(\.\.\., 2\*\*n_qubits\) = \(\.\.\., 8\)"):
        c.apply(np.ones(4))
    with pytest.raises(QtnnError, match="max_bond and cutoff apply to MPS input only"):
        c.apply(np.ones(8), max_bond=2)
    with pytest.raises(QtnnError, match="physical dims all 2"):
        Staircase(2, 1).apply(MPS.from_dense(np.ones(16), dims=(4, 4)))
    with pytest.raises(QtnnError, match="the MPS has 4 sites but the circuit has n_qubits=3"):
        c.apply(MPS.random(4, 2))
    with pytest.raises(QtnnError, match="max_bond must be a positive integer or None, got 0"):
        c.apply(MPS.random(3, 2), max_bond=0)
    with pytest.raises(QtnnError, match="n_qubits <= 12; got n_qubits=13"):
        Staircase(13, 1).to_matrix()
    with pytest.raises(QtnnError, match="last axis of size m\\(m-1\\)/2"):
        gates_from_params(np.zeros(5))
    with pytest.raises(QtnnError, match="signs must all be \\+1 or -1"):
        gates_from_params(np.zeros((2, 6)), signs=[1, 0.5])
    with pytest.raises(QtnnError, match="params must have shape"):
        Staircase.from_params(3, 1, np.zeros((1, 2, 5)))
    with pytest.raises(QtnnError, match="gates must have shape"):
        apply_gates(np.ones(8), np.ones((1, 1, 4, 4)), 3, 2)
    with pytest.raises(QtnnError, match="numpy cannot read"):
        Staircase(2, 1, gates=[[[1.0, 0.0], [0.0]]])
    with pytest.raises(QtnnError, match=r"signs must have shape \(2,\)"):
        gates_from_params(np.zeros((2, 6)), signs=[1, 1, 1])


# ------------------------------------------------------------------ brickwall layout
def _kron_circuit(n, gates, order):
    G = np.eye(2**n)
    for l_ in range(gates.shape[0]):
        for j in order:
            G = np.kron(np.kron(np.eye(2**j), gates[l_, j]), np.eye(2 ** (n - j - 2))) @ G
    return G


@pytest.mark.parametrize("n", [2, 3, 6, 7])
def test_brickwall_matrix_apply_mps_inverse(n):
    from qtnn.staircase.circuit import window_order
    from qtnn.tn import MPS

    c = Staircase.random(n, 3, seed=n, layout="brickwall")
    ref = _kron_circuit(n, c.gates, window_order(n, 2, "brickwall"))
    np.testing.assert_allclose(c.to_matrix(), ref, rtol=0, atol=1e-12)
    assert not np.allclose(Staircase(n, 3, 2, c.gates).to_matrix(), ref) or n <= 3
    psi = MPS.random(n, 3, seed=1)
    np.testing.assert_allclose(c.apply(psi).to_dense(), ref @ psi.to_dense(), rtol=0, atol=1e-12)
    inv = c.inverse()
    assert inv.layout == "brickwall" and inv.descending
    np.testing.assert_allclose(inv.to_matrix(), ref.T, rtol=0, atol=1e-12)
    np.testing.assert_allclose(inv.apply(psi).to_dense(), ref.T @ psi.to_dense(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(c.state(), ref[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(c.state_mps().to_dense(), ref[:, 0], rtol=0, atol=1e-12)


def test_brickwall_depth_schedule_repr_equality(tmp_path):
    c = Staircase.random(6, 3, seed=0, layout="brickwall")
    # windows 0,2,4 at step 1, windows 1,3 at step 2; the next layer's even windows wait for them
    assert c.schedule().tolist() == [[1, 2, 1, 2, 1], [3, 4, 3, 4, 3], [5, 6, 5, 6, 5]]
    assert c.depth == 6 and Staircase(6, 3).depth == 9
    assert Staircase(2, 4, layout="brickwall").depth == 4
    assert repr(c) == "Staircase(n_qubits=6, layers=3, k=2, complex=False, layout='brickwall')"
    assert c != Staircase(6, 3, 2, c.gates) and c.copy() == c
    p = tmp_path / "b.npz"
    c.save(p)
    back = Staircase.load(p)
    assert back == c and back.layout == "brickwall"
    pr, sg = c.params()
    assert Staircase.from_params(6, 3, pr, sg, layout="brickwall").layout == "brickwall"


def test_files_without_layout_load_as_staircases(tmp_path):
    c = Staircase.random(4, 2, seed=3)
    p = tmp_path / "old.npz"
    np.savez(p, format=np.array("qtnn.staircase/1"), n_qubits=np.array(4), layers=np.array(2),
             k=np.array(2), complex=np.array(False), descending=np.array(False), gates=c.gates)
    assert Staircase.load(p) == c
    bad = tmp_path / "bad.npz"
    np.savez(bad, format=np.array("qtnn.staircase/1"), n_qubits=np.array(4), layers=np.array(2),
             k=np.array(2), complex=np.array(False), descending=np.array(False), gates=c.gates,
             layout=np.array("ladder"))
    with pytest.raises(QtnnError, match="layout must be one of"):
        Staircase.load(bad)


def test_brickwall_needs_k2():
    with pytest.raises(QtnnError, match="brickwall.*k=2"):
        Staircase(5, 1, k=3, layout="brickwall")
    with pytest.raises(QtnnError, match="layout must be one of"):
        Staircase(5, 1, layout="ladder")


def _brick_order(n, descending=False):
    """Even windows, then odd ones (written out here, independently of window_order)."""
    order = [j for j in range(n - 1) if j % 2 == 0] + [j for j in range(n - 1) if j % 2 == 1]
    return order[::-1] if descending else order


def test_window_order_by_hand():
    from qtnn.staircase import window_order

    assert window_order(7, layout="brickwall") == (0, 2, 4, 1, 3, 5)
    assert window_order(7, layout="brickwall", descending=True) == (5, 3, 1, 4, 2, 0)
    assert window_order(2, layout="brickwall") == (0,)
    for n in range(2, 9):
        assert list(window_order(n, layout="brickwall")) == _brick_order(n)
    with pytest.raises(QtnnError, match="layout must be one of"):
        window_order(5, layout=None)


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("n", [4, 5])
def test_brickwall_complex_descending_and_torch_against_kron(n, cplx):
    c = Staircase.random(n, 2, seed=10 + n, complex=cplx, layout="brickwall")
    ref = _kron_circuit(n, c.gates, _brick_order(n))
    np.testing.assert_allclose(c.to_matrix(), ref, rtol=0, atol=ATOL)
    # the inverse: layers reversed, gates (conjugate-)transposed, in-layer order reversed
    inv = c.inverse()
    np.testing.assert_allclose(inv.to_matrix(), ref.conj().T, rtol=0, atol=ATOL)
    np.testing.assert_allclose(inv.to_matrix() @ c.to_matrix(), np.eye(2**n), rtol=0, atol=ATOL)
    assert inv.inverse() == c
    # a descending brickwall built directly: odd windows (last first), then even ones
    d = Staircase(n, 2, 2, c.gates, complex=cplx, descending=True, layout="brickwall")
    np.testing.assert_allclose(d.to_matrix(), _kron_circuit(n, c.gates, _brick_order(n, True)),
                               rtol=0, atol=ATOL)
    # dense batches (numpy and torch, autograd through the gates) and the exact MPS path
    rng = np.random.default_rng(n)
    x = rng.normal(size=(3, 2**n))
    np.testing.assert_allclose(c.apply(x), x @ ref.T, rtol=0, atol=ATOL)
    g = torch.tensor(c.gates, requires_grad=True)
    y = apply_gates(torch.tensor(x), g, n, layout="brickwall")
    np.testing.assert_allclose(y.detach().numpy(), x @ ref.T, rtol=0, atol=ATOL)
    y.abs().pow(2).sum().backward()
    assert g.grad is not None and g.grad.shape == g.shape
    psi = MPS.random(n, 4, seed=n)
    for circ, u in ((c, ref), (inv, ref.conj().T), (d, d.to_matrix())):
        out = circ.apply(psi)
        np.testing.assert_allclose(out.to_dense(), u @ psi.to_dense(), rtol=0, atol=ATOL)


def test_brickwall_depth_by_hand():
    # n = 7: windows 0, 2, 4 (qubits 0-5) at step 1, windows 1, 3, 5 at step 2; every layer 2 steps
    c = Staircase.random(7, 2, seed=0, layout="brickwall")
    assert c.schedule().tolist() == [[1, 2, 1, 2, 1, 2], [3, 4, 3, 4, 3, 4]]
    assert c.depth == 4 and c.inverse().depth == 4
    assert Staircase(7, 2).depth == 6 + 2                 # staircase: n - 1 + 2 (D - 1)
    # n = 3: the two orders coincide (windows 0 then 1)
    assert Staircase(3, 3, layout="brickwall").depth == Staircase(3, 3).depth == 6
    assert Staircase(6, 0, layout="brickwall").depth == 0
    # the same gates in the two layouts are different circuits (n >= 4)
    g = Staircase.random(5, 1, seed=2).gates
    assert Staircase(5, 1, 2, g, layout="brickwall") != Staircase(5, 1, 2, g)
    assert repr(Staircase(5, 1, layout="brickwall", descending=True)) == (
        "Staircase(n_qubits=5, layers=1, k=2, complex=False, descending=True, layout='brickwall')")


def test_brickwall_complex_save_load_round_trip(tmp_path):
    c = Staircase.random(5, 2, seed=4, complex=True, layout="brickwall").inverse()
    p = tmp_path / "c.npz"
    c.save(p)
    with np.load(p, allow_pickle=False) as data:
        assert str(data["layout"]) == "brickwall"
    back = Staircase.load(p)
    assert back == c and back.layout == "brickwall" and back.descending and back.is_complex
    np.testing.assert_allclose(back.to_matrix(), c.to_matrix(), rtol=0, atol=0)


def test_huge_empty_circuits_do_not_list_their_windows():
    # the layout is validated without building the order of 2**32 windows (that took > 20 GB)
    for layout in ("staircase", "brickwall"):
        c = Staircase(2**32, 0, layout=layout)
        assert c.layout == layout and c.depth == 0
        with pytest.raises(QtnnSizeError):
            c.state_mps()
    with pytest.raises(QtnnError, match="brickwall.*k=2"):
        Staircase(2**32, 0, k=3, layout="brickwall")


def test_apply_gates_checks_shapes_before_listing_windows():
    with pytest.raises(QtnnError, match="gates must have shape"):
        apply_gates(np.zeros(4), np.zeros((1, 1, 4, 4)), 2**32, layout="brickwall")
    with pytest.raises(QtnnError, match="layout must be one of"):
        apply_gates(np.zeros(4), np.zeros((1, 1, 4, 4)), 2, layout="ladder")
    with pytest.raises(QtnnError, match="brickwall.*k=2"):
        apply_gates(np.zeros(8), np.zeros((1, 1, 8, 8)), 3, k=3, layout="brickwall")
