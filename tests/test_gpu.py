"""GPU paths: CUDA torch for the classical path and MPOLinear, lightning.gpu and Aer's GPU method.

The CUDA tests skip cleanly on machines without a GPU; the device-factory
errors and examples/gpu_check.py are tested everywhere.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qtnn import QtnnError
from qtnn.quantum import device, gpu_backends

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "gpu_check.py"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------ everywhere
def test_gpu_backends_report():
    b = gpu_backends()
    assert set(b) == {"torch_cuda", "lightning.gpu", "aer_gpu"}
    assert b["torch_cuda"] == torch.cuda.is_available()


@pytest.mark.skipif(gpu_backends()["lightning.gpu"], reason="lightning.gpu is installed")
def test_lightning_gpu_not_installed_is_a_clear_error():
    with pytest.raises(QtnnError, match="device 'lightning.gpu' needs PennyLane Lightning's GPU build "
                                        r"\(pip install pennylane-lightning-gpu"):
        device("lightning.gpu", wires=2)


@pytest.mark.skipif(gpu_backends()["aer_gpu"], reason="Aer has a GPU method here")
def test_aer_gpu_not_available_is_a_clear_error():
    for name, kw in (("qiskit.aer", {}), ("fake:manila", {"shots": 10})):
        with pytest.raises(QtnnError, match=f"device='GPU' for '{name}' needs a GPU build of Qiskit "
                                            "Aer"):
            device(name, wires=2, device="GPU", **kw)
    with pytest.raises(QtnnError, match="device='TPU' for 'qiskit.aer' must be 'CPU' or 'GPU'"):
        device("qiskit.aer", wires=2, device="TPU")
    assert device("qiskit.aer", wires=2, device="cpu").exact      # the CPU method stays available


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_without_gpu_says_so_and_exits_0(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--json", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA GPU here" in proc.stdout
    report = json.loads(out.read_text())
    assert report["status"] == "no GPU" and report["cuda_available"] is False


def test_gpu_check_self_test_on_cpu(tmp_path, capsys):
    """--device cpu runs every check with the CPU standing in for the GPU (identical numbers)."""
    out = tmp_path / "gpu.json"
    assert _script().main(["--device", "cpu", "--quick", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["status"] == "ok"
    measured = [c for c in report["agreement"] if "max_abs_diff" in c]
    assert len(measured) == 7 and all(c["max_abs_diff"] == 0.0 for c in measured)
    assert {s["what"].split(",")[0] for s in report["speed"]} >= {"forward+backward"}
    assert "ok; wrote" in capsys.readouterr().out


def test_cuda_torch_device_refused_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from qtnn.cli import main

    assert main(["train", "--torch-device", "cuda", "--fake", "none"]) == 2


# ------------------------------------------------------------------ on a GPU
@cuda
def test_mpo_linear_on_cuda_matches_cpu():
    from qtnn.nn import MPOLinear

    torch.manual_seed(0)
    cpu = MPOLinear(256, 128, 16, dtype=torch.float64)
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(64, 256, dtype=torch.float64)
    y, yg = cpu(x), gpu(x.cuda())
    assert yg.is_cuda
    torch.testing.assert_close(yg.cpu(), y, rtol=0, atol=1e-10)
    y.square().sum().backward()
    yg.square().sum().backward()
    for p, q in zip(cpu.parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=0, atol=1e-10)


@cuda
def test_hybrid_reference_path_trains_on_cuda_like_on_cpu():
    from qtnn.apps.digits import HybridClassifier, HybridConfig, load_digits_split
    from qtnn.apps.loop import evaluate, train_model

    xtr, ytr, xte, yte = load_digits_split(0)
    config = HybridConfig(n_qubits=4, hidden=16, layers=2, batch_size=32, seed=0)
    models = []
    for where in ("cpu", "cuda"):
        torch.manual_seed(0)
        m = HybridClassifier(config).to(where)
        train_model(m, (xtr[:96], ytr[:96]), epochs=1, batch_size=32, lr=config.lr, seed=0,
                    progress=False)
        models.append(m)
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert q.is_cuda
        torch.testing.assert_close(q.cpu(), p, rtol=0, atol=1e-8)
    assert evaluate(models[1], xte, yte) == evaluate(models[0], xte, yte)


@cuda
@pytest.mark.parametrize("layout", ["staircase", "brickwall"])
@pytest.mark.parametrize("readout", ["probs", "state"])
def test_large_batches_run_on_the_gpu_like_the_host_kernel(readout, layout):
    # batch x 2^n >= GPU_OPS_MIN_ENTRIES: torch ops on the device instead of the host kernel
    import qtnn.nn.quantum_layers as ql
    from qtnn.nn import QuantumStaircase

    torch.manual_seed(0)
    n = 12
    cpu = QuantumStaircase(n, 2, readout=readout, dtype=torch.float64, layout=layout)
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.rand(ql.GPU_OPS_MIN_ENTRIES // 2**n, 2**n, dtype=torch.float64)
    assert ql._device_ops(x.cuda(), n) and not ql._device_ops(x, n)
    y, yg = cpu(x), gpu(x.cuda())
    torch.testing.assert_close(yg.cpu(), y, rtol=0, atol=1e-12)
    w = torch.rand_like(y)
    (y * w).sum().backward()
    (yg * w.cuda()).sum().backward()
    torch.testing.assert_close(gpu.circuit.angles.grad.cpu(), cpu.circuit.angles.grad, rtol=0,
                               atol=1e-9)


@cuda
def test_train_ddp_one_rank_on_cuda_with_nccl():
    import torch.distributed as dist

    if not dist.is_nccl_available():
        pytest.skip("no NCCL")
    from qtnn.apps.digits import HybridConfig, load_digits_split
    from qtnn.apps.distributed import train_ddp

    xtr, ytr, _, _ = load_digits_split(0)
    r = train_ddp(HybridConfig(n_qubits=4, hidden=16, layers=1, batch_size=16, epochs=1), 1,
                  data=(xtr[:32], ytr[:32]), torch_device="cuda")
    assert r["backend"] == "nccl" and r["world_size"] == 1


@pytest.mark.skipif(not gpu_backends()["lightning.gpu"], reason="lightning.gpu is not installed")
def test_lightning_gpu_matches_default_qubit():
    from qtnn.quantum import StaircaseQNode

    x = torch.rand(3, 16, dtype=torch.float64)
    w = torch.rand(1, 3, 6, dtype=torch.float64)
    a = StaircaseQNode(device("lightning.gpu", 4), 4, 1, readout="probs", gate_mode="native",
                       diff_method=None)
    b = StaircaseQNode(device("default.qubit", 4), 4, 1, readout="probs", gate_mode="native",
                       diff_method=None)
    torch.testing.assert_close(a(x, w), b(x, w), rtol=0, atol=1e-10)


@pytest.mark.skipif(not gpu_backends()["aer_gpu"], reason="Aer has no GPU method here")
def test_aer_gpu_matches_aer_cpu():
    from qtnn.quantum import StaircaseQNode

    x = torch.rand(3, 16, dtype=torch.float64)
    w = torch.rand(1, 3, 6, dtype=torch.float64)
    a = StaircaseQNode(device("qiskit.aer", 4, device="GPU"), 4, 1, readout="state", diff_method=None)
    b = StaircaseQNode(device("qiskit.aer", 4), 4, 1, readout="state", diff_method=None)
    torch.testing.assert_close(a(x, w), b(x, w), rtol=0, atol=1e-10)
