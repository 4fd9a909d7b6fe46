"""MPO disentangling W ~ U M V^T (qtnn.staircase.disentangling) against dense references.

float64, rtol=0.  The reported error comes from
``||W||^2 - 2 Re <W, U M V^T> + ||M||^2``; it matches a dense recomputation to
about ``1e-16 / error`` (relative), hence the ``ERR_ATOL`` below.
"""

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qtnn import QtnnError, QtnnSizeError
from qtnn.staircase import Staircase
from qtnn.staircase.disentangling import Disentangled, disentangle
from qtnn.tn import MPO, MPS

dis_mod = sys.modules["qtnn.staircase.disentangling"]

ERR_ATOL = 1e-10
FAST = dict(sweeps=4, restarts=1, refine=10)


def dense_full(res: Disentangled) -> np.ndarray:
    """U M V^T on the padded space, from Staircase.to_matrix and M.to_dense."""
    return res.U.to_matrix() @ res.M.to_dense() @ res.V.to_matrix().T


def padded(W: np.ndarray) -> np.ndarray:
    po = 2 ** max(1, int(np.ceil(np.log2(W.shape[0]))))
    pi = 2 ** max(1, int(np.ceil(np.log2(W.shape[1]))))
    out = np.zeros((po, pi), dtype=W.dtype)
    out[: W.shape[0], : W.shape[1]] = W
    return out


def check_result(res: Disentangled, W: np.ndarray, max_bond: int) -> None:
    """The invariants every result satisfies, checked against dense linear algebra."""
    Wp = padded(W)
    full = dense_full(res)
    # to_dense is U M V^T (cropped to W's shape)
    np.testing.assert_allclose(res.to_dense(), full[: W.shape[0], : W.shape[1]], rtol=0, atol=1e-12)
    # the reported error is the padded relative Frobenius error
    direct = np.linalg.norm(Wp - full) / np.linalg.norm(Wp)
    assert abs(direct - res.error) <= ERR_ATOL
    assert res.error <= res.truncation_error
    # truncation_error is plain TT-SVD truncation of W, and M respects the bond
    assert res.truncation_error == MPO.from_dense(W).truncate(max_bond=max_bond)
    assert res.M.max_bond <= max_bond
    # history: best so far non-increasing, and the final error is its last value
    bests = [h.best for h in res.history]
    assert all(b1 <= b0 for b0, b1 in zip(bests, bests[1:]))
    assert bests[-1] == res.error
    assert res.history[0].error == res.truncation_error
    assert res.params_after == res.M.num_params + res.U.num_params + res.V.num_params


# ---------------------------------------------------------------- plain truncation
@pytest.mark.parametrize("case", ["mpo", "dense", "padded", "complex", "rect"])
def test_zero_layers_is_plain_truncation_bit_for_bit(case):
    rng = np.random.default_rng(7)
    if case == "mpo":
        W = MPO.random((2,) * 6, (2,) * 6, 8, seed=3)
    elif case == "dense":
        W = rng.normal(size=(64, 64))
    elif case == "padded":
        W = rng.normal(size=(20, 12))
    elif case == "complex":
        W = rng.normal(size=(32, 32)) + 1j * rng.normal(size=(32, 32))
    else:
        W = rng.normal(size=(32, 8))
    ref = W.copy() if isinstance(W, MPO) else MPO.from_dense(W)
    ref_err = ref.truncate(max_bond=3)
    for method in ("dense", "mpo"):
        res = disentangle(W, 0, 0, 3, method=method, restarts=3)
        assert res.error == ref_err
        assert res.truncation_error == ref_err
        assert len(res.M.cores) == len(ref.cores)
        for a, b in zip(res.M.cores, ref.cores):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        assert res.M.shape == ref.padded_shape
        assert res.U.layers == res.V.layers == 0
        assert [h.kind for h in res.history] == ["start"]


# ------------------------------------------------------------ never worse, exact error
@settings(max_examples=12)
@given(st.integers(2, 32), st.integers(2, 32), st.integers(0, 2), st.integers(0, 2),
       st.integers(1, 3), st.sampled_from(["dense", "mpo"]), st.integers(0, 2**31 - 1))
