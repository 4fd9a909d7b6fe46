"""Backends that fail: scripted fake backends on every path a Qiskit job takes.

Paths: the local Aer run of a ``fake:`` device (Aer with an IBM device model), the Sampler job
of a remote backend (``ibm:``; here a device model behind a scripted ``SamplerV2``), the
Estimator job, and the ``qiskit.aer`` device.  Scripts: the first N calls fail and then the
backend recovers; every call fails; a call hangs (timeout, the job is cancelled, the next try
runs); results come back malformed.  The error after the last try names the backend, the
number of tries and the last failure.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pennylane as qml
import pytest
from qiskit.providers import JobError

import qtnn.quantum._batched as batched
from qtnn import QtnnBackendError, QtnnError, QtnnTimeoutError
from qtnn.quantum import device
from qtnn.quantum._retry import MalformedResult, RetryPolicy, call_with_retry, check_counts, run_job

FAST = {"job_backoff": 0.0, "job_timeout": 5.0}


# ----------------------------------------------------------------- scripted backends
class HangingJob:
    """A job whose result never comes (until the test releases it); counts cancellations."""

    def __init__(self, script):
        self.script = script

    def result(self, timeout=None):
        self.script.release.wait(30)
        raise JobError("released after the test")

    def cancel(self):
        self.script.cancelled += 1


class BadResult:
    """A finished Aer result whose counts are malformed in a scripted way."""

    def __init__(self, real, how):
        self.real, self.how = real, how
        self.success = how != "failed"
        self.status = "ERROR" if how == "failed" else "COMPLETED"
        self.results = real.results

    def get_counts(self, k):
        counts = dict(self.real.get_counts(k))
        if self.how == "short":        # counts that do not add up to the shots
            counts.pop(next(iter(counts)))
            counts.setdefault("11", 0)
        elif self.how == "width":      # bit strings of the wrong width
            counts = {k2 + "0": v for k2, v in counts.items()}
        elif self.how == "negative":
            key = next(iter(counts))
            counts[key] = -counts[key]
        elif self.how == "junk":
            counts = {"xy": 5}
        return counts


class BadJob:
    def __init__(self, job, how):
        self.job, self.how = job, how

    def result(self, timeout=None):
        return BadResult(self.job.result(), self.how)


class Script:
    """Successive calls of ``backend.run`` follow ``plan``: 'fail', 'hang', 'malformed:<how>', 'ok'."""

    def __init__(self, real_run, plan, default="ok"):
        self.real_run, self.plan, self.default = real_run, list(plan), default
        self.calls = 0
        self.cancelled = 0
        self.release = threading.Event()

    def step(self):
        step = self.plan[self.calls] if self.calls < len(self.plan) else self.default
        self.calls += 1
        return step

    def __call__(self, circuits, *args, **kwargs):
        step = self.step()
        if step == "fail":
            raise JobError(f"scripted transient failure on call {self.calls}")
        if step == "hang":
            return HangingJob(self)
        job = self.real_run(circuits, *args, **kwargs)
        if step.startswith("malformed:"):
            return BadJob(job, step.split(":")[1])
        return job


@pytest.fixture(scope="module")
def fake_dev():
    """One ``fake:manila`` device (Aer with the device's noise) for the module; tests script its backend."""
    return device("fake:manila", wires=2, shots=400, seed=11, **FAST)


@pytest.fixture
def scripted(fake_dev, monkeypatch):
    """Install a scripted ``backend.run`` on the fake device; reset the retry settings afterwards."""
    scripts = []

    def install(plan, default="ok", **policy):
        script = Script(fake_dev.backend.run, plan, default)
        monkeypatch.setattr(fake_dev.backend, "run", script)
        fake_dev.pl.retry_policy = RetryPolicy(**{"tries": 3, "backoff": 0.0, "timeout": 5.0, **policy})
        scripts.append(script)
        return script

    yield install
    for s in scripts:
        s.release.set()
    fake_dev.pl.retry_policy = RetryPolicy(3, 0.0, 5.0)


def _bell_probs(dev):
    @qml.qnode(dev.pl, shots=dev.shots)
    def circuit():
        qml.Hadamard(0)
        qml.CNOT([0, 1])
        return qml.probs(wires=[0, 1])

    return np.asarray(circuit())


# ------------------------------------------------------------- local Aer (fake: devices)
def test_transient_failures_then_success_give_the_clean_result(fake_dev, scripted):
    scripted([])
    clean = _bell_probs(fake_dev)
    failures, jobs = fake_dev.pl.job_failures, fake_dev.pl.jobs_submitted
    script = scripted(["fail", "fail"])
    got = _bell_probs(fake_dev)
    assert script.calls == 3                                  # two failures, then the job ran
    assert fake_dev.pl.job_failures - failures == 2
    assert fake_dev.pl.jobs_submitted - jobs == 1            # counted once: the job that ran
    np.testing.assert_array_equal(got, clean)                # same seed: the very same counts


def test_permanent_failure_names_backend_tries_and_last_failure(fake_dev, scripted):
    script = scripted([], default="fail", tries=4)
    with pytest.raises(QtnnBackendError) as info:
        _bell_probs(fake_dev)
    msg = str(info.value)
    assert "aer_simulator_from(fake_manila)" in msg and "after 4 tries" in msg
    assert "JobError: 'scripted transient failure on call 4'" in msg
    assert isinstance(info.value.__cause__, JobError) and script.calls == 4
    assert isinstance(info.value, QtnnError) and isinstance(info.value, RuntimeError)


def test_hang_times_out_cancels_the_job_and_retries(fake_dev, scripted):
    scripted([])
    clean = _bell_probs(fake_dev)
    script = scripted(["hang"], timeout=0.5, retry_timeouts=True)
    t0 = time.perf_counter()
    got = _bell_probs(fake_dev)
    assert 0.5 <= time.perf_counter() - t0 < 5.0
    assert script.calls == 2 and script.cancelled == 1
    np.testing.assert_array_equal(got, clean)


def test_every_try_hangs_is_a_timeout_error(fake_dev, scripted):
    script = scripted([], default="hang", tries=2, timeout=0.3, retry_timeouts=True)
    t0 = time.perf_counter()
    with pytest.raises(QtnnTimeoutError, match=r"failed after 2 tries; last failure: TimeoutError: no result "
                                               r"within 0.3 s") as info:
        _bell_probs(fake_dev)
    assert time.perf_counter() - t0 < 5.0 and script.cancelled == 2
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, QtnnBackendError)


