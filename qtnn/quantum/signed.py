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

**Device-error bound** (:func:`device_error_bound`).  On a noisy device the
frequencies estimate the noisy distributions :math:`\tilde P_s` of the
``n + 1`` settings, not the ideal :math:`P_s`.  If
:math:`\mathrm{TV}(\tilde P_s, P_s) \le \varepsilon_s`, every single
probability moves by at most :math:`\varepsilon_s`
(:math:`|\tilde P_s(c) - P_s(c)| \le \mathrm{TV}`), so the radius of every
frequency of setting ``s`` becomes :math:`r + \varepsilon_s` and the argument
above goes through unchanged: ``amplitude_bounds(..., device_error=eps)``.
:func:`device_error_bound` derives :math:`\varepsilon_s` for one transpiled
circuit from the device's own noise description (the Aer noise model of a
``fake:`` backend); its docstring has the derivation and its assumptions.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.validate import check_int, check_real

__all__ = ["signed_amplitudes", "exact_settings", "amplitude_bounds", "settings_shots",
           "device_error_bound", "DeviceErrorBound"]


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
                     delta: float = 1e-9, device_error: Any = 0.0) -> np.ndarray:
    """Per-amplitude error bounds of :func:`signed_amplitudes`, failing with probability ``<= delta``.

    ``exact`` is the true state (a test knows it); it decides which tree paths
    have only edges whose sign the shot count guarantees (module docstring).
    The global sign is assumed right (``sign_of_root`` from the reference).
    ``device_error``: a bound on the total-variation distance between the
    device's and the ideal distribution of each setting (scalar, or
    ``(n + 1,)`` / ``(B, n + 1)``: the computational-basis setting first, then
    the Hadamard on wire ``q``), e.g. :func:`device_error_bound`'s
    ``total_variation``; it is added to every frequency's radius.

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

    eps = np.asarray(device_error, dtype=np.float64)
    if eps.ndim == 0:
        eps = np.full((pz.shape[0], n + 1), float(eps))
    elif eps.shape == (n + 1,):
        eps = np.broadcast_to(eps, (pz.shape[0], n + 1))
    if eps.shape != (pz.shape[0], n + 1) or not np.all(np.isfinite(eps)) or np.any(eps < 0):
        raise QtnnError(f"device_error must be >= 0, a scalar or of shape (n + 1,) = ({n + 1},) or "
                        f"(batch, n + 1) = {(pz.shape[0], n + 1)}, got {device_error!r}")
    rz = radius(pz) + eps[:, :1]
    mag = np.minimum(np.sqrt(rz), rz / np.sqrt(np.maximum(pz, 1e-300)))
    rh = radius(ph) + eps[:, 1:, None]
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


@dataclass
class DeviceErrorBound:
    """A bound on the total-variation distance between a circuit's noisy and ideal outcomes.

    Attributes
    ----------
    total_variation : float
        :math:`\\varepsilon = \\min(1, \\text{gates} + \\text{readout})`.
    gates : float
        :math:`\\tfrac12 \\sum_i \\lVert \\mathcal E_i - \\mathrm{id} \\rVert_\\diamond`
        (bounded above) over the noisy instructions of the circuit.
    readout : float
        :math:`\\sum_q \\max(P(1|0), P(0|1))` over the measured qubits.
    instructions : int
        Instructions that carry a quantum error in the noise model.
    per_instruction : dict
        ``{(name, qubits): (count, half diamond-norm bound)}``.
    """

    total_variation: float
    gates: float
    readout: float
    instructions: int
    per_instruction: dict[tuple[str, tuple[int, ...]], tuple[int, float]] = field(default_factory=dict)


def _trace_norm(m: np.ndarray) -> float:
    h = (m + m.conj().T) / 2.0
    return float(np.abs(np.linalg.eigvalsh(h)).sum())


#: Bounds of the Aer errors seen so far (keyed by id, the error kept alive beside its value).
_DIAMOND_CACHE: dict[int, tuple[Any, float]] = {}


def _diamond_bound(error: Any) -> float:
    """An upper bound on ``||E - id||_diamond`` of an Aer ``QuantumError`` (see device_error_bound)."""
    hit = _DIAMOND_CACHE.get(id(error))
    if hit is not None and hit[0] is error:
        return hit[1]
    from qiskit.quantum_info import Choi, SuperOp

    d = 2**error.num_qubits
    j_id = Choi(SuperOp(np.eye(d * d))).data
    mixture = 0.0
    for p, circ in zip(error.probabilities, error.circuits, strict=True):
        mixture += float(p) * min(2.0, _trace_norm(Choi(SuperOp(circ)).data - j_id))
    value = min(2.0, mixture)
    if len(_DIAMOND_CACHE) > 100_000:
        _DIAMOND_CACHE.clear()
    _DIAMOND_CACHE[id(error)] = (error, value)
    return value


def device_error_bound(circuit: Any, noise_model: Any) -> DeviceErrorBound:
    r"""Bound the total-variation distance between the noisy and ideal outcome distributions.

    For a transpiled circuit (physical qubits, the backend's basis gates, with
    measurements) and the noise model the simulator applies to it -- Aer's
    ``NoiseModel.from_backend(backend)``, which ``AerSimulator.from_backend``
    (the ``fake:`` devices) uses.

    **Derivation.**  Aer runs every instruction :math:`U_i` followed by its
    error channel :math:`\mathcal E_i` (a CPTP map: depolarising and thermal
    relaxation from the device's calibration), then measures in the
    computational basis and flips the outcome bits by the read-out assignment
    matrices :math:`A_q`.

    1. *Gates.*  Write the noisy circuit as :math:`\tilde\Lambda = \prod_i
       \mathcal E_i \mathcal U_i` and the ideal one as :math:`\Lambda = \prod_i
       \mathcal U_i`.  Telescoping, and using that the diamond norm is
       sub-multiplicative and every channel has norm 1,
       :math:`\lVert\tilde\Lambda - \Lambda\rVert_\diamond \le \sum_i
       \lVert\mathcal E_i - \mathrm{id}\rVert_\diamond`.  The trace distance of
       the final states, and so the total-variation distance of the
       computational-basis outcomes (measurement is a channel), is at most half
       of that.
    2. *One channel.*  Aer stores :math:`\mathcal E = \sum_k p_k \mathcal C_k`
       as a mixture of circuits (Pauli or reset terms composed with a Kraus
       relaxation).  By the triangle inequality :math:`\lVert\mathcal E -
       \mathrm{id}\rVert_\diamond \le \sum_k p_k \min(2, \lVert\mathcal C_k -
       \mathrm{id}\rVert_\diamond)`, and for any map :math:`\Phi`,
       :math:`\lVert\Phi\rVert_\diamond \le \lVert J(\Phi)\rVert_1` with
       :math:`J` the (unnormalised, trace ``d``) Choi matrix: an input
       :math:`(I \otimes X)|\Omega\rangle` with :math:`\mathrm{tr}\, X^\dagger X = 1`
       gives :math:`(I\otimes X) J (I \otimes X^\dagger)`, of trace norm at most
       :math:`\lVert J\rVert_1 \lVert X\rVert_\infty^2 \le \lVert J\rVert_1`.
       Applied term by term (it over-estimates a term's diamond norm by at
       most the factor ``d``; the terms are near the identity only for the
       identity-Pauli term, the others are capped at 2).
    3. *Read-out.*  The classical channel :math:`A = \bigotimes_q A_q` moves
       any distribution by at most :math:`\sum_q \max(P(1|0), P(0|1))` in
       total variation (replace one factor at a time).
    4. :math:`\mathrm{TV}(\tilde P, P) \le \varepsilon = \min(1,
       \tfrac12\sum_i b_i + \sum_q \rho_q)`, with :math:`b_i` the bound of
       step 2 for instruction ``i`` and :math:`\rho_q` the flip probability of
       step 3 for measured qubit ``q``.  :func:`amplitude_bounds` takes it as
       ``device_error``.

    **Assumptions.**  The device is the noise model: Markovian, one error
    channel per instruction (no idle decoherence unless the circuit holds
    ``delay`` instructions, which are counted like gates; no cross-talk,
    leakage or drift), and instructions without an entry (``rz``, virtual)
    are exact.  Then the bound is rigorous, not an estimate.  It is a
    worst case over input states and over the ways errors could add up, so it
    is loose: errors of opposite effect, and errors in directions the
    measurement does not see, are all counted in full.

    Parameters
    ----------
    circuit : qiskit.QuantumCircuit
        Transpiled for the backend (physical qubit indices), with measurements.
    noise_model : qiskit_aer.noise.NoiseModel or BackendV2
        A backend is turned into ``NoiseModel.from_backend(backend)``.

    Returns
    -------
    DeviceErrorBound

    Examples
    --------
    >>> from qiskit import QuantumCircuit
    >>> from qiskit_aer.noise import NoiseModel, ReadoutError, depolarizing_error
    >>> nm = NoiseModel()
    >>> nm.add_all_qubit_quantum_error(depolarizing_error(0.01, 2), ["cx"])
    >>> nm.add_all_qubit_readout_error(ReadoutError([[0.98, 0.02], [0.03, 0.97]]))
    >>> qc = QuantumCircuit(2); _ = qc.h(0); _ = qc.cx(0, 1); qc.measure_all()
    >>> b = device_error_bound(qc, nm)
    >>> b.instructions, round(b.readout, 12)
    (1, 0.06)
    >>> round(b.gates, 12)      # a Pauli channel: exact, 1/2 ||E - id|| = 15/16 * 0.01
    0.009375
    """
    from qiskit import QuantumCircuit
    from qiskit_aer.noise import NoiseModel

    if not isinstance(circuit, QuantumCircuit):
        raise QtnnTypeError(f"circuit must be a transpiled qiskit.QuantumCircuit, got "
                            f"{type(circuit).__name__}")
    if isinstance(noise_model, NoiseModel):
        model = noise_model
    elif hasattr(noise_model, "target"):
        model = NoiseModel.from_backend(noise_model)
    else:
        raise QtnnTypeError(f"noise_model must be a qiskit_aer NoiseModel or a backend, got "
                            f"{type(noise_model).__name__}")
    needed = ("_local_quantum_errors", "_default_quantum_errors", "_local_readout_errors",
              "_default_readout_error")
    if not all(hasattr(model, a) for a in needed):  # pragma: no cover - other qiskit-aer versions
        raise QtnnError("this qiskit-aer NoiseModel does not expose its errors per instruction "
                        f"({', '.join(needed)}); device_error_bound is tested with qiskit-aer 0.17")
    if getattr(model, "_nonlocal_quantum_errors", None):
        raise QtnnError("noise_model has non-local errors (on qubits other than the instruction's), "
                        "which device_error_bound does not cover")
    cache: dict[tuple[str, tuple[int, ...]], float] = {}
    counts: dict[tuple[str, tuple[int, ...]], int] = {}
    gates = 0.0
    readout = 0.0
    measured: set[int] = set()
    local = model._local_quantum_errors          # {name: {qubits: QuantumError}}
    default = model._default_quantum_errors      # {name: QuantumError}
    local_ro = model._local_readout_errors       # {qubits: ReadoutError}
    default_ro = model._default_readout_error
    for inst in circuit.data:
        name = inst.operation.name
        qubits = tuple(circuit.find_bit(q).index for q in inst.qubits)
        if name == "measure":
            measured.update(qubits)        # read-out flips below; a quantum error on it counts here
        err = local.get(name, {}).get(qubits, default.get(name))
        if err is None:
            continue
        key = (name, qubits)
        if key not in cache:
            cache[key] = 0.5 * _diamond_bound(err)
        counts[key] = counts.get(key, 0) + 1
        gates += cache[key]
    for q in sorted(measured):
        ro = local_ro.get((q,), default_ro)
        if ro is not None:
            a = np.asarray(ro.probabilities, dtype=np.float64)
            readout += float(np.max(1.0 - np.diag(a)))
    return DeviceErrorBound(total_variation=min(1.0, gates + readout), gates=gates, readout=readout,
                            instructions=sum(counts.values()),
                            per_instruction={k: (counts[k], cache[k]) for k in counts})
