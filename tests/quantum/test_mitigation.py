"""Error mitigation (``device(..., mitigation="readout" / "zne" / "readout+zne")``): exact algebra,
the identity calibration changes nothing (same seed, same counts), the correction removes the readout
bias of a device model within a derived bound, folding keeps the unitary, Richardson extrapolation is
exact on polynomials, zero-noise extrapolation removes gate noise by more than shot noise can explain,
and bad options fail in ``device()``."""

from __future__ import annotations

import math

import numpy as np
import pennylane as qml
import pytest

from qtnn import QtnnError
from qtnn.quantum import device
from qtnn.quantum.mitigation import (
    check_mitigation,
    check_zne_scales,
    correct,
    fold_two_qubit_gates,
    nearest_probability,
    richardson,
)

FALSE_ALARM = 1e-9


def test_correct_inverts_the_tensored_assignment_exactly():
    rng = np.random.default_rng(0)
    mats = [np.array([[1 - e0, e1], [e0, 1 - e1]]) for e0, e1 in rng.uniform(0.01, 0.1, size=(3, 2))]
    p = rng.dirichlet(np.ones(8))
    full = np.kron(np.kron(mats[0], mats[1]), mats[2])      # bit 0 most significant
    np.testing.assert_allclose(correct(full @ p, mats), p, rtol=0, atol=1e-14)
    q = nearest_probability(np.array([0.7, 0.4, -0.05, -0.05]))
    np.testing.assert_allclose(q, [0.65, 0.35, 0.0, 0.0], rtol=0, atol=1e-15)
    assert nearest_probability(p).tolist() == p.tolist()     # a distribution is its own nearest


def _basis_probs(dev, shots):
    @qml.set_shots(shots)
    @qml.qnode(dev.pl)
    def circuit():
        qml.X(0)
        return qml.probs(wires=[0, 1])

    return np.asarray(circuit())


def test_identity_calibration_changes_nothing():
    plain = device("fake:manila", wires=2, shots=2000, seed=5)
    mitig = device("fake:manila", wires=2, shots=2000, seed=5, mitigation="readout")
    mitig.pl.readout_calibration.update({q: np.eye(2) for q in range(5)})
    np.testing.assert_allclose(_basis_probs(mitig, 2000), _basis_probs(plain, 2000), rtol=0, atol=1e-15)


def test_readout_bias_is_removed_within_the_derived_bound():
    shots = 20_000
    plain = device("fake:manila", wires=2, shots=shots, seed=8)
    mitig = device("fake:manila", wires=2, shots=shots, seed=8, mitigation="readout",
                   calibration_shots=shots)
    exact = np.array([0.0, 0.0, 1.0, 0.0])                    # X on wire 0: |10>
    raw = _basis_probs(plain, shots)
    fixed = _basis_probs(mitig, shots)
    cal = mitig.pl.readout_calibration
    assert len(cal) == 2 and all(0.0 < a[1, 0] < 0.2 and 0.0 < a[0, 1] < 0.2 for a in cal.values())
    tvd_raw = 0.5 * np.abs(raw - exact).sum()
    tvd_fixed = 0.5 * np.abs(fixed - exact).sum()
    # L1 deviation of an empirical distribution over k outcomes from N shots (Weissman et al. 2003):
    # <= sqrt(2 (k ln 2 + ln(1/delta)) / N); the measurement and both calibration circuits
    # (union bound: delta / 3 each), amplified by the 1-norm of the inverse assignment, plus a gate
    # error budget of 1e-3 (one X on manila: calibrated error ~3e-4)
    def l1(k, n):
        return math.sqrt(2 * (k * math.log(2) + math.log(3 / FALSE_ALARM)) / n)

    inv_norm = np.prod([np.abs(np.linalg.inv(a)).sum(axis=0).max() for a in cal.values()])
    bound = 0.5 * inv_norm * (l1(4, shots) + 2 * l1(2, shots) * 2) + 1e-3
    assert tvd_fixed <= bound, (tvd_fixed, bound)
    assert tvd_fixed < tvd_raw / 3, (tvd_fixed, tvd_raw)     # the readout bias is mostly gone
    assert abs(fixed.sum() - 1) < 1e-12 and fixed.min() >= 0


def test_bad_options_fail_in_device():
    with pytest.raises(QtnnError, match=r"mitigation='pec' is not supported; valid values: None, "
                                         r"'readout', 'zne', 'readout\+zne'"):
        device("fake:manila", wires=2, shots=10, mitigation="pec")
    with pytest.raises(QtnnError, match=r"mitigation=\('zne', 'zne'\) is not supported"):
        device("fake:manila", wires=2, shots=10, mitigation=("zne", "zne"))
    with pytest.raises(QtnnError, match=r"zne_scales=\(1, 2\) must be at least two distinct odd"):
        device("fake:manila", wires=2, shots=10, mitigation="zne", zne_scales=(1, 2))
    with pytest.raises(QtnnError, match=r"zne_scales=\(1, 3\) needs mitigation='zne' or 'readout\+zne', "
                                         r"got mitigation='readout'"):
        device("fake:manila", wires=2, shots=10, mitigation="readout", zne_scales=(1, 3))
    with pytest.raises(QtnnError, match="zne_scales=.* device 'default.qubit' has none"):
        device("default.qubit", wires=2, zne_scales=(1, 3))
    with pytest.raises(QtnnError, match="device 'default.qubit' has none"):
        device("default.qubit", wires=2, shots=10, mitigation="readout")
    with pytest.raises(QtnnError, match="calibration_shots must be"):
        device("fake:manila", wires=2, shots=10, mitigation="readout", calibration_shots=0)
    with pytest.raises(QtnnError, match="need batch_jobs=True"):
        device("fake:manila", wires=2, shots=10, mitigation="readout", batch_jobs=False)


