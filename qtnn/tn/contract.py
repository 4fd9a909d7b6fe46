"""Contraction planning for applying an MPO to a batch of vectors.

The cost of ``y = W x`` with ``W`` an MPO depends on the order of the pairwise
contractions (``docs/design/math.md``, section 1).  One core at a time costs ``O(bond^2)`` per entry
and runs as many small matrix products; merging neighbouring cores first often
halves the FLOPs; for large bonds rebuilding ``W`` is cheapest.
:func:`plan_mpo_apply` compares, from the shapes alone,

* ``"split"``: merge the cores left of a bond ``m`` into one block
  ``L (O_1, I_1, chi)`` and the rest into ``R (chi, O_2, I_2)``, then contract
  the input with one block and the result with the other.  Both steps are
  single large matrix products on contiguous data (no transposes of the
  batch-sized tensors).  Every bond ``m`` and both orders are costed.
* ``"dense"``: rebuild ``W`` from the two blocks and do one matmul.
* ``"einsum"``: the order opt_einsum finds over all pairwise contractions
  (executed with tensordot, which permutes its operands).

FLOPs of the non-dense paths are weighted by :data:`SPLIT_PENALTY` and
:data:`EINSUM_PENALTY` (GEMM efficiency measured on a 2-core CPU), or on a GPU
by :data:`GPU_SPLIT_PENALTY` and :data:`GPU_EINSUM_PENALTY` (measured on an
H200, where one large GEMM is far more efficient than several thin ones),

and caches the cheapest per shape.  ``qtnn bench mpo-linear`` measures it.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

__all__ = ["mpo_apply_equation", "mpo_apply_expression", "mpo_apply_cost",
           "plan_mpo_apply", "execute_mpo_apply", "MPOApplyPlan", "candidate_plans", "measured_plan",
           "dense_weight", "clear_measured_plans", "prepare_mpo_apply", "PreparedApply"]

#: Time per FLOP of the opt_einsum/tensordot path relative to a single GEMM
#: (measured: 0.25 of the dense FLOPs ran in 0.5 of the dense time at
#: 4096x4096, batch 256, float32, 2 cores).
EINSUM_PENALTY = 2.0

#: Time per FLOP of the two-block ("split") path relative to a single GEMM
#: (its products have small inner dimensions; measured 0.25 of the dense
#: FLOPs in about 0.3 of the time at bond 8, and about 1.5x the dense time
#: at equal FLOPs, bond 32).
SPLIT_PENALTY = 1.5

#: :data:`SPLIT_PENALTY` and :data:`EINSUM_PENALTY` for tensors on a GPU (any
#: torch device but the CPU).  Measured on an NVIDIA H200 (float32,
#: forward+backward, every strategy timed for 1024x1024 and 4096x4096 layers
#: with 2 and 4 cores per side, bonds 8-64, batches 256 and 4096): with the CPU
#: weights the plan ran on average 1.08x the best strategy's time, at worst
#: 1.34x (4096x4096, bond 16, batch 4096: split 7.9-8.4 ms, dense 5.9-6.3 ms);
#: with these, 1.05x on average and within 1.01x on every batch-4096 case.
#: At batch 256 every strategy takes 0.7-2 ms there, mostly launch overhead.
GPU_SPLIT_PENALTY = 3.0
GPU_EINSUM_PENALTY = 4.0


def mpo_apply_equation(num_sites: int) -> str:
    """Einsum equation: ``x (batch, i_0..i_{L-1})`` and cores ``(b, o, i, b')`` -> ``(batch, o_0..)``.

    Examples
    --------
    >>> mpo_apply_equation(2)
    'abc,fdbg,gech->ade'
    """
    import opt_einsum as oe

    sym = oe.get_symbol
    batch = sym(0)
    ins = [sym(1 + k) for k in range(num_sites)]
    outs = [sym(1 + num_sites + k) for k in range(num_sites)]
    bonds = [sym(1 + 2 * num_sites + k) for k in range(num_sites + 1)]
    terms = [batch + "".join(ins)]
    for k in range(num_sites):
        terms.append(bonds[k] + outs[k] + ins[k] + bonds[k + 1])
    return ",".join(terms) + "->" + batch + "".join(outs)


def _path_strategy(num_sites: int) -> str:
    """opt_einsum's exhaustive search for up to 6 cores, dynamic programming beyond."""
    return "optimal" if num_sites <= 6 else "dp"


@functools.lru_cache(maxsize=256)
def _expression(x_shape: tuple[int, ...], core_shapes: tuple[tuple[int, ...], ...]) -> Any:
    import opt_einsum as oe

    eq = mpo_apply_equation(len(core_shapes))
    return oe.contract_expression(eq, x_shape, *core_shapes, optimize=_path_strategy(len(core_shapes)))


def mpo_apply_expression(x_shape: Sequence[int], core_shapes: Sequence[Sequence[int]]) -> Any:
    """A cached opt_einsum expression for ``(x, *cores) -> y`` (``x`` is ``(batch, i_0, ...)``).

    Examples
    --------
    >>> import numpy as np
    >>> expr = mpo_apply_expression((3, 2, 2), [(1, 2, 2, 4), (4, 2, 2, 1)])
    >>> expr(np.ones((3, 2, 2)), np.ones((1, 2, 2, 4)), np.ones((4, 2, 2, 1))).shape
    (3, 2, 2)
    """
    shapes = _check_core_shapes(core_shapes)
    return _expression(_check_x_shape(x_shape, shapes), shapes)


@dataclass(frozen=True)
class MPOApplyPlan:
    """How to compute ``y = W x``; see :func:`plan_mpo_apply`.

    ``strategy`` is ``"split"``, ``"dense"`` or ``"einsum"``; ``split`` the bond
    index ``m`` (cores ``0..m`` form the left block); ``right_first`` whether
    the input meets the right block first; ``flops`` the estimated cost
    (2 per multiply-add); ``score`` the cost used to choose, i.e. ``flops``
    weighted by the path's measured GEMM efficiency.
    """

    strategy: str
    split: int
    right_first: bool
    flops: float
    score: float = 0.0


def _check_core_shapes(core_shapes: Any) -> tuple[tuple[int, ...], ...]:
    """Validate MPO core shapes ``(left, out, in, right)``: positive ints, end bonds 1, bonds matching."""
    from qtnn.errors import QtnnError
    from qtnn.validate import short_repr

    if isinstance(core_shapes, (str, bytes)) or not isinstance(core_shapes, Sequence) or not core_shapes:
        raise QtnnError(f"core_shapes must be a non-empty sequence of (left, out, in, right) shapes, "
                        f"got {short_repr(core_shapes)}")
    shapes = []
    for k, c in enumerate(core_shapes):
        if (isinstance(c, (str, bytes)) or not isinstance(c, Sequence) or len(c) != 4
                or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in c)):
            raise QtnnError(f"core_shapes[{k}] must be 4 positive integers (left, out, in, right), "
                            f"got {short_repr(c)}")
        shapes.append(tuple(int(d) for d in c))
    if shapes[0][0] != 1 or shapes[-1][3] != 1:
        raise QtnnError(f"core_shapes must have end bonds 1, got left bond {shapes[0][0]} and right bond "
                        f"{shapes[-1][3]}")
    for k in range(len(shapes) - 1):
        if shapes[k][3] != shapes[k + 1][0]:
            raise QtnnError(f"core_shapes[{k}] has right bond {shapes[k][3]} but core_shapes[{k + 1}] "
                            f"has left bond {shapes[k + 1][0]}")
    return tuple(shapes)


