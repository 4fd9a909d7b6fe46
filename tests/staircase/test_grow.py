"""The deep-disentangling engine (qtnn.staircase._grow) against dense numpy references."""

import numpy as np
import pytest

from qtnn.staircase import Staircase, _grow
from qtnn.staircase.circuit import window_order
from qtnn.tn import MPO
from qtnn.tn.linalg import whitening


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
    L = whitening(X, in_f, 0.0)
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
    p = _grow.make_problem(W, 3, 4, whitening(X, 16, 0.0))
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


# ------------------------------------------------------------ disentangle(method="grow")
def test_grow_method_stages_and_errors_match_dense():
    from qtnn.staircase import disentangle

    rng = np.random.default_rng(2)
    W = rng.normal(size=(12, 20))
    res = disentangle(W, 4, 3, max_bond=1, method="grow", refine=30)
    assert res.method == "grow" and (res.U.layers, res.V.layers) == (4, 3)
    assert [(s.U.layers, s.V.layers) for s in res.stages] == [(0, 0), (1, 1), (2, 2), (4, 3)]
    assert res.stages[-1] is res
    errs = [s.error for s in res.stages]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(errs, errs[1:]))
    # Frobenius mode: never worse than plain truncation, and the error is that of to_dense()
    assert res.error <= res.truncation_error
    for s in res.stages:
        A = _dense(4, s.U.gates, "staircase") @ s.M.to_dense() @ _dense(5, s.V.gates, "staircase").T
        np.testing.assert_allclose(s.to_dense(), A[:12, :20], rtol=0, atol=1e-12)
        assert abs(s.error - np.linalg.norm(A[:12, :20] - W) / np.linalg.norm(W)) < 1e-12
        assert s.M.max_bond == 1
    assert [h.kind for h in res.history] == ["grow"] * 4


def test_grow_method_data_aware_activation_error():
    from qtnn.staircase import disentangle

    rng = np.random.default_rng(3)
    W = rng.normal(size=(8, 12))
    X = rng.normal(size=(300, 12)) * np.geomspace(0.05, 3.0, 12)
    res = disentangle(W, 2, 2, max_bond=1, inputs=X, refine=40, damp=0.0)
    assert res.method == "grow"
    A = res.to_dense()
    want = np.linalg.norm((A - W) @ X.T) / np.linalg.norm(W @ X.T)
    assert abs(res.activation_error - want) < 1e-12
    T = MPO.from_dense(W)
    T.truncate(max_bond=1)
    plain = np.linalg.norm((T.to_dense() - W) @ X.T) / np.linalg.norm(W @ X.T)
    assert abs(res.truncation_activation_error - plain) < 1e-12
    # the data-aware fit beats the Frobenius fit on the activations it was given
    frob = disentangle(W, 2, 2, max_bond=1, method="grow", refine=40)
    assert res.activation_error < np.linalg.norm((frob.to_dense() - W) @ X.T) / np.linalg.norm(W @ X.T)
    # damp=0 with these inputs: the objective is exactly the activation error
    assert res.history[-1].error == pytest.approx(res.error, rel=1e-10)


def test_grow_method_is_deterministic():
    from qtnn.staircase import disentangle

    W = np.random.default_rng(4).normal(size=(8, 8))
    a = disentangle(W, 2, 2, max_bond=1, method="grow", refine=20)
    b = disentangle(W, 2, 2, max_bond=1, method="grow", refine=20)
    assert a.error == b.error
    np.testing.assert_array_equal(a.U.gates, b.U.gates)


def test_grow_method_recovers_a_small_planted_layer():
    from qtnn.staircase import disentangle

    U0, V0 = Staircase.random(3, 1, seed=5), Staircase.random(3, 1, seed=6)
    M0 = MPO.random((2,) * 3, (2,) * 3, 1, seed=7)
    W = U0.to_matrix() @ M0.to_dense() @ V0.to_matrix().T
    res = disentangle(W, 1, 1, max_bond=1, method="grow", refine=300)
    assert res.truncation_error > 0.1
    assert res.error < 1e-6


@pytest.mark.parametrize("kw, match", [
    ({"inputs": np.ones((4, 5))}, "inputs must have shape"),
    ({"inputs": np.zeros((4, 8))}, "must not be all zero"),
    ({"inputs": np.full((4, 8), np.nan)}, "finite"),
    ({"inputs": np.ones((4, 8)), "method": "dense"}, "needs method='grow'"),
    ({"layout": "brickwall", "method": "mpo"}, "needs method='grow'"),
    ({"layout": "ladder"}, "layout"),
    ({"damp": -1.0, "method": "grow"}, "damp"),
])
def test_grow_method_bad_arguments(kw, match):
    from qtnn import QtnnError
    from qtnn.staircase import disentangle

    with pytest.raises(QtnnError, match=match):
        disentangle(np.eye(8), 1, 1, max_bond=1, **kw)


def test_grow_method_refuses_complex():
    from qtnn import QtnnError
    from qtnn.staircase import disentangle

    with pytest.raises(QtnnError, match="real"):
        disentangle(np.eye(4) * 1j, 1, 1, max_bond=1, method="grow")


