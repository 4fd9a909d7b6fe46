"""Deep disentangling by layer growth and joint L-BFGS (private; dense, torch autograd).

The engine behind ``disentangle(..., method="grow")`` and the data-aware
objective ``disentangle(..., inputs=X)``.  It minimises

``f = || R (U M V^T - W) L ||_F^2 / || R W L ||_F^2``

over real orthogonal 2-qubit gates of ``U`` (output qubits) and ``V`` (input
qubits) and the cores of the MPO ``M``.  ``R`` keeps the ``out_features``
logical rows of the padded ``2**n_out x 2**n_in`` operator and ``L``
(``2**n_in x r``, zero below row ``in_features``) is the whitening factor of
the layer's inputs (``L L^T = X^T X / N``; the identity on the logical columns
when no inputs are given): the padding is *don't care* -- its rows are cut
away and its columns only ever see zeros -- so no capacity is spent on it.

Every gate is ``g = g0 expm(A)`` with ``g0`` the gate at the start of the stage
and ``A`` real antisymmetric, so iterates stay exactly orthogonal; ``M``'s
cores are free.  Gradients come from torch autograd (float64), the optimiser
is :class:`torch.optim.LBFGS` with a strong-Wolfe line search (Nocedal &
Wright, *Numerical Optimization*, 2nd ed., Alg. 7.5 and 3.5).

*Growth.*  A stage adds layers to both circuits, initialised to the identity,
so the stage starts exactly at the previous stage's optimum, and then refines
*all* gates and cores together; the best point seen is kept, hence the error
never increases with depth (cf. the layer-wise training of deep circuits of
Skolik et al., Quantum Mach. Intell. 3, 5 (2021), and the depth study of
Aizpurua et al., arXiv:2410.17397).

Nothing here validates its arguments; :func:`qtnn.staircase.disentangle` does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qtnn.staircase._dis_opt import generator_basis

__all__: list[str] = []


def window_sequence(n: int, layers: int, layout: str, inverse: bool) -> list[tuple[int, int]]:
    """``(layer, j)`` of a circuit in application order (reversed for the inverse)."""
    from qtnn.staircase.circuit import window_order

    if n < 2:
        return []
    seq = [(l_, j) for l_ in range(layers) for j in window_order(n, 2, layout)]
    return seq[::-1] if inverse else seq


@dataclass
class Problem:
    """The fixed data of a fit: padded sizes, the target ``R W L`` and the factor ``L``."""

    n_out: int
    n_in: int
    rows: int            # logical output rows kept by R
    target: Any          # torch (r_out, r): Lo^T W L (W L without an output weight)
    lp: Any              # torch (2**n_in, r): L padded with zero rows
    norm2: float         # ||W L||^2
    site_dims: list[tuple[int, int]]  # (out, in) dims of M's sites
    lo_t: Any = None     # torch (r_out, rows): Lo^T, the output weight's factor (None: identity)
    plain: bool = False  # L is the identity on the logical columns: a column slice, no product


def make_problem(W: np.ndarray, n_out: int, n_in: int, L: np.ndarray | None,
                 Lo: np.ndarray | None = None) -> Problem:
    """The fit of ``W`` with input factor ``L`` and optional output factor ``Lo`` (``rows x r_out``)."""
    import torch

    out_f, in_f = W.shape
    plain = L is None
    if L is None:
        L = np.eye(in_f)
    lp = np.zeros((2**n_in, L.shape[1]))
    lp[:in_f] = L
    target = W @ L
    if Lo is not None:
        target = Lo.T @ target
    n_sites = max(n_out, n_in)
    dims = [(2 if s < n_out else 1, 2 if s < n_in else 1) for s in range(n_sites)]
    return Problem(n_out, n_in, out_f, torch.tensor(target), torch.tensor(lp),
                   float(np.sum(target**2)), dims,
                   None if Lo is None else torch.tensor(np.ascontiguousarray(Lo.T)), plain)


def _apply_rows(t: Any, gates: Any, seq: list[tuple[int, int]], n: int, transpose: bool) -> Any:
    """Gates on the row (qubit) index of ``t`` (``2**n x c``), in the order ``seq``."""
    c = t.shape[1]
    for l_, j in seq:
        g = gates[l_, j]
        if transpose:
            g = g.T
        t = (g @ t.reshape(2**j, 4, (2 ** (n - j - 2)) * c)).reshape(2**n, c)
    return t


def dense_m(cores: Sequence[Any], dims: list[tuple[int, int]]) -> Any:
    """The padded dense matrix of MPO cores ``(b, o, i, b')`` as a torch tensor."""
    t = cores[0]
    for c in cores[1:]:
        t = torch_tensordot(t, c)
    n = len(cores)
    t = t.reshape([d for od, id_ in dims for d in (od, id_)])
    perm = [2 * s for s in range(n)] + [2 * s + 1 for s in range(n)]
    po = math.prod(od for od, _ in dims)
    pi = math.prod(id_ for _, id_ in dims)
    return t.permute(perm).reshape(po, pi)


def torch_tensordot(a: Any, b: Any) -> Any:
    import torch

    return torch.tensordot(a, b, dims=([a.dim() - 1], [0]))


def residual(p: Problem, gu: Any, gv: Any, cores: Sequence[Any], seq_u: list, seq_v: list) -> Any:
    """``R U M V^T L - W L`` (torch, differentiable in gates and cores)."""
    M = dense_m(cores, p.site_dims)
    r = p.lp.shape[1]
    if p.plain:  # L = I on the logical columns: M V^T, then its first r columns
        B = _apply_rows(M.T.contiguous(), gv, seq_v, p.n_in, transpose=False).T[:, :r]
    elif 2**p.n_out < r:
        # V applied to M^T's rows: (V M^T)^T = M V^T, then one product with L
        mv = _apply_rows(M.T.contiguous(), gv, seq_v, p.n_in, transpose=False).T
        B = mv @ p.lp
    else:
        A = _apply_rows(p.lp, gv, seq_v[::-1], p.n_in, transpose=True)  # V^T L
        B = M @ A
    Y = _apply_rows(B, gu, seq_u, p.n_out, transpose=False)[: p.rows]
    if p.lo_t is not None:
        Y = p.lo_t @ Y
    return Y - p.target


@dataclass
class StageResult:
    gu: np.ndarray
    gv: np.ndarray
    cores: list[np.ndarray]
    f: float
    iterations: int
    evaluations: int
    seconds: float


def refine(p: Problem, gu0: np.ndarray, gv0: np.ndarray, cores0: Sequence[np.ndarray], layout: str,
           maxiter: int, tol: float) -> StageResult:
    """L-BFGS on all gates (``g = g0 expm(A)``) and the cores of ``M``; the best point is returned."""
    import torch

    t0 = time.perf_counter()
    du, dv = gu0.shape[0], gv0.shape[0]
    seq_u = window_sequence(p.n_out, du, layout, inverse=False)
    seq_v = window_sequence(p.n_in, dv, layout, inverse=False)
    g0u, g0v = torch.tensor(gu0), torch.tensor(gv0)
    basis = torch.as_tensor(generator_basis(4, False))
    a_u = torch.zeros((*gu0.shape[:2], 6), dtype=torch.float64, requires_grad=gu0.size > 0)
    a_v = torch.zeros((*gv0.shape[:2], 6), dtype=torch.float64, requires_grad=gv0.size > 0)
    # the cores are scaled to O(1) entries (the gates' generators are O(1) too)
    scale = math.sqrt(p.norm2) ** (1.0 / len(cores0)) if p.norm2 > 0 else 1.0
    cs = [torch.tensor(c / scale, dtype=torch.float64, requires_grad=True) for c in cores0]
    params = [t for t in (a_u, a_v) if t.requires_grad] + cs

    def gates(a: Any, g0: Any) -> Any:
        if g0.numel() == 0 or not a.requires_grad:
            return g0
        return g0 @ torch.linalg.matrix_exp(torch.einsum("lgp,pab->lgab", a, basis))

    def objective() -> Any:
        e = residual(p, gates(a_u, g0u), gates(a_v, g0v), [c * scale for c in cs], seq_u, seq_v)
        return (e * e).sum() / p.norm2

    best: dict[str, Any] = {"f": math.inf, "state": None}
    n_eval = 0

    def closure() -> Any:
        nonlocal n_eval
        opt.zero_grad()
        f = objective()
        f.backward()
        n_eval += 1
        fv = float(f.detach())
        if fv < best["f"]:
            best["f"] = fv
            best["state"] = [t.detach().clone() for t in params]
        return f

    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max(maxiter, 1), max_eval=max(maxiter, 1) * 5 // 4 + 5,
                            history_size=50, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-14, tolerance_change=tol)
    if maxiter > 0:
        opt.step(closure)
    else:
        with torch.no_grad():
            closure_f = float(objective())
        best["f"], best["state"] = closure_f, [t.detach().clone() for t in params]
    iters = int(opt.state[opt._params[0]].get("n_iter", 0)) if maxiter > 0 else 0
    with torch.no_grad():
        for t, s in zip(params, best["state"], strict=True):
            t.copy_(s)
        gu = gates(a_u, g0u).numpy().copy()
        gv = gates(a_v, g0v).numpy().copy()
        cores = [(c * scale).numpy().copy() for c in cs]
    return StageResult(gu, gv, cores, float(best["f"]), iters, n_eval, time.perf_counter() - t0)


