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
the compiled code.

Threads: the compiled code is single-threaded and releases the GIL
(``nogil``); a call whose work reaches :data:`PARALLEL_MIN_WORK` hands its
chunks to :func:`kernel_threads` Python threads (the CPUs the process may
use), each taking the next group of chunks when it finishes one.  Nothing
depends on OpenMP, BLAS or numba environment variables; where torch's OpenMP
threads are set to busy-wait (``OMP_WAIT_POLICY=active``), a parallel call
first ends them (:func:`_quiet_openmp`) so that they do not take the kernel's
cores.  Results do not depend on the thread count.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import math
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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

#: A call whose work (``batch x 2^n x gates`` amplitude updates) reaches this runs its
#: chunks on :func:`kernel_threads` threads; below it, thread hand-offs (tens of
#: microseconds, more on a loaded machine) would cost more than they save.  Measured
#: on 2 cores: n=10, batch 64, 18 gates (1.2 M) gains ~1.6x in the kernels.
PARALLEL_MIN_WORK = 1 << 20

#: A parallel call of at least this much work first ends busy-waiting OpenMP threads
#: (:func:`_quiet_openmp`); ending and later restarting them costs up to a few
#: milliseconds on a loaded machine, which only pays on large calls.
QUIET_MIN_WORK = 1 << 23

#: Tasks per thread a parallel call is cut into: threads take the next task when
#: they finish one, so a thread the OS holds back (a busy machine) delays the call
#: by at most one task.
TASKS_PER_THREAD = 4


