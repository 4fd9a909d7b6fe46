"""Low-rank 2-d convolutions: Tucker-2 and CP factorized kernels.

A dense kernel ``K`` of shape ``(out, in, kh, kw)`` is replaced by a product of
small factors and the convolution is run as a short chain of cheap
convolutions:

* :class:`TuckerConv2d` -- Tucker-2 decomposition over the two channel modes
  (Kim et al., "Compression of deep convolutional neural networks for fast and
  low power mobile applications", ICLR 2016)::

      K[o, c, h, w] = sum_{a, b} U_out[o, a] G[a, b, h, w] U_in[c, b]

  run as ``1x1 (in -> r_in)`` -> ``kh x kw core (r_in -> r_out)`` ->
  ``1x1 (r_out -> out, bias)``.

* :class:`CPConv2d` -- CP (canonical polyadic) decomposition of all four modes
  (Lebedev et al., "Speeding-up convolutional neural networks using fine-tuned
  CP-decomposition", ICLR 2015)::

      K[o, c, h, w] = sum_r A[o, r] B[c, r] V[h, r] H[w, r]

  run as ``1x1 (in -> R)`` -> depthwise ``kh x 1`` -> depthwise ``1 x kw`` ->
  ``1x1 (R -> out, bias)``.

Both accept the usual :class:`torch.nn.Conv2d` geometry (``stride``,
``padding`` including ``'same'`` / ``'valid'``, ``dilation``, every
``padding_mode``) for ``groups=1``.  Padding is applied once, right after the
first 1x1 convolution (a pointwise channel mix commutes with any spatial
padding), so the factorized chain computes exactly the convolution with the
reconstructed kernel :attr:`weight`.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.validate import check_alloc, check_choice, check_int, check_real, renamed, short_repr

__all__ = ["TuckerConv2d", "CPConv2d"]

_PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
_PADDING_MODES: tuple[_PaddingMode, ...] = ("zeros", "reflect", "replicate", "circular")
#: A checked ``padding``: ``'same'``, ``'valid'`` or ``(ph, pw)``.
_Padding = Literal["same", "valid"] | tuple[int, int]
_TUCKER_METHODS = ("hosvd", "hooi")


# --------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------

def _pair(name: str, value: Any, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each ``>= minimum``, as a 2-tuple."""
    what = f"an integer >= {minimum} or a pair of them"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        items = (value, value)
    elif isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and len(value) == 2:
        items = tuple(value)
    else:
        raise QtnnError(f"{name} must be {what}, got {short_repr(value)}")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
            raise QtnnError(f"{name} must be {what}, got {short_repr(value)}")
    return int(items[0]), int(items[1])


def _check_padding(padding: Any, stride: tuple[int, int]) -> _Padding:
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise QtnnError(
                f"padding must be a non-negative integer, a pair of them, 'same' or 'valid'; "
                f"got {padding!r}")
        if padding == "same" and stride != (1, 1):
            raise QtnnError(
                f"padding='same' is only supported with stride 1, got stride={stride}")
        return "same" if padding == "same" else "valid"
    try:
        return _pair("padding", padding, 0)
    except QtnnError:
        raise QtnnError(
            f"padding must be a non-negative integer, a pair of them, 'same' or 'valid'; "
            f"got {short_repr(padding)}") from None


