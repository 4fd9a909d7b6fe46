"""The main job: a hybrid classifier on scikit-learn's bundled digits.

``MPOLinear (64 -> hidden) -> tanh -> QuantumHead (6 qubits)``, or with
``head="disentangled"`` a :class:`~qtnn.nn.DisentangledLinear` to the 10
classes.  Trained on the PennyLane path (default.qubit, backprop) and on the
reference path, compared with a dense MLP of equal width, then evaluated with
shots on Qiskit Aer and on an IBM device model with noise.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from qtnn.apps.digits import HybridClassifier, HybridConfig
from qtnn.apps.loop import _checkpointer, evaluate, train_model
from qtnn.errors import QtnnError
from qtnn.validate import check_int

if TYPE_CHECKING:
    pass

__all__ = ["run_train", "load_hybrid", "hybrid_from_checkpoint"]


def _fit(model: HybridClassifier, data: tuple[Any, ...], config: HybridConfig, *, nproc: int,
         device_name: str, torch_device: str, progress: bool, desc: str,
         state: dict[str, Any] | None = None, checkpoint: str | None = None) -> dict[str, Any]:
    """Train ``model`` in this process, or with DDP on ``nproc`` processes / the torchrun ranks.

    ``device_name`` is ``"reference"`` or the device the model's head already
    runs on (each rank builds its own).  The DDP result is loaded into ``model``.
    """
    from qtnn.apps.distributed import launched_by_torchrun

    if nproc == 1 and not launched_by_torchrun():
        return train_model(model, data, epochs=config.epochs, batch_size=config.batch_size,
                           lr=config.lr, seed=config.seed, progress=progress, desc=desc, state=state,
                           checkpoint=_checkpointer(checkpoint, config) if checkpoint else None)
    from qtnn.apps.distributed import train_ddp

    r = train_ddp(config, None if launched_by_torchrun() else nproc, data=data, device=device_name,
                  torch_device=torch_device, init_state=model.state_dict(), state=state,
                  checkpoint=checkpoint, progress=progress, desc=desc)
    model.load_state_dict(r["model"])
    return r


def _jobs(qdev: Any, fn: Any) -> tuple[Any, dict[str, int]]:
    """``fn()`` with the device's jobs and circuits counted (``qml.Tracker``)."""
    import pennylane as qml

    with qml.Tracker(qdev.pl) as tracker:
        out = fn()
    t = tracker.totals
    return out, {"jobs": int(t.get("jobs") or t.get("batches") or 0),
                 "circuits": int(t.get("executions") or 0)}


def _circuit_resources(model: HybridClassifier) -> dict[str, Any]:
    """The head's trained circuit and the input encoding in front of it (logical counts).

    The head encodes each input by ``StatePrep`` (``encoding="amplitude"``) or
    by a staircase of ``encoding_layers`` layers: its cost is that of the
    encoding of a generic input, decomposed into CX and one-qubit gates without
    a coupling map (a device adds routing; see ``qtnn depth --layer head`` and
    :func:`qtnn.analysis.model_depth_report` for transpiled counts).
    """
    head = model.head
    gates = head.body.circuit if hasattr(head, "body") else head.U
    st = gates.to_staircase()
    out: dict[str, Any] = {"qubits": st.n_qubits, "layers": st.layers, "two_qubit_gates": st.num_gates,
                           "depth": st.depth, "params": int(gates.angles.numel())}
    body = getattr(head, "body", None)      # a DisentangledLinear head: amplitude-encoded input
    enc = (_encoding_cost(st.n_qubits, body.encoding, body.encoding_layers) if body is not None
           else _encoding_cost(st.n_qubits, "amplitude", 1))
    if enc is not None:
        out["encoding"] = enc
        out["total_two_qubit_gates"] = enc["two_qubit_gates"] + st.num_gates
    return out


@functools.lru_cache(maxsize=16)
def _encoding_cost(n: int, encoding: str, layers: int) -> dict[str, Any] | None:
    """CX count, depth (measurement included) and fidelity of encoding a generic ``n``-qubit input.

    ``None`` without qiskit.
    """
    try:
        from qtnn.quantum.encoding import encoding_cost

        cost = encoding_cost(n, layers, backend=None, optimization_level=1)
    except ImportError:  # pragma: no cover - the quantum extra is installed with the main job
        return None
    c = cost["stateprep" if encoding == "amplitude" else "staircase"]
    kind = "amplitude (StatePrep)" if encoding == "amplitude" else f"staircase (D={layers})"
    return {"kind": kind, "two_qubit_gates": c["two_qubit"], "depth": c["depth"],
            "fidelity": c["fidelity"]}


