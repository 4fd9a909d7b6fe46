"""Compiled kernels of the staircase reference path (numba; pure math on arrays).

The reference path of a trainable staircase (:class:`qtnn.nn.QuantumStaircase`,
:class:`qtnn.nn.DisentangledLinear`) spends, at small ``n``, almost all its
time in the fixed cost of array calls, not in arithmetic: a 6-qubit circuit of
10 gates on a batch of 64 is ~0.5 M multiply-adds forward and backward, a few
tens of microseconds of compiled code, against ~60 numpy calls of ~8 us each.
These kernels do a whole step in one call each way:

``staircase_forward``
    builds the ``4 x 4`` orthogonal gates from their magic-basis angles
    (:mod:`qtnn.staircase.magic`), applies them to a batch of states held
    amplitude-major (``(2^n, batch)`` flattened, so every gate is one pass of
    contiguous, vectorisable rows), and writes the amplitudes or the
    probabilities ``|C x|^2 / ||x||^2`` batch-major.
``staircase_backward``
    runs the gates backwards, *undoing* each one with its transpose instead of
    storing the state before every gate (memory stays one state; the round-off
    this adds is ~1e-16 per gate), accumulates ``dL/dG`` per gate (summed in
    vector lanes, so the last bits of the angle gradients may differ between
    CPUs of different vector widths) and maps it to
    the angles with the exact shift identity ``dG/d(alpha_k) = G(alpha + pi
    e_k) / 2`` (every angle enters through an ``RZ`` or ``RY``).

Layout conventions are those of :func:`qtnn.staircase.apply_gates`: gate ``j``
acts on qubits ``j, j+1`` (qubit 0 the most significant bit), the state viewed
as ``(2^j, 4, rest)``.  The batch runs in chunks of rows that stay in the
core's cache (:data:`CHUNK_ENTRIES`).  Compiled on first use and cached on
disk (``cache=True``), so the compilation (~7 s) is paid once per
installation and CPU, not once per process; module constants are frozen into
the compiled code.  Single-threaded by design: batches are small and torch's
threads run beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

#: ``mode`` of :func:`staircase_forward`: the amplitudes ``C x``, or ``|C x|^2 / ||x||^2``
MODE_STATE = 0
MODE_PROBS = 1
#: status bits returned by :func:`staircase_forward`
BAD_ANGLES = 1
ZERO_ROW = 2


def _compiled(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit`` cached on disk, or compiled per process where nothing is writable.

    Numba looks for a cache folder beside this file, then in the user's cache
    folder (``NUMBA_CACHE_DIR`` overrides both) and refuses ``cache=True`` at
    decoration time when neither is writable (a read-only install and home).
    """
    def decorate(fn: Callable[..., Any]) -> Any:
        try:
            return njit(cache=True, nogil=True, error_model="numpy", **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(cache=False, nogil=True, error_model="numpy", **options)(fn)
    return decorate


@_compiled()
def _su2_parts(phi: float, theta: float, omega: float) -> tuple:  # pragma: no cover
    """``cos(theta/2), sin(theta/2), exp(-i (phi + omega) / 2), exp(-i (phi - omega) / 2)``."""
    sig, dlt = 0.5 * (phi + omega), 0.5 * (phi - omega)
    return (math.cos(0.5 * theta), math.sin(0.5 * theta), complex(math.cos(sig), -math.sin(sig)),
            complex(math.cos(dlt), -math.sin(dlt)))


@_compiled()
def _su2(parts: tuple, shift: int) -> tuple:  # pragma: no cover
    """Row-major entries of ``A = RZ(omega) RY(theta) RZ(phi)``, one angle shifted by ``pi``.

    ``parts`` from :func:`_su2_parts`; ``shift`` 0: none, 1: ``phi``, 2:
    ``theta``, 3: ``omega``.  ``A = [[alpha, -conj(beta)], [beta,
    conj(alpha)]]`` with ``alpha = cos(theta/2) exp(-i (phi + omega) / 2)`` and
    ``beta = sin(theta/2) exp(-i (phi - omega) / 2)``.
    """
    c, s, ps, pd = parts
    if shift == 1:          # sigma and delta + pi/2: both phases times -i
        ps, pd = complex(ps.imag, -ps.real), complex(pd.imag, -pd.real)
    elif shift == 2:        # theta/2 + pi/2: (c, s) -> (-s, c)
        c, s = -s, c
    elif shift == 3:        # sigma + pi/2, delta - pi/2
        ps, pd = complex(ps.imag, -ps.real), complex(-pd.imag, pd.real)
    al, be = c * ps, s * pd
    return al, -be.conjugate(), be, al.conjugate()


@_compiled()
def _gate(ua: tuple, ub: tuple, det: float, out: np.ndarray) -> None:  # pragma: no cover
    """``out = Re(M^dagger (A (x) B) M) diag(1, 1, 1, det)`` from the entries of ``A``, ``B``.

    ``k0 .. k15`` are the row-major entries of ``K = A (x) B``; ``M`` has two
    nonzero entries (``1/sqrt 2`` times ``1`` or ``+-i``) per row and column,
    so each entry of ``M^dagger K M`` is half a signed sum of four of them.
    """
    k0, k1, k2, k3 = ua[0] * ub[0], ua[0] * ub[1], ua[1] * ub[0], ua[1] * ub[1]
    k4, k5, k6, k7 = ua[0] * ub[2], ua[0] * ub[3], ua[1] * ub[2], ua[1] * ub[3]
    k8, k9, k10, k11 = ua[2] * ub[0], ua[2] * ub[1], ua[3] * ub[0], ua[3] * ub[1]
    k12, k13, k14, k15 = ua[2] * ub[2], ua[2] * ub[3], ua[3] * ub[2], ua[3] * ub[3]
    out[0, 0] = 0.5 * (k0.real + k3.real + k12.real + k15.real)
    out[0, 1] = 0.5 * (-k0.imag + k3.imag - k12.imag + k15.imag)
    out[0, 2] = 0.5 * (-k1.imag - k2.imag - k13.imag - k14.imag)
    out[0, 3] = 0.5 * det * (k1.real - k2.real + k13.real - k14.real)
    out[1, 0] = 0.5 * (k0.imag + k3.imag - k12.imag - k15.imag)
    out[1, 1] = 0.5 * (k0.real - k3.real - k12.real + k15.real)
    out[1, 2] = 0.5 * (k1.real + k2.real - k13.real - k14.real)
    out[1, 3] = 0.5 * det * (k1.imag - k2.imag - k13.imag + k14.imag)
    out[2, 0] = 0.5 * (k4.imag + k7.imag + k8.imag + k11.imag)
    out[2, 1] = 0.5 * (k4.real - k7.real + k8.real - k11.real)
    out[2, 2] = 0.5 * (k5.real + k6.real + k9.real + k10.real)
    out[2, 3] = 0.5 * det * (k5.imag - k6.imag + k9.imag - k10.imag)
    out[3, 0] = 0.5 * (k4.real + k7.real - k8.real - k11.real)
    out[3, 1] = 0.5 * (-k4.imag + k7.imag + k8.imag - k11.imag)
    out[3, 2] = 0.5 * (-k5.imag - k6.imag + k9.imag + k10.imag)
    out[3, 3] = 0.5 * det * (k5.real - k6.real - k9.real + k10.real)


@_compiled()
def build_gates(angles: np.ndarray, dets: np.ndarray, shifted: bool) -> np.ndarray:  # pragma: no cover
    """Gates ``(m, 4, 4)`` from angles ``(m, 6)``; with ``shifted`` also each angle + pi.

    Returns ``(m, 7, 4, 4)`` when ``shifted`` (index 0 the gate, ``1 + k`` the
    gate with angle ``k`` shifted by ``pi``), else ``(m, 1, 4, 4)``.
    """
    m = angles.shape[0]
    out = np.empty((m, 7 if shifted else 1, 4, 4))
    for i in range(m):
        a = angles[i]
        pa = _su2_parts(a[0], a[1], a[2])
        pb = _su2_parts(a[3], a[4], a[5])
        ua, ub = _su2(pa, 0), _su2(pb, 0)
        _gate(ua, ub, dets[i], out[i, 0])
        if shifted:
            for k in range(3):
                _gate(_su2(pa, k + 1), ub, dets[i], out[i, 1 + k])
                _gate(ua, _su2(pb, k + 1), dets[i], out[i, 4 + k])
    return out


@_compiled()
def _gate_pass(s: np.ndarray, o: int, w: int, g: np.ndarray) -> None:  # pragma: no cover
    """Rows ``s[o + r w : o + (r + 1) w]``, ``r = 0..3``, replaced by ``g @ rows`` (in place)."""
    g00, g01, g02, g03 = g[0, 0], g[0, 1], g[0, 2], g[0, 3]
    g10, g11, g12, g13 = g[1, 0], g[1, 1], g[1, 2], g[1, 3]
    g20, g21, g22, g23 = g[2, 0], g[2, 1], g[2, 2], g[2, 3]
    g30, g31, g32, g33 = g[3, 0], g[3, 1], g[3, 2], g[3, 3]
    a, b = s[o: o + w], s[o + w: o + 2 * w]
    c, d = s[o + 2 * w: o + 3 * w], s[o + 3 * w: o + 4 * w]
    for q in range(w):
        x0, x1, x2, x3 = a[q], b[q], c[q], d[q]
        a[q] = g00 * x0 + g01 * x1 + g02 * x2 + g03 * x3
        b[q] = g10 * x0 + g11 * x1 + g12 * x2 + g13 * x3
        c[q] = g20 * x0 + g21 * x1 + g22 * x2 + g23 * x3
        d[q] = g30 * x0 + g31 * x1 + g32 * x2 + g33 * x3


@_compiled(fastmath={"reassoc", "contract"})
def _outer_pass(y: np.ndarray, x: np.ndarray, o: int, w: int, acc: np.ndarray) -> None:  # pragma: no cover
    """``acc[a, b] += sum_q y[o + a w + q] x[o + b w + q]`` (the 4 x 4 outer product of two row blocks).

    Summed in vector lanes (``reassoc``): the order of the additions depends
    on the CPU's vector width, so the last bits can differ between machines.
    """
    ya, yb, yc, yd = y[o: o + w], y[o + w: o + 2 * w], y[o + 2 * w: o + 3 * w], y[o + 3 * w: o + 4 * w]
    xa, xb, xc, xd = x[o: o + w], x[o + w: o + 2 * w], x[o + 2 * w: o + 3 * w], x[o + 3 * w: o + 4 * w]
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = 0.0
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = 0.0
    for q in range(w):
        y0, y1, y2, y3 = ya[q], yb[q], yc[q], yd[q]
        x0, x1, x2, x3 = xa[q], xb[q], xc[q], xd[q]
        a00 += y0 * x0
        a01 += y0 * x1
        a02 += y0 * x2
        a03 += y0 * x3
        a10 += y1 * x0
        a11 += y1 * x1
        a12 += y1 * x2
        a13 += y1 * x3
        a20 += y2 * x0
        a21 += y2 * x1
        a22 += y2 * x2
        a23 += y2 * x3
        a30 += y3 * x0
        a31 += y3 * x1
        a32 += y3 * x2
        a33 += y3 * x3
    acc[0, 0] += a00
    acc[0, 1] += a01
    acc[0, 2] += a02
    acc[0, 3] += a03
    acc[1, 0] += a10
    acc[1, 1] += a11
    acc[1, 2] += a12
    acc[1, 3] += a13
    acc[2, 0] += a20
    acc[2, 1] += a21
    acc[2, 2] += a22
    acc[2, 3] += a23
    acc[3, 0] += a30
    acc[3, 1] += a31
    acc[3, 2] += a32
    acc[3, 3] += a33


@_compiled()
def _run(s: np.ndarray, gates: np.ndarray, transpose: bool, pos: np.ndarray, n: int,
         batch: int) -> None:  # pragma: no cover - compiled
    """Apply ``gates[i]`` (or its transpose) on qubits ``pos[i], pos[i]+1``, in order, in place."""
    for i in range(gates.shape[0]):
        j = pos[i]
        w = (1 << (n - j - 2)) * batch
        g = gates[i].T if transpose else gates[i]
        for lead in range(1 << j):
            _gate_pass(s, lead * 4 * w, w, g)


@_compiled()
def _run_back(s: np.ndarray, gy: np.ndarray, gates: np.ndarray, transpose: bool, pos: np.ndarray,
              n: int, batch: int, d_gates: np.ndarray) -> None:  # pragma: no cover - compiled
    """Undo the gates in reverse on ``s`` and pull ``gy`` back through them, in place.

    ``d_gates[i]`` accumulates ``dL/d(gates[i])`` (of the gate as given, also
    when it was applied transposed).
    """
    acc = np.empty((4, 4))
    for i in range(gates.shape[0] - 1, -1, -1):
        j = pos[i]
        w = (1 << (n - j - 2)) * batch
        gt = gates[i] if transpose else gates[i].T      # the inverse of the gate as applied
        acc[:] = 0.0
        for lead in range(1 << j):
            o = lead * 4 * w
            _gate_pass(s, o, w, gt)                       # the state before the gate
            _outer_pass(gy, s, o, w, acc)                 # dL/dG = sum gy (x) state
            _gate_pass(gy, o, w, gt)                      # dL/d(state before the gate)
        d_gates[i] += acc.T if transpose else acc


#: Batch columns per pass of the gates: chunks of ``2^n x chunk`` amplitudes (about
#: 256 KiB) stay in the core's cache while every gate runs over them, instead of
#: streaming the whole batch's states from memory once per gate.
CHUNK_ENTRIES = 32768


@_compiled()
def _chunk(b: int, size: int) -> int:  # pragma: no cover - compiled
    return max(1, min(b, CHUNK_ENTRIES // size))


@_compiled()
def staircase_forward(x: np.ndarray, angles: np.ndarray, dets: np.ndarray, pos: np.ndarray,
                      transpose: bool, n: int, mode: int) -> tuple:  # pragma: no cover - compiled
    """Run the staircase on the rows of ``x`` (``(batch, 2^n)``, float64).

    ``angles`` ``(m, 6)``, ``dets`` ``(m,)`` and ``pos`` ``(m,)`` list the gates
    in the order they act (``transpose``: each gate acts as its transpose).
    Returns ``(out, state, sq_norms, status)``: ``out`` the amplitudes ``C x``
    (``mode == MODE_STATE``) or ``|C x|^2 / ||x||^2`` (``MODE_PROBS``),
    batch-major; ``state`` the final states (for the backward pass: each chunk
    of rows amplitude-major); ``sq_norms`` the squared norm of every row;
    ``status`` a bit set: :data:`BAD_ANGLES` (a NaN or infinite angle: nothing
    was computed) and :data:`ZERO_ROW` (an all-zero row, whose probabilities
    are NaN).
    """
    b, size = x.shape
    for v in angles.ravel():
        if not math.isfinite(v):
            return np.empty((0, 0)), np.empty(0), np.empty(0), BAD_ANGLES
    gates = build_gates(angles, dets, False)[:, 0]
    state = np.empty(size * b)
    r2 = np.zeros(b)
    out = np.empty((b, size))
    bc = _chunk(b, size)
    for t0 in range(0, b, bc):
        nb = min(b - t0, bc)
        s = state[t0 * size: (t0 + nb) * size]
        for i in range(size):
            for t in range(nb):
                v = x[t0 + t, i]
                s[i * nb + t] = v
                r2[t0 + t] += v * v
        _run(s, gates, transpose, pos, n, nb)
        if mode == MODE_PROBS:
            for i in range(size):
                for t in range(nb):
                    v = s[i * nb + t]
                    out[t0 + t, i] = v * v / r2[t0 + t]
        else:
            for i in range(size):
                for t in range(nb):
                    out[t0 + t, i] = s[i * nb + t]
    status = 0
    for t in range(b):
        if r2[t] == 0.0:
            status = ZERO_ROW
    return out, state, r2, status


@_compiled()
def staircase_backward(gy: np.ndarray, state: np.ndarray, r2: np.ndarray, x: np.ndarray,
                       angles: np.ndarray, dets: np.ndarray, pos: np.ndarray, transpose: bool,
                       n: int, mode: int, want_angles: bool, want_x: bool) -> tuple:  # pragma: no cover
    """Gradients of :func:`staircase_forward` w.r.t. the angles ``(m, 6)`` and ``x``.

    ``gy`` is ``dL/d(out)``; ``state`` and ``r2`` are what the forward pass
    returned (``state`` is not modified).  Returns ``(d_angles, d_x)``; an
    unwanted one comes back empty.
    """
    b, size = gy.shape
    m = angles.shape[0]
    both = build_gates(angles, dets, want_angles)
    gates = both[:, 0]
    d_gates = np.zeros((m, 4, 4))
    d_x = np.empty((b if want_x else 0, size))
    bc = _chunk(b, size)
    g = np.empty(size * bc)
    corr = np.zeros(bc)
    for t0 in range(0, b, bc):
        nb = min(b - t0, bc)
        s = state[t0 * size: (t0 + nb) * size].copy()
        if mode == MODE_PROBS:
            corr[:] = 0.0
            for i in range(size):
                for t in range(nb):
                    v = s[i * nb + t]
                    g[i * nb + t] = 2.0 * v * gy[t0 + t, i] / r2[t0 + t]
                    corr[t] += gy[t0 + t, i] * v * v
            for t in range(nb):
                corr[t] *= 2.0 / (r2[t0 + t] * r2[t0 + t])   # d(1/||x||^2)/dx = -2 x / ||x||^4
        else:
            for i in range(size):
                for t in range(nb):
                    g[i * nb + t] = gy[t0 + t, i]
        _run_back(s, g, gates, transpose, pos, n, nb, d_gates)
        if want_x:
            for i in range(size):
                for t in range(nb):
                    d_x[t0 + t, i] = g[i * nb + t] - corr[t] * x[t0 + t, i]
    d_angles = np.zeros((m if want_angles else 0, 6))
    if want_angles:
        for i in range(m):
            for k in range(6):
                acc = 0.0
                for p in range(4):
                    for r in range(4):
                        acc += d_gates[i, p, r] * both[i, k + 1, p, r]
                d_angles[i, k] = 0.5 * acc
    return d_angles, d_x
