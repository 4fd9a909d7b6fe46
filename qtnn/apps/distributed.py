"""Data-parallel training with :mod:`torch.distributed` (``docs/design/architecture.md``, scaling out).

qtnn does not bring its own parallel engine: training runs under PyTorch's
:class:`~torch.nn.parallel.DistributedDataParallel` (DDP), with the ``gloo``
backend on CPUs and ``nccl`` on CUDA GPUs.

Exactness
---------
Every rank draws the **same** global mini-batches (the shuffling generator is
seeded identically on all ranks, as in :func:`qtnn.apps.loop.train_model`) and
takes its contiguous block of each one (:func:`shard`).  Rank ``r`` computes

``loss_r = (world / B) * sum_{i in shard_r} CE(x_i, y_i)``

and DDP averages the gradients over the ``world`` ranks, so the update is the
gradient of ``(1 / B) * sum_i CE(x_i, y_i)``: the cross-entropy **mean over
the global batch**, exactly what single-process training steps on, also when
``B`` is not a multiple of ``world`` (the last batch of an epoch).  A rank
whose block is empty (``B < world``) runs one sample with weight zero, so
every rank joins every all-reduce.  Single- and multi-process training then
agree to rounding: float64, 2 ranks, 3 Adam steps, at most about ``1e-15``
(``tests/test_distributed.py``).  One caveat, which holds for any change of
summation order (also on one process): a parameter whose gradient is zero up
to rounding -- the angles of gates that act only on unmeasured qubits at the
end of a :class:`~qtnn.nn.QuantumHead` -- moves by Adam steps of about
``lr * 1e-16 / eps ~ 1e-10``; such parameters do not change the output (the
demo's 6-qubit head: 93 entries differ by up to ``4e-10``, every other
parameter by at most ``1e-15``, the logits by ``2e-14``).

QNode-backed layers (:class:`qtnn.nn.QuantumHead` and friends on a PennyLane
simulator) work unchanged: their circuit angles are ordinary
:class:`torch.nn.Parameter` s of the module, the QNode differentiates them
(backprop on ``default.qubit``), and DDP all-reduces their gradients like any
other.  Each rank builds its own PennyLane device.

Entry points
------------
``qtnn train --nproc N``
    spawns ``N`` local processes (:func:`train_ddp`).
``torchrun --nproc-per-node N -m qtnn.cli train ...``
    the same job under PyTorch's launcher (any number of nodes): every rank
    runs the command, trains its share, and rank 0 evaluates and reports.
:func:`ddp_train_model`
    the training loop itself, for your own model inside a process group you
    started (``torchrun`` + :func:`torch.distributed.init_process_group`).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from qtnn.errors import QtnnError
from qtnn.validate import check_int

if TYPE_CHECKING:
    from qtnn.apps.digits import HybridConfig

__all__ = ["train_ddp", "ddp_train_model", "shard", "launched_by_torchrun", "free_port",
           "default_backend"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def shard(idx: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous block of the global batch ``idx`` (``torch.tensor_split``).

    Blocks differ in size by at most one and cover ``idx`` in order.

    Examples
    --------
    >>> import torch
    >>> idx = torch.arange(7)
    >>> [shard(idx, r, 3).tolist() for r in range(3)]
    [[0, 1, 2], [3, 4], [5, 6]]
    >>> shard(torch.arange(1), 1, 2).tolist()
    []
    """
    return torch.tensor_split(idx, world)[rank]


def launched_by_torchrun() -> bool:
    """Whether this process is one rank of a multi-process ``torchrun`` job.

    True when ``torch.distributed`` is already initialised with more than one
    rank, or when the launcher's variables (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``) are set with ``WORLD_SIZE > 1``.

    Examples
    --------
    >>> launched_by_torchrun()      # a plain interpreter
    False
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if not all(v in os.environ for v in _TORCHRUN_VARS):
        return False
    try:
        return int(os.environ["WORLD_SIZE"]) > 1
    except ValueError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for ``MASTER_PORT``).

    Examples
    --------
    >>> 0 < free_port() < 65536
    True
    """
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_backend(torch_device: str) -> str:
    """``"nccl"`` for a CUDA ``torch_device``, ``"gloo"`` otherwise.

    Examples
    --------
    >>> default_backend("cpu"), default_backend("cuda")
    ('gloo', 'nccl')
    """
    return "nccl" if str(torch_device).startswith("cuda") else "gloo"


