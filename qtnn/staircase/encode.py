"""MPS -> staircase circuit (state preparation), entirely on MPS.

Goal: gates ``G`` of a :class:`~qtnn.staircase.circuit.Staircase` with
``G |0...0> ~ |psi>``, maximising the fidelity ``|<psi|G|0>|^2``
(``docs/design/math.md``, section 3).  Three methods:

``"ran"``
    Layer-by-layer disentangling of S.-J. Ran, "Encoding of matrix product
    states into quantum circuits of one- and two-qubit gates", PRA 101,
    032310 (2020): truncate the state to bond ``2**(k-1)`` (right-canonical
    form), complete every bond isometry to a ``k``-qubit gate, apply the
    inverse of that layer to the state and repeat on what is left.
``"sweep"``
    Ran's ``D`` layers, then environment sweeps over all gates (Rudolph,
    Chen, Miller, Acharya, Perdomo-Ortiz, "Decomposition of matrix product
    states into shallow quantum circuits", arXiv:2209.00595): each gate in turn
    is replaced by the unitary (orthogonal) polar factor of its environment in
    ``<psi|G|0>``, which maximises the overlap with the others fixed, so the
    fidelity never decreases.
``"iterative"`` (default)
    Rudolph et al.'s best variant: add one Ran layer on the state disentangled
    by the current circuit, sweep all gates, repeat.  At every depth the pure
    Ran circuit (swept too if it is better) and the previous best circuit with
    an identity layer added are candidates as well, so the fidelity is
    non-decreasing in ``D`` and at least the one of ``"ran"``.  The circuit kept
    at the last depth is then swept until a pass removes less than a relative
    tolerance of its infidelity (``polish``, ``rtol``).

Mapping onto the staircase's fixed order.  An ascending layer (window ``j = 0``
first) acting on ``|0...0>`` emits qubit ``j`` after gate ``j`` and carries the
bond on qubits ``j+1..j+k-1``; the state it prepares is an MPS in
*right-canonical* form whose core ``j`` is the isometry from the bond
(input qubits ``j..j+k-2``, with qubit ``j+k-1`` fresh in ``|0>``) to
``(qubit j, bond)``.  So each Ran layer is read off the right-canonical form of
the truncated state, gate ``j``'s columns ``b * 2`` (bond value ``b``, fresh
qubit 0) are that isometry and the other columns its completion.  Ran's
first layer is applied *last*: the layer found at step ``t`` of ``D`` becomes
``Staircase`` layer ``D - t`` (layer 0, acting first on ``|0>``, is the one
found last).  No mirror image is needed.

Determinism.  Every decomposition is gauge-fixed (:func:`~qtnn.tn.linalg.qr_pos`,
:func:`~qtnn.tn.linalg.svd_fixed`).  Completions are the ``Q`` factor (with
``diag(R) >= 0``) of ``[isometry | Gaussian matrix]``, the Gaussian drawn from
``numpy.random.default_rng([seed, t])`` for the layer found at step ``t``.
When a truncation cuts through a cluster of degenerate Schmidt values (the
Heisenberg chain's SU(2) multiplets), the kept vectors are fixed by
:func:`~qtnn.staircase._mpsops.canonical_cluster_rows`: Gram-Schmidt of the
projections of the unit vectors ``e_0, e_1, ...`` (lowest index first) of the
(physical x right bond) space onto the cluster, instead of LAPACK's round-off
dependent choice.

Cost: every step works on MPS (no ``2**n`` vector); the cost is linear in
``n`` and polynomial in the bond of ``psi`` times ``2**((k-1) D)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.staircase import _mpsops as ops
from qtnn.staircase.circuit import MAX_LAYERS, Staircase
from qtnn.tn.linalg import polar_unitary, qr_pos
from qtnn.tn.mps import MPS
from qtnn.validate import check_choice, check_int, check_real

__all__ = ["encode_mps", "EncodeReport", "METHODS"]

METHODS = ("iterative", "ran", "sweep")

Cores = list[np.ndarray]


@dataclass
class EncodeReport:
    """What :func:`encode_mps` did and how well it did it.

    Attributes
    ----------
    method : str
    n_qubits, layers, k, sweeps : int
        The problem and the settings (``sweeps`` = the maximum number of passes
        per sweep phase).
    fidelities : list of (stage, layers, sweep, fidelity)
        Every fidelity ``|<psi|G|0>|^2`` computed, in order.  ``stage`` is
        ``"start"`` (no gate: ``|<psi|0>|^2``), ``"ran"`` (a Ran layer was
        added; ``layers`` = the circuit's depth then), ``"sweep"`` (after pass
        ``sweep`` of environment sweeps), ``"reference"`` (iterative only: the
        pure Ran circuit of that depth), ``"reference-sweep"`` /
        ``"padded-sweep"`` (iterative only: sweeps of the other candidates),
        ``"polish"`` (iterative only: the further sweeps of the last depth's
        circuit, see ``polish``) and ``"best"`` (iterative only: the circuit
        kept at that depth).
    times : list of float
        Seconds since the start when each fidelity was recorded.
    layer_fidelities : list of float
        Entry ``d - 1``: fidelity of the circuit kept with ``d`` layers
        (``"ran"`` and ``"iterative"``: every ``d <= layers``; ``"sweep"``: the
        Ran prefix for ``d < layers`` and the swept circuit for ``d = layers``).
    final_fidelity : float
        Fidelity of the returned circuit.
    seconds : float
        Wall time of the whole encoding.

    Examples
    --------
    >>> from qtnn.tn import MPS
    >>> _, rep = encode_mps(MPS.random(6, 4, seed=0), layers=2, method="ran")
    >>> rep.method, len(rep.layer_fidelities), rep.layer_fidelities[0] <= rep.final_fidelity
    ('ran', 2, True)
    """

    method: str
    n_qubits: int
    layers: int
    k: int
    sweeps: int
    fidelities: list[tuple[str, int, int, float]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    layer_fidelities: list[float] = field(default_factory=list)
    final_fidelity: float = float("nan")
    seconds: float = 0.0

    def table(self) -> str:
        """The fidelity log as aligned text (one line per record).

        Examples
        --------
        >>> r = EncodeReport("ran", 4, 1, 2, 0, [("ran", 1, 0, 0.5)], [0.01])
        >>> print(r.table())
        stage      layers sweep  fidelity        t[s]
        ran             1     0  0.500000000000   0.010
        """
        lines = [f"{'stage':<10} {'layers':>6} {'sweep':>5}  {'fidelity':<15} {'t[s]':>5}"]
        for (stage, d, s, f), t in zip(self.fidelities, self.times, strict=False):
            lines.append(f"{stage:<10} {d:>6} {s:>5}  {f:.12f} {t:>7.3f}")
        return "\n".join(lines)


# ----------------------------------------------------------------- helpers
def _fidelity(psi: Cores, gates: np.ndarray, k: int) -> float:
    """``|<psi|G|0>|^2`` from the MPS of ``G|0>`` (bond <= 2**((k-1) D)); psi normalised."""
    n = len(psi)
    ket = ops.apply_circuit(ops.zero_state(n), gates, k, qr=True)
    return float(abs(ops.overlap(psi, ket)) ** 2)


def _disentangle(psi: Cores, gates: np.ndarray, k: int) -> Cores:
    """``G^dagger |psi>`` (exact: QR splits, nothing dropped)."""
    return ops.apply_circuit(psi, ops.inverse_gates(gates), k, descending=True, qr=True)


def _ran_layer(phi: Cores, k: int, rng: np.random.Generator, is_complex: bool) -> np.ndarray:
    """One Ran layer ``U`` (shape ``(n-k+1, m, m)``) with ``U|0> = trunc(phi) / ||trunc(phi)||``."""
    n = len(phi)
    m = 2**k
    h = 2 ** (k - 1)
    g_count = n - k + 1
    t = ops.truncate_right_canonical(phi, h)
    nrm = float(np.linalg.norm(t[0]))
    if nrm == 0.0:  # pragma: no cover - a unitary image of a unit vector is never 0
        raise QtnnError("the state to encode has norm 0")
    t[0] = t[0] / nrm
    dtype = np.complex128 if is_complex else np.float64
    layer = np.empty((g_count, m, m), dtype=dtype)
    for j in range(g_count):
        if j < g_count - 1:
            c = t[j]
            l_, _, r = c.shape
            v = np.zeros((2, h, l_), dtype=dtype)
            v[:, :r, :] = c.transpose(1, 2, 0)
            v = v.reshape(m, l_)
        else:
            c = ops.merge(t[j:])
            l_ = c.shape[0]
            v = c[:, :, 0].T.astype(dtype)
        cols = [2 * b for b in range(l_)]
        free = [i for i in range(m) if i not in set(cols)]
        rnd = rng.normal(size=(m, m - l_))
        if is_complex:
            rnd = rnd + 1j * rng.normal(size=(m, m - l_))
        q, _ = qr_pos(np.hstack([v, rnd]))
        gate = np.empty((m, m), dtype=dtype)
        gate[:, cols] = v
        gate[:, free] = q[:, l_:]
        layer[j] = gate
    return layer


def _contract_env(left: np.ndarray, bra_win: np.ndarray, ket_win: np.ndarray,
                  right: np.ndarray) -> np.ndarray:
    """``M[a, b]`` with ``<bra| g |ket> = sum_ab g[a, b] M[a, b]`` for the gate on this window."""
    t1 = np.tensordot(left, ket_win, axes=(1, 0))          # (x, b, w)
    t2 = np.tensordot(t1, right, axes=(2, 1))              # (x, b, z)
    return np.tensordot(bra_win.conj(), t2, axes=([0, 2], [0, 2]))


def _gate_on(gate: np.ndarray, block: np.ndarray) -> np.ndarray:
    """``gate`` acting on the middle index of ``block`` ``(l, m, r)`` (one batched matmul; the
    same as :func:`~qtnn.staircase._mpsops.apply_gate_block` without einsum's path search)."""
    return np.matmul(gate, block)


def _left_step(env: np.ndarray, bra: np.ndarray, ket: np.ndarray) -> np.ndarray:
    """``sum_{x,y,s} env[x, y] conj(bra[x, s, a]) ket[y, s, b]`` (two tensordots: einsum's
    path search cost more than the products at these sizes)."""
    t = np.tensordot(env, ket, axes=(1, 0))                         # (x, s, b)
    return np.tensordot(bra.conj(), t, axes=([0, 1], [0, 1]))       # (a, b)


def _right_step(env: np.ndarray, bra: np.ndarray, ket: np.ndarray) -> np.ndarray:
    """``sum_{a,c,s} env[a, c] conj(bra[x, s, a]) ket[y, s, c]``."""
    t = np.tensordot(ket, env, axes=(2, 1))                         # (y, s, a)
    return np.tensordot(bra.conj(), t, axes=([1, 2], [1, 2]))       # (x, y)


def _update_layer_up(ket: Cores, bra: Cores, layer: np.ndarray, k: int) -> tuple[Cores, complex]:
    """Update the gates of one layer left to right (in place); return ``(layer |ket>, overlap)``.

    ``overlap`` is ``<bra| layer |ket>`` after the last update (the
    environment's contraction with the last gate: no extra pass needed).

    ``ket`` = the layers below applied to ``|0>``, ``bra`` = the inverses of the
    layers above applied to ``psi``.  First the bra is swept right to left
    (applying ``g_j^dagger``) storing its gate windows and right environments,
    then each gate ``j`` is replaced by the polar factor of ``conj(M_j)`` and
    applied to the ket, whose emitted core extends the left environment.
    """
    n = len(ket)
    g_count = n - k + 1
    bra_w: list[np.ndarray] = [np.empty(0)] * g_count
    rights: list[np.ndarray] = [np.empty(0)] * g_count
    win = ops.merge(bra[g_count - 1:])
    env = np.ones((1, 1))
    for j in range(g_count - 1, -1, -1):
        bra_w[j] = win
        rights[j] = env
        if j == 0:
            break
        w2 = _gate_on(layer[j].conj().T, win)
        if k == 1:
            core = w2
            win = bra[j - 1]
        else:
            rest, core = ops.qr_split_right(w2)
            win = ops.merge([bra[j - 1], rest])
        env = _right_step(env, core, ket[j + k - 1])
    out: Cores = []
    env = np.ones((1, 1))
    kwin = ops.merge(ket[:k])
    rest = kwin
    overlap = 0j
    for j in range(g_count):
        mat = _contract_env(env, bra_w[j], kwin, rights[j])
        g = polar_unitary(mat.conj())
        layer[j] = g
        overlap = complex(np.sum(g * mat))
        w2 = _gate_on(g, kwin)
        if k == 1:
            core = w2
            if j < g_count - 1:
                kwin = ket[j + 1]
        else:
            core, rest = ops.qr_split_left(w2)
            if j < g_count - 1:
                kwin = ops.merge([rest, ket[j + k]])
        out.append(core)
        env = _left_step(env, bra[j], core)
    if k > 1:
        out.extend(ops.split_all_left_to_right(rest, qr=True))
    return out, overlap


def _update_layer_down(ket: Cores, bra: Cores, layer: np.ndarray, k: int) -> tuple[Cores, complex]:
    """Mirror of :func:`_update_layer_up`: gates updated right to left; returns
    ``(layer^dagger |bra>, overlap)``."""
    n = len(ket)
    g_count = n - k + 1
    ket_w: list[np.ndarray] = [np.empty(0)] * g_count
    lefts: list[np.ndarray] = [np.empty(0)] * g_count
    kwin = ops.merge(ket[:k])
    env = np.ones((1, 1))
    for j in range(g_count):
        ket_w[j] = kwin
        lefts[j] = env
        if j == g_count - 1:
            break
        w2 = _gate_on(layer[j], kwin)
        if k == 1:
            core = w2
            kwin = ket[j + 1]
        else:
            core, rest = ops.qr_split_left(w2)
            kwin = ops.merge([rest, ket[j + k]])
        env = _left_step(env, bra[j], core)
    out: list[np.ndarray | None] = [None] * n
    env = np.ones((1, 1))
    bwin = ops.merge(bra[g_count - 1:])
    rest = bwin
    overlap = 0j
    for j in range(g_count - 1, -1, -1):
        mat = _contract_env(lefts[j], bwin, ket_w[j], env)
        g = polar_unitary(mat.conj())
        layer[j] = g
        overlap = complex(np.sum(g * mat))
        w2 = _gate_on(g.conj().T, bwin)
        if k == 1:
            core = w2
            if j > 0:
                bwin = bra[j - 1]
        else:
            rest, core = ops.qr_split_right(w2)
            if j > 0:
                bwin = ops.merge([bra[j - 1], rest])
        out[j + k - 1] = core
        env = _right_step(env, core, ket[j + k - 1])
    if k > 1:
        head = ops.split_all_right_to_left(rest, qr=True)
        out[: len(head)] = head
    return [c for c in out if c is not None], overlap




class _Log:
    def __init__(self, report: EncodeReport, t0: float) -> None:
        self.report = report
        self.t0 = t0

    def __call__(self, stage: str, d: int, s: int, f: float) -> None:
        self.report.fidelities.append((stage, d, s, float(f)))
        self.report.times.append(time.perf_counter() - self.t0)


def _sweep(psi: Cores, gates: np.ndarray, k: int, sweeps: int, tol: float, f0: float,
           log: _Log, stage: str, rtol: float = 0.0) -> tuple[np.ndarray, float]:
    """Environment sweeps; pass ``s`` goes up (layer 0 -> D-1, gates left to right) for odd
    ``s`` and down for even ``s``.  Stops after ``sweeps`` passes or when a pass gains
    less than ``tol``.  Returns the best gates and fidelity."""
    d_layers = gates.shape[0]
    if d_layers == 0 or sweeps == 0:
        return gates, f0
    gates = gates.copy()
    n = len(psi)
    kets: list[Cores] = [ops.zero_state(n)] + [[] for _ in range(d_layers)]
    bras: list[Cores] = [[] for _ in range(d_layers)] + [list(psi)]
    for li in range(d_layers - 1, -1, -1):
        bras[li] = ops.apply_layer(bras[li + 1], gates[li].conj().transpose(0, 2, 1), k,
                                   descending=True, qr=True)
    best_g, best_f, f_prev = gates.copy(), f0, f0
    for s in range(1, sweeps + 1):
        # the fidelity after a pass is |<psi|G|0>|^2 read off the environment of the pass's
        # last gate update (exact: every split is a QR), instead of rebuilding G|0>
        if s % 2 == 1:
            for li in range(d_layers):
                kets[li + 1], overlap = _update_layer_up(kets[li], bras[li + 1], gates[li], k)
        else:
            for li in range(d_layers - 1, -1, -1):
                bras[li], overlap = _update_layer_down(kets[li], bras[li + 1], gates[li], k)
        f = abs(overlap) ** 2
        log(stage, d_layers, s, f)
        if f > best_f:
            best_g, best_f = gates.copy(), f
        if f - f_prev < max(tol, rtol * (1.0 - f_prev)):
            break
        f_prev = f
    return best_g, best_f


def _check_mps(mps: Any, k: int) -> MPS:
    if not isinstance(mps, MPS):
        raise QtnnTypeError(f"mps must be a qtnn.tn.MPS, got {type(mps).__name__}")
    if any(d != 2 for d in mps.phys_dims):
        raise QtnnError(f"mps must have physical dims all 2 (one qubit per site), got "
                        f"{mps.phys_dims}")
    if mps.num_sites < k:
        raise QtnnError(f"k must be <= the number of qubits {mps.num_sites}, got k={k}")
    return mps


# ------------------------------------------------------------------- public
def encode_mps(mps: MPS, layers: int, method: str = "iterative", sweeps: int = 32, k: int = 2,
               seed: int = 0, tol: float = 1e-10, complex: bool | None = None, *,
               polish: int = 200, rtol: float = 1e-3) -> tuple[Staircase, EncodeReport]:
    """Staircase circuit preparing an MPS from ``|0...0>``.

    Parameters
    ----------
    mps : MPS
        Target state on qubits (all physical dims 2); normalised internally.
    layers : int
        Circuit depth ``D >= 0`` in staircase layers, at most
        :data:`~qtnn.staircase.circuit.MAX_LAYERS` (1000).
    method : {"iterative", "ran", "sweep"}
        See the module documentation.
    sweeps : int
        Maximum number of sweep passes (each pass updates every gate once;
        passes alternate upward and downward).  ``"iterative"`` runs them after
        each added layer, ``"sweep"`` once after Ran's ``D`` layers; ignored by
        ``"ran"``.  The default 32 (formerly 12) is what the intermediate
        depths need: at n=12, D=4 the passes after each added layer still gain
        ~1e-4 each at pass 12, and a better start at the next depth pays more
        than the final polishing (Heisenberg ground state: 0.99760 with 12,
        0.99865-0.99922 with 32, over three OpenBLAS kernel families).
    k : int
        Qubits per gate; one layer prepares any MPS of bond ``2**(k-1)`` exactly.
    seed : int
        Seed of the completions of Ran's isometries (see the module notes).
    tol : float
        Sweeps stop when a pass gains less than ``tol`` in fidelity.
    complex : bool, optional
        Unitary instead of orthogonal gates.  Default: complex iff the MPS is.
        A complex MPS needs complex gates.
    polish : int
        ``"iterative"`` only: after the last layer, the kept circuit is swept
        further, at most ``polish`` passes, until a pass removes less than
        ``rtol`` of the remaining infidelity ``1 - F`` (logged as stage
        ``"polish"``; 0: no polishing).  Measured at n=12, D=4 (2 shared cores,
        OpenBLAS Haswell kernels, default ``sweeps``): Heisenberg ground state
        0.99776 -> 0.99922 and random bond-4 MPS (seeds 0-4) 0.968 -> 0.970 on
        average, each in under 8 s.  The fit is non-convex and follows the
        rounding of its SVDs: other kernels give other optima (Heisenberg
        0.99865 with Sandybridge's, 0.99916 with Prescott's).
    rtol : float
        Relative tolerance of the polishing (see ``polish``).

    Returns
    -------
    (Staircase, EncodeReport)
        The circuit (``layers`` layers, ascending) and the fidelity log.

    Notes
    -----
    BLAS runs single-threaded during the call (see
    :func:`~qtnn.staircase._mpsops.single_threaded_blas`): the matrices are
    small and threading them mostly adds contention.

    Examples
    --------
    >>> from qtnn.tn import MPS
    >>> psi = MPS.random(8, 4, seed=0)
    >>> circ, rep = encode_mps(psi, layers=2)
    >>> circ.layers, rep.method, rep.final_fidelity > 0.9
    (2, 'iterative', True)
    """
    with ops.single_threaded_blas():
        return _encode(mps, layers, method, sweeps, k, seed, tol, complex, polish, rtol)


def _encode(mps: Any, layers: Any, method: Any, sweeps: Any, k: Any, seed: Any, tol: float,
            complex: Any, polish: Any = 0, rtol: Any = 0.0) -> tuple[Staircase, EncodeReport]:
    t0 = time.perf_counter()
    k = check_int("k", k, minimum=1)
    d_layers = check_int("layers", layers, minimum=0, maximum=MAX_LAYERS)
    method = check_choice("method", method, METHODS)
    sweeps = check_int("sweeps", sweeps, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    tol = check_real("tol", tol, minimum=0)
    polish = check_int("polish", polish, minimum=0)
    rtol = check_real("rtol", rtol, minimum=0, maximum=1)
    mps = _check_mps(mps, k)
    psi_complex = any(np.iscomplexobj(c) for c in mps.cores)
    if complex is None:
        is_complex = psi_complex
    elif isinstance(complex, (bool, np.bool_)):
        is_complex = bool(complex)
        if psi_complex and not is_complex:
            raise QtnnError("complex=False needs a real MPS (real orthogonal gates prepare real "
                            "states); got a complex MPS, pass complex=True or None")
    else:
        raise QtnnTypeError(f"complex must be a bool or None, got {complex!r}")
    n = mps.num_sites
    psi = mps.copy()
    psi.normalize()
    dtype = np.complex128 if is_complex else np.float64
    target: Cores = [c.astype(dtype) for c in psi.cores]
    m = 2**k
    g_count = n - k + 1
    report = EncodeReport(method=method, n_qubits=n, layers=d_layers, k=k, sweeps=sweeps)
    log = _Log(report, t0)
    empty = np.zeros((0, g_count, m, m), dtype=dtype)
    f_start = float(abs(ops.overlap(target, ops.zero_state(n))) ** 2)
    log("start", 0, 0, f_start)

    def rng(t: int) -> np.random.Generator:
        return np.random.default_rng([seed, t])

    # pure Ran circuit, layer by layer (needed by every method)
    def ran_prefix(upto: int, record: bool) -> list[tuple[np.ndarray, float]]:
        out = []
        gates = empty
        phi = target
        for t in range(1, upto + 1):
            u = _ran_layer(phi, k, rng(t), is_complex)
            gates = np.concatenate([u[None], gates])
            f = _fidelity(target, gates, k)
            if record:
                log("ran", t, 0, f)
            out.append((gates, f))
            if t < upto:
                phi = ops.apply_layer(phi, u.conj().transpose(0, 2, 1), k, descending=True, qr=True)
        return out

    if d_layers == 0:
        gates, final = empty, f_start
    elif method == "ran":
        prefix = ran_prefix(d_layers, True)
        report.layer_fidelities = [f for _, f in prefix]
        gates, final = prefix[-1]
    elif method == "sweep":
        prefix = ran_prefix(d_layers, True)
        gates, final = _sweep(target, prefix[-1][0], k, sweeps, tol, prefix[-1][1], log, "sweep")
        report.layer_fidelities = [f for _, f in prefix[:-1]] + [final]
    else:
        gates, final = _iterative(target, d_layers, k, sweeps, tol, is_complex, empty, f_start,
                                  rng, log, report, polish, rtol)
    report.final_fidelity = float(final)
    report.seconds = time.perf_counter() - t0
    if not is_complex:
        gates = _proper_first_layer(gates)
    circuit = Staircase(n, d_layers, k, gates, complex=is_complex)
    return circuit, report


def _proper_first_layer(gates: np.ndarray) -> np.ndarray:
    """Make every first-layer gate a rotation (``det = +1``) without changing the state.

    Gate ``(0, j)`` is the first to touch qubits ``j+1 .. j+k-1``, which are
    still ``|0>``: only its columns ``0`` and ``2**(k-1)`` act on the prepared
    state, so negating the last column (input ``|1...1>``, never reached) flips
    the determinant for free.  On hardware a rotation costs 2 CNOTs in the
    magic-basis form, a reflection 3.
    """
    if gates.shape[0] == 0 or gates.shape[-1] < 4:
        return gates
    out = np.array(gates, copy=True)
    first = out[0]
    neg = np.linalg.det(first) < 0
    first[neg, :, -1] *= -1
    return out


def _iterative(target: Cores, d_layers: int, k: int, sweeps: int, tol: float, is_complex: bool,
               empty: np.ndarray, f_start: float, rng: Any, log: _Log,
               report: EncodeReport, polish: int = 0, rtol: float = 0.0) -> tuple[np.ndarray, float]:
    m = empty.shape[-1]
    g_count = empty.shape[1]
    best_g, best_f = empty, f_start
    phi_best = target
    ran_g = empty
    phi_ran = target
    for d in range(1, d_layers + 1):
        # the pure Ran circuit with d layers (a reference candidate)
        u_ref = _ran_layer(phi_ran, k, rng(d), is_complex)
        ran_g = np.concatenate([u_ref[None], ran_g])
        f_ref = _fidelity(target, ran_g, k)
        if d < d_layers:
            phi_ran = ops.apply_layer(phi_ran, u_ref.conj().transpose(0, 2, 1), k, descending=True,
                                      qr=True)
        # candidate A: one Ran layer on the state disentangled by the best circuit so far
        if d == 1:
            cand_g, f0 = ran_g, f_ref
        else:
            u = _ran_layer(phi_best, k, rng(d), is_complex)
            cand_g = np.concatenate([u[None], best_g])
            f0 = _fidelity(target, cand_g, k)
        log("ran", d, 0, f0)
        cands = [_sweep(target, cand_g, k, sweeps, tol, f0, log, "sweep")]
        if d > 1:
            log("reference", d, 0, f_ref)
            if f_ref > cands[0][1]:
                cands.append(_sweep(target, ran_g, k, sweeps, tol, f_ref, log, "reference-sweep"))
            if max(c[1] for c in cands) < best_f:
                pad = np.concatenate([np.broadcast_to(np.eye(m, dtype=empty.dtype),
                                                      (1, g_count, m, m)), best_g])
                f_pad = _fidelity(target, pad, k)
                cands.append(_sweep(target, pad, k, sweeps, tol, f_pad, log, "padded-sweep"))
        g_new, f_new = max(cands, key=lambda c: c[1])
        if d == d_layers and polish:
            # the kept circuit swept on until a pass removes less than rtol of the infidelity
            g_new, f_new = _sweep(target, g_new, k, polish, tol, f_new, log, "polish", rtol)
        best_g, best_f = g_new, f_new
        log("best", d, 0, best_f)
        report.layer_fidelities.append(best_f)
        if d < d_layers:
            phi_best = _disentangle(target, best_g, k)
    return best_g, best_f