def _check_x_shape(x_shape: Any, shapes: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    """Validate ``x_shape == (batch, i_0, ..., i_{L-1})`` against the cores' input dims."""
    from qtnn.errors import QtnnError
    from qtnn.validate import short_repr

    want = tuple(c[2] for c in shapes)
    if (isinstance(x_shape, (str, bytes)) or not isinstance(x_shape, Sequence)
            or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in x_shape)
            or len(x_shape) != 1 + len(shapes) or x_shape[0] < 0 or tuple(x_shape[1:]) != want):
        raise QtnnError(f"x_shape must be (batch, *in_dims) = (batch, {', '.join(map(str, want))}) with "
                        f"batch >= 0, got {short_repr(x_shape)}")
    return tuple(int(d) for d in x_shape)


def _merge_cost(shapes: Sequence[tuple[int, ...]]) -> float:
    """FLOPs of merging consecutive cores left to right into one block."""
    if len(shapes) <= 1:
        return 0.0
    l0, o, i, _ = shapes[0]
    cost = 0.0
    for s in shapes[1:]:
        _, o2, i2, r2 = s
        cost += 2.0 * l0 * o * i * s[0] * o2 * i2 * r2
        o, i = o * o2, i * i2
    return cost


@functools.lru_cache(maxsize=512)
def _all_plans(batch: int, shapes: tuple[tuple[int, ...], ...],
               gpu: bool = False) -> tuple[MPOApplyPlan, ...]:
    """Every plan the cost model considers, in the order considered."""
    split_penalty = GPU_SPLIT_PENALTY if gpu else SPLIT_PENALTY
    einsum_penalty = GPU_EINSUM_PENALTY if gpu else EINSUM_PENALTY
    n = len(shapes)
    outs = [s[1] for s in shapes]
    ins = [s[2] for s in shapes]
    O, I = math.prod(outs), math.prod(ins)
    if n == 1:
        return (MPOApplyPlan("dense", 0, False, 2.0 * batch * O * I, 2.0 * batch * O * I),)
    plans = []
    for m in range(n - 1):
        o1, i1 = math.prod(outs[: m + 1]), math.prod(ins[: m + 1])
        o2, i2 = O // o1, I // i1
        chi = shapes[m][3]
        merge = _merge_cost(shapes[: m + 1]) + _merge_cost(shapes[m + 1:])
        right = 2.0 * batch * (i1 * i2 * chi * o2 + i1 * chi * o2 * o1)
        left = 2.0 * batch * (o1 * chi * i1 * i2 + o1 * chi * i2 * o2)
        plans.append(MPOApplyPlan("split", m, True, merge + right, merge + split_penalty * right))
        plans.append(MPOApplyPlan("split", m, False, merge + left, merge + split_penalty * left))
        dense = merge + 2.0 * o1 * i1 * chi * o2 * i2 + 2.0 * batch * O * I
        plans.append(MPOApplyPlan("dense", m, False, dense, dense))
    if n > 2:
        import opt_einsum as oe

        eq = mpo_apply_equation(n)
        _, info = oe.contract_path(eq, (batch, *ins), *shapes, shapes=True, optimize=_path_strategy(n))
        flops = float(info.opt_cost)
        plans.append(MPOApplyPlan("einsum", 0, False, flops, einsum_penalty * flops))
    return tuple(plans)


