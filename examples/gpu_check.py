"""GPU check: do qtnn's GPU paths agree with the CPU, and how fast are they?

Agreement (float64, the CPU result is the reference, tolerance 1e-10):

1. ``MPOLinear`` forward and backward (output, input gradient, every core and
   bias gradient) at several shapes;
2. the hybrid classifier's reference path (``MPOLinear -> tanh -> QuantumHead``)
   forward and backward, and ``DisentangledLinear``'s reference path;
3. three Adam steps of :func:`qtnn.apps.loop.train_model` with the model on each
   device (parameters; tolerance 1e-8, see below);
4. ``lightning.gpu`` against ``default.qubit`` and Aer's GPU method against
   Aer's CPU statevector, when those GPU builds are installed
   (:func:`qtnn.quantum.gpu_backends`).

Speed (same run, CUDA synchronised): forward+backward of ``MPOLinear`` and of
the ``nn.Linear`` it replaces (float32, batch 256) on the CPU and the GPU, and
training-step throughput of the hybrid's reference path.  (The staircase
kernel of ``QuantumHead`` computes on the host; the GPU speeds up the
tensor-network layers around it.)

Run:  .venv/bin/python examples/gpu_check.py [--json runs/gpu_check.json] [--quick]

Without a CUDA GPU it says so, writes a report with ``"cuda_available":
false`` and exits 0.  ``--device cpu`` runs every check with the CPU standing
in for the GPU (a self-test of this script).  Exit code 1 if an agreement check
fails.  Training is compared at 1e-8 rather than 1e-10: Adam divides by
``sqrt(v) + 1e-8``, so a gradient entry that is zero up to rounding moves its
parameter by up to ``lr * 1e-16 / 1e-8`` per step on either device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

TOL = 1e-10
TRAIN_TOL = 1e-8


def _max_diff(a: Any, b: Any) -> float:
    return float((a.detach().double().cpu() - b.detach().double().cpu()).abs().max())


def _grads_diff(ma: Any, mb: Any) -> float:
    return max(_max_diff(p.grad, q.grad) for p, q in zip(ma.parameters(), mb.parameters(), strict=True))


def check_mpo_linear(dev: str) -> list[dict[str, Any]]:
    import torch

    from qtnn.nn import MPOLinear

    rows = []
    for (n_in, n_out, bond, batch) in ((64, 64, 8, 32), (256, 128, 16, 64), (1024, 1024, 32, 16)):
        torch.manual_seed(0)
        cpu = MPOLinear(n_in, n_out, bond, dtype=torch.float64)
        gpu = MPOLinear(n_in, n_out, bond, dtype=torch.float64)
        gpu.load_state_dict(cpu.state_dict())
        gpu.to(dev)
        x = torch.randn(batch, n_in, dtype=torch.float64, requires_grad=True)
        xg = x.detach().to(dev).requires_grad_(True)
        y, yg = cpu(x), gpu(xg)
        w = torch.randn_like(y)
        (y * w).sum().backward()
        (yg * w.to(dev)).sum().backward()
        diff = max(_max_diff(y, yg), _max_diff(x.grad, xg.grad), _grads_diff(cpu, gpu))
        rows.append({"check": "MPOLinear", "shape": [n_out, n_in], "bond": bond, "batch": batch,
                     "max_abs_diff": diff, "ok": diff <= TOL})
    return rows


def check_hybrid(dev: str) -> list[dict[str, Any]]:
    import torch
    from torch import nn

    from qtnn.apps.digits import HybridClassifier, HybridConfig, load_digits_split
    from qtnn.nn import DisentangledLinear

    xtr, ytr, _, _ = load_digits_split(0)
    rows = []
    for head in ("quantum", "disentangled"):
        config = HybridConfig(layers=2, head=head, seed=0)
        torch.manual_seed(0)
        cpu = HybridClassifier(config)
        gpu = HybridClassifier(config)
        gpu.load_state_dict(cpu.state_dict())
        gpu.to(dev)
        out, outg = cpu(xtr[:64]), gpu(xtr[:64].to(dev))
        nn.functional.cross_entropy(out, ytr[:64]).backward()
        nn.functional.cross_entropy(outg, ytr[:64].to(dev)).backward()
        diff = max(_max_diff(out, outg), _grads_diff(cpu, gpu))
        rows.append({"check": f"HybridClassifier (head={head}, reference path)", "batch": 64,
                     "max_abs_diff": diff, "ok": diff <= TOL})
    torch.manual_seed(1)
    lin = torch.nn.Linear(32, 16).double()
    dl = DisentangledLinear.from_linear(lin, out_layers=1, in_layers=1, max_bond=2)
    x = torch.randn(8, 32, dtype=torch.float64)
    y = dl(x)
    y_gpu = dl.to(dev)(x.to(dev))
    diff = _max_diff(y, y_gpu)
    rows.append({"check": "DisentangledLinear.from_linear (reference path)", "batch": 8,
                 "max_abs_diff": diff, "ok": diff <= TOL})
    return rows


def check_training(dev: str) -> list[dict[str, Any]]:
    import torch

    from qtnn.apps.digits import HybridClassifier, HybridConfig, load_digits_split
    from qtnn.apps.loop import train_model

    xtr, ytr, _, _ = load_digits_split(0)
    data = (xtr[:96], ytr[:96])
    config = HybridConfig(n_qubits=4, hidden=16, layers=2, batch_size=32, seed=0)
    models = []
    for where in ("cpu", dev):
        torch.manual_seed(0)
        m = HybridClassifier(config).to(where)
        train_model(m, data, epochs=1, batch_size=32, lr=config.lr, seed=0, progress=False)
        models.append(m)
    diff = max(_max_diff(p, q) for p, q in zip(models[0].parameters(), models[1].parameters(),
                                                strict=True))
    return [{"check": "train_model, 3 Adam steps (4 qubits)", "max_abs_diff": diff,
             "ok": diff <= TRAIN_TOL}]


def check_quantum_gpu(dev: str, backends: dict[str, bool]) -> list[dict[str, Any]]:
    """lightning.gpu and Aer's GPU method against their CPU counterparts (when installed)."""
    import torch

    from qtnn.quantum import StaircaseQNode, device

    rows: list[dict[str, Any]] = []
    x = torch.rand(4, 64, dtype=torch.float64)
    w = torch.rand(2, 5, 6, dtype=torch.float64)
    cases = [("lightning.gpu", "default.qubit", {}, "probs", backends["lightning.gpu"]),
             ("qiskit.aer", "qiskit.aer", {"device": "GPU"}, "state", backends["aer_gpu"])]
    for name, ref_name, opts, readout, available in cases:
        label = f"{name} ({'device=GPU' if opts else 'GPU build'}) vs {ref_name} (CPU)"
        if not available or not dev.startswith("cuda"):
            rows.append({"check": label, "skipped": "not installed here" if not available else
                         "--device cpu", "ok": True})
            continue
        try:
            gpu_q = StaircaseQNode(device(name, wires=6, **opts), 6, layers=2, readout=readout,
                                   gate_mode="native", diff_method=None)
            ref_q = StaircaseQNode(device(ref_name, wires=6), 6, layers=2, readout=readout,
                                   gate_mode="native", diff_method=None)
            with torch.no_grad():
                diff = _max_diff(gpu_q(x, w), ref_q(x, w))
            rows.append({"check": label, "max_abs_diff": diff, "ok": diff <= TOL})
        except Exception as exc:      # report, do not hide: a failing GPU build is a finding
            rows.append({"check": label, "error": f"{type(exc).__name__}: {exc}", "ok": False})
    return rows


