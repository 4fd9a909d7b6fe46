"""The deep-disentangling engine (qtnn.staircase._grow) against dense numpy references."""

import numpy as np
import pytest

from qtnn.staircase import Staircase, _grow
from qtnn.staircase.circuit import window_order
from qtnn.tn import MPO


def _dense(n, gates, layout):
    """The circuit matrix from the gates, built gate by gate with np.kron (an independent reference)."""
    G = np.eye(2**n)
    for l_ in range(gates.shape[0]):
        for j in window_order(n, 2, layout):
            G = np.kron(np.kron(np.eye(2**j), gates[l_, j]), np.eye(2 ** (n - j - 2))) @ G
    return G


def test_window_order_brickwall():
    assert window_order(5, layout="brickwall") == (0, 2, 1, 3)
    assert window_order(5) == (0, 1, 2, 3)
    assert window_order(5, layout="brickwall", descending=True) == (3, 1, 2, 0)


@pytest.mark.parametrize("layout", ["staircase", "brickwall"])
@pytest.mark.parametrize("shape", [(8, 24), (12, 5)])
def test_residual_matches_dense(layout, shape):
    rng = np.random.default_rng(0)
    out_f, in_f = shape
    no, ni = int(np.ceil(np.log2(out_f))), int(np.ceil(np.log2(in_f)))
    W = rng.normal(size=shape)
    X = rng.normal(size=(40, in_f))
    L = _grow.whitening(X, in_f, 0.0)
    np.testing.assert_allclose(L @ L.T, X.T @ X / 40, rtol=0, atol=1e-12)
    p = _grow.make_problem(W, no, ni, L)
    gu = Staircase.random(no, 2, seed=1).gates
    gv = Staircase.random(ni, 3, seed=2).gates
    n = max(no, ni)
    M = MPO.random((2,) * no + (1,) * (n - no), (2,) * ni + (1,) * (n - ni), 2, seed=3)
    f = _grow.objective_value(p, gu, gv, M.cores, layout)
    A = _dense(no, gu, layout) @ M.to_dense() @ _dense(ni, gv, layout).T
    E = (A[:out_f, :in_f] - W) @ L
    assert abs(f - np.sum(E**2) / np.sum((W @ L) ** 2)) < 1e-12


def test_growth_never_increases_the_error():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(8, 16))
    X = rng.normal(size=(64, 16)) * np.linspace(0.1, 2.0, 16)
    p = _grow.make_problem(W, 3, 4, _grow.whitening(X, 16, 0.0))
    M = MPO.from_dense(W)
    M.truncate(max_bond=1)
    r = _grow.refine(p, np.zeros((0, 2, 4, 4)), np.zeros((0, 3, 4, 4)), M.cores, "brickwall", 30, 1e-12)
    errs = [r.f]
    for _ in range(3):
        gu = np.concatenate([r.gu, np.broadcast_to(np.eye(4), (1, 2, 4, 4))])
        gv = np.concatenate([r.gv, np.broadcast_to(np.eye(4), (1, 3, 4, 4))])
        # the new identity layers start exactly at the previous optimum
        assert _grow.objective_value(p, gu, gv, r.cores, "brickwall") == pytest.approx(r.f, rel=1e-12)
        r = _grow.refine(p, gu, gv, r.cores, "brickwall", 30, 1e-12)
        errs.append(r.f)
        for g in (r.gu, r.gv):
            np.testing.assert_allclose(np.swapaxes(g, -1, -2) @ g, np.broadcast_to(np.eye(4), g.shape),
                                       rtol=0, atol=1e-12)
    assert all(b <= a for a, b in zip(errs, errs[1:]))
    assert errs[-1] < errs[0]
    # the reported objective is the objective at the returned point
    assert _grow.objective_value(p, r.gu, r.gv, r.cores, "brickwall") == pytest.approx(r.f, rel=1e-10)