@functools.lru_cache(maxsize=512)
def _plan(batch: int, shapes: tuple[tuple[int, ...], ...], gpu: bool = False) -> MPOApplyPlan:
    best: MPOApplyPlan | None = None
    for p in _all_plans(batch, shapes, gpu):   # first of equal scores, as considered
        if best is None or p.score < best.score:
            best = p
    if best is None:  # pragma: no cover - there is always at least one plan
        raise RuntimeError("no contraction plan found")
    return best


def plan_mpo_apply(batch: int, core_shapes: Sequence[Sequence[int]], *,
                   device_type: str = "cpu") -> MPOApplyPlan:
    """The cheapest plan for a batch of ``batch`` inputs (cached per shape).

    ``device_type`` is where the tensors live (``torch.device.type``; numpy
    arrays are ``"cpu"``): any other than ``"cpu"`` uses the GPU weights
    :data:`GPU_SPLIT_PENALTY` and :data:`GPU_EINSUM_PENALTY`.

    Examples
    --------
    >>> shapes = [(1, 8, 8, 16), (16, 8, 8, 16), (16, 8, 8, 16), (16, 8, 8, 1)]
    >>> plan_mpo_apply(4096, shapes).strategy, plan_mpo_apply(4096, shapes, device_type="cuda").strategy
    ('split', 'dense')
    """
    from qtnn.validate import check_int

    if not isinstance(device_type, str):
        from qtnn.errors import QtnnTypeError

        raise QtnnTypeError(f"device_type must be a torch device type such as 'cpu' or 'cuda', got "
                            f"{type(device_type).__name__}")
    return _plan(check_int("batch", batch, minimum=0), _check_core_shapes(core_shapes),
                 device_type != "cpu")


def mpo_apply_cost(x_shape: Sequence[int], core_shapes: Sequence[Sequence[int]]) -> dict[str, Any]:
    """FLOPs of the chosen plan, of core-by-core contraction, and of the dense matmul.

    ``x_shape`` is ``(batch, i_0, ..., i_{L-1})``.  Returns a dict with keys
    ``"planned"``, ``"strategy"``, ``"sequential"`` and ``"dense"`` (2 FLOPs
    per multiply-add; building ``W`` is not counted in ``"dense"``).

    Examples
    --------
    >>> cost = mpo_apply_cost((32, 8, 8), [(1, 8, 8, 4), (4, 8, 8, 1)])
    >>> cost["strategy"], cost["dense"]
    ('dense', 262144.0)
    """
    shapes = _check_core_shapes(core_shapes)
    batch = _check_x_shape(x_shape, shapes)[0]
    plan = plan_mpo_apply(batch, shapes)
    n_in = math.prod(c[2] for c in shapes)
    n_out = math.prod(c[1] for c in shapes)
    seq = 0.0
    out_done = 1
    for k in range(len(shapes) - 1, -1, -1):
        l_, o, i, r = shapes[k]
        rest_in = math.prod(c[2] for c in shapes[:k])
        seq += 2.0 * batch * rest_in * out_done * i * r * o * l_
        out_done *= o
    return {"planned": plan.flops, "strategy": plan.strategy, "sequential": seq,
            "dense": 2.0 * batch * n_in * n_out}


# ----------------------------------------------------------------- execution
def _einsum(eq: str, *ops: Any) -> Any:
    if type(ops[0]).__module__.startswith("torch"):
        import torch

        return torch.einsum(eq, *ops)
    import numpy as np

    return np.einsum(eq, *ops)


def _permute(a: Any, axes: tuple[int, ...]) -> Any:
    return a.permute(*axes) if hasattr(a, "permute") else a.transpose(axes)


def _torch_on_cpu(a: Any) -> bool:
    """Whether ``a`` is a torch tensor in CPU memory (numpy arrays and other devices: no)."""
    return getattr(getattr(a, "device", None), "type", None) == "cpu"


def merge_cores(cores: Sequence[Any]) -> Any:
    """Contract consecutive cores into one block ``(l, prod o, prod i, r)``."""
    block = cores[0]
    for c in cores[1:]:
        l_, o, i, _ = block.shape
        _, o2, i2, r = c.shape
        block = _einsum("aoib,bpjc->aopijc", block, c).reshape(l_, o * o2, i * i2, r)
    return block


def dense_weight(split: int, cores: Sequence[Any]) -> Any:
    """The matrix ``W`` (``prod(out_dims) x prod(in_dims)``) of ``cores``, built through bond ``split``.

    Cores ``0..split`` and the rest are merged into two blocks whose product
    over the bond is ``W`` (numpy or torch, differentiable in torch).  Torch
    weights in CPU memory of at least :data:`DENSE_CHUNK_MIN_BYTES` are built in
    row chunks that stay in cache (first-order gradients only); smaller ones,
    numpy arrays and other devices as one product.

    Examples
    --------
    >>> import numpy as np
    >>> from qtnn.tn import MPO
    >>> w = np.arange(12.0).reshape(3, 4)
    >>> mpo = MPO.from_dense(w, out_dims=(3, 1), in_dims=(2, 2))
    >>> bool(np.allclose(dense_weight(0, mpo.cores), w))
    True
    """
    left = merge_cores(cores[: split + 1])    # (1, o1, i1, chi)
    if len(cores) == 1:
        return left.reshape(left.shape[1], left.shape[2])
    right = merge_cores(cores[split + 1:])   # (chi, o2, i2, 1)
    _, o1, i1, chi = left.shape
    o2, i2 = right.shape[1], right.shape[2]
    if _torch_on_cpu(left) and o1 * i1 * o2 * i2 * left.element_size() >= DENSE_CHUNK_MIN_BYTES:
        return _dense_kernel()(left.reshape(o1, i1, chi), right.reshape(chi, o2 * i2), int(o2))
    w = (left.reshape(o1 * i1, chi) @ right.reshape(chi, o2 * i2)).reshape(o1, i1, o2, i2)
    return _permute(w, (0, 2, 1, 3)).reshape(o1 * o2, i1 * i2)


