"""torch.compile works on every module of qtnn.nn: the same outputs and gradients as eager mode."""

from __future__ import annotations

import pytest
import torch

from qtnn.nn import (
    CPConv2d,
    DisentangledLinear,
    LowRankLinear,
    MPOLinear,
    QuantumHead,
    QuantumStaircase,
    TuckerConv2d,
)


def _modules():
    torch.manual_seed(0)
    return {
        "MPOLinear": (MPOLinear(16, 8, 2), (3, 16)),
        "LowRankLinear": (LowRankLinear(16, 8, 2), (3, 16)),
        "TuckerConv2d": (TuckerConv2d(3, 4, 3, ranks=(2, 2)), (2, 3, 6, 6)),
        "CPConv2d": (CPConv2d(3, 4, 3, rank=2), (2, 3, 6, 6)),
        "QuantumStaircase": (QuantumStaircase(4, 2), (3, 16)),
        "QuantumHead": (QuantumHead(16, 4, 2, 10), (3, 16)),
        "DisentangledLinear": (DisentangledLinear(16, 8, 1, 1, 2), (3, 16)),
        "DisentangledLinear-brickwall": (DisentangledLinear(16, 8, 2, 2, 2, layout="brickwall"), (3, 16)),
    }


def _check(module, shape, backend):
    module = module.double()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    y0 = module(x)
    g0 = torch.autograd.grad(y0.square().sum(), [x, *module.parameters()])
    compiled = torch.compile(module, backend=backend, fullgraph=False)
    y1 = compiled(x)
    g1 = torch.autograd.grad(y1.square().sum(), [x, *module.parameters()])
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-12)
    for a, b in zip(g1, g0, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(_modules()))
def test_compile_matches_eager(name):
    torch._dynamo.reset()
    module, shape = _modules()[name]
    _check(module, shape, "aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["DisentangledLinear", "MPOLinear"])
def test_compile_with_the_default_backend(name):
    """The default backend (inductor) too, on the two layers a model is most likely to compile."""
    torch._dynamo.reset()
    module, shape = _modules()[name]
    _check(module, shape, "inductor")