def objective_value(p: Problem, gu: np.ndarray, gv: np.ndarray, cores: Sequence[np.ndarray],
                    layout: str) -> float:
    """``f`` at a point, without gradients."""
    import torch

    with torch.no_grad():
        e = residual(p, torch.tensor(gu), torch.tensor(gv), [torch.tensor(c) for c in cores],
                     window_sequence(p.n_out, gu.shape[0], layout, False),
                     window_sequence(p.n_in, gv.shape[0], layout, False))
        return float((e * e).sum()) / p.norm2




def stage_depths(d_out: int, d_in: int) -> list[tuple[int, int]]:
    """Depths ``(D_out, D_in)`` of the growth stages: 1, 2, 4, ... (each side capped), then the target."""
    dmax = max(d_out, d_in)
    out: list[tuple[int, int]] = []
    s = 1
    while s < dmax:
        out.append((min(s, d_out), min(s, d_in)))
        s *= 2
    if dmax > 0:
        out.append((d_out, d_in))
    return out


def add_identity_layers(g: np.ndarray, layers: int) -> np.ndarray:
    """``g`` (``(D, n-1, 4, 4)``) with identity layers appended up to ``layers`` (acting last)."""
    extra = layers - g.shape[0]
    if extra <= 0:
        return g
    eye = np.broadcast_to(np.eye(4), (extra, g.shape[1], 4, 4))
    return np.concatenate([g, eye], axis=0)


