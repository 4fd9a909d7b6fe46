"""The device factory, the batched Qiskit devices and their bookkeeping."""

from __future__ import annotations

import numpy as np
import pennylane as qml
import pytest
import torch

from qtnn import QtnnError, QtnnSizeError
from qtnn.quantum import QDevice, StaircaseTemplate, device, device_names
from qtnn.quantum._batched import BatchedRemoteDevice


@pytest.fixture(scope="module")
def torino():
    """One 133-qubit FakeTorino device for the module (building its noise model takes seconds)."""
    return device("fake:torino", wires=3, shots=2000, seed=11)


def _circuit_ops(x, w):
    qml.StatePrep(x, wires=range(3))
    StaircaseTemplate(w, wires=range(3))


# ----------------------------------------------------------------- factory
def test_kinds_and_flags():
    dq = device("default.qubit", 2)
    assert isinstance(dq, QDevice) and dq.exact and dq.supports_state and dq.kind == "simulator"
    aer = device("qiskit.aer", 2, shots=10, seed=1)
    assert not aer.exact and not aer.supports_state and aer.kind == "aer"
    assert device("qiskit.aer", 2).supports_state


def test_unknown_device_lists_valid_names():
    with pytest.raises(QtnnError) as err:
        device("default.qbit", 2)
    msg = str(err.value)
    assert "'default.qbit'" in msg
    for name in device_names():
        assert name in msg


def test_unknown_fake_model_lists_models():
    with pytest.raises(QtnnError, match=r"unknown IBM device model 'nowhere'.*valid models: .*torino"):
        device("fake:nowhere", 2, shots=10)


def test_fake_device_wider_than_backend():
    with pytest.raises(QtnnError, match=r"wires=134 is more than the 133 qubits of 'fake:torino'"):
        device("fake:torino", 134, shots=10)


def test_fake_device_needs_shots():
    with pytest.raises(QtnnError, match="shots must be a positive integer, got None"):
        device("fake:manila", 2)


@pytest.mark.parametrize("name", ["default.qubit", "lightning.qubit", "qiskit.aer"])
def test_40_qubit_state_vector_refused_before_allocation(name, monkeypatch):
    def boom(*args, **kwargs):  # the PennyLane device must never be built
        raise AssertionError("device constructed")

    monkeypatch.setattr(qml, "device", boom)
    with pytest.raises(QtnnSizeError, match=r"a 40-qubit state vector would need 16.0 TiB"):
        device(name, 40)


def test_missing_ibm_credentials(monkeypatch):
    from qiskit_ibm_runtime import QiskitRuntimeService

    def no_network(*args, **kwargs):
        raise AssertionError("QiskitRuntimeService must not be constructed without credentials")

    monkeypatch.setattr(QiskitRuntimeService, "saved_accounts", staticmethod(lambda *a, **k: {}))
    monkeypatch.setattr(QiskitRuntimeService, "__init__", no_network)
    with pytest.raises(QtnnError, match=r"no IBM Quantum credentials.*ibm:ibm_torino.*save_account\("):
        device("ibm:ibm_torino", 2, shots=100)


def test_bad_arguments():
    with pytest.raises(QtnnError, match="shots must be an integer >= 1, got 0"):
        device("default.qubit", 2, shots=0)
    with pytest.raises(QtnnError, match="wires must be an integer >= 1, got 0"):
        device("default.qubit", 0)
    with pytest.raises(QtnnError, match="name must be a device name string"):
        device(3, 2)
    with pytest.raises(QtnnError, match="batch_jobs must be a bool"):
        device("fake:manila", 2, shots=10, batch_jobs="yes")