def _check_torch_device(torch_device: str) -> str:
    if not isinstance(torch_device, str) or torch_device not in ("cpu", "cuda"):
        raise QtnnError(f"torch_device must be 'cpu' or 'cuda', got {torch_device!r}")
    if torch_device == "cuda" and not torch.cuda.is_available():
        raise QtnnError("torch_device='cuda' but torch.cuda.is_available() is False here "
                        f"(torch {torch.__version__}); use torch_device='cpu' or a CUDA build of torch")
    return torch_device


def _rank_device(torch_device: str) -> torch.device:
    """This rank's torch device: ``cuda:LOCAL_RANK`` (modulo the GPU count) or the CPU."""
    if torch_device != "cuda":
        return torch.device("cpu")
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", dist.get_rank() if dist.is_initialized() else 0))
    return torch.device("cuda", local % torch.cuda.device_count())


# ---------------------------------------------------------------------------- the loop
def ddp_train_model(model: nn.Module, data: tuple[Any, ...], *, epochs: int, batch_size: int,
                    lr: float, seed: int, progress: bool = False, desc: str = "train",
                    state: dict[str, Any] | None = None, checkpoint: Any = None,
                    stop_after: int | None = None,
                    find_unused_parameters: bool = False) -> dict[str, Any]:
    """:func:`qtnn.apps.loop.train_model` on every rank of an initialised process group.

    Call it on every rank with the same ``model`` initialisation, ``data`` and
    arguments (the process group must be initialised, e.g. by ``torchrun`` and
    :func:`torch.distributed.init_process_group`).  The model is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`; each rank runs its
    :func:`shard` of every global batch of ``batch_size`` samples, weighted so
    that the averaged gradient is that of the mean loss over the global batch
    (module docstring).  The model is trained in place; its parameters are on
    the device the model is on (``cuda`` models get ``device_ids``).

    Parameters
    ----------
    model : torch.nn.Module
        The (unwrapped) model; identical on every rank (DDP also broadcasts
        rank 0's parameters and buffers when it wraps it).
    data : (x, y)
        The whole training set, the same on every rank (it stays where it is;
        each batch is moved to the model's device).
    epochs, batch_size, lr, seed, progress, desc, state, checkpoint, stop_after
        As in :func:`qtnn.apps.loop.train_model`; ``checkpoint(model, state)`` and
        the progress bar run on rank 0 only.
    find_unused_parameters : bool
        Passed to DDP (only needed for models with parameters that some
        forward passes do not use).

    Returns
    -------
    dict
        ``losses`` (per-epoch mean loss over all samples, the same on every
        rank), ``epoch``, ``optimizer``, ``generator`` (the state a checkpoint
        holds), ``rank``, ``world_size``, ``backend`` and ``rank_divergence``:
        the largest difference of any parameter between ranks after training
        (0.0 means the replicas stayed identical).

    Examples
    --------
    A one-rank group in this process (under ``torchrun`` every rank runs the same lines):

    >>> import torch, torch.distributed as dist
    >>> dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
    ...                         world_size=1)
    >>> model = torch.nn.Linear(4, 3).double()
    >>> x, y = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 3, (10,))
    >>> r = ddp_train_model(model, (x, y), epochs=2, batch_size=4, lr=0.1, seed=0)
    >>> len(r["losses"]), r["world_size"], r["backend"], r["rank_divergence"]
    (2, 1, 'gloo', 0.0)
    >>> dist.destroy_process_group()
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from qtnn.apps.loop import epoch_loop

    if not (dist.is_available() and dist.is_initialized()):
        raise QtnnError("ddp_train_model needs an initialised torch.distributed process group "
                        "(start it with torchrun and torch.distributed.init_process_group, or use "
                        "qtnn.apps.distributed.train_ddp); got none")
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    rank, world = dist.get_rank(), dist.get_world_size()
    dev = next(model.parameters()).device
    ddp = DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None,
                                  find_unused_parameters=find_unused_parameters,
                                  **_no_buffer_sync())
    xtr, ytr = data[0], data[1]

    def step(idx: torch.Tensor) -> Any:
        part = shard(idx, rank, world)
        weight = world / len(idx)
        if len(part) == 0:          # fewer samples than ranks: join the all-reduce with zero weight
            part, weight = idx[:1], 0.0
        out = ddp(xtr[part].to(dev))
        loss_sum = nn.functional.cross_entropy(out, ytr[part].to(dev), reduction="sum")
        (loss_sum * weight).backward()
        return loss_sum.detach().to("cpu", torch.float64) if weight else 0.0

    def epoch_loss(local_sum: Any, count: int) -> float:
        total = _all_reduce_sum(torch.as_tensor(local_sum, dtype=torch.float64), dev)
        return float(total) / count

    new_state = epoch_loop(model, len(xtr), step, epoch_loss, epochs=epochs, batch_size=batch_size,
                           lr=lr, seed=seed, state=state,
                           checkpoint=checkpoint if rank == 0 else None, stop_after=stop_after,
                           progress=progress and rank == 0, desc=f"{desc} [{world} ranks]",
                           trainee=ddp)
    return {**new_state, "rank": rank, "world_size": world, "backend": dist.get_backend(),
            "rank_divergence": _rank_divergence(model, dev)}


def _no_buffer_sync() -> dict[str, Any]:
    """DDP keyword that skips the per-forward buffer broadcast (qtnn's buffers, the gate
    determinants, are constants; DDP still broadcasts them once when it wraps the model)."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    params = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {
        "broadcast_buffers": False}


