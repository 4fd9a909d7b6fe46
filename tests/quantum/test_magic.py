"""Magic-basis parametrisation of O(4): conventions, round trips, torch path (float64, rtol=0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qtnn import QtnnError
from qtnn.staircase.magic import MAGIC, REFLECTION, euler_from_su2, magic_angles, magic_gates, su2_from_euler
from qtnn.tn.linalg import qr_pos

ATOL = 1e-12

S = np.diag([1, 1j])
H = np.array([[1, 1], [1, -1]]) / np.sqrt(2)
I2 = np.eye(2)
CNOT_10 = np.eye(4)[[0, 3, 2, 1]]          # control qubit 1, target qubit 0 (qubit 0 = MSB)


def rz(a):
    return np.diag([np.exp(-0.5j * a), np.exp(0.5j * a)])


def ry(a):
    return np.array([[np.cos(a / 2), -np.sin(a / 2)], [np.sin(a / 2), np.cos(a / 2)]])


def reference_gate(angles, det):
    """The documented convention, written out with explicit Kronecker products."""
    a = rz(angles[2]) @ ry(angles[1]) @ rz(angles[0])
    b = rz(angles[5]) @ ry(angles[4]) @ rz(angles[3])
    g = MAGIC.conj().T @ np.kron(a, b) @ MAGIC
    if det < 0:
        g = g @ np.diag([1, 1, 1, -1])
    return g


def haar_o4(seed):
    return qr_pos(np.random.default_rng(seed).normal(size=(4, 4)))[0]


def test_magic_matrix_is_the_documented_circuit():
    circuit = CNOT_10 @ np.kron(I2, H) @ np.kron(I2, S) @ np.kron(S, I2)
    np.testing.assert_allclose(MAGIC, circuit, rtol=0, atol=1e-15)
    np.testing.assert_allclose(MAGIC.conj().T @ MAGIC, np.eye(4), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(REFLECTION, np.diag([1.0, 1.0, 1.0, -1.0]))


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("det", [1, -1])
def test_magic_gates_matches_explicit_convention(seed, det):
    ang = np.random.default_rng(seed).uniform(-4, 4, size=6)
    g = magic_gates(ang, det)
    ref = reference_gate(ang, det)
    assert np.abs(ref.imag).max() < 1e-15
    np.testing.assert_allclose(g, ref.real, rtol=0, atol=ATOL)
    np.testing.assert_allclose(g @ g.T, np.eye(4), rtol=0, atol=ATOL)
    assert np.linalg.det(g) == pytest.approx(det, abs=1e-12)


def test_first_three_angles_act_on_the_first_qubit():
    """Angles of A only: G = M^dag (A x I) M, and A x I sits on qubit 0 (MSB)."""
    ang = np.array([0.3, 1.1, -0.4, 0.0, 0.0, 0.0])
    a = rz(-0.4) @ ry(1.1) @ rz(0.3)
    np.testing.assert_allclose(magic_gates(ang), (MAGIC.conj().T @ np.kron(a, I2) @ MAGIC).real,
                               rtol=0, atol=ATOL)
    # zero angles: the identity; det -1 alone: exactly CZ
    np.testing.assert_allclose(magic_gates(np.zeros(6)), np.eye(4), rtol=0, atol=1e-15)
    np.testing.assert_allclose(magic_gates(np.zeros(6), -1), np.diag([1, 1, 1, -1.0]), rtol=0, atol=1e-15)


def test_round_trip_haar_many_seeds():
    gates = np.stack([haar_o4(s) for s in range(3000)])
    ang, dets = magic_angles(gates)
    assert ang.shape == (3000, 6) and dets.shape == (3000,)
    np.testing.assert_array_equal(dets, np.sign(np.linalg.det(gates)))
    assert set(np.unique(dets)) == {-1.0, 1.0}
    np.testing.assert_allclose(magic_gates(ang, dets), gates, rtol=0, atol=1e-13)
    # deterministic: the same input gives bit-identical angles
    ang2, _ = magic_angles(gates)
    np.testing.assert_array_equal(ang, ang2)


DEGENERATE = [
    np.zeros(6),
    np.array([0.0, np.pi, 0.0, 0.0, 0.0, 0.0]),                   # theta_A = pi
    np.array([0.3, 1e-9, 0.2, 0.1, np.pi - 1e-12, 0.4]),          # near gimbal lock on both
    np.array([1.0, 1e-15, 2.0, 3.0, np.pi, 1.0]),
    np.array([np.pi, np.pi, np.pi, np.pi, np.pi, np.pi]),
    np.array([2 * np.pi, 0.0, -2 * np.pi, 0.0, 2 * np.pi, 0.0]),   # -identity factors
    np.array([1e-13, 1e-13, 1e-13, -1e-13, 1e-13, 1e-13]),
]


@pytest.mark.parametrize("i", range(len(DEGENERATE)))
@pytest.mark.parametrize("det", [1, -1])
def test_round_trip_near_degenerate_euler(i, det):
    g = magic_gates(DEGENERATE[i], det)
    ang, d = magic_angles(g)
    assert float(d) == det
    np.testing.assert_allclose(magic_gates(ang, d), g, rtol=0, atol=1e-13)


@pytest.mark.parametrize("name,g", [
    ("cnot", np.eye(4)[[0, 1, 3, 2]]), ("swap", np.eye(4)[[0, 2, 1, 3]]),
    ("cz", np.diag([1.0, 1, 1, -1])), ("hh", np.kron(H, H)),
    ("xz", np.kron([[0, 1], [1, 0]], [[1, 0], [0, -1]])),
    ("minus_identity", -np.eye(4)), ("perm", np.eye(4)[[3, 0, 1, 2]]),
])
def test_round_trip_special_gates(name, g):
    ang, d = magic_angles(g)
    np.testing.assert_allclose(magic_gates(ang, d), g, rtol=0, atol=1e-13)


def test_euler_round_trip():
    rng = np.random.default_rng(3)
    for _ in range(200):
        phi, theta, omega = rng.uniform(-3, 3), rng.uniform(0, np.pi), rng.uniform(-3, 3)
        u = su2_from_euler(phi, theta, omega)
        np.testing.assert_allclose(u, rz(omega) @ ry(theta) @ rz(phi), rtol=0, atol=1e-15)
        np.testing.assert_allclose(su2_from_euler(*euler_from_su2(u)), u, rtol=0, atol=1e-14)


def test_torch_matches_numpy_and_is_differentiable():
    rng = np.random.default_rng(0)
    ang = rng.normal(size=(3, 2, 6))
    dets = np.array([[1, -1], [-1, 1], [1, 1]])
    t = torch.tensor(ang, requires_grad=True)
    g = magic_gates(t, dets)
    assert g.dtype == torch.float64 and g.shape == (3, 2, 4, 4)
    np.testing.assert_allclose(g.detach().numpy(), magic_gates(ang, dets), rtol=0, atol=1e-15)
    assert torch.autograd.gradcheck(lambda a: magic_gates(a, dets), (t,), eps=1e-6, atol=1e-8)
    g32 = magic_gates(t.detach().float())
    assert g32.dtype == torch.float32


def test_dets_broadcast_and_batch_shapes():
    ang = np.random.default_rng(1).normal(size=(4, 6))
    g = magic_gates(ang, -1)
    assert g.shape == (4, 4, 4)
    np.testing.assert_allclose(np.linalg.det(g), -np.ones(4), rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad,match", [
    (np.zeros(5), r"angles must have shape \(\.\.\., 6\)"),
    (np.array([np.nan] * 6), "angles must be finite"),
])
def test_bad_angles(bad, match):
    with pytest.raises(QtnnError, match=match):
        magic_gates(bad)
    with pytest.raises(QtnnError, match=match):
        magic_gates(torch.tensor(bad))


def test_bad_dets():
    with pytest.raises(QtnnError, match=r"dets must all be \+1 or -1, got values \[0.5\]"):
        magic_gates(np.zeros((2, 6)), [1, 0.5])
    with pytest.raises(QtnnError, match="dets must have shape"):
        magic_gates(np.zeros((2, 6)), [1, 1, 1])


def test_magic_angles_refuses_non_orthogonal():
    with pytest.raises(QtnnError, match="gates must be real orthogonal"):
        magic_angles(np.ones((4, 4)))
    with pytest.raises(QtnnError, match=r"gates must have shape \(\.\.\., 4, 4\)"):
        magic_angles(np.eye(3))
    with pytest.raises(QtnnError, match="must be real"):
        magic_angles(np.eye(4) * 1j)
