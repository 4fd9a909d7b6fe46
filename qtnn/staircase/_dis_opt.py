"""Joint quasi-Newton refinement for :func:`qtnn.staircase.disentangle` (private).

One gate at a time (the polar sweeps) converges slowly once the gates are
coupled (a known weakness of one-tensor-at-a-time disentangling, see Slagle,
SciPost Phys. 11, 056 (2021), arXiv:2104.08283; and the Riemannian / joint
methods of arXiv:2508.19409).  This module refines *all* gates and the cores of
``M`` together with L-BFGS (Liu & Nocedal, Math. Program. 45, 503 (1989); a small numpy
implementation, :func:`lbfgs`) on

``f = ||W - U M V^T||_F^2 / ||W||_F^2 = (||W||^2 - 2 Re <W, U M V^T> + ||M||^2) / ||W||^2``.

Each gate is ``g = g0 expm(A)`` with ``g0`` the gate at the start of the run
and ``A`` real antisymmetric (orthogonal gates) or anti-Hermitian (unitary
gates), so every iterate is exactly orthogonal / unitary.  The gradient is
exact: the engine returns the derivative ``E`` of the overlap with respect to
every gate and core (environments), the chain rule through ``expm`` uses the
adjoint of its Fréchet derivative, ``L(A, .)^* = L(A^dagger, .)``
(in closed form from the eigendecomposition of the normal matrix ``A``), and
``d ||M||^2`` comes from the usual norm environments.  Deterministic (no random numbers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from qtnn.tn.mpo import MPO

__all__: list[str] = []


#: Objective values below this are at the round-off floor of ``f`` (a relative
#: error of ~3e-8 computed from ``||W||^2 - 2 Re <.,.> + ||M||^2``): stop.
F_FLOOR = 1e-15


def lbfgs(fg: Callable[[np.ndarray], tuple[float, np.ndarray]], x0: np.ndarray, maxiter: int,
          memory: int = 20) -> tuple[np.ndarray, float]:
    """Minimise ``f`` by L-BFGS (two-loop recursion) with an Armijo backtracking line search.

    Nocedal & Wright, *Numerical Optimization* (2nd ed., Springer 2006),
    Alg. 7.4 / 7.5.  Plain numpy, deterministic.  Stops after ``maxiter``
    iterations, when ``f <= F_FLOOR``, when three successive steps lower ``f``
    by less than ``1e-10 f``, or when the line search fails.  Returns the last
    ``(x, f)``.
    """
    x = np.array(x0, dtype=np.float64)
    f, g = fg(x)
    hist: list[tuple[np.ndarray, np.ndarray, float]] = []
    stall = 0
    for _ in range(maxiter):
        if f <= F_FLOOR or not np.any(g):
            break
        q = g.copy()
        alphas = []
        for s_, y_, rho in reversed(hist):
            a = rho * float(s_ @ q)
            q -= a * y_
            alphas.append(a)
        if hist:
            s_, y_, _ = hist[-1]
            q *= float(s_ @ y_) / float(y_ @ y_)
        else:
            q *= min(1.0, 1.0 / float(np.linalg.norm(g)))
        for (s_, y_, rho), a in zip(hist, reversed(alphas), strict=True):
            b = rho * float(y_ @ q)
            q += (a - b) * s_
        d = -q
        slope = float(g @ d)
        if slope >= 0:  # not a descent direction: restart from steepest descent
            hist.clear()
            d = -g * min(1.0, 1.0 / float(np.linalg.norm(g)))
            slope = float(g @ d)
        t = 1.0
        for _ls in range(40):
            xn = x + t * d
            fn, gn = fg(xn)
            if fn <= f + 1e-4 * t * slope:
                break
            t *= 0.5
        else:
            break
        s_, y_ = xn - x, gn - g
        sy = float(s_ @ y_)
        if sy > 1e-12 * float(np.linalg.norm(s_) * np.linalg.norm(y_)):
            hist.append((s_, y_, 1.0 / sy))
            if len(hist) > memory:
                hist.pop(0)
        stall = stall + 1 if f - fn <= 1e-10 * f else 0
        x, f, g = xn, fn, gn
        if stall >= 3:
            break
    return x, f


def generator_basis(m: int, is_complex: bool) -> np.ndarray:
    """Basis ``(P, m, m)`` of the real antisymmetric / anti-Hermitian ``m x m`` matrices."""
    out = []
    if is_complex:
        for d in range(m):
            b = np.zeros((m, m), dtype=np.complex128)
            b[d, d] = 1j
            out.append(b)
    iu = np.triu_indices(m, 1)
    for i, j in zip(*iu, strict=True):
        b = np.zeros((m, m), dtype=np.complex128 if is_complex else np.float64)
        b[i, j], b[j, i] = -1.0, 1.0
        out.append(b)
        if is_complex:
            c = np.zeros((m, m), dtype=np.complex128)
            c[i, j] = c[j, i] = 1j
            out.append(c)
    return np.stack(out)


def expm_skew(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``expm`` of a stack of anti-Hermitian matrices ``a = i h`` by ``eigh(h)``.

    Returns ``(expm(a), q, lam)`` with ``h = q diag(lam) q^dagger`` (for
    :func:`frechet_adjoint`).  Real antisymmetric input gives a real result.
    """
    lam, q = np.linalg.eigh(-1j * a)
    e = (q * np.exp(1j * lam)[..., None, :]) @ np.conj(np.swapaxes(q, -1, -2))
    return (e.real if not np.iscomplexobj(a) else e), q, lam


