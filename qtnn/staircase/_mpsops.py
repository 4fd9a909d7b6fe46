"""Low-level MPS kernels shared by :mod:`qtnn.staircase.circuit` and :mod:`qtnn.staircase.encode`.

Everything here works on plain lists of three-leg numpy cores
``(left_bond, 2, right_bond)`` (qubit MPS, site 0 = most significant qubit)
and never forms a ``2**n`` vector.  Gates are ``(2**k, 2**k)`` matrices whose
row/column index has the first qubit of the window as its most significant
bit.  Splits use :func:`qtnn.tn.linalg.svd_fixed` / :func:`qtnn.tn.linalg.qr_pos`,
so every result is gauge-fixed (the same input gives the same cores).

These helpers are private: they do not validate their arguments; the public
callers do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from qtnn.tn.linalg import (
    qr_pos,
    single_threaded_blas,  # noqa: F401  (the kernels here use it as ops.single_threaded_blas)
    svd_fixed,
    truncation_rank,
)

__all__: list[str] = []

#: Singular values whose tail norm is below this fraction of the total are
#: numerically zero and are always dropped (keeps exact bonds from growing).
ZERO_TOL = 1e-14

#: Relative tolerance under which neighbouring singular values count as one
#: degenerate cluster in :func:`truncate_right_canonical`.
DEGENERATE_RTOL = 1e-9

Cores = list[np.ndarray]



# ---------------------------------------------------------------- basics
def merge(cores: Sequence[np.ndarray]) -> np.ndarray:
    """Contract consecutive cores into one block ``(left, 2**w, right)``."""
    out = cores[0]
    for c in cores[1:]:
        out = np.tensordot(out, c, axes=(-1, 0))
    return out.reshape(out.shape[0], -1, out.shape[-1])


def apply_gate_block(gate: np.ndarray, block: np.ndarray) -> np.ndarray:
    """``gate`` acting on the middle index of ``block`` ``(l, m, r)``."""
    return np.einsum("ab,xbz->xaz", gate, block, optimize=True)


def _keep(s: np.ndarray, max_bond: int | None, cutoff: float) -> int:
    nrm = float(np.sqrt(np.sum(s * s)))
    if nrm == 0.0:
        return 1
    return truncation_rank(s, max_bond, max(cutoff, ZERO_TOL) * nrm)


def split_left(block: np.ndarray, max_bond: int | None = None,
               cutoff: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Split the leftmost qubit off ``block`` ``(l, 2**w, r)``.

    Returns ``(core, rest)``: ``core`` ``(l, 2, chi)`` is left-orthonormal,
    ``rest`` ``(chi, 2**(w-1), r)`` holds the singular values.
    """
    l_, m, r = block.shape
    u, s, vh = svd_fixed(block.reshape(l_ * 2, (m // 2) * r))
    keep = _keep(s, max_bond, cutoff)
    core = u[:, :keep].reshape(l_, 2, keep)
    rest = (s[:keep, None] * vh[:keep]).reshape(keep, m // 2, r)
    return core, rest


def split_right(block: np.ndarray, max_bond: int | None = None,
                cutoff: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Split the rightmost qubit off ``block`` ``(l, 2**w, r)``.

    Returns ``(rest, core)``: ``core`` ``(chi, 2, r)`` is right-orthonormal,
    ``rest`` ``(l, 2**(w-1), chi)`` holds the singular values.
    """
    l_, m, r = block.shape
    u, s, vh = svd_fixed(block.reshape(l_ * (m // 2), 2 * r))
    keep = _keep(s, max_bond, cutoff)
    core = vh[:keep].reshape(keep, 2, r)
    rest = (u[:, :keep] * s[:keep]).reshape(l_, m // 2, keep)
    return rest, core


def qr_split_left(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact split of the leftmost qubit by QR (no truncation, full rank): ``(core, rest)``.

    ``core`` is left-orthonormal; cheaper than :func:`split_left` when no
    singular values are to be dropped.
    """
    l_, m, r = block.shape
    q, rr = qr_pos(block.reshape(l_ * 2, (m // 2) * r))
    return q.reshape(l_, 2, -1), rr.reshape(-1, m // 2, r)


def qr_split_right(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact split of the rightmost qubit by LQ: ``(rest, core)``, ``core`` right-orthonormal."""
    l_, m, r = block.shape
    q, rr = qr_pos(block.reshape(l_ * (m // 2), 2 * r).T)
    return rr.T.reshape(l_, m // 2, -1), q.T.reshape(-1, 2, r)


def split_all_left_to_right(block: np.ndarray, max_bond: int | None = None,
                            cutoff: float = 0.0, *, qr: bool = False) -> Cores:
    """Split a block of ``w`` qubits into ``w`` cores, left-orthonormal but the last
    (``qr=True``: exact QR splits, no truncation)."""
    out: Cores = []
    while block.shape[1] > 2:
        core, block = qr_split_left(block) if qr else split_left(block, max_bond, cutoff)
        out.append(core)
    out.append(block)
    return out


def split_all_right_to_left(block: np.ndarray, max_bond: int | None = None,
                            cutoff: float = 0.0, *, qr: bool = False) -> Cores:
    """Split a block of ``w`` qubits into ``w`` cores, right-orthonormal but the first
    (``qr=True``: exact LQ splits, no truncation)."""
    out: Cores = []
    while block.shape[1] > 2:
        block, core = qr_split_right(block) if qr else split_right(block, max_bond, cutoff)
        out.append(core)
    out.append(block)
    return out[::-1]


def canonicalize(cores: Sequence[np.ndarray], center: int) -> Cores:
    """Mixed canonical form around ``center`` (QR with non-negative ``R`` diagonal)."""
    cs = [np.asarray(c) for c in cores]
    n = len(cs)
    for k in range(center):
        l_, p, r = cs[k].shape
        q, rr = qr_pos(cs[k].reshape(l_ * p, r))
        cs[k] = q.reshape(l_, p, -1)
        cs[k + 1] = np.tensordot(rr, cs[k + 1], axes=(1, 0))
    for k in range(n - 1, center, -1):
        l_, p, r = cs[k].shape
        q, rr = qr_pos(cs[k].reshape(l_, p * r).T)
        cs[k] = q.T.reshape(-1, p, r)
        cs[k - 1] = np.tensordot(cs[k - 1], rr.T, axes=(2, 0))
    return cs


def overlap(bra: Sequence[np.ndarray], ket: Sequence[np.ndarray]) -> complex:
    """``<bra|ket>`` (``bra`` conjugated)."""
    env = np.ones((1, 1))
    for a, b in zip(bra, ket, strict=True):
        env = np.einsum("ab,apc,bpd->cd", env, a.conj(), b, optimize=True)
    return complex(env.item())


def zero_state(n: int) -> Cores:
    """``|0...0>`` as bond-1 cores."""
    c = np.zeros((1, 2, 1))
    c[0, 0, 0] = 1.0
    return [c.copy() for _ in range(n)]


def norm(cores: Sequence[np.ndarray]) -> float:
    """2-norm of the represented vector."""
    return math.sqrt(max(overlap(cores, cores).real, 0.0))


# ------------------------------------------------------------- layers
def apply_layer(cores: Sequence[np.ndarray], layer: np.ndarray, k: int, *,
                descending: bool = False, max_bond: int | None = None,
                cutoff: float = 0.0, qr: bool = False) -> Cores:
    """Apply one staircase layer ``layer`` (shape ``(n-k+1, 2**k, 2**k)``) to an MPS.

    Ascending order (gate 0 first) moves the orthogonality centre from site 0
    to site ``n-1``; descending order (gate ``n-k`` first) the other way.
    Every split is an SVD at the orthogonality centre, so truncation (at most
    ``max_bond`` values, a tail of relative norm ``cutoff`` per split, and
    always tails below :data:`ZERO_TOL`) is locally optimal.  ``qr=True``: exact
    QR / LQ splits without canonicalising first and without dropping anything
    (several times cheaper; bonds take their full size ``min(rows, cols)``).
    """
    n = len(cores)
    g_count = n - k + 1
    s_left: Callable[..., tuple[np.ndarray, np.ndarray]]
    s_right: Callable[..., tuple[np.ndarray, np.ndarray]]
    if qr:
        def s_left(b: np.ndarray, *_: Any) -> tuple[np.ndarray, np.ndarray]:
            return qr_split_left(b)

        def s_right(b: np.ndarray, *_: Any) -> tuple[np.ndarray, np.ndarray]:
            return qr_split_right(b)

        cs = list(cores)
    else:
        s_left, s_right = split_left, split_right
        cs = canonicalize(cores, n - 1 if descending else 0)
    if descending:
        out: list[np.ndarray | None] = [None] * n
        block = merge(cs[n - k:])
        for j in range(g_count - 1, -1, -1):
            block = apply_gate_block(layer[j], block)
            if k == 1:
                out[j] = block
                if j > 0:
                    block = cs[j - 1]
                continue
            block, core = s_right(block, max_bond, cutoff)
            out[j + k - 1] = core
            if j > 0:
                block = merge([cs[j - 1], block])
        if k > 1:
            head = split_all_right_to_left(block, max_bond, cutoff, qr=qr)
            out[: len(head)] = head
        return [c for c in out if c is not None]
    res: Cores = []
    block = merge(cs[:k])
    for j in range(g_count):
        block = apply_gate_block(layer[j], block)
        if k == 1:
            res.append(block)
            if j < g_count - 1:
                block = cs[j + 1]
            continue
        core, block = s_left(block, max_bond, cutoff)
        res.append(core)
        if j < g_count - 1:
            block = merge([block, cs[j + k]])
    if k > 1:
        res.extend(split_all_left_to_right(block, max_bond, cutoff, qr=qr))
    return res


def apply_circuit(cores: Sequence[np.ndarray], gates: np.ndarray, k: int, *,
                  descending: bool = False, max_bond: int | None = None,
                  cutoff: float = 0.0, qr: bool = False) -> Cores:
    """Apply all layers of a staircase (``gates`` ``(D, n-k+1, m, m)``), layer 0 first."""
    cs = [np.asarray(c) for c in cores]
    for layer in gates:
        cs = apply_layer(cs, layer, k, descending=descending, max_bond=max_bond, cutoff=cutoff,
                         qr=qr)
    return cs


def inverse_gates(gates: np.ndarray) -> np.ndarray:
    """Gates of the inverse circuit: layers reversed, every gate conjugate-transposed.

    The inverse of an ascending staircase is a descending one (and vice versa).
    """
    return np.ascontiguousarray(np.conj(np.swapaxes(gates[::-1], -1, -2)))


# --------------------------------------------- deterministic truncation
def canonical_cluster_rows(s: np.ndarray, vh: np.ndarray, rtol: float = DEGENERATE_RTOL) -> np.ndarray:
    """Fix the right singular vectors independently of LAPACK and of the left gauge.

    * Within a cluster of singular values equal to ``rtol * s[0]`` the
      singular vectors are only defined up to a rotation, which LAPACK picks
      from round-off.  The fixed choice: Gram-Schmidt of the projections of
      the unit vectors ``e_0, e_1, ...`` (ascending index) onto the cluster's
      row space, skipping residuals of norm below ``1e-6``; each vector has a
      real positive component on its generating unit vector.  So when a
      truncation cuts through a cluster, the kept vectors are the ones closest
      to the lowest-index basis states of the right-hand (physical x right
      bond) space.
    * Every other row gets the phase that makes its entry of largest modulus
      real and positive (ties broken by the lowest index), so the result does
      not depend on the gauge of the left part of the state either
      (:func:`~qtnn.tn.linalg.svd_fixed` fixes the phase through the left
      vectors instead).

    The row space and the spectrum are unchanged.
    """
    vh = vh.copy()
    if s.size == 0:
        return vh
    tol = rtol * s[0]
    start = 0
    while start < s.size:
        stop = start + 1
        while stop < s.size and abs(s[stop - 1] - s[stop]) <= tol:
            stop += 1
        rows = vh[start:stop]                          # c x N, orthonormal rows
        c = rows.shape[0]
        done = False
        if c > 1 and s[start] > tol:
            basis: list[np.ndarray] = []
            for i in range(rows.shape[1]):
                v = rows[:, i].astype(np.result_type(rows, float), copy=True)
                for b in basis:
                    v = v - b * np.vdot(b, v)
                nv = float(np.linalg.norm(v))
                if nv > 1e-6:
                    basis.append(v / nv)
                    if len(basis) == c:
                        break
            if len(basis) == c:
                w = np.stack(basis, axis=1)           # c x c unitary
                vh[start:stop] = w.conj().T @ rows
                done = True
        if not done:
            idx = np.argmax(np.abs(rows) - 1e-12 * np.arange(rows.shape[1])[None, :], axis=1)
            piv = rows[np.arange(c), idx]
            ph = np.where(np.abs(piv) > 0, piv / np.where(np.abs(piv) > 0, np.abs(piv), 1), 1)
            vh[start:stop] = np.conj(ph)[:, None] * rows
        start = stop
    return vh


def truncate_right_canonical(cores: Sequence[np.ndarray], bond: int) -> Cores:
    """Truncate to bond ``bond`` with a deterministic choice in degenerate clusters.

    The state is left-canonicalised (QR) and swept right to left with an SVD
    at the orthogonality centre of every bond (so the kept Schmidt vectors are
    optimal); numerically zero singular values are dropped, and degenerate
    clusters are rotated by :func:`canonical_cluster_rows` before the cut.  The
    result is right-canonical: every core but the first is right-orthonormal;
    the first holds the norm of the truncated state.
    """
    cs = canonicalize(cores, len(cores) - 1)
    for k in range(len(cs) - 1, 0, -1):
        l_, p, r = cs[k].shape
        mat = cs[k].reshape(l_, p * r)
        _, s, vh = svd_fixed(mat)
        vh = canonical_cluster_rows(s, vh)
        keep = min(bond, _keep(s, None, 0.0))
        vk = vh[:keep]
        cs[k] = vk.reshape(keep, p, r)
        cs[k - 1] = np.tensordot(cs[k - 1], mat @ vk.conj().T, axes=(2, 0))
    return cs
