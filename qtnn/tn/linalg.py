"""Gauge-fixed dense linear algebra used by the tensor-network code.

All functions work on numpy arrays (float64 or complex128).  Decompositions fix
their gauge so that the same input always gives the same factors:

* :func:`qr_pos` returns ``R`` with a non-negative real diagonal;
* :func:`svd_fixed` makes the entry of largest modulus of every left singular
  vector real and positive (ties broken by the lowest index).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["qr_pos", "svd_fixed", "truncation_rank", "polar_unitary", "whitening", "psd_factor",
           "relative_error", "single_threaded_blas", "RANK_RTOL"]

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


# ------------------------------------------------ data-aware objectives
def whitening(inputs: np.ndarray, in_features: int, damp: float) -> np.ndarray:
    """``L`` with ``L L^T = X^T X / N + damp * mean(diag) I`` (eigen-decomposition, fixed sign gauge).

    Columns whose eigenvalue is numerically zero are dropped, so ``L`` is
    ``in_features x r`` with ``r <= in_features``.  Folding ``L`` into the
    input side turns the activation error ``||(A - W) X^T||`` into the weight
    error ``||(A - W) L||`` (the data-aware objective).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(50, 3))
    >>> L = whitening(X, 3, 0.0)
    >>> bool(np.allclose(L @ L.T, X.T @ X / 50, rtol=0, atol=1e-12))
    True
    """
    X = np.asarray(inputs, dtype=np.float64).reshape(-1, in_features)
    return psd_factor(X.T @ X / X.shape[0], damp)


def psd_factor(C: np.ndarray, damp: float) -> np.ndarray:
    """``L`` with ``L L^T = C + damp * mean(diag C) I`` for a symmetric PSD ``C`` (see :func:`whitening`).

    The eigenvector signs are fixed (largest-magnitude entry positive), so the
    same ``C`` always gives the same ``L``.

    Examples
    --------
    >>> import numpy as np
    >>> L = psd_factor(np.diag([4.0, 1.0, 0.0]), 0.0)
    >>> L.shape, bool(np.allclose(L @ L.T, np.diag([4.0, 1.0, 0.0]), rtol=0, atol=1e-15))
    ((3, 2), True)
    """
    n = C.shape[0]
    C = 0.5 * (C + C.T)
    tr = float(np.trace(C)) / n
    if damp > 0:
        C = C + damp * tr * np.eye(n)
    lam, Q = np.linalg.eigh(C)
    keep = lam > max(lam.max(), 0.0) * 1e-13
    lam, Q = lam[keep], Q[:, keep]
    # fixed gauge: the largest-magnitude entry of each eigenvector is positive
    idx = np.argmax(np.abs(Q), axis=0)
    Q = Q * np.sign(Q[idx, np.arange(Q.shape[1])])
    return np.ascontiguousarray(Q * np.sqrt(lam))


def relative_error(A: np.ndarray, W: np.ndarray) -> float:
    """``||A - W|| / ||W||`` in the Frobenius norm (``||A||`` when ``W`` is zero).

    Examples
    --------
    >>> import numpy as np
    >>> relative_error(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]]))
    0.5
    """
    nw = float(np.linalg.norm(W))
    return float(np.linalg.norm(A - W)) / nw if nw > 0 else float(np.linalg.norm(A))


# ------------------------------------------------------------ BLAS threads
@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run BLAS / LAPACK single-threaded inside the block (if ``threadpoolctl`` is available).

    The MPS kernels call LAPACK on many small matrices (a few hundred rows);
    threading them gains little and, when the cores are shared with other
    work, costs up to an order of magnitude (measured: QR of 256 x 256 took
    35 ms with two OpenBLAS threads on a busy 2-core machine, 5 ms with one).
    The controller is built once per process (``threadpool_limits`` rescans
    the loaded libraries on every call, about 0.25 ms); entering the block
    costs about 8 us.

    Examples
    --------
    >>> import numpy as np
    >>> with single_threaded_blas():
    ...     q, r = np.linalg.qr(np.eye(3))
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER = ThreadpoolController()
    with _BLAS_CONTROLLER.limit(limits=1, user_api="blas"):
        yield


_BLAS_CONTROLLER: Any = None
