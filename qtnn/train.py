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

from qtnn._validate import check_choice, check_int
from qtnn.errors import QtnnError

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
        for name in ("in_features", "hidden", "bond_dim", "n_qubits", "n_classes", "epochs",
                     "batch_size"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("layers", self.layers, minimum=0)
        check_choice("head", self.head, ("quantum", "disentangled"))
        if self.hidden > 2**self.n_qubits:
            raise QtnnError(f"hidden={self.hidden} does not fit the 2**n_qubits={2**self.n_qubits} "
                            "amplitudes of the head")
        if not self.lr > 0:
            raise QtnnError(f"lr must be positive, got {self.lr}")
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


def train_model(model: nn.Module, data: tuple[Any, ...], *, epochs: int, batch_size: int, lr: float,
                seed: int, progress: bool = True, desc: str = "train",
                state: dict[str, Any] | None = None,
                checkpoint: Any = None, stop_after: int | None = None) -> dict[str, Any]:
    """Adam on cross-entropy; returns ``{"losses": per-epoch mean loss, ...}``.

    ``state`` (from a checkpoint) resumes the optimizer, the shuffling RNG and
    the loss history, so the curve continues exactly as an uninterrupted run.
    ``checkpoint(model, state)`` is called after every epoch if given.
    ``stop_after`` ends after that many epochs in this call (for tests).
    """
    from tqdm.auto import tqdm

    xtr, ytr = data[0], data[1]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    start = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        losses = list(state["losses"])
        start = int(state["epoch"])
    bar = tqdm(range(start, epochs), desc=desc, disable=not progress, leave=False)
    for done, epoch in enumerate(bar, start=1):
        model.train()
        total, count = 0.0, 0
        for idx in _batches(len(xtr), batch_size, gen):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
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
    """Accuracy of ``argmax model(x)`` against ``y``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i: i + batch_size]).argmax(-1) == y[i: i + batch_size]).sum())
    return correct / len(x)


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
    model.load_state_dict(ck["model"])
    return model, ck


def run_train(config: HybridConfig | None = None, *, train_device: str = "default.qubit",
              shots: int = 4000, fake: str | None = "fake:torino", fake_samples: int = 200,
              save: str | None = None, checkpoint: str | None = None, resume: str | None = None,
              progress: bool = True) -> dict[str, Any]:
    """The full main job; returns every figure (see the module docstring).

    ``checkpoint`` writes the hybrid's training state after every epoch;
    ``resume`` continues from such a file (its config replaces ``config``), so
    the loss curve is the one an uninterrupted run with the same seed draws.

    Examples
    --------
    >>> r = run_train(HybridConfig(epochs=1, layers=1), fake=None, shots=100, progress=False)
    >>> sorted(r["accuracy"])
    ['aer_shots', 'dense_mlp', 'hybrid_pennylane', 'hybrid_reference', 'pennylane_on_reference']
    """
    import copy

    from qtnn.checkpoint import save_checkpoint
    from qtnn.demo import load_digits_split
    from qtnn.quantum import device

    resumed: dict[str, Any] | None = None
    if resume:
        _, resumed = load_hybrid(resume)
        config = HybridConfig(**resumed["config"])
    config = (config or HybridConfig()).check()
    t0 = time.perf_counter()
    xtr, ytr, xte, yte = load_digits_split(config.seed)
    fig: dict[str, Any] = {"config": asdict(config), "accuracy": {}, "seconds": {}}
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
    hist = train_model(hybrid, (xtr, ytr), epochs=config.epochs, batch_size=config.batch_size,
                       lr=config.lr, seed=config.seed, progress=progress, desc=f"hybrid ({train_device})",
                       state=resumed, checkpoint=_checkpointer(checkpoint, config) if checkpoint else None)
    fig["seconds"]["train_pennylane"] = time.perf_counter() - t
    fig["losses_pennylane"] = hist["losses"]
    acc["hybrid_pennylane"] = evaluate(hybrid, xte, yte)
    hybrid.set_backend("reference")
    acc["pennylane_on_reference"] = evaluate(hybrid, xte, yte)

    # 2. the same model (same initial weights and seed) trained on the reference path
    ref = HybridClassifier(config)
    ref.load_state_dict(init_state)
    t = time.perf_counter()
    hist_ref = train_model(ref, (xtr, ytr), epochs=config.epochs, batch_size=config.batch_size,
                           lr=config.lr, seed=config.seed, progress=progress, desc="hybrid (reference)")
    fig["seconds"]["train_reference"] = time.perf_counter() - t
    fig["losses_reference"] = hist_ref["losses"]
    acc["hybrid_reference"] = evaluate(ref, xte, yte)

    # 3. a dense MLP of equal width
    torch.manual_seed(config.seed)
    mlp = nn.Sequential(nn.Linear(config.in_features, config.hidden), nn.Tanh(),
                        nn.Linear(config.hidden, config.n_classes)).double()
    train_model(mlp, (xtr, ytr), epochs=config.epochs, batch_size=config.batch_size, lr=config.lr / 5,
                seed=config.seed, progress=progress, desc="dense MLP")
    acc["dense_mlp"] = evaluate(mlp, xte, yte)

    # 4. the trained hybrid with shots on Aer, and on a noisy IBM device model
    hybrid.set_backend("pennylane", device("qiskit.aer", wires=config.n_qubits, shots=shots,
                                           seed=config.seed))
    t = time.perf_counter()
    acc["aer_shots"] = evaluate(hybrid, xte, yte)
    fig["seconds"]["eval_aer"] = time.perf_counter() - t
    fig["shots"] = shots
    if fake:
        hybrid.set_backend("pennylane", device(fake, wires=config.n_qubits, shots=shots,
                                               seed=config.seed))
        n = min(fake_samples, len(xte))
        t = time.perf_counter()
        acc[f"{fake}_shots"] = evaluate(hybrid, xte[:n], yte[:n])
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