def _pad4(padding: _Padding, kernel: tuple[int, int],
          dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """Explicit ``(left, right, top, bottom)`` padding (the order of ``F.pad``).

    ``'same'`` puts the odd extra row / column at the bottom / right, as torch does.
    """
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        th = dilation[0] * (kernel[0] - 1)
        tw = dilation[1] * (kernel[1] - 1)
        return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    ph, pw = padding
    return (pw, pw, ph, ph)


def _check_groups(groups: Any) -> None:
    groups = check_int("groups", groups, minimum=1)
    if groups != 1:
        raise QtnnError(f"groups must be 1 (only groups=1 is supported), got {groups}")


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise QtnnTypeError(f"{name} must be a bool, got {short_repr(value)}")
    return value


def _check_dtype(dtype: Any) -> None:
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise QtnnTypeError(f"dtype must be a real floating torch.dtype or None, got {short_repr(dtype)}")


def _check_conv(conv: Any) -> torch.Tensor:
    """Validate a dense ``nn.Conv2d`` for ``from_conv``; return its weight in float64."""
    if not isinstance(conv, nn.Conv2d):
        raise QtnnTypeError(f"conv must be a torch.nn.Conv2d, got {type(conv).__name__}")
    weight = conv.weight
    if isinstance(weight, nn.parameter.UninitializedParameter):
        raise QtnnError("conv must have an initialized weight, got an uninitialized (lazy) Conv2d")
    if conv.groups != 1:
        raise QtnnError(f"conv.groups must be 1 (only groups=1 is supported), got {conv.groups}")
    if conv.padding_mode not in _PADDING_MODES:
        raise QtnnError(f"conv.padding_mode must be one of {_PADDING_MODES}, got {conv.padding_mode!r}")
    if not weight.dtype.is_floating_point:
        raise QtnnTypeError(f"conv.weight must be a real floating tensor, got dtype {weight.dtype}")
    w = weight.detach()
    if not bool(torch.isfinite(w).all()):
        raise QtnnError(f"conv.weight must be finite, got NaN or inf in a tensor of shape {tuple(w.shape)}")
    if conv.bias is not None and not bool(torch.isfinite(conv.bias.detach()).all()):
        raise QtnnError("conv.bias must be finite, got NaN or inf")
    return w.to(torch.float64)


# --------------------------------------------------------------------------
# shared machinery
# --------------------------------------------------------------------------

class _FactorizedConv2d(nn.Module):
    """Geometry, bias and dense round-trip shared by the factorized convolutions."""

    in_channels: int
    out_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: _Padding
    dilation: tuple[int, int]
    padding_mode: _PaddingMode

    def _setup(self, in_channels: Any, out_channels: Any, kernel_size: Any, stride: Any,
               padding: Any, dilation: Any, groups: Any, bias: Any, padding_mode: Any,
               dtype: Any, device: Any) -> dict[str, Any]:
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.out_channels = check_int("out_channels", out_channels, minimum=1)
        self.kernel_size = _pair("kernel_size", kernel_size, 1)
        self.stride = _pair("stride", stride, 1)
        self.dilation = _pair("dilation", dilation, 1)
        self.padding = _check_padding(padding, self.stride)
        _check_groups(groups)
        self.groups = 1
        _check_bool("bias", bias)
        self.padding_mode = check_choice("padding_mode", padding_mode, _PADDING_MODES)
        _check_dtype(dtype)
        self._pads = _pad4(self.padding, self.kernel_size, self.dilation)
        left, right, top, bottom = self._pads
        # zero padding that is symmetric per axis can be done inside the convs
        self._inline_pad = self.padding_mode == "zeros" and left == right and top == bottom
        factory = {"dtype": dtype, "device": device}
        check_alloc(f"{type(self).__name__} with {self.in_channels} in and {self.out_channels} out channels",
                    self.in_channels + self.out_channels, hint="use fewer channels")
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        return factory

    @property
    def _fan_in(self) -> int:
        return self.in_channels * self.kernel_size[0] * self.kernel_size[1]

    def _reset_bias(self) -> None:
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self._fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def _check_input(self, x: Any) -> tuple[torch.Tensor, bool]:
        if not isinstance(x, torch.Tensor):
            raise QtnnTypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() not in (3, 4):
            raise QtnnError(f"input must be 3-d (C, H, W) or 4-d (N, C, H, W), got shape {tuple(x.shape)}")
        batched = x.dim() == 4
        if not batched:
            x = x.unsqueeze(0)
        if x.shape[1] != self.in_channels:
            raise QtnnError(
                f"input must have {self.in_channels} channels (dim -3), got shape {tuple(x.shape)}")
        left, right, top, bottom = self._pads
        reach = (self.dilation[0] * (self.kernel_size[0] - 1) + 1,
                 self.dilation[1] * (self.kernel_size[1] - 1) + 1)
        padded = (x.shape[2] + top + bottom, x.shape[3] + left + right)
        if padded[0] < reach[0] or padded[1] < reach[1]:
            raise QtnnError(f"input of spatial size {tuple(x.shape[2:])} (padded {padded}) is smaller than "
                            f"the kernel's reach {reach} (kernel_size={self.kernel_size}, "
                            f"dilation={self.dilation}); got shape {tuple(x.shape)}")
        return x, batched

    def _pad(self, h: torch.Tensor) -> torch.Tensor:
        """Explicit padding when it cannot be folded into the convolutions."""
        if self._inline_pad or not any(self._pads):
            return h
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        return F.pad(h, self._pads, mode=mode)

    @property
    def _conv_pad(self) -> tuple[int, int]:
        """``(ph, pw)`` to pass to the spatial convolutions."""
        if self._inline_pad:
            return (self._pads[2], self._pads[0])
        return (0, 0)

    @property
    def weight(self) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_conv(self) -> nn.Conv2d:
        """Return an equivalent dense :class:`torch.nn.Conv2d`.

        Its weight is :attr:`weight` (the reconstructed kernel, detached), its
        bias a copy of this module's bias, and it has the same geometry,
        ``padding_mode``, dtype and device.
        """
        with torch.no_grad():
            w = self.weight.detach().clone()
            conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size,
                             stride=self.stride, padding=self.padding, dilation=self.dilation,
                             groups=1, bias=self.bias is not None,
                             padding_mode=self.padding_mode, dtype=w.dtype, device=w.device)
            conv.weight.copy_(w)
            if self.bias is not None and conv.bias is not None:  # both or neither
                conv.bias.copy_(self.bias.detach())
        return conv

    def _geometry_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding not in ((0, 0), "valid"):
            s += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s

    @staticmethod
    def _geometry_from(conv: nn.Conv2d) -> dict[str, Any]:
        padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
        return {"stride": tuple(conv.stride), "padding": padding,
                "dilation": tuple(conv.dilation), "bias": conv.bias is not None,
                "padding_mode": conv.padding_mode}


