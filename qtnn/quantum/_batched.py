"""A ``qiskit.remote`` device that submits a whole batch of circuits as one job.

pennylane-qiskit's ``QiskitDevice.execute`` transpiles and runs every circuit of
a batch separately (one Sampler job per circuit).  A broadcast batch of ``B``
inputs, or the ``2 * 6 * G`` shifted circuits of a parameter-shift gradient,
then cost ``B`` jobs -- on IBM hardware ``B`` queue waits.  This subclass
transpiles the batch with one :func:`qiskit.compiler.transpile` call (Qiskit
runs it in parallel) and sends all sampler circuits as the PUBs of **one**
``SamplerV2`` job (split only where the backend states a ``max_circuits``
limit).  Results are processed exactly as the parent class does.  Circuits that
the parent would send to the Estimator (``expval`` / ``var`` of Pauli words)
still go one Estimator job each.

For a local :class:`qiskit_aer.AerSimulator` with a device noise model (the
``fake:`` devices) the job goes straight to ``AerSimulator.run`` and the noise
model is restricted to the physical qubits the transpiled batch touches
(cached per qubit set).  Aer converts the whole noise model at every run --
about 3.5 s per job for the 133 qubits of FakeTorino -- and errors on qubits
that no instruction touches cannot change the counts (same seed: identical
counts, checked in ``tests/quantum/test_devices.py``), so this is exact and
turns a seconds-long job into tens of milliseconds.

With ``mitigation`` containing ``"zne"`` every transpiled circuit is also run with its
two-qubit gates folded at each of ``zne_scales`` (in the same job) and the
probabilities are extrapolated to zero noise (:mod:`qtnn.quantum.mitigation`).

The transpiled circuits of the last batch are kept in ``last_compiled``.
The device counts what it submitted: ``jobs_submitted`` and
``circuits_submitted`` (running totals), and, while a :class:`pennylane.Tracker`
is active, the tracker key ``"jobs"``.

Every job -- the Sampler jobs, the local Aer runs, the Estimator jobs, and the
runs of the ``qiskit.aer`` device of :func:`fast_aer_device` -- goes through
:mod:`qtnn.quantum._retry`: a timeout per try, retries with exponential
back-off for transient failures and malformed results, and a
:class:`~qtnn.errors.QtnnBackendError` naming the backend, the number of tries
and the last failure after the last try.  The options ``job_tries`` (default
3), ``job_backoff`` (seconds, default 1, doubled per retry) and ``job_timeout``
(seconds; default 10 minutes on local simulators, 4 hours on IBM hardware;
``None``: no timeout) of :func:`qtnn.quantum.device` set them; the device keeps
them as ``retry_policy`` and counts failed tries in ``job_failures``.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, ClassVar

import numpy as np
from pennylane.measurements import ExpectationMP, VarianceMP
from pennylane.tape import QuantumScript
from pennylane_qiskit.converter import circuit_to_qiskit
from pennylane_qiskit.qiskit_device import custom_simulator_tracking
from pennylane_qiskit.remote import RemoteDevice
from qiskit.compiler import transpile
from qiskit_ibm_runtime import SamplerV2

from qtnn.errors import QtnnTimeoutError
from qtnn.quantum._retry import (
    DEFAULT_TIMEOUT_LOCAL,
    DEFAULT_TIMEOUT_REMOTE,
    MalformedResult,
    RetryPolicy,
    call_with_retry,
    check_counts,
    run_job,
)

__all__ = ["BatchedRemoteDevice", "fast_aer_device"]


def _uses_estimator(circ: QuantumScript) -> bool:
    mp = circ.measurements[0]
    return isinstance(mp, (ExpectationMP, VarianceMP)) and getattr(mp.obs, "pauli_rep", None) is not None


@custom_simulator_tracking
class BatchedRemoteDevice(RemoteDevice):
    """``qiskit.remote`` with one transpile call and one Sampler job per batch (see module doc)."""

    short_name = "qiskit.remote"

    def __init__(self, wires: Any, backend: Any, shots: int | None = None, **kwargs: Any) -> None:
        timeout = kwargs.pop("job_timeout", _UNSET)
        policy = RetryPolicy.pop_from(kwargs, default_timeout=None)
        from qtnn.quantum.mitigation import check_mitigation, check_zne_scales

        #: ``None``, ``"readout"``, ``"zne"`` or ``"readout+zne"`` (:mod:`qtnn.quantum.mitigation`).
        self.mitigation = check_mitigation(kwargs.pop("mitigation", None))
        #: Noise scales of zero-noise extrapolation (used with ``"zne"`` in ``mitigation``).
        self.zne_scales = check_zne_scales(kwargs.pop("zne_scales", None))
        #: With mitigation: the probabilities of the last batch (one entry per sampled circuit, a list
        #: per measurement) under every subset of the applied mitigations, from the same shots:
        #: ``"raw"``, ``"readout"``, ``"zne"``, ``"readout+zne"`` (:mod:`qtnn.quantum.mitigation`).
        self.last_variants: dict[str, list] = {}
        self.calibration_shots = kwargs.pop("calibration_shots", None)
        #: Readout calibration per physical qubit: ``{qubit: 2x2 matrix P(measured | prepared)}``.
        self.readout_calibration: dict[int, np.ndarray] = {}
        # PennyLane's current API: the device holds no shots (the QNodes set them); ``shots``
        # becomes the default of the circuits that come without any.
        super().__init__(wires, backend=backend, shots=None, **kwargs)
        if shots is not None:
            self._kwargs["default_shots"] = int(shots)
        if timeout is _UNSET:
            timeout = DEFAULT_TIMEOUT_LOCAL if self._is_local_aer() else DEFAULT_TIMEOUT_REMOTE
        #: Tries, back-off and timeout of every job (options ``job_tries``, ``job_backoff``,
        #: ``job_timeout``; see :mod:`qtnn.quantum._retry`).
        self.retry_policy = RetryPolicy(policy.tries, policy.backoff, timeout,
                                        retry_timeouts=policy.retry_timeouts)
        self.jobs_submitted = 0
        self.circuits_submitted = 0
        #: Failed tries (each retried, or reported after the last one).
        self.job_failures = 0
        #: The transpiled sampler circuits of the last ``execute`` (for error budgets and reports).
        self.last_compiled: list = []
        self._spent = 0.0

    @property
    def backend_label(self) -> str:
        """The backend's name, for messages."""
        name = getattr(self.backend, "name", None)
        return str(name() if callable(name) else name or type(self.backend).__name__)

    def _failed(self, exc: BaseException) -> None:
        self.job_failures += 1

    def _run_job(self, submit: Any, validate: Any, what: str) -> Any:
        spent, self._spent = self._spent, 0.0
        return run_job(submit, self.retry_policy, backend=self.backend_label, what=what,
                       validate=validate, on_failure=self._failed, spent=spent)

    def _transpile(self, qcs: list, started: float) -> list:
        """One :func:`~qiskit.compiler.transpile` call; stopped between passes at the job timeout."""
        timeout = self.retry_policy.timeout
        extra = {} if timeout is None else {"callback": _Deadline(started + timeout)}
        try:
            compiled = transpile(qcs, backend=self.compile_backend, **self._transpile_args, **extra)
        except TranspileDeadline:
            raise QtnnTimeoutError(
                f"transpiling {len(qcs)} circuit(s) for backend {self.backend_label!r} took longer than "
                f"job_timeout={timeout:g} s (stopped after {time.monotonic() - started:.3g} s; not "
                "retried: the circuits are too large for the limit; raise job_timeout, use fewer "
                "qubits or a bounded-depth encoding)") from None
        return compiled if isinstance(compiled, list) else [compiled]

    def _count(self, jobs: int, circuits: int) -> None:
        self.jobs_submitted += jobs
        self.circuits_submitted += circuits
        if self.tracker.active:
            self.tracker.update(jobs=jobs)
            self.tracker.record()

    def execute(self, circuits: Any, execution_config: Any = None) -> list:
        if isinstance(circuits, QuantumScript):
            circuits = [circuits]
        circuits = list(circuits)
        for circ in circuits:
            if circ.shots and len(circ.shots.shot_vector) > 1:
                raise ValueError(f"Setting shot vector {circ.shots.shot_vector} is not supported for "
                                 f"{self.name}. Please use a single integer instead when specifying "
                                 "the number of shots.")
        results: list = [None] * len(circuits)
        sampled = [i for i, c in enumerate(circuits) if not _uses_estimator(c)]
        if sampled:
            started = time.monotonic()
            qcs = [circuit_to_qiskit(circuits[i], self.num_wires, diagonalize=True, measure=True)
                   for i in sampled]
            compiled = self._transpile(qcs, started)
            # the first job's try also counts the preparation (the timeout bounds the whole try)
            self._spent = time.monotonic() - started
            for i, qc in enumerate(compiled):
                qc.name = f"circ{i}"
            self.last_compiled = compiled
            shots = [int(circuits[i].shots.total_shots or self._kwargs.get("default_shots", 1024))
                     for i in sampled]
            self.last_variants = {}
            if self.mitigation is not None and "zne" in self.mitigation:
                from qtnn.quantum.mitigation import fold_two_qubit_gates, zne_results

                # every scale of every circuit in one job: scale-major order
                folded = [fold_two_qubit_gates(qc, s) for s in self.zne_scales[1:] for qc in compiled]
                all_counts = self._run_counts(compiled + folded, shots * len(self.zne_scales))
                n = len(compiled)
                every = compiled + folded
                for pos in range(n):
                    idx = [k * n + pos for k in range(len(self.zne_scales))]
                    res = zne_results(self, circuits[sampled[pos]], [all_counts[i] for i in idx],
                                      [every[i] for i in idx], self.zne_scales)
                    results[sampled[pos]] = (res[0],) if len(res) == 1 else tuple(res)
                return self._finish(circuits, results)
            all_counts = self._run_counts(compiled, shots)
            for pos, counts in enumerate(all_counts):
                results[sampled[pos]] = self._process(circuits[sampled[pos]], counts, compiled[pos])
        return self._finish(circuits, results)

    def _run_counts(self, compiled: list, shots: list[int]) -> list[dict[str, int]]:
        """Counts of transpiled circuits: local Aer jobs, or Sampler jobs (split at ``max_circuits``)."""
        if self._is_local_aer():
            return self._run_local_aer(compiled, shots)
        out: list = [None] * len(compiled)
        limit = getattr(self.backend, "max_circuits", None) or len(compiled)
        session = self._session
        sampler = SamplerV2(mode=session) if session else SamplerV2(mode=self.backend)
        sampler.options.update(**self._kwargs)
        for start in range(0, len(compiled), limit):
            chunk = list(range(start, min(start + limit, len(compiled))))
            pubs = [(compiled[pos], None, shots[pos]) for pos in chunk]

            def read(job_result: Any, chunk: list = chunk, pubs: list = pubs) -> list:
                return _sampler_counts(job_result, [compiled[p] for p in chunk],
                                       [pub[2] for pub in pubs])

            counts = self._run_job(partial(sampler.run, pubs), read, "sampler job")
            self._count(1, len(pubs))
            for pos, pos_counts in zip(chunk, counts, strict=True):
                out[pos] = pos_counts
        return out

    def _process(self, circ: QuantumScript, counts: dict[str, int], compiled: Any) -> tuple:
        """The results of one circuit's measurements from its counts (readout-mitigated if asked)."""
        if self.mitigation is not None:
            from qtnn.quantum.mitigation import mitigated_results

            res = mitigated_results(self, circ, counts, compiled)
        else:
            self._current_job = _Counts(counts)
            self._samples = self.generate_samples(0)
            res = [mp.process_samples(self._samples, wire_order=self.wires) for mp in circ.measurements]
        return (res[0],) if len(res) == 1 else tuple(res)

    def _finish(self, circuits: list, results: list) -> list:
        for i, circ in enumerate(circuits):
            if results[i] is None:
                results[i] = call_with_retry(partial(self._execute_estimator, circ, self._session),
                                             self.retry_policy, backend=self.backend_label,
                                             what="estimator job", on_failure=self._failed)
                self._count(1, 1)
        return results

    # ------------------------------------------------------------ local Aer
    def _is_local_aer(self) -> bool:
        if self._session is not None or self._kwargs.get("resilience_level"):
            return False
        try:
            from qiskit_aer import AerSimulator
        except ImportError:  # pragma: no cover - qiskit-aer is a dependency of the quantum extra
            return False
        return isinstance(self.backend, AerSimulator)

    def _aer_submit(self, batch: list, shots: int, noise_opts: dict) -> Any:
        """``submit()`` of a local Aer job: in the worker process when a timeout must hold.

        Aer keeps the GIL while it runs, so a job in this process can neither be
        waited for with a timeout nor cancelled; with a ``job_timeout`` the job
        runs in :func:`~qtnn.quantum._aerworker.shared_worker` (killed at the
        limit).  A ``run`` patched onto the backend instance (tests,
        instrumentation) is called here, in this process.
        """
        if self.retry_policy.timeout is None or "run" in self.backend.__dict__:
            return partial(self.backend.run, batch, shots=shots, **noise_opts)
        from qtnn.quantum._aerworker import shared_worker

        options = {k: v for k, v in self.backend.options.__dict__.items()
                   if v is not None and k not in ("noise_model", "shots")}
        run_opts = dict(noise_opts)
        if "noise_model" not in run_opts and getattr(self.backend.options, "noise_model", None) is not None:
            run_opts["noise_model"] = self.backend.options.noise_model
        return partial(shared_worker().submit, batch, shots, options, run_opts)

    def _restricted_noise(self, used: frozenset) -> dict:
        """Run options with the backend's noise model cut down to the qubits in ``used`` (cached).

        The backend itself is never modified (the restricted model is a run option).
        """
        cache = self.__dict__.setdefault("_restricted_cache", {})
        if used in cache:
            return cache[used]
        nm = getattr(self.backend.options, "noise_model", None)
        opts: dict = {}
        if nm is not None:
            try:
                opts = {"noise_model": _restrict_noise(nm, used)}
            except Exception:  # pragma: no cover - private Aer layout changed: run the full model
                opts = {}
        cache[used] = opts
        return opts

    def _run_local_aer(self, compiled: list, shots_list: list[int]) -> list[dict[str, int]]:
        used: set = set()
        for qc in compiled:
            for inst in qc.data:
                used.update(qc.find_bit(q).index for q in inst.qubits)
        noise_opts = self._restricted_noise(frozenset(used))
        groups: dict = {}
        for pos, shots in enumerate(shots_list):
            groups.setdefault(int(shots), []).append(pos)
        out: list = [None] * len(compiled)
        for shots, positions in groups.items():
            batch = [compiled[p] for p in positions]

            def read(result: Any, batch: list = batch, shots: int = shots) -> list:
                return _aer_counts(result, batch, shots)

            counts = self._run_job(self._aer_submit(batch, shots, noise_opts), read, "Aer job")
            self._count(1, len(positions))
            for idx, pos in enumerate(positions):
                out[pos] = counts[idx]
        return out