def test_error_never_exceeds_truncation(m, n, d_out, d_in, max_bond, method, seed):
    W = np.random.default_rng(seed).normal(size=(m, n))
    n_out = max(1, int(np.ceil(np.log2(m))))
    n_in = max(1, int(np.ceil(np.log2(n))))
    d_out = d_out if n_out >= 2 else 0
    d_in = d_in if n_in >= 2 else 0
    res = disentangle(W, d_out, d_in, max_bond, method=method, **FAST)
    assert res.U.n_qubits == n_out and res.V.n_qubits == n_in
    assert res.M.max_bond <= max_bond
    assert res.shape == (m, n)
    check_result(res, W, max_bond)


@pytest.mark.parametrize("seed", range(4))
def test_to_dense_and_to_mpo_match_the_factors(seed):
    W = np.random.default_rng(seed).normal(size=(32, 32))
    res = disentangle(W, 2, 1, 2, **FAST)
    check_result(res, W, 2)
    A = res.to_dense()
    np.testing.assert_allclose(res.to_dense(), dense_full(res), rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.to_mpo().to_dense(), A, rtol=0, atol=1e-12)
    capped = res.to_mpo(max_bond=4)
    assert capped.max_bond <= 4 and capped.shape == (32, 32)
    assert res.params_before == 32 * 32


def test_history_records_every_start_and_is_deterministic():
    W = MPO.random((2,) * 5, (2,) * 5, 6, seed=11)
    a = disentangle(W, 1, 1, 2, sweeps=3, restarts=2, refine=5, seed=4)
    b = disentangle(W, 1, 1, 2, sweeps=3, restarts=2, refine=5, seed=4)
    assert [tuple(h) for h in a.history] == [tuple(h) for h in b.history]
    assert np.array_equal(a.U.gates, b.U.gates) and np.array_equal(a.V.gates, b.V.gates)
    assert all(np.array_equal(x, y) for x, y in zip(a.M.cores, b.M.cores))
    assert sorted({h.restart for h in a.history}) == [0, 1, 2]
    assert {h.kind for h in a.history} <= {"start", "sweep", "lbfgs"}
    # per start, the error never increases (gate step monotone, M step accepted only if better)
    for r in range(3):
        errs = [h.error for h in a.history if h.restart == r]
        assert all(e1 <= e0 + 1e-13 for e0, e1 in zip(errs, errs[1:]))
    assert a.params_before == W.num_params


# ------------------------------------------------------------------ planted solutions
def planted(seed: int, n: int = 5) -> np.ndarray:
    """W = U0 M0 V0^T: one-layer Haar staircases, bond-1 (product) M0."""
    U0 = Staircase.random(n, 1, seed=1000 + seed)
    V0 = Staircase.random(n, 1, seed=2000 + seed)
    M0 = MPO.random((2,) * n, (2,) * n, 1, seed=3000 + seed)
    return U0.to_matrix() @ M0.to_dense() @ V0.to_matrix().T


def test_planted_one_layer_staircases_are_recovered():
    errs, truncs = [], []
    for seed in range(10):
        W = planted(seed)
        res = disentangle(W, 1, 1, 1)
        errs.append(res.error)
        truncs.append(res.truncation_error)
        assert res.error <= res.truncation_error
    print("planted 5+5 qubits, D=1, max_bond=1: truncation errors",
          np.array2string(np.array(truncs), precision=3))
    print("planted 5+5 qubits, D=1, max_bond=1: disentangled errors",
          np.array2string(np.array(errs), precision=2))
    assert min(truncs) > 0.1
    assert sum(e < 1e-4 for e in errs) >= 8


def test_planted_without_refinement_still_beats_truncation():
    # the plain alternating scheme (sweeps only) is slow near the optimum but always helps
    W = planted(0)
    res = disentangle(W, 1, 1, 1, refine=0, restarts=0, sweeps=30)
    assert res.error < 0.1 * res.truncation_error
    assert {h.kind for h in res.history} <= {"start", "sweep"}


# --------------------------------------------------------------- dense vs MPO path
@pytest.mark.parametrize("shape,layers,max_bond,k", [((32, 32), (2, 2), 2, 2),
                                                     ((64, 16), (2, 1), 3, 2),
                                                     ((16, 16), (1, 1), 2, 3)])