@_compiled()
def _chunk(b: int, size: int) -> int:  # pragma: no cover - compiled
    return max(1, min(b, CHUNK_ENTRIES // size))


@_compiled()
def _gates_or_none(angles: np.ndarray, dets: np.ndarray, shifted: bool) -> tuple:  # pragma: no cover
    """``(build_gates(angles, dets, shifted), True)``, or ``(empty, False)`` for a non-finite angle."""
    for v in angles.ravel():
        if not math.isfinite(v):
            return np.empty((0, 1, 4, 4)), False
    return build_gates(angles, dets, shifted), True


@_compiled()
def _forward_rows(x: np.ndarray, gates: np.ndarray, pos: np.ndarray, transpose: bool, n: int,
                  mode: int, bc: int, c_lo: int, c_hi: int, state: np.ndarray, r2: np.ndarray,
                  out: np.ndarray) -> None:  # pragma: no cover - compiled
    """Chunks ``c_lo .. c_hi - 1`` (``bc`` rows each) of :func:`staircase_forward`."""
    b, size = x.shape
    for c in range(c_lo, c_hi):
        t0 = c * bc
        nb = min(b - t0, bc)
        s = state[t0 * size: (t0 + nb) * size]
        for t in range(nb):
            r2[t0 + t] = 0.0
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


@_compiled()
def _backward_rows(gy: np.ndarray, state: np.ndarray, r2: np.ndarray, x: np.ndarray,
                   gates: np.ndarray, pos: np.ndarray, transpose: bool, n: int, mode: int,
                   want_x: bool, bc: int, c_lo: int, c_hi: int, d_chunks: np.ndarray,
                   d_x: np.ndarray) -> None:  # pragma: no cover - compiled
    """Chunks ``c_lo .. c_hi - 1`` of :func:`staircase_backward`; ``d_chunks[c]``: chunk ``c``'s ``dL/dG``."""
    b, size = gy.shape
    g = np.empty(size * bc)
    corr = np.zeros(bc)
    for c in range(c_lo, c_hi):
        t0 = c * bc
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
        _run_back(s, g, gates, transpose, pos, n, nb, d_chunks[c])
        if want_x:
            for i in range(size):
                for t in range(nb):
                    d_x[t0 + t, i] = g[i * nb + t] - corr[t] * x[t0 + t, i]


@_compiled()
def _angle_grads(d_chunks: np.ndarray, both: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``dL/d(angles)`` from the per-chunk ``dL/dG`` (summed in chunk order) and the shifted gates."""
    m = both.shape[0]
    d_gates = np.zeros((m, 4, 4))
    for c in range(d_chunks.shape[0]):
        d_gates += d_chunks[c]
    d_angles = np.zeros((m, 6))
    for i in range(m):
        for k in range(6):
            acc = 0.0
            for p in range(4):
                for r in range(4):
                    acc += d_gates[i, p, r] * both[i, k + 1, p, r]
            d_angles[i, k] = 0.5 * acc
    return d_angles


@_compiled()
def _forward_serial(x: np.ndarray, angles: np.ndarray, dets: np.ndarray, pos: np.ndarray,
                    transpose: bool, n: int, mode: int) -> tuple:  # pragma: no cover - compiled
    """:func:`staircase_forward` in one compiled call on one thread (small calls: no Python in between)."""
    b, size = x.shape
    both, ok = _gates_or_none(angles, dets, False)
    if not ok:
        return np.empty((0, 0)), np.empty(0), np.empty(0), BAD_ANGLES
    gates = np.ascontiguousarray(both[:, 0])
    state = np.empty(size * b)
    r2 = np.empty(b)
    out = np.empty((b, size))
    bc = _chunk(b, size)
    _forward_rows(x, gates, pos, transpose, n, mode, bc, 0, (b + bc - 1) // bc, state, r2, out)
    status = 0
    for t in range(b):
        if r2[t] == 0.0:
            status = ZERO_ROW
    return out, state, r2, status


@_compiled()
def _backward_serial(gy: np.ndarray, state: np.ndarray, r2: np.ndarray, x: np.ndarray,
                     angles: np.ndarray, dets: np.ndarray, pos: np.ndarray, transpose: bool,
                     n: int, mode: int, want_angles: bool,
                     want_x: bool) -> tuple:  # pragma: no cover - compiled
    """:func:`staircase_backward` in one compiled call on one thread."""
    b, size = gy.shape
    m = angles.shape[0]
    both = build_gates(angles, dets, want_angles)
    gates = np.ascontiguousarray(both[:, 0])
    bc = _chunk(b, size)
    chunks = (b + bc - 1) // bc
    d_chunks = np.zeros((chunks, m, 4, 4))
    d_x = np.empty((b if want_x else 0, size))
    _backward_rows(gy, state, r2, x, gates, pos, transpose, n, mode, want_x, bc, 0, chunks,
                   d_chunks, d_x)
    if want_angles:
        return _angle_grads(d_chunks, both), d_x
    return np.zeros((0, 6)), d_x


_THREADS: int | None = None
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def kernel_threads() -> int:
    """Threads the staircase kernels use for large calls (:data:`PARALLEL_MIN_WORK`).

    The CPUs this process may run on (``os.sched_getaffinity``), unless set by
    :func:`set_kernel_threads`.  No environment variable (``OMP_NUM_THREADS``,
    ``NUMBA_NUM_THREADS``, ...) changes it: the kernels run on their own
    threads, not on an OpenMP or numba thread pool.

    Examples
    --------
    >>> kernel_threads() >= 1
    True
    """
    if _THREADS is not None:
        return _THREADS
    return _available_cpus()


@functools.lru_cache(maxsize=1)
def _available_cpus() -> int:
    """CPUs this process may run on (read once: a system call per kernel call would show at n=6)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def set_kernel_threads(threads: int | None) -> None:
    """Set the threads of the staircase kernels (``None``: the CPUs available; ``1``: single-threaded).

    Results do not depend on it: every call is cut into the same chunks whatever
    the thread count, and the gradients are summed in chunk order.

    Examples
    --------
    >>> set_kernel_threads(1); kernel_threads()
    1
    >>> set_kernel_threads(None)
    """
    global _THREADS
    if threads is not None:
        from qtnn.validate import check_int

        threads = check_int("threads", threads, minimum=1)
    _THREADS = threads


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, kernel_threads() - 1),
                                       thread_name_prefix="qtnn-staircase")
        return _POOL


def _spinning_openmp() -> Any:
    """``omp_pause_resource_all`` of the GNU OpenMP runtime torch loaded, when its idle threads spin.

    With ``OMP_WAIT_POLICY=active`` (or a large ``GOMP_SPINCOUNT``) every
    thread of torch's OpenMP pool busy-waits on a core after each parallel
    torch op, indefinitely: the kernel's threads would share the cores with
    them.  Pausing the pool (OpenMP 5.0) ends those threads; torch's next
    parallel op starts new ones.  ``None`` where the threads sleep when idle
    (the default policy) or the runtime is not GNU OpenMP.
    """
    policy = os.environ.get("OMP_WAIT_POLICY", "").strip().lower()
    spin = os.environ.get("GOMP_SPINCOUNT", "").strip().lower()
    spins = policy == "active" or spin == "infinite" or spin == "infinity" or (
        spin.isdigit() and int(spin) > 10**7)
    if not spins or not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/maps") as fh:
            libs = sorted({line.split()[-1] for line in fh if "libgomp" in line and "/" in line})
        for lib in libs:
            fn = ctypes.CDLL(lib).omp_pause_resource_all
            fn.argtypes = [ctypes.c_int]
            fn.restype = ctypes.c_int
            return fn
    except (OSError, AttributeError):  # pragma: no cover - no such runtime or symbol
        return None
    return None


_PAUSE: Any = False   # False: not looked up yet


def _quiet_openmp() -> None:
    """End the busy-waiting threads of torch's OpenMP pool, if any (see :func:`_spinning_openmp`)."""
    if _spinning():
        _PAUSE(1)   # omp_pause_soft; refused (nonzero) inside a parallel region: harmless


def _spinning() -> bool:
    """Whether torch's OpenMP threads busy-wait when idle (looked up once, see :func:`_spinning_openmp`)."""
    global _PAUSE
    if _PAUSE is False:
        _PAUSE = _spinning_openmp()
    return _PAUSE is not None


def _serial(work: int, b: int, size: int) -> bool:
    """Whether a call of this much work on ``b`` rows of ``size`` runs on the calling thread alone.

    Where torch's OpenMP threads busy-wait, a helper thread would share a core
    with one of them unless they are ended first, which only pays from
    :data:`QUIET_MIN_WORK` on: below it such a call stays on one thread
    (measured at n=10, batch 64, ``OMP_WAIT_POLICY=active``: 0.56x with a helper).
    """
    least = QUIET_MIN_WORK if _spinning() else PARALLEL_MIN_WORK
    return work < least or kernel_threads() <= 1 or b <= max(1, CHUNK_ENTRIES // size)


def _run_tasks(task: Callable[[int, int], None], chunks: int, work: int) -> int:
    """Run ``task(c_lo, c_hi)`` over ``range(chunks)``, on several threads when ``work`` is large.

    Returns the number of threads used.  The calling thread works too; helpers
    that have not started by the time it finishes are cancelled.
    """
    threads = min(kernel_threads(), chunks)
    if threads <= 1 or work < PARALLEL_MIN_WORK:
        task(0, chunks)
        return 1
    if work >= QUIET_MIN_WORK:
        _quiet_openmp()
    n_tasks = min(chunks, threads * TASKS_PER_THREAD)
    bounds = [chunks * k // n_tasks for k in range(n_tasks + 1)]
    counter = itertools.count()     # next() is atomic under the GIL

    def worker() -> None:
        for k in counter:
            if k >= n_tasks:
                return
            task(bounds[k], bounds[k + 1])

    futures = [_pool().submit(worker) for _ in range(threads - 1)]
    try:
        worker()
    finally:
        for f in futures:
            if not f.cancel():
                f.result()
    return threads


def staircase_forward(x: np.ndarray, angles: np.ndarray, dets: np.ndarray, pos: np.ndarray,
                      transpose: bool, n: int, mode: int) -> tuple:
    """Run the staircase on the rows of ``x`` (``(batch, 2^n)``, float64).

    ``angles`` ``(m, 6)``, ``dets`` ``(m,)`` and ``pos`` ``(m,)`` list the gates
    in the order they act (``transpose``: each gate acts as its transpose).
    Returns ``(out, state, sq_norms, status)``: ``out`` the amplitudes ``C x``
    (``mode == MODE_STATE``) or ``|C x|^2 / ||x||^2`` (``MODE_PROBS``),
    batch-major; ``state`` the final states (for the backward pass: each chunk
    of rows amplitude-major); ``sq_norms`` the squared norm of every row;
    ``status`` a bit set: :data:`BAD_ANGLES` (a NaN or infinite angle: nothing
    was computed) and :data:`ZERO_ROW` (an all-zero row, whose probabilities
    are NaN).  Large calls run on :func:`kernel_threads` threads
    (:data:`PARALLEL_MIN_WORK`); the result does not depend on it.
    """
    b, size = x.shape
    if _serial(b * size * angles.shape[0], b, size):
        return _forward_serial(x, angles, dets, pos, transpose, n, mode)
    both, ok = _gates_or_none(angles, dets, False)
    if not ok:
        return np.empty((0, 0)), np.empty(0), np.empty(0), BAD_ANGLES
    gates = np.ascontiguousarray(both[:, 0])
    state = np.empty(size * b)
    r2 = np.empty(b)
    out = np.empty((b, size))
    bc = _chunk(b, size) if b else 1
    chunks = -(-b // bc)

    def task(c_lo: int, c_hi: int) -> None:
        _forward_rows(x, gates, pos, transpose, n, mode, bc, c_lo, c_hi, state, r2, out)

    _run_tasks(task, chunks, b * size * gates.shape[0])
    return out, state, r2, ZERO_ROW if b and not r2.all() else 0


def staircase_backward(gy: np.ndarray, state: np.ndarray, r2: np.ndarray, x: np.ndarray,
                       angles: np.ndarray, dets: np.ndarray, pos: np.ndarray, transpose: bool,
                       n: int, mode: int, want_angles: bool, want_x: bool) -> tuple:
    """Gradients of :func:`staircase_forward` w.r.t. the angles ``(m, 6)`` and ``x``.

    ``gy`` is ``dL/d(out)``; ``state`` and ``r2`` are what the forward pass
    returned (``state`` is not modified).  Returns ``(d_angles, d_x)``; an
    unwanted one comes back empty.  The per-chunk gradients of the gates are
    summed in chunk order, so the result is the same on any number of threads.
    """
    b, size = gy.shape
    m = angles.shape[0]
    if _serial(b * size * m, b, size):
        return _backward_serial(gy, state, r2, x, angles, dets, pos, transpose, n, mode,
                                want_angles, want_x)
    both = build_gates(angles, dets, want_angles)
    gates = np.ascontiguousarray(both[:, 0])
    bc = _chunk(b, size) if b else 1
    chunks = -(-b // bc)
    d_chunks = np.zeros((chunks, m, 4, 4))
    d_x = np.empty((b if want_x else 0, size))

    def task(c_lo: int, c_hi: int) -> None:
        _backward_rows(gy, state, r2, x, gates, pos, transpose, n, mode, want_x, bc, c_lo, c_hi,
                       d_chunks, d_x)

    _run_tasks(task, chunks, b * size * m)
    d_angles = _angle_grads(d_chunks, both) if want_angles else np.zeros((0, 6))
    return d_angles, d_x
