r"""Error mitigation for ``fake:`` and ``ibm:`` devices: readout correction and zero-noise extrapolation.

``device(..., mitigation=...)`` takes ``"readout"``, ``"zne"`` or both
(``"readout+zne"``, or the tuple ``("readout", "zne")``); anything else is a
:class:`~qtnn.errors.QtnnError` in :func:`~qtnn.quantum.device`, before any job.

Readout mitigation
------------------

Each measured qubit ``q`` misreads with a 2x2 assignment matrix
:math:`A_q[m, s] = P(\text{measured } m \mid \text{prepared } s)`.  Under the
tensored model (readout errors independent between qubits -- exact for the
noise models of Qiskit's device models, a good approximation on hardware) the
measured distribution is :math:`p_{meas} = (\bigotimes_q A_q)\, p_{true}`, so

1. **Calibration** (once per set of physical qubits, cached on the device):
   two circuits on the qubits a job measures, all in ``|0>`` and all in ``|1>``
   (``X`` then measure), ``calibration_shots`` shots each (default: the device's
   shots, at least 4,000); their per-qubit marginals give every :math:`A_q`.
   They run as one job through the same retries and timeout as any job.
2. **Correction** of each circuit's counts before anything else reads them:
   the measured distribution is marginalised to the wires of each ``qml.probs``
   (the inverse of a column-stochastic matrix has columns adding up to one, so
   this commutes with correcting the other bits), then
   :math:`\hat p = (\bigotimes_q A_q^{-1})\, p_{meas}` (one 2x2 solve per axis),
   then the nearest probability distribution in
   the 2-norm (Smolin, Gambetta, Smith, PRL 108, 070502 (2012)), so the
   probabilities are non-negative and add up to one before the loss sees them.

The corrected probabilities are what ``qml.probs`` returns (and the ``expval``
readout of :class:`~qtnn.quantum.StaircaseQNode`, computed from them).  Other
measurements (samples, counts, estimator expectation values) cannot be
corrected this way and are a :class:`~qtnn.errors.QtnnError` on a mitigated
device.  The Runtime's resilience options are not offered (the Sampler that runs
these circuits has none; zero-noise extrapolation below is done by qtnn itself).

Cost: two calibration circuits per new set of measured qubits; the
correction is ``O(m 2**m)`` per circuit.

Zero-noise extrapolation
------------------------
``mitigation="zne"`` runs every transpiled circuit at the noise scales
``zne_scales`` (odd integers starting at 1; default :data:`ZNE_SCALES`) by
**folding its two-qubit gates**: each two-qubit gate ``G`` of the compiled
(ISA) circuit becomes ``G (G^-1 G)^((s-1)/2)`` (:func:`fold_two_qubit_gates`).
The logical circuit is unchanged and the two-qubit gate count -- the dominant
error on IBM devices and their models -- grows ``s``-fold.  Folding acts on the
circuit after transpilation, so no optimisation pass can cancel the inserted
pairs.  The probabilities measured at each scale (readout-corrected first with
``"readout+zne"``: readout errors do not grow with folding) are extrapolated to
scale 0 by Richardson extrapolation (the polynomial of degree ``len(scales) - 1``
through the points, :func:`richardson`; linear for two scales), then projected
onto the probability simplex (:func:`nearest_probability`) before anything reads
them.

Cost: ``len(zne_scales)`` circuits per circuit, each with the device's shots
(shots ``x len(zne_scales)``), and a simulation or run time of about
``sum(zne_scales)`` times that of the unfolded circuits on a noisy simulator.
The extrapolation amplifies the shot noise: the variance of each estimated
probability is :math:`\sum_k \gamma_k^2` times that of one scale, with the
Richardson weights :math:`\gamma_k` (scales 1, 3: 2.5; scales 1, 3, 5: 5.2).  It
removes the bias of noise that grows smoothly with the gate count (to first order
for two scales); errors of the single-qubit gates are not scaled.

With any mitigation the device also keeps, in ``last_variants``, the probabilities
of its last batch under every subset of the mitigations it applies (``"raw"``,
``"readout"``, ``"zne"``, ``"readout+zne"``), computed from the same shots.

Examples
--------
>>> import numpy as np
>>> a = [np.array([[0.9, 0.2], [0.1, 0.8]])]             # one qubit: P(m | s)
>>> p_true = np.array([0.3, 0.7])
>>> p_meas = a[0] @ p_true
>>> np.round(correct(p_meas, a), 12).tolist()
[0.3, 0.7]
>>> np.round(nearest_probability(np.array([0.6, 0.5, -0.1])), 12).tolist()
[0.55, 0.45, 0.0]
>>> round(float(richardson([1, 3], [np.array(0.8), np.array(0.6)])), 12)   # the line through both
0.9
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qtnn.errors import QtnnError

__all__ = ["MITIGATIONS", "ZNE_SCALES", "check_mitigation", "check_zne_scales", "correct",
           "nearest_probability", "calibrate", "mitigated_results", "fold_two_qubit_gates", "richardson",
           "zne_results"]

#: Valid values of the ``mitigation`` option (``None``: off); a tuple of the parts is also taken.
MITIGATIONS = ("readout", "zne", "readout+zne")
_PARTS = ("readout", "zne")
#: Default noise scales of zero-noise extrapolation (linear extrapolation from 1x and 3x).
ZNE_SCALES = (1, 3)


def check_mitigation(value: Any) -> str | None:
    """``None`` or the canonical name (one of :data:`MITIGATIONS`) of a valid ``mitigation`` value.

    Takes a name of :data:`MITIGATIONS`, ``"zne+readout"``, or a tuple / list of
    the parts ``"readout"`` and ``"zne"``; anything else is a
    :class:`~qtnn.errors.QtnnError` listing the valid values.

    Examples
    --------
    >>> check_mitigation("readout"), check_mitigation(None), check_mitigation(("zne", "readout"))
    ('readout', None, 'readout+zne')
    """
    if value is None:
        return None
    parts: list = []
    if isinstance(value, str):
        parts = value.split("+")
    elif isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value):
        parts = list(value)
    if parts and len(set(parts)) == len(parts) and set(parts) <= set(_PARTS):
        return "+".join(p for p in _PARTS if p in parts)
    raise QtnnError(f"mitigation={value!r} is not supported; valid values: None, "
                    f"{', '.join(repr(m) for m in MITIGATIONS)} or a tuple of 'readout' and 'zne' "
                    "(the Runtime's resilience levels are not available for Sampler jobs)")


def check_zne_scales(value: Any) -> tuple[int, ...]:
    """The noise scales of zero-noise extrapolation: distinct odd integers, ascending, the first 1.

    ``None`` gives :data:`ZNE_SCALES`; anything else than a sequence of at least two
    such integers is a :class:`~qtnn.errors.QtnnError`.

    Examples
    --------
    >>> check_zne_scales(None), check_zne_scales([5, 1, 3])
    ((1, 3), (1, 3, 5))
    """
    if value is None:
        return ZNE_SCALES
    ok = isinstance(value, (tuple, list)) and len(value) >= 2 and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 and s % 2 == 1
        for s in value) and len(set(value)) == len(value)
    scales = tuple(sorted(int(s) for s in value)) if ok else ()
    if not scales or scales[0] != 1:
        raise QtnnError(f"zne_scales={value!r} must be at least two distinct odd integers including 1 "
                        "(the unfolded circuit), e.g. (1, 3) or (1, 3, 5)")
    return scales


def correct(p: np.ndarray, assignment: list[np.ndarray]) -> np.ndarray:
    """Apply :math:`\\bigotimes_q A_q^{-1}` to a distribution over ``m`` bits (axis ``q`` = matrix ``q``).

    ``p`` has ``2**m`` entries ordered with bit 0 the most significant (or
    shape ``(2,) * m``); returns the same shape (quasi-probabilities).
    """
    m = len(assignment)
    arr = np.asarray(p, dtype=np.float64)
    shape = arr.shape
    t = arr.reshape((2,) * m)
    for q, a in enumerate(assignment):
        a = np.asarray(a, dtype=np.float64)
        if a.shape != (2, 2) or abs(np.linalg.det(a)) < 1e-9:
            raise QtnnError(f"the readout assignment matrix of bit {q} is singular or not 2x2: {a.tolist()}")
        t = np.moveaxis(np.tensordot(np.linalg.inv(a), np.moveaxis(t, q, 0), axes=(1, 0)), 0, q)
    return t.reshape(shape)


def nearest_probability(q: np.ndarray) -> np.ndarray:
    """The probability vector nearest to the quasi-probabilities ``q`` (summing to 1) in the 2-norm.

    Smolin, Gambetta, Smith, PRL 108, 070502 (2012): sort, drop the most negative
    entries while spreading their weight over the rest.
    """
    q = np.asarray(q, dtype=np.float64)
    flat = q.reshape(-1)
    order = np.argsort(flat)
    vals = flat[order].copy()
    dim = len(vals)
    acc = 0.0
    i = 0
    while i < dim and vals[i] + acc / (dim - i) < 0:
        acc += vals[i]
        vals[i] = 0.0
        i += 1
    if i < dim:
        vals[i:] += acc / (dim - i)
    out = np.empty_like(flat)
    out[order] = vals
    return out.reshape(q.shape)


def _measured_qubits(compiled: Any) -> list[int]:
    """Physical qubit of each classical bit (by clbit index) of a transpiled circuit."""
    phys: dict[int, int] = {}
    for inst in compiled.data:
        if inst.operation.name == "measure":
            phys[compiled.find_bit(inst.clbits[0]).index] = compiled.find_bit(inst.qubits[0]).index
    if sorted(phys) != list(range(compiled.num_clbits)):
        raise QtnnError(f"readout mitigation needs one measurement per classical bit; circuit "
                        f"{compiled.name!r} measures bits {sorted(phys)} of {compiled.num_clbits}")
    return [phys[c] for c in range(compiled.num_clbits)]


def calibrate(dev: Any, qubits: list[int]) -> None:
    """Measure the assignment matrices of the physical ``qubits`` not yet calibrated on ``dev``
    (a :class:`~qtnn.quantum._batched.BatchedRemoteDevice`); stores them in ``dev.readout_calibration``."""
    from qiskit import QuantumCircuit

    todo = sorted({int(q) for q in qubits} - set(dev.readout_calibration))
    if not todo:
        return
    width = int(dev.backend.num_qubits)
    circs = []
    for state in (0, 1):
        qc = QuantumCircuit(width, len(todo), name=f"readout_cal_{state}")
        for k, q in enumerate(todo):
            if state:
                qc.x(q)
            qc.measure(q, k)
        circs.append(qc)       # already physical: X and measure on the backend's own qubits
    shots = int(dev.calibration_shots or max(4000, int(dev._kwargs.get("default_shots", 1024))))
    counts0, counts1 = dev._run_counts(circs, [shots, shots])
    for k, q in enumerate(todo):
        a = np.zeros((2, 2))
        for state, counts in ((0, counts0), (1, counts1)):
            ones = sum(c for key, c in counts.items() if key.replace(" ", "")[-1 - k] == "1")
            a[1, state] = ones / shots
            a[0, state] = 1.0 - a[1, state]
        dev.readout_calibration[q] = a


def _check_probs_only(circ: Any, what: str) -> None:
    from pennylane.measurements import ProbabilityMP

    bad = [type(mp).__name__ for mp in circ.measurements if not isinstance(mp, ProbabilityMP)]
    if bad:
        raise QtnnError(f"mitigation={what!r} corrects probabilities (qml.probs); this circuit also "
                        f"measures {', '.join(bad)}: use qml.probs or a device without mitigation")


def measured_probabilities(dev: Any, circ: Any, counts: dict[str, int], compiled: Any, *,
                           readout: bool, project: bool = True) -> list[np.ndarray]:
    """The distribution of each ``qml.probs`` of ``circ`` from its counts, readout-corrected if asked.

    With ``readout=True`` and ``project=False`` the corrected quasi-probabilities
    are returned as they are (for zero-noise extrapolation, which projects once at the end).
    """
    m = compiled.num_clbits
    total = sum(counts.values())
    p = np.zeros((2,) * m)
    for key, c in counts.items():
        bits = key.replace(" ", "")
        p[tuple(int(bits[-1 - i]) for i in range(m))] += c / total    # axis i = clbit i = wire i
    qubits: list[int] = []
    if readout:
        qubits = _measured_qubits(compiled)
        calibrate(dev, qubits)
    out = []
    wire_index = {w: i for i, w in enumerate(dev.wires)}
    for mp in circ.measurements:
        # The inverse of a column-stochastic matrix has columns that add up to one, so marginalising
        # commutes with the correction of the other bits: correct (and project) the marginal of the
        # measured wires only -- fewer outcomes, less bias from the projection.
        axes = [wire_index[w] for w in (mp.wires if len(mp.wires) else dev.wires)]
        rest = tuple(i for i in range(m) if i not in axes)
        marg = p.sum(axis=rest) if rest else p
        kept = sorted(axes)
        marg = np.transpose(marg, [kept.index(a) for a in axes])
        if readout:
            marg = correct(marg, [dev.readout_calibration[qubits[a]] for a in axes])
            if project:
                marg = nearest_probability(marg)
        out.append(marg.reshape(-1))
    return out


def mitigated_results(dev: Any, circ: Any, counts: dict[str, int], compiled: Any) -> list:
    """Readout-corrected results of the measurements of ``circ`` (``qml.probs`` only).

    Also stores the uncorrected probabilities and the corrected ones in
    ``dev.last_variants`` (``"raw"`` and ``"readout"``, one entry per call).
    """
    _check_probs_only(circ, "readout")
    out = measured_probabilities(dev, circ, counts, compiled, readout=True)
    variants = getattr(dev, "last_variants", None)
    if variants is not None:
        variants.setdefault("raw", []).append(
            measured_probabilities(dev, circ, counts, compiled, readout=False))
        variants.setdefault("readout", []).append(out)
    return out


def fold_two_qubit_gates(compiled: Any, scale: int) -> Any:
    """A copy of ``compiled`` with each two-qubit gate ``G`` replaced by ``G (G^-1 G)^((scale-1)/2)``.

    The circuit's unitary is unchanged; its two-qubit gates are ``scale`` times as
    many.  ``compiled`` should be the transpiled (ISA) circuit, so that nothing
    cancels the inserted pairs.

    Examples
    --------
    >>> from qiskit import QuantumCircuit
    >>> qc = QuantumCircuit(2, 2)
    >>> _ = qc.h(0); _ = qc.cz(0, 1); _ = qc.measure([0, 1], [0, 1])
    >>> dict(fold_two_qubit_gates(qc, 5).count_ops())
    {'cz': 5, 'measure': 2, 'h': 1}
    """
    scale = int(scale)
    if scale < 1 or scale % 2 == 0:
        raise QtnnError(f"scale={scale!r} must be a positive odd integer")
    out = compiled.copy_empty_like(name=f"{compiled.name}_fold{scale}")
    for inst in compiled.data:
        out.append(inst)
        op = inst.operation
        if scale > 1 and op.num_qubits == 2 and op.num_clbits == 0 and op.name not in ("barrier",):
            inv = op.inverse()
            for _ in range((scale - 1) // 2):
                out.append(inv, inst.qubits)
                out.append(op, inst.qubits)
    return out


def richardson(scales: Any, values: list[np.ndarray]) -> np.ndarray:
    r"""The value at scale 0 of the polynomial of degree ``len(scales) - 1`` through ``(scales, values)``.

    ``sum_k gamma_k values[k]`` with the Lagrange weights
    :math:`\gamma_k = \prod_{j \ne k} s_j / (s_j - s_k)` (they add up to one).
    """
    s = [float(v) for v in scales]
    if len(s) != len(values) or len(s) < 2 or len(set(s)) != len(s):
        raise QtnnError(f"richardson needs at least two distinct scales, one value each; got scales "
                        f"{list(scales)} and {len(values)} values")
    est = np.zeros_like(np.asarray(values[0], dtype=np.float64))
    for k, v in enumerate(values):
        gamma = np.prod([s[j] / (s[j] - s[k]) for j in range(len(s)) if j != k])
        est = est + gamma * np.asarray(v, dtype=np.float64)
    return est


def zne_results(dev: Any, circ: Any, counts: list[dict[str, int]], compiled: list, scales: Any) -> list:
    """Zero-noise-extrapolated results of ``circ`` from its counts at each noise scale.

    ``counts[k]`` and ``compiled[k]`` belong to ``scales[k]`` (``scales[0] == 1``:
    the unfolded circuit).  With ``dev.mitigation == "readout+zne"`` each scale's
    probabilities are readout-corrected before the extrapolation.  The result is
    projected onto the probability simplex.  All variants computable from these
    counts go to ``dev.last_variants``.
    """
    readout = "readout" in (dev.mitigation or "")
    _check_probs_only(circ, dev.mitigation)
    per_scale = {False: [measured_probabilities(dev, circ, c, q, readout=False)
                         for c, q in zip(counts, compiled, strict=True)]}
    if readout:
        per_scale[True] = [measured_probabilities(dev, circ, c, q, readout=True, project=False)
                           for c, q in zip(counts, compiled, strict=True)]
    variants = getattr(dev, "last_variants", None)
    out: list = []
    for ro, probs in per_scale.items():
        est = [nearest_probability(richardson(scales, [probs[k][m] for k in range(len(scales))]))
               for m in range(len(circ.measurements))]
        if variants is not None:
            first = probs[0] if not ro else [nearest_probability(p) for p in probs[0]]
            variants.setdefault("readout" if ro else "raw", []).append(first)
            variants.setdefault("readout+zne" if ro else "zne", []).append(est)
        if ro == readout:
            out = est
    return out