def test_only_probabilities_are_corrected():
    dev = device("fake:manila", wires=1, shots=100, seed=1, mitigation="readout")

    @qml.set_shots(100)
    @qml.qnode(dev.pl)
    def circuit():
        return qml.counts(wires=0)

    with pytest.raises(QtnnError, match=r"corrects probabilities \(qml.probs\); this circuit also measures"):
        circuit()


def test_the_device_keeps_its_options_for_copies_on_other_wires():
    dev = device("fake:manila", wires=3, shots=100, seed=1, mitigation="readout", job_timeout=30)
    assert dev.mitigation == "readout" and dev.options == {"mitigation": "readout", "job_timeout": 30}
    copy = device(dev.name, wires=2, shots=dev.shots, seed=dev.seed, **dev.options)
    assert copy.pl.mitigation == "readout" and copy.pl.retry_policy.timeout == 30
    assert device("default.qubit", wires=1).options == {}


def test_mitigation_names_and_scales():
    assert [check_mitigation(v) for v in (None, "readout", "zne", "zne+readout", ["readout", "zne"])] == \
        [None, "readout", "zne", "readout+zne", "readout+zne"]
    assert check_zne_scales(None) == (1, 3) and check_zne_scales((5, 3, 1)) == (1, 3, 5)
    for bad in ((3, 5), (1,), (1, 1), (1, True), "13", (1, 3.0)):
        with pytest.raises(QtnnError, match="zne_scales="):
            check_zne_scales(bad)
    dev = device("fake:manila", wires=2, shots=10, mitigation=("zne", "readout"), zne_scales=[1, 5])
    assert dev.mitigation == "readout+zne" and dev.pl.zne_scales == (1, 5)


def test_folding_keeps_the_unitary_and_scales_the_two_qubit_gates():
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import Operator

    qc = QuantumCircuit(3)
    qc.ry(0.3, 0)
    qc.cx(0, 1)
    qc.rzz(0.7, 1, 2)                 # not self-inverse: folded as G G^-1 G
    qc.sx(2)
    qc.ecr(2, 0)
    for scale in (1, 3, 5):
        folded = fold_two_qubit_gates(qc, scale)
        assert Operator(folded).equiv(Operator(qc))
        assert sum(i.operation.num_qubits == 2 for i in folded.data) == 3 * scale
        assert sum(i.operation.num_qubits == 1 for i in folded.data) == 2
    with pytest.raises(QtnnError, match="scale=2 must be a positive odd integer"):
        fold_two_qubit_gates(qc, 2)


def test_richardson_is_exact_on_polynomials_of_its_degree():
    rng = np.random.default_rng(1)
    for scales in ((1, 3), (1, 3, 5), (1, 5, 7, 9)):
        coef = rng.normal(size=(len(scales), 4))             # degree len(scales) - 1, 4 outcomes
        values = [sum(c * s**d for d, c in enumerate(coef)) for s in scales]
        np.testing.assert_allclose(richardson(scales, values), coef[0], rtol=0, atol=1e-12)
    with pytest.raises(QtnnError, match="at least two distinct scales"):
        richardson([1], [np.zeros(2)])


def test_zne_removes_gate_noise_beyond_shot_noise():
    # X then 20 CNOTs (an identity pair ten times): exactly |10>.  Optimisation level 0 keeps every
    # CNOT and a fixed layout keeps the noise the same on every run.
    def circuit():
        qml.X(0)
        for _ in range(20):
            qml.CNOT([0, 1])
        return qml.probs(wires=[0, 1])

    shots, scales = 200_000, (1, 3, 5)
    dev = device("fake:manila", wires=2, shots=shots, seed=11, mitigation="readout+zne", zne_scales=scales,
                 optimization_level=0, initial_layout=[0, 1])
    p = np.asarray(qml.QNode(circuit, dev.pl, shots=shots)())
    exact = np.array([0.0, 0.0, 1.0, 0.0])
    assert sum(i.operation.num_qubits == 2 for i in dev.pl.last_compiled[0].data) == 20
    v = {k: np.asarray(rows[0][0]) for k, rows in dev.pl.last_variants.items()}
    assert sorted(v) == ["raw", "readout", "readout+zne", "zne"]
    np.testing.assert_array_equal(v["readout+zne"], p)
    tvd = {k: 0.5 * np.abs(q - exact).sum() for k, q in v.items()}
    # Shot noise: Hoeffding per outcome, union bound over 4 outcomes x 3 scales and the calibration
    # (false alarm 1e-9), through the readout inverse (its 1-norm) and the Richardson weights
    # (sum |gamma| = 15/8 + 10/8 + 3/8), plus the unmitigated reference: a TVD difference larger
    # than this cannot come from sampling.
    eps = math.sqrt(math.log(2 * 16 / FALSE_ALARM) / (2 * shots))
    inv_norm = np.prod([np.abs(np.linalg.inv(a)).sum(axis=0).max()
                        for a in dev.pl.readout_calibration.values()])
    noise = 0.5 * 4 * (2 * eps + inv_norm * eps * (3.5 + 1))
    assert tvd["readout"] - tvd["readout+zne"] > noise, (tvd, noise)
    assert tvd["raw"] - tvd["zne"] > 0.5 * 4 * eps * (3.5 + 1), (tvd, noise)
    assert abs(p.sum() - 1) < 1e-12 and p.min() >= 0