def frechet_adjoint(q: np.ndarray, lam: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``L(a^dagger, p)``: the adjoint of the Fréchet derivative of ``expm``
    at ``a = i q diag(lam) q^dagger``.

    For a normal matrix the derivative is diagonal in its eigenbasis, with the
    divided differences ``(e^{x_i} - e^{x_j}) / (x_i - x_j)`` of the
    eigenvalues ``x`` of ``a^dagger = -a`` (Higham, *Functions of Matrices*,
    SIAM 2008, Thm 3.11), here ``exp(-i(lam_i + lam_j)/2) sinc((lam_i - lam_j)/2)``.
    """
    qh = np.conj(np.swapaxes(q, -1, -2))
    li, lj = lam[..., :, None], lam[..., None, :]
    gam = np.exp(-0.5j * (li + lj)) * np.sinc((li - lj) / (2 * np.pi))
    return q @ (gam * (qh @ p @ q)) @ qh


def norm_grads(cores: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    """``||M||^2`` and ``N_s = d ||M||^2 / d conj(core_s)`` for every core."""
    n = len(cores)
    left = [np.ones((1, 1))]
    for c in cores[:-1]:
        tmp = np.tensordot(left[-1], c, axes=(1, 0))
        left.append(np.tensordot(c.conj(), tmp, axes=([0, 1, 2], [0, 1, 2])))
    right = [np.ones((1, 1))] * n
    acc = np.ones((1, 1))
    for s in range(n - 1, -1, -1):
        right[s] = acc
        c = cores[s]
        tmp = np.tensordot(c, acc, axes=(3, 1))
        acc = np.tensordot(c.conj(), tmp, axes=([1, 2, 3], [1, 2, 3]))
    nrm2 = float(acc.real.item())
    grads = [np.tensordot(np.tensordot(left[s], cores[s], axes=(1, 0)), right[s], axes=(3, 1))
             for s in range(n)]
    return nrm2, grads


def lbfgs_refine(gradient: Callable[[MPO], tuple[complex, dict, list[np.ndarray]]],
                 invalidate: Callable[[], None], gates: dict[str, np.ndarray],
                 keys: list[tuple], M: MPO, w2: float, maxiter: int,
                 is_complex: bool) -> MPO:
    """Run L-BFGS on all gates (in ``gates``, updated in place) and ``M``; return the new ``M``.

    ``gradient(M)`` must return the overlap ``<W, U M V^T>`` for the current
    ``gates`` and its holomorphic derivatives (see
    :meth:`qtnn.staircase._dis_network.Network.gradients`); ``invalidate()``
    is called after the gates change.
    """
    m = gates[keys[0][0]].shape[-1]
    basis = generator_basis(m, is_complex)
    nb = basis.shape[0]
    g0 = {key: gates[key[0]][key[1], key[2]].copy() for key in keys}
    shapes = [c.shape for c in M.cores]
    sizes = [int(np.prod(s)) for s in shapes]
    n = len(shapes)
    scale = math.sqrt(w2) ** (1.0 / n)
    ng = nb * len(keys)
    cplx_m = is_complex or np.iscomplexobj(M.cores[0])

    def pack_cores(cores: list[np.ndarray]) -> np.ndarray:
        flat = np.concatenate([c.ravel() / scale for c in cores])
        return np.concatenate([flat.real, flat.imag]) if cplx_m else flat.real.copy()

    def unpack(x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        gens = [np.tensordot(x[i * nb:(i + 1) * nb], basis, axes=(0, 0)) for i in range(len(keys))]
        rest = x[ng:]
        if cplx_m:
            half = rest.size // 2
            flat = rest[:half] + 1j * rest[half:]
        else:
            flat = rest
        cores, off = [], 0
        for shp, sz in zip(shapes, sizes, strict=True):
            cores.append(flat[off:off + sz].reshape(shp) * scale)
            off += sz
        return gens, cores

    def set_state(x: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], MPO]:
        gens, cores = unpack(x)
        ex, q, lam = expm_skew(np.stack(gens))
        for key, e in zip(keys, ex, strict=True):
            gates[key[0]][key[1], key[2]] = g0[key] @ e
        invalidate()
        return (q, lam), MPO(cores, check=False)

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        (q, lam), Mx = set_state(x)
        ov, genv, menv = gradient(Mx)
        nrm2, ngr = norm_grads(Mx.cores)
        f = (w2 - 2.0 * ov.real + nrm2) / w2
        grad = np.zeros_like(x)
        p = np.conj(np.stack([g0[key].T @ genv[key] for key in keys]))
        z = frechet_adjoint(q, lam, p)
        d_re_ov = np.real(np.einsum("pab,gab->gp", basis, np.conj(z)))
        grad[:ng] = (-2.0 / w2) * d_re_ov.ravel()
        # cores: d f / d Re c = (-2 Re E + 2 Re N) / w2, d f / d Im c = (2 Im E + 2 Im N) / w2
        e_flat = np.concatenate([e.ravel() for e in menv])
        n_flat = np.concatenate([q.ravel() for q in ngr])
        g_re = (-2.0 * e_flat.real + 2.0 * n_flat.real) * scale / w2
        if cplx_m:
            g_im = (2.0 * e_flat.imag + 2.0 * n_flat.imag) * scale / w2
            grad[ng:] = np.concatenate([g_re, g_im])
        else:
            grad[ng:] = g_re
        return float(f), grad

    x0 = np.concatenate([np.zeros(ng), pack_cores(M.cores)])
    best: dict[str, Any] = {"f": math.inf, "x": x0}

    def fg_track(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = fg(x)
        if f < best["f"]:
            best["f"], best["x"] = f, x.copy()
        return f, g

    lbfgs(fg_track, x0, maxiter)
    _, Mx = set_state(best["x"])
    return Mx