@pytest.mark.parametrize("how", ["short", "width", "negative", "junk", "failed"])
def test_malformed_result_is_retried(fake_dev, scripted, how):
    scripted([])
    clean = _bell_probs(fake_dev)
    script = scripted([f"malformed:{how}"])
    np.testing.assert_array_equal(_bell_probs(fake_dev), clean)
    assert script.calls == 2


def test_malformed_every_time_is_a_clear_error(fake_dev, scripted):
    scripted([], default="malformed:short", tries=2)
    with pytest.raises(QtnnBackendError, match=r"Aer job on backend 'aer_simulator_from\(fake_manila\)' failed "
                                               r"after 2 tries; last failure: MalformedResult: circuit 0: counts "
                                               r"add up to \d+, not to the 400 shots"):
        _bell_probs(fake_dev)


def test_errors_reach_a_torch_layer(fake_dev, scripted):
    import torch

    from qtnn.nn import QuantumStaircase

    scripted([], default="fail", tries=2)
    layer = QuantumStaircase(2, 1, readout="probs", backend="pennylane", qdevice=fake_dev)
    with pytest.raises(QtnnBackendError, match="after 2 tries"):
        layer(torch.rand(3, 4, dtype=torch.float64))


def test_estimator_jobs_are_retried(fake_dev, monkeypatch):
    # (no scripted backend.run here: Qiskit Runtime's local mode deep-copies the backend)
    monkeypatch.setattr(fake_dev.pl, "retry_policy", RetryPolicy(3, 0.0, 30.0))
    calls = []
    real = fake_dev.pl._execute_estimator

    def flaky(circ, session):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("estimator service dropped the connection")
        return real(circ, session)

    monkeypatch.setattr(fake_dev.pl, "_execute_estimator", flaky)

    @qml.qnode(fake_dev.pl, shots=fake_dev.shots)
    def circuit():
        qml.PauliX(0)
        return qml.expval(qml.PauliZ(0))

    assert float(circuit()) < -0.5 and len(calls) == 2