@pytest.mark.parametrize("n", [2, 3, 5, 6])
def test_brickwall_is_a_staircase_with_identity_fillers(n):
    from qtnn.staircase.circuit import brickwall_as_staircase

    g = Staircase.random(n, 3, seed=n).gates
    s = brickwall_as_staircase(g)
    assert s.shape == (6, n - 1, 4, 4)
    np.testing.assert_allclose(_dense(n, s, "staircase"), _dense(n, g, "brickwall"), rtol=0, atol=1e-12)
    # the inverse (descending) order: odd windows first
    inv = brickwall_as_staircase(np.swapaxes(g[::-1], -1, -2), descending=True)
    np.testing.assert_allclose(_dense(n, inv, "staircase"), _dense(n, g, "brickwall").T, rtol=0,
                               atol=1e-12)


def test_grow_method_output_weight():
    from qtnn import QtnnError
    from qtnn.staircase import disentangle

    rng = np.random.default_rng(8)
    W = rng.normal(size=(8, 12))
    X = rng.normal(size=(100, 12))
    P = rng.normal(size=(3, 8)) * 3.0      # only a 3-dimensional view of the outputs matters
    G = P.T @ P
    res = disentangle(W, 1, 1, max_bond=1, inputs=X, output_weight=G, refine=60, damp=0.0)
    plain = disentangle(W, 1, 1, max_bond=1, inputs=X, refine=60, damp=0.0)

    def seen(r):
        return np.linalg.norm(P @ (r.to_dense() - W) @ X.T) / np.linalg.norm(P @ W @ X.T)

    assert seen(res) < seen(plain)
    for bad, match in ((np.ones((7, 7)), "shape"), (-np.eye(8), "positive semi-definite"),
                       (np.triu(np.ones((8, 8))), "symmetric")):
        with pytest.raises(QtnnError, match=match):
            disentangle(W, 1, 1, max_bond=1, output_weight=bad)


def test_grow_method_brickwall_result_is_consistent():
    from qtnn.staircase import disentangle

    W = np.random.default_rng(9).normal(size=(12, 20))
    res = disentangle(W, 3, 2, max_bond=2, layout="brickwall", refine=20)
    assert res.method == "grow" and res.U.layout == res.V.layout == "brickwall"
    A = _dense(4, res.U.gates, "brickwall") @ res.M.to_dense() @ _dense(5, res.V.gates, "brickwall").T
    np.testing.assert_allclose(res.to_dense(), A[:12, :20], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.to_mpo().to_dense(), A[:12, :20], rtol=0, atol=1e-12)
    assert abs(res.error - np.linalg.norm(A[:12, :20] - W) / np.linalg.norm(W)) < 1e-12
    assert res.error <= res.truncation_error


def test_planted_benchmark_gate_families():
    """``gates="o4"`` plants Haar O(4) gates (some of determinant -1), ``"so4"`` the same gates
    moved into SO(4); both build the same-size problem and report the determinant count."""
    from qtnn import QtnnError
    from qtnn.apps.bench_circuits import planted_benchmark

    o4 = planted_benchmark(4, 3, depths=(2,), seeds=3, refine=0)
    so4 = planted_benchmark(4, 3, depths=(2,), seeds=3, refine=0, gates="so4")
    assert o4["gates"] == "o4" and so4["gates"] == "so4"
    assert sum(r["det_minus"] for r in o4["rows"]) > 0
    assert all(r["det_minus"] == 0 for r in so4["rows"])
    # refine=0: no optimisation, so no planted circuit is found (the error is that of the start)
    assert all(r["error"] > 0.1 and not r["recovered"] for r in o4["rows"] + so4["rows"])
    with pytest.raises(QtnnError, match="gates"):
        planted_benchmark(3, 3, depths=(1,), seeds=1, gates="u4")


def test_det_plus_keeps_the_gates_of_determinant_one():
    from qtnn.apps.bench_circuits import _det_plus

    c = Staircase.random(4, 3, seed=11)
    p = _det_plus(c)
    dets = np.linalg.det(c.gates)
    assert np.all(np.linalg.det(p.gates) > 0)
    np.testing.assert_array_equal(p.gates[dets > 0], c.gates[dets > 0])
    flipped = p.gates[dets < 0]
    np.testing.assert_allclose(flipped[..., :, :3], c.gates[dets < 0][..., :, :3])
    np.testing.assert_allclose(flipped[..., :, 3], -c.gates[dets < 0][..., :, 3])
    assert p.layout == c.layout and p.layers == c.layers


# ------------------------------------------------------------------ the SVD start
def _orth(rng, n):
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("r", [1, 2, 4])
def test_fit_isometry_one_gate_is_exact(r):
    """On 2 qubits one gate maps any r basis columns to any r orthonormal columns in one sweep."""
    rng = np.random.default_rng(10 + r)
    target = _orth(rng, 4)[:, :r]
    support = np.array([3, 0, 2, 1])[:r]
    g, overlap = _grow.fit_isometry(2, 1, "staircase", support, target, sweeps=3)
    np.testing.assert_allclose(g[0, 0][:, support], target, rtol=0, atol=1e-12)
    np.testing.assert_allclose(g[0, 0] @ g[0, 0].T, np.eye(4), rtol=0, atol=1e-12)
    assert abs(overlap - 1.0) < 1e-12


