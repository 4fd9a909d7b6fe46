r"""Signed real amplitudes from measurement counts (the ``"state"`` readout on sampling devices).

A real state :math:`|\psi\rangle = \sum_b a_b |b\rangle` on ``n`` qubits is
estimated from ``n + 1`` measurement settings of ``N`` shots each:

1. **Magnitudes.**  Measured in the computational basis, :math:`p_b = a_b^2`;
   :math:`|\hat a_b| = \sqrt{\hat p_b}`.
2. **Relative signs along the hypercube.**  For each qubit ``q`` a Hadamard on
   ``q`` before the measurement: for two basis states ``b0``, ``b1`` that differ
   in bit ``q`` only (``b0`` with 0), the outcomes ``c0 = b0`` and ``c1 = b1``
   have :math:`Q_q(c_0) - Q_q(c_1) = 2 a_{b_0} a_{b_1}`, so the sign of the
   product of two neighbouring amplitudes is the sign of a difference of two
   measured frequencies.
3. **Signs from a spanning tree.**  The hypercube's edges are weighted by the
   measured :math:`|\hat Q_q(c_0) - \hat Q_q(c_1)|`; the signs are propagated
   from the largest amplitude along a maximum spanning tree (the most reliable
   products first, Prim's algorithm).
4. **Global sign.**  No measurement of :math:`|\psi\rangle` can see its global
   sign.  :func:`signed_amplitudes` takes it from ``sign_of_root`` (the caller's
   reference: :class:`~qtnn.quantum.StaircaseQNode` computes the sign of that one
   amplitude classically; one bit per sample); without one the largest
   amplitude is made positive.
5. **Norm.**  The estimate is of a unit vector; a layer keeps the norm of its
   input classically (a staircase is orthogonal).

**Shot cost:** ``(n + 1) * N`` shots per input (``n + 1`` circuits, i.e. ``n + 1``
jobs per batch on a Qiskit device).

**Error bound** (:func:`amplitude_bounds`).  With probability ``>= 1 - delta``
every measured frequency of the ``(n + 1) 2**n`` outcomes is within the
empirical-Bernstein radius :math:`r(p) = \sqrt{2 \hat p L / N} + 7 L / (3 (N - 1))`,
:math:`L = \ln(2 (n+1) 2^n / \delta)`, of its probability (union bound; ``p``
replaced by the upper confidence value).  Then every magnitude is within
:math:`\min(\sqrt{r}, r / \sqrt{\hat p})` of :math:`|a_b|`, and every edge sign is
right whose true product satisfies :math:`2|a_{b_0} a_{b_1}| > r_{c_0} + r_{c_1}`;
an amplitude whose tree path has only such edges is within the magnitude
bound, any other within ``2 |a_b|`` more.

Examples
--------
>>> import numpy as np
>>> a = np.array([0.6, -0.48, 0.0, 0.64])            # a real 2-qubit state
>>> pz, ph = exact_settings(a)
>>> est, _ = signed_amplitudes(pz, ph)
>>> np.round(est[0], 12).tolist()
[0.6, -0.48, 0.0, 0.64]
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from qtnn.errors import QtnnError
from qtnn.validate import check_int, check_real

__all__ = ["signed_amplitudes", "exact_settings", "amplitude_bounds", "settings_shots"]


def settings_shots(n_qubits: int, shots: int) -> int:
    """Shots the estimator spends per input: ``(n + 1) * shots``.

    Examples
    --------
    >>> settings_shots(6, 10_000)
    70000
    """
    return (check_int("n_qubits", n_qubits, minimum=1) + 1) * check_int("shots", shots, minimum=1)


def _check_probs(pz: Any, ph: Any) -> tuple[np.ndarray, np.ndarray, int]:
    pz = np.asarray(pz, dtype=np.float64)
    ph = np.asarray(ph, dtype=np.float64)
    if pz.ndim == 1:
        pz, ph = pz[None], ph[None]
    if pz.ndim != 2 or pz.shape[1] < 2 or pz.shape[1] & (pz.shape[1] - 1):
        raise QtnnError(f"pz must have shape (batch, 2**n), got {pz.shape}")
    n = int(pz.shape[1]).bit_length() - 1
    if ph.shape != (pz.shape[0], n, pz.shape[1]):
        raise QtnnError(f"ph must have shape (batch, n, 2**n) = {(pz.shape[0], n, pz.shape[1])}, "
                        f"got {ph.shape}")
    if not (np.isfinite(pz).all() and np.isfinite(ph).all()):
        raise QtnnError("pz and ph must be finite probabilities")
    return pz, ph, n


def exact_settings(state: Any) -> tuple[np.ndarray, np.ndarray]:
    """The exact probabilities of the ``n + 1`` settings for a real state ``(..., 2**n)``.

    Wire 0 is the most significant bit (PennyLane's order).  Returns
    ``pz`` ``(B, 2**n)`` and ``ph`` ``(B, n, 2**n)`` (a Hadamard on wire ``q``).

    Examples
    --------
    >>> pz, ph = exact_settings([0.6, 0.8])
    >>> np.round(ph, 12).tolist()
    [[[0.98, 0.02]]]
    """
    a = np.asarray(state, dtype=np.float64)
    a = a[None] if a.ndim == 1 else a
    n = int(a.shape[1]).bit_length() - 1
    ph = np.empty((a.shape[0], n, a.shape[1]))
    for q in range(n):
        t = a.reshape(a.shape[0], 2**q, 2, 2 ** (n - q - 1))
        h = np.stack([t[:, :, 0] + t[:, :, 1], t[:, :, 0] - t[:, :, 1]], axis=2) / math.sqrt(2.0)
        ph[:, q] = (h**2).reshape(a.shape[0], -1)
    return a**2, ph


def _edge_products(ph: np.ndarray, n: int) -> list[tuple[int, int, float]]:
    """``(b0, b1, Q(c0) - Q(c1))`` for every hypercube edge: ``2 a_b0 a_b1`` estimated."""
    edges = []
    for q in range(n):
        bit = 1 << (n - 1 - q)
        for b0 in range(2**n):
            if b0 & bit:
                continue
            edges.append((b0, b0 | bit, float(ph[q, b0] - ph[q, b0 | bit])))
    return edges


def signed_amplitudes(pz: Any, ph: Any, sign_of_root: Any = None) -> tuple[np.ndarray, dict]:
    """Estimate real amplitudes from the ``n + 1`` settings (see the module docstring).

    Parameters
    ----------
    pz : array_like, shape (B, 2**n) or (2**n,)
        Measured frequencies in the computational basis.
    ph : array_like, shape (B, n, 2**n) or (n, 2**n)
        Measured frequencies with a Hadamard on wire ``q`` (``ph[:, q]``).
    sign_of_root : array_like of +-1, shape (B,), optional
        The sign of the largest amplitude (the global sign, not measurable);
        default ``+1``.

    Returns
    -------
    estimate : ndarray, shape (B, 2**n)
        Unit vectors (up to the frequencies' rounding).
    info : dict
        ``root`` (B,) the index whose sign is fixed; ``parent`` (B, 2**n) the
        spanning tree (``-1`` at the root), for :func:`amplitude_bounds`.
    """
    pz, ph, n = _check_probs(pz, ph)
    batch, dim = pz.shape
    if sign_of_root is None:
        roots_sign = np.ones(batch)
    else:
        roots_sign = np.asarray(sign_of_root, dtype=np.float64).reshape(-1)
        if roots_sign.shape != (batch,) or not np.all(np.abs(roots_sign) == 1.0):
            raise QtnnError(f"sign_of_root must hold {batch} values +1 or -1, got {sign_of_root!r}")
    mags = np.sqrt(np.clip(pz, 0.0, None))
    out = np.empty_like(mags)
    roots = np.empty(batch, dtype=np.int64)
    parents = np.full((batch, dim), -1, dtype=np.int64)
    for s in range(batch):
        edges = _edge_products(ph[s], n)
        adj: list[list[tuple[float, int, int]]] = [[] for _ in range(dim)]
        for b0, b1, prod in edges:
            sgn = 1 if prod >= 0 else -1
            adj[b0].append((-abs(prod), b1, sgn))
            adj[b1].append((-abs(prod), b0, sgn))
        root = int(np.argmax(mags[s]))
        sign = np.zeros(dim)
        sign[root] = roots_sign[s]
        heap = [(w, root, nb, sg) for w, nb, sg in adj[root]]
        heapq.heapify(heap)
        while heap:
            _, frm, to, sg = heapq.heappop(heap)
            if sign[to] != 0:
                continue
            sign[to] = sign[frm] * sg
            parents[s, to] = frm
            for w, nb, sg2 in adj[to]:
                if sign[nb] == 0:
                    heapq.heappush(heap, (w, to, nb, sg2))
        out[s] = sign * mags[s]
        roots[s] = root
    return out, {"root": roots, "parent": parents}


def amplitude_bounds(exact: Any, pz: Any, ph: Any, info: dict, shots: int,
                     delta: float = 1e-9) -> np.ndarray:
    """Per-amplitude error bounds of :func:`signed_amplitudes`, failing with probability ``<= delta``.

    ``exact`` is the true state (a test knows it); it decides which tree paths
    have only edges whose sign the shot count guarantees (module docstring).
    The global sign is assumed right (``sign_of_root`` from the reference).

    Examples
    --------
    >>> a = np.array([0.6, -0.48, 0.0, 0.64])
    >>> pz, ph = exact_settings(a)
    >>> est, info = signed_amplitudes(pz, ph)
    >>> bool((np.abs(est - a) <= amplitude_bounds(a, pz, ph, info, shots=1000)).all())
    True
    """
    shots = check_int("shots", shots, minimum=1)
    delta = check_real("delta", delta, minimum=0.0, strict_min=True, maximum=1.0)
    pz, ph, n = _check_probs(pz, ph)
    a = np.asarray(exact, dtype=np.float64).reshape(pz.shape)
    L = math.log(2.0 * (n + 1) * pz.shape[1] / delta)

    def radius(p_hat: np.ndarray) -> np.ndarray:
        # empirical Bernstein (Maurer & Pontil 2009) radius for a frequency of `shots` draws
        return np.sqrt(2.0 * np.clip(p_hat, 0, 1) * L / shots) + 7.0 * L / (3.0 * max(shots - 1, 1))

    rz = radius(pz)
    mag = np.minimum(np.sqrt(rz), rz / np.sqrt(np.maximum(pz, 1e-300)))
    rh = radius(ph)
    bound = np.empty_like(a)
    for s in range(a.shape[0]):
        parent = info["parent"][s]
        ok = np.zeros(a.shape[1], dtype=bool)
        ok[int(info["root"][s])] = True
        order = np.argsort(np.array([_depth(parent, b) for b in range(a.shape[1])]))
        for b in map(int, order):
            p = int(parent[b])
            if p < 0:
                continue
            diff = b ^ p
            q = n - 1 - (diff.bit_length() - 1)
            b0, b1 = min(b, p), max(b, p)
            ok[b] = ok[p] and 2.0 * abs(a[s, b0] * a[s, b1]) > rh[s, q, b0] + rh[s, q, b1]
        bound[s] = mag[s] + np.where(ok, 0.0, 2.0 * np.abs(a[s]))
    return bound


def _depth(parent: np.ndarray, b: int) -> int:
    d = 0
    while parent[b] >= 0:
        b = int(parent[b])
        d += 1
    return d
