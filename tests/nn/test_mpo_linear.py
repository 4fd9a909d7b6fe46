"""MPOLinear against nn.Linear (float64, rtol=0)."""

import numpy as np
import pytest
import torch

from qtnn import QtnnError
from qtnn.nn import MPOLinear
from qtnn.tn import MPO


@pytest.mark.parametrize("in_f,out_f,dims", [(16, 8, None), (64, 64, 3), (30, 7, 2), (100, 10, None),
                                           (12, 20, (3, 2, 2))])
def test_from_linear_full_bond_reproduces_linear(in_f, out_f, dims):
    torch.manual_seed(0)
    lin = torch.nn.Linear(in_f, out_f).double()
    kw = {} if dims is None else {"out_dims": dims if isinstance(dims, int) else None,
                                  "in_dims": dims}
    layer = MPOLinear.from_linear(lin, **kw)
    x = torch.randn(4, 3, in_f, dtype=torch.float64)
    torch.testing.assert_close(layer(x), lin(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(layer.to_linear()(x), lin(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(layer.weight, lin.weight, rtol=0, atol=1e-12)


def test_from_linear_truncated_matches_mpo_truncation():
    torch.manual_seed(1)
    lin = torch.nn.Linear(64, 32, bias=False).double()
    layer = MPOLinear.from_linear(lin, max_bond=3)
    assert max(layer.bond_dims) <= 3 and layer.bias is None
    ref = MPO.from_dense(lin.weight.detach().numpy(), out_dims=2, in_dims=2, max_bond=3)
    np.testing.assert_allclose(layer.mpo.to_dense(), ref.to_dense(), rtol=0, atol=1e-12)


def test_gradcheck_inputs_and_cores():
    torch.manual_seed(2)
    layer = MPOLinear(12, 6, max_bond=3, out_dims=(3, 2), in_dims=(4, 3), dtype=torch.float64)
    x = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    cores = [c.detach().clone().requires_grad_(True) for c in layer.cores]

    def f(x, *cs):
        with torch.no_grad():
            for p, c in zip(layer.cores, cs):
                p.set_(c.detach().clone())
        from qtnn.tn.mpo import apply_cores
        return apply_cores(x, list(cs), (6, 12)) + layer.bias

    assert torch.autograd.gradcheck(f, (x, *cores))
    assert torch.autograd.gradcheck(layer, (x,))


@pytest.mark.parametrize("in_f,out_f,bond", [(256, 128, 4), (64, 64, 16), (100, 30, 2)])
def test_init_variance_matches_nn_linear(in_f, out_f, bond):
    # Var(W_ij) of nn.Linear's default init is 1/(3 in_features); check over many draws.
    draws = []
    for s in range(40):
        torch.manual_seed(s)
        draws.append(MPOLinear(in_f, out_f, bond, dtype=torch.float64).weight.detach().var().item())
    target = 1.0 / (3 * in_f)
    assert abs(np.mean(draws) / target - 1) < 0.10
    torch.manual_seed(0)
    ref = np.mean([torch.nn.Linear(in_f, out_f).weight.var().item() for _ in range(40)])
    assert abs(np.mean(draws) / ref - 1) < 0.10


def test_default_init_output_is_not_just_bias():
    # A factorised layer initialised with tiny cores outputs little more than its bias.
    torch.manual_seed(0)
    layer = MPOLinear(1024, 1024, max_bond=8)
    lin = torch.nn.Linear(1024, 1024)
    x = torch.randn(256, 1024)
    with torch.no_grad():
        signal = (layer(x) - layer.bias).std().item()
        ref = (lin(x) - lin.bias).std().item()
    assert 0.7 < signal / ref < 1.3


def test_float32_and_any_leading_shape():
    layer = MPOLinear(48, 20, max_bond=4)
    assert layer.cores[0].dtype == torch.float32
    y = layer(torch.randn(2, 3, 4, 48))
    assert y.shape == (2, 3, 4, 20) and y.dtype == torch.float32
    assert layer(torch.randn(48)).shape == (20,)


def test_bond_features_stack_view():
    torch.manual_seed(3)
    layer = MPOLinear(64, 64, max_bond=4, out_dims=3, in_dims=3, dtype=torch.float64)
    x = torch.randn(5, 64, dtype=torch.float64)
    feats = layer.bond_features(x)
    assert [tuple(f.shape) for f in feats] == [(5, 4, 4, 16), (5, 16, 4, 4)]
    # contracting the last bond feature with the last core gives the output
    last = layer.cores[-1]
    y = torch.einsum("bpli,loi->bpo", feats[-1], last[..., 0]).reshape(5, 64)
    torch.testing.assert_close(y + layer.bias, layer(x), rtol=0, atol=1e-12)


def test_mpo_property_round_trip():
    layer = MPOLinear(32, 16, max_bond=4, dtype=torch.float64)
    again = MPOLinear.from_mpo(layer.mpo, layer.bias, dtype=torch.float64)
    x = torch.randn(3, 32, dtype=torch.float64)
    torch.testing.assert_close(again(x), layer(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("call,match", [
    (lambda: MPOLinear(0, 4, 2), "in_features must be an integer >= 1, got 0"),
    (lambda: MPOLinear(4, 4, 0), "max_bond must be a positive integer or None, got 0"),
    (lambda: MPOLinear(4, 4, None), "max_bond must be a positive integer, got None"),
    (lambda: MPOLinear(4, 4, 2.5), "max_bond must be a positive integer or None, got 2.5"),
    (lambda: MPOLinear(8, 8, 2, out_dims=(4, 2), in_dims=(2, 2, 2)), "same number of sites"),
    (lambda: MPOLinear(8, 4, 2)(torch.randn(3, 5)), r"x must have shape \(\.\.\., 8\), got \(3, 5\)"),
    (lambda: MPOLinear(8, 4, 2)(np.ones((3, 8))), "x must be a torch.Tensor, got ndarray"),
    (lambda: MPOLinear.from_linear(torch.nn.Conv2d(1, 1, 1)), "linear must be a torch.nn.Linear, got Conv2d"),
])
def test_bad_input(call, match):
    with pytest.raises(QtnnError, match=match):
        call()


def test_from_linear_refuses_nan():
    lin = torch.nn.Linear(4, 4)
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    with pytest.raises(QtnnError, match="linear.weight must be finite"):
        MPOLinear.from_linear(lin)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    layer = MPOLinear(256, 128, 8, dtype=torch.float64)
    x = torch.randn(16, 256, dtype=torch.float64)
    ref = layer(x)
    torch.testing.assert_close(layer.cuda()(x.cuda()).cpu(), ref, rtol=0, atol=1e-10)


def _kept(layer):
    """The operands the layer keeps for its (one) inference plan."""
    (entry,) = layer._prepared_cache.values()
    return entry[1]


def _forced(monkeypatch, plan):
    import qtnn.nn.mpo_linear as mpo_linear  # the name MPOLinear.forward calls

    asked: list[int] = []
    monkeypatch.setattr(mpo_linear, "measured_plan", lambda *a, **k: asked.append(1) or plan)
    return asked


@pytest.mark.parametrize("pick", range(4))
def test_every_measured_plan_equals_the_dense_reference(monkeypatch, pick):
    from qtnn.tn.contract import candidate_plans

    torch.manual_seed(0)
    layer = MPOLinear(60, 50, 5, out_dims=3, in_dims=3, dtype=torch.float64)   # padded to 64 / 64
    cands = candidate_plans(7, [tuple(c.shape) for c in layer.cores])
    assert len(cands) == 4
    plan = cands[pick]
    asked = _forced(monkeypatch, plan)
    w, b = layer.weight.detach(), layer.bias.detach()
    x = torch.randn(7, 60, dtype=torch.float64, requires_grad=True)
    ref = x.detach() @ w.T + b
    with torch.no_grad():
        torch.testing.assert_close(layer(x), ref, rtol=0, atol=1e-13)
    y = layer(x)
    torch.testing.assert_close(y.detach(), ref, rtol=0, atol=1e-13)
    gy = torch.randn_like(y)
    y.backward(gy)
    torch.testing.assert_close(x.grad, gy @ w, rtol=0, atol=1e-13)
    torch.testing.assert_close(layer.bias.grad, gy.sum(0), rtol=0, atol=1e-13)
    assert len(asked) == 2          # both passes ran the forced plan
    # the cores' gradients against those of the cost model's own plan
    got = [c.grad.clone() for c in layer.cores]
    layer.zero_grad()
    import qtnn.nn.mpo_linear as mpo_linear

    monkeypatch.setattr(mpo_linear, "MEASURE_PLANS", False)
    layer(x).backward(gy)
    for g, c in zip(got, layer.cores, strict=True):
        torch.testing.assert_close(g, c.grad, rtol=0, atol=1e-12)


def test_inference_weight_is_rebuilt_when_a_core_changes(monkeypatch):
    from qtnn.tn.contract import MPOApplyPlan

    _forced(monkeypatch, MPOApplyPlan("dense", 0, False, 0.0))
    layer = MPOLinear(64, 64, 4, dtype=torch.float64)
    x = torch.randn(3, 64, dtype=torch.float64)
    with torch.no_grad():
        first = layer(x)
        kept = _kept(layer).ops[0]
        torch.testing.assert_close(layer(x), first, rtol=0, atol=0)
        assert _kept(layer).ops[0] is kept
        layer.cores[0].mul_(2.0)      # an optimiser step changes the cores in place
        second = layer(x)
    assert _kept(layer).ops[0] is not kept
    torch.testing.assert_close(second - layer.bias, 2.0 * (first - layer.bias), rtol=0, atol=1e-13)
    torch.testing.assert_close(second, x @ layer.weight.detach().T + layer.bias.detach(), rtol=0,
                               atol=1e-13)


@pytest.mark.parametrize("right_first", [True, False])
def test_inference_blocks_are_kept_until_a_core_changes(monkeypatch, right_first):
    # the split plans' merged blocks are built once without gradients, like the dense weight, and
    # rebuilt after an in-place change of a core; outputs equal the dense reference throughout
    from qtnn.tn.contract import MPOApplyPlan

    _forced(monkeypatch, MPOApplyPlan("split", 1, right_first, 0.0))
    torch.manual_seed(1)
    layer = MPOLinear(60, 50, 4, out_dims=3, in_dims=3, dtype=torch.float64)   # padded to 64 / 64
    x = torch.randn(5, 60, dtype=torch.float64)
    with torch.no_grad():
        first = layer(x)
        kept = _kept(layer)
        assert kept.kind == "split-host" and kept.plan.right_first == right_first
        torch.testing.assert_close(layer(x), first, rtol=0, atol=0)
        torch.testing.assert_close(layer(x[:3]), first[:3], rtol=0, atol=1e-13)   # other GEMM blocking
        assert _kept(layer) is kept
        layer.cores[2].mul_(-3.0)
        second = layer(x)
    assert _kept(layer) is not kept
    w, b = layer.weight.detach(), layer.bias.detach()
    torch.testing.assert_close(second - b, -3.0 * (first - b), rtol=0, atol=1e-13)
    torch.testing.assert_close(second, x @ w.T + b, rtol=0, atol=1e-13)
    # with gradients the blocks are built from the cores on every call (the cache is left alone)
    cached = _kept(layer)
    y = layer(x)
    assert y.requires_grad and _kept(layer) is cached


def test_inference_reuses_the_previous_call_until_anything_changes(monkeypatch):
    # a repeated call without gradients skips the plan lookup; a new shape or dtype, a core changed
    # in place or replaced, or MEASURE_PLANS switched runs the full path; outputs equal the dense
    # reference throughout
    import qtnn.nn.mpo_linear as mpo_linear
    from qtnn.tn.contract import MPOApplyPlan

    asked = _forced(monkeypatch, MPOApplyPlan("dense", 0, False, 0.0))
    torch.manual_seed(3)
    layer = MPOLinear(64, 27, 3, out_dims=3, in_dims=3, dtype=torch.float64)
    x = torch.randn(5, 64, dtype=torch.float64)

    def check(x, asks):
        n = len(asked)
        with torch.no_grad():
            y = layer(x)
        w = torch.as_tensor(layer.mpo.to_dense())          # float64 references
        ref = x.double() @ w.T + layer.bias.detach().double()
        # float32 rounds at ~1e-7 of these O(1) values; a stale weight would be off by O(1)
        atol = 1e-12 if x.dtype == torch.float64 else 1e-5
        torch.testing.assert_close(y.double(), ref, rtol=0, atol=atol)
        assert len(asked) - n == asks

    check(x, 1)
    check(x, 0)                               # the previous call's plan and weight
    check(x[:3], 1)                           # another shape
    check(x[:3], 0)
    with torch.no_grad():
        layer.cores[1].mul_(-2.0)             # in place: the version counter moves
    check(x[:3], 1)
    layer.cores[0].data = layer.cores[0].data.clone() * 3.0   # new storage, same Parameter
    check(x[:3], 1)
    monkeypatch.setattr(mpo_linear, "MEASURE_PLANS", False)   # the cost model's plan
    check(x[:3], 0)
    check(x[:3], 0)
    monkeypatch.setattr(mpo_linear, "MEASURE_PLANS", True)
    check(x[:3], 1)
    layer.float()
    check(x[:3].float(), 1)
    y = layer(x[:3].float())                  # with gradients: the full path, differentiable
    assert y.requires_grad and len(asked) == 7


def test_moves_copies_and_pickles_leave_the_kept_operands_behind():
    # .to / .double, copy.deepcopy and pickle do not carry what inference built (the old tensors'
    # memory is freed at once); the copies compute the same outputs
    import copy
    import pickle

    torch.manual_seed(5)
    layer = MPOLinear(64, 32, 4)
    x = torch.randn(3, 64)
    with torch.no_grad():
        y = layer(x)
    assert set(MPOLinear._KEPT) <= set(layer.__dict__)
    for twin in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert not set(MPOLinear._KEPT) & set(twin.__dict__)
        with torch.no_grad():
            torch.testing.assert_close(twin(x), y, rtol=0, atol=0)
    assert set(MPOLinear._KEPT) <= set(layer.__dict__)      # the original keeps its own
    layer.double()
    assert not set(MPOLinear._KEPT) & set(layer.__dict__)
    with torch.no_grad():
        torch.testing.assert_close(layer(x.double()), y.double(), rtol=0, atol=1e-6)


def test_parametrized_cores_are_read_on_every_inference_call():
    # a parametrization returns a new tensor on every read, which can take the freed storage of the
    # last one (same address, version 0): kept operands would be stale; outputs follow the parameter
    from torch.nn.utils import parametrize

    class Double(torch.nn.Module):
        def forward(self, c):
            return 2.0 * c

    torch.manual_seed(6)
    layer = MPOLinear(64, 32, 4, dtype=torch.float64)
    parametrize.register_parametrization(layer.cores, "0", Double())
    x = torch.randn(3, 64, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(4):
            w = torch.as_tensor(layer.mpo.to_dense())      # from the parametrized cores, in numpy
            torch.testing.assert_close(layer(x), x @ w.T + layer.bias, rtol=0, atol=1e-12)
            layer.cores.parametrizations["0"].original.mul_(1.5)
    assert not getattr(layer, "_prepared_cache", None)


def test_layer_made_in_inference_mode_runs_and_sees_in_place_changes():
    # inference tensors have no version counter: nothing is kept, every call builds from the cores
    torch.manual_seed(4)
    with torch.inference_mode():
        layer = MPOLinear(64, 32, 4, dtype=torch.float64)
        x = torch.randn(6, 64, dtype=torch.float64)
        w, b = layer.weight, layer.bias
        torch.testing.assert_close(layer(x), x @ w.T + b, rtol=0, atol=1e-13)
        torch.testing.assert_close(layer(x), x @ w.T + b, rtol=0, atol=1e-13)
        layer.cores[0].mul_(0.5)
        torch.testing.assert_close(layer(x), 0.5 * (x @ w.T) + b, rtol=0, atol=1e-13)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), 0.5 * (x @ w.T) + b, rtol=0, atol=1e-13)
    assert not getattr(layer, "_prepared_cache", None)


def test_inference_keeps_the_operands_of_several_plans(monkeypatch):
    # batches that run other plans do not rebuild each other's operands; at most KEPT_PLANS are kept
    import qtnn.nn.mpo_linear as mpo_linear
    from qtnn.tn.contract import MPOApplyPlan

    plans = [MPOApplyPlan("split", 0, True, 0.0), MPOApplyPlan("split", 1, False, 0.0),
             MPOApplyPlan("dense", 1, False, 0.0)]
    chosen = {4: plans[0], 8: plans[1], 16: plans[2]}     # by the batch's power of two
    monkeypatch.setattr(mpo_linear, "measured_plan", lambda b, *a, **k: chosen[b])
    monkeypatch.setattr(mpo_linear, "KEPT_PLANS", 2)
    torch.manual_seed(2)
    layer = MPOLinear(64, 27, 3, out_dims=3, in_dims=3, dtype=torch.float64)
    w, b = layer.weight.detach(), layer.bias.detach()
    with torch.no_grad():
        for n in (3, 6, 3, 6):
            x = torch.randn(n, 64, dtype=torch.float64)
            torch.testing.assert_close(layer(x), x @ w.T + b, rtol=0, atol=1e-13)
        first = dict(layer._prepared_cache)
        assert list(first) == [plans[0], plans[1]]
        layer(torch.randn(6, 64, dtype=torch.float64))
        assert all(layer._prepared_cache[p][1] is first[p][1] for p in first)   # nothing rebuilt
        x = torch.randn(9, 64, dtype=torch.float64)
        torch.testing.assert_close(layer(x), x @ w.T + b, rtol=0, atol=1e-13)
        assert list(layer._prepared_cache) == [plans[1], plans[2]]             # the oldest dropped


def test_batches_share_the_plan_of_their_power_of_two(monkeypatch):
    import qtnn.nn.mpo_linear as mod  # the name MPOLinear calls

    asked = []
    real = mod.measured_plan

    def spy(batch, *a, **k):
        asked.append(batch)
        return real(batch, *a, **k)

    monkeypatch.setattr(mod, "measured_plan", spy)
    layer = MPOLinear(16, 16, 2, dtype=torch.float64)
    for b in (1, 5, 7, 8, 9):
        layer(torch.randn(b, 16, dtype=torch.float64))
    assert asked == [1, 8, 8, 8, 16]