def _time(fn: Any, dev: str, repeats: int) -> float:
    import torch

    fn()                                   # warm-up (plans, kernels, allocator)
    times = []
    for _ in range(repeats):
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def speed(dev: str, quick: bool) -> list[dict[str, Any]]:
    import torch
    from torch import nn

    from qtnn.apps.digits import HybridClassifier, HybridConfig
    from qtnn.nn import MPOLinear

    repeats = 3 if quick else 7
    rows = []
    sizes = ((1024, 16),) if quick else ((1024, 16), (4096, 32))
    for size, bond in sizes:
        row: dict[str, Any] = {"what": f"forward+backward, {size}x{size}, bond {bond}, batch 256, "
                                       "float32", "ms": {}}
        for where in ("cpu", dev):
            torch.manual_seed(0)
            mpo = MPOLinear(size, size, bond, out_dims=4, in_dims=4, device=where)
            lin = nn.Linear(size, size, device=where)
            x = torch.randn(256, size, device=where)
            for label, layer in (("MPOLinear", mpo), ("nn.Linear", lin)):
                def step(layer: Any = layer, x: Any = x) -> None:
                    layer.zero_grad(set_to_none=True)
                    layer(x).sum().backward()

                row["ms"][f"{label} {where}"] = 1000 * _time(step, where, repeats)
        row["mpo_speedup"] = row["ms"]["MPOLinear cpu"] / row["ms"][f"MPOLinear {dev}"]
        rows.append(row)
    hy: dict[str, Any] = {"what": "HybridClassifier reference path, forward+backward, batch 512, "
                                  "float64, samples/s", "samples_per_s": {}}
    for where in ("cpu", dev):
        torch.manual_seed(0)
        model = HybridClassifier(HybridConfig(layers=4)).to(where)
        xb = torch.rand(512, 64, dtype=torch.float64, device=where)

        def hstep(model: Any = model, xb: Any = xb) -> None:
            model.zero_grad(set_to_none=True)
            model(xb).sum().backward()

        hy["samples_per_s"][where] = 512 / _time(hstep, where, repeats)
    rows.append(hy)
    return rows


