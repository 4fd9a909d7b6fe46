"""One factory for every place a staircase can run.

``device(name, wires, shots=None, seed=None)`` returns a :class:`QDevice`: the
PennyLane device plus what qtnn needs to know about it (exact or sampled,
whether the state can be read, the Qiskit backend behind it).

Names
-----
``"default.qubit"``
    PennyLane's exact simulator (backprop, parameter broadcasting).
``"lightning.qubit"``
    PennyLane Lightning (adjoint differentiation of expectation values).
``"qiskit.aer"``
    Qiskit Aer, ideal: the statevector method when ``shots`` is None (exact),
    sampling otherwise.
``"fake:<name>"``
    Aer with the noise model, basis gates and coupling map of an IBM device
    model from ``qiskit_ibm_runtime.fake_provider`` (``fake:torino``,
    ``fake:fez``, ``fake:sherbrooke``, ...).  Needs ``shots``.
``"ibm:<backend>"``
    A real IBM backend through ``qiskit-ibm-runtime`` with saved credentials.
``"lightning.gpu"``
    PennyLane Lightning GPU, when installed (``pennylane-lightning-gpu``, an
    NVIDIA GPU with CUDA); otherwise a :class:`~qtnn.errors.QtnnError` says so.

GPU builds
----------
``device("qiskit.aer", ..., device="GPU")`` (and ``fake:<model>`` likewise)
runs Aer's GPU method when this Aer offers it (``qiskit-aer-gpu``);
:func:`gpu_backends` says what is available here.  Jobs of ``fake:`` /
``ibm:`` devices can run inside a Qiskit Runtime ``Batch`` (:func:`runtime_batch`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from qtnn.errors import QtnnError
from qtnn.quantum.ibm import fake_backend, fake_backend_names, ibm_backend
from qtnn.validate import check_alloc, check_int, pow2

__all__ = ["QDevice", "device", "device_names", "is_device_name", "fake_backend_names", "gpu_backends",
           "remote_option_names", "runtime_batch"]

_PLAIN = ("default.qubit", "lightning.qubit", "lightning.gpu", "qiskit.aer")


def device_names() -> list[str]:
    """Every valid device name pattern (for error messages and ``--help``).

    Examples
    --------
    >>> device_names()[-2:]
    ['fake:<name>', 'ibm:<backend>']
    """
    return [*_PLAIN, "fake:<name>", "ibm:<backend>"]


def is_device_name(name: object) -> bool:
    """Whether ``name`` has the form of a device name (see :func:`device_names`); nothing is built.

    Examples
    --------
    >>> is_device_name("fake:torino"), is_device_name("default.qubit"), is_device_name("gpu")
    (True, True, False)
    """
    return isinstance(name, str) and (name in _PLAIN or name.startswith(("fake:", "ibm:")))


@dataclass
class QDevice:
    """A PennyLane device with the facts qtnn needs.

    Attributes
    ----------
    name : str
        The name given to :func:`device`.
    pl : pennylane device
        Use it directly in your own QNodes.
    wires : int
    shots : int or None
        ``None`` means exact (analytic) results.
    seed : int or None
    exact : bool
        Results are exact (no sampling).

    The PennyLane device itself holds no shots (PennyLane's current API: shots
    belong to the QNode); :meth:`qnode` builds a QNode with ``shots``, and a
    QNode of your own takes ``shots=dev.shots`` (or :func:`pennylane.set_shots`).
    supports_state : bool
        The state vector can be read (exact simulators only).
    backend : qiskit backend or None
        The Qiskit backend behind ``fake:`` and ``ibm:`` devices.
    mitigation : str or None
        ``None``, ``"readout"``, ``"zne"`` or ``"readout+zne"`` (:mod:`qtnn.quantum.mitigation`);
        the probabilities of the last batch under each subset of it, from the same shots, are in
        ``pl.last_variants``.

    Examples
    --------
    >>> d = device("default.qubit", wires=3)
    >>> d.exact, d.supports_state, d.shots
    (True, True, None)
    """

    name: str
    pl: Any
    wires: int
    shots: int | None
    seed: int | None
    exact: bool
    supports_state: bool
    backend: Any = field(default=None, repr=False)
    mitigation: str | None = None
    #: The ``**options`` given to :func:`device` (to build the same device on other wires).
    options: dict[str, Any] = field(default_factory=dict, repr=False)

    def qnode(self, func: Any, **kwargs: Any) -> Any:
        """``qml.QNode(func, self.pl, shots=self.shots, **kwargs)``.

        Examples
        --------
        >>> import pennylane as qml
        >>> dev = device("default.qubit", wires=1, shots=5, seed=0)
        >>> def circuit():
        ...     qml.X(0)
        ...     return qml.counts(wires=0)
        >>> dev.qnode(circuit)()
        {np.str_('1'): np.int64(5)}
        """
        import pennylane as qml

        return qml.QNode(func, self.pl, shots=self.shots, **kwargs)

    @property
    def kind(self) -> str:
        """``"simulator"``, ``"aer"``, ``"fake"`` or ``"ibm"``."""
        if self.name.startswith("fake:"):
            return "fake"
        if self.name.startswith("ibm:"):
            return "ibm"
        return "aer" if self.name == "qiskit.aer" else "simulator"


def _check_shots(shots: Any) -> int | None:
    if shots is None:
        return None
    return check_int("shots", shots, minimum=1)


def _fake_backend(short: str) -> Any:
    return fake_backend(short, argument=f"name='fake:{short}'")


def _lightning_gpu_installed() -> bool:
    from importlib.metadata import entry_points

    return any(ep.name == "lightning.gpu" for ep in entry_points(group="pennylane.plugins"))


def _aer_devices() -> tuple[str, ...]:
    try:
        from qiskit_aer import AerSimulator
    except ImportError:  # pragma: no cover - qiskit-aer is a dependency of the quantum extra
        return ()
    return tuple(AerSimulator().available_devices())


def gpu_backends() -> dict[str, bool]:
    """Which GPU engines this machine offers: CUDA torch, ``lightning.gpu``, Aer's GPU method.

    Examples
    --------
    >>> sorted(gpu_backends())
    ['aer_gpu', 'lightning.gpu', 'torch_cuda']
    """
    import torch

    return {"torch_cuda": bool(torch.cuda.is_available()),
            "lightning.gpu": _lightning_gpu_installed(),
            "aer_gpu": "GPU" in _aer_devices()}


def _aer_device_option(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Pop Aer's ``device`` option from ``options``; check that a GPU request can be served."""
    value = options.pop("device", None)
    if value is None:
        return {}
    if not isinstance(value, str) or value.upper() not in ("CPU", "GPU"):
        raise QtnnError(f"device={value!r} for {name!r} must be 'CPU' or 'GPU'")
    value = value.upper()
    if value == "GPU" and "GPU" not in _aer_devices():
        import qiskit_aer

        raise QtnnError(f"device='GPU' for {name!r} needs a GPU build of Qiskit Aer (qiskit-aer-gpu) "
                        f"and a CUDA GPU; this Aer {qiskit_aer.__version__} offers "
                        f"{', '.join(_aer_devices()) or 'no'} devices")
    return {"device": value}