@pytest.mark.parametrize("layout", ["staircase", "brickwall"])
def test_fit_isometry_sweeps_never_lose(layout):
    """Each gate update maximises the overlap exactly, so more sweeps never give less; the
    returned overlap is that of the returned gates (dense reference)."""
    rng = np.random.default_rng(11)
    target = _orth(rng, 16)[:12, :3]            # 12 logical rows of 4 qubits, padding rows zero
    support = np.array([0, 5, 9])
    last = -np.inf
    for sweeps in (1, 2, 4, 8):
        g, overlap = _grow.fit_isometry(4, 3, layout, support, target, sweeps, rtol=0.0)
        G = _dense(4, g, layout)
        assert abs(overlap - np.trace(target.T @ G[:12, support]) / 3) < 1e-12
        assert overlap >= last - 1e-12
        last = overlap
    assert last > 0.5


def test_svd_start_is_exact_when_the_circuits_can_express_it():
    """W = G_u M G_v^T with one gate per side and M of rank 2 in product form: the start alone
    (no refinement) reproduces W, since one gate maps M's support onto W's singular vectors."""
    from qtnn.staircase import disentangle

    rng = np.random.default_rng(12)
    M = np.diag([3.0, 0.0, 0.0, 0.0])
    M[2, 1] = 1.25                               # rank 2: singular values 3 and 1.25
    W = _orth(rng, 4) @ M @ _orth(rng, 4).T
    res = disentangle(W, 1, 1, max_bond=1, start="svd", start_rank=2, refine=0)
    assert res.truncation_error > 0.1
    assert res.error < 1e-12
    assert [(s.U.layers, s.V.layers) for s in res.stages] == [(0, 0), (1, 1)]
    assert [h.kind for h in res.history] == ["grow", "svd"]


@pytest.mark.parametrize("layout", ["staircase", "brickwall"])
def test_svd_start_weighted_is_exact_too(layout):
    """With inputs and an output weight (full rank, no damping) the weighted SVD mapped back
    through both factors is still W itself when W has rank 2: the start alone is exact."""
    from qtnn.staircase import disentangle

    rng = np.random.default_rng(14)
    M = np.zeros((4, 4))
    M[1, 3], M[0, 2] = 2.0, 0.5
    W = _orth(rng, 4) @ M @ _orth(rng, 4).T
    X = rng.normal(size=(50, 4)) * np.array([0.2, 1.0, 3.0, 0.7])
    P = rng.normal(size=(4, 4))
    res = disentangle(W, 1, 1, max_bond=1, inputs=X, output_weight=P.T @ P, damp=0.0,
                      start="svd", start_rank=2, refine=0, layout=layout)
    assert res.truncation_activation_error > 0.1
    assert res.error < 1e-10 and res.activation_error < 1e-10


def test_svd_start_data_aware_matches_dense_and_never_loses_to_depth_zero():
    from qtnn.staircase import disentangle

    rng = np.random.default_rng(13)
    W = rng.normal(size=(12, 20)) * np.geomspace(1.0, 0.05, 20)
    X = rng.normal(size=(200, 20)) * np.geomspace(0.1, 2.0, 20)
    res = disentangle(W, 3, 3, max_bond=1, inputs=X, start="svd", start_rank=4, refine=40)
    assert res.method == "grow" and (res.U.layers, res.V.layers) == (3, 3)
    A = _dense(4, res.U.gates, "staircase") @ res.M.to_dense() @ _dense(5, res.V.gates, "staircase").T
    np.testing.assert_allclose(res.to_dense(), A[:12, :20], rtol=0, atol=1e-12)
    want = np.linalg.norm((A[:12, :20] - W) @ X.T) / np.linalg.norm(W @ X.T)
    assert abs(res.activation_error - want) < 1e-12
    assert res.activation_error <= res.stages[0].activation_error * (1 + 1e-12)
    assert res.M.max_bond == 1
    again = disentangle(W, 3, 3, max_bond=1, inputs=X, start="svd", start_rank=4, refine=40)
    np.testing.assert_array_equal(again.V.gates, res.V.gates)


@pytest.mark.parametrize("kw, match", [
    ({"start": "random"}, "start"),
    ({"start": "svd", "start_rank": 3}, "start_rank must be a power of two, got start_rank=3"),
    ({"start": "svd", "start_rank": 16}, "start_rank must be at most 2\\*\\*min"),
    ({"start": "svd", "start_rank": 0}, "start_rank"),
    ({"start": "svd", "method": "dense"}, "start='svd' needs method='grow'"),
    ({"start": "svd", "start_sweeps": -1}, "start_sweeps"),
])
def test_svd_start_bad_arguments(kw, match):
    from qtnn import QtnnError
    from qtnn.staircase import disentangle

    with pytest.raises(QtnnError, match=match):
        disentangle(np.eye(8), 1, 1, max_bond=1, **kw)
