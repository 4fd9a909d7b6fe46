"""qtnn uses PennyLane's current shots API: shots belong to the QNode, never to the device, so
no ``Setting shots on device is deprecated`` warning is raised (and none is filtered: the
``pyproject.toml`` filter turns it into an error for the whole suite)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from qtnn.quantum import StaircaseQNode, device


@pytest.mark.parametrize("name", ["default.qubit", "lightning.qubit", "qiskit.aer", "fake:manila"])
def test_shot_devices_raise_no_deprecation_warning_and_sample_the_qnode_shots(name):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*[Ss]hots.*deprecated.*")
        dev = device(name, wires=2, shots=300, seed=4)
        qn = StaircaseQNode(dev, 2, layers=1, readout="probs")
        with torch.no_grad():
            p = qn(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.zeros(1, 1, 6)).numpy()
    assert not dev.pl.shots                      # the device holds no shots
    assert dev.shots == 300
    counts = p * 300                             # sampled: multiples of 1/300
    np.testing.assert_allclose(counts, np.round(counts), rtol=0, atol=1e-9)
    assert abs(p.sum() - 1.0) < 1e-12


def test_qdevice_qnode_passes_the_shots():
    import pennylane as qml

    dev = device("default.qubit", wires=1, shots=7, seed=0)

    def circuit():
        qml.Hadamard(0)
        return qml.counts(wires=0)

    counts = dev.qnode(circuit)()
    assert sum(int(v) for v in counts.values()) == 7
