"""The main job until the hybrid demo lands: compress a trained layer and report.

Trains a small MLP on scikit-learn's bundled digits (8x8 = 64 pixels, no
network needed), then replaces its first layer by :class:`~qtnn.nn.MPOLinear`
at several bonds, reporting parameters, relative weight error, the TT-SVD
bound, the bond entropies and the test accuracy (before and after a short
fine-tune of the compressed model).
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["run_compression_demo"]


def run_compression_demo(seed: int = 0, hidden: int = 256, bonds: tuple[int, ...] = (1, 2, 4, 8, 16),
                         epochs: int = 30, finetune_epochs: int = 5,
                         progress: bool = True) -> dict[str, Any]:
    """Train, compress the 64 -> ``hidden`` layer at each bond, report.

    Examples
    --------
    >>> r = run_compression_demo(hidden=32, bonds=(2,), epochs=1, finetune_epochs=1, progress=False)
    >>> sorted(r)
    ['dense', 'hidden', 'rows', 'seconds']
    """
    import copy

    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from qtnn.apps.digits import load_digits_split
    from qtnn.apps.loop import evaluate, train_model
    from qtnn.errors import QtnnError
    from qtnn.nn import MPOLinear
    from qtnn.validate import check_alloc, check_bool, check_int

    seed = check_int("seed", seed, minimum=0, maximum=2**32 - 1)
    hidden = check_int("hidden", hidden, minimum=1)
    check_alloc(f"a 64 -> {hidden} -> 10 MLP", 3.0 * 74 * hidden, hint="use a smaller hidden")
    if isinstance(bonds, (str, bytes)) or not isinstance(bonds, (list, tuple)) or not bonds:
        raise QtnnError(f"bonds must be a non-empty sequence of positive integers, got {bonds!r:.80}")
    bonds = tuple(check_int("bonds[]", b, minimum=1) for b in bonds)
    epochs = check_int("epochs", epochs, minimum=0)
    finetune_epochs = check_int("finetune_epochs", finetune_epochs, minimum=0)
    check_bool("progress", progress)

    def fit(m: Any, epochs_: int, lr: float) -> None:
        if epochs_ == 0:  # epochs=0 / finetune_epochs=0: keep the weights as they are
            return
        train_model(m, (xtr, ytr), epochs=epochs_, batch_size=64, lr=lr, seed=seed, progress=False)

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    xtr, ytr, xte, yte = load_digits_split(seed)
    first = torch.nn.Linear(64, hidden)
    model = torch.nn.Sequential(first, torch.nn.ReLU(), torch.nn.Linear(hidden, 10)).double()
    fit(model, epochs, 1e-3)
    dense_acc = evaluate(model, xte, yte)
    w = first.weight.detach().numpy()
    rows = []
    for bond in tqdm(bonds, desc="compress", disable=not progress):
        layer = MPOLinear.from_linear(first, max_bond=bond, out_dims=3, in_dims=3)
        mpo = layer.mpo
        err = float(np.linalg.norm(mpo.to_dense() - w) / np.linalg.norm(w))
        small = copy.deepcopy(model)
        small[0] = layer
        acc = evaluate(small, xte, yte)
        fit(small, finetune_epochs, 5e-4)
        rows.append({
            "bond": bond, "params": mpo.num_params, "dense_params": w.size,
            "compression": w.size / mpo.num_params, "weight_error": err,
            "entropies": [round(float(e), 4) for e in mpo.entropies()],
            "accuracy": acc, "accuracy_finetuned": evaluate(small, xte, yte),
        })
    return {"hidden": hidden, "dense": {"params": w.size, "accuracy": dense_acc},
            "rows": rows, "seconds": time.perf_counter() - t0}
