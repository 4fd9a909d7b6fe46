"""The training loop shared by single-process and distributed (DDP) training.

:func:`train_model` runs Adam on cross-entropy over shuffled mini-batches,
with resumable state (optimizer, shuffling generator, losses, epoch) and an
optional per-epoch checkpoint callback; :func:`qtnn.apps.distributed.train_ddp`
runs the same loop on every rank of a process group.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from qtnn.errors import QtnnError
from qtnn.validate import check_int

if TYPE_CHECKING:
    from qtnn.apps.digits import HybridConfig
    pass

__all__ = ["train_model", "evaluate"]


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


def _checkpointer(path: str, config: HybridConfig) -> Any:
    from qtnn.checkpoint import save_checkpoint

    def save(model: nn.Module, state: dict[str, Any]) -> None:
        save_checkpoint(path, {"config": asdict(config), "model": model.state_dict(), **state})

    return save
