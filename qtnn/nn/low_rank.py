"""``LowRankLinear``: ``y = B (A x) + b`` -- the truncated-SVD baseline of weight compression."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.validate import check_int

__all__ = ["LowRankLinear", "low_rank_factors", "fitted_factors"]


def low_rank_factors(W: np.ndarray, rank: int, L: np.ndarray | None = None,
                     Lo: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(B, A)`` with ``B @ A`` the best rank-``rank`` approximation of ``W`` (float64).

    Without ``L``: the truncated SVD (Eckart-Young: best in the Frobenius
    norm).  With a full-row-rank whitening factor ``L`` (``in x r``,
    ``L L^T`` the input second moment): the truncated SVD of ``W L`` carried
    back by ``L``'s pseudo-inverse, which is the best rank-``rank`` map in
    ``||(B A - W) L||_F`` -- the activation error on inputs whose second
    moment is ``L L^T`` (Hsu et al., "Language model compression with weighted
    low-rank factorization", ICLR 2022; Yuan et al., "ASVD", arXiv:2312.05821).
    With a square invertible output factor ``Lo`` as well, the best in
    ``||Lo^T (B A - W) L||_F`` (both transforms are invertible on the range
    that matters, so the rank is preserved).  Signs are fixed so that the
    largest entry of every left singular vector is positive.

    Examples
    --------
    >>> W = np.diag([3.0, 2.0, 1.0])
    >>> B, A = low_rank_factors(W, 2)
    >>> np.round(B @ A, 12)
    array([[3., 0., 0.],
           [0., 2., 0.],
           [0., 0., 0.]])
    """
    T = W if L is None else W @ L
    if Lo is not None:
        T = Lo.T @ T
    u, s, vt = np.linalg.svd(T, full_matrices=False)
    u, s, vt = u[:, :rank], s[:rank], vt[:rank]
    idx = np.argmax(np.abs(u), axis=0)
    sg = np.sign(u[idx, np.arange(u.shape[1])])
    sg[sg == 0] = 1.0
    u, vt = u * sg, vt * sg[:, None]
    root = np.sqrt(s)
    B = u * root
    A = root[:, None] * vt
    if L is not None:
        A = A @ np.linalg.pinv(L)
    if Lo is not None:
        B = np.linalg.solve(Lo.T, B) if Lo.shape[0] == Lo.shape[1] else np.linalg.pinv(Lo.T) @ B
    return np.ascontiguousarray(B), np.ascontiguousarray(A)


def fitted_factors(W: np.ndarray, rank: int, inputs: Any = None, output_weight: Any = None,
                   damp: float = 1e-2) -> tuple[np.ndarray, np.ndarray]:
    """:func:`low_rank_factors` of ``W`` for recorded ``inputs`` and an ``output_weight`` ``G``.

    The factors are the whitening of ``X^T X / N`` and of ``G`` (each plus
    ``damp`` times its mean diagonal), as for :func:`qtnn.staircase.disentangle`;
    ``None`` leaves that side unweighted.
    """
    from qtnn.tn.linalg import psd_factor, whitening
    from qtnn.validate import check_inputs, check_output_weight, check_real

    L = Lo = None
    if inputs is not None:
        L = whitening(check_inputs(inputs, W.shape[1]), W.shape[1], check_real("damp", damp, minimum=0))
    if output_weight is not None:
        Lo = psd_factor(check_output_weight(output_weight, W.shape[0]), check_real("damp", damp, minimum=0))
    return low_rank_factors(W, rank, L, Lo)


