"""The main job: a hybrid classifier on scikit-learn's bundled digits.

``MPOLinear (64 -> hidden) -> tanh -> QuantumHead (6 qubits)``, or with
``head="disentangled"`` a :class:`~qtnn.nn.DisentangledLinear` to the 10
classes.  Trained on the PennyLane path (default.qubit, backprop) and on the
reference path, compared with a dense MLP of equal width, then evaluated with
shots on Qiskit Aer and on an IBM device model with noise.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from qtnn.errors import QtnnError
from qtnn.validate import check_alloc, check_choice, check_int, check_real, pow2

if TYPE_CHECKING:
    from qtnn.nn.quantum_layers import DisentangledLinear, QuantumHead

__all__ = ["HybridConfig", "HybridClassifier", "train_model", "evaluate", "run_train", "load_hybrid"]


@dataclass
class HybridConfig:
    """Architecture and training settings (stored in checkpoints).

    Examples
    --------
    >>> HybridConfig().n_qubits
    6
    """

    in_features: int = 64
    hidden: int = 64
    bond_dim: int = 8
    n_qubits: int = 6
    layers: int = 4
    n_classes: int = 10
    head: str = "quantum"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.01
    seed: int = 0

    def check(self) -> HybridConfig:
        """Validate every field; returns ``self`` (raises :class:`~qtnn.errors.QtnnError`).

        Examples
        --------
        >>> HybridConfig(layers=2).check().layers
        2
        """
        for name in ("in_features", "hidden", "bond_dim", "n_qubits", "n_classes", "epochs",
                     "batch_size"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("layers", self.layers, minimum=0)
        check_int("seed", self.seed, minimum=0)
        check_choice("head", self.head, ("quantum", "disentangled"))
        if self.hidden > pow2(self.n_qubits):
            raise QtnnError(f"hidden={self.hidden} does not fit the 2**n_qubits={pow2(self.n_qubits):g} "
                            "amplitudes of the head")
        check_real("lr", self.lr, minimum=0, strict_min=True)
        check_alloc(f"the head's gate angles (layers={self.layers}, n_qubits={self.n_qubits})",
                    self.layers * max(self.n_qubits - 1, 0) * 6,
                    hint="use fewer layers or qubits")
        return self


class HybridClassifier(nn.Module):
    """``MPOLinear -> tanh -> QuantumHead`` (or ``DisentangledLinear``).

    Examples
    --------
    >>> import torch
    >>> model = HybridClassifier(HybridConfig(layers=1))      # float64 by default
    >>> tuple(model(torch.rand(3, 64, dtype=torch.float64)).shape)
    (3, 10)
    """

    def __init__(self, config: HybridConfig, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        from qtnn.nn import DisentangledLinear, MPOLinear, QuantumHead

        self.config = config.check()
        c = config
        self.features = MPOLinear(c.in_features, c.hidden, c.bond_dim, dtype=dtype)
        self.head: QuantumHead | DisentangledLinear
        if c.head == "quantum":
            self.head = QuantumHead(c.hidden, c.n_qubits, c.layers, c.n_classes, dtype=dtype)
        else:
            head = DisentangledLinear(c.hidden, c.n_classes, c.layers, c.layers, c.bond_dim,
                                      dtype=dtype)
            self.head = head
            with torch.no_grad():  # start from random circuits, not the identity
                for g in (head.U, head.V):
                    g.angles.uniform_(0, 6.283185307179586)

    def set_backend(self, backend: str, device: Any = None) -> None:
        """Switch the quantum part between the reference path and a PennyLane device."""
        self.head.set_backend(backend, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.features(x)))


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    return [perm[i: i + batch_size] for i in range(0, n, batch_size)]


def _training_state(model: nn.Module, lr: float, seed: int, state: dict[str, Any] | None
                    ) -> tuple[torch.optim.Optimizer, torch.Generator, list[float], int]:
    """Adam, the shuffling generator, the loss history and the first epoch, resumed from
    ``state`` (a checkpoint's training state) when given."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    start = 0
    if state is not None:
        missing = {"optimizer", "generator", "losses", "epoch"} - set(state)
        if missing:
            raise QtnnError(f"state must be a training state from a checkpoint with keys epoch, "
                            f"generator, losses and optimizer; missing {sorted(missing)}")
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        losses = list(state["losses"])
        start = int(state["epoch"])
    return opt, gen, losses, start


def train_model(model: nn.Module, data: tuple[Any, ...], *, epochs: int, batch_size: int, lr: float,
                seed: int, progress: bool = True, desc: str = "train",
                state: dict[str, Any] | None = None,
                checkpoint: Any = None, stop_after: int | None = None) -> dict[str, Any]:
    """Adam on cross-entropy; returns ``{"losses": per-epoch mean loss, ...}``.

    Batches are moved to the device of the model's parameters (CPU or CUDA).

    ``state`` (from a checkpoint) resumes the optimizer, the shuffling RNG and
    the loss history, so the curve continues exactly as an uninterrupted run.
    ``checkpoint(model, state)`` is called after every epoch if given.
    ``stop_after`` ends after that many epochs in this call (for tests).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(4, 3).double()
    >>> x, y = torch.randn(12, 4, dtype=torch.float64), torch.randint(0, 3, (12,))
    >>> len(train_model(model, (x, y), epochs=2, batch_size=4, lr=0.1, seed=0, progress=False)["losses"])
    2
    """
    from tqdm.auto import tqdm

    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    xtr, ytr = data[0], data[1]
    opt, gen, losses, start = _training_state(model, lr, seed, state)
    dev = _model_device(model)
    # the label range once, checked against the class count at the first forward pass
    # (not per batch: each check would be two device syncs on the hot path)
    y_range = (int(ytr.min()), int(ytr.max())) if len(ytr) else None
    bar = tqdm(range(start, epochs), desc=desc, disable=not progress, leave=False)
    for done, epoch in enumerate(bar, start=1):
        model.train()
        total, count = 0.0, 0
        for idx in _batches(len(xtr), batch_size, gen):
            opt.zero_grad()
            logits = model(xtr[idx].to(dev))
            if y_range is not None:
                if y_range[0] < 0 or y_range[1] >= logits.shape[-1]:
                    raise QtnnError(f"labels (data[1]) must be class indices in [0, "
                                    f"{logits.shape[-1]}), got values from {y_range[0]} to "
                                    f"{y_range[1]}")
                y_range = None
            loss = nn.functional.cross_entropy(logits, ytr[idx].to(dev))
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        losses.append(total / count)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        new_state = {"epoch": epoch + 1, "optimizer": opt.state_dict(),
                     "generator": gen.get_state(), "losses": losses}
        if checkpoint is not None:
            checkpoint(model, new_state)
        if stop_after is not None and done >= stop_after:
            break
    return {"losses": losses}


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Accuracy of ``argmax model(x)`` against ``y`` (batches moved to the model's device).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(2, 2, bias=False)
    >>> _ = model.weight.data.copy_(torch.eye(2))
    >>> evaluate(model, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    0.5
    """
    if len(x) == 0:
        raise QtnnError("x is empty: evaluate needs at least one sample")
    model.eval()
    dev = _model_device(model)
    correct = 0
    for i in range(0, len(x), batch_size):
        pred = model(x[i: i + batch_size].to(dev)).argmax(-1).cpu()
        correct += int((pred == y[i: i + batch_size].cpu()).sum())
    return correct / len(x)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _fit(model: HybridClassifier, data: tuple[Any, ...], config: HybridConfig, *, nproc: int,
         device_name: str, torch_device: str, progress: bool, desc: str,
         state: dict[str, Any] | None = None, checkpoint: str | None = None) -> dict[str, Any]:
    """Train ``model`` in this process, or with DDP on ``nproc`` processes / the torchrun ranks.

    ``device_name`` is ``"reference"`` or the device the model's head already
    runs on (each rank builds its own).  The DDP result is loaded into ``model``.
    """
    from qtnn.distributed import launched_by_torchrun

    if nproc == 1 and not launched_by_torchrun():
        return train_model(model, data, epochs=config.epochs, batch_size=config.batch_size,
                           lr=config.lr, seed=config.seed, progress=progress, desc=desc, state=state,
                           checkpoint=_checkpointer(checkpoint, config) if checkpoint else None)
    from qtnn.distributed import train_ddp

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
    head = model.head
    gates = head.body.circuit if hasattr(head, "body") else head.U
    st = gates.to_staircase()
    return {"qubits": st.n_qubits, "layers": st.layers, "two_qubit_gates": st.num_gates,
            "depth": st.depth, "params": int(gates.angles.numel())}


def _checkpointer(path: str, config: HybridConfig) -> Any:
    from qtnn.checkpoint import save_checkpoint

    def save(model: nn.Module, state: dict[str, Any]) -> None:
        save_checkpoint(path, {"config": asdict(config), "model": model.state_dict(), **state})

    return save


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
    return model, ck


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
    (:func:`qtnn.distributed.train_ddp`); under ``torchrun`` every rank calls
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

    from qtnn.checkpoint import save_checkpoint
    from qtnn.demo import load_digits_split
    from qtnn.distributed import _check_torch_device
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
    fig["params"] = {"hybrid": sum(p.numel() for p in hybrid.parameters()),
                     "dense_mlp": sum(p.numel() for p in mlp.parameters())}
    if save:
        save_checkpoint(save, {"config": asdict(config), "model": hybrid.state_dict(),
                               "epoch": config.epochs, "losses": hist["losses"]})
        fig["checkpoint"] = save
    fig["seconds"]["total"] = time.perf_counter() - t0
    return fig
