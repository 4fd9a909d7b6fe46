"""Hybrid training: resume from checkpoints, determinism, the train command."""

import json

import pytest
import torch

from qtnn import QtnnError
from qtnn.apps.digits import HybridClassifier, HybridConfig, load_digits_split
from qtnn.apps.loop import train_model
from qtnn.apps.train import load_hybrid
from qtnn.cli import main


def _train(config, data, epochs, backend="reference", **kw):
    from qtnn.quantum import device

    torch.manual_seed(config.seed)
    model = HybridClassifier(config)
    if backend == "pennylane":
        model.set_backend("pennylane", device("default.qubit", wires=config.n_qubits))
    out = train_model(model, data, epochs=epochs, batch_size=config.batch_size, lr=config.lr,
                      seed=config.seed, progress=False, **kw)
    return model, out


@pytest.mark.parametrize("backend", ["reference", "pennylane"])
def test_resume_continues_the_same_loss_curve(tmp_path, backend):
    from qtnn.checkpoint import load_checkpoint, save_checkpoint
    from qtnn.quantum import device

    config = HybridConfig(layers=2, epochs=4, batch_size=64, seed=3)
    xtr, ytr, _, _ = load_digits_split(0)
    data = (xtr[:256], ytr[:256])
    # uninterrupted
    full, hist = _train(config, data, 4, backend)
    # interrupted after 2 epochs, resumed from the checkpoint in a fresh model
    path = tmp_path / "ck.pt"

    def ck(model, state):
        save_checkpoint(path, {"model": model.state_dict(), **state})

    torch.manual_seed(config.seed)
    first = HybridClassifier(config)
    if backend == "pennylane":
        first.set_backend("pennylane", device("default.qubit", wires=6))
    train_model(first, data, epochs=4, batch_size=64, lr=config.lr, seed=config.seed,
                progress=False, checkpoint=ck, stop_after=2)
    state = load_checkpoint(path)
    second = HybridClassifier(config)
    second.load_state_dict(state["model"])
    if backend == "pennylane":
        second.set_backend("pennylane", device("default.qubit", wires=6))
    resumed = train_model(second, data, epochs=4, batch_size=64, lr=config.lr, seed=config.seed,
                          progress=False, state=state)
    assert len(resumed["losses"]) == 4
    tol = 0.0  # same backend, same seed: bit-identical
    for a, b in zip(resumed["losses"], hist["losses"]):
        assert abs(a - b) <= tol
    for p, q in zip(second.parameters(), full.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=tol)


def test_training_is_deterministic():
    config = HybridConfig(layers=1, batch_size=64, seed=5)
    xtr, ytr, _, _ = load_digits_split(0)
    data = (xtr[:128], ytr[:128])
    _, a = _train(config, data, 2)
    _, b = _train(config, data, 2)
    assert a["losses"] == b["losses"]


def test_train_command_small(tmp_path, capsys):
    out, save = tmp_path / "r.json", tmp_path / "h.pt"
    code = main(["train", "--epochs", "2", "--layers", "1", "--shots", "200", "--fake", "none",
                 "--json", str(out), "--save", str(save)])
    assert code == 0
    r = json.loads(out.read_text())
    assert set(r["accuracy"]) >= {"hybrid_pennylane", "hybrid_reference", "dense_mlp", "aer_shots"}
    assert r["accuracy"]["hybrid_pennylane"] == r["accuracy"]["pennylane_on_reference"]
    model, ck = load_hybrid(str(save))
    assert ck["epoch"] == 2 and isinstance(model, HybridClassifier)
    assert "test accuracy" in capsys.readouterr().out


def test_config_errors():
    with pytest.raises(QtnnError, match="head must be one of"):
        HybridConfig(head="classical").check()
    with pytest.raises(QtnnError, match="hidden=128 does not fit the 2\\*\\*n_qubits=64"):
        HybridConfig(hidden=128).check()
    assert main(["train", "--shots", "0", "--fake", "none"]) == 2


def test_circuit_resources_show_the_input_encoding_beside_the_head():
    """Issue 16: the demo's summary counts the encoding (StatePrep) with the trained circuit."""
    from qtnn.apps.digits import HybridClassifier, HybridConfig
    from qtnn.apps.train import _circuit_resources

    res = _circuit_resources(HybridClassifier(HybridConfig(layers=2)))
    enc = res["encoding"]
    assert enc["kind"].startswith("amplitude")
    # a generic 6-qubit state needs 2^6 - 6 - 1 = 57 CX with Qiskit's isometry decomposition,
    # far more than the head's 2 * 5 = 10 two-qubit gates
    assert res["two_qubit_gates"] == 10
    assert enc["two_qubit_gates"] >= 2**6 - 6 - 1
    assert res["total_two_qubit_gates"] == enc["two_qubit_gates"] + 10


def test_a_head_with_the_staircase_encoding_reports_its_own_encoding():
    """A model whose QuantumHead uses the staircase encoding: the summary and model_depth_report
    count that encoding (D (n - 1) gates, fidelity below one) instead of StatePrep."""
    from qtnn.analysis import model_depth_report
    from qtnn.apps.train import _circuit_resources
    from qtnn.nn import QuantumHead

    torch.manual_seed(0)
    model = HybridClassifier(HybridConfig(layers=1))
    model.head = QuantumHead(64, 6, 1, 10, encoding="staircase", encoding_layers=3, dtype=torch.float64)
    enc = _circuit_resources(model)["encoding"]
    assert enc["kind"] == "staircase (D=3)" and 0 < enc["fidelity"] < 1
    assert enc["two_qubit_gates"] <= 3 * 3 * 5 < 2**6 - 6 - 1
    r = model_depth_report(model, basis_gates=["cx", "u"], optimization_level=1)
    assert r.encoding is not None and r.encoding.logical_gates == 3 * 5


def test_train_summary_costs_encoding_and_head_on_the_device_model():
    """Issue 16: the demo's summary on its device model: encoding + head, the total transpiled as
    one circuit, and the estimated success probability with and without read-out."""
    from qtnn.apps.train import _device_cost

    torch.manual_seed(0)
    d = _device_cost(HybridClassifier(HybridConfig(layers=2)), "fake:torino", 0)
    assert d["backend"] == "fake:torino"
    assert d["encoding_two_qubit_gates"] >= 2**6 - 6 - 1 and 0 < d["head_two_qubit_gates"] <= 3 * 10
    assert d["total_two_qubit_gates"] >= d["encoding_two_qubit_gates"]
    assert 0 < d["success_with_readout"] < d["success_probability"] < 1
