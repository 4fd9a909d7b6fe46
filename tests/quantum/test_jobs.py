"""How many jobs a batch costs on a Qiskit device (fake IBM backend, counted three ways).

The jobs are counted by the device (``jobs_submitted``), by ``qml.Tracker``
(key ``"jobs"``) and independently by wrapping the Aer backend's ``run`` (or the
Sampler's ``run`` for Qiskit Runtime's Batch mode): a forward batch of ``B``
inputs is one job of ``B`` circuits, and the parameter-shift gradient of it is
one job of ``2 * P * B`` circuits (``P`` trainable angles), not one job per circuit.
"""

from __future__ import annotations

import pennylane as qml
import pytest
import torch

from qtnn import QtnnError
from qtnn.nn import QuantumStaircase
from qtnn.quantum import device, runtime_batch

B = 3            # inputs in the batch
P = 6            # trainable angles: one 2-qubit gate on 2 qubits, 1 layer


def _layer(dev):
    torch.manual_seed(0)
    return QuantumStaircase(2, layers=1, readout="probs", backend="pennylane", qdevice=dev,
                            dtype=torch.float64)


def _count_backend_runs(monkeypatch, dev) -> list[int]:
    """Circuits per ``backend.run`` call of the Aer simulator behind ``dev``."""
    calls: list[int] = []
    run = dev.backend.run

    def counting_run(circuits, *args, **kwargs):
        calls.append(len(circuits) if isinstance(circuits, list) else 1)
        return run(circuits, *args, **kwargs)

    monkeypatch.setattr(dev.backend, "run", counting_run)
    return calls


def test_forward_batch_and_parameter_shift_gradient_are_one_job_each(monkeypatch):
    dev = device("fake:manila", wires=2, shots=1000, seed=1)
    calls = _count_backend_runs(monkeypatch, dev)
    layer = _layer(dev)
    x = torch.rand(B, 4, dtype=torch.float64)

    with qml.Tracker(dev.pl) as tracker:
        y = layer(x)
    assert calls == [B]                                        # one job holding the B circuits
    assert dev.pl.jobs_submitted == 1 and dev.pl.circuits_submitted == B
    assert tracker.totals["jobs"] == 1 and tracker.totals["executions"] == B

    calls.clear()
    with qml.Tracker(dev.pl) as tracker:
        y[:, 0].sum().backward()
    assert layer.circuit.angles.grad is not None
    assert calls == [2 * P * B]                                # all shifted circuits in one job
    assert dev.pl.jobs_submitted == 2 and dev.pl.circuits_submitted == B + 2 * P * B
    assert tracker.totals["jobs"] == 1 and tracker.totals["executions"] == 2 * P * B


def test_plain_remote_device_sends_one_job_per_circuit(monkeypatch):
    """pennylane-qiskit's own qiskit.remote device (batch_jobs=False), for contrast."""
    dev = device("fake:manila", wires=2, shots=1000, seed=1, batch_jobs=False)
    calls = _count_backend_runs(monkeypatch, dev)
    with torch.no_grad():
        _layer(dev)(torch.rand(B, 4, dtype=torch.float64))
    assert calls == [1] * B


def test_runtime_batch_mode_one_sampler_job_per_batch_split_at_max_circuits(monkeypatch):
    """Inside Qiskit Runtime's Batch mode (local mode on a fake backend) the forward batch is one
    Sampler job; with a backend limit of 10 circuits per job the 36 shifted circuits of the
    gradient are ceil(36 / 10) = 4 jobs, all in the same Batch."""
    import qtnn.quantum._batched as batched

    runs: list[tuple[str, int]] = []

    class CountingSampler(batched.SamplerV2):
        def run(self, pubs, *args, **kwargs):
            runs.append((type(self._mode).__name__, len(pubs)))
            return super().run(pubs, *args, **kwargs)

    monkeypatch.setattr(batched, "SamplerV2", CountingSampler)
    dev = device("fake:manila", wires=2, shots=1000, seed=1)
    layer = _layer(dev)
    x = torch.rand(B, 4, dtype=torch.float64)
    with runtime_batch(dev) as batch:
        y = layer(x)
        assert runs == [("Batch", B)] and dev.pl.jobs_submitted == 1
        monkeypatch.setattr(type(dev.backend), "max_circuits", 10, raising=False)
        y[:, 0].sum().backward()
    assert runs[1:] == [("Batch", 10), ("Batch", 10), ("Batch", 10), ("Batch", 6)]
    assert dev.pl.jobs_submitted == 1 + 4
    assert dev.pl._session is None and not batch._active       # restored and closed on exit


def test_runtime_batch_needs_a_runtime_device():
    with pytest.raises(QtnnError, match="dev must be a 'fake:<model>' or 'ibm:<backend>' QDevice, "
                                        "got 'default.qubit'"), runtime_batch(device("default.qubit", 2)):
        pass
