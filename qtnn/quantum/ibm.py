"""IBM backends by name: device models of ``qiskit_ibm_runtime.fake_provider`` and real
backends with saved credentials.

Shared by :mod:`qtnn.quantum` (running circuits) and :mod:`qtnn.analysis`
(transpiling them); imports nothing of qtnn but the errors, and Qiskit only
inside the functions.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from qtnn.errors import QtnnError, QtnnTypeError

__all__ = ["fake_backend_names", "fake_backend", "ibm_backend", "backend_by_name"]


@functools.lru_cache(maxsize=1)
def fake_backend_names() -> tuple[str, ...]:
    """Lower-case names of the IBM device models in ``qiskit_ibm_runtime.fake_provider``.

    Examples
    --------
    >>> {"torino", "fez", "sherbrooke"} <= set(fake_backend_names())
    True
    """
    fp = importlib.import_module("qiskit_ibm_runtime.fake_provider")
    names = []
    for attr in dir(fp):
        if attr.startswith("Fake") and not attr.startswith(("FakeProvider", "FakeFractional")):
            names.append(attr[4:].removesuffix("V2").lower())
    return tuple(sorted(set(names)))


def fake_backend(short: str, *, argument: str = "name") -> Any:
    """The device model ``short`` (``"torino"``, ``"FakeTorino"``, ``"fake_torino"`` ...).

    Raises
    ------
    QtnnError
        For an unknown model, listing the valid ones.

    Examples
    --------
    >>> fake_backend("torino").num_qubits
    133
    """
    valid = fake_backend_names()
    key = short.lower().replace("_", "").removeprefix("fake").removesuffix("v2")
    if key not in valid:
        raise QtnnError(f"unknown IBM device model {short!r} in {argument}; "
                        f"valid models: {', '.join(valid)}")
    fp = importlib.import_module("qiskit_ibm_runtime.fake_provider")
    for attr in (f"Fake{key.capitalize()}", f"Fake{key.capitalize()}V2"):
        if hasattr(fp, attr):
            return getattr(fp, attr)()
    for attr in dir(fp):  # names such as FakeAlmadenV2 with other capitalisation
        if attr.lower() in (f"fake{key}", f"fake{key}v2"):
            return getattr(fp, attr)()
    raise QtnnError(f"IBM device model {short!r} could not be loaded")  # pragma: no cover


def ibm_backend(name: str) -> Any:
    """A real IBM backend through ``qiskit-ibm-runtime`` with saved credentials (never prompts).

    Examples
    --------
    >>> backend = ibm_backend("ibm_torino")        # doctest: +SKIP
    >>> backend.num_qubits                         # doctest: +SKIP
    133
    """
    from qiskit_ibm_runtime import QiskitRuntimeService

    if not QiskitRuntimeService.saved_accounts():
        raise QtnnError(
            f"no IBM Quantum credentials are saved, so device 'ibm:{name}' cannot be reached; "
            "save them once with: from qiskit_ibm_runtime import QiskitRuntimeService; "
            "QiskitRuntimeService.save_account(channel='ibm_quantum_platform', "
            "token='<API key>', instance='<CRN>')")
    try:
        service = QiskitRuntimeService()
        return service.backend(name)
    except Exception as exc:  # network, unknown backend, expired token
        raise QtnnError(f"IBM backend {name!r} is not available: {exc}") from exc


def backend_by_name(backend: Any, *, argument: str = "backend") -> Any:
    """A Qiskit ``BackendV2`` from ``"fake:<model>"``, ``"ibm:<name>"`` or a backend object.

    Examples
    --------
    >>> backend_by_name("fake:sherbrooke").num_qubits
    127
    """
    if isinstance(backend, str):
        if backend.startswith("fake:"):
            return fake_backend(backend[5:], argument=f"{argument}={backend!r}")
        if backend.startswith("ibm:"):
            return ibm_backend(backend[4:])
        raise QtnnError(f"{argument} must be 'fake:<model>' (an IBM device model, e.g. "
                        f"'fake:torino') or 'ibm:<backend>', got {backend!r}; valid models: "
                        f"{', '.join(fake_backend_names())}")
    if hasattr(backend, "target") and hasattr(backend, "num_qubits"):
        return backend
    raise QtnnTypeError(f"{argument} must be a backend name such as 'fake:torino' or a Qiskit "
                        f"BackendV2, got {type(backend).__name__}")
