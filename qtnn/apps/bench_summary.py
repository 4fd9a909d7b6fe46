"""``qtnn bench --all``: one summary of every benchmark, to compare across commits.

:func:`bench_all` runs a short, fixed set of measurements -- each a figure that
a change of the library moves and that means the same thing on every commit --
and returns them as flat rows ``{"benchmark", "case", "metric", "value",
"unit", "better"}`` with the commit, the machine's threading environment
(:func:`qtnn.apps.bench.environment`) and the wall time.  :func:`format_summary`
prints them as a table and :func:`plot_summary` draws them (one panel per
benchmark).  Ratios against a baseline are measured in the same run
(interleaved, :func:`qtnn.apps.bench.time_interleaved`), so they compare across
machines better than absolute times; on a shared machine every timed figure
carries its load (the environment records the load average).

Cases:

``mpo-linear``
    :class:`~qtnn.nn.MPOLinear` time over ``nn.Linear``'s, float32, 4 cores per
    side, at sizes 1024 and 4096, bonds 8 and 32, batch 256, training
    (forward+backward) and inference (forward under ``no_grad``).
``hybrid``
    samples/s of forward+backward of a 2-layer
    :class:`~qtnn.nn.QuantumStaircase` (probabilities, float64) on the reference
    path, 6, 10 and 14 qubits, batch 64.
``encode``
    fidelity and seconds of ``encode_mps(method="iterative")`` at 12 qubits,
    4 layers: the Heisenberg ground state and ``MPS.random(12, 4, seed=0)``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from qtnn.errors import QtnnTypeError

__all__ = ["bench_all", "format_summary", "plot_summary"]


def _commit() -> str:
    """The git commit of the qtnn sources (``"unknown"`` outside a checkout)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    sha = out.stdout.strip()
    if out.returncode or not sha:
        return "unknown"
    return sha + ("+dirty" if dirty.stdout.strip() else "")


def _row(bench: str, case: str, metric: str, value: float, unit: str, better: str) -> dict[str, Any]:
    return {"benchmark": bench, "case": case, "metric": metric, "value": float(value), "unit": unit,
            "better": better}


def _reference_rate(n: int, layers: int, batch: int, repeats: int) -> float:
    """Samples/s of forward+backward of a reference-path staircase (runs of >= 20 ms, median)."""
    import torch

    from qtnn.apps.bench import _loops_for, _repeat, time_interleaved
    from qtnn.nn import QuantumStaircase

    torch.manual_seed(0)
    layer = QuantumStaircase(n, layers, readout="probs", dtype=torch.float64)
    x = torch.rand(batch, 2**n, dtype=torch.float64)

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()

    loops = _loops_for(step)
    t = time_interleaved({"ref": _repeat(step, loops)}, repeats=repeats, warmup=1)["ref"] / loops
    return batch / t


def bench_all(*, repeats: int = 5, progress: bool = True,
              parts: Sequence[str] = ("mpo-linear", "hybrid", "encode")) -> dict[str, Any]:
    """Run the summary benchmarks (see the module notes); a few minutes on 2 cores.

    Parameters
    ----------
    repeats : int
        Timed repeats of every timing (medians are reported).
    progress : bool
        Show progress bars.
    parts : sequence of str
        Which of ``"mpo-linear"``, ``"hybrid"``, ``"encode"`` to run.

    Returns
    -------
    dict
        ``{"benchmark": "all", "commit", "environment", "seconds", "rows": [...]}``.

    Examples
    --------
    >>> r = bench_all(repeats=1, progress=False, parts=())
    >>> r["benchmark"], r["rows"]
    ('all', [])
    """
    from qtnn.apps.bench import bench_mpo_linear, environment
    from qtnn.validate import check_choice, check_int

    repeats = check_int("repeats", repeats, minimum=1)
    if isinstance(parts, str):
        raise QtnnTypeError(f"parts must be a sequence of benchmark names, got the string {parts!r}")
    parts = [check_choice("parts[...]", p, ("mpo-linear", "hybrid", "encode")) for p in parts]
    env = environment()  # before the work (its load average)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    if "mpo-linear" in parts:
        r = bench_mpo_linear(sizes=(1024, 4096), bonds=(8, 32), batch=256, repeats=repeats,
                             progress=progress, modes=("train", "infer"))
        for row in r["rows"]:
            case = f"{row['size']}^2 bond {row['bond']} batch {row['batch']} {row['mode']}"
            rows.append(_row("mpo-linear", case, "time / nn.Linear", row["ratio"], "x", "lower"))
    if "hybrid" in parts:
        for n in (6, 10, 14):
            rate = _reference_rate(n, 2, 64, repeats)
            rows.append(_row("hybrid", f"reference n={n} batch 64", "samples/s", rate, "1/s", "higher"))
    if "encode" in parts:
        from qtnn.staircase.encode import encode_mps
        from qtnn.staircase.targets import heisenberg_ground_state
        from qtnn.tn.mps import MPS

        for name, psi in (("heisenberg", heisenberg_ground_state(12)),
                          ("random-4 seed 0", MPS.random(12, 4, seed=0))):
            secs = []
            fid = float("nan")
            for _ in range(max(1, min(repeats, 2))):
                t = time.perf_counter()
                _, rep = encode_mps(psi, 4, method="iterative")
                secs.append(time.perf_counter() - t)
                fid = rep.final_fidelity
            case = f"n=12 D=4 {name}"
            rows.append(_row("encode", case, "fidelity", fid, "", "higher"))
            rows.append(_row("encode", case, "seconds", statistics.median(secs), "s", "lower"))
    return {"benchmark": "all", "commit": _commit(), "environment": env,
            "seconds": time.perf_counter() - t0, "rows": rows}


