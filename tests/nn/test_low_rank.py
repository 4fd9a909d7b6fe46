"""LowRankLinear and the (activation-whitened) truncated SVD against closed forms."""

import numpy as np
import pytest
import torch

from qtnn import QtnnError
from qtnn.nn import LowRankLinear
from qtnn.nn.low_rank import low_rank_factors
from qtnn.tn.linalg import whitening


def test_factors_are_the_truncated_svd():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(7, 11))
    B, A = low_rank_factors(W, 3)
    u, s, vt = np.linalg.svd(W)
    np.testing.assert_allclose(B @ A, (u[:, :3] * s[:3]) @ vt[:3], rtol=0, atol=1e-12)
    # Eckart-Young: the error is the tail of the singular values
    assert abs(np.linalg.norm(B @ A - W) - np.sqrt(np.sum(s[3:] ** 2))) < 1e-12


def test_whitened_factors_are_activation_optimal():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(6, 10))
    X = rng.normal(size=(200, 10)) * np.geomspace(0.01, 5.0, 10)
    L = whitening(X, 10, 0.0)
    B, A = low_rank_factors(W, 2, L)
    tail = np.linalg.svd(W @ L, compute_uv=False)[2:]
    # ||(BA - W) X^T||^2 / N is the optimum: the tail of W L's singular values
    got = np.linalg.norm((B @ A - W) @ X.T) ** 2 / 200
    assert abs(got - np.sum(tail**2)) < 1e-10 * np.sum(tail**2) + 1e-12
    plain_b, plain_a = low_rank_factors(W, 2)
    assert np.linalg.norm((plain_b @ plain_a - W) @ X.T) ** 2 / 200 > got


def test_layer_matches_linear_and_gradcheck():
    torch.manual_seed(0)
    lin = torch.nn.Linear(9, 5).double()
    full = LowRankLinear.from_linear(lin, 5)
    x = torch.randn(4, 3, 9, dtype=torch.float64)
    torch.testing.assert_close(full(x), lin(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(full.to_linear().weight, lin.weight, rtol=0, atol=1e-12)
    small = LowRankLinear.from_linear(lin, 2)
    assert small.num_weight_params == 2 * 14
    assert sum(p.numel() for p in small.parameters()) == 28 + 5
    xs = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, x_: (x_ @ a.T) @ b.T,
                                    (small.A.detach().requires_grad_(), small.B.detach().requires_grad_(),
                                     xs))


def test_from_linear_with_inputs_keeps_dtype():
    lin = torch.nn.Linear(8, 4, bias=False)
    x = torch.randn(50, 8)
    lr = LowRankLinear.from_linear(lin, 1, inputs=x)
    assert lr.A.dtype == torch.float32 and lr.bias is None


@pytest.mark.parametrize("rank", [0, 6, 2.5])
def test_bad_rank(rank):
    with pytest.raises(QtnnError, match="rank"):
        LowRankLinear(8, 5, rank)


def test_bad_input_width():
    with pytest.raises(QtnnError, match=r"x must have shape \(\.\.\., 8\)"):
        LowRankLinear(8, 5, 2)(torch.randn(2, 7))
    with pytest.raises(QtnnError, match="inputs must have shape"):
        LowRankLinear.from_linear(torch.nn.Linear(8, 4), 1, inputs=np.ones((3, 7)))


def test_two_sided_weighted_factors_are_optimal():
    rng = np.random.default_rng(2)
    W = rng.normal(size=(6, 10))
    X = rng.normal(size=(200, 10)) * np.geomspace(0.01, 5.0, 10)
    P = rng.normal(size=(9, 6))                      # the outputs are read through P
    G = P.T @ P
    from qtnn.tn.linalg import psd_factor

    L, Lo = whitening(X, 10, 0.0), psd_factor(G, 0.0)
    np.testing.assert_allclose(Lo @ Lo.T, G, rtol=0, atol=1e-10)
    B, A = low_rank_factors(W, 2, L, Lo)
    tail = np.linalg.svd(Lo.T @ W @ L, compute_uv=False)[2:]
    got = np.linalg.norm(P @ (B @ A - W) @ X.T) ** 2 / 200
    assert abs(got - np.sum(tail**2)) < 1e-9 * np.sum(tail**2)
    b1, a1 = low_rank_factors(W, 2, L)
    assert np.linalg.norm(P @ (b1 @ a1 - W) @ X.T) ** 2 / 200 > got
    lin = torch.nn.Linear(10, 6, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(W))
    lr = LowRankLinear.from_linear(lin, 2, inputs=X, output_weight=G, damp=0.0)
    np.testing.assert_allclose(lr.weight.detach().numpy(), B @ A, rtol=0, atol=1e-10)