# -------------------------------------------------------- remote Sampler jobs (ibm:)
class FakeBits:
    def __init__(self, counts):
        self.counts = counts

    def get_counts(self):
        return dict(self.counts)


class ScriptedSampler:
    """Stands in for ``qiskit_ibm_runtime.SamplerV2``: every PUB measures all zeros, unless scripted."""

    script: Script

    def __init__(self, mode=None):
        self.options = SimpleNamespace(update=lambda **kw: None)

    def run(self, pubs):
        step = self.script.step()
        if step == "fail":
            raise ConnectionError(f"HTTP 503 from the runtime service (call {self.script.calls})")
        if step == "hang":
            return HangingJob(self.script)
        results = []
        for qc, _, shots in pubs:
            counts = {"0" * qc.num_clbits: shots}
            if step == "malformed:short":
                counts = {"0" * qc.num_clbits: shots - 1}
            results.append(SimpleNamespace(data=SimpleNamespace(**{qc.cregs[0].name: FakeBits(counts)})))
        if step == "malformed:missing":
            results = results[:-1]
        return SimpleNamespace(result=lambda: results, cancel=lambda: None)


@pytest.fixture
def remote(monkeypatch):
    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    def make(plan, default="ok", **policy):
        script = Script(None, plan, default)
        sampler = type("Sampler", (ScriptedSampler,), {"script": script})
        monkeypatch.setattr(batched, "SamplerV2", sampler)
        dev = batched.BatchedRemoteDevice(wires=2, backend=FakeManilaV2(), shots=100,
                                          **{"job_backoff": 0.0, **policy})
        return dev, script

    return make


def _zero_probs(dev, batch=3):
    @qml.qnode(dev, shots=100)
    def circuit(x):
        qml.RX(x, 0)
        return qml.probs(wires=[0, 1])

    return np.asarray(circuit(np.zeros(batch)))


def test_remote_default_timeout_is_long_and_local_short(remote, fake_dev):
    from qtnn.quantum._retry import DEFAULT_TIMEOUT_LOCAL, DEFAULT_TIMEOUT_REMOTE

    dev, _ = remote([])
    assert dev.retry_policy == RetryPolicy(3, 0.0, DEFAULT_TIMEOUT_REMOTE)
    assert device("fake:manila", wires=2, shots=10).pl.retry_policy.timeout == DEFAULT_TIMEOUT_LOCAL


def test_remote_transient_then_success(remote):
    dev, script = remote(["fail", "fail"])
    np.testing.assert_array_equal(_zero_probs(dev), np.tile([1.0, 0.0, 0.0, 0.0], (3, 1)))
    assert script.calls == 3 and dev.job_failures == 2 and dev.jobs_submitted == 1


def test_remote_permanent_failure(remote):
    dev, script = remote([], default="fail", job_tries=3)
    with pytest.raises(QtnnBackendError, match=r"sampler job on backend 'fake_manila' failed after 3 tries; "
                                               r"last failure: ConnectionError: HTTP 503 from the runtime "
                                               r"service \(call 3\)"):
        _zero_probs(dev)
    assert script.calls == 3


def test_remote_hang_then_success(remote):
    dev, script = remote(["hang"], job_timeout=0.4, job_retry_timeouts=True)
    try:
        np.testing.assert_array_equal(_zero_probs(dev), np.tile([1.0, 0.0, 0.0, 0.0], (3, 1)))
        assert script.calls == 2 and script.cancelled == 1
    finally:
        script.release.set()


