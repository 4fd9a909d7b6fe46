"""``job_timeout`` bounds the whole try of a local Aer job: transpilation plus run, and the run is
really stopped (the worker process that ran it is killed), not waited for.

Aer keeps the GIL while it simulates, so a job run in a thread of the test process could not be
timed out at all; the job below (a noisy 5-qubit state preparation with two million shots, tens
of seconds of Aer time) must raise :class:`QtnnTimeoutError` at its 2 s limit.  The only timed
assertion is that bound itself (generously: the limit plus 3 s for process start-up and a loaded
machine; without the worker the job ran to its end).
"""

from __future__ import annotations

import time

import numpy as np
import pennylane as qml
import pytest

from qtnn import QtnnTimeoutError
from qtnn.quantum import device
from qtnn.quantum._aerworker import AerWorker, shared_worker
from qtnn.quantum._batched import TranspileDeadline, _Deadline


def _stateprep_probs(dev, n, shots):
    x = np.random.default_rng(0).normal(size=2**n)
    x /= np.linalg.norm(x)

    @qml.set_shots(shots)
    @qml.qnode(dev.pl)
    def circuit():
        qml.StatePrep(x, wires=range(n))
        return qml.probs(wires=range(n))

    return circuit


def test_a_job_that_cannot_finish_stops_at_its_timeout():
    dev = device("fake:manila", wires=5, shots=2_000_000, seed=3, job_timeout=2.0)
    circuit = _stateprep_probs(dev, 5, 2_000_000)
    start = time.monotonic()
    with pytest.raises(QtnnTimeoutError, match=r"Aer job on backend .* timed out after 2 s .*not retried"):
        circuit()
    elapsed = time.monotonic() - start
    assert elapsed < 2.0 + 3.0, f"the timeout of 2 s raised only after {elapsed:.1f} s"
    assert dev.pl.job_failures == 1 and dev.pl.jobs_submitted == 0     # one try, no retry
    assert not shared_worker().alive                                   # the job was killed


def test_jobs_after_a_timeout_run_in_a_fresh_worker_with_the_in_process_counts():
    """Same seed, same circuits: the worker's counts are those of an in-process Aer run."""
    dev = device("fake:manila", wires=2, shots=500, seed=7, job_timeout=60)
    circuit = _stateprep_probs(dev, 2, 500)
    p_worker = np.asarray(circuit())
    assert shared_worker().alive
    ref = device("fake:manila", wires=2, shots=500, seed=7, job_timeout=None)   # in-process
    p_here = np.asarray(_stateprep_probs(ref, 2, 500)())
    np.testing.assert_array_equal(p_worker, p_here)
    assert abs(p_worker.sum() - 1.0) < 1e-12


def test_transpilation_counts_against_the_timeout():
    dev = device("fake:manila", wires=5, shots=100, seed=3, job_timeout=1e-6)
    with pytest.raises(QtnnTimeoutError, match=r"transpiling 1 circuit\(s\) .* took longer than "
                                               r"job_timeout=1e-06 s"):
        _stateprep_probs(dev, 5, 100)()
    with pytest.raises(TranspileDeadline):
        _Deadline(time.monotonic() - 1.0)(pass_=None)
    _Deadline(time.monotonic() + 60.0)(pass_=None)                    # before the deadline: nothing


def test_worker_reports_errors_and_restarts_after_stop():
    from qiskit import QuantumCircuit

    worker = AerWorker()
    qc = QuantumCircuit(1, 1)
    qc.h(0)
    qc.measure(0, 0)
    try:
        with pytest.raises(RuntimeError, match="Aer job failed in the worker"):
            worker.submit([qc], 10, {"method": "no-such-method"}).result()
        job = worker.submit([qc], 10, {"seed_simulator": 1})
        assert sum(job.result().get_counts(0).values()) == 10
        job.cancel()
        assert not worker.alive
        assert sum(worker.submit([qc], 10, {}).result().get_counts(0).values()) == 10
    finally:
        worker.stop()