_UNSET: Any = object()


class TranspileDeadline(Exception):
    """Raised between transpiler passes once a job's timeout has passed."""


class _Deadline:
    """Transpiler callback: :class:`TranspileDeadline` after ``deadline`` (``time.monotonic``)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, **kwargs: Any) -> None:
        if time.monotonic() > self.deadline:
            raise TranspileDeadline(f"deadline passed after pass {type(kwargs.get('pass_')).__name__}")


def _sampler_counts(job_result: Any, compiled: list, shots: list) -> list[dict[str, int]]:
    """Counts of every PUB of a Sampler job, checked (:class:`MalformedResult` otherwise)."""
    try:
        pubs = list(job_result)
    except TypeError:
        raise MalformedResult(f"the sampler result is not a list of PUB results: "
                              f"{type(job_result).__name__}") from None
    if len(pubs) != len(compiled):
        raise MalformedResult(f"the sampler result has {len(pubs)} PUB results for {len(compiled)} "
                              "circuits")
    out = []
    for k, (pub, qc, n_shots) in enumerate(zip(pubs, compiled, shots, strict=True)):
        name = qc.cregs[0].name
        bits = getattr(getattr(pub, "data", None), name, None)
        if bits is None or not callable(getattr(bits, "get_counts", None)):
            raise MalformedResult(f"PUB result {k} holds no bit array {name!r}")
        out.append(check_counts(bits.get_counts(), shots=n_shots, num_bits=qc.num_clbits,
                                where=f"PUB result {k}"))
    return out


def _aer_counts(result: Any, compiled: list, shots: int) -> list[dict[str, int]]:
    """Counts of every circuit of an Aer ``Result``, checked (:class:`MalformedResult` otherwise)."""
    if not getattr(result, "success", False):
        status = getattr(result, "status", None)
        raise MalformedResult(f"the Aer result reports a failure (status {status!r})")
    out = []
    for k, qc in enumerate(compiled):
        try:
            counts = result.get_counts(k)
        except Exception as exc:  # QiskitError: no counts for this experiment
            raise MalformedResult(f"circuit {k} has no counts: {exc}") from None
        out.append(check_counts(counts, shots=shots, num_bits=qc.num_clbits, where=f"circuit {k}"))
    return out


class _DoneJob:
    """A finished job: ``result()`` returns the result that the retry loop already fetched."""

    def __init__(self, result: Any, job: Any) -> None:
        self._result = result
        self._job = job

    def result(self, timeout: float | None = None) -> Any:
        return self._result

    def __getattr__(self, name: str) -> Any:  # job_id(), status() ... of the real job
        return getattr(self._job, name)


def _check_aer_result(result: Any, n_circuits: int) -> Any:
    """An Aer ``Result`` that reports success for ``n_circuits`` experiments, else MalformedResult."""
    if not getattr(result, "success", False):
        status = getattr(result, "status", None)
        raise MalformedResult(f"the Aer result reports a failure (status {status!r})")
    n = len(getattr(result, "results", []) or [])
    if n != n_circuits:
        raise MalformedResult(f"the Aer result holds {n} experiments for {n_circuits} circuits")
    return result


class _Counts:
    """Adapter: ``get_counts()`` of one circuit, as pennylane-qiskit's sample processing reads it."""

    def __init__(self, counts: dict) -> None:
        self._counts = dict(counts)

    def get_counts(self) -> dict:
        return self._counts


