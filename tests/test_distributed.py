"""DistributedDataParallel training: 2 gloo ranks on CPU equal single-process training.

The configurations measure every qubit (``n_qubits=4``, 10 classes -> 4 readout
wires).  With unmeasured qubits (the demo's 6 qubits, 4 read) some circuit
angles have an identically zero gradient (a last gate acting only on
unmeasured qubits); Adam turns the rounding noise of such a gradient into
steps of about ``lr * |g| / eps ~ 1e-10`` even on one process, so those angles
(which do not change the model's output) cannot be compared at 1e-10.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import socket

import pytest
import torch
import torch.distributed as dist

from qtnn import QtnnError
from qtnn.apps.digits import HybridClassifier, HybridConfig, load_digits_split
from qtnn.apps.distributed import (
    ddp_train_model,
    default_backend,
    free_port,
    launched_by_torchrun,
    shard,
    train_ddp,
)
from qtnn.apps.loop import train_model

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

CONFIG = HybridConfig(n_qubits=4, hidden=16, layers=2, batch_size=40, epochs=1, seed=3)


@pytest.fixture(scope="module")
def digits():
    xtr, ytr, _, _ = load_digits_split(0)
    return xtr, ytr


def _single(config, data, device_name="reference"):
    """Single-process training from the seeded init; returns (init state, trained model, history)."""
    torch.manual_seed(config.seed)
    model = HybridClassifier(config)
    init = copy.deepcopy(model.state_dict())
    if device_name != "reference":
        from qtnn.quantum import device

        model.set_backend("pennylane", device(device_name, wires=config.n_qubits))
    hist = train_model(model, data, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                       seed=config.seed, progress=False)
    return init, model, hist


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


# ------------------------------------------------------------------ 2 spawned ranks
def test_two_ranks_equal_single_process_on_the_reference_path(digits, tmp_path):
    """81 samples, global batch 40: batches of 40, 40 and 1 -> 3 steps per epoch; the last one
    leaves rank 1 with no sample (it joins the all-reduce with weight zero).  Epoch 1 writes a
    checkpoint; epoch 2 resumes from it in fresh processes."""
    from qtnn.checkpoint import load_checkpoint

    data = (digits[0][:81], digits[1][:81])
    config = dataclasses.replace(CONFIG, epochs=2)
    init, single, hist = _single(config, data)
    torch.manual_seed(config.seed)
    half = HybridClassifier(config)
    half.load_state_dict(init)
    train_model(half, data, epochs=2, batch_size=40, lr=config.lr, seed=config.seed, progress=False,
                stop_after=1)

    path = tmp_path / "ddp.pt"
    r1 = train_ddp(config, 2, data=data, init_state=init, checkpoint=str(path), stop_after=1)
    assert r1["world_size"] == 2 and r1["backend"] == "gloo"
    assert r1["rank_divergence"] == 0.0                      # the replicas stayed identical
    assert _max_diff(half.state_dict(), init) > 1e-3         # the parameters did move
    assert _max_diff(r1["model"], half.state_dict()) <= 1e-10
    assert r1["epoch"] == 1 and r1["generator"].dtype == torch.uint8

    ck = load_checkpoint(str(path))
    assert ck["epoch"] == 1 and _max_diff(ck["model"], r1["model"]) == 0.0
    r2 = train_ddp(config, 2, data=data, init_state=ck["model"], state=ck)
    assert r2["rank_divergence"] == 0.0 and r2["epoch"] == 2
    assert _max_diff(r2["model"], single.state_dict()) <= 1e-10
    assert r2["losses"] == pytest.approx(hist["losses"], rel=0, abs=1e-12)


def test_two_ranks_equal_single_process_on_default_qubit(digits):
    """QNode-backed head (default.qubit, backprop) under DDP: one step, shards of 20 and 19."""
    data = (digits[0][:39], digits[1][:39])
    init, single, _ = _single(CONFIG, data, "default.qubit")
    r = train_ddp(CONFIG, 2, data=data, init_state=init, device="default.qubit")
    assert r["rank_divergence"] == 0.0
    assert _max_diff(single.state_dict(), init) > 1e-3
    assert _max_diff(r["model"], single.state_dict()) <= 1e-10


def test_an_error_on_a_rank_is_one_qtnn_error():
    with pytest.raises(QtnnError, match=r"^distributed training failed on rank 0: x must have "
                                        r"shape \(\.\.\., 64\), got \(8, 5\)$"):
        train_ddp(CONFIG, 1, data=(torch.ones(8, 5), torch.zeros(8, dtype=torch.long)))


# ------------------------------------------------------------------ in-process pieces
def test_shard_covers_the_batch_in_order():
    for n in range(0, 9):
        idx = torch.randperm(n)
        parts = [shard(idx, r, 3) for r in range(3)]
        assert torch.equal(torch.cat(parts), idx)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_one_rank_group_equals_train_model_and_checkpoints(digits, tmp_path):
    """ddp_train_model inside a 1-rank gloo group (no spawn): same numbers as train_model,
    checkpoint callback and stop_after/state resume work as in train_model."""
    data = (digits[0][:50], digits[1][:50])
    config = HybridConfig(n_qubits=4, hidden=16, layers=1, batch_size=16, epochs=2, seed=1)
    init, single, hist = _single(config, data)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        model = HybridClassifier(config)
        model.load_state_dict(init)
        saved = []
        first = ddp_train_model(model, data, epochs=2, batch_size=16, lr=config.lr, seed=config.seed,
                                checkpoint=lambda m, s: saved.append(s["epoch"]), stop_after=1)
        assert saved == [1] and first["epoch"] == 1 and first["world_size"] == 1
        second = ddp_train_model(model, data, epochs=2, batch_size=16, lr=config.lr, seed=config.seed,
                                 state=first)
    finally:
        dist.destroy_process_group()
    assert second["losses"] == pytest.approx(hist["losses"], rel=0, abs=1e-12)
    assert _max_diff(model.state_dict(), single.state_dict()) <= 1e-12


def test_errors_and_environment(monkeypatch):
    with pytest.raises(QtnnError, match="needs an initialised torch.distributed process group"):
        ddp_train_model(torch.nn.Linear(2, 2), (torch.zeros(2, 2), torch.zeros(2)), epochs=1,
                        batch_size=1, lr=0.1, seed=0)
    with pytest.raises(QtnnError, match="nproc must be an integer >= 1, got 0"):
        train_ddp(CONFIG, 0)
    with pytest.raises(QtnnError, match="backend must be 'gloo' or 'nccl', got 'mpi'"):
        train_ddp(CONFIG, 2, backend="mpi")
    with pytest.raises(QtnnError, match="device must be 'reference' or a qtnn.quantum.device name"):
        train_ddp(CONFIG, 2, device="no.such.device")
    with pytest.raises(QtnnError, match="config must be a qtnn.apps.digits.HybridConfig"):
        train_ddp({"layers": 1}, 2)
    if not torch.cuda.is_available():
        with pytest.raises(QtnnError, match="torch_device='cuda' but torch.cuda.is_available"):
            train_ddp(CONFIG, 2, torch_device="cuda")
    assert default_backend("cuda") == "nccl" and default_backend("cpu") == "gloo"
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    assert not launched_by_torchrun()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched_by_torchrun()
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launched_by_torchrun()
    port = free_port()
    with socket.socket() as s:        # the port is free: it can be bound
        s.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_train_command_with_two_processes(tmp_path, capsys):
    from qtnn.cli import main

    out = tmp_path / "r.json"
    code = main(["train", "--nproc", "2", "--epochs", "1", "--qubits", "4", "--layers", "1",
                 "--shots", "100", "--fake", "none", "--json", str(out)])
    assert code == 0
    r = json.loads(out.read_text())
    assert r["distributed"] == {"world_size": 2, "backend": "gloo", "rank_divergence": 0.0}
    assert r["accuracy"]["hybrid_pennylane"] == r["accuracy"]["pennylane_on_reference"]
    assert r["jobs"]["qiskit.aer"]["jobs"] == 1
    text = capsys.readouterr().out
    assert "DistributedDataParallel on 2 processes" in text
    assert main(["train", "--nproc", "0", "--fake", "none"]) == 2
