"""Replace chosen linear layers of any PyTorch model by compressed ones: :func:`compress`.

:func:`compress` replaces chosen :class:`torch.nn.Linear` layers of a model
(a deep copy; the original is never touched) by

* ``method="mpo"``: an :class:`~qtnn.nn.MPOLinear` whose weight is the TT-SVD
  of ``W`` truncated to ``max_bond`` and/or a relative ``cutoff``
  (Oseledets, SIAM J. Sci. Comput. 2011; Novikov et al., NeurIPS 2015),
* ``method="disentangle"``: a :class:`~qtnn.nn.DisentangledLinear`
  ``W ~ U M V^T`` with staircase or brickwall circuits ``U``, ``V`` of bounded
  depth and a residual MPO ``M`` of bond ``max_bond`` (Aizpurua et al.,
  "Hacking the quantum LLM: tensor network disentanglers", arXiv:2410.17397), or
* ``method="svd"``: a :class:`~qtnn.nn.LowRankLinear` of rank ``rank`` (the
  classical baseline),

optionally fitted to recorded inputs of each layer (``calibration=``) and to
how the next operation reads its outputs (``output_weight=``), and reports,
per layer, the parameters before and after, the relative weight (and
activation) error, the error of plain truncation at the same bond, the
circuits' qubits, layers, 2-qubit gates and depth, and the seconds taken.

By default the MPO methods use one qubit per site (``W`` zero-padded to
``2**n_out x 2**n_in``; the shorter side gets trivial sites of dimension 1 at
the end), so ``method="disentangle"`` with zero layers gives exactly the same
residual MPO as ``method="mpo"`` at the same bond.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.validate import check_bond, check_bool, check_choice, check_cutoff, check_int, check_real

__all__ = ["compress", "LayerReport", "summarize", "linear_names"]


#: The decompositions :func:`compress` offers.
METHODS = ("mpo", "disentangle", "svd")


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


def linear_layers_text(model: Any) -> str:
    """``"available nn.Linear layers: ..."`` for error messages (the first 40 names)."""
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
            raise QtnnError(f"targets: the predicate matched no layer; {linear_layers_text(model)}")
    elif isinstance(targets, str):
        chosen = [targets]
    elif isinstance(targets, Sequence) and not isinstance(targets, bytes):
        chosen = list(targets)
        if not chosen:
            raise QtnnError(f"targets must name at least one layer, got []; {linear_layers_text(model)}")
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
            raise QtnnError(f"targets: the model has no module named {n!r}; {linear_layers_text(model)}")
        why = _refusal(n, names[n], parents.get(n))
        if why is not None:
            raise QtnnError(f"targets: {why}; {linear_layers_text(model)}")
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
             layout: str = "staircase", start: str = "identity", start_rank: int = 2,
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
        (:func:`qtnn.compress.linear_inputs`), or a dict ``name -> (N, in_features)``
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
    start, start_rank : str, int
        ``"disentangle"``: where the circuits start (see
        :func:`qtnn.staircase.disentangle`; ``"svd"``: at the full depth, from
        the best rank-``start_rank`` approximation, a power of two).
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
    method = check_choice("method", method, METHODS)
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
    check_choice("start", start, ("identity", "svd"))
    check_int("start_rank", start_rank, minimum=1)
    damp = check_real("damp", damp, minimum=0)
    cut = check_cutoff("cutoff", cutoff)
    d_out, d_in = _layers_arg(layers, method)
    for name_, v in (("sweeps", sweeps), ("restarts", restarts), ("refine", refine), ("seed", seed)):
        check_int(name_, v, minimum=0)
    if tol is not None:
        tol = check_real("tol", tol, minimum=0)

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
        if start != "identity":
            opts.update(start=start, start_rank=start_rank)
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
                low = LowRankLinear(in_f, out_f, rank, bias=bias is not None, dtype=dtype,
                                    device=device)
                low.A.copy_(torch.as_tensor(pay["factors"][1]))
                low.B.copy_(torch.as_tensor(pay["factors"][0]))
                if bias is not None and low.bias is not None:
                    low.bias.copy_(bias)
                new = low
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
    from qtnn.compress.llm import linear_inputs

    got = linear_inputs(model, [n for n, _ in chosen], calibration, progress=progress)
    return {n: np.ascontiguousarray(v) for n, v in got.items()}


def _as_inputs(name: str, x: Any, in_features: int) -> Any:
    from qtnn.validate import check_inputs

    try:
        return check_inputs(x, in_features)
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
    from qtnn.tn.linalg import single_threaded_blas

    # one BLAS thread here and in the workers: LAPACK's results can change in the last bits
    # with the thread count (seen on 384 x 384 weights), and the result must not depend on
    # ``workers``
    with single_threaded_blas():
        return _decompose_now(job)


def _decompose_now(job: dict[str, Any]) -> dict[str, Any]:
    from qtnn.staircase import disentangle
    from qtnn.tn import MPO
    from qtnn.tn.linalg import relative_error as _rel_error

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