def grow(p: Problem, d_out: int, d_in: int, layout: str, cores0: Sequence[np.ndarray],
         maxiter: int, tol: float, on_stage: Any = None) -> list[StageResult]:
    """Stage 0 (``M`` alone, no gates), then one stage per depth of :func:`stage_depths`.

    Each stage starts from the previous optimum with identity layers added to
    both circuits (so its start has exactly the previous ``f``) and refines all
    gates and cores jointly; ``refine`` keeps the best point seen, hence
    ``f`` never increases from stage to stage.  ``on_stage(index, result)`` is
    called after every stage.
    """
    gu = np.zeros((0, max(p.n_out - 1, 0), 4, 4))
    gv = np.zeros((0, max(p.n_in - 1, 0), 4, 4))
    res = refine(p, gu, gv, cores0, layout, maxiter, tol)
    out = [res]
    if on_stage is not None:
        on_stage(0, res)
    for i, (du, dv) in enumerate(stage_depths(d_out, d_in), start=1):
        prev = out[-1]
        res = refine(p, add_identity_layers(prev.gu, du), add_identity_layers(prev.gv, dv),
                     prev.cores, layout, maxiter, tol)
        out.append(res)
        if on_stage is not None:
            on_stage(i, res)
    return out


def autograd_bytes(p: Problem, d_out: int, d_in: int) -> float:
    """A bound on the bytes one gradient evaluation holds (float64; the saved intermediates)."""
    r = p.lp.shape[1]
    po, pi = 2**p.n_out, 2**p.n_in
    per_v = pi * min(r, po)
    per_u = po * r
    gates_v = d_in * max(p.n_in - 1, 0)
    gates_u = d_out * max(p.n_out - 1, 0)
    return 8.0 * (2 * gates_v * per_v + 2 * gates_u * per_u + 4 * (po * pi + pi * r + po * r))


