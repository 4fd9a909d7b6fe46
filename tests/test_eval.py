"""``qtnn eval MODEL --device ... [--shots] [--mitigation]``: a saved hybrid evaluated on another
device, with JSON; devices and options checked before anything is loaded or evaluated."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import pytest

from qtnn.apps.digits import HybridClassifier, HybridConfig
from qtnn.checkpoint import save_checkpoint
from qtnn.cli import main


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("eval") / "hybrid.pt")
    cfg = HybridConfig(layers=1, n_qubits=4, hidden=16)
    save_checkpoint(path, {"config": asdict(cfg), "model": HybridClassifier(cfg).state_dict(), "epoch": 0})
    return path


def test_eval_on_aer_with_shots_writes_json(model_path, tmp_path, capsys):
    out = str(tmp_path / "eval.json")
    assert main(["eval", model_path, "--device", "qiskit.aer", "--shots", "300", "--samples", "30",
                 "--batch-size", "10", "--json", out]) == 0
    with open(out) as fh:
        r = json.load(fh)
    assert r["samples"] == 30 and r["device"] == "qiskit.aer" and r["shots"] == 300
    assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["exact_accuracy"] <= 1.0
    err = capsys.readouterr().err
    assert "eval qiskit.aer: 30/30 samples" in err and err.count("eval qiskit.aer") == 3   # progress


def test_exact_eval_equals_the_reference_accuracy(model_path, tmp_path):
    out = str(tmp_path / "exact.json")
    assert main(["eval", model_path, "--device", "default.qubit", "--shots", "0", "--json", out]) == 0
    with open(out) as fh:
        r = json.load(fh)
    assert r["accuracy"] == r["exact_accuracy"]


@pytest.mark.parametrize("argv, message", [
    (["--device", "fake:nope"], "unknown IBM device model"),
    (["--device", "default.qubit", "--mitigation", "readout"], "has none"),
    (["--device", "qiskit.aer", "--samples", "0"], "samples must be"),
])
def test_bad_devices_and_options_fail_before_evaluating(model_path, argv, message, capsys):
    assert main(["eval", model_path, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "eval " not in err.replace("qtnn eval", "")


def test_missing_model_is_a_clean_error(tmp_path, capsys):
    assert main(["eval", os.path.join(str(tmp_path), "none.pt"), "--device", "qiskit.aer"]) == 2