def _device_cost(model: HybridClassifier, backend: str, seed: int) -> dict[str, Any]:
    """Encoding, head and total (with the read-out) transpiled for ``backend``: what it runs per input.

    :func:`qtnn.analysis.model_depth_report` of a generic input (optimization level 3).
    """
    from qtnn.analysis import model_depth_report

    rep = model_depth_report(model, backend, optimization_level=3, seed=seed)
    enc, total = rep.encoding, rep.total
    if enc is None or total is None:  # pragma: no cover - model_depth_report always sets both
        raise QtnnError(f"no encoding report for {backend!r}")
    return {"backend": backend, "encoding_two_qubit_gates": enc.two_qubit_gates,
            "head_two_qubit_gates": rep.two_qubit_gates, "total_two_qubit_gates": total.two_qubit_gates,
            "total_depth": total.depth, "total_swaps": total.swaps,
            "success_probability": total.success_probability,
            "success_with_readout": total.success_with_readout}


def load_hybrid(path: str) -> tuple[HybridClassifier, dict[str, Any]]:
    """Rebuild a :class:`HybridClassifier` from a checkpoint (weights only; never executes code).

    Returns the model and the full checkpoint dict (``epoch``, ``losses``, ...).

    Examples
    --------
    >>> import os, tempfile
    >>> from dataclasses import asdict
    >>> from qtnn.checkpoint import save_checkpoint
    >>> config = HybridConfig(layers=1)
    >>> path = os.path.join(tempfile.mkdtemp(), "hybrid.pt")
    >>> save_checkpoint(path, {"config": asdict(config), "model": HybridClassifier(config).state_dict(),
    ...                        "epoch": 0})
    >>> model, ck = load_hybrid(path)
    >>> type(model).__name__, ck["epoch"]
    ('HybridClassifier', 0)
    """
    from qtnn.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    return hybrid_from_checkpoint(ck, path), ck


def hybrid_from_checkpoint(ck: dict[str, Any], path: Any = "<checkpoint>") -> HybridClassifier:
    """The :class:`HybridClassifier` held by a loaded checkpoint dict (``path`` names it in errors).

    Examples
    --------
    >>> from dataclasses import asdict
    >>> config = HybridConfig(layers=1)
    >>> ck = {"config": asdict(config), "model": HybridClassifier(config).state_dict()}
    >>> type(hybrid_from_checkpoint(ck)).__name__
    'HybridClassifier'
    """
    if not isinstance(ck.get("config"), dict) or "model" not in ck:
        raise QtnnError(f"checkpoint {path!r} does not hold a hybrid classifier (config and model)")
    try:
        config = HybridConfig(**ck["config"])
    except TypeError as exc:
        raise QtnnError(f"checkpoint {path!r} has an unknown config: {exc}") from None
    model = HybridClassifier(config)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as exc:
        raise QtnnError(f"checkpoint {path!r}: its weights do not match its config: "
                        f"{str(exc).splitlines()[0]}") from None
    return model