def format_summary(result: dict[str, Any]) -> str:
    """The rows of :func:`bench_all` as a text table.

    Examples
    --------
    >>> r = {"commit": "abc", "seconds": 1.0, "rows": [
    ...     {"benchmark": "encode", "case": "n=12", "metric": "fidelity", "value": 0.99,
    ...      "unit": "", "better": "higher"}]}
    >>> format_summary(r).splitlines()[-1].split()
    ['encode', 'n=12', 'fidelity', '0.99', 'higher']
    """
    from qtnn.apps.bench import format_table

    rows = [dict(r, shown=f"{r['value']:.3f}x" if r["unit"] == "x"
                 else f"{r['value']:.4g}" + (f" {r['unit']}" if r["unit"] else "")) for r in result["rows"]]
    head = f"qtnn bench --all, commit {result.get('commit', '?')}, {result.get('seconds', 0.0):.0f} s"
    if not rows:
        return head + "\n(no rows)"
    table = format_table(rows, [("benchmark", "benchmark", "s"), ("case", "case", "s"),
                                ("metric", "metric", "s"), ("shown", "value", "s"),
                                ("better", "better", "s")])
    return head + "\n" + table


def plot_summary(result: dict[str, Any], path: str | os.PathLike[str] | None = None) -> Any:
    """One horizontal bar panel per benchmark of :func:`bench_all`; with ``path``, written as PNG.

    Examples
    --------
    >>> r = {"commit": "abc", "rows": [{"benchmark": "encode", "case": "n=12", "metric": "fidelity",
    ...      "value": 0.99, "unit": "", "better": "higher"}]}
    >>> [ax.get_title() for ax in plot_summary(r).axes]
    ['encode (fidelity: higher is better)']
    """
    from matplotlib.figure import Figure

    if not isinstance(result, dict) or not isinstance(result.get("rows"), list):
        raise QtnnTypeError(f"result must be the dict that bench_all returns, got {type(result).__name__}")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in result["rows"]:
        groups.setdefault((r["benchmark"], r["metric"]), []).append(r)
    fig = Figure(figsize=(9, 1.2 + 0.45 * max(1, len(result["rows"]))))
    n = max(1, len(groups))
    heights = [max(1, len(v)) for v in groups.values()] or [1]
    axes = fig.subplots(n, 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, ((bench, metric), rows) in zip(axes, groups.items(), strict=False):
        labels = [r["case"] for r in rows]
        vals = [r["value"] for r in rows]
        ax.barh(range(len(vals)), vals, color="#4477aa")
        ax.set_yticks(range(len(vals)), labels, fontsize=8)
        ax.invert_yaxis()
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.4g}", va="center", fontsize=8)
        if metric == "time / nn.Linear":
            ax.axvline(1.0, color="k", lw=0.8)
        if metric == "samples/s" and min(vals) > 0:
            ax.set_xscale("log")
        ax.set_title(f"{bench} ({metric}: {rows[0]['better']} is better)", fontsize=9)
    fig.suptitle(f"qtnn bench --all, commit {result.get('commit', '?')}", fontsize=10)
    fig.tight_layout()
    if path is not None:
        from qtnn.analysis.plot import save_figure

        save_figure(fig, path)
    return fig