# ------------------------------------------------------------------ the SVD start
def fit_isometry(n: int, layers: int, layout: str, support: np.ndarray, target: np.ndarray,
                 sweeps: int, rtol: float = 1e-5) -> tuple[np.ndarray, float]:
    """Gates of a circuit ``G`` whose columns ``support`` approximate ``target``.

    Maximises ``tr(T^T G E)`` (``E``: the basis columns ``support``; ``T``:
    ``target`` zero-padded to ``2**n`` rows) over real orthogonal 2-qubit
    gates, starting from the identity, by sweeps of exact single-gate
    updates: with the rest fixed the objective is linear in a gate, ``tr(g
    F^T)``, and its maximiser is the polar factor of the environment ``F``
    (Evenbly & Vidal, Phys. Rev. B 79, 144108 (2009)).  Sweeps stop after
    ``sweeps`` passes or when a pass raises the mean column overlap by less
    than ``rtol``.  Returns the gates ``(layers, n-1, 4, 4)`` and the mean
    overlap ``tr(T^T G E) / r``.
    """
    r = len(support)
    g = np.broadcast_to(np.eye(4), (layers, max(n - 1, 0), 4, 4)).copy()
    t_pad = np.zeros((2**n, r))
    t_pad[: target.shape[0]] = target
    if n < 2 or layers == 0 or r == 0:
        return g, float(np.sum(t_pad[support, np.arange(r)])) / max(r, 1)
    seq = window_sequence(n, layers, layout, inverse=False)
    e = np.zeros((2**n, r))
    e[support, np.arange(r)] = 1.0

    def apply(t: np.ndarray, gate: np.ndarray, j: int) -> np.ndarray:
        return (gate @ t.reshape(2**j, 4, -1)).reshape(2**n, r)

    prev = -math.inf
    overlap = prev
    for _ in range(sweeps):
        envs: list[np.ndarray] = [t_pad] * len(seq)
        y = t_pad
        for i in range(len(seq) - 1, -1, -1):
            envs[i] = y
            l_, j = seq[i]
            y = apply(y, g[l_, j].T, j)
        x = e
        for i, (l_, j) in enumerate(seq):
            f = np.einsum("iaz,ibz->ab", envs[i].reshape(2**j, 4, -1), x.reshape(2**j, 4, -1))
            u, _, vt = np.linalg.svd(f)
            g[l_, j] = u @ vt
            x = apply(x, g[l_, j], j)
        overlap = float(np.sum(t_pad * x)) / r
        if overlap - prev < rtol:
            break
        prev = overlap
    return g, overlap


def svd_start(p: Problem, W: np.ndarray, L: np.ndarray | None, Lo: np.ndarray | None, rank: int,
              d_out: int, d_in: int, layout: str,
              sweeps: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """A start that already holds the best rank-``rank`` approximation of the fitted objective.

    The truncated SVD of ``Lo^T W L`` (the weighted target) is mapped back to
    a rank-``rank`` weight ``W_r = A S B^T`` (``A``, ``B`` orthonormal).  ``M``
    is a bond-1 product that is diagonal of rank 2 on the first ``log2(rank)``
    sites and ``|0><0|`` elsewhere, so its ``rank`` non-zero entries sit on
    basis rows ``e_k`` and columns ``f_k`` with values ``s_0 prod(s_j /
    s_0)``, ordered like ``S``; the circuits are fitted so that ``U e_k ~
    a_k`` and ``V f_k ~ b_k`` (:func:`fit_isometry`).  Exact when the
    circuits are deep enough and ``S`` has that product form; otherwise a
    start that the refinement improves.  Returns ``(gu, gv, cores)``.
    """
    import torch

    lm = np.eye(W.shape[1]) if L is None else L
    lom = np.eye(W.shape[0]) if Lo is None else Lo
    t = lom.T @ W @ lm
    pu, s, qt = np.linalg.svd(t, full_matrices=False)
    t_r = (pu[:, :rank] * s[:rank]) @ qt[:rank]
    w_r = np.linalg.pinv(lom.T) @ t_r @ np.linalg.pinv(lm)
    a, sa, bt = np.linalg.svd(w_r, full_matrices=False)
    a, sa, b = a[:, :rank], sa[:rank], bt[:rank].T
    nr = rank.bit_length() - 1
    s0 = float(sa[0]) if sa[0] > 0 else 1.0
    cores = []
    for site, (od, id_) in enumerate(p.site_dims):
        c = np.zeros((1, od, id_, 1))
        c[0, 0, 0, 0] = 1.0
        if site < nr:
            c[0, 1, 1, 0] = float(sa[1 << (nr - 1 - site)]) / s0
        cores.append(c)
    cores[0] = cores[0] * s0
    m = dense_m([torch.tensor(c) for c in cores], p.site_dims).numpy()
    rows, cols = np.nonzero(m)
    order = np.argsort(-m[rows, cols], kind="stable")[:rank]
    rows, cols = rows[order], cols[order]
    gu, _ = fit_isometry(p.n_out, d_out, layout, rows, a[:, : len(rows)], sweeps)
    gv, _ = fit_isometry(p.n_in, d_in, layout, cols, b[:, : len(cols)], sweeps)
    return gu, gv, cores
