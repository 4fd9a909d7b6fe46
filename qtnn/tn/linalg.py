"""Gauge-fixed dense linear algebra used by the tensor-network code.

All functions work on numpy arrays (float64 or complex128).  Decompositions fix
their gauge so that the same input always gives the same factors:

* :func:`qr_pos` returns ``R`` with a non-negative real diagonal;
* :func:`svd_fixed` makes the entry of largest modulus of every left singular
  vector real and positive (ties broken by the lowest index).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["qr_pos", "svd_fixed", "truncation_rank", "polar_unitary", "RANK_RTOL"]

#: Singular values below ``RANK_RTOL * s_max`` are numerical zeros and are
#: always dropped (they carry no weight and their vectors have no stable gauge).
RANK_RTOL = 1e-13


def qr_pos(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Thin QR with ``diag(R) >= 0``.

    Examples
    --------
    >>> import numpy as np
    >>> q, r = qr_pos(np.array([[-2.0, 1.0], [0.0, 3.0]]))
    >>> bool((np.diag(r) >= 0).all())
    True
    """
    q, r = np.linalg.qr(a)
    d = np.diagonal(r).copy()
    phase = np.where(np.abs(d) > 0, d / np.where(np.abs(d) > 0, np.abs(d), 1), 1)
    q = q * phase[None, :]
    r = np.conj(phase)[:, None] * r
    return q, r


def svd_fixed(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD ``a = u @ diag(s) @ vh`` with a fixed sign/phase gauge.

    Falls back to ``gesvd`` (via :func:`scipy.linalg.svd`) if LAPACK's default
    driver does not converge.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> u, s, vh = svd_fixed(a)
    >>> bool(np.allclose(u * s @ vh, a))
    True
    """
    try:
        u, s, vh = np.linalg.svd(a, full_matrices=False)
    except np.linalg.LinAlgError:  # pragma: no cover - rare LAPACK failure
        import scipy.linalg

        u, s, vh = scipy.linalg.svd(a, full_matrices=False, lapack_driver="gesvd")
    if u.size:
        idx = np.argmax(np.abs(u) - 1e-12 * np.arange(u.shape[0])[:, None], axis=0)
        pivot = u[idx, np.arange(u.shape[1])]
        phase = np.where(np.abs(pivot) > 0, pivot / np.where(np.abs(pivot) > 0, np.abs(pivot), 1), 1)
        u = u * np.conj(phase)[None, :]
        vh = phase[:, None] * vh
    return u, s, vh


def truncation_rank(s: np.ndarray, max_bond: int | None, budget: float) -> int:
    """Number of singular values to keep.

    Keeps at most ``max_bond`` values and drops the longest tail whose
    Frobenius norm ``sqrt(sum(s[k:]**2))`` is at most ``budget`` (an absolute
    number).  Values below ``RANK_RTOL * s[0]`` (numerical zeros) are always
    dropped; at least one value is always kept.

    Examples
    --------
    >>> import numpy as np
    >>> truncation_rank(np.array([3.0, 2.0, 0.1, 0.05]), None, 0.2)
    2
    """
    n = len(s)
    keep = int(np.count_nonzero(s > RANK_RTOL * s[0])) if n else 0
    if budget > 0 and n > 1:
        # tail[k] = norm of s[k:]
        tail = np.sqrt(np.cumsum(s[::-1] ** 2)[::-1])
        ok = np.nonzero(tail <= budget)[0]
        if ok.size:
            keep = max(1, int(ok[0]))
    if max_bond is not None:
        keep = min(keep, max_bond)
    return max(1, min(keep, n))


def polar_unitary(env: np.ndarray) -> np.ndarray:
    """Unitary (orthogonal) polar factor ``u @ vh`` of a square matrix.

    It maximises ``Re tr(G^dagger env)`` over unitaries ``G`` (the gate update of
    environment sweeps).

    Examples
    --------
    >>> import numpy as np
    >>> g = polar_unitary(np.array([[2.0, 0.0], [0.0, -3.0]]))
    >>> bool(np.allclose(g @ g.T, np.eye(2)))
    True
    """
    u, _, vh = svd_fixed(env)
    return u @ vh


def entropy(p: np.ndarray, base: float = 2.0) -> float:
    """Shannon / von Neumann entropy of a probability vector."""
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / math.log(base))
