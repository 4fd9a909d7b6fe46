"""Ground states of spin chains as MPS: reference targets for state preparation.

Open chains of ``n`` qubits, Pauli operators, qubit 0 the most significant bit:

* Heisenberg: ``H = sum_i (X_i X_{i+1} + Y_i Y_{i+1} + Z_i Z_{i+1})``;
* transverse-field Ising: ``H = -sum_i Z_i Z_{i+1} - h sum_i X_i``.

Small chains are diagonalised exactly (sparse Lanczos, :func:`scipy.sparse.linalg.eigsh`),
large ones with a two-site DMRG written here in numpy (White, PRL 69, 2863
(1992)).  The global sign is fixed so that
the overlap with a reference product state is positive (Néel state
``|0101...>`` for Heisenberg, ``|+...+>`` for Ising), then the MPS is in
the gauge of :meth:`qtnn.tn.MPS.from_dense` (dense path) or right-canonical
(DMRG path).  For an odd Heisenberg chain the ground doublet is degenerate;
the member with ``S_z = +1/2`` (one more ``|0>`` than ``|1>``) is returned.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from qtnn.errors import QtnnError
from qtnn.staircase import _mpsops as ops
from qtnn.tn.linalg import svd_fixed, truncation_rank
from qtnn.tn.mps import CORE_OVERHEAD, MPS, capped_power
from qtnn.validate import check_alloc, check_bond, check_choice, check_int, pow2

__all__ = ["heisenberg_ground_state", "ising_ground_state"]

#: Largest chain diagonalised exactly by ``method="auto"``.
DENSE_MAX = {"heisenberg": 20, "ising": 16}


def _bits(n: int, idx: np.ndarray) -> np.ndarray:
    """``bits[:, i]`` = value of qubit ``i`` (qubit 0 most significant)."""
    shifts = np.arange(n - 1, -1, -1, dtype=np.int64)
    return (idx[:, None] >> shifts[None, :]) & 1


def _lanczos(h: Any, seed: int = 0) -> np.ndarray:
    import scipy.sparse.linalg

    v0 = np.random.default_rng(seed).normal(size=h.shape[0])
    _, vecs = scipy.sparse.linalg.eigsh(h, k=1, which="SA", v0=v0, tol=0)
    return vecs[:, 0]


def _heisenberg_dense(n: int) -> np.ndarray:
    import scipy.sparse

    ones = n // 2  # number of |1>: S_z = 0 (even n) or +1/2 (odd n)
    check_alloc(f"the Heisenberg ground state on {n} qubits", 3.0 * pow2(n), 8,
                hint="use method='dmrg'")
    dim = 2**n
    full = np.arange(dim, dtype=np.int64)
    pop = np.zeros(dim, dtype=np.int64)
    for i in range(n):
        pop += (full >> i) & 1
    basis = full[pop == ones]
    pos = {int(b): i for i, b in enumerate(basis)}
    bits = _bits(n, basis)
    z = 1 - 2 * bits
    diag = np.sum(z[:, :-1] * z[:, 1:], axis=1).astype(np.float64)
    rows, cols, vals = [np.arange(len(basis))], [np.arange(len(basis))], [diag]
    for i in range(n - 1):
        differ = bits[:, i] != bits[:, i + 1]
        src = np.nonzero(differ)[0]
        mask = (1 << (n - 1 - i)) | (1 << (n - 2 - i))
        dst = np.array([pos[int(b)] for b in basis[src] ^ mask], dtype=np.int64)
        rows.append(dst)
        cols.append(src)
        vals.append(np.full(len(src), 2.0))  # XX + YY = 2 (sigma+ sigma- + h.c.)
    h = scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                shape=(len(basis), len(basis)))
    v = _lanczos(h)
    out = np.zeros(dim)
    out[basis] = v
    return out


def _ising_dense(n: int, h: float) -> np.ndarray:
    import scipy.sparse

    check_alloc(f"the Ising ground state on {n} qubits", 2.0 * pow2(n) * (n + 2), 8,
                hint="use method='dmrg'")
    dim = 2**n
    idx = np.arange(dim, dtype=np.int64)
    bits = _bits(n, idx)
    z = 1 - 2 * bits
    diag = -np.sum(z[:, :-1] * z[:, 1:], axis=1).astype(np.float64)
    rows, cols, vals = [idx], [idx], [diag]
    for i in range(n):
        rows.append(idx ^ (1 << (n - 1 - i)))
        cols.append(idx)
        vals.append(np.full(dim, -h))
    mat = scipy.sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                  shape=(dim, dim))
    return _lanczos(mat)


def _reference(model: str, n: int) -> list[np.ndarray]:
    if model == "heisenberg":
        cores = []
        for i in range(n):
            c = np.zeros((1, 2, 1))
            c[0, i % 2, 0] = 1.0
            cores.append(c)
        return cores
    return [np.full((1, 2, 1), 1 / math.sqrt(2)) for _ in range(n)]


def _fix_sign_dense(model: str, v: np.ndarray, n: int) -> np.ndarray:
    ref = MPS(_reference(model, n), check=False).to_dense()
    ov = float(ref @ v)
    if ov == 0.0:  # pragma: no cover - excluded by Marshall's sign rule / Perron-Frobenius
        raise QtnnError("cannot fix the sign of the ground state: zero overlap with the reference")
    return v / np.linalg.norm(v) * (1.0 if ov > 0 else -1.0)


#: Diagnostics of the last DMRG run (number of sweeps, energy); informational only.
_DMRG_INFO: dict[str, float] = {}


def _mpo(model: str, n: int, h: float) -> list[np.ndarray]:
    """MPO cores ``W[a, b, s_out, s_in]`` (lower-triangular automaton form)."""
    eye = np.eye(2)
    x = np.array([[0.0, 1.0], [1.0, 0.0]])
    z = np.diag([1.0, -1.0])
    sp = np.array([[0.0, 1.0], [0.0, 0.0]])       # |0><1|
    sm = sp.T
    if model == "heisenberg":
        # XX + YY = 2 (s+ s- + s- s+); for odd n a field -eps sum Z (commutes with H) picks S_z = +1/2
        eps = 1e-3 if n % 2 else 0.0
        w = np.zeros((5, 5, 2, 2))
        w[0, 0] = eye
        w[0, 1], w[0, 2], w[0, 3] = 2 * sp, 2 * sm, z
        w[1, 4], w[2, 4], w[3, 4] = sm, sp, z
        w[0, 4] = -eps * z
        w[4, 4] = eye
    else:
        w = np.zeros((3, 3, 2, 2))
        w[0, 0] = eye
        w[0, 1] = -z
        w[1, 2] = z
        w[0, 2] = -h * x
        w[2, 2] = eye
    last = w.shape[0] - 1
    return [w[:1]] + [w] * (n - 2) + [w[:, last:]]


def _dmrg(model: str, n: int, h: float, max_bond: int | None, seed: int) -> MPS:
    """Two-site DMRG (White, PRL 69, 2863 (1992)) with the MPO of :func:`_mpo`.

    Start: a seeded random MPS of bond 8; sweeps left-right and back with a
    growing bond schedule (8, 16, 32, ... up to ``max_bond``, default 64),
    local problems solved by Lanczos (``eigsh``) and split by SVD dropping a
    relative weight below ``1e-12``; stops when a full sweep changes the energy by
    less than ``1e-10 |E|`` (after the largest bond is reached) or after 30 sweeps.
    """
    import scipy.sparse.linalg as sla

    bond = 64 if max_bond is None else max_bond
    chi = capped_power(2, n // 2, bond)
    # the MPS and its left and right environments (MPO bond <= 5)
    check_alloc(f"DMRG for the {model} ground state on {n} qubits at bond {chi}",
                n * (12 * chi * chi + CORE_OVERHEAD), 8,
                hint="use a smaller n or max_bond")
    mpo = _mpo(model, n, h)
    psi = MPS.random(n, min(bond, 8), seed=seed)
    a = ops.canonicalize(psi.cores, 0)
    a[0] = a[0] / np.linalg.norm(a[0])
    # environments by site, filled in by the sweeps (from the trivial ends 0 and n)
    left: dict[int, np.ndarray] = {0: np.ones((1, 1, 1))}
    right: dict[int, np.ndarray] = {n: np.ones((1, 1, 1))}

    def grow_right(env: np.ndarray, c: np.ndarray, w: np.ndarray) -> np.ndarray:
        # env[a, w, a'] (bra, mpo, ket) -> next
        t = np.tensordot(env, c, axes=(2, 0))                  # a w s b'
        t = np.tensordot(t, w, axes=([1, 2], [0, 3]))          # a b' v s_out
        return np.tensordot(c.conj(), t, axes=([0, 1], [0, 3])).transpose(0, 2, 1)  # b v b'

    def grow_left(env: np.ndarray, c: np.ndarray, w: np.ndarray) -> np.ndarray:
        t = np.tensordot(c, env, axes=(2, 2))                  # a' s b u
        t = np.tensordot(t, w, axes=([1, 3], [3, 1]))          # a' b v s_out
        return np.tensordot(c.conj(), t, axes=([1, 2], [3, 1])).transpose(0, 2, 1)  # a v a'

    for i in range(n - 1, 0, -1):
        right[i] = grow_left(right[i + 1], a[i], mpo[i])

    def solve(i: int, chi: int) -> tuple[float, np.ndarray]:
        le, re, w1, w2 = left[i], right[i + 2], mpo[i], mpo[i + 1]
        theta = np.tensordot(a[i], a[i + 1], axes=(2, 0))      # a s t b
        shape = theta.shape

        def matvec(v: np.ndarray) -> np.ndarray:
            t = v.reshape(shape)
            t = np.tensordot(le, t, axes=(2, 0))                # a w s t b
            t = np.tensordot(t, w1, axes=([1, 2], [0, 3]))      # a t b v s'
            t = np.tensordot(t, w2, axes=([1, 3], [3, 0]))      # a b s' u t'
            t = np.tensordot(t, re, axes=([1, 3], [2, 1]))      # a s' t' b
            return t.reshape(-1)

        dim = int(np.prod(shape))
        if dim <= 64:
            hmat = np.stack([matvec(e) for e in np.eye(dim)], axis=1)
            vals, vecs = np.linalg.eigh(0.5 * (hmat + hmat.T))
            e0, v0 = float(vals[0]), vecs[:, 0]
        else:
            op = sla.LinearOperator((dim, dim), matvec=matvec, dtype=np.float64)
            vals, vecs = sla.eigsh(op, k=1, which="SA", v0=theta.reshape(-1), tol=1e-10)
            e0, v0 = float(vals[0]), vecs[:, 0]
        return e0, v0.reshape(shape[0] * 2, 2 * shape[3])

    schedule = [b for b in (8, 16, 32, 64, 128, 256, 512) if b < bond] + [bond]
    energy = math.inf
    for sweep in range(30):
        chi = schedule[min(sweep, len(schedule) - 1)]
        e_sweep = math.inf
        for i in range(n - 1):                                   # left to right
            e_sweep, mat = solve(i, chi)
            u, s, vh = svd_fixed(mat)
            keep = truncation_rank(s / np.linalg.norm(s), chi, 1e-6)
            a[i] = u[:, :keep].reshape(-1, 2, keep)
            a[i + 1] = (s[:keep, None] * vh[:keep]).reshape(keep, 2, -1) / np.linalg.norm(s[:keep])
            left[i + 1] = grow_right(left[i], a[i], mpo[i])
        for i in range(n - 2, -1, -1):                           # right to left
            e_sweep, mat = solve(i, chi)
            u, s, vh = svd_fixed(mat)
            keep = truncation_rank(s / np.linalg.norm(s), chi, 1e-6)
            a[i + 1] = vh[:keep].reshape(keep, 2, -1)
            a[i] = (u[:, :keep] * s[:keep]).reshape(-1, 2, keep) / np.linalg.norm(s[:keep])
            right[i + 1] = grow_left(right[i + 2], a[i + 1], mpo[i + 1])
        done = chi == bond and abs(energy - e_sweep) < 1e-10 * max(1.0, abs(e_sweep))
        energy = e_sweep
        if done:
            break
    _DMRG_INFO.update(sweeps=sweep + 1, energy=energy)
    a = ops.canonicalize(a, 0)
    ov = ops.overlap(_reference(model, n), a).real
    a[0] = a[0] / np.linalg.norm(a[0]) * (1.0 if ov >= 0 else -1.0)
    out = MPS(a, check=False)
    out.center = 0
    return out


def _ground_state(model: str, n: Any, h: float, max_bond: Any, method: Any, seed: Any) -> MPS:
    n = check_int("n", n, minimum=2)
    max_bond = check_bond("max_bond", max_bond)
    method = check_choice("method", method, ("auto", "dense", "dmrg"))
    seed = check_int("seed", seed, minimum=0)
    if method == "auto":
        method = "dense" if n <= DENSE_MAX[model] else "dmrg"
    if method == "dmrg":
        with ops.single_threaded_blas():
            return _dmrg(model, n, h, max_bond, seed)
    v = _heisenberg_dense(n) if model == "heisenberg" else _ising_dense(n, h)
    v = _fix_sign_dense(model, v, n)
    return MPS.from_dense(v, max_bond=max_bond)


def heisenberg_ground_state(n: int, max_bond: int | None = None, *, method: str = "auto",
                            seed: int = 0) -> MPS:
    """Ground state of the open Heisenberg chain ``H = sum_i X X + Y Y + Z Z`` as an MPS.

    Parameters
    ----------
    n : int
        Number of qubits (>= 2).
    max_bond : int, optional
        Dense path: truncate the exact state to this bond (``None``: exact).
        DMRG path: the largest DMRG bond (``None``: 64).
    method : {"auto", "dense", "dmrg"}
        ``"auto"``: exact Lanczos in the ``S_z`` sector for ``n <= 20``,
        DMRG beyond.
    seed : int
        Seed of the Lanczos start vector / DMRG initial state.

    Returns
    -------
    MPS
        Normalised, real, with a positive amplitude on the Néel state
        ``|0101...>`` (Marshall's sign rule makes it non-zero).

    Examples
    --------
    >>> psi = heisenberg_ground_state(6)
    >>> psi.bond_dims, round(psi.norm(), 12)
    ([2, 4, 8, 4, 2], 1.0)
    """
    return _ground_state("heisenberg", n, 0.0, max_bond, method, seed)


def ising_ground_state(n: int, h: float = 1.0, max_bond: int | None = None, *,
                       method: str = "auto", seed: int = 0) -> MPS:
    """Ground state of the open transverse-field Ising chain ``H = -sum Z Z - h sum X`` as an MPS.

    Parameters
    ----------
    n : int
        Number of qubits (>= 2).
    h : float
        Transverse field (``h = 1`` is the critical point), must be > 0 so that
        the ground state is unique.
    max_bond : int, optional
        As in :func:`heisenberg_ground_state`.
    method : {"auto", "dense", "dmrg"}
        ``"auto"``: exact Lanczos for ``n <= 16``, DMRG beyond.
    seed : int
        Seed of the Lanczos start vector / DMRG initial state.

    Returns
    -------
    MPS
        Normalised, real, with positive overlap with ``|+...+>`` (all amplitudes
        are positive, by Perron-Frobenius).

    Examples
    --------
    >>> psi = ising_ground_state(4, h=1.0)
    >>> bool(psi.to_dense().min() > 0)
    True
    """
    if isinstance(h, bool) or not isinstance(h, numbers.Real) or not math.isfinite(h) or h <= 0:
        raise QtnnError(f"h must be a finite real number > 0, got {h!r}")
    return _ground_state("ising", n, float(h), max_bond, method, seed)