def _fix_signs(u: torch.Tensor) -> torch.Tensor:
    """Flip each column so that its entry of largest magnitude is positive."""
    idx = u.abs().argmax(dim=0)
    s = torch.sign(u.gather(0, idx.unsqueeze(0)))
    s = torch.where(s == 0, torch.ones_like(s), s)
    return u * s


def _leading_left(a: torch.Tensor, r: int) -> torch.Tensor:
    """``r`` leading left singular vectors of ``a`` (rows x cols), sign-fixed.

    If ``r`` exceeds the number of columns, the orthonormal completion from a
    full SVD is used (those directions carry zero singular value).
    """
    full = r > min(a.shape)
    u, _, _ = torch.linalg.svd(a, full_matrices=full)
    return _fix_signs(u[:, :r])


def _tucker_core(w: torch.Tensor, u_out: torch.Tensor, u_in: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ochw,oa,cb->abhw", w, u_out, u_in)


def _hosvd(w: torch.Tensor, r_out: int, r_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    out, cin = w.shape[:2]
    u_out = _leading_left(w.reshape(out, -1), r_out)
    u_in = _leading_left(w.transpose(0, 1).reshape(cin, -1), r_in)
    return u_out, u_in


def _hooi(w: torch.Tensor, r_out: int, r_in: int, n_iter: int,
          tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """HOOI from the HOSVD start; ``||core||`` never decreases, so the error never grows."""
    out, cin = w.shape[:2]
    u_out, u_in = _hosvd(w, r_out, r_in)
    w_norm2 = float(torch.sum(w * w))
    fit = float(torch.sum(_tucker_core(w, u_out, u_in) ** 2))
    for _ in range(n_iter):
        y = torch.einsum("ochw,cb->obhw", w, u_in).reshape(out, -1)
        u_out = _leading_left(y, r_out)
        z = torch.einsum("ochw,oa->cahw", w, u_out).reshape(cin, -1)
        u_in = _leading_left(z, r_in)
        new_fit = float(torch.sum(_tucker_core(w, u_out, u_in) ** 2))
        done = abs(new_fit - fit) <= tol * max(w_norm2, 1e-300)
        fit = new_fit
        if done:
            break
    return u_out, u_in


# --------------------------------------------------------------------------
# Tucker-2
# --------------------------------------------------------------------------

class TuckerConv2d(_FactorizedConv2d):
    r"""2-d convolution with a Tucker-2 factorized kernel.

    The kernel of shape ``(out_channels, in_channels, kh, kw)`` is held as

    .. math:: K_{o c h w} = \sum_{a, b} U^{out}_{o a}\, G_{a b h w}\, U^{in}_{c b}

    (Tucker-2 over the channel modes, Kim et al. 2016) and the layer runs as a
    1x1 convolution ``in -> r_in``, a ``kh x kw`` core convolution
    ``r_in -> r_out`` carrying the stride, padding and dilation, and a 1x1
    convolution ``r_out -> out`` carrying the bias.  The output equals
    ``F.conv2d`` with the reconstructed kernel :attr:`weight` exactly (up to
    floating-point rounding).

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts, positive.
    kernel_size : int or (int, int)
        Spatial kernel size ``(kh, kw)``.
    ranks : int or (int, int)
        Tucker ranks ``(r_out, r_in)``; an int sets both.  Need
        ``1 <= r_out <= out_channels`` and ``1 <= r_in <= in_channels``.
    stride, dilation : int or (int, int), optional
        As in :class:`torch.nn.Conv2d` (default 1).
    padding : int, (int, int), 'same' or 'valid', optional
        As in :class:`torch.nn.Conv2d` (default 0); ``'same'`` needs stride 1.
    groups : int, optional
        Must be 1 (the only supported value).
    bias : bool, optional
        Whether to add a learnable bias (default True).
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, optional
        As in :class:`torch.nn.Conv2d`; the padding is applied once, after the
        first 1x1 convolution, which is exact because a pointwise channel mix
        commutes with any spatial padding.
    dtype, device : optional
        Of the parameters.

    Attributes
    ----------
    factor_in : torch.nn.Parameter
        ``U_in``, shape ``(in_channels, r_in)``.
    core : torch.nn.Parameter
        ``G``, shape ``(r_out, r_in, kh, kw)``.
    factor_out : torch.nn.Parameter
        ``U_out``, shape ``(out_channels, r_out)``.
    bias : torch.nn.Parameter or None
        Shape ``(out_channels,)``.

    Notes
    -----
    Default initialization: ``U_in`` and ``U_out`` get orthonormal columns
    (:func:`torch.nn.init.orthogonal_`) and the core is i.i.d. normal with
    variance ``(out/r_out) (in/r_in) / (3 fan_in)``, ``fan_in = in*kh*kw``.  A
    kernel entry then has mean variance ``1 / (3 fan_in)``, the variance of
    :class:`torch.nn.Conv2d`'s default (Kaiming-uniform, ``a=sqrt(5)``) init, so
    the output scale at init matches a dense layer of the same shape.  The bias
    is ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` as in :class:`torch.nn.Conv2d`.

    Use :meth:`from_conv` to compress a trained dense convolution.

    References
    ----------
    Y.-D. Kim, E. Park, S. Yoo, T. Choi, L. Yang, D. Shin, "Compression of deep
    convolutional neural networks for fast and low power mobile applications",
    ICLR 2016.

    Examples
    --------
    >>> import torch
    >>> from qtnn.nn import TuckerConv2d
    >>> layer = TuckerConv2d(16, 32, 3, ranks=(8, 4), padding=1)
    >>> layer(torch.randn(2, 16, 10, 12)).shape
    torch.Size([2, 32, 10, 12])
    >>> tuple(layer.weight.shape)
    (32, 16, 3, 3)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 ranks: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] | str = 0, dilation: int | tuple[int, int] = 1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 dtype: torch.dtype | None = None, device: Any = None) -> None:
        super().__init__()
        factory = self._setup(in_channels, out_channels, kernel_size, stride, padding,
                              dilation, groups, bias, padding_mode, dtype, device)
        self.ranks = self._check_ranks(ranks, self.out_channels, self.in_channels)
        r_out, r_in = self.ranks
        kh, kw = self.kernel_size
        check_alloc("TuckerConv2d parameters",
                    self.in_channels * r_in + r_out * r_in * kh * kw + self.out_channels * r_out)
        self.factor_in = nn.Parameter(torch.empty(self.in_channels, r_in, **factory))
        self.core = nn.Parameter(torch.empty(r_out, r_in, kh, kw, **factory))
        self.factor_out = nn.Parameter(torch.empty(self.out_channels, r_out, **factory))
        self.reset_parameters()

    @staticmethod
    def _check_ranks(ranks: Any, out_channels: int, in_channels: int) -> tuple[int, int]:
        what = "a positive integer or a pair (r_out, r_in) of them"
        if isinstance(ranks, numbers.Integral) and not isinstance(ranks, bool):
            pair = (ranks, ranks)
        elif isinstance(ranks, Sequence) and not isinstance(ranks, (str, bytes)) and len(ranks) == 2:
            pair = tuple(ranks)
        else:
            raise QtnnError(f"ranks must be {what}, got {short_repr(ranks)}")
        for v in pair:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise QtnnError(f"ranks must be {what}, got {short_repr(ranks)}")
        r_out, r_in = int(pair[0]), int(pair[1])
        if r_out > out_channels:
            raise QtnnError(f"ranks[0] (r_out) must be <= out_channels={out_channels}, "
                            f"got ranks={short_repr(ranks)}")
        if r_in > in_channels:
            raise QtnnError(f"ranks[1] (r_in) must be <= in_channels={in_channels}, "
                            f"got ranks={short_repr(ranks)}")
        return r_out, r_in

    def reset_parameters(self) -> None:
        """Re-initialize the factors and bias (see Notes of the class)."""
        r_out, r_in = self.ranks
        var = (self.out_channels / r_out) * (self.in_channels / r_in) / (3.0 * self._fan_in)
        with torch.no_grad():
            nn.init.orthogonal_(self.factor_in)
            nn.init.orthogonal_(self.factor_out)
            nn.init.normal_(self.core, 0.0, math.sqrt(var))
        self._reset_bias()

    @property
    def weight(self) -> torch.Tensor:
        """The reconstructed dense kernel, shape ``(out, in, kh, kw)`` (differentiable)."""
        return torch.einsum("oa,abhw,cb->ochw", self.factor_out, self.core, self.factor_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the convolution to ``x`` of shape ``(N, in, H, W)`` or ``(in, H, W)``."""
        x, batched = self._check_input(x)
        r_out, r_in = self.ranks
        h = F.conv2d(x, self.factor_in.t().reshape(r_in, self.in_channels, 1, 1))
        h = self._pad(h)
        h = F.conv2d(h, self.core, stride=self.stride, padding=self._conv_pad,
                     dilation=self.dilation)
        y = F.conv2d(h, self.factor_out.reshape(self.out_channels, r_out, 1, 1), self.bias)
        return y if batched else y.squeeze(0)

    def extra_repr(self) -> str:
        return f"{self._geometry_repr()}, ranks={self.ranks}"

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, ranks: int | tuple[int, int] | None = None, *,
                  method: str = "hooi", max_iter: int | None = None, tol: float = 1e-12,
                  n_iter: int | None = None) -> TuckerConv2d:
        r"""Compress a dense :class:`torch.nn.Conv2d` by a Tucker-2 decomposition.

        Parameters
        ----------
        conv : torch.nn.Conv2d
            Dense convolution with ``groups=1`` and a finite weight.  Geometry,
            bias, ``padding_mode``, dtype and device are copied.
        ranks : int, (int, int) or None, optional
            ``(r_out, r_in)``.  ``None`` means full multilinear rank,
            ``r_out = min(out, in*kh*kw)`` and ``r_in = min(in, out*kh*kw)``,
            which reproduces the kernel exactly (to rounding).
        method : {'hooi', 'hosvd'}, optional
            ``'hosvd'``: leading left singular vectors of the mode-``out`` and
            mode-``in`` unfoldings.  ``'hooi'`` (default): higher-order
            orthogonal iteration started from the HOSVD; its error is never
            larger than the HOSVD one.
        max_iter : int, optional
            Maximum number of HOOI sweeps (default 100; ``n_iter=`` is its deprecated name).
        tol : float, optional
            HOOI stops when ``||core||^2`` changes by at most
            ``tol * ||K||^2`` in a sweep (default 1e-12).

        Returns
        -------
        TuckerConv2d

        Notes
        -----
        The decomposition runs in float64 on the weight's device and is
        deterministic: each singular vector is sign-fixed so that its entry of
        largest magnitude is positive.  With orthonormal factors the core is
        ``G = K x_out U_out^T x_in U_in^T`` and the squared error is
        ``||K||^2 - ||G||^2``; for HOSVD it lies between the larger and the sum
        of the two discarded singular-value tails of the unfoldings.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from qtnn.nn import TuckerConv2d
        >>> conv = nn.Conv2d(8, 6, 3, padding=1, dtype=torch.float64)
        >>> exact = TuckerConv2d.from_conv(conv)            # full rank
        >>> x = torch.randn(1, 8, 7, 7, dtype=torch.float64)
        >>> bool(torch.allclose(exact(x), conv(x), rtol=0, atol=1e-12))
        True
        >>> small = TuckerConv2d.from_conv(conv, ranks=(3, 2), method="hosvd")
        >>> small.ranks
        (3, 2)
        """
        w = _check_conv(conv)
        out, cin, kh, kw = w.shape
        if ranks is None:
            ranks = (min(out, cin * kh * kw), min(cin, out * kh * kw))
        r_out, r_in = cls._check_ranks(ranks, out, cin)
        method = check_choice("method", method, _TUCKER_METHODS)
        n_iter = check_int("max_iter", renamed("TuckerConv2d.from_conv", "n_iter", "max_iter", n_iter,
                                               max_iter, default=100), minimum=0)
        tol = check_real("tol", tol, minimum=0)
        if method == "hosvd":
            u_out, u_in = _hosvd(w, r_out, r_in)
        else:
            u_out, u_in = _hooi(w, r_out, r_in, n_iter, float(tol))
        core = _tucker_core(w, u_out, u_in)
        dtype, device = conv.weight.dtype, conv.weight.device
        layer = cls(cin, out, (kh, kw), (r_out, r_in), dtype=dtype, device=device,
                    **cls._geometry_from(conv))
        with torch.no_grad():
            layer.factor_in.copy_(u_in)
            layer.core.copy_(core)
            layer.factor_out.copy_(u_out)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias.detach())
        return layer


# --------------------------------------------------------------------------
# CP
# --------------------------------------------------------------------------

def _cp_exact_bound(out: int, cin: int, kh: int, kw: int) -> tuple[int, int]:
    """``(bound, which)``: smallest of the four structured exact CP sizes.

    ``which`` is the one mode whose factor is taken from the kernel while the
    other three are one-hot: 0 = out (``R = in*kh*kw``), 1 = in
    (``R = out*kh*kw``), 2 = h (``R = out*in*kw``), 3 = w (``R = out*in*kh``).
    """
    sizes = (cin * kh * kw, out * kh * kw, out * cin * kw, out * cin * kh)
    which = min(range(4), key=lambda i: sizes[i])
    return sizes[which], which


def _cp_exact(w: torch.Tensor, which: int) -> list[torch.Tensor]:
    """Exact CP of ``w`` (out, in, kh, kw): one-hot factors on three modes.

    With ``which`` = the free mode, there is one component per index tuple of
    the three other modes (in row-major order); its factors on those modes are
    the matching unit vectors and its factor on the free mode is the kernel
    fibre ``w[..., :, ...]`` at that tuple, so the sum of the components is
    ``w`` entry by entry.
    """
    dims = list(w.shape)
    others = [m for m in range(4) if m != which]
    fibres = w.permute(which, *others).reshape(dims[which], -1)     # (dim_which, R)
    rank = fibres.shape[1]
    factors: list[torch.Tensor] = [torch.empty(0)] * 4
    factors[which] = fibres
    idx = torch.arange(rank, device=w.device)
    # row-major decomposition of the component index into the three other modes
    strides = []
    s = 1
    for m in reversed(others):
        strides.append(s)
        s *= dims[m]
    strides.reverse()
    for m, st in zip(others, strides, strict=True):
        coord = (idx // st) % dims[m]
        f = torch.zeros(dims[m], rank, dtype=w.dtype, device=w.device)
        f[coord, idx] = 1.0
        factors[m] = f
    return factors


def _cp_als(w: torch.Tensor, rank: int, n_iter_max: int, tol: float,
            seed: int) -> list[torch.Tensor]:
    """CP-ALS via :func:`tensorly.decomposition.parafac` (SVD init, numpy backend)."""
    try:
        import tensorly as tl
        from tensorly.decomposition import parafac
    except ImportError as exc:  # pragma: no cover - tensorly is a dependency
        raise QtnnError("CPConv2d.from_conv with a rank below the exact bound needs tensorly, a "
                        "dependency of qtnn: reinstall qtnn (pip install qtnn)") from exc
    w_np = w.detach().cpu().numpy()
    with tl.backend_context("numpy"), warnings.catch_warnings():
        # rank above a mode size: tensorly's SVD init completes it with seeded
        # random columns and says so; that is expected here
        warnings.filterwarnings("ignore", message=r"Trying to compute SVD with n_eigenvecs")
        cp = parafac(w_np, rank, n_iter_max=n_iter_max, init="svd", tol=tol,
                     random_state=seed, normalize_factors=False)
        weights, factors = cp
        factors = [torch.as_tensor(tl.to_numpy(f), dtype=torch.float64) for f in factors]
        factors[0] = factors[0] * torch.as_tensor(tl.to_numpy(weights), dtype=torch.float64)
    # balance the column norms across the four factors (same product, better conditioned)
    norms = torch.stack([f.norm(dim=0) for f in factors])           # (4, R)
    ok = (norms > 0).all(dim=0)
    geo = norms.clamp_min(1e-300).log().mean(dim=0).exp()
    scale = torch.where(ok.unsqueeze(0), geo / norms.clamp_min(1e-300), torch.ones_like(norms))
    factors = [f * scale[i] for i, f in enumerate(factors)]
    # deterministic sign gauge: first three factors' largest entries positive
    for i in range(3):
        idx = factors[i].abs().argmax(dim=0)
        s = torch.sign(factors[i].gather(0, idx.unsqueeze(0)))
        s = torch.where(s == 0, torch.ones_like(s), s)
        factors[i] = factors[i] * s
        factors[3] = factors[3] * s
    return [f.to(w.device) for f in factors]


class CPConv2d(_FactorizedConv2d):
    r"""2-d convolution with a CP (canonical polyadic) factorized kernel.

    The kernel of shape ``(out_channels, in_channels, kh, kw)`` is held as

    .. math:: K_{o c h w} = \sum_{r=1}^{R} A_{o r}\, B_{c r}\, V_{h r}\, H_{w r}

    (Lebedev et al. 2015) and the layer runs as a 1x1 convolution
    ``in -> R``, a depthwise (``groups=R``) ``kh x 1`` convolution with the
    vertical stride / padding / dilation, a depthwise ``1 x kw`` convolution
    with the horizontal ones, and a 1x1 convolution ``R -> out`` carrying the
    bias.  The output equals ``F.conv2d`` with the reconstructed kernel
    :attr:`weight` exactly (up to floating-point rounding).

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts, positive.
    kernel_size : int or (int, int)
        Spatial kernel size ``(kh, kw)``.
    rank : int
        CP rank ``R >= 1``.
    stride, dilation : int or (int, int), optional
        As in :class:`torch.nn.Conv2d` (default 1).
    padding : int, (int, int), 'same' or 'valid', optional
        As in :class:`torch.nn.Conv2d` (default 0); ``'same'`` needs stride 1.
    groups : int, optional
        Must be 1 (the only supported value).
    bias : bool, optional
        Whether to add a learnable bias (default True).
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, optional
        As in :class:`torch.nn.Conv2d`; applied once after the first 1x1
        convolution (exact, see :class:`TuckerConv2d`).
    dtype, device : optional
        Of the parameters.

    Attributes
    ----------
    factor_in : torch.nn.Parameter
        ``B``, shape ``(in_channels, R)``.
    factor_h : torch.nn.Parameter
        ``V``, shape ``(kh, R)``.
    factor_w : torch.nn.Parameter
        ``H``, shape ``(kw, R)``.
    factor_out : torch.nn.Parameter
        ``A``, shape ``(out_channels, R)``.
    bias : torch.nn.Parameter or None
        Shape ``(out_channels,)``.

    Notes
    -----
    Default initialization: every column of each of the four factors is a
    uniformly random direction of norm ``s * sqrt(d)`` (``d`` = that factor's
    row count), i.e. the norm an i.i.d. ``N(0, s^2)`` column has on average,
    with ``s = (1 / (3 fan_in R))^(1/8)`` and ``fan_in = in*kh*kw``.  A kernel
    entry, a sum of ``R`` products of four factor entries, then has mean square
    ``R s^8 = 1 / (3 fan_in)``, the variance of :class:`torch.nn.Conv2d`'s
    default init, so the output scale at init matches a dense layer of the same
    shape (fixing the column norms removes most of the draw-to-draw spread of a
    product of small Gaussian factors).  The bias is
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    References
    ----------
    V. Lebedev, Y. Ganin, M. Rakhuba, I. Oseledets, V. Lempitsky, "Speeding-up
    convolutional neural networks using fine-tuned CP-decomposition", ICLR 2015.

    Examples
    --------
    >>> import torch
    >>> from qtnn.nn import CPConv2d
    >>> layer = CPConv2d(16, 32, (3, 5), rank=12, stride=2, padding=(1, 2))
    >>> layer(torch.randn(2, 16, 11, 13)).shape
    torch.Size([2, 32, 6, 7])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 rank: int, stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] | str = 0, dilation: int | tuple[int, int] = 1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 dtype: torch.dtype | None = None, device: Any = None) -> None:
        super().__init__()
        factory = self._setup(in_channels, out_channels, kernel_size, stride, padding,
                              dilation, groups, bias, padding_mode, dtype, device)
        self.rank = check_int("rank", rank, minimum=1)
        kh, kw = self.kernel_size
        check_alloc("CPConv2d parameters",
                    self.rank * (self.in_channels + self.out_channels + kh + kw))
        self.factor_in = nn.Parameter(torch.empty(self.in_channels, self.rank, **factory))
        self.factor_h = nn.Parameter(torch.empty(kh, self.rank, **factory))
        self.factor_w = nn.Parameter(torch.empty(kw, self.rank, **factory))
        self.factor_out = nn.Parameter(torch.empty(self.out_channels, self.rank, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialize the factors and bias (see Notes of the class)."""
        std = (1.0 / (3.0 * self._fan_in * self.rank)) ** 0.125
        with torch.no_grad():
            for f in (self.factor_in, self.factor_h, self.factor_w, self.factor_out):
                nn.init.normal_(f, 0.0, 1.0)
                # random directions, column norms fixed at their expected value
                f.mul_(std * math.sqrt(f.shape[0]) / f.norm(dim=0, keepdim=True).clamp_min(1e-30))
        self._reset_bias()

    @property
    def weight(self) -> torch.Tensor:
        """The reconstructed dense kernel, shape ``(out, in, kh, kw)`` (differentiable)."""
        return torch.einsum("or,cr,hr,wr->ochw", self.factor_out, self.factor_in,
                            self.factor_h, self.factor_w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the convolution to ``x`` of shape ``(N, in, H, W)`` or ``(in, H, W)``."""
        x, batched = self._check_input(x)
        r = self.rank
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        ph, pw = self._conv_pad
        h = F.conv2d(x, self.factor_in.t().reshape(r, self.in_channels, 1, 1))
        h = self._pad(h)
        h = F.conv2d(h, self.factor_h.t().reshape(r, 1, kh, 1), stride=(sh, 1),
                     padding=(ph, 0), dilation=(dh, 1), groups=r)
        h = F.conv2d(h, self.factor_w.t().reshape(r, 1, 1, kw), stride=(1, sw),
                     padding=(0, pw), dilation=(1, dw), groups=r)
        y = F.conv2d(h, self.factor_out.reshape(self.out_channels, r, 1, 1), self.bias)
        return y if batched else y.squeeze(0)

    def extra_repr(self) -> str:
        return f"{self._geometry_repr()}, rank={self.rank}"

    @staticmethod
    def exact_rank(out_channels: int, in_channels: int,
                   kernel_size: int | tuple[int, int]) -> int:
        """Smallest rank for which :meth:`from_conv` builds an exact CP.

        ``min(in*kh*kw, out*kh*kw, out*in*kw, out*in*kh)``.

        Examples
        --------
        >>> from qtnn.nn import CPConv2d
        >>> CPConv2d.exact_rank(64, 3, 3)
        27
        """
        out = check_int("out_channels", out_channels, minimum=1)
        cin = check_int("in_channels", in_channels, minimum=1)
        kh, kw = _pair("kernel_size", kernel_size, 1)
        return _cp_exact_bound(out, cin, kh, kw)[0]

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, rank: int | None = None, *, max_iter: int | None = None,
                  seed: int = 0, tol: float = 1e-12, n_iter_max: int | None = None) -> CPConv2d:
        r"""Compress a dense :class:`torch.nn.Conv2d` by a CP decomposition.

        Parameters
        ----------
        conv : torch.nn.Conv2d
            Dense convolution with ``groups=1`` and a finite weight.  Geometry,
            bias, ``padding_mode``, dtype and device are copied.
        rank : int or None, optional
            CP rank.  ``None`` or any rank ``>=`` :meth:`exact_rank` gives an
            exact decomposition built explicitly (see Notes); a smaller rank is
            fitted by alternating least squares.
        max_iter : int, optional
            Maximum ALS sweeps (default 500; ``n_iter_max=`` is its deprecated name).
        seed : int, optional
            Seed for the parts of the ALS initialization and of the padding
            components that are random (default 0); results are deterministic.
        tol : float, optional
            ALS stops when the relative reconstruction error changes by less
            than ``tol`` between sweeps (default 1e-12).

        Returns
        -------
        CPConv2d

        Notes
        -----
        *Exact construction.*  Let ``K`` have shape ``(out, in, kh, kw)`` and pick
        the mode ``m`` whose removal leaves the fewest index tuples, i.e. the
        smallest of ``in*kh*kw`` (``m`` = out), ``out*kh*kw`` (``m`` = in),
        ``out*in*kw`` (``m`` = h) and ``out*in*kh`` (``m`` = w).  There is one
        component per tuple of the three other indices: on those three modes
        its factors are the unit vectors of the tuple, on mode ``m`` the kernel
        fibre at that tuple.  For ``m`` = out this is
        ``K = sum_{c,h,w} K[:, c, h, w] (x) e_c (x) e_h (x) e_w``, which holds
        entry by entry.  Extra components (``rank`` above the bound) get a zero
        output factor and seeded random unit-norm other factors, so they add
        nothing but can be trained.

        *ALS.*  :func:`tensorly.decomposition.parafac` with ``init='svd'``
        (numpy backend, float64, ``random_state=seed``), then the column norms
        are balanced across the four factors and a sign gauge is fixed, so two
        calls give identical factors.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from qtnn.nn import CPConv2d
        >>> conv = nn.Conv2d(3, 8, 3, padding=1, dtype=torch.float64)
        >>> exact = CPConv2d.from_conv(conv)      # rank = 3*3*3 = 27, exact
        >>> exact.rank
        27
        >>> x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
        >>> bool(torch.allclose(exact(x), conv(x), rtol=0, atol=1e-12))
        True
        """
        w = _check_conv(conv)
        out, cin, kh, kw = w.shape
        bound, which = _cp_exact_bound(out, cin, kh, kw)
        if rank is not None:
            rank = check_int("rank", rank, minimum=1)
        n_iter_max = check_int("max_iter", renamed("CPConv2d.from_conv", "n_iter_max", "max_iter", n_iter_max,
                                                   max_iter, default=500), minimum=1)
        seed = check_int("seed", seed, minimum=0)
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (tol >= 0) \
                or not math.isfinite(tol):
            raise QtnnError(f"tol must be a finite real number >= 0, got {short_repr(tol)}")
        if rank is None or rank >= bound:
            target = bound if rank is None else rank
            check_alloc("CPConv2d.from_conv factors", target * (out + cin + kh + kw))
            factors = _cp_exact(w, which)
            extra = target - bound
            if extra > 0:
                gen = torch.Generator(device="cpu").manual_seed(seed)
                pad = []
                for i, d in enumerate((out, cin, kh, kw)):
                    if i == 0:
                        f = torch.zeros(d, extra, dtype=torch.float64)
                    else:
                        f = torch.randn(d, extra, generator=gen, dtype=torch.float64)
                        f = f / f.norm(dim=0, keepdim=True).clamp_min(1e-300)
                    pad.append(f.to(w.device))
                factors = [torch.cat([f, p], dim=1) for f, p in zip(factors, pad, strict=True)]
        else:
            factors = _cp_als(w, rank, n_iter_max, float(tol), seed)
            target = rank
        a, b, v, h = factors
        dtype, device = conv.weight.dtype, conv.weight.device
        layer = cls(cin, out, (kh, kw), target, dtype=dtype, device=device,
                    **cls._geometry_from(conv))
        with torch.no_grad():
            layer.factor_out.copy_(a)
            layer.factor_in.copy_(b)
            layer.factor_h.copy_(v)
            layer.factor_w.copy_(h)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias.detach())
        return layer