@pytest.mark.parametrize("how", ["short", "missing"])
def test_remote_malformed_results(remote, how):
    dev, script = remote([f"malformed:{how}"])
    np.testing.assert_array_equal(_zero_probs(dev), np.tile([1.0, 0.0, 0.0, 0.0], (3, 1)))
    dev, script = remote([], default=f"malformed:{how}", job_tries=2)
    with pytest.raises(QtnnBackendError, match="MalformedResult: (PUB result 0: counts add up to 99, not to the "
                                               "100 shots|the sampler result has 2 PUB results for 3 circuits)"):
        _zero_probs(dev)


# ----------------------------------------------------------------- qiskit.aer device
def test_qiskit_aer_device_retries(monkeypatch):
    from qiskit_aer import AerSimulator

    dev = device("qiskit.aer", wires=2, shots=300, seed=5, job_backoff=0.0, job_timeout=5.0)
    clean = _bell_probs(dev)
    script = Script(AerSimulator.run.__get__, ["fail", "malformed:failed"])
    real = AerSimulator.run

    def scripted_run(self, circuits, *args, **kwargs):
        script.real_run = lambda *a, **k: real(self, *a, **k)
        return script(circuits, *args, **kwargs)

    monkeypatch.setattr(AerSimulator, "run", scripted_run)
    np.testing.assert_array_equal(_bell_probs(dev), clean)
    assert script.calls == 3 and dev.pl.target_device.job_failures == 2

    script.plan, script.default, script.calls = [], "fail", 0
    with pytest.raises(QtnnBackendError, match=r"Aer job on backend 'aer_simulator' failed after 3 tries"):
        _bell_probs(dev)


# ------------------------------------------------------------------- the policy itself
def test_backoff_doubles_and_is_capped():
    waits = []

    def always_fail():
        raise OSError("network unreachable")

    with pytest.raises(QtnnBackendError, match="after 6 tries; last failure: OSError: network unreachable"):
        run_job(always_fail, RetryPolicy(tries=6, backoff=0.5, max_backoff=3.0), backend="b", sleep=waits.append)
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_errors_no_retry_can_fix_are_raised_at_once():
    calls = []

    def bad():
        calls.append(1)
        raise TypeError("circuits must be a list")

    with pytest.raises(TypeError, match="circuits must be a list"):
        call_with_retry(bad, RetryPolicy(tries=5, backoff=0.0), backend="b")
    assert calls == [1]


def test_device_options_configure_the_policy():
    dev = device("fake:manila", wires=2, shots=10, job_tries=5, job_backoff=0.25, job_timeout=12)
    assert dev.pl.retry_policy == RetryPolicy(tries=5, backoff=0.25, timeout=12.0)
    assert device("qiskit.aer", wires=2, job_timeout=None).pl.target_device.retry_policy.timeout is None
    with pytest.raises(QtnnError, match="job_timeout must be a real number > 0, got -1.0"):
        device("qiskit.aer", wires=2, job_timeout=-1)


def test_check_counts():
    assert check_counts({"0 1": 2}, shots=2, num_bits=2, where="c") == {"0 1": 2}
    for bad in ({}, {"012": 1}, {"01": 1.5}, {1: 1}, [("01", 1)]):
        with pytest.raises(MalformedResult):
            check_counts(bad, shots=None, num_bits=None if bad != {"012": 1} else 3, where="c")


def test_timeout_is_not_retried_by_default(fake_dev, scripted):
    script = scripted([], default="hang", tries=3, timeout=0.3)
    t0 = time.perf_counter()
    with pytest.raises(QtnnTimeoutError, match=r"timed out after 0.3 s \(try 1 of 3; not retried"):
        _bell_probs(fake_dev)
    assert time.perf_counter() - t0 < 0.3 * 1.2 + 1.0 and script.calls == 1 and script.cancelled == 1
