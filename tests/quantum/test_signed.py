"""Signed readout on sampling devices (``qtnn.quantum.signed``): exact from exact frequencies, and
within the derived statistical bound (false-alarm rate 1e-9, fixed seeds) on Aer with shots for a
6-qubit ``DisentangledLinear`` (both of its circuits, then the layer's output)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from qtnn import QtnnError
from qtnn.nn import DisentangledLinear
from qtnn.quantum import StaircaseQNode, device
from qtnn.quantum.signed import amplitude_bounds, exact_settings, settings_shots, signed_amplitudes

FALSE_ALARM = 1e-9


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_exact_frequencies_give_the_exact_state(n):
    rng = np.random.default_rng(n)
    a = rng.normal(size=(4, 2**n))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    pz, ph = exact_settings(a)
    roots = np.argmax(pz, axis=1)
    est, info = signed_amplitudes(pz, ph, sign_of_root=np.sign(a[np.arange(4), roots]))
    np.testing.assert_allclose(est, a, rtol=0, atol=1e-12)
    assert (info["root"] == roots).all()
    est_plus, _ = signed_amplitudes(pz, ph)            # no reference: largest amplitude positive
    np.testing.assert_allclose(est_plus, a * np.sign(a[np.arange(4), roots])[:, None], rtol=0, atol=1e-12)


def test_bad_inputs_are_qtnn_errors():
    with pytest.raises(QtnnError, match=r"pz must have shape \(batch, 2\*\*n\)"):
        signed_amplitudes(np.ones((2, 3)), np.ones((2, 1, 3)))
    with pytest.raises(QtnnError, match=r"ph must have shape"):
        signed_amplitudes(np.ones((1, 4)) / 4, np.ones((1, 1, 4)))
    with pytest.raises(QtnnError, match="sign_of_root must hold 1 values"):
        signed_amplitudes(*exact_settings([0.6, 0.8]), sign_of_root=[0.5])
    assert settings_shots(6, 1000) == 7000


def _check_stage(qn, exact_unit, shots):
    info = qn.last_signed_info
    est = info["estimate"]
    bound = amplitude_bounds(exact_unit, info["pz"], info["ph"], info, shots, FALSE_ALARM)
    err = np.abs(est - exact_unit)
    assert np.all(err <= bound), float(np.max(err / bound))
    return err, bound


def test_disentangled_linear_on_aer_with_shots_within_the_derived_bound():
    shots = 20_000
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 64).double()
    ref = DisentangledLinear.from_linear(lin, out_layers=2, in_layers=2, max_bond=4)
    x = torch.randn(3, 64, dtype=torch.float64)
    with torch.no_grad():
        y_ref = ref(x)
    dl = copy.deepcopy(ref)
    dl.set_backend("pennylane", device("qiskit.aer", 6, shots=shots, seed=9))
    with torch.no_grad():
        y = dl(x)

    # stage V^T: the estimate of V^T x / |x| against the exact one
    qv, qu = dl._qnodes["V"], dl._qnodes["U"]
    assert qv.signed and qu.signed
    with torch.no_grad():
        z_exact = qv.reference(x, dl.V.angles, dl.V.dets).numpy()
    err_v, bound_v = _check_stage(qv, z_exact, shots)
    # stage U, on the input it was given: M applied to the estimated V^T x
    with torch.no_grad():
        z_hat = torch.as_tensor(qv.last_signed_info["estimate"]) * x.norm(dim=1, keepdim=True)
        m = dl._apply_m(z_hat)
        u_exact = qu.reference(m, dl.U.angles, dl.U.dets).numpy()
    err_u, bound_u = _check_stage(qu, u_exact, shots)

    # the layer's output: |y - y_ref| <= |x| ||M|| |e_V| + |m| |e_U| (norms kept classically)
    m_norm = np.linalg.norm(ref.mpo.to_dense(), 2)
    e_v = np.linalg.norm(bound_v, axis=1)
    e_u = np.linalg.norm(bound_u, axis=1)
    total = x.norm(dim=1).numpy() * m_norm * e_v + m.norm(dim=1).numpy() * e_u
    assert np.all(np.linalg.norm((y - y_ref).numpy(), axis=1) <= total)
    # and the estimate is much better than the bound (a useful readout, not just a bounded one)
    assert np.max(err_v) < 0.05 and np.max(err_u) < 0.05
    rel = np.linalg.norm((y - y_ref).numpy(), axis=1) / np.linalg.norm(y_ref.numpy(), axis=1)
    assert np.all(rel < 0.2), rel


def test_quantum_staircase_state_readout_on_shots():
    from qtnn.nn import QuantumStaircase

    torch.manual_seed(1)
    layer = QuantumStaircase(3, layers=2, readout="state", dtype=torch.float64)
    x = torch.randn(2, 8, dtype=torch.float64)
    with torch.no_grad():
        exact = layer(x)
    layer.set_backend("pennylane", device("default.qubit", 3, shots=50_000, seed=3))
    with torch.no_grad():
        est = layer(x)
    qn = next(iter(layer._qnodes.values()))
    unit = (exact / x.norm(dim=1, keepdim=True)).numpy()
    _check_stage(qn, unit, 50_000)
    assert isinstance(qn, StaircaseQNode) and qn.signed
    assert torch.allclose(est.norm(dim=1), x.norm(dim=1), rtol=0, atol=1e-12)   # norm kept classically


def test_device_error_bound_against_closed_forms():
    """Pauli channels: the bound is the exact 1/2 diamond distance, 15/16 p per 2-qubit depolarising
    error; read-out adds max(P(1|0), P(0|1)) per measured qubit; unknown inputs are typed errors."""
    pytest.importorskip("qiskit_aer")
    from qiskit import QuantumCircuit
    from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error, pauli_error

    from qtnn import QtnnTypeError
    from qtnn.quantum.signed import device_error_bound

    nm = NoiseModel()
    nm.add_all_qubit_quantum_error(depolarizing_error(0.02, 2), ["cx"])
    nm.add_quantum_error(pauli_error([("X", 0.01), ("I", 0.99)]), ["x"], [1])   # qubit 1 only
    nm.add_readout_error(ReadoutError([[0.95, 0.05], [0.1, 0.9]]), [0])
    qc = QuantumCircuit(3, 2)
    qc.x(0)
    qc.x(1)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.measure([0, 1], [0, 1])
    b = device_error_bound(qc, nm)
    assert b.instructions == 3                       # two cx and the x on qubit 1; x on 0 is exact
    assert b.gates == pytest.approx(2 * 0.02 * 15 / 16 + 0.01, rel=1e-9)
    assert b.readout == pytest.approx(0.1)           # qubit 0 only; qubit 1 has no read-out error
    assert b.total_variation == pytest.approx(b.gates + b.readout)
    with pytest.raises(QtnnTypeError, match="circuit must be a transpiled"):
        device_error_bound("qc", nm)
    with pytest.raises(QtnnTypeError, match="noise_model must be"):
        device_error_bound(qc, 0.1)
    with pytest.raises(QtnnError, match="device_error must be >= 0"):
        a = np.array([0.6, 0.8])
        pz, ph = exact_settings(a)
        amplitude_bounds(a, pz, ph, signed_amplitudes(pz, ph)[1], 100, device_error=[-0.1, 0.0])
