"""Readout mitigation (``device(..., mitigation="readout")``): exact algebra, the identity
calibration changes nothing (same seed, same counts), the correction removes the readout bias of a
device model within a derived bound, and bad options fail in ``device()``."""

from __future__ import annotations

import math

import numpy as np
import pennylane as qml
import pytest

from qtnn import QtnnError
from qtnn.quantum import device
from qtnn.quantum.mitigation import correct, nearest_probability

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
    with pytest.raises(QtnnError, match=r"mitigation='zne' is not supported; valid values: None, 'readout'"):
        device("fake:manila", wires=2, shots=10, mitigation="zne")
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
