"""Benchmarks behind ``qtnn bench``: ratios against a baseline measured in the same run.

Timings interleave the candidate and the baseline inside every repeat, so a
change of machine load affects both; medians over repeats are reported.
"""

from __future__ import annotations

import copy
import math
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from qtnn.errors import QtnnError
from qtnn.validate import check_alloc, check_int

__all__ = ["bench_mpo_linear", "bench_hybrid", "time_interleaved", "environment", "format_environment"]

#: Environment variables that change how threaded libraries behave (reported, not relied on).
_ENV_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "NUMBA_", "TORCH_")


def environment() -> dict[str, Any]:
    """The threading environment a benchmark ran in.

    CPUs available to the process, torch's intra- and inter-op threads and
    OpenMP runtime, the threads of the staircase kernels
    (:func:`qtnn.staircase.kernel.kernel_threads`), the load average, and every
    set variable of the OpenMP, MKL, OpenBLAS, numba and torch families.
    Call it before the timed work: once a benchmark runs, its own threads
    count in the load average (2.0 on 2 busy cores).

    Examples
    --------
    >>> env = environment()
    >>> env["cpus"] >= 1 and env["kernel_threads"] >= 1
    True
    """
    import os

    import torch

    from qtnn.staircase.kernel import kernel_threads

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cpus = os.cpu_count() or 1
    info = torch.__config__.parallel_info()
    backend = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                    if line.startswith("ATen parallel backend")), "unknown")
    try:
        load = list(os.getloadavg())
    except OSError:  # pragma: no cover - Windows
        load = []
    return {"cpus": cpus, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(), "torch_parallel": backend,
            "kernel_threads": kernel_threads(), "load_average": load,
            "variables": {k: v for k, v in sorted(os.environ.items()) if k.startswith(_ENV_PREFIXES)}}


def format_environment(env: dict[str, Any]) -> str:
    """One line for :func:`environment` (``OMP_WAIT_POLICY`` and friends, or "no thread variables set").

    Examples
    --------
    >>> format_environment({"cpus": 2, "torch_threads": 2, "torch_interop_threads": 2,
    ...     "torch_parallel": "OpenMP", "kernel_threads": 2, "load_average": [0.5, 0.4, 0.3],
    ...     "variables": {"OMP_WAIT_POLICY": "active"}}).split("; ")
    ['environment: 2 CPUs, torch 2 threads (OpenMP), staircase kernel 2 threads, load 0.50', \
'OMP_WAIT_POLICY=active']
    """
    var = ", ".join(f"{k}={v}" for k, v in env["variables"].items()) or "no thread variables set"
    load = f", load {env['load_average'][0]:.2f}" if env["load_average"] else ""
    return (f"environment: {env['cpus']} CPUs, torch {env['torch_threads']} threads "
            f"({env['torch_parallel']}), staircase kernel {env['kernel_threads']} threads{load}; {var}")


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 7,
                     warmup: int = 2) -> dict[str, float]:
    """Median wall time (s) of each callable, calling them in turn each repeat.

    Interleaving puts every candidate under the same machine load, so the
    ratios of the medians are what a benchmark reports.

    Examples
    --------
    >>> t = time_interleaved({"a": lambda: sum(range(100)), "b": lambda: None}, repeats=3)
    >>> sorted(t), all(v >= 0 for v in t.values())
    (['a', 'b'], True)
    """
    return {k: statistics.median(v) for k, v in _samples(fns, repeats, warmup).items()}


def _samples(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Wall times of each callable, called in turn each repeat (after ``warmup`` untimed rounds)."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(warmup + repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if r >= warmup:
                samples[name].append(dt)
    return samples


def bench_mpo_linear(sizes: Sequence[int] = (1024, 4096), bonds: Sequence[int] = (8, 16, 32),
                     batch: int | Sequence[int] = 256, repeats: int = 7, dtype: str = "float32",
                     device: str = "cpu", progress: bool = True,
                     modes: Sequence[str] = ("train",), warmup: int = 2) -> dict[str, Any]:
    """Time of :class:`~qtnn.nn.MPOLinear` against ``nn.Linear``, per size, bond, batch and mode.

    For each size ``N`` (square ``N x N`` layers with 4 balanced cores per
    side), bond, batch and mode (``"train"``: forward+backward to the input
    and the parameters; ``"infer"``: forward under ``torch.no_grad``) it
    reports the median time of four layers measured in the same loop:
    ``nn.Linear``, ``MPOLinear`` with its measured plans
    (:func:`qtnn.tn.contract.measured_plan`), ``MPOLinear`` with the cost
    model's plan alone (``model_ms``, the behaviour before measured plans) and
    a copy of the ``nn.Linear``, each timed sample a run of consecutive calls
    (``calls_per_sample``, the same for all four, at least about
    :data:`MIN_SAMPLE_S` for ``nn.Linear``).  ``ratio`` is the measured plan's
    time over ``nn.Linear``'s (medians; ``ratio_min``: of the least times,
    steadier on a shared machine); ``twin_ratio`` is the copy's: how far from
    1 the machine's noise alone puts a ratio in that cell.  Also the plan
    chosen, the cost model's and FLOPs as a fraction of the dense matmul's.

    Examples
    --------
    >>> r = bench_mpo_linear(sizes=(64,), bonds=(2,), batch=8, repeats=1, progress=False)
    >>> r["rows"][0]["size"], r["rows"][0]["bond"], r["rows"][0]["ratio"] > 0
    (64, 2, True)
    """
    import torch
    from tqdm.auto import tqdm

    import qtnn.nn.mpo_linear as mpo_linear
    from qtnn.nn import MPOLinear
    from qtnn.tn.contract import measured_plan, mpo_apply_cost
    from qtnn.validate import check_choice

    dt = getattr(torch, dtype)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise QtnnError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}: "
                        f"{exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise QtnnError(f"device={device!r} needs CUDA, which this torch build or machine lacks")
    sizes = [check_int("sizes[...]", n, minimum=1) for n in sizes]
    batches = [check_int("batch", b, minimum=1) for b in ([batch] if isinstance(batch, int) else batch)]
    modes = [check_choice("modes[...]", m, ("train", "infer")) for m in modes]
    for n in sizes:
        check_alloc(f"the dense {n} x {n} baseline layer (size={n})", n * n,
                    hint="benchmark smaller sizes")
    env = environment()  # before the work, so the load average is the machine's, not the benchmark's
    rows = []
    cases = [(n, b, bs, mode) for n in sizes for b in bonds for bs in batches for mode in modes]
    gen = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for n, bond, bsz, mode in tqdm(cases, desc="mpo-linear", disable=not progress):
        torch.manual_seed(0)
        lin = torch.nn.Linear(n, n, dtype=dt, device=device)
        mpo = MPOLinear(n, n, bond, out_dims=4, in_dims=4, dtype=dt, device=device)
        x = torch.randn(bsz, n, generator=gen, dtype=dt).to(device).requires_grad_(mode == "train")

        def step(m: torch.nn.Module, measured: bool, x: torch.Tensor = x,
                 mode: str = mode) -> Callable[[], None]:
            def run() -> None:
                mpo_linear.MEASURE_PLANS = measured
                try:
                    if mode == "train":
                        x.grad = None
                        m.zero_grad(set_to_none=True)
                        m(x).sum().backward()
                    else:
                        with torch.no_grad():
                            m(x)
                    sync()
                finally:
                    mpo_linear.MEASURE_PLANS = True
            return run

        twin = copy.deepcopy(lin)       # nn.Linear against itself: the cell's noise floor
        steps = {"linear": step(lin, True), "mpo": step(mpo, True), "model": step(mpo, False),
                 "twin": step(twin, True)}
        # every sample of the cell is the same number of consecutive calls, lasting about
        # MIN_SAMPLE_S for nn.Linear: short calls are timed as in a loop, not one by one
        loops = _loops_for(steps["linear"])
        samples = _samples({k: _repeat(f, loops) for k, f in steps.items()}, repeats, warmup)
        t = {k: statistics.median(v) / loops for k, v in samples.items()}
        least = {k: min(v) / loops for k, v in samples.items()}
        shapes = [tuple(c.shape) for c in mpo.cores]
        cost = mpo_apply_cost((bsz, *mpo.in_dims), shapes)
        plan = measured_plan(bsz, shapes, device=dev, dtype=dt, grad=mode == "train")
        rows.append({
            "size": n, "bond": bond, "batch": bsz, "mode": mode, "dims": list(mpo.in_dims),
            "bond_dims": mpo.bond_dims, "strategy": plan.strategy, "model_strategy": cost["strategy"],
            "flops_planned_ratio": cost["planned"] / cost["dense"],
            "flops_sequential_ratio": cost["sequential"] / cost["dense"],
            "linear_ms": 1e3 * t["linear"], "mpo_ms": 1e3 * t["mpo"], "model_ms": 1e3 * t["model"],
            "ratio": t["mpo"] / t["linear"], "model_ratio": t["model"] / t["linear"],
            "ratio_min": least["mpo"] / least["linear"], "model_ratio_min": least["model"] / least["linear"],
            "twin_ratio": t["twin"] / t["linear"],
            "params_ratio": sum(c.numel() for c in mpo.cores) / (n * n), "calls_per_sample": loops,
        })
    return {
        "benchmark": "mpo-linear", "what": "median wall time; train: forward+backward, infer: forward",
        "dtype": dtype, "device": device, "repeats": repeats,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.machine(), "environment": env, "rows": rows,
    }


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """A plain-text table; ``columns`` holds ``(key, header, format)``."""
    head = [h for _, h, _ in columns]
    body = [[format(r[k], f) if not isinstance(r[k], (list, str)) else str(r[k])
             for k, _, f in columns] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def bench_hybrid(qubits: Sequence[int] = (6, 10), layers: int = 2,
                 batch: int | Sequence[int] = (64, 512), repeats: int = 5, aer_batch: int = 4,
                 progress: bool = True) -> dict[str, Any]:
    """Samples/s of forward+backward of a :class:`~qtnn.nn.QuantumStaircase` on every path.

    Paths: the reference contraction (one compiled kernel each way,
    :mod:`qtnn.staircase._jit`), ``default.qubit`` (backprop, one
    ``QubitUnitary`` per gate, broadcasting), ``lightning.qubit`` (adjoint;
    ``expval`` readout, the one adjoint supports) and ``qiskit.aer`` (exact
    statevector, parameter-shift; run at ``aer_batch`` samples since each
    sample costs ``2 x params`` circuits).  Every path is timed in the same
    run, the reference path and ``default.qubit`` interleaved; each of their
    timed samples is a run of consecutive steps lasting at least
    :data:`MIN_SAMPLE_S` (``steps_per_sample``), as in training.  ``speedup``
    is the reference path's samples/s over the fastest QNode path's.  One row
    per qubit count and batch size.  At small ``n`` the reference path's time
    is mostly torch's fixed cost per step (measured at n=6, batch 64: 0.05 ms
    of compiled kernels in a 0.18 ms step).

    Examples
    --------
    >>> r = bench_hybrid(qubits=(3,), batch=4, repeats=1, aer_batch=1, progress=False)
    >>> r["rows"][0]["speedup"] > 1
    True
    """
    batches = [batch] if isinstance(batch, int) else list(batch)
    env = environment()  # before the work (its load average)
    rows = []
    for n in qubits:
        for bsz in batches:
            rows.append(_bench_hybrid_row(n, layers, bsz, repeats, aer_batch, progress))
    return {"benchmark": "hybrid", "what": "forward+backward samples/s, QuantumStaircase",
            "environment": env, "rows": rows}


#: Each timed sample of :func:`bench_hybrid` and :func:`bench_mpo_linear` runs consecutive steps for
#: at least about this long (in the latter, counted for ``nn.Linear``; its other layers run as many).
MIN_SAMPLE_S = 0.02


def _loops_for(fn: Callable[[], None]) -> int:
    """Consecutive calls of ``fn`` that take about :data:`MIN_SAMPLE_S` (after one warm-up)."""
    fn()
    t0 = time.perf_counter()
    fn()
    return max(1, math.ceil(MIN_SAMPLE_S / max(time.perf_counter() - t0, 1e-9)))


def _repeat(fn: Callable[[], None], loops: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(loops):
            fn()
    return run


def _bench_hybrid_row(n: int, layers: int, batch: int, repeats: int, aer_batch: int,
                      progress: bool) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm

    from qtnn.nn import QuantumStaircase
    from qtnn.quantum import device

    torch.manual_seed(0)
    paths: dict[str, tuple[Any, int]] = {}
    for name, readout, dev, b in (("reference", "probs", None, batch),
                                  ("default.qubit", "probs", "default.qubit", batch),
                                  ("lightning.qubit", "expval", "lightning.qubit", batch),
                                  ("qiskit.aer", "probs", "qiskit.aer", aer_batch)):
        layer = QuantumStaircase(n, layers, readout=readout, dtype=torch.float64)
        if dev is not None:
            layer.set_backend("pennylane", device(dev, wires=n))
        paths[name] = (layer, b)
    x_full = torch.rand(batch, 2**n, dtype=torch.float64)

    def step(layer: Any, b: int, x_full: torch.Tensor) -> Callable[[], None]:
        def run() -> None:
            layer.zero_grad(set_to_none=True)
            layer(x_full[:b]).sum().backward()
        return run

    fns = {k: step(*v, x_full) for k, v in paths.items()}
    # lightning and Aer run their own thread pools, which stay busy for a while after a
    # call and would slow whatever is timed next: they are timed on their own
    slow = {"qiskit.aer", "lightning.qubit"}
    fast = {k: f for k, f in fns.items() if k not in slow}
    # a sample is a run of consecutive steps of >= MIN_SAMPLE_S (training's steady state):
    # one 0.2 ms step timed alone right after another path's 5 ms step mostly measures
    # refilling the caches that step evicted (measured: 0.34 ms for the first reference
    # step after a default.qubit step, 0.21-0.24 ms for the next ones)
    loops = {k: _loops_for(f) for k, f in fast.items()}
    times = time_interleaved({k: _repeat(f, loops[k]) for k, f in fast.items()}, repeats=repeats)
    times = {k: t / loops[k] for k, t in times.items()}
    for k in tqdm(sorted(slow), desc=f"n={n} slow paths", disable=not progress):
        times.update(time_interleaved({k: fns[k]}, repeats=1 if k == "qiskit.aer" else repeats,
                                      warmup=0 if k == "qiskit.aer" else 1))
        loops[k] = 1
    rate = {k: paths[k][1] / t for k, t in times.items()}
    best_q = max((k for k in rate if k != "reference"), key=lambda k: rate[k])
    return {"qubits": n, "layers": layers, "batch": batch, "aer_batch": aer_batch,
            "samples_per_s": rate, "steps_per_sample": loops, "fastest_qnode": best_q,
            "speedup": rate["reference"] / rate[best_q]}