# ------------------------------------------------------------ qiskit.aer
def test_fast_aer_matches_default_qubit_including_global_phase():
    """The qiskit.aer device (own circuit building, cached target) gives the exact state."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=8)
    x /= np.linalg.norm(x)
    u = np.linalg.qr(rng.normal(size=(4, 4)) + 1j * rng.normal(size=(4, 4)))[0]

    def body():
        qml.StatePrep(x, wires=range(3))
        qml.RZ(0.3, 0)
        qml.S(1)
        qml.QubitUnitary(u, wires=[2, 0])
        qml.CNOT([1, 2])
        qml.adjoint(qml.S(2))
        qml.RY(-0.7, 1)
        qml.GlobalPhase(0.4)
        return qml.state()

    aer = qml.QNode(body, device("qiskit.aer", 3).pl)()
    ref = qml.QNode(body, qml.device("default.qubit", wires=3))()
    np.testing.assert_allclose(aer, ref, rtol=0, atol=1e-12)


def test_aer_batch_is_one_job():
    dev = device("qiskit.aer", 3, shots=100, seed=2)
    x = torch.tensor(np.random.default_rng(1).normal(size=(6, 8)))
    x = x / x.norm(dim=1, keepdim=True)
    w = torch.zeros(1, 2, 6)

    @qml.qnode(dev.pl, interface="torch", diff_method=None, shots=dev.shots)
    def c(x, w):
        _circuit_ops(x, w)
        return qml.probs(wires=range(3))

    with qml.Tracker(dev.pl) as tracker:
        out = c(x, w)
    assert out.shape == (6, 8)
    assert tracker.totals["batches"] == 1 and tracker.totals["batch_len"] == 6


def test_default_qubit_broadcast_is_one_simulation():
    dev = device("default.qubit", 3)
    x = torch.tensor(np.random.default_rng(1).normal(size=(16, 8)))
    x = x / x.norm(dim=1, keepdim=True)

    @qml.qnode(dev.pl, interface="torch", shots=dev.shots)
    def c(x, w):
        _circuit_ops(x, w)
        return qml.probs(wires=range(3))

    with qml.Tracker(dev.pl) as tracker:
        c(x, torch.zeros(1, 2, 6))
    assert tracker.totals["batches"] == 1 and tracker.totals["simulations"] == 1
    assert tracker.totals["executions"] == 16


# ------------------------------------------------------------- fake / ibm
def test_batch_jobs_flag_selects_device_class():
    assert isinstance(device("fake:manila", 2, shots=10).pl, BatchedRemoteDevice)
    plain = device("fake:manila", 2, shots=10, batch_jobs=False).pl
    assert not isinstance(plain, BatchedRemoteDevice) and plain.short_name == "qiskit.remote"


def test_fake_batch_is_one_job_and_restricted_noise_is_exact(torino):
    """A batch of 5 circuits is one job; cutting the noise model to the touched qubits changes
    nothing: the full model on the same transpiled circuits with the same seed gives identical
    counts."""
    x = torch.tensor(np.random.default_rng(3).normal(size=(5, 8)))
    x = x / x.norm(dim=1, keepdim=True)
    w = torch.tensor(np.random.default_rng(4).normal(size=(1, 2, 6)))

    @qml.qnode(torino.pl, interface="torch", diff_method=None, shots=torino.shots)
    def c(x, w):
        _circuit_ops(x, w)
        return qml.probs(wires=range(3))

    jobs0 = torino.pl.jobs_submitted
    with qml.Tracker(torino.pl) as tracker:
        probs = c(x, w).numpy()
    assert torino.pl.jobs_submitted - jobs0 == 1 and tracker.totals["jobs"] == 1
    assert tracker.totals["executions"] == 5
    compiled = torino.pl.last_compiled
    assert len(compiled) == 5

    nm = torino.backend.options.noise_model
    assert len(nm.noise_qubits) == 133            # the backend's own model is untouched
    full = torino.backend.run(compiled, shots=2000).result()   # full 133-qubit noise model
    for i in range(5):
        p = np.zeros(8)
        for key, count in full.get_counts(i).items():
            p[int(key[::-1], 2)] = count / 2000   # clbit j = wire j; PennyLane: wire 0 = MSB
        np.testing.assert_array_equal(probs[i], p)


def test_exact_aer_keeps_state_readout_after_a_sampling_aer_device():
    """pennylane-qiskit shares one capabilities dict between Aer devices; ours do not."""
    exact = device("qiskit.aer", 2)
    device("qiskit.aer", 2, shots=10)

    @qml.qnode(exact.pl)
    def c():
        qml.Hadamard(0)
        return qml.state()

    np.testing.assert_allclose(c(), [2**-0.5, 0, 2**-0.5, 0], rtol=0, atol=1e-15)


def test_imports_stay_light():
    import subprocess
    import sys

    code = ("import sys, qtnn, qtnn.tn, qtnn.staircase, qtnn.quantum; "
            "print('pennylane' in sys.modules, 'qiskit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("opts", [{"foo": 1}, {"resilience_level": 1},
                                  {"twirling": {"enable_gates": True}}, {"dynamical_decoupling": {}}])
def test_fake_device_refuses_unknown_options_up_front(opts):
    from qtnn.quantum.devices import remote_option_names

    key = next(iter(opts))
    with pytest.raises(QtnnError, match=rf"unknown option\(s\) {key}=.*valid options: .*job_timeout"):
        device("fake:manila", wires=2, shots=10, **opts)
    assert "twirling" in remote_option_names(True) and "twirling" not in remote_option_names(False)
    # options the device does take still pass
    dev = device("fake:manila", wires=2, shots=10, optimization_level=1, job_timeout=5, device="CPU")
    assert dev.pl.retry_policy.timeout == 5.0


def test_train_refuses_a_bad_fake_name_before_training():
    from qtnn.apps.digits import HybridConfig
    from qtnn.apps.train import run_train

    with pytest.raises(QtnnError, match="fake='torino' must be 'fake:<model>'"):
        run_train(HybridConfig(epochs=1, layers=1), fake="torino", progress=False)