def run_train(config: HybridConfig | None = None, *, train_device: str = "default.qubit",
              shots: int = 4000, fake: str | None = "fake:torino", fake_samples: int = 200,
              save: str | None = None, checkpoint: str | None = None, resume: str | None = None,
              progress: bool = True, nproc: int = 1, torch_device: str = "cpu") -> dict[str, Any]:
    """The full main job; returns every figure (see the module docstring).

    ``checkpoint`` writes the hybrid's training state after every epoch;
    ``resume`` continues from such a file (its config replaces ``config``), so
    the loss curve is the one an uninterrupted run with the same seed draws.
    ``nproc > 1`` trains the hybrid (on ``train_device`` and on the reference
    path) with DistributedDataParallel on that many local processes
    (:func:`qtnn.apps.distributed.train_ddp`); under ``torchrun`` every rank calls
    this function, trains its share, and ranks other than 0 return
    ``{"rank": r, ...}`` after training while rank 0 evaluates and reports.
    ``torch_device="cuda"`` runs the reference-path model and the dense MLP on
    the GPU (the PennyLane simulators take CPU tensors).  ``fig["jobs"]`` counts
    the jobs and circuits of the shot-based evaluations.

    Examples
    --------
    >>> r = run_train(HybridConfig(epochs=1, layers=1), fake=None, shots=100, progress=False)
    >>> sorted(r["accuracy"])
    ['aer_shots', 'dense_mlp', 'hybrid_pennylane', 'hybrid_reference', 'pennylane_on_reference']
    """
    import copy

    from qtnn.apps.digits import load_digits_split
    from qtnn.apps.distributed import _check_torch_device
    from qtnn.checkpoint import save_checkpoint
    from qtnn.quantum import device

    nproc = check_int("nproc", nproc, minimum=1)
    torch_device = _check_torch_device(torch_device)
    resumed: dict[str, Any] | None = None
    if resume:
        _, resumed = load_hybrid(resume)
        config = HybridConfig(**resumed["config"])
    config = (config or HybridConfig()).check()
    if fake and not fake.startswith(("fake:", "ibm:")):
        raise QtnnError(f"fake={fake!r} must be 'fake:<model>' (e.g. 'fake:torino'), 'ibm:<backend>' or "
                        "None; checked before training")
    if fake and fake.startswith("fake:"):
        from qtnn.quantum.ibm import fake_backend

        fake_backend(fake[5:], argument=f"fake={fake!r}")     # refuse a bad name before training
    t0 = time.perf_counter()
    xtr, ytr, xte, yte = load_digits_split(config.seed)
    fig: dict[str, Any] = {"config": asdict(config), "accuracy": {}, "seconds": {}, "jobs": {}}
    acc = fig["accuracy"]

    # 1. the hybrid trained on the PennyLane path
    torch.manual_seed(config.seed)
    hybrid = HybridClassifier(config)
    init_state = copy.deepcopy(hybrid.state_dict())
    if resumed is not None:
        hybrid.load_state_dict(resumed["model"])
        fig["resumed_from_epoch"] = int(resumed["epoch"])
    hybrid.set_backend("pennylane", device(train_device, wires=config.n_qubits))
    t = time.perf_counter()
    hist = _fit(hybrid, (xtr, ytr), config, nproc=nproc, device_name=train_device, torch_device="cpu",
                progress=progress, desc=f"hybrid ({train_device})", state=resumed, checkpoint=checkpoint)
    fig["seconds"]["train_pennylane"] = time.perf_counter() - t
    fig["losses_pennylane"] = hist["losses"]
    acc["hybrid_pennylane"] = evaluate(hybrid, xte, yte)
    hybrid.set_backend("reference")
    acc["pennylane_on_reference"] = evaluate(hybrid, xte, yte)

    # 2. the same model (same initial weights and seed) trained on the reference path
    ref = HybridClassifier(config)
    ref.load_state_dict(init_state)
    ref.to(torch_device)
    t = time.perf_counter()
    hist_ref = _fit(ref, (xtr, ytr), config, nproc=nproc, device_name="reference",
                    torch_device=torch_device, progress=progress, desc="hybrid (reference)")
    fig["seconds"]["train_reference"] = time.perf_counter() - t
    fig["losses_reference"] = hist_ref["losses"]
    if "world_size" in hist_ref:
        fig["distributed"] = {"world_size": hist_ref["world_size"], "backend": hist_ref["backend"],
                              "rank_divergence": max(hist["rank_divergence"],
                                                     hist_ref["rank_divergence"])}
        if hist_ref["rank"] != 0:       # torchrun: rank 0 evaluates and reports
            return {"rank": hist_ref["rank"], **fig}
    acc["hybrid_reference"] = evaluate(ref, xte, yte)

    # 3. a dense MLP of equal width
    torch.manual_seed(config.seed)
    mlp = nn.Sequential(nn.Linear(config.in_features, config.hidden), nn.Tanh(),
                        nn.Linear(config.hidden, config.n_classes)).double().to(torch_device)
    train_model(mlp, (xtr, ytr), epochs=config.epochs, batch_size=config.batch_size, lr=config.lr / 5,
                seed=config.seed, progress=progress, desc="dense MLP")
    acc["dense_mlp"] = evaluate(mlp, xte, yte)

    # 4. the trained hybrid with shots on Aer, and on a noisy IBM device model
    aer = device("qiskit.aer", wires=config.n_qubits, shots=shots, seed=config.seed)
    hybrid.set_backend("pennylane", aer)
    t = time.perf_counter()
    acc["aer_shots"], fig["jobs"]["qiskit.aer"] = _jobs(aer, lambda: evaluate(hybrid, xte, yte))
    fig["seconds"]["eval_aer"] = time.perf_counter() - t
    fig["shots"] = shots
    if fake:
        fdev = device(fake, wires=config.n_qubits, shots=shots, seed=config.seed)
        hybrid.set_backend("pennylane", fdev)
        n = min(fake_samples, len(xte))
        t = time.perf_counter()
        acc[f"{fake}_shots"], fig["jobs"][fake] = _jobs(fdev, lambda: evaluate(hybrid, xte[:n], yte[:n]))
        fig["seconds"]["eval_fake"] = time.perf_counter() - t
        hybrid.set_backend("reference")
        acc["reference_same_subset"] = evaluate(hybrid, xte[:n], yte[:n])
        fig["fake_samples"] = n
    hybrid.set_backend("reference")
    fig["resources"] = _circuit_resources(hybrid)
    if fake and fake.startswith("fake:") and hasattr(hybrid.head, "body"):
        fig["resources"]["device"] = _device_cost(hybrid, fake, config.seed)
    fig["params"] = {"hybrid": sum(p.numel() for p in hybrid.parameters()),
                     "dense_mlp": sum(p.numel() for p in mlp.parameters())}
    if save:
        save_checkpoint(save, {"config": asdict(config), "model": hybrid.state_dict(),
                               "epoch": config.epochs, "losses": hist["losses"]})
        fig["checkpoint"] = save
    fig["seconds"]["total"] = time.perf_counter() - t0
    return fig
