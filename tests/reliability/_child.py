"""Child processes of the reliability suite (run as ``python _child.py <command> ...``).

* ``checkpoint-loop PATH MARKER``: saves checkpoints ``epoch = 1, 2, ...`` (each holding a
  tensor filled with the epoch) to PATH for ever; touches MARKER after the first one.
* ``slow-checkpoint PATH MARKER``: saves epoch 1, then starts writing epoch 2 so slowly that
  the parent can kill it in the middle of the write (MARKER says when half of it is written).
* ``train OUT [--checkpoint PATH] [--marker MARKER] [--resume PATH]``: trains the hybrid
  classifier on the reference path (small, seeded) and writes its loss curve and a SHA-256 of
  its parameters to OUT (JSON).  With ``--marker`` it touches MARKER two optimizer steps into
  epoch 3 (the epoch-2 checkpoint is on disk) and waits there to be killed.
* ``determinism OUT``: runs the classical paths (TT-SVD, MPO truncation, state preparation,
  disentangling, QASM export, a training curve) and writes SHA-256 digests of every result.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path


def _touch(path: str) -> None:
    Path(path).write_text("x")


def checkpoint_loop(path: str, marker: str) -> None:
    import torch

    from qtnn.checkpoint import save_checkpoint

    epoch = 0
    while True:
        epoch += 1
        save_checkpoint(path, {"epoch": epoch, "w": torch.full((500_000,), float(epoch))})
        if epoch == 1:
            _touch(marker)


def slow_checkpoint(path: str, marker: str) -> None:
    import torch

    import qtnn.io
    from qtnn.checkpoint import save_checkpoint

    save_checkpoint(path, {"epoch": 1, "w": torch.full((1000,), 1.0)})
    real_fdopen = os.fdopen

    class Slow:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, data):
            half = len(data) // 2
            self.f.write(data[:half])
            self.f.flush()
            os.fsync(self.f.fileno())
            _touch(marker)
            time.sleep(120)          # killed here, half-way through the file
            return self.f.write(data[half:])

        def __getattr__(self, name):
            return getattr(self.f, name)

    qtnn.io.os.fdopen = lambda fd, mode="r", *a, **k: Slow(real_fdopen(fd, mode, *a, **k))
    save_checkpoint(path, {"epoch": 2, "w": torch.full((1000,), 2.0)})


def _params_digest(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _small_training():
    import torch

    from qtnn.apps.digits import HybridConfig, load_digits_split

    torch.set_num_threads(1)
    config = HybridConfig(layers=1, max_bond=4, epochs=5, batch_size=64, lr=0.02, seed=3)
    xtr, ytr, _, _ = load_digits_split(0)
    return config, (xtr[:320], ytr[:320])


def train(out: str, checkpoint: str | None, marker: str | None, resume: str | None) -> None:
    import torch

    from qtnn.apps.digits import HybridClassifier
    from qtnn.apps.loop import train_model
    from qtnn.checkpoint import load_checkpoint, save_checkpoint

    config, data = _small_training()
    torch.manual_seed(config.seed)
    model = HybridClassifier(config)
    state = None
    if resume:
        state = load_checkpoint(resume)
        model.load_state_dict(state["model"])

    in_epoch3 = {"on": False, "batches": 0}

    def ck(m, st):
        save_checkpoint(checkpoint, {"model": m.state_dict(), **st})
        in_epoch3["on"] = st["epoch"] == 2

    def mid_epoch(module, args):
        # two optimizer steps into epoch 3: tell the parent, which kills us here
        if marker and in_epoch3["on"]:
            in_epoch3["batches"] += 1
            if in_epoch3["batches"] == 3:
                _touch(marker)
                time.sleep(60)

    model.register_forward_pre_hook(mid_epoch)

    hist = train_model(model, data, epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                       seed=config.seed, progress=False, state=state,
                       checkpoint=ck if checkpoint else None)
    Path(out).write_text(json.dumps({"losses": hist["losses"], "params": _params_digest(model),
                                     "resumed_from": int(state["epoch"]) if state else 0}))


def _digest(*arrays) -> str:
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def determinism(out: str) -> None:
    import numpy as np
    import torch

    from qtnn.analysis import to_qasm2, to_qasm3
    from qtnn.apps.loop import train_model
    from qtnn.staircase import Staircase, disentangle, encode_mps, heisenberg_ground_state
    from qtnn.tn import MPO, MPS, tt_svd

    rng = np.random.default_rng(7)
    w = rng.normal(size=(16, 32))
    res: dict[str, str] = {}
    cores, disc = tt_svd(w, (2,) * 9, max_bond=4)
    res["tt_svd"] = _digest(*cores, disc)
    mpo = MPO.from_dense(w, max_bond=6)
    res["mpo_from_dense"] = _digest(*mpo.cores)
    trunc = mpo.copy()
    err = trunc.truncate(max_bond=2)
    res["mpo_truncate"] = _digest(*trunc.cores, [err])
    res["entropies"] = _digest(mpo.entropies())
    psi = heisenberg_ground_state(8)
    res["heisenberg"] = _digest(*psi.cores)
    psi_r = MPS.random(10, 4, seed=3)
    res["mps_random"] = _digest(*psi_r.cores)
    for method in ("ran", "sweep", "iterative"):
        circ, rep = encode_mps(psi, 2, method=method, sweeps=4)
        res[f"encode_{method}"] = _digest(circ.gates, [rep.final_fidelity])
    circ, _ = encode_mps(psi, 2)
    res["qasm2"] = hashlib.sha256(to_qasm2(circ).encode()).hexdigest()
    res["qasm3"] = hashlib.sha256(to_qasm3(circ).encode()).hexdigest()
    res["staircase_random_qasm"] = hashlib.sha256(to_qasm3(Staircase.random(5, 3, seed=4)).encode()).hexdigest()
    dis = disentangle(MPO.random((2,) * 4, (2,) * 4, 8, seed=1), 1, 1, 2, sweeps=4, restarts=1, refine=10)
    res["disentangle"] = _digest(dis.U.gates, dis.V.gates, *dis.M.cores, [dis.error])
    config, data = _small_training()
    from qtnn.apps.digits import HybridClassifier

    torch.manual_seed(config.seed)
    model = HybridClassifier(config)
    hist = train_model(model, data, epochs=2, batch_size=config.batch_size, lr=config.lr, seed=config.seed,
                       progress=False)
    res["training_curve"] = _digest(hist["losses"])
    res["training_params"] = _params_digest(model)
    Path(out).write_text(json.dumps(res, indent=1, sort_keys=True))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "checkpoint-loop":
        checkpoint_loop(*args)
    elif cmd == "slow-checkpoint":
        slow_checkpoint(*args)
    elif cmd == "train":
        opts = dict(zip(args[1::2], args[2::2], strict=False))
        train(args[0], opts.get("--checkpoint"), opts.get("--marker"), opts.get("--resume"))
    elif cmd == "determinism":
        determinism(*args)
    else:
        raise SystemExit(f"unknown command {cmd!r}")