def test_dense_and_mpo_paths_agree(shape, layers, max_bond, k):
    W = np.random.default_rng(sum(shape)).normal(size=shape)
    kw = dict(sweeps=6, restarts=1, refine=0, tol=0.0, k=k)
    a = disentangle(W, *layers, max_bond, method="dense", **kw)
    b = disentangle(W, *layers, max_bond, method="mpo", **kw)
    assert (a.method, b.method) == ("dense", "mpo")
    assert len(a.history) == len(b.history)
    for x, y in zip(a.history, b.history):
        assert abs(x.error - y.error) <= 1e-12
    np.testing.assert_allclose(a.U.gates, b.U.gates, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a.V.gates, b.V.gates, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a.to_dense(), b.to_dense(), rtol=0, atol=1e-10)
    # with the L-BFGS refinement too (longer runs amplify round-off a little)
    kw["refine"] = 15
    a = disentangle(W, *layers, max_bond, method="dense", **kw)
    b = disentangle(W, *layers, max_bond, method="mpo", **kw)
    assert abs(a.error - b.error) <= 1e-8
    np.testing.assert_allclose(a.to_dense(), b.to_dense(), rtol=0, atol=1e-7)
    check_result(b, W, max_bond)


def test_mpo_path_at_24_qubits_never_forms_dense_matrices(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("dense matrix formed")

    monkeypatch.setattr(dis_mod, "mpo_full_dense", refuse)
    monkeypatch.setattr(MPO, "to_dense", refuse)
    monkeypatch.setenv("QTNN_MAX_BYTES", str(64 * 1024**2))  # a 2^12 x 2^12 matrix is 128 MiB
    W = MPO.random((2,) * 12, (2,) * 12, 8, seed=5)
    res = disentangle(W, 1, 1, 4, sweeps=3, restarts=1, refine=10)
    assert res.method == "mpo"
    assert res.error < res.truncation_error
    assert res.U.n_qubits == res.V.n_qubits == 12 and res.M.max_bond <= 4
    with pytest.raises(QtnnSizeError, match="dense 4096 x 4096"):
        res.to_dense()
    # the reported error is exact: recompute <W, U M V^T> from an exact MPO of U M V^T
    A = res.to_mpo()  # exact (no cap)
    ov = W.as_mps().overlap(A.as_mps())
    w2, m2 = W.norm() ** 2, res.M.norm() ** 2
    err = np.sqrt(max(w2 - 2 * np.real(ov) + m2, 0.0) / w2)
    assert abs(err - res.error) <= 1e-10
    assert abs(A.norm() - res.M.norm()) <= 1e-10


# ----------------------------------------------------------------- shapes and dtypes
@pytest.mark.parametrize("method", ["dense", "mpo"])
def test_rectangular_weight(method):
    W = np.random.default_rng(3).normal(size=(32, 8))
    res = disentangle(W, 2, 1, 2, method=method, **FAST)
    assert (res.U.n_qubits, res.V.n_qubits) == (5, 3)
    assert res.M.out_dims == (2,) * 5 and res.M.in_dims == (2, 2, 2, 1, 1)
    check_result(res, W, 2)
    Wt = np.random.default_rng(4).normal(size=(8, 32))
    res_t = disentangle(Wt, 1, 2, 2, method=method, **FAST)
    assert (res_t.U.n_qubits, res_t.V.n_qubits) == (3, 5)
    check_result(res_t, Wt, 2)


@pytest.mark.parametrize("method", ["dense", "mpo"])
def test_complex_weight_gives_unitary_gates(method):
    rng = np.random.default_rng(9)
    W = rng.normal(size=(16, 16)) + 1j * rng.normal(size=(16, 16))
    res = disentangle(W, 1, 2, 2, method=method, **FAST)
    assert res.U.is_complex and res.V.is_complex
    assert np.iscomplexobj(res.M.cores[0])
    for g in res.V.gates.reshape(-1, 4, 4):
        np.testing.assert_allclose(g.conj().T @ g, np.eye(4), rtol=0, atol=1e-12)
    check_result(res, W, 2)
    assert res.error < res.truncation_error


def test_real_weight_gives_real_orthogonal_gates():
    W = np.random.default_rng(2).normal(size=(16, 16))
    res = disentangle(W, 2, 2, 2, **FAST)
    assert not res.U.is_complex and res.U.gates.dtype == np.float64
    for g in res.U.gates.reshape(-1, 4, 4):
        np.testing.assert_allclose(g.T @ g, np.eye(4), rtol=0, atol=1e-12)


def test_padded_weight_error_is_measured_on_the_padded_matrix():
    W = np.random.default_rng(5).normal(size=(20, 12))
    res = disentangle(W, 1, 1, 2, **FAST)
    check_result(res, W, 2)
    block = np.linalg.norm(W - res.to_dense()) / np.linalg.norm(W)
    assert block <= res.error + 1e-12  # the part outside the block only adds error


def test_one_qubit_side_and_wide_gates():
    W = np.random.default_rng(6).normal(size=(16, 2))
    res = disentangle(W, 2, 0, 1, **FAST)
    assert res.V.n_qubits == 1 and res.V.layers == 0
    check_result(res, W, 1)
    W3 = np.random.default_rng(7).normal(size=(16, 16))
    res3 = disentangle(W3, 1, 1, 2, k=3, **FAST)
    assert res3.U.k == 3 and res3.U.gates.shape == (1, 2, 8, 8)
    check_result(res3, W3, 2)


def test_dense_path_refuses_over_the_memory_limit(monkeypatch):
    monkeypatch.setenv("QTNN_MAX_BYTES", str(2**20))
    W = MPO.random((2,) * 8, (2,) * 8, 2, seed=0)
    with pytest.raises(QtnnSizeError, match="dense path"):
        disentangle(W, 1, 1, 2, method="dense")


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,match", [
    (dict(out_layers=-1), "out_layers must be an integer >= 0, got -1"),
    (dict(in_layers=-2), "in_layers must be an integer >= 0, got -2"),
    (dict(max_bond=0), "max_bond must be an integer >= 1, got 0"),
    (dict(sweeps=-1), "sweeps must be an integer >= 0, got -1"),
    (dict(restarts=-1), "restarts must be an integer >= 0, got -1"),
    (dict(refine=-3), "refine must be an integer >= 0, got -3"),
    (dict(tol=-0.5), "tol must be a real number >= 0, got -0.5"),
    (dict(tol=float("nan")), "tol must be a finite real number, got nan"),
    (dict(method="svd"), "method must be one of 'auto', 'dense', 'mpo', 'grow'; got 'svd'"),
    (dict(k=0), "k must be an integer >= 1, got 0"),
    (dict(k=5, out_layers=1), "out_layers must be 0 when W has fewer than k=5 qubits"),
    (dict(work_bond=0), "work_bond must be a positive integer or None, got 0"),
])
def test_bad_arguments(kwargs, match):
    args = dict(W=np.eye(16), out_layers=1, in_layers=1, max_bond=2)
    args.update(kwargs)
    with pytest.raises(QtnnError, match=match.replace("(", r"\(").replace(")", r"\)")):
        disentangle(**args)


