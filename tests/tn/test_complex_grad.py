"""MPO.apply on complex tensors: gradients of every plan agree with torch's own (issue 15: SplitApply
transposed without conjugating)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qtnn.tn.contract import MPOApplyPlan, execute_mpo_apply


def _cores(rng, shapes):
    return [torch.tensor(rng.normal(size=s) + 1j * rng.normal(size=s), dtype=torch.complex128,
                         requires_grad=True) for s in shapes]


@pytest.mark.parametrize("right_first", [True, False])
def test_split_plan_gradients_on_complex_tensors(right_first):
    rng = np.random.default_rng(0)
    shapes = [(1, 2, 3, 2), (2, 3, 2, 1)]
    cores = _cores(rng, shapes)
    x = torch.tensor(rng.normal(size=(4, 6)) + 1j * rng.normal(size=(4, 6)), dtype=torch.complex128,
                     requires_grad=True)
    plan = MPOApplyPlan("split", 0, right_first, 0.0)
    assert torch.autograd.gradcheck(lambda x, a, b: execute_mpo_apply(plan, x, [a, b]), (x, *cores))
    # and the same numbers as the dense product, value and gradients
    y = execute_mpo_apply(plan, x, cores)
    w = torch.einsum("aoib,bpjc->opij", *cores).reshape(6, 6)
    ref = x @ w.T
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    g = torch.randn(4, 6, dtype=torch.complex128)
    got = torch.autograd.grad(y, [x, *cores], g)
    want = torch.autograd.grad(ref, [x, *cores], g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_real_gradients_unchanged():
    rng = np.random.default_rng(1)
    cores = [torch.tensor(rng.normal(size=s), requires_grad=True) for s in [(1, 2, 3, 2), (2, 3, 2, 1)]]
    x = torch.tensor(rng.normal(size=(5, 6)), requires_grad=True)
    plan = MPOApplyPlan("split", 0, True, 0.0)
    assert torch.autograd.gradcheck(lambda x, a, b: execute_mpo_apply(plan, x, [a, b]), (x, *cores))