#: Weights of at least this many bytes (torch tensors in CPU memory) are built
#: by :func:`dense_weight` in chunks of rows of about :data:`DENSE_CHUNK_BYTES`,
#: each product permuted into place while it is still in cache, and their
#: gradients sent back to the two blocks chunk by chunk the same way.  One
#: product of the whole weight followed by a permuted copy moves it through
#: memory three times more, and twice more again in the backward pass.  Measured
#: on 2 cores (EPYC, 32 MiB L3 shared by the host), float32, build plus gradient,
#: whole / in 2 MiB chunks: 4096x4096 weight, bond 32: 163 / 131 ms, bond 64:
#: 231 / 185 ms (chunks of 1-8 MiB within 15% of each other); 2048x2048, bond
#: 32: 25 / 19 ms; 1024x1024 (4 MiB, in cache either way): 5.5 / 5.9 ms, so the
#: whole product stays below the threshold.
DENSE_CHUNK_MIN_BYTES = 16 << 20
DENSE_CHUNK_BYTES = 2 << 20


@functools.lru_cache(maxsize=1)
def _dense_kernel() -> Any:
    """``W = permute(L @ R)`` built in row chunks, as a torch autograd Function.

    ``l3 (o1, i1, chi)`` and ``r2 (chi, o2*i2)`` give ``W[(a, p), (i, j)] =
    sum_c l3[a, i, c] r2[c, (p, j)]`` of shape ``(o1*o2, i1*i2)``.  Rows of
    ``o1`` are taken :data:`DENSE_CHUNK_BYTES` at a time: the chunk's product is
    permuted into ``W`` straight away, and in the backward pass the chunk of
    the gradient is permuted back and sent to both blocks while in cache.
    First-order gradients only (``once_differentiable``).
    """
    import torch
    from torch.autograd.function import once_differentiable

    class DenseWeight(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, l3: Any, r2: Any, o2: int) -> Any:
            o1, i1, chi = l3.shape
            i2 = r2.shape[1] // o2
            w = l3.new_empty(o1, o2, i1, i2)
            rows = max(1, DENSE_CHUNK_BYTES // (i1 * o2 * i2 * l3.element_size()))
            for s in range(0, o1, rows):
                t = l3[s: s + rows].reshape(-1, chi) @ r2
                w[s: s + rows].copy_(t.view(-1, i1, o2, i2).transpose(1, 2))
            ctx.save_for_backward(l3, r2)
            ctx.rows, ctx.o2 = rows, o2
            return w.view(o1 * o2, i1 * i2)

        @staticmethod
        @once_differentiable
        def backward(ctx: Any, gw: Any) -> Any:
            l3, r2 = ctx.saved_tensors
            need_l, need_r = ctx.needs_input_grad[:2]
            o1, i1, chi = l3.shape
            rows, o2 = ctx.rows, ctx.o2
            i2 = r2.shape[1] // o2
            g4 = gw.reshape(o1, o2, i1, i2)
            gl = torch.empty_like(l3) if need_l else None
            gr = torch.zeros_like(r2) if need_r else None
            r2c = r2.conj()
            for s in range(0, o1, rows):
                gt = g4[s: s + rows].transpose(1, 2).reshape(-1, o2 * i2)   # (rows*i1, o2*i2)
                if gl is not None:
                    # G R^H, computed as (conj(R) G^T)^T: the wide product runs faster in MKL
                    # than the one with chi output columns
                    gl[s: s + rows].view(-1, chi).copy_((r2c @ gt.mT).mT)
                if gr is not None:
                    gr.addmm_(l3[s: s + rows].reshape(-1, chi).mH, gt)
            return gl, gr, None

    return DenseWeight.apply


class PreparedApply:
    """The operands of a plan that depend on the cores alone; see :func:`prepare_mpo_apply`.

    ``kind`` is ``"dense"`` (``ops = (W,)``), ``"split"`` (the two blocks,
    reshaped for the product the plan runs), ``"split-host"`` (the same for the
    batch-chunked CPU kernel of torch tensors) or ``"einsum"`` (the cores).
    Calling it runs the plan on ``x`` (``(batch, prod(in_dims))``), adding
    ``bias`` (``prod(out_dims)`` entries) if given.
    """

    __slots__ = ("dims", "kind", "ops", "plan")

    def __init__(self, plan: MPOApplyPlan, kind: str, ops: tuple[Any, ...], dims: tuple[int, ...]) -> None:
        self.plan, self.kind, self.ops, self.dims = plan, kind, ops, dims

    def __call__(self, x: Any, bias: Any = None) -> Any:
        batch = x.shape[0]
        kind, ops = self.kind, self.ops
        if kind == "dense":
            if hasattr(x, "permute"):
                import torch

                return torch.nn.functional.linear(x, ops[0], bias)
            y = x @ ops[0].T
        elif kind == "split-host":
            o1, i1, i2, o2 = self.dims
            r2, l2 = ops
            if self.plan.right_first:
                x3, b3 = x.reshape(batch, i1, i2), None if bias is None else bias.view(o1, o2)
            else:
                x3 = x.reshape(batch, i1, i2).transpose(1, 2)
                b3 = None if bias is None else bias.view(o1, o2).T
            y = _split_kernel()(x3.contiguous(), r2, l2, b3,
                                _chunk(r2.shape[1] * x3.shape[1], x.element_size(), batch))
            if not self.plan.right_first:
                y = y.transpose(1, 2)
            return y.reshape(batch, o1 * o2)
        elif kind == "split":
            o1, i1, i2, o2 = self.dims
            r2, l2 = ops
            if self.plan.right_first:
                # (B*i1, i2) @ (i2, chi*o2) -> (B, i1*chi, o2); then (o1, i1*chi) @ that -> (B, o1, o2)
                t = (x.reshape(batch * i1, i2) @ r2).reshape(batch, l2.shape[1], o2)
                y = (l2 @ t).reshape(batch, o1 * o2)
            else:
                # (o1*chi, i1) @ (B, i1, i2) -> (B, o1*chi, i2); then (B*o1, chi*i2) @ (chi*i2, o2)
                t = (l2 @ x.reshape(batch, i1, i2)).reshape(batch * o1, r2.shape[0])
                y = (t @ r2).reshape(batch, o1 * o2)
        else:
            ins = tuple(int(c.shape[2]) for c in ops)
            expr = mpo_apply_expression((batch, *ins), [tuple(c.shape) for c in ops])
            y = expr(x.reshape((batch, *ins)), *ops).reshape(batch, -1)
        return y if bias is None else y + bias


def prepare_mpo_apply(plan: MPOApplyPlan, cores: Sequence[Any]) -> PreparedApply:
    """Build what ``plan`` needs from ``cores`` alone (the weight, or the two merged blocks).

    Running the result on many inputs is :func:`execute_mpo_apply` without
    building these each time: :class:`qtnn.nn.MPOLinear` keeps it while its
    cores are unchanged and no gradient is wanted.

    Examples
    --------
    >>> import numpy as np
    >>> from qtnn.tn import MPO
    >>> mpo = MPO.random(out_dims=(2, 2), in_dims=(2, 2), bond=2, seed=0)
    >>> x = np.ones((3, 4))
    >>> prep = prepare_mpo_apply(plan_mpo_apply(3, [c.shape for c in mpo.cores]), mpo.cores)
    >>> bool(np.allclose(prep(x), x @ mpo.to_dense().T))
    True
    """
    if plan.strategy == "einsum":
        return PreparedApply(plan, "einsum", tuple(cores), ())
    m = plan.split
    if plan.strategy == "dense" or len(cores) == 1:
        return PreparedApply(plan, "dense", (dense_weight(m, cores),), ())
    left = merge_cores(cores[: m + 1])    # (1, o1, i1, chi)
    right = merge_cores(cores[m + 1:])   # (chi, o2, i2, 1)
    _, o1, i1, chi = left.shape
    o2, i2 = right.shape[1], right.shape[2]
    dims = (int(o1), int(i1), int(i2), int(o2))
    # the host kernel is for torch tensors in CPU memory only (CUDA, MPS, XPU... take the
    # plain torch path, as the planner assumed for any device but the CPU)
    if _torch_on_cpu(left):
        # Both orders run as the right-first kernel; left-first is its mirror
        # image (sites reversed), which only transposes the small x and y.
        if plan.right_first:
            lblock, rblock, oo1, oo2, ii1, ii2 = left, right, o1, o2, i1, i2
        else:
            lblock, rblock = right.permute(3, 1, 2, 0), left.permute(3, 1, 2, 0)
            oo1, oo2, ii1, ii2 = o2, o1, i2, i1
        r2 = rblock.reshape(chi, oo2, ii2).permute(2, 0, 1).reshape(ii2, chi * oo2)
        l2 = lblock.reshape(oo1, ii1 * chi)
        return PreparedApply(plan, "split-host", (r2, l2), dims)
    if plan.right_first:
        r2 = _permute(right.reshape(chi, o2, i2), (2, 0, 1)).reshape(i2, chi * o2)
        l2 = left.reshape(o1, i1 * chi)
    else:
        l2 = _permute(left.reshape(o1, i1, chi), (0, 2, 1)).reshape(o1 * chi, i1)
        r2 = _permute(right.reshape(chi, o2, i2), (0, 2, 1)).reshape(chi * i2, o2)
    return PreparedApply(plan, "split", (r2, l2), dims)


def execute_mpo_apply(plan: MPOApplyPlan, x: Any, cores: Sequence[Any], bias: Any = None) -> Any:
    """Run ``plan`` on ``x`` of shape ``(batch, prod(in_dims))``; returns ``(batch, prod(out_dims))``.

    ``x`` and ``cores`` (and ``bias``, ``prod(out_dims)`` entries added to
    every row, if given) are all numpy arrays or all torch tensors.  The same
    as ``prepare_mpo_apply(plan, cores)(x, bias)``.
    """
    return prepare_mpo_apply(plan, cores)(x, bias)


#: Bytes of the intermediate ``t`` per batch chunk in the CPU kernel: chunks
#: that stay in a core's L2 cache ran the bond-8 benchmark 1.6x faster than
#: one batch-sized intermediate (measured on a 2-core EPYC, 2 MiB L2 per core;
#: 1-2 MiB chunks were best at bonds 8 and 16).
CHUNK_BYTES = 2 << 20

#: Keep the chunks' intermediates for the backward pass instead of recomputing
#: them (one GEMM of the first kind less per step, for ``batch x i1 x chi x o2``
#: extra floats of memory).
KEEP_INTERMEDIATE = True


#: Least multiply-adds of one split-kernel call for its batch chunks to run on
#: several threads at once (each GEMM single-threaded) instead of one after
#: another with torch's threads inside every small GEMM.  Below this, starting
#: the threads costs more than it saves.
PARALLEL_MIN_FLOPS = 1 << 24


def _chunk(per_sample: int, itemsize: int, batch: int) -> int:
    return max(1, min(batch, CHUNK_BYTES // max(per_sample * itemsize, 1)))


@functools.lru_cache(maxsize=4)
def _pool(workers: int) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qtnn-split")


def _run_groups(work: Any, starts: Sequence[int], flops: float) -> list[Any]:
    """Run ``work(group)`` over contiguous groups of the chunk ``starts``; results in group order.

    With torch's intra-op threads ``T >= 2``, at least two chunks and ``flops``
    above :data:`PARALLEL_MIN_FLOPS`, the chunks are split into ``T`` contiguous
    groups run on ``T`` threads while torch's own threads are set to 1 (so
    every GEMM is single-threaded and no core is oversubscribed), then restored.
    Otherwise one group runs here.  The grouping depends only on ``T`` and the
    chunks, so results are reproducible for a given thread count; gradient sums
    are added group by group, in order.
    """
    import torch

    threads = torch.get_num_threads()
    groups = min(threads, len(starts))
    if groups < 2 or flops < PARALLEL_MIN_FLOPS:
        return [work(list(starts))]
    size = -(-len(starts) // groups)
    parts = [list(starts[g * size:(g + 1) * size]) for g in range(groups)]
    parts = [p for p in parts if p]
    grad_mode = torch.is_grad_enabled()

    def run(part: list[int]) -> Any:
        # One OpenMP thread per worker, set in the worker itself: OpenMP's thread count is a
        # per-thread setting, which a pool thread otherwise takes from the defaults (all cores), so
        # T workers would each start T threads (measured: 1024², bond 16, batch 32, backward 5.8x
        # nn.Linear instead of 1.8x once those pools existed).  Grad mode is per thread too: keep
        # the caller's (off inside backward).
        torch.set_num_threads(1)
        with torch.set_grad_enabled(grad_mode):
            return work(part)

    torch.set_num_threads(1)
    try:
        return list(_pool(len(parts)).map(run, parts))
    finally:
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=1)
def _split_kernel() -> Any:
    """The two-block product as a torch autograd Function, run in batch chunks.

    ``y[b] = l2 @ (x[b] @ r2).reshape(K, o2) + bias`` with ``x (B, i1, i2)``,
    ``r2 (i2, chi*o2)``, ``l2 (o1, i1*chi)`` and ``bias (o1, o2)`` or ``None``.
    The intermediate is never formed for the whole batch at once: chunks of :data:`CHUNK_BYTES` stay in cache.
    With several torch threads the chunks run in parallel groups, one thread
    each (:func:`_run_groups`).  The chunks' intermediates are kept for the
    backward pass (:data:`KEEP_INTERMEDIATE`) or recomputed there.
    First-order gradients only (``once_differentiable``).
    """
    import torch
    from torch.autograd.function import once_differentiable

    class SplitApply(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, r2: Any, l2: Any, bias: Any, chunk: int) -> Any:
            b, i1, i2 = x.shape
            o1, k = l2.shape
            o2 = r2.shape[1] * i1 // k
            y = x.new_empty(b, o1, o2)
            keep = l2.requires_grad and KEEP_INTERMEDIATE
            starts = range(0, b, chunk)

            def work(part: list[int]) -> list[Any]:
                ts = []
                for s in part:
                    xc = x[s: s + chunk]
                    t = (xc.reshape(-1, i2) @ r2).reshape(xc.shape[0], k, o2)
                    torch.matmul(l2, t, out=y[s: s + chunk])
                    if bias is not None:
                        y[s: s + chunk].add_(bias)
                    if keep:
                        ts.append(t)
                return ts

            flops = 2.0 * b * (i1 * i2 * r2.shape[1] + o1 * k * o2)
            ctx.ts = [t for ts in _run_groups(work, starts, flops) for t in ts]
            ctx.save_for_backward(x, r2, l2)
            ctx.chunk = chunk
            return y

        @staticmethod
        @once_differentiable
        def backward(ctx: Any, gy: Any) -> Any:
            x, r2, l2 = ctx.saved_tensors
            b, i1, i2 = x.shape
            o1, k = l2.shape
            o2 = gy.shape[2]
            need_x, need_r, need_l, need_b = ctx.needs_input_grad[:4]
            gx = torch.empty_like(x) if need_x else None
            l2h = l2.mH
            chunk, kept = ctx.chunk, ctx.ts
            starts = range(0, b, chunk)

            def work(part: list[int]) -> tuple[Any, Any]:
                gr2 = torch.zeros_like(r2) if need_r else None
                gl2 = torch.zeros_like(l2) if need_l else None
                for s in part:
                    xc = x[s: s + chunk]
                    c = xc.shape[0]
                    x2 = xc.reshape(c * i1, i2)
                    g = gy[s: s + chunk]
                    # Every product below is one (batched) GEMM on strided views: no
                    # operand is permuted into a copy (the copies took 30% of the step).
                    # Conjugate transposes are torch's gradient convention for complex
                    # tensors (no-ops on real ones).
                    if gl2 is not None:  # need_l
                        t = kept[s // chunk] if kept else (x2 @ r2).reshape(c, k, o2)
                        gl2 += torch.bmm(g, t.mH).sum(0)
                    if need_x or need_r:
                        gt = torch.bmm(l2h.expand(c, k, o1), g).reshape(c * i1, -1)
                        if gx is not None:  # need_x
                            torch.mm(gt, r2.mH, out=gx[s: s + c].view(c * i1, i2))
                        if gr2 is not None:  # need_r
                            gr2.addmm_(x2.mH, gt)
                return gr2, gl2

            flops = 2.0 * b * (i1 * i2 * r2.shape[1] + 2 * o1 * k * o2)
            parts = _run_groups(work, starts, flops)
            ctx.ts = []
            gr2 = functools.reduce(lambda a, p: a + p[0], parts[1:], parts[0][0]) if need_r else None
            gl2 = functools.reduce(lambda a, p: a + p[1], parts[1:], parts[0][1]) if need_l else None
            return gx, gr2, gl2, gy.sum(0) if need_b else None, None

    return SplitApply.apply


# ----------------------------------------------------------- measured plans
#: Plans whose cost-model score is within this factor of the best are timed by
#: :func:`measured_plan`; the others are not worth the calibration's time.
CANDIDATE_RATIO = 4.0

#: Least timed rounds of :func:`measured_plan` after one warm-up round (every
#: candidate once per round, interleaved; the least time decides: load from other
#: work only ever adds time, so the minimum is the steadiest estimate on a shared machine).
CALIBRATION_ROUNDS = 3

#: :func:`measured_plan` adds rounds, up to :data:`CALIBRATION_MAX_ROUNDS`, while the
#: timed rounds took less than this many seconds in all: small products (a
#: millisecond each) are timed often enough for a shared machine's noise to
#: average out, large ones (a second each) stay at :data:`CALIBRATION_ROUNDS`.
#: Measured on 2 shared cores: with 3 rounds the calibration of a 1024x1024 layer,
#: bond 8, batch 32, forward only, picked a plan 1.4x slower than the best in
#: one of two runs.
CALIBRATION_SECONDS = 0.25
CALIBRATION_MAX_ROUNDS = 25

#: Without gradients the dense plan with its kept weight is the very product of
#: ``nn.Linear``; another plan replaces it only where it ran in less than this
#: fraction of the dense plan's time.  The calibration times the candidates one
#: after another, but in use a layer runs between other products, and there the
#: split kernel (its own threads, one GEMM each) runs slower than its least
#: calibration time: measured on 2 quiet cores, 1024x1024, bond 16, batch 32,
#: the left-first split plan took 1.16-1.36 ms in a loop of its own and
#: 1.27-2.01 ms right after an ``nn.Linear`` of the same size (medians of five
#: runs; the dense plan 0.96-1.97 and 0.95-1.32 ms: the machine is noisy, the
#: calibrations below are the firmer figure).  With a margin of 0.9 the
#: calibration picked that split plan in 4 of 16 runs, which then ran at
#: 1.20-1.33x ``nn.Linear``; with 0.75 it kept the dense plan in 16 of 16
#: (0.96-1.10x) and still picked the split plans that pay (1024x1024, bond 8,
#: batch 32: 0.69-0.87x).
INFER_DENSE_MARGIN = 0.75

_MEASURED: dict[tuple[Any, ...], MPOApplyPlan] = {}
# the same plans under the caller's own arguments, when they are exactly typed (a hot loop such as
# MPOLinear.forward finds its plan here without re-validating the shapes on every call)
_BY_ARGS: dict[tuple[Any, ...], MPOApplyPlan] = {}


def candidate_plans(batch: int, core_shapes: Sequence[Sequence[int]], *,
                    device_type: str = "cpu") -> list[MPOApplyPlan]:
    """The best plan of each strategy (split, dense, einsum) whose score is within :data:`CANDIDATE_RATIO`.

    The cost model's own choice (:func:`plan_mpo_apply`) comes first.  The best
    split plan also comes in its other order (left-first for right-first, and
    back) at the same bond: the two orders often cost the same FLOPs but run
    GEMMs of other shapes, and only a measurement tells them apart (1024², four
    cores, bond 8, batch 256, forward+backward on 2 cores: left-first 1.07x
    ``nn.Linear``, right-first 1.40x).

    Examples
    --------
    >>> shapes = [(1, 8, 8, 8), (8, 8, 8, 8), (8, 8, 8, 8), (8, 8, 8, 1)]
    >>> [(p.strategy, p.split, p.right_first) for p in candidate_plans(32, shapes)]
    [('split', 1, True), ('split', 1, False), ('dense', 1, False), ('einsum', 0, False)]
    """
    best = plan_mpo_apply(batch, core_shapes, device_type=device_type)
    plans = _all_plans(batch, _check_core_shapes(core_shapes), device_type != "cpu")
    per: dict[str, MPOApplyPlan] = {}
    for p in plans:
        if p.strategy not in per or p.score < per[p.strategy].score:
            per[p.strategy] = p
    picked = list(per.values())
    split = per.get("split")
    if split is not None:
        mirror = next(p for p in plans if p.strategy == "split" and p.split == split.split
                      and p.right_first != split.right_first)
        picked.insert(picked.index(split) + 1, mirror)
    rest = [p for p in picked if p != best and p.score <= CANDIDATE_RATIO * best.score]
    return [best, *rest]


def clear_measured_plans() -> None:
    """Forget every plan :func:`measured_plan` has timed (e.g. after the machine's load changed).

    Examples
    --------
    >>> clear_measured_plans()
    >>> len(_MEASURED)
    0
    """
    _MEASURED.clear()
    _BY_ARGS.clear()


def measured_plan(batch: int, core_shapes: Sequence[Sequence[int]], *, device: Any = "cpu",
                  dtype: Any = None, grad: bool = True) -> MPOApplyPlan:
    """The fastest of :func:`candidate_plans`, timed on this machine (cached per shape, device, dtype, mode).

    On the first call for a key, every candidate runs on random tensors of
    these shapes, one warm-up and :data:`CALIBRATION_ROUNDS` timed rounds (more,
    up to :data:`CALIBRATION_MAX_ROUNDS`, while they took less than
    :data:`CALIBRATION_SECONDS`), interleaved; the least time decides (without
    gradients the dense plan keeps its place unless another is faster by
    :data:`INFER_DENSE_MARGIN`).
    ``grad``: time forward and backward (to the input and the cores), as in
    training; otherwise the forward pass under
    ``torch.no_grad``, where every plan's operands built from the cores (the
    dense weight, the merged blocks) count as already built
    (:class:`qtnn.nn.MPOLinear` keeps them while its cores are unchanged).  On
    the ``meta`` device, and where a single candidate remains, the cost model
    decides without timing.

    Parameters
    ----------
    batch : int
        Rows of the input.
    core_shapes : sequence of (left, out, in, right)
        Shapes of the MPO cores.
    device : str or torch.device
        Where the tensors live.
    dtype : torch.dtype, optional
        Of the tensors (default: torch's default dtype).
    grad : bool
        Whether the product is differentiated (forward+backward) or not.

    Returns
    -------
    MPOApplyPlan
        One of :func:`candidate_plans`.

    Examples
    --------
    >>> shapes = [(1, 4, 4, 2), (2, 4, 4, 1)]
    >>> p = measured_plan(8, shapes, grad=False)
    >>> p in candidate_plans(8, shapes), p is measured_plan(8, shapes, grad=False)
    (True, True)
    """
    args: tuple[Any, ...] | None = None
    if type(batch) is int and type(grad) is bool and type(core_shapes) is tuple and dtype is not None:
        args = (batch, core_shapes, device, dtype, grad)
        try:
            hit = _BY_ARGS.get(args)
        except TypeError:       # unhashable parts: the checks below say what is wrong
            args, hit = None, None
        if hit is not None:
            return hit
    import torch

    from qtnn.errors import QtnnError, QtnnTypeError
    from qtnn.validate import check_bool, check_int

    batch = check_int("batch", batch, minimum=0)
    shapes = _check_core_shapes(core_shapes)
    grad = check_bool("grad", grad)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise QtnnError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}: "
                        f"{exc}") from None
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise QtnnTypeError(f"dtype must be a real floating torch.dtype, got {dtype!r:.80}")
    key = (batch, shapes, str(dev), dtype, grad)
    plan = _MEASURED.get(key)
    if plan is None:
        cands = candidate_plans(batch, shapes, device_type=dev.type)
        if dev.type == "meta" or len(cands) == 1 or batch == 0:
            plan = cands[0]
        else:
            plan = _fastest(cands, batch, shapes, dev, dtype, grad)
        _MEASURED[key] = plan
    if args is not None:
        _BY_ARGS[args] = plan
    return plan


def _fastest(cands: Sequence[MPOApplyPlan], batch: int, shapes: tuple[tuple[int, ...], ...],
             dev: Any, dtype: Any, grad: bool) -> MPOApplyPlan:
    """Time ``cands`` on random tensors (see :func:`measured_plan`); the one of least time."""
    import time

    import torch

    gen = torch.Generator().manual_seed(0)
    n_in = math.prod(c[2] for c in shapes)
    with torch.no_grad():
        x = torch.randn(batch, n_in, generator=gen, dtype=dtype).to(dev)
        cores = [(0.3 * torch.randn(s, generator=gen, dtype=dtype)).to(dev) for s in shapes]
        # without gradients the operands built from the cores count as kept (MPOLinear keeps them)
        prepared = [prepare_mpo_apply(p, cores) for p in cands] if not grad else []
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if grad:
        x.requires_grad_(True)
        for c in cores:
            c.requires_grad_(True)

    def run(k: int) -> None:
        if grad:
            y = execute_mpo_apply(cands[k], x, cores)
            y.backward(torch.ones_like(y))
            x.grad = None
            for c in cores:
                c.grad = None
        else:
            with torch.no_grad():
                prepared[k](x)
        sync()

    times: list[list[float]] = [[] for _ in cands]
    with torch.autocast(dev.type, enabled=False) if dev.type in ("cpu", "cuda") else nullcontext():
        spent = 0.0
        for r in range(1 + CALIBRATION_MAX_ROUNDS):
            if r > CALIBRATION_ROUNDS and spent >= CALIBRATION_SECONDS:
                break
            for k in range(len(cands)):
                t0 = time.perf_counter()
                run(k)
                dt = time.perf_counter() - t0
                if r:
                    times[k].append(dt)
                    spent += dt
    best = [min(t) for t in times]
    pick = min(range(len(cands)), key=best.__getitem__)
    dense = [k for k, p in enumerate(cands) if p.strategy == "dense"]
    if not grad and dense and best[pick] > INFER_DENSE_MARGIN * best[dense[0]]:
        pick = dense[0]
    return cands[pick]