@contextlib.contextmanager
def runtime_batch(dev: QDevice, max_time: int | str | None = None) -> Iterator[Any]:
    """Run the jobs of a ``fake:`` / ``ibm:`` device inside a Qiskit Runtime ``Batch``.

    Inside the block every Sampler job of ``dev`` (one per circuit batch, see
    :class:`qtnn.quantum._batched.BatchedRemoteDevice`) is submitted in
    Qiskit Runtime's batch execution mode, which compiles queued jobs in
    parallel and schedules them together; the batch is closed on exit.  On a
    ``fake:`` device the batch runs in Qiskit Runtime's local mode (for tests).

    Parameters
    ----------
    dev : QDevice
        A ``fake:<model>`` or ``ibm:<backend>`` device.
    max_time : int or str, optional
        Passed to :class:`qiskit_ibm_runtime.Batch`.

    Examples
    --------
    >>> import torch
    >>> from qtnn.nn import QuantumStaircase
    >>> dev = device("fake:manila", wires=2, shots=100, seed=1)
    >>> layer = QuantumStaircase(2, 1, readout="probs", backend="pennylane", qdevice=dev)
    >>> with runtime_batch(dev) as batch:
    ...     p = layer(torch.rand(3, 4))
    >>> type(batch).__name__, dev.pl.jobs_submitted
    ('Batch', 1)
    """
    if not isinstance(dev, QDevice) or dev.kind not in ("fake", "ibm"):
        raise QtnnError(f"dev must be a 'fake:<model>' or 'ibm:<backend>' QDevice, got "
                        f"{getattr(dev, 'name', dev)!r}")
    if not hasattr(dev.pl, "_session"):
        raise QtnnError(f"device {dev.name!r} does not run Qiskit Runtime jobs (no session support)")
    from qiskit_ibm_runtime import Batch

    before = dev.pl._session
    batch = Batch(backend=dev.backend, max_time=max_time)
    dev.pl._session = batch
    try:
        yield batch
    finally:
        dev.pl._session = before
        batch.close()


