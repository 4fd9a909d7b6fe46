"""Bad input that once escaped as the wrong exception, a hang or a silent answer (found by the
reliability suite in ``qtnn/train.py``, ``qtnn/cli.py``, ``qtnn/bench.py``,
``qtnn/quantum/devices.py``, ``qtnn/nn/quantum_layers.py``, ``qtnn/staircase/magic.py`` and
``qtnn/compress.py``), kept as regression tests: each now ends in a QtnnError naming the
argument, up front.  Checks that could hang run in a forked child that is killed after a few
seconds."""

from __future__ import annotations

import math
import os
import signal
import time

import numpy as np
import pytest
import torch

from qtnn import QtnnError


def _in_child(fn, seconds: float = 4.0) -> str:
    """Run ``fn`` in a forked child: ``"QtnnError"``, ``"no error"``, ``"<OtherError>"`` or ``"hang"``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, seconds)   # the default action kills a hung child
        try:
            fn()
            out = "no error"
        except QtnnError:
            out = "QtnnError"
        except BaseException as exc:
            out = type(exc).__name__
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    t0 = time.monotonic()
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - t0 > seconds + 10:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        time.sleep(0.02)
    out = os.read(r, 200).decode()
    os.close(r)
    return out or "hang"


# ------------------------------------------------------------------ qtnn/quantum/devices.py
def test_device_unknown_option():
    from qtnn.quantum import device

    with pytest.raises(QtnnError, match="bogus"):
        device("default.qubit", wires=2, bogus=1)


def test_device_absurd_wires_is_refused_fast():
    from qtnn.quantum import device

    assert _in_child(lambda: device("default.qubit", wires=10**12)) == "QtnnError"


def test_plain_remote_device_refuses_retry_options():
    from qtnn.quantum import device

    with pytest.raises(QtnnError, match="job_tries"):
        device("fake:manila", wires=2, shots=10, batch_jobs=False, job_tries=2)


# ------------------------------------------------------------------------- qtnn/train.py
def test_config_lr_inf():
    from qtnn.apps.digits import HybridConfig

    with pytest.raises(QtnnError, match="lr"):
        HybridConfig(lr=math.inf).check()


def test_config_lr_not_a_number():
    from qtnn.apps.digits import HybridConfig

    with pytest.raises(QtnnError, match="lr"):
        HybridConfig(lr="x").check()


def test_config_seed():
    from qtnn.apps.digits import HybridConfig

    with pytest.raises(QtnnError, match="seed"):
        HybridConfig(seed=-1).check()


def test_classifier_absurd_layers():
    from qtnn.apps.digits import HybridClassifier, HybridConfig

    with pytest.raises(QtnnError, match="layers"):
        HybridClassifier(HybridConfig(layers=10**9))


def _tiny():
    from qtnn.apps.digits import HybridClassifier, HybridConfig

    model = HybridClassifier(HybridConfig(layers=1, max_bond=2))
    x = torch.rand(8, 64, dtype=torch.float64)
    y = torch.randint(0, 10, (8,))
    return model, x, y


def test_train_model_batch_size_zero():
    from qtnn.apps.loop import train_model

    model, x, y = _tiny()
    with pytest.raises(QtnnError, match="batch_size"):
        train_model(model, (x, y), epochs=1, batch_size=0, lr=0.1, seed=0, progress=False)


def test_train_model_labels_out_of_range():
    from qtnn.apps.loop import train_model

    model, x, y = _tiny()
    with pytest.raises(QtnnError, match="labels|y"):
        train_model(model, (x, y + 100), epochs=1, batch_size=4, lr=0.1, seed=0, progress=False)


def test_train_model_malformed_state():
    from qtnn.apps.loop import train_model

    model, x, y = _tiny()
    with pytest.raises(QtnnError, match="state"):
        train_model(model, (x, y), epochs=1, batch_size=4, lr=0.1, seed=0, progress=False, state={"epoch": 1})


def test_evaluate_empty():
    from qtnn.apps.loop import evaluate

    model, x, y = _tiny()
    with pytest.raises(QtnnError, match="x|empty"):
        evaluate(model, x[:0], y[:0])


def test_load_hybrid_mismatched_model(tmp_path):
    from qtnn.apps.train import load_hybrid
    from qtnn.checkpoint import save_checkpoint

    p = tmp_path / "h.pt"
    save_checkpoint(p, {"config": {}, "model": {"x": torch.ones(2)}})
    with pytest.raises(QtnnError, match="h.pt"):
        load_hybrid(str(p))


def test_run_train_checks_fake_name_first(monkeypatch):
    import qtnn.apps.train as train
    from qtnn.apps.digits import HybridConfig

    def no_training(*args, **kwargs):
        raise AssertionError("training started before the bad fake= name was refused")

    monkeypatch.setattr(train, "train_model", no_training)
    with pytest.raises(QtnnError, match="nowhere"):
        train.run_train(HybridConfig(epochs=1, layers=1), fake="fake:nowhere", progress=False)


# --------------------------------------------------------------------------- qtnn/cli.py
def test_cli_negative_qubits(capsys):
    from qtnn.cli import main

    assert main(["train", "--qubits", "-1"]) == 2
    assert "qubits" in capsys.readouterr().err


def test_cli_unwritable_png(tmp_path, capsys):
    from qtnn.cli import main

    code = main(["depth", "--n", "3", "--layers", "1", "--no-dense", "--backend", "fake:manila",
                 "--json", str(tmp_path / "d.json"), "--png", "/etc/passwd/x.png"])
    assert code == 2 and "png" in capsys.readouterr().err


# ------------------------------------------------------------------------- qtnn/bench.py
def test_bench_bad_device():
    from qtnn.apps.bench import bench_mpo_linear

    with pytest.raises(QtnnError, match="device"):
        bench_mpo_linear(sizes=(8,), bonds=(2,), batch=2, repeats=1, device="foo")


def test_bench_absurd_size():
    from qtnn.apps.bench import bench_mpo_linear

    with pytest.raises(QtnnError, match="size|would need"):
        bench_mpo_linear(sizes=(10**9,), bonds=(2,), batch=2, repeats=1)


# --------------------------------------------------------------- qtnn/nn/quantum_layers.py
def test_quantum_head_eps():
    from qtnn.nn import QuantumHead

    with pytest.raises(QtnnError, match="eps"):
        QuantumHead(8, 3, 1, 4, eps=float("nan"))


def test_quantum_staircase_readout_wires_not_a_sequence():
    from qtnn.nn import QuantumStaircase

    with pytest.raises(QtnnError, match="readout_wires"):
        QuantumStaircase(3, 1, readout_wires=5)


def test_quantum_staircase_int_dtype():
    from qtnn.nn import QuantumStaircase

    with pytest.raises(QtnnError, match="dtype"):
        QuantumStaircase(3, 1, dtype=torch.int64)


def test_disentangled_linear_absurd_size():
    from qtnn.nn import DisentangledLinear

    with pytest.raises(QtnnError):
        DisentangledLinear(2**40, 2**40, 1, 1, 2)


def test_set_backend_device_type():
    from qtnn.nn import QuantumStaircase

    with pytest.raises(QtnnError, match="device"):
        QuantumStaircase(3, 1).set_backend("pennylane", 0)


def test_quantum_staircase_absurd_qubits_is_refused_fast():
    from qtnn.nn import QuantumStaircase

    assert _in_child(lambda: QuantumStaircase(10**12, 1)) == "QtnnError"


# ------------------------------------------------------------------ qtnn/staircase/magic.py
def test_magic_angles_nan_atol():
    from qtnn.staircase.magic import magic_angles

    with pytest.raises(QtnnError, match="atol|orthogonal"):
        magic_angles(np.ones((4, 4)), atol=float("nan"))


# ---------------------------------------------------------------------- qtnn/compress.py
def test_compress_progress_flag():
    import qtnn.compress as compress_mod

    mlp = torch.nn.Sequential(torch.nn.Linear(8, 4))
    with pytest.raises(QtnnError, match="progress"):
        compress_mod.compress(mlp, "0", progress="yes")
