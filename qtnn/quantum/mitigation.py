r"""Readout-error mitigation for ``fake:`` and ``ibm:`` devices (``device(..., mitigation="readout")``).

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
device.  Zero-noise extrapolation and the Runtime's resilience options are not
offered (the Sampler that runs these circuits has none).

Cost: two calibration circuits per new set of measured qubits; the
correction is ``O(m 2**m)`` per circuit.

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
"""

from __future__ import annotations

from typing import Any

import numpy as np

from qtnn.errors import QtnnError

__all__ = ["MITIGATIONS", "check_mitigation", "correct", "nearest_probability", "calibrate",
           "mitigated_results"]

#: Valid values of the ``mitigation`` option (``None``: off).
MITIGATIONS = ("readout",)


def check_mitigation(value: Any) -> str | None:
    """``None`` or a name of :data:`MITIGATIONS`; anything else is a :class:`~qtnn.errors.QtnnError`.

    Examples
    --------
    >>> check_mitigation("readout"), check_mitigation(None)
    ('readout', None)
    """
    if value is None or value in MITIGATIONS:
        return value
    raise QtnnError(f"mitigation={value!r} is not supported; valid values: None, "
                    f"{', '.join(repr(m) for m in MITIGATIONS)} (zero-noise extrapolation and the "
                    "Runtime's resilience levels are not available for Sampler jobs)")


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


def mitigated_results(dev: Any, circ: Any, counts: dict[str, int], compiled: Any) -> list:
    """Readout-corrected results of the measurements of ``circ`` (``qml.probs`` only)."""
    from pennylane.measurements import ProbabilityMP

    bad = [type(mp).__name__ for mp in circ.measurements if not isinstance(mp, ProbabilityMP)]
    if bad:
        raise QtnnError(f"mitigation='readout' corrects probabilities (qml.probs); this circuit also "
                        f"measures {', '.join(bad)}: use qml.probs or a device without mitigation")
    qubits = _measured_qubits(compiled)
    calibrate(dev, qubits)
    m = len(qubits)
    total = sum(counts.values())
    p = np.zeros((2,) * m)
    for key, c in counts.items():
        bits = key.replace(" ", "")
        p[tuple(int(bits[-1 - i]) for i in range(m))] += c / total    # axis i = clbit i = wire i
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
        fixed = nearest_probability(correct(marg, [dev.readout_calibration[qubits[a]] for a in axes]))
        out.append(fixed.reshape(-1))
    return out