def test_bad_weights():
    with pytest.raises(QtnnError, match="W must be finite"):
        disentangle(np.array([[1.0, np.nan], [0.0, 1.0]]), 0, 0, 1)
    with pytest.raises(QtnnError, match="W must be a 2-d array, got shape"):
        disentangle(np.ones(8), 0, 0, 1)
    with pytest.raises(QtnnError, match=r"every out_dims entry 2.*got out_dims=\(4, 4\)"):
        disentangle(MPO.from_dense(np.eye(16), out_dims=(4, 4), in_dims=(4, 4)), 1, 1, 2)
    with pytest.raises(QtnnError, match=r"got in_dims=\(1, 2\)"):
        disentangle(MPO([np.ones((1, 2, 1, 1)), np.ones((1, 2, 2, 1))]), 0, 0, 1)
    with pytest.raises(QtnnError, match="W must be an MPO or a 2-d array, got MPS"):
        disentangle(MPS.from_dense(np.ones(8)), 0, 0, 1)
    with pytest.raises(QtnnError, match="seed must be an integer"):
        disentangle(np.eye(4), 1, 1, 1, seed=1.5)


def test_zero_weight_is_returned_as_is():
    res = disentangle(np.zeros((8, 8)), 1, 1, 1)
    assert res.error == res.truncation_error == 0.0
    assert np.array_equal(res.to_dense(), np.zeros((8, 8)))