def _remote(wires: int, backend: Any, shots: int, seed: int | None, batch_jobs: bool,
            options: dict[str, Any]) -> Any:
    """A ``qiskit.remote`` device on ``backend``: batched (one job per batch) or plain."""

    if not isinstance(batch_jobs, (bool,)):
        raise QtnnError(f"batch_jobs must be a bool, got {batch_jobs!r}")
    options = dict(options)
    _check_remote_options(options, hardware=not _is_aer(backend))
    from qtnn.quantum.mitigation import check_mitigation, check_zne_scales

    mitigation = check_mitigation(options.get("mitigation"))
    if mitigation is None:
        options.pop("mitigation", None)
    else:
        options["mitigation"] = mitigation
    if options.get("zne_scales") is not None:
        if mitigation is None or "zne" not in mitigation:
            raise QtnnError(f"zne_scales={options['zne_scales']!r} needs mitigation='zne' or "
                            f"'readout+zne', got mitigation={mitigation!r}")
        options["zne_scales"] = check_zne_scales(options["zne_scales"])
    if options.get("calibration_shots") is not None:
        options["calibration_shots"] = check_int("calibration_shots", options["calibration_shots"],
                                                 minimum=1)
    if seed is not None:
        options.setdefault("seed_transpiler", seed)
    if batch_jobs:
        from qtnn.quantum._batched import BatchedRemoteDevice

        return BatchedRemoteDevice(wires=wires, backend=backend, shots=shots, **options)
    retry = sorted(k for k in options if k in (*_RETRY_OPTIONS, *_QTNN_OPTIONS))
    if retry:
        raise QtnnError(f"the options {retry} (retries, timeouts, mitigation) need batch_jobs=True; "
                        f"pennylane-qiskit's plain qiskit.remote device has no such options")
    pl = _pl_device("qiskit.remote", wires=wires, backend=backend, **options)
    pl._kwargs["default_shots"] = shots       # for QNodes that set none (qtnn's QNodes set them)
    return pl


def _is_aer(backend: Any) -> bool:
    try:
        from qiskit_aer import AerSimulator
    except ImportError:  # pragma: no cover - qiskit-aer is a dependency of the quantum extra
        return False
    return isinstance(backend, AerSimulator)


def remote_option_names(hardware: bool) -> list[str]:
    """The options a ``fake:`` (``hardware=False``) or ``ibm:`` device takes, sorted.

    ``fake:`` devices take the retry options and the arguments of
    :func:`qiskit.compiler.transpile`; ``ibm:`` devices also the Qiskit Runtime
    ``SamplerV2`` options (``twirling``, ``dynamical_decoupling``, ...), which a
    local device model would silently ignore.  Anything else is refused by
    :func:`device` with a :class:`~qtnn.errors.QtnnError` listing these names.

    Examples
    --------
    >>> "job_timeout" in remote_option_names(False), "twirling" in remote_option_names(False)
    (True, False)
    >>> "twirling" in remote_option_names(True)
    True
    """
    import inspect

    from qiskit.compiler import transpile

    names = set(_RETRY_OPTIONS) | set(_QTNN_OPTIONS) | (set(inspect.signature(transpile).parameters)
                                   - {"circuits", "backend", "target", "callback", "output_name"})
    if hardware:
        import dataclasses

        from qiskit_ibm_runtime.options import SamplerOptions

        names |= {f.name for f in dataclasses.fields(SamplerOptions) if not f.name.startswith("_")}
        names.discard("default_shots")      # qtnn's `shots` sets it
    return sorted(names)