def _restrict_noise(nm: Any, used: frozenset) -> Any:
    """A copy of the noise model ``nm`` that keeps only the errors on qubits in ``used``."""
    from qiskit_aer.noise import NoiseModel

    small = NoiseModel(basis_gates=nm.basis_gates)
    for inst, err in nm._default_quantum_errors.items():
        small.add_all_qubit_quantum_error(err, inst, warnings=False)
    for inst, table in nm._local_quantum_errors.items():
        for qubits, err in table.items():
            if set(qubits) <= used:
                small.add_quantum_error(err, inst, qubits, warnings=False)
    if nm._default_readout_error is not None:
        small.add_all_qubit_readout_error(nm._default_readout_error, warnings=False)
    for qubits, err in nm._local_readout_errors.items():
        if set(qubits) <= used:
            small.add_readout_error(err, qubits, warnings=False)
    # Custom passes (Aer's thermal relaxation on Delay instructions) act on the qubits of
    # each instruction; they are kept unchanged.
    small._custom_noise_passes = list(nm._custom_noise_passes)
    return small


# --------------------------------------------------------------------- qiskit.aer
def fast_aer_device(wires: int, shots: int | None, **kwargs: Any) -> Any:
    """pennylane-qiskit's ``qiskit.aer`` device with cheaper circuit building and transpilation.

    The plain device builds every gate as its own circuit (through a DAG) and
    transpiles every circuit of a batch against ``AerSimulator.target``, which
    Aer rebuilds at each access (about 0.1 s per circuit).  This subclass
    appends the gates to one circuit and transpiles against a target built once;
    the circuits, the single ``backend.run`` job per batch and the results are
    those of the parent class, except that each device has its own capabilities
    dict (the parent's is shared by all Aer devices, so creating a sampling device
    turned off the state readout of an exact one) and that ``GlobalPhase`` becomes explicit phase
    gates (the parent's circuit-level phase is erased by the reset inside the
    ``Initialize`` of a ``StatePrep``).  Every run goes through :mod:`qtnn.quantum._retry`
    (options ``job_tries``, ``job_backoff``, ``job_timeout``; default timeout
    :data:`~qtnn.quantum._retry.DEFAULT_TIMEOUT_LOCAL`).  Returns the device wrapped as
    PennyLane does for ``qml.device("qiskit.aer", ...)``.
    """
    import contextlib

    import pennylane as qml
    from pennylane_qiskit.aer import AerDevice
    from pennylane_qiskit.qiskit_device_legacy import _negate
    from qiskit import QuantumCircuit

    policy = RetryPolicy.pop_from(kwargs, default_timeout=DEFAULT_TIMEOUT_LOCAL)

    class FastAerDevice(AerDevice):
        """``qiskit.aer`` with one circuit per tape and a cached transpiler target."""

        short_name = "qiskit.aer"
        # pennylane-qiskit writes returns_state into the class-level capabilities dict it shares
        # with every Aer device, so a sampling device created later turns off the state readout
        # of an exact one.  This class is created per device and gets its own dict.
        _capabilities: ClassVar[dict[str, Any]] = dict(AerDevice._capabilities)

        def apply_operations(self, operations: Any) -> list:
            qc = QuantumCircuit(self._reg, self._creg, name="")
            for operation in operations:
                device_wires = self.map_wires(operation.wires).labels
                par = [p.tolist() if isinstance(p, np.ndarray) else p for p in operation.parameters]
                name = operation.name
                if name == "GlobalPhase" and len(self._reg):
                    # exp(-i phi) I as X P(-phi) X P(-phi) on qubit 0: a circuit-level global phase
                    # would be applied by Aer at the start and erased by the reset of an Initialize
                    # (StatePrep), so it is made an explicit gate.
                    phi = -float(np.real(par[0]))
                    q0 = self._reg[0]
                    qc.p(phi, q0)
                    qc.x(q0)
                    qc.p(phi, q0)
                    qc.x(q0)
                    continue
                if name == "GlobalPhase":  # pragma: no cover - no qubits at all
                    par = _negate(par)
                    name = "Adjoint(GlobalPhase)"
                    device_wires = []
                mapped = self._operation_map[name]
                self.qubit_state_vector_check(name)
                qregs = [self._reg[i] for i in device_wires]
                if name in ("QubitUnitary", "StatePrep"):
                    qregs = list(reversed(qregs))   # PennyLane's wire order, as the parent does
                if name == "Barrier":
                    par = [len(self._reg)]
                qc.append(mapped(*par), qargs=qregs)
            return [qc]

        #: Tries, back-off and timeout of every Aer run (see :mod:`qtnn.quantum._retry`).
        retry_policy = policy
        #: Failed tries (each retried, or reported after the last one).
        job_failures = 0

        @contextlib.contextmanager
        def _retrying_runs(self) -> Any:
            """While active, ``self.backend.run`` submits with retries and a timeout."""
            backend = self._backend
            own = backend.__dict__.get("run")  # a run already patched onto the instance (tests)
            submit_run = own if own is not None else partial(type(backend).run, backend)

            def run(circuits: Any, *args: Any, **kw: Any) -> _DoneJob:
                n = len(circuits) if isinstance(circuits, (list, tuple)) else 1
                box: dict[str, Any] = {}

                def submit() -> Any:
                    box["job"] = submit_run(circuits, *args, **kw)
                    return box["job"]

                def failed(exc: BaseException) -> None:
                    self.job_failures += 1

                result = run_job(submit, self.retry_policy, backend=self.backend_name, what="Aer job",
                                 validate=lambda r: _check_aer_result(r, n), on_failure=failed)
                return _DoneJob(result, box.get("job"))

            backend.run = run
            try:
                yield
            finally:
                if own is not None:
                    backend.run = own
                else:
                    del backend.run

        def batch_execute(self, circuits: Any, timeout: Any = None) -> Any:
            with self._retrying_runs():
                return super().batch_execute(circuits, timeout)

        def execute(self, circuit: Any, **kwargs: Any) -> Any:
            with self._retrying_runs():
                return super().execute(circuit, **kwargs)

        def compile(self) -> Any:
            if self.compile_backend is not None and self.compile_backend is not self.backend:
                return super().compile()
            target = self.__dict__.get("_qtnn_target")
            if target is None:
                target = self.__dict__["_qtnn_target"] = self.backend.target
            return transpile(self._circuit, target=target, **self.transpile_args,
                             routing_method="none")

    # PennyLane's current API: no shots on the device (the QNodes set them; the legacy
    # facade sets each tape's shots on the device while it runs)
    return qml.devices.LegacyDeviceFacade(FastAerDevice(wires=wires, shots=None, **kwargs))