def _all_reduce_sum(value: torch.Tensor, dev: torch.device) -> torch.Tensor:
    import torch.distributed as dist

    t = value.reshape(1).to(dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu()[0]


def _rank_divergence(model: nn.Module, dev: torch.device) -> float:
    """max over parameters of (max over ranks - min over ranks): 0.0 when the replicas agree."""
    import torch.distributed as dist

    flat = torch.cat([p.detach().reshape(-1).to(torch.float64) for p in model.parameters()])
    hi, lo = flat.to(dev).clone(), flat.to(dev).clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).abs().max()) if flat.numel() else 0.0


# ---------------------------------------------------------------------------- the hybrid
def _rank_train(payload: dict[str, Any]) -> dict[str, Any]:
    """Build the hybrid on this rank and run :func:`ddp_train_model` (inside a process group)."""
    import copy

    from qtnn.apps.digits import HybridClassifier, HybridConfig
    from qtnn.apps.loop import _checkpointer

    config = HybridConfig(**payload["config"])
    # a private copy: Adam's load_state_dict keeps the given tensors as its state and updates
    # them in place, so state tensors shared with another rank or the caller would be stepped twice
    state = copy.deepcopy(payload["state"])
    dev = _rank_device(payload["torch_device"])
    torch.manual_seed(config.seed)
    model = HybridClassifier(config)
    if payload["init_state"] is not None:
        model.load_state_dict(payload["init_state"])
    model.to(dev)
    name = payload["device"]
    if name != "reference":
        from qtnn.quantum import device

        model.set_backend("pennylane", device(name, wires=config.n_qubits))
    data = payload["data"]
    if data is None:
        from qtnn.apps.digits import load_digits_split

        data = load_digits_split(config.seed)[:2]
    ck = payload["checkpoint"]
    t0 = time.perf_counter()
    out = ddp_train_model(model, data, epochs=payload["epochs"], batch_size=config.batch_size,
                          lr=config.lr, seed=config.seed, progress=payload["progress"],
                          desc=payload["desc"], state=state,
                          checkpoint=_checkpointer(ck, config) if ck else None,
                          stop_after=payload["stop_after"])
    out["seconds"] = time.perf_counter() - t0
    out["model"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return out


def _worker(rank: int, world: int, port: int, backend: str, payload_path: str,
            out_path: str, timeout: float) -> None:
    """One spawned rank: join the group on 127.0.0.1:port, train, rank 0 saves the result.

    The job comes as a file (``torch.save``), not as spawn arguments: torch.multiprocessing
    would hand every rank the same shared-memory tensors.
    """
    import datetime
    import warnings

    import torch.distributed as dist

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    if backend == "gloo":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", _loopback_interface())
    threads = max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads):
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world, timeout=datetime.timedelta(seconds=timeout))
        try:
            out = _rank_train(torch.load(payload_path, weights_only=True))
            if rank == 0:
                torch.save(out, out_path)
            dist.barrier()
        finally:
            dist.destroy_process_group()
    # The rank's work is done and saved.  Leave without interpreter teardown: a rank
    # once aborted there (SIGABRT, "terminate called without an active exception": a
    # C++ thread destroyed while joinable), failing a run whose results were complete
    # (seen once, in a full clean-clone test run of the 2-rank test).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _loopback_interface() -> str:
    """Name of the loopback interface (``lo`` on Linux, ``lo0`` on macOS) for gloo."""
    import socket

    names = {name for _, name in socket.if_nameindex()} if hasattr(socket, "if_nameindex") else set()
    return "lo0" if "lo0" in names and "lo" not in names else "lo"