def _check_remote_options(options: dict[str, Any], hardware: bool) -> None:
    """A QtnnError for an option that a ``fake:`` / ``ibm:`` device would refuse late or ignore."""
    valid = remote_option_names(hardware)
    bad = sorted(k for k in options if k not in valid)
    if bad:
        kind = "an IBM backend ('ibm:')" if hardware else "a device model ('fake:')"
        extra = (" (resilience_level is an Estimator option; the Sampler that runs these circuits has "
                 "none)" if "resilience_level" in bad else "")
        raise QtnnError(f"unknown option(s) {', '.join(f'{k}={options[k]!r}' for k in bad)} for {kind}"
                        f"{extra}; valid options: {', '.join(valid)}")


#: Options of :class:`~qtnn.quantum._batched.BatchedRemoteDevice` for failing jobs.
_RETRY_OPTIONS = ("job_tries", "job_backoff", "job_timeout", "job_retry_timeouts")
#: Options of :class:`~qtnn.quantum._batched.BatchedRemoteDevice` for error mitigation
#: (:mod:`qtnn.quantum.mitigation`).
_QTNN_OPTIONS = ("mitigation", "calibration_shots", "zne_scales")


def _pl_device(name: str, **kwargs: Any) -> Any:
    """``qml.device(name, **kwargs)``; an option the plugin does not take is a QtnnError."""
    import pennylane as qml

    try:
        return qml.device(name, **kwargs)
    except TypeError as exc:
        raise QtnnError(f"device {name!r} does not accept these options: {exc}") from None


def device(name: str, wires: int, shots: int | None = None, seed: int | None = None,
           batch_jobs: bool = True, **options: Any) -> QDevice:
    """Create a device by name (see the module docstring for the names).

    Parameters
    ----------
    name : str
        ``"default.qubit"``, ``"lightning.qubit"``, ``"lightning.gpu"``,
        ``"qiskit.aer"``, ``"fake:<model>"`` or ``"ibm:<backend>"``.
    wires : int
        Number of qubits.  State-vector simulators refuse sizes whose state
        would not fit in memory (before allocating anything).
    shots : int, optional
        ``None`` for exact results (simulators only).  ``fake:`` and ``ibm:``
        devices need shots.
    seed : int, optional
        Seed of the sampler (Aer's ``seed_simulator``; PennyLane's ``seed``).
        For ``fake:`` / ``ibm:`` devices it also seeds the transpiler
        (``seed_transpiler``, unless given in ``options``), so layouts repeat.
    batch_jobs : bool
        ``fake:`` / ``ibm:`` only: transpile a batch of circuits in one call and
        submit it as one Sampler job (:class:`qtnn.quantum._batched.BatchedRemoteDevice`;
        it counts ``jobs_submitted``).  ``False``: pennylane-qiskit's plain
        ``qiskit.remote`` device (one job per circuit).
    **options
        Passed to :func:`pennylane.device` (an option the device does not take is a
        :class:`~qtnn.errors.QtnnError`; for ``fake:`` / ``ibm:`` the valid names are
        :func:`remote_option_names`, checked here, before any job).  ``fake:`` / ``ibm:`` with
        ``batch_jobs=True`` also take ``job_tries`` (default 3), ``job_backoff``
        (seconds, doubled after each failure) and ``job_timeout`` (seconds per job;
        ``None``: no limit); see :mod:`qtnn.quantum._retry`.  For ``qiskit.aer`` and ``fake:``,
        ``device="GPU"`` selects Aer's GPU method (a :class:`~qtnn.errors.QtnnError`
        if this Aer has none).  ``fake:`` / ``ibm:`` take ``mitigation="readout"``
        (and ``calibration_shots``): probabilities corrected for readout errors
        before anything reads them; ``mitigation="zne"`` (and ``zne_scales``, default
        ``(1, 3)``): zero-noise extrapolation by folding the two-qubit gates; both as
        ``"readout+zne"`` or ``("readout", "zne")`` (:mod:`qtnn.quantum.mitigation`, which
        states the shot cost); any other value is a :class:`~qtnn.errors.QtnnError` here,
        before any job.

    Examples
    --------
    >>> dev = device("default.qubit", wires=3)
    >>> dev.exact, dev.supports_state
    (True, True)
    >>> device("qiskit.aer", wires=2, shots=100, seed=1).supports_state
    False
    """
    qdev = _device(name, wires, shots, seed, batch_jobs, **options)
    qdev.options = dict(options)
    if not batch_jobs:
        qdev.options["batch_jobs"] = False
    return qdev