class LowRankLinear(nn.Module):
    """A linear layer of rank ``rank``: ``y = B (A x) + b``, ``A`` ``rank x in``, ``B`` ``out x rank``.

    ``rank (in + out)`` weight parameters instead of ``in out``: the plain SVD
    baseline that MPO and disentangled layers are compared with at equal
    parameter count.

    Parameters
    ----------
    in_features, out_features, rank : int
        ``1 <= rank <= min(in_features, out_features)``.
    bias : bool
    dtype, device : optional

    Examples
    --------
    >>> import torch
    >>> lin = torch.nn.Linear(16, 8).double()
    >>> lr = LowRankLinear.from_linear(lin, rank=8)       # full rank: exact
    >>> x = torch.randn(3, 16, dtype=torch.float64)
    >>> bool(torch.allclose(lr(x), lin(x), rtol=0, atol=1e-12))
    True
    >>> LowRankLinear.from_linear(lin, rank=2).num_weight_params
    48
    """

    def __init__(self, in_features: int, out_features: int, rank: int, *, bias: bool = True,
                 dtype: torch.dtype | None = None, device: Any = None) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.out_features = check_int("out_features", out_features, minimum=1)
        self.rank = check_int("rank", rank, minimum=1, maximum=min(self.in_features, self.out_features))
        self.A = nn.Parameter(torch.empty(self.rank, self.in_features, dtype=dtype, device=device))
        self.B = nn.Parameter(torch.empty(self.out_features, self.rank, dtype=dtype, device=device))
        self.bias = (nn.Parameter(torch.empty(self.out_features, dtype=dtype, device=device))
                     if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Gaussian factors with ``Var(W_ij) = 1 / (3 in)`` (as ``nn.Linear``), uniform bias."""
        sigma = (1.0 / (3.0 * self.in_features * self.rank)) ** 0.25
        with torch.no_grad():
            self.A.normal_(0.0, sigma)
            self.B.normal_(0.0, sigma)
            if self.bias is not None:
                bound = 1.0 / math.sqrt(self.in_features)
                self.bias.uniform_(-bound, bound)

    @property
    def num_weight_params(self) -> int:
        """``rank (in + out)``."""
        return self.rank * (self.in_features + self.out_features)

    @property
    def weight(self) -> torch.Tensor:
        """The ``out x in`` weight ``B A`` (differentiable)."""
        return self.B @ self.A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise QtnnError(f"x must have shape (..., {self.in_features}), got {tuple(x.shape)}")
        y = (x @ self.A.T) @ self.B.T
        return y + self.bias if self.bias is not None else y

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int, *, inputs: Any = None,
                    damp: float = 1e-2, output_weight: Any = None) -> LowRankLinear:
        """The best rank-``rank`` layer for a :class:`torch.nn.Linear` (float64 math).

        Without ``inputs`` the truncated SVD of the weight; with ``inputs``
        (``(N, in_features)`` recorded activations) the activation-aware one
        of :func:`low_rank_factors`, whitened with ``X^T X / N + damp *
        mean(diag) I``; ``output_weight`` (``G``, ``out x out`` PSD) weights the
        output errors as in :func:`qtnn.staircase.disentangle`.  The layer takes
        ``linear``'s dtype and device.
        """
        if not isinstance(linear, nn.Linear):
            raise QtnnTypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach().to("cpu", torch.float64).numpy()
        if not np.all(np.isfinite(w)):
            raise QtnnError("linear.weight must be finite, got NaN or inf")
        rank = check_int("rank", rank, minimum=1, maximum=min(w.shape))
        B, A = fitted_factors(w, rank, inputs, output_weight, damp)
        dt, dev = linear.weight.dtype, linear.weight.device
        layer = cls(w.shape[1], w.shape[0], rank, bias=linear.bias is not None, dtype=dt, device=dev)
        with torch.no_grad():
            layer.A.copy_(torch.as_tensor(A))
            layer.B.copy_(torch.as_tensor(B))
            if linear.bias is not None and layer.bias is not None:
                layer.bias.copy_(linear.bias.detach())
        return layer

    def to_linear(self) -> nn.Linear:
        """An equivalent dense :class:`torch.nn.Linear`."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        dtype=self.A.dtype, device=self.A.device)
        with torch.no_grad():
            lin.weight.copy_(self.weight)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"bias={self.bias is not None}")
