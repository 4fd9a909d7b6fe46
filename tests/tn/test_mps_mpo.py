"""MPS / MPO against dense references (float64, rtol=0)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from qtnn import QtnnError, QtnnTypeError
from qtnn.tn import MPO, MPS, balanced_dims, tt_svd
from qtnn.tn.contract import MPOApplyPlan, execute_mpo_apply, plan_mpo_apply

ATOL = 1e-12


def dense_schmidt_entropies(psi, dims, base=2.0):
    out = []
    for k in range(1, len(dims)):
        a = psi.reshape(math.prod(dims[:k]), -1)
        s = np.linalg.svd(a, compute_uv=False)
        p = s**2 / np.sum(s**2)
        p = p[p > 0]
        out.append(float(-(p * np.log(p)).sum() / np.log(base)))
    return np.array(out)


# ----------------------------------------------------------------- round trips
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_mpo_round_trip_any_shape(m, n, seed):
    W = np.random.default_rng(seed).normal(size=(m, n))
    mpo = MPO.from_dense(W)
    assert mpo.shape == (m, n)
    np.testing.assert_allclose(mpo.to_dense(), W, rtol=0, atol=ATOL * max(1, np.abs(W).max()))
    x = np.random.default_rng(seed + 1).normal(size=(3, n))
    np.testing.assert_allclose(mpo.apply(x), x @ W.T, rtol=0, atol=1e-11)


@given(st.integers(1, 300), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_mps_round_trip_any_length(n, cores, seed):
    v = np.random.default_rng(seed).normal(size=n)
    for dims in (None, cores):
        psi = MPS.from_dense(v, dims=dims)
        np.testing.assert_allclose(psi.to_dense(), v, rtol=0, atol=ATOL)


@pytest.mark.parametrize("shape,od,idm", [((12, 30), 3, 3), ((64, 64), (4, 4, 4), (4, 4, 4)),
                                         ((6, 7), (3, 2), (7, 1)), ((5, 9), None, 2)])
def test_mpo_round_trip_given_dims(rng, shape, od, idm):
    W = rng.normal(size=shape)
    mpo = MPO.from_dense(W, out_dims=od, in_dims=idm)
    np.testing.assert_allclose(mpo.to_dense(), W, rtol=0, atol=ATOL)
    assert len(mpo.out_dims) == len(mpo.in_dims)


def test_complex_round_trip(rng):
    W = rng.normal(size=(8, 4)) + 1j * rng.normal(size=(8, 4))
    np.testing.assert_allclose(MPO.from_dense(W).to_dense(), W, rtol=0, atol=ATOL)


def test_padding_layout():
    mpo = MPO.from_dense(np.ones((6, 10)))
    assert mpo.out_dims == (2, 2, 2, 1) and mpo.in_dims == (2, 2, 2, 2)
    assert mpo.padded_shape == (8, 16) and mpo.shape == (6, 10)


def test_balanced_dims():
    assert balanced_dims(4096, 4) == (8, 8, 8, 8)
    assert balanced_dims(384, 3) == (8, 8, 6)
    assert balanced_dims(1536, 3) == (16, 12, 8)
    assert balanced_dims(10, 2) == (4, 3)  # 10 = 5 x 2 is too uneven: padded to 12
    d = balanced_dims(97, 2)  # prime: padded to a product that splits evenly
    assert math.prod(d) >= 97 and max(d) <= 2 * min(d)


# ------------------------------------------------------------------ truncation
@given(st.integers(2, 5), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_tt_svd_error_equals_discarded_norm(n, bond, seed):
    v = np.random.default_rng(seed).normal(size=2**n)
    cores, disc = tt_svd(v, (2,) * n, max_bond=bond)
    approx = MPS(cores).to_dense()
    err = np.linalg.norm(v - approx)
    assert abs(err - math.sqrt(sum(d * d for d in disc))) <= 1e-12 * np.linalg.norm(v)
    assert max(MPS(cores).bond_dims) <= bond


@given(st.integers(2, 4), st.floats(0.0, 0.95), st.integers(0, 2**31 - 1))
def test_cutoff_never_exceeded(n, cutoff, seed):
    W = np.random.default_rng(seed).normal(size=(2**n, 2**n))
    mpo = MPO.from_dense(W, cutoff=cutoff)
    rel = np.linalg.norm(mpo.to_dense() - W) / np.linalg.norm(W)
    assert rel <= cutoff + 1e-12


@given(st.integers(2, 6), st.integers(1, 4), st.floats(0.0, 0.9), st.integers(0, 2**31 - 1))
def test_truncate_returns_exact_relative_error(n, bond, cutoff, seed):
    psi = MPS.random(n, 8, seed=seed, normalize=False)
    dense = psi.to_dense()
    err = psi.truncate(max_bond=bond, cutoff=cutoff)
    rel = np.linalg.norm(psi.to_dense() - dense) / np.linalg.norm(dense)
    assert abs(rel - err) <= 1e-12
    assert psi.max_bond <= bond
    assert psi.center == 0


def test_truncate_cutoff_only_bound(rng):
    W = rng.normal(size=(16, 16))
    mpo = MPO.from_dense(W)
    err = mpo.truncate(cutoff=0.3)
    assert err <= 0.3
    assert abs(np.linalg.norm(mpo.to_dense() - W) / np.linalg.norm(W) - err) <= 1e-12


def test_truncate_padded_error_bounds_logical(rng):
    W = rng.normal(size=(6, 10))
    mpo = MPO.from_dense(W)
    err = mpo.truncate(max_bond=2)
    assert np.linalg.norm(mpo.to_dense() - W) / np.linalg.norm(W) <= err + 1e-12


# ------------------------------------------------------------- canonical forms
@pytest.mark.parametrize("center", [0, 2, 4, -1])
def test_canonical_cores_are_isometries(center):
    mpo = MPO.random((2, 3, 2, 2, 2), (2, 2, 3, 2, 1), 6, seed=3)
    dense = mpo.to_dense()
    mpo.canonicalize(center)
    c = center % mpo.num_sites
    for k in range(mpo.num_sites):
        if k < c:
            assert mpo.is_left_orthonormal(k, atol=1e-12)
        elif k > c:
            assert mpo.is_right_orthonormal(k, atol=1e-12)
    np.testing.assert_allclose(mpo.to_dense(), dense, rtol=0, atol=1e-12)


def test_canonical_form_is_deterministic():
    a = MPS.random(7, 5, seed=2).canonicalize(3)
    b = MPS.random(7, 5, seed=2).canonicalize(3)
    assert a == b


# ------------------------------------------------------------------ entropies
@given(st.integers(2, 7), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_entropies_match_dense_schmidt(n, bond, seed):
    psi = MPS.random(n, bond, seed=seed)
    ref = dense_schmidt_entropies(psi.to_dense(), psi.phys_dims)
    np.testing.assert_allclose(psi.entropies(), ref, rtol=0, atol=1e-10)


def test_entropies_mpo_and_known_values(rng):
    bell = MPS.from_dense(np.array([1.0, 0, 0, 1.0]))
    np.testing.assert_allclose(bell.entropies(), [1.0], rtol=0, atol=1e-12)
    assert MPS.product_state([0, 1, 1]).entropies().tolist() == [0.0, 0.0]
    W = rng.normal(size=(8, 8))
    mpo = MPO.from_dense(W)
    # vectorise site by site: (o0 i0, o1 i1, o2 i2)
    vec = W.reshape(2, 2, 2, 2, 2, 2).transpose(0, 3, 1, 4, 2, 5).reshape(-1)
    np.testing.assert_allclose(mpo.entropies(), dense_schmidt_entropies(vec, (4, 4, 4)),
                               rtol=0, atol=1e-10)


# ------------------------------------------------------------------- products
def test_mpo_times_mps_and_mpo(rng):
    A = rng.normal(size=(16, 8))
    B = rng.normal(size=(8, 32))
    v = rng.normal(size=8)
    ma = MPO.from_dense(A, out_dims=(2, 2, 2, 2, 1), in_dims=(2, 2, 2, 1, 1))
    mb = MPO.from_dense(B, out_dims=(2, 2, 2, 1, 1), in_dims=(2, 2, 2, 2, 2))
    np.testing.assert_allclose(ma.dot(mb).to_dense(), A @ B, rtol=0, atol=1e-11)
    np.testing.assert_allclose((ma @ mb).to_dense(), A @ B, rtol=0, atol=1e-11)
    psi = MPS.from_dense(v, dims=(2, 2, 2, 1, 1))
    np.testing.assert_allclose(ma.dot(psi).to_dense()[:16], A @ v, rtol=0, atol=1e-11)
    comp = ma.dot(mb, max_bond=2)
    assert comp.max_bond <= 2
    np.testing.assert_allclose(ma.T.to_dense(), A.T, rtol=0, atol=1e-12)


def test_overlap_and_norm(rng):
    a, b = MPS.random(6, 3, seed=1, complex=True), MPS.random(6, 4, seed=2, complex=True)
    assert abs(a.overlap(b) - np.vdot(a.to_dense(), b.to_dense())) < 1e-12
    assert abs(a.norm() - 1) < 1e-12


# -------------------------------------------------------------- apply / plans
@pytest.mark.parametrize("batch", [1, 5, 300])
@pytest.mark.parametrize("strategy,split,right_first",
                         [("split", 0, True), ("split", 1, True), ("split", 1, False),
                          ("split", 2, False), ("dense", 1, False), ("einsum", 0, False)])
def test_every_plan_matches_dense(rng, batch, strategy, split, right_first):
    W = rng.normal(size=(27, 64))
    mpo = MPO.from_dense(W, out_dims=(3, 3, 3, 1), in_dims=(4, 4, 2, 2))
    x = rng.normal(size=(batch, 64))
    plan = MPOApplyPlan(strategy, split, right_first, 0.0)
    y = execute_mpo_apply(plan, x, mpo.cores)
    np.testing.assert_allclose(y, x @ W.T, rtol=0, atol=1e-11)
    yt = execute_mpo_apply(plan, torch.tensor(x), [torch.tensor(c) for c in mpo.cores])
    np.testing.assert_allclose(yt.numpy(), x @ W.T, rtol=0, atol=1e-11)


@pytest.mark.parametrize("strategy,split,right_first",
                         [("split", 0, True), ("split", 1, True), ("split", 1, False),
                          ("dense", 1, False), ("einsum", 0, False)])
def test_every_plan_gradcheck(rng, strategy, split, right_first):
    # gradients of the (chunked, custom-backward) torch kernels, on a small operator
    mpo = MPO.from_dense(rng.normal(size=(6, 8)), out_dims=(3, 2, 1), in_dims=(2, 2, 2))
    plan = MPOApplyPlan(strategy, split, right_first, 0.0)
    xt = torch.tensor(rng.normal(size=(3, 8)), requires_grad=True)
    cores = [torch.tensor(c, requires_grad=True) for c in mpo.cores]
    assert torch.autograd.gradcheck(lambda a, *cs: execute_mpo_apply(plan, a, cs), (xt, *cores))


@pytest.mark.parametrize("strategy,split,right_first",
                         [("split", 0, True), ("split", 1, True), ("split", 1, False),
                          ("dense", 1, False), ("einsum", 0, False)])
def test_every_plan_adds_the_bias(rng, strategy, split, right_first):
    # the bias goes into the plan's last product (the kernel's output chunks, F.linear); values
    # against the dense reference in numpy and torch, gradients (bias included) by gradcheck
    from qtnn.tn.contract import prepare_mpo_apply

    W = rng.normal(size=(27, 64))
    mpo = MPO.from_dense(W, out_dims=(3, 3, 3, 1), in_dims=(4, 4, 2, 2))
    x, bias = rng.normal(size=(5, 64)), rng.normal(size=27)
    plan = MPOApplyPlan(strategy, split, right_first, 0.0)
    np.testing.assert_allclose(execute_mpo_apply(plan, x, mpo.cores, bias), x @ W.T + bias, rtol=0, atol=1e-11)
    cores = [torch.tensor(c) for c in mpo.cores]
    prepared = prepare_mpo_apply(plan, cores)
    for xs in (x, x[:2]):      # one preparation, many inputs
        yt = prepared(torch.tensor(xs), torch.tensor(bias))
        np.testing.assert_allclose(yt.numpy(), xs @ W.T + bias, rtol=0, atol=1e-11)
    small = MPO.from_dense(rng.normal(size=(6, 8)), out_dims=(3, 2, 1), in_dims=(2, 2, 2))
    xt = torch.tensor(rng.normal(size=(3, 8)), requires_grad=True)
    bt = torch.tensor(rng.normal(size=6), requires_grad=True)
    cs = [torch.tensor(c, requires_grad=True) for c in small.cores]
    assert torch.autograd.gradcheck(lambda a, b, *c: execute_mpo_apply(plan, a, c, b), (xt, bt, *cs))


@pytest.mark.parametrize("seconds,expected", [(0.0, 3), (1e9, 6)])
def test_calibration_adds_rounds_while_they_are_quick(monkeypatch, seconds, expected):
    # at least CALIBRATION_ROUNDS timed rounds; more, up to CALIBRATION_MAX_ROUNDS, while the
    # timed rounds took less than CALIBRATION_SECONDS; every candidate once per round, after a warm-up
    import qtnn.tn.contract as contract
    from qtnn.tn.contract import candidate_plans, clear_measured_plans, measured_plan

    runs: dict[int, int] = {}
    real = contract.prepare_mpo_apply

    def counting(plan, cores):
        prepared = real(plan, cores)

        def run(x, bias=None):
            runs[id(prepared)] = runs.get(id(prepared), 0) + 1
            return prepared(x, bias)
        return run

    monkeypatch.setattr(contract, "prepare_mpo_apply", counting)
    monkeypatch.setattr(contract, "CALIBRATION_SECONDS", seconds)
    monkeypatch.setattr(contract, "CALIBRATION_MAX_ROUNDS", 6)
    shapes = [(1, 4, 4, 3), (3, 4, 4, 3), (3, 2, 2, 1)]
    clear_measured_plans()
    try:
        measured_plan(16, shapes, dtype=torch.float64, grad=False)
    finally:
        clear_measured_plans()
    assert sorted(runs.values()) == [1 + expected] * len(candidate_plans(16, shapes))


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("split_time,split_wins", [(0.95, False), (0.8, False), (0.7, True)])
def test_inference_keeps_the_dense_plan_unless_another_is_clearly_faster(monkeypatch, grad, split_time,
                                                                       split_wins):
    # a fake clock: every dense run takes 1.0, every other 1.5, the best split plan ``split_time``;
    # without gradients the split plan must beat the dense one by INFER_DENSE_MARGIN (0.75), in
    # training the least time decides
    import time

    import qtnn.tn.contract as contract
    from qtnn.tn.contract import candidate_plans, clear_measured_plans, measured_plan

    shapes = [(1, 8, 8, 16), (16, 8, 8, 16), (16, 4, 4, 1)]
    cands = candidate_plans(32, shapes)
    split = next(p for p in cands if p.strategy == "split")
    assert any(p.strategy == "dense" for p in cands)
    cost = {p: 1.0 if p.strategy == "dense" else split_time if p == split else 1.5 for p in cands}
    clock = [0.0]

    def execute(plan, x, cores, bias=None):
        clock[0] += cost[plan]
        return (x[:, :1] * cores[0].sum()).expand(x.shape[0], 256)

    def prepare(plan, cores):
        return lambda x, bias=None: clock.__setitem__(0, clock[0] + cost[plan])

    monkeypatch.setattr(contract, "execute_mpo_apply", execute)
    monkeypatch.setattr(contract, "prepare_mpo_apply", prepare)
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    clear_measured_plans()
    try:
        got = measured_plan(32, shapes, dtype=torch.float64, grad=grad)
    finally:
        clear_measured_plans()
    assert got == (split if split_wins or grad else next(p for p in cands if p.strategy == "dense"))


def test_chunked_kernel_matches_unchunked(monkeypatch, rng):
    import qtnn.tn.contract as contract

    mpo = MPO.from_dense(rng.normal(size=(64, 64)), out_dims=2, in_dims=2)
    x = torch.tensor(rng.normal(size=(37, 64)), requires_grad=True)
    plan = MPOApplyPlan("split", 0, True, 0.0)
    outs, grads = [], []
    for nbytes in (1, 1 << 30):  # one sample per chunk / the whole batch at once
        monkeypatch.setattr(contract, "CHUNK_BYTES", nbytes)
        x.grad = None
        y = execute_mpo_apply(plan, x, [torch.tensor(c) for c in mpo.cores])
        (y * torch.arange(64.0, dtype=y.dtype)).sum().backward()
        outs.append(y.detach())
        grads.append(x.grad.clone())
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("nbytes", [1, 700, 1 << 30])  # one row a chunk / several / all at once
def test_chunked_dense_weight_matches_dense(monkeypatch, rng, dtype, nbytes):
    # the weight built in row chunks (forced: no size threshold) equals the MPO's dense matrix,
    # and its gradients equal those of the whole product followed by the permutation
    import qtnn.tn.contract as contract

    mpo = MPO.random(out_dims=(3, 2, 4), in_dims=(2, 5, 3), bond=3, seed=1)
    wd = mpo.to_dense()
    base = [torch.tensor(c, dtype=dtype) for c in mpo.cores]
    if dtype.is_complex:
        base = [c * torch.exp(1j * torch.tensor(rng.normal(size=c.shape))) for c in base]
        wd = contract.dense_weight(0, [c.numpy() for c in base])
    g = torch.tensor(rng.normal(size=wd.shape), dtype=dtype)
    for split in range(2):
        ref = [c.clone().requires_grad_() for c in base]
        w_ref = contract.dense_weight(split, ref)           # below the threshold: whole product
        (w_ref.conj() * g).real.sum().backward()
        monkeypatch.setattr(contract, "DENSE_CHUNK_MIN_BYTES", 0)
        monkeypatch.setattr(contract, "DENSE_CHUNK_BYTES", nbytes)
        cores = [c.clone().requires_grad_() for c in base]
        w = contract.dense_weight(split, cores)
        assert w.shape == (24, 30) and w.is_contiguous()
        np.testing.assert_allclose(w.detach().numpy(), wd, rtol=0, atol=1e-13)
        (w.conj() * g).real.sum().backward()
        for a, b in zip(cores, ref):
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)
        monkeypatch.setattr(contract, "DENSE_CHUNK_MIN_BYTES", 1 << 60)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_chunked_dense_weight_gradcheck(monkeypatch, dtype):
    import qtnn.tn.contract as contract

    monkeypatch.setattr(contract, "DENSE_CHUNK_MIN_BYTES", 0)
    monkeypatch.setattr(contract, "DENSE_CHUNK_BYTES", 200)   # rows of 6 x 2 x 1 entries: 2 a chunk in float64
    mpo = MPO.random(out_dims=(3, 2, 2), in_dims=(2, 3, 1), bond=2, seed=2)
    cores = [torch.tensor(c, dtype=dtype, requires_grad=True) for c in mpo.cores]
    assert torch.autograd.gradcheck(lambda *cs: contract.dense_weight(1, list(cs)), cores)


def test_chunked_dense_weight_is_used_from_its_size_on(monkeypatch, rng):
    # the threshold counts the weight's bytes; numpy cores always take the whole product
    import qtnn.tn.contract as contract

    mpo = MPO.random(out_dims=(4, 4), in_dims=(4, 4), bond=2, seed=0)
    calls = []
    kernel = contract._dense_kernel()
    monkeypatch.setattr(contract, "_dense_kernel", lambda: lambda *a: calls.append(1) or kernel(*a))
    monkeypatch.setattr(contract, "DENSE_CHUNK_MIN_BYTES", 256 * 8)
    contract.dense_weight(0, [torch.tensor(c) for c in mpo.cores])
    contract.dense_weight(0, [torch.tensor(c, dtype=torch.float32) for c in mpo.cores])
    contract.dense_weight(0, mpo.cores)
    assert calls == [1]


@pytest.mark.parametrize("right_first", [True, False])
def test_parallel_chunk_groups_match_dense(monkeypatch, rng, right_first):
    # chunks run in groups on two threads (forced: no FLOP threshold, 3 samples a chunk); every
    # output and gradient equals the float64 dense reference, and torch's thread count is restored
    import qtnn.tn.contract as contract

    monkeypatch.setattr(contract, "PARALLEL_MIN_FLOPS", 0)
    monkeypatch.setattr(contract, "CHUNK_BYTES", 3 * 8 * 32 * 4 * 2)
    W = rng.normal(size=(32, 32))
    mpo = MPO.from_dense(W, out_dims=2, in_dims=2, max_bond=4)
    Wd = mpo.to_dense()
    plan = MPOApplyPlan("split", 0, right_first, 0.0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.tensor(rng.normal(size=(37, 32)), requires_grad=True)
        cores = [torch.tensor(c, requires_grad=True) for c in mpo.cores]
        y = execute_mpo_apply(plan, x, cores)
        assert torch.get_num_threads() == 2
        w = torch.tensor(rng.normal(size=(37, 32)))
        (y * w).sum().backward()
        np.testing.assert_allclose(y.detach().numpy(), x.detach().numpy() @ Wd.T, rtol=0, atol=1e-12)
        np.testing.assert_allclose(x.grad.numpy(), w.numpy() @ Wd, rtol=0, atol=1e-12)
        # the cores' gradients against the serial kernel (one group)
        monkeypatch.setattr(contract, "PARALLEL_MIN_FLOPS", float("inf"))
        ref = [torch.tensor(c, requires_grad=True) for c in mpo.cores]
        (execute_mpo_apply(plan, x.detach(), ref) * w).sum().backward()
        for a, b in zip(cores, ref):
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)
        monkeypatch.setattr(contract, "PARALLEL_MIN_FLOPS", 0)
        xs = torch.tensor(rng.normal(size=(7, 32)), requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, *cs: execute_mpo_apply(plan, a, cs), (xs, *cores))
    finally:
        torch.set_num_threads(before)


def test_plan_is_cached_and_cheap():
    shapes = [(1, 8, 8, 8), (8, 8, 8, 8), (8, 8, 8, 8), (8, 8, 8, 1)]
    p = plan_mpo_apply(256, shapes)
    assert p is plan_mpo_apply(256, shapes)
    assert p.strategy == "split"
    big = [(1, 8, 8, 64), (64, 8, 8, 512), (512, 8, 8, 64), (64, 8, 8, 1)]
    assert plan_mpo_apply(256, big).strategy == "dense"


def test_gpu_plans_weigh_thin_products_more():
    # measured on an H200 (qtnn/tn/contract.py): bond 16 at batch 4096 is faster dense on a GPU,
    # bond 8 still split; the CPU keeps its own choice, and a GPU plan is still exact anywhere
    b16 = [(1, 8, 8, 16), (16, 8, 8, 16), (16, 8, 8, 16), (16, 8, 8, 1)]
    b8 = [(1, 8, 8, 8), (8, 8, 8, 8), (8, 8, 8, 8), (8, 8, 8, 1)]
    assert plan_mpo_apply(4096, b16).strategy == "split"
    assert plan_mpo_apply(4096, b16, device_type="cuda").strategy == "dense"
    assert plan_mpo_apply(4096, b8, device_type="cuda").strategy == "split"
    assert plan_mpo_apply(4096, b16, device_type="cuda") is plan_mpo_apply(4096, b16, device_type="mps")
    with pytest.raises(QtnnTypeError, match="device_type must be a torch device type"):
        plan_mpo_apply(4096, b16, device_type=None)


def test_apply_uses_the_plan_of_the_tensors_device(monkeypatch):
    # torch's "meta" device stands in for a GPU: shapes only, no data
    import qtnn.nn.mpo_linear as mpo_linear
    import qtnn.tn.mpo as mpo_mod
    from qtnn.nn import MPOLinear

    monkeypatch.setattr(mpo_linear, "MEASURE_PLANS", False)   # the cost model alone
    seen = []
    real = mpo_mod.plan_mpo_apply

    def spy(batch, shapes, *, device_type="cpu"):
        seen.append(device_type)
        return real(batch, shapes, device_type=device_type)

    monkeypatch.setattr(mpo_mod, "plan_mpo_apply", spy)       # MPO.apply's
    monkeypatch.setattr(mpo_linear, "plan_mpo_apply", spy)    # MPOLinear.forward's
    MPO.from_dense(np.eye(16)).apply(np.ones((2, 16)))
    layer = MPOLinear(64, 64, 4, dtype=torch.float64)
    layer(torch.ones(2, 64, dtype=torch.float64))
    assert layer.to("meta")(torch.ones(2, 64, dtype=torch.float64, device="meta")).is_meta
    assert seen == ["cpu", "cpu", "meta"]


def test_apply_leading_shape_and_torch_grad(rng):
    W = rng.normal(size=(5, 12))
    mpo = MPO.from_dense(W)
    x = torch.tensor(rng.normal(size=(2, 3, 12)), requires_grad=True)
    y = mpo.apply(x)
    assert y.shape == (2, 3, 5)
    assert torch.autograd.gradcheck(mpo.apply, (x,))


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs,match", [
    (dict(W=np.ones(3)), "W must be a 2-d array"),
    (dict(W=np.array([[1.0, np.nan]])), "W must be finite"),
    (dict(W=np.ones((0, 3))), "W must not be empty"),
    (dict(W=np.ones((2, 2)), max_bond=0), "max_bond must be a positive integer or None, got 0"),
    (dict(W=np.ones((2, 2)), max_bond=-3), "max_bond must be a positive integer or None, got -3"),
    (dict(W=np.ones((2, 2)), cutoff=1.5), r"cutoff must be a real number in \[0, 1\), got 1.5"),
    (dict(W=np.ones((8, 8)), out_dims=(2, 2)), r"out_dims=\(2, 2\) has product 4, smaller than the size 8"),
    (dict(W=np.ones((8, 8)), out_dims=(2, 2, 2), in_dims=(4, 2)), "must have the same number of sites"),
    (dict(W=np.ones((8, 8)), out_dims=(2, 0, 4)), "out_dims must be a non-empty sequence of positive"),
    (dict(W=[["a"]]), "W must hold numbers"),
])
def test_from_dense_bad_input(kwargs, match):
    with pytest.raises(QtnnError, match=match):
        MPO.from_dense(**kwargs)


def test_constructor_checks_bonds():
    with pytest.raises(QtnnError, match=r"bond mismatch between cores\[0\] \(right bond 2\) and cores\[1\]"):
        MPO([np.ones((1, 2, 2, 2)), np.ones((3, 2, 2, 1))])
    with pytest.raises(QtnnError, match=r"cores\[0\] must have left bond 1"):
        MPS([np.ones((2, 2, 1))])
    with pytest.raises(QtnnError, match=r"cores\[1\] must be a 3-d array"):
        MPS([np.ones((1, 2, 1)), np.ones((1, 2))])


def test_apply_and_products_bad_input(rng):
    mpo = MPO.from_dense(rng.normal(size=(4, 6)))
    with pytest.raises(QtnnError, match=r"x must have shape \(\.\.\., 6\), got \(3, 5\)"):
        mpo.apply(np.ones((3, 5)))
    with pytest.raises(QtnnError, match="phys dims"):
        mpo.dot(MPS.random(2, 2))
    with pytest.raises(QtnnError, match="other must be an MPO or an MPS, got int"):
        mpo.dot(3)


def test_size_guard_refuses_before_allocating(monkeypatch):
    psi = MPS.product_state([0] * 40)
    with pytest.raises(QtnnError, match=r"dense vector of 1099511627776 entries would need 8.0 TiB"):
        psi.to_dense()


def test_candidates_start_with_the_cost_models_plan_and_hold_one_per_strategy():
    """One plan per strategy, except the split plan, which comes in both orders at one bond."""
    from qtnn.tn.contract import candidate_plans

    shapes = [(1, 8, 8, 8), (8, 8, 8, 8), (8, 8, 8, 8), (8, 8, 8, 1)]
    for batch in (1, 32, 4096):
        cands = candidate_plans(batch, shapes)
        assert cands[0] == plan_mpo_apply(batch, shapes)
        assert len(set(cands)) == len(cands)
        splits = [p for p in cands if p.strategy == "split"]
        assert len(splits) <= 2 and len({p.split for p in splits}) <= 1
        assert len({p.right_first for p in splits}) == len(splits)
        others = [p.strategy for p in cands if p.strategy != "split"]
        assert len(set(others)) == len(others)
        assert all(p.score <= 4.0 * cands[0].score for p in cands)


@pytest.mark.parametrize("grad", [False, True])
def test_measured_plan_is_a_candidate_and_cached(grad):
    from qtnn.tn.contract import candidate_plans, clear_measured_plans, measured_plan

    shapes = [(1, 4, 4, 3), (3, 4, 4, 3), (3, 2, 2, 1)]
    clear_measured_plans()
    p = measured_plan(16, shapes, dtype=torch.float64, grad=grad)
    assert p in candidate_plans(16, shapes)
    assert measured_plan(16, shapes, dtype=torch.float64, grad=grad) is p
    assert measured_plan(0, shapes, grad=grad) == plan_mpo_apply(0, shapes)
    assert measured_plan(16, shapes, device="meta", grad=grad) == plan_mpo_apply(16, shapes, device_type="meta")
    with pytest.raises(QtnnError, match="device must be a torch device"):
        measured_plan(16, shapes, device="nowhere")
    with pytest.raises(QtnnTypeError, match="dtype must be a real floating"):
        measured_plan(16, shapes, dtype=torch.int64)


def test_measured_plan_by_exact_arguments_keeps_validating():
    """The lookup under the caller's own (exactly typed) arguments returns the validated plan and
    never lets a bad argument through: a bool batch, a negative batch or an unhashable shape still fail."""
    import qtnn.tn.contract as contract
    from qtnn.tn.contract import clear_measured_plans, measured_plan

    shapes = ((1, 4, 4, 3), (3, 4, 4, 1))
    clear_measured_plans()
    p = measured_plan(8, shapes, device="cpu", dtype=torch.float64, grad=True)
    assert measured_plan(8, shapes, device="cpu", dtype=torch.float64, grad=True) is p
    assert measured_plan(8, [list(s) for s in shapes], device="cpu", dtype=torch.float64, grad=True) is p
    assert measured_plan(8, tuple(torch.Size(s) for s in shapes), device=torch.device("cpu"),
                         dtype=torch.float64, grad=True) is p
    with pytest.raises(QtnnTypeError, match="batch"):
        measured_plan(True, shapes, device="cpu", dtype=torch.float64, grad=True)
    with pytest.raises(QtnnError, match="batch"):
        measured_plan(-8, shapes, device="cpu", dtype=torch.float64, grad=True)
    with pytest.raises(QtnnError, match="grad"):
        measured_plan(8, shapes, device="cpu", dtype=torch.float64, grad=1)
    with pytest.raises(QtnnError):
        measured_plan(8, ((1, 4, 4, [3]), (3, 4, 4, 1)), device="cpu", dtype=torch.float64, grad=True)
    clear_measured_plans()
    assert not contract._MEASURED and not contract._BY_ARGS