def _device(name: str, wires: int, shots: int | None, seed: int | None, batch_jobs: bool,
            **options: Any) -> QDevice:
    import pennylane as qml

    if not isinstance(name, str):
        raise QtnnError(f"name must be a device name string, got {name!r}")
    if not name.startswith(("fake:", "ibm:")):
        for opt in _QTNN_OPTIONS:
            if opt in options:
                raise QtnnError(f"{opt}={options[opt]!r}: error mitigation corrects the errors "
                                f"of a noisy device ('fake:<model>' or 'ibm:<backend>'); device {name!r} "
                                "has none")
    wires = check_int("wires", wires, minimum=1)
    shots = _check_shots(shots)
    if seed is not None:
        seed = check_int("seed", seed, minimum=0)

    if name in ("default.qubit", "lightning.qubit", "lightning.gpu", "qiskit.aer"):
        check_alloc(f"a {wires}-qubit state vector", pow2(wires), 16,
                    hint="use fewer qubits or the MPS path of qtnn.staircase")
    if name == "default.qubit":
        pl = _pl_device(name, wires=wires, seed=seed, **options)
    elif name == "lightning.gpu" and not _lightning_gpu_installed():
        raise QtnnError("device 'lightning.gpu' needs PennyLane Lightning's GPU build "
                        "(pip install pennylane-lightning-gpu; an NVIDIA GPU with CUDA), which is not "
                        "installed here; use 'lightning.qubit' or 'default.qubit'")
    elif name in ("lightning.qubit", "lightning.gpu"):
        try:
            pl = qml.device(name, wires=wires, seed=seed, **options)
        except Exception as exc:  # plugin broken / no usable GPU
            raise QtnnError(f"device {name!r} is installed but could not start here: {exc}") from exc
    elif name == "qiskit.aer":
        opts = {"method": "statevector" if shots is None else "automatic",
                # Level 0 keeps every gate as it is.  Higher levels merge 1-qubit gates and move
                # the difference into the circuit's global phase, which Aer applies at the start
                # of the circuit, where the reset of the Initialize that StatePrep becomes erases
                # it: the 'state' readout would be off by a global phase.
                "optimization_level": 0}
        if seed is not None:
            opts["seed_simulator"] = seed
        opts.update(_aer_device_option(name, options))
        opts.update(options)
        from qtnn.quantum._batched import fast_aer_device

        pl = fast_aer_device(wires, shots, **opts)
    elif name.startswith("fake:"):
        from qiskit_aer import AerSimulator

        backend = _fake_backend(name[5:])
        if wires > backend.num_qubits:
            raise QtnnError(f"wires={wires} is more than the {backend.num_qubits} qubits of {name!r}")
        if shots is None:
            raise QtnnError(f"device {name!r} samples a noisy device: shots must be a positive "
                            "integer, got None")
        sim = AerSimulator.from_backend(backend, seed_simulator=seed,
                                        **_aer_device_option(name, options))
        pl = _remote(wires, sim, shots, seed, batch_jobs, options)
        return QDevice(name, pl, wires, shots, seed, exact=False, supports_state=False, backend=sim,
                       mitigation=getattr(pl, "mitigation", None))
    elif name.startswith("ibm:"):
        backend = ibm_backend(name[4:])
        if shots is None:
            raise QtnnError(f"device {name!r} is hardware: shots must be a positive integer, got None")
        if wires > backend.num_qubits:
            raise QtnnError(f"wires={wires} is more than the {backend.num_qubits} qubits of {name!r}")
        pl = _remote(wires, backend, shots, seed, batch_jobs, options)
        return QDevice(name, pl, wires, shots, seed, exact=False, supports_state=False,
                       backend=backend, mitigation=getattr(pl, "mitigation", None))
    else:
        raise QtnnError(f"unknown device name {name!r}; valid names: {', '.join(device_names())}")
    exact = shots is None
    return QDevice(name, pl, wires, shots, seed, exact=exact, supports_state=exact)
