"""Plots of the depth analysis (matplotlib's object API with the Agg canvas: no
window, no global pyplot state; files written atomically)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.io import atomic_open

__all__ = ["plot_depth_sweep", "save_figure"]


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 120) -> None:
    """Write a matplotlib ``Figure`` as PNG, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight")


def _dense_2q(result: dict[str, Any]) -> tuple[float | None, str]:
    dense = result.get("dense")
    if not dense or dense.get("two_qubit_gates") is None:
        return None, ""
    label = ("dense unitary (measured)" if dense["kind"] == "measured"
             else "dense unitary (Qiskit's formula, all-to-all)")
    return float(dense["two_qubit_gates"]), label


def plot_depth_sweep(result: dict[str, Any], path: str | os.PathLike[str] | None = None) -> Any:
    """Three panels of a :func:`~qtnn.analysis.depth_sweep` result against the layers ``D``.

    Left: fidelity (MPS target) or ``1 - error`` next to plain truncation (MPO
    target).  Middle: two-qubit gates after transpilation, log scale, with the
    dense unitary of the same width.  Right: estimated success probability of
    the circuit, and that times the fidelity -- where an extra layer stops
    paying for itself.

    Returns the ``Figure``; with ``path``, also writes it as PNG.

    Examples
    --------
    >>> from qtnn.staircase import heisenberg_ground_state
    >>> from qtnn.analysis import depth_sweep
    >>> res = depth_sweep(heisenberg_ground_state(4), layers=[1, 2], dense=False, progress=False)
    >>> fig = plot_depth_sweep(res)
    >>> [ax.get_xlabel() for ax in fig.axes]
    ['staircase layers D', 'staircase layers D', 'staircase layers D']
    """
    from matplotlib.figure import Figure

    if not isinstance(result, dict):
        raise QtnnTypeError(f"result must be the dict that depth_sweep returns, got "
                            f"{type(result).__name__}")
    rows: Sequence[dict[str, Any]] = result.get("rows") or []
    if not rows:
        raise QtnnError("result has no rows to plot (run depth_sweep with at least one depth)")
    need = {"layers", "two_qubit_gates", "success_probability"}
    need |= {"fidelity"} if result.get("kind") == "mps" else {"error", "truncation_error"}
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, dict) and need <= set(r) for r in rows):
        raise QtnnError(f"result['rows'] must be depth_sweep rows, each a dict with keys "
                        f"{sorted(need)}; got {str(rows)[:80]}")
    d = [r["layers"] for r in rows]
    mps = result.get("kind") == "mps"
    fig = Figure(figsize=(13, 3.8))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    if mps:
        fid = [r["fidelity"] for r in rows]
        ax1.plot(d, fid, "o-", label=f"staircase ({result.get('method', '')})")
        ax1.set_ylabel("fidelity |<target|circuit|0>|^2")
    else:
        fid = [1 - r["error"] for r in rows]
        ax1.plot(d, fid, "o-", label="disentangled U M V^T")
        ax1.plot(d, [1 - r["truncation_error"] for r in rows], "s--",
                 label=f"plain truncation (bond {result.get('max_bond')})")
        ax1.set_ylabel("1 - relative weight error")
    ax1.set_title(f"{result.get('target', '')}: accuracy")
    ax2.plot(d, [r["two_qubit_gates"] for r in rows], "o-", label="staircase")
    dense, label = _dense_2q(result)
    if dense is not None:
        ax2.axhline(dense, color="C3", ls="--", label=label)
    ax2.set_yscale("log")
    ax2.set_ylabel("two-qubit gates (transpiled)")
    ax2.set_title(f"cost on {result.get('backend') or 'basis gates'}")
    esp = [r.get("success_probability") for r in rows]
    if all(e is not None for e in esp):
        ax3.plot(d, esp, "o-", label="est. success probability")
        ax3.plot(d, [e * f for e, f in zip(esp, fid, strict=False)], "s-", label="success x accuracy")
        ax3.set_ylim(0, 1.02)
    else:
        ax3.text(0.5, 0.5, "no error rates\n(bare basis gates)", ha="center", va="center",
                 transform=ax3.transAxes)
    ax3.set_ylabel("probability")
    ax3.set_title("what an extra layer buys")
    for ax in (ax1, ax2, ax3):
        ax.set_xlabel("staircase layers D")
        ax.set_xticks(d)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"{result.get('target', '')}: {result.get('n_qubits')} qubits, "
                 f"optimization level {result.get('optimization_level')}", fontsize=10)
    if path is not None:
        save_figure(fig, path)
    return fig
