"""``MPOLinear``: a drop-in replacement for :class:`torch.nn.Linear` whose weight is an MPO."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.tn.contract import (
    MPOApplyPlan,
    PreparedApply,
    measured_plan,
    plan_mpo_apply,
    prepare_mpo_apply,
)
from qtnn.tn.mpo import MPO, apply_cores, site_dims
from qtnn.validate import (
    as_float_array,
    check_alloc,
    check_bond,
    check_bool,
    check_cutoff,
    check_int,
    renamed,
)

__all__ = ["MPOLinear", "default_num_cores"]

#: :class:`MPOLinear` times the candidate plans of each new batch size, device,
#: dtype and mode once (:func:`qtnn.tn.contract.measured_plan`) and runs the
#: fastest; ``False``: the cost model alone (:func:`qtnn.tn.contract.plan_mpo_apply`).
MEASURE_PLANS = True

#: Plans whose operands built from the cores (the dense weight, the merged
#: blocks) an :class:`MPOLinear` keeps for inference at once, the most recently
#: built ones.
KEPT_PLANS = 4


def default_num_cores(in_features: int, out_features: int) -> int:
    """Number of sites so that site dims are about 8 (at least 2 sites).

    Examples
    --------
    >>> default_num_cores(4096, 4096), default_num_cores(64, 10)
    (4, 2)
    """
    return max(2, round(math.log(max(in_features, out_features, 2)) / math.log(8)))


def init_like_linear(cores: Sequence[torch.Tensor], bias: torch.Tensor | None,
                     in_features: int) -> None:
    """Initialise MPO ``cores`` (and ``bias``) in place like :class:`torch.nn.Linear`.

    Every core is Gaussian with the standard deviation that makes
    ``Var(W_ij) = 1 / (3 in_features)`` (with ``L`` cores and internal bonds
    ``chi_k``, ``Var(W_ij) = prod_k sigma^2 * prod_k chi_k``); the bias is
    ``U(-1/sqrt(in), 1/sqrt(in))``.
    """
    target = 1.0 / (3.0 * in_features)
    chis = math.prod(int(c.shape[-1]) for c in cores[:-1])
    sigma = (target / chis) ** (1.0 / (2 * len(cores)))
    with torch.no_grad():
        for c in cores:
            c.normal_(0.0, sigma)
        if bias is not None:
            bound = 1.0 / math.sqrt(in_features)
            bias.uniform_(-bound, bound)


def bond_caps(out_dims: Sequence[int], in_dims: Sequence[int]) -> list[int]:
    """Largest useful bond at each internal bond of an MPO with these site dims."""
    p = [o * i for o, i in zip(out_dims, in_dims, strict=True)]
    return [min(math.prod(p[:k]), math.prod(p[k:])) for k in range(1, len(p))]


def _check_dtype(dtype: Any) -> None:
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise QtnnTypeError(f"dtype must be a real floating torch.dtype or None, got {dtype!r:.80}")


def _core_state(cores: Any) -> tuple[Any, ...] | None:
    """What tells that the cores are unchanged: each one's identity, storage, version, device and dtype.

    ``None`` for cores made under ``torch.inference_mode``, which keep no
    version counter, so that an in-place change cannot be seen: nothing built
    from them may be kept.
    """
    try:
        return tuple((id(c), c.data_ptr(), c._version, c.device, c.dtype) for c in cores)
    except RuntimeError:        # "Inference tensors do not track version counter"
        return None


class MPOLinear(nn.Module):
    r"""Linear layer ``y = W x + b`` with ``W`` held as a Matrix Product Operator.

    Core ``k`` has shape ``(left_bond, out_k, in_k, right_bond)``; inputs of
    any leading shape ``(..., in_features)`` are zero-padded to
    ``prod(in_dims)``, contracted with the cores in the order opt_einsum finds
    cheapest for the current shapes (cached per shape; rebuilding ``W`` is
    chosen only where that is cheaper), and cropped to ``out_features``.

    Parameters
    ----------
    in_features, out_features : int
        As in :class:`torch.nn.Linear`.
    max_bond : int
        Largest internal bond (capped at each bond by what the sizes allow).
        ``bond_dim=`` is its deprecated name.
    out_dims, in_dims : None, int or sequence of int
        Site dims; an int gives that many balanced sites.  By default both use
        :func:`default_num_cores` sites (dims close to 8).
    bias : bool
        Add a learnable bias (initialised like :class:`torch.nn.Linear`).
    dtype, device : optional
        Of the parameters.

    Notes
    -----
    Initialisation: every core is Gaussian with the standard deviation that
    makes ``Var(W_ij) = 1 / (3 * in_features)``, the variance of
    :class:`torch.nn.Linear`'s default ``kaiming_uniform_(a=sqrt(5))``, so
    outputs have the same scale at init.  (With ``L`` cores and internal bonds
    ``chi_k``, ``Var(W_ij) = prod_k sigma_k^2 * prod_k chi_k``.)

    References
    ----------
    Novikov et al., "Tensorizing Neural Networks", NeurIPS 2015.

    Examples
    --------
    >>> import torch
    >>> layer = MPOLinear(64, 32, max_bond=4)
    >>> layer(torch.randn(5, 64)).shape
    torch.Size([5, 32])
    >>> layer.out_dims, layer.in_dims, layer.bond_dims
    ((8, 4), (8, 8), [4])
    """

    def __init__(self, in_features: int, out_features: int, max_bond: int | None = None, *,
                 out_dims: Any = None, in_dims: Any = None, bias: bool = True,
                 dtype: torch.dtype | None = None, device: Any = None, bond_dim: int | None = None) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.out_features = check_int("out_features", out_features, minimum=1)
        bond = check_bond("max_bond", renamed("MPOLinear", "bond_dim", "max_bond", bond_dim, max_bond))
        if bond is None:
            raise QtnnError("max_bond must be a positive integer, got None")
        check_bool("bias", bias)
        _check_dtype(dtype)
        if out_dims is None and in_dims is None:
            out_dims = in_dims = default_num_cores(self.in_features, self.out_features)
        od, idm = site_dims(self.out_features, self.in_features, out_dims, in_dims)
        bonds = [1] + [min(bond, c) for c in bond_caps(od, idm)] + [1]
        itemsize = torch.empty((), dtype=dtype or torch.get_default_dtype()).element_size()
        check_alloc(f"the cores of an MPOLinear({self.in_features}, {self.out_features}, max_bond={bond})",
                    sum(bonds[k] * od[k] * idm[k] * bonds[k + 1] for k in range(len(od)))
                    + self.out_features, itemsize, hint="use a smaller max_bond or fewer features")
        factory = {"dtype": dtype, "device": device}
        self.cores = nn.ParameterList(
            nn.Parameter(torch.empty(bonds[k], od[k], idm[k], bonds[k + 1], **factory))
            for k in range(len(od)))
        self.bias = nn.Parameter(torch.empty(self.out_features, **factory)) if bias else None
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    def reset_parameters(self) -> None:
        """Gaussian cores with ``Var(W_ij) = 1/(3 in_features)``; bias ``U(-1/sqrt(in), 1/sqrt(in))``."""
        init_like_linear(list(self.cores), self.bias, self.in_features)

    # ------------------------------------------------------------- structure
    @property
    def out_dims(self) -> tuple[int, ...]:
        """Output dims of the sites."""
        return tuple(int(c.shape[1]) for c in self.cores)

    @property
    def in_dims(self) -> tuple[int, ...]:
        """Input dims of the sites."""
        return tuple(int(c.shape[2]) for c in self.cores)

    @property
    def bond_dims(self) -> list[int]:
        """Internal bond dimensions."""
        return [int(c.shape[-1]) for c in list(self.cores)[:-1]]

    @property
    def mpo(self) -> MPO:
        """The weight as a float64 :class:`~qtnn.tn.MPO` (a detached copy)."""
        cores = [c.detach().cpu().to(torch.float64).numpy().copy() for c in self.cores]
        return MPO(cores, shape=(self.out_features, self.in_features), check=False)

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight ``W`` (``out_features x in_features``), differentiable."""
        eye = torch.eye(self.in_features, dtype=self.cores[0].dtype, device=self.cores[0].device)
        return apply_cores(eye, list(self.cores), (self.out_features, self.in_features)).T

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"out_dims={self.out_dims}, in_dims={self.in_dims}, bond_dims={self.bond_dims}, "
                f"bias={self.bias is not None}")

    # ------------------------------------------------------- kept operands
    #: what the forward pass keeps between calls without gradients (see :meth:`forward`)
    _KEPT = ("_prepared_cache", "_last_inference")

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        """Move or convert the parameters (``.to``, ``.cuda``, ``.double`` ...), dropping kept operands.

        What was built from the old tensors would only be rebuilt on the next
        call, but would hold their memory (on the old device) until then.
        """
        for name in self._KEPT:
            self.__dict__.pop(name, None)
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        """The module's state for pickling and ``copy.deepcopy``, without the kept operands."""
        return {k: v for k, v in super().__getstate__().items() if k not in self._KEPT}

    # --------------------------------------------------------------- forward
    def _check_input(self, x: Any, dtype: torch.dtype) -> None:
        if not isinstance(x, torch.Tensor):
            raise QtnnTypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise QtnnError(f"x must have shape (..., {self.in_features}), got {tuple(x.shape)}")
        if x.dtype != dtype and not (x.is_floating_point() and torch.is_autocast_enabled(x.device.type)):
            raise QtnnTypeError(f"x must have the layer's dtype {dtype}, got {x.dtype} (convert it with "
                                f"x.to({dtype}) or the layer with .to({x.dtype}))")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``y = W x + b`` over the last axis of ``x``.

        The contraction is the fastest plan measured on this machine for the
        batch size, device, dtype and mode (:func:`qtnn.tn.contract.measured_plan`;
        forward+backward when gradients are wanted, forward alone otherwise).
        The dense plan runs as ``torch.nn.functional.linear`` on the weight
        built from the cores, the split plans add the bias inside their last
        product.  Without gradients what a plan builds from the cores (the
        weight, or the two merged blocks) is kept until a core changes (or the
        layer moves), so inference with the dense plan is one dense product; a
        call with the previous call's input shape, dtype and device, and cores
        unchanged, reuses its plan and operands without looking them up (a
        64 x 64 layer on one input: 19-26 us a call against 31-44 us before,
        ``nn.Linear`` 9-12 us; 2 CPU cores).  Cores made under
        ``torch.inference_mode`` have no version counter to tell a change, so
        their operands are built on every call.
        Plans are timed once per power of two of the batch size.  Every plan is
        exact, but they round differently: which one wins can differ between
        machines and runs (the timing decides), so outputs can differ in the
        last bits (about 1e-7 relative in float32).  For bit-reproducible runs
        set ``qtnn.nn.mpo_linear.MEASURE_PLANS = False`` (the cost model's plan,
        a function of the shapes alone).
        """
        key = None if torch.is_grad_enabled() else self._inference_key(x)
        if key is not None:
            last = self.__dict__.get("_last_inference")
            if last is not None and last[0] == key:     # the previous call's input, cores unchanged
                return self._run(x, last[1], last[2])
        # the parameters read straight from the list (indexing a ParameterList costs more than the
        # rest of a cached-weight forward); through indexing where a parametrization sits in between
        cores: list[torch.Tensor] = (list(self.cores) if self._parametrized()
                                     else [*self.cores._parameters.values()])  # type: ignore[list-item]
        self._check_input(x, cores[0].dtype)
        plan = self._measured_plan(x, cores)
        if plan is None:       # the cost model's plan, a function of the shapes alone
            plan = plan_mpo_apply(math.prod(x.shape[:-1]), [tuple(c.shape) for c in cores],
                                  device_type=x.device.type)
        if torch.is_grad_enabled() and any(c.requires_grad for c in cores):
            prepared = self._build(plan, cores)       # differentiable, built on every call
        else:
            prepared = self._prepared(plan, cores)
            if key is not None:
                self.__dict__["_last_inference"] = (key, prepared, cores)
        return self._run(x, prepared, cores)

    def _run(self, x: torch.Tensor, prepared: PreparedApply, cores: list[torch.Tensor]) -> torch.Tensor:
        """``prepared`` applied to ``x``, with the bias."""
        if prepared.kind == "dense":
            return torch.nn.functional.linear(x, prepared.ops[0], self.bias)
        return apply_cores(x, cores, (self.out_features, self.in_features), bias=self.bias,
                           prepared=prepared)

    def _inference_key(self, x: Any) -> Any:
        """What decides a forward pass without gradients, or ``None`` where the full path must run.

        The input's shape, dtype and device, :data:`MEASURE_PLANS` and the
        cores' state (:func:`_core_state`): equal keys give the same plan and
        the same kept operands (:meth:`_prepared`), so the forward pass reuses
        the previous call's without looking them up again.  Not for
        parametrized cores (new tensors on every read), under autocast, JIT
        tracing or compilation (where the plan is the cost model's).
        """
        if (not isinstance(x, torch.Tensor) or self._parametrized()
                or torch.is_autocast_enabled(x.device.type) or torch.jit.is_tracing()
                or torch.compiler.is_compiling()):
            return None
        state = _core_state(self._modules["cores"]._parameters.values())  # type: ignore[union-attr]
        return None if state is None else (x.shape, x.dtype, x.device, MEASURE_PLANS, state)

    def _parametrized(self) -> bool:
        """Whether ``self.cores`` is parametrized (``torch.nn.utils.parametrize``): then read by index."""
        # not through Module.__getattr__: every forward pass asks
        return "parametrizations" in self._modules["cores"]._modules  # type: ignore[union-attr]

    def _measured_plan(self, x: torch.Tensor, cores: list[torch.Tensor]) -> Any:
        """The measured plan for ``x`` (``None``: leave it to the cost model; see :data:`MEASURE_PLANS`)."""
        if (not MEASURE_PLANS or x.device.type == "meta" or torch.is_autocast_enabled(x.device.type)
                or torch.jit.is_tracing() or torch.compiler.is_compiling()):
            return None
        grad = torch.is_grad_enabled() and (x.requires_grad or any(c.requires_grad for c in cores))
        batch = math.prod(x.shape[:-1])
        # timed once per power of two: varying batches (sequence lengths, the last batch of an
        # epoch) reuse the plan of their bucket instead of each paying for a calibration
        bucket = 1 << max(batch - 1, 0).bit_length()
        return measured_plan(bucket, tuple(c.shape for c in cores), device=x.device,
                             dtype=cores[0].dtype, grad=bool(grad))

    def _build(self, plan: MPOApplyPlan, cores: list[torch.Tensor]) -> PreparedApply:
        """The plan's operands built from the cores.

        The dense weight comes cropped to ``out_features x in_features``, so it
        meets ``x`` unpadded in ``torch.nn.functional.linear``.
        """
        prepared = prepare_mpo_apply(plan, cores)
        if prepared.kind == "dense" and prepared.ops[0].shape != (self.out_features, self.in_features):
            w = prepared.ops[0][: self.out_features, : self.in_features]
            prepared = PreparedApply(plan, "dense", (w,), ())
        return prepared

    def _prepared(self, plan: MPOApplyPlan, cores: list[torch.Tensor]) -> PreparedApply:
        """The plan's operands built from the cores (the dense weight, cropped, or the merged blocks).

        Kept, with no gradient, while the cores are unchanged (same storage and
        version counters): an inference loop builds them once.  Parametrized
        cores and cores made under ``torch.inference_mode`` are built on every
        call (nothing tells that they changed).  One entry per
        plan, for the :data:`KEPT_PLANS` plans built last (batches of other
        sizes can run other plans; they do not rebuild each other's operands).
        """
        # parametrized cores are new tensors on every read, whose storage and identity the freed
        # ones of the last read can share: like inference tensors, nothing tells a change
        key = None if self._parametrized() else _core_state(cores)
        if key is None:     # built on every call, as with gradients
            with torch.no_grad():
                return self._build(plan, cores)
        kept: dict[Any, tuple[Any, PreparedApply]] = self.__dict__.setdefault("_prepared_cache", {})
        hit = kept.get(plan)
        if hit is not None and hit[0] == key:
            return hit[1]
        with torch.no_grad():
            built = self._build(plan, cores)
            # contiguous operands: every later call reads them
            prepared = PreparedApply(plan, built.kind, tuple(o.contiguous() for o in built.ops), built.dims)
        kept.pop(plan, None)
        kept[plan] = (key, prepared)     # the most recent last
        while len(kept) > KEPT_PLANS:
            del kept[next(iter(kept))]
        return prepared

    def bond_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations in every bond space: the "stack view" of the layer.

        The MPO is a product of sparse maps, one per core.  Contracting the
        input with cores ``0..k`` (site 0 first) leaves a tensor whose legs are
        the batch, the outputs of sites ``0..k``, bond ``k`` and the inputs not
        yet consumed.  Entry ``k`` of the result has shape
        ``(*lead, prod(out_dims[:k+1]), bond_dims[k], prod(in_dims[k+1:]))``.

        Examples
        --------
        >>> import torch
        >>> layer = MPOLinear(64, 64, max_bond=4)
        >>> [tuple(f.shape) for f in layer.bond_features(torch.randn(3, 64))]
        [(3, 8, 4, 8)]
        """
        self._check_input(x, self.cores[0].dtype)
        lead = tuple(x.shape[:-1])
        b = math.prod(lead)
        n_in = math.prod(self.in_dims)
        xf = x.reshape(b, self.in_features)
        if n_in != self.in_features:
            xf = torch.nn.functional.pad(xf, (0, n_in - self.in_features))
        # t: (B, out_done, bond, in_rest)
        t = xf.reshape(b, 1, 1, n_in)
        feats = []
        for k, c in enumerate(self.cores):
            l_, o, i, r = c.shape
            rest = t.shape[-1] // i
            t = t.reshape(b, t.shape[1], l_, i, rest)
            t = torch.einsum("bpliq,loir->bporq", t, c).reshape(b, t.shape[1] * o, r, rest)
            if k < len(self.cores) - 1:
                feats.append(t.reshape(lead + tuple(t.shape[1:])))
        return feats

    # ------------------------------------------------------------ conversion
    @classmethod
    def from_mpo(cls, mpo: MPO, bias: Any = None, *, dtype: torch.dtype | None = None,
                 device: Any = None) -> MPOLinear:
        """A layer whose weight is ``mpo`` (copied) and optional ``bias``."""
        if not isinstance(mpo, MPO):
            raise QtnnTypeError(f"mpo must be a qtnn.tn.MPO, got {type(mpo).__name__}")
        if np.iscomplexobj(mpo.cores[0]) or any(np.iscomplexobj(c) for c in mpo.cores):
            raise QtnnTypeError("mpo must be real to become an MPOLinear layer")
        _check_dtype(dtype)
        dtype = dtype or torch.get_default_dtype()
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.out_features, self.in_features = mpo.shape
        self.cores = nn.ParameterList(
            nn.Parameter(torch.as_tensor(c, dtype=dtype, device=device).clone()) for c in mpo.cores)
        if bias is None:
            self.bias = None
        else:
            if not isinstance(bias, torch.Tensor):
                bias = as_float_array("bias", bias, allow_complex=False)
            b = torch.as_tensor(bias, dtype=dtype, device=device).detach().clone()
            if b.shape != (self.out_features,):
                raise QtnnError(f"bias must have shape ({self.out_features},), got {tuple(b.shape)}")
            if not bool(torch.isfinite(b).all()):
                raise QtnnError("bias must be finite, got NaN or inf")
            self.bias = nn.Parameter(b)
        return self

    @classmethod
    def from_linear(cls, linear: nn.Linear, max_bond: int | None = None,
                    cutoff: float | None = None, *, out_dims: Any = None,
                    in_dims: Any = None) -> MPOLinear:
        """Compress a :class:`torch.nn.Linear` by TT-SVD of its weight.

        The decomposition runs in float64; the new layer has the dtype and
        device of ``linear``.  With ``max_bond=None`` and ``cutoff=None`` it is
        exact.

        Examples
        --------
        >>> import torch
        >>> lin = torch.nn.Linear(16, 8).double()
        >>> mpo_layer = MPOLinear.from_linear(lin)
        >>> x = torch.randn(4, 16, dtype=torch.float64)
        >>> bool(torch.allclose(mpo_layer(x), lin(x), rtol=0, atol=1e-12))
        True
        """
        if not isinstance(linear, nn.Linear):
            raise QtnnTypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        max_bond = check_bond("max_bond", max_bond)
        cutoff = check_cutoff("cutoff", cutoff)
        w = linear.weight.detach().to("cpu", torch.float64).numpy()
        if not np.all(np.isfinite(w)):
            raise QtnnError("linear.weight must be finite, got NaN or inf")
        if out_dims is None and in_dims is None:
            out_dims = in_dims = default_num_cores(linear.in_features, linear.out_features)
        mpo = MPO.from_dense(w, out_dims=out_dims, in_dims=in_dims, max_bond=max_bond, cutoff=cutoff)
        bias = None if linear.bias is None else linear.bias.detach()
        return cls.from_mpo(mpo, bias, dtype=linear.weight.dtype, device=linear.weight.device)

    def to_linear(self) -> nn.Linear:
        """An equivalent dense :class:`torch.nn.Linear`."""
        p = self.cores[0]
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        dtype=p.dtype, device=p.device)
        with torch.no_grad():
            lin.weight.copy_(self.weight)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin
