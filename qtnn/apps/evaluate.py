"""Evaluate a saved hybrid classifier (``qtnn train --save``) on any device (``qtnn eval``).

The device and its options are built -- and so checked -- before the
checkpoint and the data are loaded; the test split is the one the model was
trained against (the seed of its config).  Progress goes to stderr, one line
per batch (one job per batch on Qiskit devices).

Examples
--------
>>> import os, tempfile
>>> from dataclasses import asdict
>>> from qtnn.checkpoint import save_checkpoint
>>> from qtnn.apps.digits import HybridConfig, HybridClassifier
>>> path = os.path.join(tempfile.mkdtemp(), "hybrid.pt")
>>> cfg = HybridConfig(layers=1)
>>> save_checkpoint(path, {"config": asdict(cfg), "model": HybridClassifier(cfg).state_dict(), "epoch": 0})
>>> r = run_eval(path, "default.qubit", samples=20, progress=False)
>>> r["samples"], r["device"], 0.0 <= r["accuracy"] <= 1.0
(20, 'default.qubit', True)
"""

from __future__ import annotations

import sys
import time
from typing import Any

from qtnn.validate import check_int

__all__ = ["run_eval"]


def run_eval(path: str, device_name: str = "fake:torino", *, shots: int | None = 4000,
             mitigation: str | None = None, samples: int | None = None, batch_size: int = 100,
             seed: int | None = None, job_timeout: float | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Accuracy of the checkpoint ``path`` on ``device_name`` (and exactly, on the same samples).

    Parameters
    ----------
    path : str
        A checkpoint written by ``qtnn train --save`` (:func:`qtnn.train.load_hybrid`).
    device_name : str
        Any name of :func:`qtnn.quantum.device`.
    shots : int or None
        ``None``: exact (simulators only).
    mitigation : {None, "readout", "zne", "readout+zne"}
        ``fake:`` / ``ibm:`` devices (:mod:`qtnn.quantum.mitigation`; ``"zne"`` runs every
        circuit at the noise scales 1 and 3: twice the shots).
    samples : int, optional
        The first ``samples`` test samples (default all).
    batch_size : int
        Samples per forward call (one job each on Qiskit devices).
    seed : int, optional
        Sampler seed (default: the model's training seed).
    job_timeout : float, optional
        Per-job limit on ``fake:`` / ``ibm:`` devices (see :func:`qtnn.quantum.device`).
    progress : bool
        One line per batch on stderr.

    Returns
    -------
    dict
        ``accuracy``, ``exact_accuracy`` (reference path, same samples),
        ``samples``, ``seconds``, ``jobs``, ``device``, ``shots``, ``mitigation``,
        ``config``, and for Qiskit devices ``compiled_two_qubit`` / ``compiled_depth``
        of the first compiled circuit.
    """
    import torch

    from qtnn.apps.digits import load_digits_split
    from qtnn.apps.train import load_hybrid
    from qtnn.quantum import device

    batch_size = check_int("batch_size", batch_size, minimum=1)
    if samples is not None:
        samples = check_int("samples", samples, minimum=1)
    opts: dict[str, Any] = {}
    if mitigation is not None:
        opts["mitigation"] = mitigation
    if job_timeout is not None:
        opts["job_timeout"] = job_timeout
    t0 = time.perf_counter()
    model, ck = load_hybrid(path)
    cfg = ck["config"]
    dev = device(device_name, wires=int(cfg["n_qubits"]), shots=shots,
                 seed=int(cfg.get("seed", 0)) if seed is None else seed, **opts)
    _, _, xte, yte = load_digits_split(int(cfg.get("seed", 0)))
    n = len(xte) if samples is None else min(samples, len(xte))
    xte, yte = xte[:n], yte[:n]
    with torch.no_grad():
        exact = float((model(xte).argmax(-1) == yte).double().mean())
    model.set_backend("pennylane", dev)
    correct = 0
    t = time.perf_counter()
    with torch.no_grad():
        for start in range(0, n, batch_size):
            xb, yb = xte[start:start + batch_size], yte[start:start + batch_size]
            correct += int((model(xb).argmax(-1) == yb).sum())
            if progress:
                done = min(start + batch_size, n)
                print(f"eval {device_name}: {done}/{n} samples, accuracy so far {correct / done:.4f}, "
                      f"{time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    out: dict[str, Any] = {"accuracy": correct / n, "exact_accuracy": exact, "samples": n,
                           "device": device_name, "shots": shots, "mitigation": mitigation,
                           "seconds": round(time.perf_counter() - t, 2),
                           "seconds_total": round(time.perf_counter() - t0, 2), "config": cfg}
    compiled = getattr(dev.pl, "last_compiled", None)
    if compiled:
        qc = compiled[0]
        out["compiled_two_qubit"] = sum(1 for inst in qc.data if inst.operation.num_qubits == 2)
        out["compiled_depth"] = int(qc.depth())
    if hasattr(dev.pl, "jobs_submitted"):
        out["jobs"] = int(dev.pl.jobs_submitted)
    return out



def add_parser(sub: Any) -> None:
    """The ``qtnn eval`` sub-command (added to the CLI's sub-parsers)."""
    e = sub.add_parser("eval", help="evaluate a saved hybrid (qtnn train --save) on any device, with "
                                    "progress and JSON")
    e.add_argument("model", metavar="MODEL", help="checkpoint written by qtnn train --save "
                                                  "(e.g. runs/hybrid.pt)")
    e.add_argument("--device", default="fake:torino",
                   help="device name (default fake:torino; e.g. qiskit.aer, default.qubit, ibm:<backend>)")
    e.add_argument("--shots", type=int, default=4000,
                   help="shots (default 4000); 0 for exact results on a simulator")
    e.add_argument("--mitigation", choices=["none", "readout", "zne", "readout+zne"], default="none",
                   help="error mitigation on fake:/ibm: devices: readout correction, zero-noise "
                        "extrapolation (scales 1, 3: twice the shots), or both (default none)")
    e.add_argument("--samples", type=int, help="evaluate the first N test samples (default all)")
    e.add_argument("--batch-size", type=int, default=100, help="samples per job (default 100)")
    e.add_argument("--job-timeout", type=float, help="seconds per job on fake:/ibm: devices")
    e.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")


def cmd_eval(args: Any) -> dict[str, Any]:
    """Run ``qtnn eval`` from parsed arguments; prints a summary line."""
    r = run_eval(args.model, args.device, shots=args.shots or None,
                 mitigation=None if args.mitigation == "none" else args.mitigation,
                 samples=args.samples, batch_size=args.batch_size, job_timeout=args.job_timeout)
    shots = f"{r['shots']} shots" if r["shots"] else "exact"
    mit = f", {r['mitigation']} mitigation" if r["mitigation"] else ""
    print(f"{args.model} on {r['device']} ({shots}{mit}): accuracy {r['accuracy']:.4f} on {r['samples']} "
          f"test samples (exact: {r['exact_accuracy']:.4f}); {r['seconds']:.1f} s")
    return r
