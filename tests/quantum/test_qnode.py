"""StaircaseQNode against the classical contraction path (docs/design/math.md, section 5).

Exact devices must reproduce the reference to rounding (float64, rtol=0);
sampled devices must agree within bounds derived from the shot count, and the
noisy IBM device model within a bound derived from its calibrated error rates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from qtnn import QtnnError
from qtnn.quantum import StaircaseQNode, device
from qtnn.staircase import Staircase, apply_gates, encode_mps
from qtnn.staircase.magic import magic_gates
from qtnn.tn import MPS

ATOL = 1e-12
FALSE_ALARM = 1e-9          # probability budget of every statistical check in this file


# ---------------------------------------------------------------- references
def ref_state(x, w, dets, n):
    """C x / ||x|| by the classical path (numpy, float64)."""
    x = np.asarray(x, dtype=np.float64)
    return apply_gates(x / np.linalg.norm(x, axis=-1, keepdims=True), magic_gates(w, dets), n)


def marginal(probs, n, wires):
    """Probabilities of ``wires`` (in that order, first = most significant) from full probs."""
    t = probs.reshape(probs.shape[0], *([2] * n))
    keep = [1 + w for w in wires]
    drop = tuple(a for a in range(1, n + 1) if a not in keep)
    t = t.sum(axis=drop)
    kept_sorted = sorted(wires)
    perm = [0] + [1 + kept_sorted.index(w) for w in wires]
    return np.transpose(t, perm).reshape(probs.shape[0], -1)


def ref_readout(readout, state, n, wires):
    if readout == "state":
        return state
    probs = marginal(state**2, n, list(wires))
    if readout == "probs":
        return probs
    r = len(wires)
    bits = (np.arange(2**r)[:, None] >> np.arange(r - 1, -1, -1)[None, :]) & 1
    return probs @ (1.0 - 2.0 * bits)


def random_problem(n, layers, batch, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, 2**n)) * rng.uniform(0.5, 3.0, size=(batch, 1))
    w = rng.uniform(-np.pi, np.pi, size=(layers, n - 1, 6))
    dets = rng.choice([-1, 1], size=(layers, n - 1))
    return x, w, dets


EXACT = [("default.qubit", "matrix"), ("default.qubit", "native"), ("lightning.qubit", "native"),
         ("qiskit.aer", "native")]


@pytest.fixture(scope="module")
def devices():
    return {name: device(name, 4) for name in ("default.qubit", "lightning.qubit", "qiskit.aer")}


# ------------------------------------------------------------ exact devices
@pytest.mark.parametrize("name,gate_mode", EXACT)
@pytest.mark.parametrize("readout", ["state", "probs", "expval"])
def test_exact_devices_equal_classical_path(devices, name, gate_mode, readout):
    n, layers = 4, 2
    x, w, dets = random_problem(n, layers, batch=5, seed=7)
    qn = StaircaseQNode(devices[name], n, layers, readout=readout, gate_mode=gate_mode)
    out = qn(torch.tensor(x), torch.tensor(w), dets)
    ref = ref_readout(readout, ref_state(x, w, dets, n), n, range(n))
    assert out.dtype == torch.float64 and tuple(out.shape) == ref.shape
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", ["default.qubit", "lightning.qubit", "qiskit.aer"])
@pytest.mark.parametrize("readout", ["probs", "expval"])
def test_readout_wires_subset_in_given_order(devices, name, readout):
    n, layers = 4, 1
    x, w, dets = random_problem(n, layers, batch=3, seed=8)
    wires = (2, 0)
    qn = StaircaseQNode(devices[name], n, layers, readout=readout, readout_wires=wires)
    out = qn(torch.tensor(x), torch.tensor(w), dets).detach().numpy()
    ref = ref_readout(readout, ref_state(x, w, dets, n), n, wires)
    np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL)


def test_single_sample_and_float32_input(devices):
    n = 4
    x, w, dets = random_problem(n, 1, batch=1, seed=9)
    qn = StaircaseQNode(devices["default.qubit"], n, 1, readout="state")
    out = qn(torch.tensor(x[0]), torch.tensor(w), dets)
    assert out.shape == (16,)
    np.testing.assert_allclose(out.numpy(), ref_state(x, w, dets, n)[0], rtol=0, atol=ATOL)
    out32 = qn(torch.tensor(x, dtype=torch.float32), torch.tensor(w, dtype=torch.float32), dets)
    ref32 = ref_state(np.float32(x).astype(np.float64), np.float32(w).astype(np.float64), dets, n)
    np.testing.assert_allclose(out32.numpy(), ref32, rtol=0, atol=ATOL)   # computed in float64


def test_encoding_none_starts_from_zero(devices):
    n = 4
    _, w, dets = random_problem(n, 2, batch=1, seed=10)
    zero = np.eye(16)[:1]
    for name in ("default.qubit", "lightning.qubit"):
        out = StaircaseQNode(devices[name], n, 2, encoding="none", readout="state")(None, w, dets)
        assert out.shape == (16,)
        np.testing.assert_allclose(out.numpy(), ref_state(zero, w, dets, n)[0], rtol=0, atol=ATOL)


def test_layers_zero_is_the_encoded_input(devices):
    x, _, _ = random_problem(4, 1, batch=2, seed=11)
    qn = StaircaseQNode(devices["default.qubit"], 4, 0, readout="state")
    out = qn(torch.tensor(x), np.zeros((0, 3, 6)))
    np.testing.assert_allclose(out.numpy(), x / np.linalg.norm(x, axis=1, keepdims=True), rtol=0, atol=ATOL)


# ------------------------------------------------------- staircase encoding
@pytest.mark.parametrize("name", ["default.qubit", "qiskit.aer"])
def test_staircase_encoding_exact_for_bond_two_inputs(devices, name):
    """A bond-2 MPS is prepared exactly by one layer (Ran), so the encoded state readout equals
    the classical path on x itself -- sign included."""
    n = 4
    xs = np.stack([MPS.random(n, 2, seed=s).to_dense() * (-1) ** s * (s + 1) for s in range(3)])
    _, w, dets = random_problem(n, 2, batch=1, seed=12)
    qn = StaircaseQNode(devices[name], n, 2, encoding="staircase", encoding_layers=1, readout="state")
    out = qn(torch.tensor(xs), torch.tensor(w), dets)
    assert qn.last_fidelity_min > 1 - 1e-12
    np.testing.assert_allclose(out.numpy(), ref_state(xs, w, dets, n), rtol=0, atol=1e-10)


def test_staircase_encoding_generic_input_matches_encoded_circuit(devices):
    n = 4
    x, w, dets = random_problem(n, 1, batch=3, seed=13)
    qn = StaircaseQNode(devices["default.qubit"], n, 1, encoding="staircase", encoding_layers=1,
                        encoding_method="ran", readout="state")
    out = qn(torch.tensor(x), torch.tensor(w), dets).numpy()
    fids = []
    for b in range(3):
        xn = x[b] / np.linalg.norm(x[b])
        circ, rep = encode_mps(MPS.from_dense(xn), layers=1, method="ran", sweeps=4)
        enc = circ.state()
        enc = enc * np.sign(enc @ xn)                  # the QNode fixes <x|G|0> > 0
        np.testing.assert_allclose(out[b], ref_state(enc[None], w, dets, n)[0], rtol=0, atol=1e-10)
        fids.append(rep.final_fidelity)
        assert rep.final_fidelity == pytest.approx((enc @ xn) ** 2, abs=1e-12)
    assert qn.last_fidelities.tolist() == pytest.approx(fids, abs=1e-14)
    assert qn.last_fidelity_mean == pytest.approx(np.mean(fids), abs=1e-14)
    assert qn.last_fidelity_min == pytest.approx(np.min(fids), abs=1e-14)
    assert qn.last_fidelity_min < 1 - 1e-3           # generic inputs are not bond 2


# ------------------------------------------------------------- shot devices
def bernstein_halfwidth(p, shots, log_term):
    """Bernstein: P(|p_hat - p| > sqrt(2 p (1-p) L / N) + 2 L / (3 N)) <= 2 exp(-L)."""
    return np.sqrt(2 * p * (1 - p) * log_term / shots) + 2 * log_term / (3 * shots)


def test_aer_shot_probs_within_bernstein_bound():
    n, layers, batch, shots = 4, 2, 4, 4000
    x, w, dets = random_problem(n, layers, batch, seed=14)
    qn = StaircaseQNode(device("qiskit.aer", n, shots=shots, seed=123), n, layers, readout="probs")
    out = qn(torch.tensor(x), torch.tensor(w), dets).detach().numpy()
    exact = ref_readout("probs", ref_state(x, w, dets, n), n, range(n))
    # union bound over every entry: each may fail with probability FALSE_ALARM / entries
    log_term = math.log(2 * exact.size / FALSE_ALARM)
    bound = bernstein_halfwidth(exact, shots, log_term)
    assert np.all(np.abs(out - exact) <= bound), np.max(np.abs(out - exact) / bound)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert np.all(np.abs(out * shots - np.round(out * shots)) < 1e-9)   # counts / shots


def test_complex_state_readout_on_shot_device_is_refused():
    """Real circuits use the signed estimator there (tests/quantum/test_signed.py); complex ones cannot."""
    with pytest.raises(QtnnError, match=r"readout 'state' on the sampling device 'qiskit.aer' \(shots=100\)"):
        StaircaseQNode(device("qiskit.aer", 3, shots=100), 3, 1, readout="state", complex=True)
    with pytest.raises(QtnnError, match="complex=True gates give complex ones"):
        StaircaseQNode(device("default.qubit", 3, shots=100), 3, 1, readout="state", complex=True)
    assert StaircaseQNode(device("default.qubit", 3, shots=100), 3, 1, readout="state").signed


@pytest.fixture(scope="module")
def torino():
    return device("fake:torino", wires=3, shots=4000, seed=2024)


def error_budget(target, compiled):
    """Sum of calibrated error probabilities of the instructions of a transpiled circuit.

    Every noisy instruction of Aer's device model is its ideal map followed by an error channel
    whose average infidelity is the calibrated error ``e``; the total variation distance between
    the outputs of the noisy and the ideal circuit is at most the sum over instructions of half
    the diamond distance of each channel from the identity.  For the depolarising part that is
    ``(d+1)/d * e <= 1.5 e``, for thermal relaxation at most ``3 e`` (amplitude damping
    ``gamma``: infidelity ``gamma/3``), so ``3 e`` per gate bounds both.  A readout error flips
    the outcome with probability at most ``2 e`` (``e`` is the mean of the two flip
    probabilities).  Returns ``(gate_sum, readout_sum)`` of the ``e``.
    """
    gates = readout = 0.0
    for inst in compiled.data:
        name = inst.operation.name
        if name not in target.operation_names:
            continue
        qargs = tuple(compiled.find_bit(q).index for q in inst.qubits)
        props = target[name].get(qargs)
        err = 0.0 if props is None or props.error is None else float(props.error)
        if name == "measure":
            readout += err
        else:
            gates += err
    return gates, readout


def test_fake_torino_tvd_within_error_budget(torino):
    from qiskit_ibm_runtime.fake_provider import FakeTorino

    n, layers, batch, shots = 3, 1, 2, torino.shots
    x, w, dets = random_problem(n, layers, batch, seed=15)
    qn = StaircaseQNode(torino, n, layers, readout="probs", track=True)
    out = qn(torch.tensor(x), torch.tensor(w), dets).detach().numpy()
    assert qn.last_jobs == 1
    exact = ref_readout("probs", ref_state(x, w, dets, n), n, range(n))
    target = FakeTorino().target
    k = 2**n
    # shot noise: E TVD(p_hat, p) <= sqrt(K/N)/2 and TVD is (1/N)-Lipschitz in each shot
    # (McDiarmid), so TVD(p_hat, p) <= sqrt(K/N)/2 + sqrt(ln(1/delta)/(2N)) w.p. 1 - delta
    shot_term = 0.5 * math.sqrt(k / shots) + math.sqrt(math.log(batch / FALSE_ALARM) / (2 * shots))
    for b in range(batch):
        tvd = 0.5 * np.abs(out[b] - exact[b]).sum()
        gate_sum, readout_sum = error_budget(target, torino.pl.last_compiled[b])
        bound = 3 * gate_sum + 2 * readout_sum + shot_term
        ops = dict(torino.pl.last_compiled[b].count_ops())
        print(f"fake:torino sample {b}: TVD = {tvd:.4f}, bound = {bound:.4f} (gate errors "
              f"{gate_sum:.4f}, readout errors {readout_sum:.4f}, shot term {shot_term:.4f}; "
              f"2q gates {ops.get('cz', 0)})")
        assert tvd <= bound
        assert tvd > 1e-3             # the noise model is really on


# ---------------------------------------------------------------- gradients
def fd_gradient(f, w, h=1e-5):
    """Central differences.  Truncation error h^2/6 |f'''| and rounding eps |f| / h: both below
    1e-9 for these trigonometric polynomials of O(1) coefficients at h = 1e-5."""
    g = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        e = np.zeros_like(w)
        e[idx] = h
        g[idx] = (f(w + e) - f(w - e)) / (2 * h)
    return g


GRAD_CASES = [
    ("default.qubit", "backprop", "probs"),
    ("default.qubit", "backprop", "state"),
    ("default.qubit", "parameter-shift", "probs"),
    ("lightning.qubit", "adjoint", "expval"),
    ("lightning.qubit", "parameter-shift", "probs"),
    ("qiskit.aer", "parameter-shift", "expval"),
    ("qiskit.aer", "parameter-shift", "probs"),
]


@pytest.mark.parametrize("name,method,readout", GRAD_CASES)
def test_gradients_match_finite_differences_of_reference(name, method, readout):
    n, layers, batch = 3, 1, 2
    x, w, dets = random_problem(n, layers, batch, seed=16)
    gate_mode = "native" if method != "backprop" else "auto"
    qn = StaircaseQNode(device(name, n), n, layers, readout=readout, diff_method=method,
                        gate_mode=gate_mode)
    assert qn.diff_method == method
    coef = np.random.default_rng(17).normal(size=ref_readout(readout, ref_state(x, w, dets, n), n,
                                                             range(n)).shape)
    wt = torch.tensor(w, requires_grad=True)
    (qn(torch.tensor(x), wt, dets) * torch.tensor(coef)).sum().backward()

    def loss(wv):
        return float((ref_readout(readout, ref_state(x, wv, dets, n), n, range(n)) * coef).sum())

    # analytic (backprop / adjoint / shift rule) vs FD: FD error <= 1e-9 (see fd_gradient)
    np.testing.assert_allclose(wt.grad.numpy(), fd_gradient(loss, w), rtol=0, atol=1e-8)


def test_input_gradient_with_backprop(devices):
    n = 3
    x, w, dets = random_problem(n, 1, batch=2, seed=18)
    qn = StaircaseQNode(device("default.qubit", n), n, 1, readout="probs")
    coef = np.random.default_rng(19).normal(size=(2, 8))
    xt = torch.tensor(x, requires_grad=True)
    (qn(xt, torch.tensor(w), dets) * torch.tensor(coef)).sum().backward()

    def loss(xv):
        return float((ref_state(xv, w, dets, n) ** 2 * coef).sum())

    np.testing.assert_allclose(xt.grad.numpy(), fd_gradient(loss, x), rtol=0, atol=1e-8)


# ------------------------------------------------------------ batching facts
def test_one_execution_per_batch():
    x, w, dets = random_problem(3, 1, batch=8, seed=20)
    xt, wt = torch.tensor(x), torch.tensor(w)
    qn = StaircaseQNode(device("default.qubit", 3), 3, 1, track=True)
    qn(xt, wt, dets)
    assert qn.last_tapes == 1 and qn.last_jobs == 1          # one broadcast tape
    qn = StaircaseQNode(device("lightning.qubit", 3), 3, 1, readout="probs", track=True)
    qn(xt, wt, dets)
    assert qn.last_tapes == 8 and qn.last_jobs == 1          # split tapes, one execute call
    qn = StaircaseQNode(device("qiskit.aer", 3, shots=50, seed=1), 3, 1, track=True)
    qn(xt, wt, dets)
    assert qn.last_jobs == 1 and qn.last_stats["batch_len"] == 8   # one Aer job


# ---------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def qn_probs(devices):
    return StaircaseQNode(devices["default.qubit"], 4, 2, readout="probs")


@pytest.mark.parametrize("x,match", [
    (np.zeros((2, 15)), r"x must have shape \(batch, 2\*\*n_qubits\) = \(batch, 16\); got \(2, 15\)"),
    (np.full((2, 16), np.nan), "x must be finite"),
    (np.zeros((2, 16)), "row 0 is zero"),
    (np.zeros((0, 16)), "at least one sample"),
    (None, "x must be a \\(batch, 16\\) tensor"),
    (np.array([["a"] * 16]), "x must hold numbers"),
])
def test_bad_x(qn_probs, x, match):
    with pytest.raises(QtnnError, match=match):
        qn_probs(x if x is None or x.dtype.kind == "U" else torch.tensor(x), torch.zeros(2, 3, 6))


def test_bad_weights_and_dets(qn_probs):
    x = torch.ones(1, 16)
    with pytest.raises(QtnnError, match=r"weights must have shape \(2, 3, 6\).*got \(2, 3, 5\)"):
        qn_probs(x, torch.zeros(2, 3, 5))
    with pytest.raises(QtnnError, match="weights must be finite"):
        qn_probs(x, torch.full((2, 3, 6), float("inf")))
    with pytest.raises(QtnnError, match=r"dets must have shape"):
        qn_probs(x, torch.zeros(2, 3, 6), np.ones((3, 3)))
    with pytest.raises(QtnnError, match=r"dets must all be \+1 or -1"):
        qn_probs(x, torch.zeros(2, 3, 6), np.zeros((2, 3)))


def test_bad_options(devices):
    dq = devices["default.qubit"]
    with pytest.raises(QtnnError,
                       match="encoding must be one of 'amplitude', 'staircase', 'none'; got 'angle'"):
        StaircaseQNode(dq, 4, 1, encoding="angle")
    with pytest.raises(QtnnError, match="readout must be one of"):
        StaircaseQNode(dq, 4, 1, readout="counts")
    with pytest.raises(QtnnError, match="gate_mode must be one of"):
        StaircaseQNode(dq, 4, 1, gate_mode="pulse")
    with pytest.raises(QtnnError, match="diff_method must be one of"):
        StaircaseQNode(dq, 4, 1, diff_method="spsa")
    with pytest.raises(QtnnError, match="n_qubits=5 is more than the 4 wires"):
        StaircaseQNode(dq, 5, 1)
    with pytest.raises(QtnnError, match="readout_wires must be distinct integers in"):
        StaircaseQNode(dq, 4, 1, readout_wires=[0, 4])
    with pytest.raises(QtnnError, match="readout 'state' reads all 4 wires"):
        StaircaseQNode(dq, 4, 1, readout="state", readout_wires=[0])
    with pytest.raises(QtnnError, match="encoding 'none' starts from"):
        StaircaseQNode(dq, 4, 1, encoding="none")(torch.ones(1, 16), torch.zeros(1, 3, 6))
    with pytest.raises(QtnnError, match="dev must be a QDevice"):
        StaircaseQNode("default.qubit", 4, 1)


def test_incompatible_diff_methods(devices):
    light, aer = devices["lightning.qubit"], devices["qiskit.aer"]
    with pytest.raises(QtnnError, match="'backprop' needs default.qubit with shots=None"):
        StaircaseQNode(light, 4, 1, diff_method="backprop")
    with pytest.raises(QtnnError, match="'adjoint' supports readout 'expval'"):
        StaircaseQNode(light, 4, 1, readout="probs", diff_method="adjoint")
    with pytest.raises(QtnnError, match="'adjoint' needs an exact default.qubit or lightning"):
        StaircaseQNode(aer, 4, 1, readout="expval", diff_method="adjoint")
    with pytest.raises(QtnnError, match="needs gate_mode 'native'"):
        StaircaseQNode(devices["default.qubit"], 4, 1, gate_mode="matrix", diff_method="parameter-shift")
    with pytest.raises(QtnnError, match="cannot differentiate readout 'state'"):
        StaircaseQNode(aer, 4, 1, readout="state", diff_method="parameter-shift")
    with pytest.raises(QtnnError, match="gate_mode 'native' needs real k=2 gates"):
        StaircaseQNode(devices["default.qubit"], 4, 1, k=3, gate_mode="native")


def test_missing_gradient_is_an_error_not_silent(devices):
    x = torch.ones(2, 16)
    qn = StaircaseQNode(devices["qiskit.aer"], 4, 1, readout="state")
    assert qn.diff_method is None
    w = torch.zeros(1, 3, 6, requires_grad=True)
    with pytest.raises(QtnnError, match="weights require grad but device 'qiskit.aer'"):
        qn(x, w)
    with torch.no_grad():
        assert qn(x, w).shape == (2, 16)
    qn = StaircaseQNode(devices["lightning.qubit"], 4, 1, readout="expval")
    with pytest.raises(QtnnError, match="x requires grad, but gradients with respect to the input"):
        qn(x.clone().requires_grad_(), w)


def test_complex_and_wide_gates_run_as_qubit_unitary(devices):
    """k=3 and complex gates: generator parameters, QubitUnitary, backprop on default.qubit."""
    from qtnn.staircase import gates_from_params

    n = 4
    x, _, _ = random_problem(n, 1, batch=2, seed=21)
    for k, cx in ((3, False), (2, True)):
        qn = StaircaseQNode(devices["default.qubit"], n, 2, k=k, complex=cx, readout="state")
        assert qn.gate_mode == "matrix" and qn.diff_method == "backprop"
        w = torch.tensor(np.random.default_rng(k).normal(size=qn.weight_shape), requires_grad=True)
        out = qn(torch.tensor(x), w)
        gates = gates_from_params(w.detach().numpy(), complex=cx)
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        ref = Staircase(n, 2, k=k, gates=gates, complex=cx).apply(xn)
        np.testing.assert_allclose(out.detach().numpy(), ref, rtol=0, atol=ATOL)
        out.abs().sum().backward()
        assert w.grad is not None and torch.isfinite(w.grad).all()