def main(argv: list[str] | None = None) -> int:
    import torch

    from qtnn.quantum import gpu_backends

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=os.path.join("runs", "gpu_check.json"), help="report path")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="device checked against the CPU (cpu: self-test of the script)")
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    args = ap.parse_args(argv)

    backends = gpu_backends()
    report: dict[str, Any] = {
        "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
        "cuda_version": torch.version.cuda, "python": platform.python_version(),
        "gpu_backends": backends, "device": args.device, "tolerance": TOL,
        "train_tolerance": TRAIN_TOL}
    if args.device == "cuda" and not torch.cuda.is_available():
        report["status"] = "no GPU"
        _write(args.json, report)
        print(f"no CUDA GPU here (torch {torch.__version__}, torch.cuda.is_available() is False): "
              f"nothing to check; lightning.gpu installed: {backends['lightning.gpu']}, Aer GPU: "
              f"{backends['aer_gpu']}. Wrote {args.json}")
        return 0
    dev = "cuda" if args.device == "cuda" else "cpu"
    if dev == "cuda":
        report["gpu_name"] = torch.cuda.get_device_name(0)
    t0 = time.perf_counter()
    checks = (check_mpo_linear(dev) + check_hybrid(dev) + check_training(dev)
              + check_quantum_gpu(dev, backends))
    report["agreement"] = checks
    report["speed"] = speed(dev, args.quick)
    report["seconds"] = time.perf_counter() - t0
    ok = all(c["ok"] for c in checks)
    report["status"] = "ok" if ok else "FAILED"
    _write(args.json, report)
    print(f"{'GPU: ' + report['gpu_name'] if dev == 'cuda' else 'self-test: CPU against CPU'}")
    for c in checks:
        what = (f"max |diff| {c['max_abs_diff']:.2e}" if "max_abs_diff" in c
                else c.get("skipped") or c.get("error"))
        print(f"  {'ok  ' if c['ok'] else 'FAIL'} {c['check']}: {what}")
    for s in report["speed"]:
        vals = s.get("ms") or s.get("samples_per_s")
        print(f"  {s['what']}: " + ", ".join(f"{k} {v:.1f}" for k, v in vals.items()))
    print(f"{report['status']}; wrote {args.json}")
    return 0 if ok else 1


def _write(path: str, report: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
