"""Magic-basis parametrisation of real orthogonal two-qubit gates.

Every real orthogonal ``4 x 4`` gate ``G`` is, in the *magic basis*, a tensor
product of two single-qubit ``SU(2)`` rotations, times a fixed reflection when
``det G = -1`` (Hill & Wootters, PRL 78, 5022 (1997); Kraus & Cirac, PRA 63,
062309 (2001); Vatan & Williams, PRA 69, 032315 (2004), section III):

``G = M^dagger (A (x) B) M R^s``,   ``s = 0`` if ``det G = +1``, ``s = 1`` if ``det G = -1``.

Conventions (exact; every function of this module uses them):

* ``M`` is the magic basis change (its columns are the magic Bell states)::

      M = 1/sqrt(2) * [[1,  1j, 0,   0],
                       [0,  0,  1j,  1],
                       [0,  0,  1j, -1],
                       [1, -1j, 0,   0]]

  As a circuit (first gate first) ``M = CNOT(1 -> 0) . H(1) . S(1) . S(0)``:
  ``S`` on both qubits, then ``H`` on qubit 1, then a CNOT with control qubit 1
  and target qubit 0 -- exactly, without a global phase.
* In ``A (x) B``, ``A`` acts on the gate's **first** qubit (the most
  significant bit of the ``4 x 4`` index, staircase qubit ``j``) and ``B`` on
  the second (qubit ``j + 1``), as ``numpy.kron(A, B)``.
* ``A = RZ(omega) RY(theta) RZ(phi)`` with ``RZ(a) = diag(exp(-ia/2), exp(ia/2))``
  and ``RY(a) = [[cos a/2, -sin a/2], [sin a/2, cos a/2]]`` (PennyLane's
  ``qml.Rot(phi, theta, omega)``: ``RZ(phi)`` acts first).  The six angles of a
  gate are ``(phi_A, theta_A, omega_A, phi_B, theta_B, omega_B)``.
* The reflection is ``R = CZ = diag(1, 1, 1, -1)`` and acts **first** (it is
  the rightmost factor).

So ``magic_gates`` maps ``SU(2) x SU(2) x {+1, -1}`` onto ``O(4)``; the map is
two-to-one on the ``SU(2)`` factors (``(A, B)`` and ``(-A, -B)`` give the same
gate) and each angle enters through ``RZ`` / ``RY`` rotations only, so the
parametrisation is parameter-shift friendly (two-term shift rule per angle,
Schuld et al., PRA 99, 032331 (2019)).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from qtnn.errors import QtnnError
from qtnn.validate import as_float_array, check_real, is_torch

__all__ = ["MAGIC", "REFLECTION", "magic_gates", "magic_angles", "su2_from_euler", "euler_from_su2",
           "MagicAngles"]


class MagicAngles(np.ndarray):
    """Magic-basis angles ``(..., 6)`` as returned by :func:`magic_angles` (a tagged ``ndarray``).

    The tag lets consumers that take a different kind of gate parameters of the
    same shape (the generator coordinates of
    :meth:`qtnn.staircase.Staircase.params`) refuse these instead of building
    a wrong circuit.  Arithmetic keeps the tag; ``np.asarray`` drops it.

    Examples
    --------
    >>> import numpy as np
    >>> ang, det = magic_angles(np.eye(4))
    >>> isinstance(ang, MagicAngles), ang.shape
    (True, (6,))
    """

_S2 = 1.0 / math.sqrt(2.0)

#: The magic basis change ``M`` (columns: the magic Bell states).
MAGIC: np.ndarray = np.array([[1, 1j, 0, 0],
                              [0, 0, 1j, 1],
                              [0, 0, 1j, -1],
                              [1, -1j, 0, 0]], dtype=np.complex128) * _S2
MAGIC.setflags(write=False)

#: The fixed reflection used for ``det = -1`` gates (``CZ``), acting first.
REFLECTION: np.ndarray = np.diag([1.0, 1.0, 1.0, -1.0])
REFLECTION.setflags(write=False)


def su2_from_euler(phi: Any, theta: Any, omega: Any) -> Any:
    """``RZ(omega) RY(theta) RZ(phi)`` as a complex ``(..., 2, 2)`` array (numpy or torch).

    Examples
    --------
    >>> import numpy as np
    >>> u = su2_from_euler(np.array(0.3), np.array(0.4), np.array(0.5))
    >>> bool(np.isclose(np.linalg.det(u), 1.0))
    True
    """
    if any(is_torch(a) for a in (phi, theta, omega)):
        import torch

        phi, theta, omega = torch.broadcast_tensors(*(torch.as_tensor(a) for a in (phi, theta, omega)))
        c = torch.cos(theta / 2)
        s = torch.sin(theta / 2)
        ep = torch.polar(torch.ones_like(phi), -(phi + omega) / 2)      # exp(-i(phi+omega)/2)
        em = torch.polar(torch.ones_like(phi), (omega - phi) / 2)       # exp(i(omega-phi)/2)
        a = ep * c
        b = em * s
        row0 = torch.stack([a, -b.conj()], dim=-1)
        row1 = torch.stack([b, a.conj()], dim=-1)
        return torch.stack([row0, row1], dim=-2)
    phi, theta, omega = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (phi, theta, omega)))
    a = np.exp(-0.5j * (phi + omega)) * np.cos(theta / 2)
    b = np.exp(0.5j * (omega - phi)) * np.sin(theta / 2)
    return np.stack([np.stack([a, -b.conj()], -1), np.stack([b, a.conj()], -1)], -2)


def euler_from_su2(u: np.ndarray) -> np.ndarray:
    """Angles ``(phi, theta, omega)`` with ``RZ(omega) RY(theta) RZ(phi) = u`` for ``u`` in SU(2).

    Branch (deterministic): ``u = [[a, -conj(b)], [b, conj(a)]]`` is first
    projected onto that form; ``theta = 2 atan2(|b|, |a|)`` in ``[0, pi]``,
    ``phi = -arg(a) - arg(b)`` and ``omega = arg(b) - arg(a)`` with principal
    arguments (``arg(0) = 0``), so ``phi, omega`` lie in ``[-2 pi, 2 pi]``.  No
    threshold is used: when ``|b|`` (or ``|a|``) is tiny its argument is still
    that of the number itself, so the reconstruction error stays at rounding
    level even next to the gimbal-lock points ``theta = 0, pi``.

    Examples
    --------
    >>> import numpy as np
    >>> ang = euler_from_su2(su2_from_euler(0.1, 2.0, -0.7))
    >>> np.round(ang, 12).tolist()
    [0.1, 2.0, -0.7]
    """
    u = np.asarray(u, dtype=np.complex128)
    a = 0.5 * (u[..., 0, 0] + np.conj(u[..., 1, 1]))
    b = 0.5 * (u[..., 1, 0] - np.conj(u[..., 0, 1]))
    theta = 2.0 * np.arctan2(np.abs(b), np.abs(a))
    arg_a = np.angle(a)
    arg_b = np.angle(b)
    return np.stack([-arg_a - arg_b, theta, arg_b - arg_a], axis=-1)


def _check_dets(dets: Any, lead: tuple[int, ...]) -> np.ndarray:
    if is_torch(dets):
        dets = dets.detach().cpu().numpy()
    d = np.asarray(dets)
    if d.dtype == object or not (np.issubdtype(d.dtype, np.number) or d.dtype == bool):
        raise QtnnError(f"dets must hold +1 or -1 values, got dtype {d.dtype}")
    try:
        d = np.broadcast_to(d.astype(np.float64), lead)
    except ValueError:
        raise QtnnError(f"dets must have shape {lead} (the angles' leading shape), got "
                        f"{d.shape}") from None
    if not np.all((d == 1.0) | (d == -1.0)):
        bad = np.unique(d[(d != 1.0) & (d != -1.0)])[:6]
        raise QtnnError(f"dets must all be +1 or -1, got values {bad.tolist()}")
    return d


def magic_gates(angles: Any, dets: Any = None) -> Any:
    """Real orthogonal ``4 x 4`` gates from magic-basis angles (numpy or differentiable torch).

    ``G = M^dagger (A (x) B) M R^s`` (see the module docstring for ``M``, the
    factor order and ``R = CZ``), ``A = RZ(angles[..., 2]) RY(angles[..., 1])
    RZ(angles[..., 0])`` on the first qubit and ``B`` likewise from
    ``angles[..., 3:6]`` on the second.

    Parameters
    ----------
    angles : ndarray or torch.Tensor, shape (..., 6)
        Real angles.  A torch tensor gives a torch result with autograd
        through the angles (float32 in, float32 out; float64 in, float64 out).
    dets : array_like of +-1, shape (...) or broadcastable to it, optional
        Determinant of each gate (default all ``+1``).  Not differentiable (a
        discrete choice).

    Returns
    -------
    ndarray or torch.Tensor, shape (..., 4, 4)
        Real orthogonal gates with ``det = dets``.

    Raises
    ------
    QtnnError
        If the last axis is not 6, the angles are not finite reals, or a
        ``dets`` entry is not ``+1`` / ``-1``.

    Examples
    --------
    >>> import numpy as np
    >>> g = magic_gates(np.zeros(6), -1)
    >>> np.round(g).astype(int).tolist()
    [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, -1]]
    >>> g = magic_gates(np.linspace(0.1, 0.6, 6))
    >>> bool(np.allclose(g @ g.T, np.eye(4), rtol=0, atol=1e-14)), round(float(np.linalg.det(g)), 12)
    (True, 1.0)
    """
    torch_in = is_torch(angles)
    if torch_in:
        import torch

        t = angles
        if t.is_complex():
            raise QtnnError(f"angles must be real, got dtype {t.dtype}")
        if not t.is_floating_point():
            t = t.to(torch.float64)
        if t.ndim < 1 or int(t.shape[-1]) != 6:
            raise QtnnError(f"angles must have shape (..., 6), got {tuple(t.shape)}")
        if not bool(torch.isfinite(t.detach()).all()):
            raise QtnnError(f"angles must be finite, got NaN or inf in a tensor of shape "
                            f"{tuple(t.shape)}")
        lead = tuple(int(s) for s in t.shape[:-1])
        cdtype = torch.complex128 if t.dtype == torch.float64 else torch.complex64
        a = su2_from_euler(t[..., 0], t[..., 1], t[..., 2])
        b = su2_from_euler(t[..., 3], t[..., 4], t[..., 5])
        ab = (a[..., :, None, :, None] * b[..., None, :, None, :]).reshape(*lead, 4, 4)
        m = torch.as_tensor(np.array(MAGIC), dtype=cdtype, device=t.device)
        g = (m.conj().T @ ab.to(cdtype) @ m).real
        if dets is not None:
            d = _check_dets(dets, lead)
            if np.any(d < 0):
                col = torch.ones(*lead, 4, dtype=g.dtype, device=g.device)
                col[..., 3] = torch.as_tensor(np.array(d), dtype=g.dtype, device=g.device)
                g = g * col[..., None, :]           # G @ diag(1, 1, 1, det): scale the last column
        return g
    arr = as_float_array("angles", angles, allow_complex=False)
    if arr.ndim < 1 or arr.shape[-1] != 6:
        raise QtnnError(f"angles must have shape (..., 6), got {arr.shape}")
    lead = arr.shape[:-1]
    a = su2_from_euler(arr[..., 0], arr[..., 1], arr[..., 2])
    b = su2_from_euler(arr[..., 3], arr[..., 4], arr[..., 5])
    ab = (a[..., :, None, :, None] * b[..., None, :, None, :]).reshape(*lead, 4, 4)
    g = np.ascontiguousarray((MAGIC.conj().T @ ab @ MAGIC).real)
    if dets is not None:
        d = _check_dets(dets, lead)
        g[..., :, 3] *= d[..., None]
    return g


def magic_angles(gates: Any, atol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Invert :func:`magic_gates`: angles and determinants of real orthogonal gates.

    Parameters
    ----------
    gates : array_like, shape (..., 4, 4)
        Real orthogonal matrices (checked to ``atol``).
    atol : float
        Tolerance on ``max |G^T G - I|``.

    Returns
    -------
    angles : ndarray, shape (..., 6)
    dets : ndarray, shape (...)
        ``+1.0`` or ``-1.0``; ``magic_gates(angles, dets)`` equals ``gates`` to
        rounding (about ``1e-15``).

    Notes
    -----
    Deterministic branch: ``G' = G R^s`` is in SO(4) and ``U = M G' M^dagger``
    equals ``A (x) B``.  ``A`` is read from the column of the operator-Schmidt
    matrix ``U[(i, j), (k, l)] = A[i, j] B[k, l]`` of largest norm (so
    ``|B[k, l]| >= 1/sqrt(2)``, well conditioned), scaled to ``det A = 1`` with
    the principal square root; then ``B = sum_ij conj(A[i, j]) U[i, :, j, :] / 2``.
    The sign pair ``(A, B) ~ (-A, -B)`` is thereby fixed, and the Euler angles
    follow :func:`euler_from_su2`.

    Raises
    ------
    QtnnError
        If the gates are not real ``(..., 4, 4)`` orthogonal matrices.

    Examples
    --------
    >>> import numpy as np
    >>> from qtnn.tn.linalg import qr_pos
    >>> g = qr_pos(np.random.default_rng(0).normal(size=(4, 4)))[0]
    >>> ang, det = magic_angles(g)
    >>> bool(np.abs(magic_gates(ang, det) - g).max() < 1e-12), float(det) == round(np.linalg.det(g))
    (True, True)
    """
    atol = check_real("atol", atol, minimum=0)
    g = as_float_array("gates", gates, allow_complex=False)
    if g.ndim < 2 or g.shape[-2:] != (4, 4):
        raise QtnnError(f"gates must have shape (..., 4, 4), got {g.shape}")
    dev = np.abs(np.swapaxes(g, -1, -2) @ g - np.eye(4)).max() if g.size else 0.0
    if dev > atol:
        raise QtnnError(f"gates must be real orthogonal: max |G^T G - I| = {dev:.3g} > atol={atol:g}")
    lead = g.shape[:-2]
    det = np.where(np.linalg.det(g) < 0, -1.0, 1.0)
    gp = g.copy()
    gp[..., :, 3] *= det[..., None]                         # G R^s, in SO(4)
    u = MAGIC @ gp @ MAGIC.conj().T                         # = A (x) B
    t = u.reshape(*lead, 2, 2, 2, 2)                        # [i, k, j, l]
    schmidt = np.moveaxis(t, -3, -2).reshape(*lead, 4, 4)   # rows (i, j), columns (k, l)
    col = np.argmax(np.linalg.norm(schmidt, axis=-2), axis=-1)
    x = np.take_along_axis(schmidt, col[..., None, None], axis=-1)[..., 0].reshape(*lead, 2, 2)
    dx = x[..., 0, 0] * x[..., 1, 1] - x[..., 0, 1] * x[..., 1, 0]
    a = x / np.sqrt(dx)[..., None, None]
    b = np.einsum("...ij,...ikjl->...kl", a.conj(), t) / 2.0
    angles = np.concatenate([euler_from_su2(a), euler_from_su2(b)], axis=-1)
    return angles.view(MagicAngles), det