def train_ddp(config: HybridConfig, nproc: int | None = None, *, data: tuple[Any, ...] | None = None,
              device: str = "reference", torch_device: str = "cpu",
              init_state: dict[str, Any] | None = None, epochs: int | None = None,
              state: dict[str, Any] | None = None, checkpoint: str | None = None,
              stop_after: int | None = None, progress: bool = False, desc: str = "hybrid",
              backend: str | None = None, timeout: float = 1800.0) -> dict[str, Any]:
    """Train a :class:`~qtnn.apps.digits.HybridClassifier` with DDP on ``nproc`` processes.

    Outside ``torchrun`` it spawns ``nproc`` local processes (``gloo`` on
    127.0.0.1 at a free port, or ``nccl`` with ``torch_device="cuda"``, one
    GPU per rank); under ``torchrun`` (:func:`launched_by_torchrun`) this
    process is one rank and trains its share in place.  Every rank builds the
    model from ``config`` and ``init_state``, sets its quantum backend to
    ``device`` and runs :func:`ddp_train_model`.  The result equals
    :func:`qtnn.apps.loop.train_model` on one process with the same ``init_state``,
    data and seed, to rounding.

    Parameters
    ----------
    config : HybridConfig
        Architecture, ``batch_size`` (the **global** batch), ``lr``, ``seed``, ``epochs``.
    nproc : int, optional
        Number of processes to spawn (at least 1).  Under ``torchrun`` it must
        be ``None`` or equal to the world size.
    data : (x, y), optional
        Training set; default the digits training split of ``config.seed``.
    device : str
        ``"reference"`` (the classical contraction path) or a
        :func:`qtnn.quantum.device` name for the head (``"default.qubit"``,
        ``"lightning.qubit"``, ...), built on every rank.
    torch_device : {"cpu", "cuda"}
        Where the torch modules live; ``"cuda"`` needs CUDA and uses ``nccl``.
    init_state : dict, optional
        A ``state_dict`` to start from (default: ``torch.manual_seed(config.seed)``
        then a fresh model, the same on every rank).
    epochs : int, optional
        Default ``config.epochs``.
    state, stop_after, progress, desc
        As in :func:`qtnn.apps.loop.train_model` (``state`` resumes a checkpoint).
    checkpoint : str, optional
        Path: rank 0 writes the training state there after every epoch (the
        format of ``qtnn train --checkpoint``).
    backend : {"gloo", "nccl"}, optional
        Default :func:`default_backend` of ``torch_device``.
    timeout : float
        Seconds a rank waits for the others in a collective.

    Returns
    -------
    dict
        ``model`` (the trained ``state_dict``, on the CPU), ``losses``,
        ``epoch``, ``optimizer``, ``generator``, ``world_size``, ``backend``,
        ``rank_divergence`` (0.0: the replicas stayed identical), ``seconds``.

    Examples
    --------
    >>> from qtnn.apps.digits import HybridConfig
    >>> from qtnn.apps.digits import load_digits_split
    >>> xtr, ytr, _, _ = load_digits_split(0)
    >>> r = train_ddp(HybridConfig(layers=1, batch_size=16, epochs=1), 2,
    ...               data=(xtr[:32], ytr[:32]))              # doctest: +SKIP
    >>> r["world_size"], r["rank_divergence"]                 # doctest: +SKIP
    (2, 0.0)
    """
    import tempfile
    from dataclasses import asdict

    import torch.distributed as dist
    import torch.multiprocessing as mp

    from qtnn.apps.digits import HybridConfig

    if not isinstance(config, HybridConfig):
        raise QtnnError(f"config must be a qtnn.apps.digits.HybridConfig, got {type(config).__name__}")
    config = config.check()
    torch_device = _check_torch_device(torch_device)
    from qtnn.quantum.devices import is_device_name

    if not isinstance(device, str) or not (device == "reference" or is_device_name(device)):
        from qtnn.quantum.devices import device_names

        raise QtnnError(f"device must be 'reference' or a qtnn.quantum.device name "
                        f"({', '.join(device_names())}), got {device!r}")
    if backend is None:
        backend = default_backend(torch_device)
    if backend not in ("gloo", "nccl"):
        raise QtnnError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if not dist.is_available():
        raise QtnnError("this build of torch has no torch.distributed; distributed training is not "
                        "available")
    epochs = config.epochs if epochs is None else check_int("epochs", epochs, minimum=1)
    payload = {"config": asdict(config), "torch_device": torch_device, "device": device,
               "init_state": init_state, "data": data, "epochs": epochs, "state": state,
               "checkpoint": checkpoint, "stop_after": stop_after, "progress": progress,
               "desc": desc}

    if launched_by_torchrun():
        if not dist.is_initialized():
            dev = _rank_device(torch_device)
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            dist.init_process_group(backend)
        world = dist.get_world_size()
        if nproc is not None and nproc != world:
            raise QtnnError(f"nproc={nproc} but this torchrun job has WORLD_SIZE={world}; leave nproc "
                            "unset under torchrun")
        return _rank_train(payload)

    nproc = check_int("nproc", nproc, minimum=1)
    if torch_device == "cuda" and nproc > torch.cuda.device_count():
        raise QtnnError(f"nproc={nproc} is more than the {torch.cuda.device_count()} CUDA devices "
                        "here (one GPU per rank)")
    with tempfile.TemporaryDirectory(prefix="qtnn-ddp-") as tmp:
        out_path, payload_path = os.path.join(tmp, "rank0.pt"), os.path.join(tmp, "job.pt")
        torch.save(payload, payload_path)
        try:
            mp.start_processes(_worker, args=(nproc, free_port(), backend, payload_path, out_path,
                                              timeout),
                               nprocs=nproc, join=True, start_method="spawn")
        except mp.ProcessRaisedException as exc:
            raise QtnnError(f"distributed training failed on rank {exc.error_index}: "
                            f"{_last_line(str(exc))}") from None
        except mp.ProcessExitedException as exc:
            raise QtnnError(f"distributed training failed: rank {exc.error_index} exited with code "
                            f"{exc.exit_code}") from None
        return torch.load(out_path, weights_only=True)


def _last_line(text: str) -> str:
    """The message of a rank's traceback (qtnn's own error class name dropped)."""
    import re

    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else text
    return re.sub(r"^qtnn\.errors\.Qtnn\w*Error: ", "", last)
