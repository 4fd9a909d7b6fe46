"""Fidelity-versus-depth benchmark of the MPS -> staircase encoders.

:func:`staircase_benchmark` encodes four seeded targets on ``n`` qubits with
every method and every depth ``D = 1 .. max_layers`` (each depth a separate
run, so the timing is the cost of producing that circuit) and returns the
fidelities and wall times.  The ``qtnn`` command line prints it with
:func:`format_benchmark`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from qtnn.errors import QtnnError
from qtnn.staircase.encode import METHODS, encode_mps
from qtnn.staircase.targets import heisenberg_ground_state, ising_ground_state
from qtnn.tn.mps import MPS
from qtnn.validate import check_alloc, check_choice, check_int, pow2

__all__ = ["staircase_benchmark", "format_benchmark", "disentangle_benchmark", "scale_benchmark",
           "planted_benchmark"]


def _targets(n: int, seed: int) -> dict[str, tuple[str, MPS]]:
    return {
        "heisenberg": ("ground state of sum XX+YY+ZZ (open chain)", heisenberg_ground_state(n)),
        "ising": ("ground state of -sum ZZ - sum X (open chain, h=1)", ising_ground_state(n, 1.0)),
        "random-4": (f"MPS.random(n, 4, seed={seed})", MPS.random(n, 4, seed=seed)),
        "random-8": (f"MPS.random(n, 8, seed={seed})", MPS.random(n, 8, seed=seed)),
    }


def staircase_benchmark(n: int = 12, max_layers: int = 6,
                        methods: Sequence[str] = ("ran", "sweep", "iterative"), seed: int = 0,
                        *, k: int = 2, sweeps: int | None = None) -> dict[str, Any]:
    """Fidelity of :func:`~qtnn.staircase.encode.encode_mps` for depths ``D`` from 1 to ``max_layers``.

    Targets: the Heisenberg and critical Ising (``h = 1``) ground states on
    ``n`` qubits and random real MPS of bond 4 and 8 (``MPS.random(n, b, seed=seed)``).

    Parameters
    ----------
    n : int
        Number of qubits.
    max_layers : int
        Largest depth.
    methods : sequence of str
        Any of ``"ran"``, ``"sweep"``, ``"iterative"``.
    seed : int
        Seed of the random targets and of the encoders.
    k : int
        Qubits per gate.
    sweeps : int, optional
        Passed to :func:`encode_mps` (default: its default).

    Returns
    -------
    dict
        ``{"n", "max_layers", "k", "seed", "methods", "seconds", "targets": {name:
        {"description", "max_bond", "results": {method: {"fidelity": [...],
        "seconds": [...]}}}}}``; list entry ``D - 1`` is for depth ``D``.

    Examples
    --------
    >>> res = staircase_benchmark(n=6, max_layers=2, methods=("ran",))
    >>> sorted(res["targets"]), len(res["targets"]["ising"]["results"]["ran"]["fidelity"])
    (['heisenberg', 'ising', 'random-4', 'random-8'], 2)
    """
    n = check_int("n", n, minimum=2)
    max_layers = check_int("max_layers", max_layers, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    k = check_int("k", k, minimum=1, maximum=n)
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise QtnnError(f"methods must be a non-empty sequence of {METHODS}, got {methods!r}")
    methods = tuple(check_choice("methods[]", m, METHODS) for m in methods)
    extra: dict[str, Any] = {} if sweeps is None else {"sweeps": check_int("sweeps", sweeps, minimum=0)}
    t0 = time.perf_counter()
    out: dict[str, Any] = {"n": n, "max_layers": max_layers, "k": k, "seed": seed,
                           "methods": list(methods), "targets": {}}
    for name, (desc, psi) in _targets(n, seed).items():
        entry: dict[str, Any] = {"description": desc, "max_bond": psi.max_bond, "results": {}}
        for method in methods:
            fids, secs = [], []
            for d in range(1, max_layers + 1):
                t = time.perf_counter()
                _, rep = encode_mps(psi, d, method=method, k=k, seed=seed, **extra)
                secs.append(time.perf_counter() - t)
                fids.append(rep.final_fidelity)
            entry["results"][method] = {"fidelity": fids, "seconds": secs}
        out["targets"][name] = entry
    out["seconds"] = time.perf_counter() - t0
    return out


def format_benchmark(result: dict[str, Any]) -> str:
    """The result of :func:`staircase_benchmark` as a text table.

    Examples
    --------
    >>> res = staircase_benchmark(n=4, max_layers=1, methods=("ran",))
    >>> print(format_benchmark(res).splitlines()[0])
    n=4 k=2 seed=0: fidelity |<psi|G|0>|^2 (time in s) for D = 1..1
    """
    d_max = result["max_layers"]
    lines = [f"n={result['n']} k={result['k']} seed={result['seed']}: fidelity |<psi|G|0>|^2 "
             f"(time in s) for D = 1..{d_max}"]
    head = f"{'target':<11} {'method':<10}" + "".join(f"{'D=' + str(d):>19}" for d in range(1, d_max + 1))
    lines.append(head)
    for name, entry in result["targets"].items():
        for method, res in entry["results"].items():
            cells = "".join(f"{f:>11.6f} ({s:5.2f})"
                            for f, s in zip(res["fidelity"], res["seconds"], strict=False))
            lines.append(f"{name:<11} {method:<10}{cells}")
    return "\n".join(lines)


def disentangle_benchmark(qubits: Sequence[int] = (4, 5, 6), layers: Sequence[int] = (1, 2),
                          bonds: Sequence[int] = (1, 2, 4), seed: int = 0,
                          progress: bool = False) -> dict[str, Any]:
    """Error of :func:`~qtnn.staircase.disentangling` against plain truncation.

    For each ``n`` in ``qubits`` a seeded Gaussian ``2^n x 2^n`` matrix is
    disentangled with ``D`` layers per side (``layers``) and residual bond
    ``max_bond`` (``bonds``); rows hold both relative errors, their ratio and
    the time taken.

    Examples
    --------
    >>> r = disentangle_benchmark(qubits=(3,), layers=(1,), bonds=(1,))
    >>> row = r["rows"][0]
    >>> row["error"] <= row["truncation_error"]
    True
    """
    import numpy as np
    from tqdm.auto import tqdm

    from qtnn.staircase.disentangling import disentangle

    def ints(name: str, values: Any, minimum: int) -> list[int]:
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise QtnnError(f"{name} must be a non-empty sequence of integers >= {minimum}, got {values!r}")
        return [check_int(f"{name}[]", v, minimum=minimum) for v in values]

    qubits = ints("qubits", qubits, 1)
    layers = ints("layers", layers, 0)
    bonds = ints("bonds", bonds, 1)
    seed = check_int("seed", seed, minimum=0)
    for n in qubits:
        check_alloc(f"a Gaussian 2^{n} x 2^{n} matrix (qubits={n})", pow2(2 * n), 8,
                    hint="use fewer qubits per side")
    cases = [(n, d, b) for n in qubits for d in layers for b in bonds]
    rows = []
    t0 = time.perf_counter()
    for n, d, b in tqdm(cases, desc="disentangle", disable=not progress):
        w = np.random.default_rng([seed, n]).normal(size=(2**n, 2**n))
        t = time.perf_counter()
        res = disentangle(w, d, d, b, seed=seed)
        rows.append({"qubits_per_side": n, "layers": d, "max_bond": b, "error": res.error,
                     "truncation_error": res.truncation_error,
                     "ratio": res.error / res.truncation_error if res.truncation_error else 1.0,
                     "params_before": res.params_before, "params_after": res.params_after,
                     "seconds": time.perf_counter() - t})
    return {"what": "Gaussian 2^n x 2^n matrices, relative Frobenius errors", "seed": seed,
            "rows": rows, "seconds": time.perf_counter() - t0}


def scale_benchmark(seed: int = 0) -> dict[str, Any]:
    """The two scale targets: encoding a random MPS (n=50, bond 16, D=4, iterative)
    and disentangling a 2^10 x 2^10 MPO of bond 32 (D=4 per side, max_bond=4).

    Returns their wall times, fidelity / errors.

    Examples
    --------
    >>> r = scale_benchmark()                      # doctest: +SKIP
    >>> sorted(r)                                  # doctest: +SKIP
    ['disentangle_2^10_bond32_D4_chi4', 'encode_n50_bond16_D4']
    """
    from qtnn.staircase.disentangling import disentangle
    from qtnn.tn.mpo import MPO

    out: dict[str, Any] = {}
    psi = MPS.random(50, 16, seed=seed)
    t = time.perf_counter()
    _, rep = encode_mps(psi, 4, method="iterative", seed=seed)
    out["encode_n50_bond16_D4"] = {"seconds": time.perf_counter() - t,
                                   "fidelity": rep.final_fidelity}
    w = MPO.random((2,) * 10, (2,) * 10, 32, seed=seed)
    t = time.perf_counter()
    res = disentangle(w, 4, 4, 4, seed=seed)
    out["disentangle_2^10_bond32_D4_chi4"] = {"seconds": time.perf_counter() - t,
                                              "error": res.error,
                                              "truncation_error": res.truncation_error,
                                              "method": res.method}
    return out


def planted_benchmark(n_out: int = 8, n_in: int = 10, depths: Sequence[int] = (2, 4),
                      seeds: int = 10, *, layout: str = "staircase", refine: int = 200,
                      threshold: float = 1e-3, gates: str = "o4",
                      progress: bool = False) -> dict[str, Any]:
    """Recovery of planted ``W = U0 M0 V0^T`` (bond 1) by ``disentangle(method="grow")``.

    For each depth ``D`` and seed ``s``: ``U0`` and ``V0`` are Haar-random
    circuits of ``D`` layers (``Staircase.random(n, D, seed=...)`` in the given
    layout) on ``n_out`` and ``n_in`` qubits, ``M0 = MPO.random(..., 1)``, and
    the fit uses the same ``D`` and layout.  A seed counts as recovered when
    the relative error is below ``threshold``.  This is the acceptance test of
    the deep-circuit optimiser: the solution exists, so anything above the
    threshold is the optimiser's failure, not the model's.

    *Gate family.*  ``gates="o4"`` (the default) plants Haar-random gates of
    ``O(4)``, the family the library's circuits represent: a gate of
    determinant ``-1`` is exported as a ``CZ`` followed by a ``det = +1``
    gate (:mod:`qtnn.staircase.magic`), so half of the planted gates have
    determinant ``-1``.  ``gates="so4"`` plants Haar-random ``SO(4)`` gates
    (each ``O(4)`` gate of determinant ``-1`` times ``diag(1, 1, 1, -1)``,
    the same seeds otherwise): a diagnostic, since the grow engine moves every
    gate continuously from the identity and so only reaches circuits of
    determinant-``+1`` gates.  Each row records ``det_minus``, the planted
    gates of determinant ``-1`` in ``U0`` and ``V0`` together.

    Examples
    --------
    >>> r = planted_benchmark(3, 3, depths=(1,), seeds=1, refine=50)
    >>> row = r["rows"][0]
    >>> row["error"] <= row["truncation_error"], r["summary"][0]["seeds"]
    (True, 1)
    >>> planted_benchmark(3, 3, depths=(1,), seeds=1, refine=0, gates="so4")["rows"][0]["det_minus"]
    0
    """
    import numpy as np
    from tqdm.auto import tqdm

    from qtnn.staircase.circuit import Staircase
    from qtnn.staircase.disentangling import disentangle
    from qtnn.tn.mpo import MPO

    n_out = check_int("n_out", n_out, minimum=2)
    n_in = check_int("n_in", n_in, minimum=2)
    seeds = check_int("seeds", seeds, minimum=1)
    refine = check_int("refine", refine, minimum=0)
    layout = check_choice("layout", layout, ("staircase", "brickwall"))
    gates = check_choice("gates", gates, ("o4", "so4"))
    depths = [check_int("depths[]", d, minimum=1) for d in depths]
    check_alloc(f"the dense 2^{n_out} x 2^{n_in} planted matrix", 8.0 * pow2(n_out + n_in), 8,
                hint="use fewer qubits")
    n = max(n_out, n_in)
    out_dims = (2,) * n_out + (1,) * (n - n_out)
    in_dims = (2,) * n_in + (1,) * (n - n_in)
    rows: list[dict[str, Any]] = []
    cases = [(d, s) for d in depths for s in range(seeds)]
    for d, s in tqdm(cases, desc=f"planted {n_out}+{n_in}", disable=not progress):
        U0 = Staircase.random(n_out, d, seed=3 * s, layout=layout)
        V0 = Staircase.random(n_in, d, seed=3 * s + 1, layout=layout)
        det_minus = int((np.linalg.det(U0.gates) < 0).sum() + (np.linalg.det(V0.gates) < 0).sum())
        if gates == "so4":
            U0, V0 = _det_plus(U0), _det_plus(V0)
            det_minus = 0
        M0 = MPO.random(out_dims, in_dims, 1, seed=3 * s + 2).to_dense()
        W = V0.apply(U0.apply(np.ascontiguousarray(M0.T)).T)       # U0 M0 V0^T
        t = time.perf_counter()
        res = disentangle(W, d, d, 1, method="grow", layout=layout, refine=refine)
        rows.append({"depth": d, "seed": s, "det_minus": det_minus, "error": res.error,
                     "truncation_error": res.truncation_error,
                     "stage_errors": [st.error for st in res.stages],
                     "recovered": res.error < threshold, "seconds": time.perf_counter() - t})
    summary = []
    for d in depths:
        mine = [r for r in rows if r["depth"] == d]
        errs = [float(r["error"]) for r in mine]
        summary.append({"depth": d, "seeds": seeds, "recovered": sum(e < threshold for e in errs),
                        "median_error": float(np.median(errs)), "best_error": min(errs),
                        "seconds": float(sum(float(r["seconds"]) for r in mine))})
    return {"n_out": n_out, "n_in": n_in, "layout": layout, "gates": gates, "refine": refine,
            "threshold": threshold, "rows": rows, "summary": summary}


def _det_plus(c: Any) -> Any:
    """``c`` with every gate of determinant ``-1`` times ``diag(1, 1, 1, -1)`` (all in ``SO(4)``)."""
    import numpy as np

    from qtnn.staircase.circuit import Staircase

    g = np.array(c.gates)
    g[..., :, -1] *= np.where(np.linalg.det(g) < 0, -1.0, 1.0)[..., None]
    return Staircase(c.n_qubits, c.layers, c.k, g, layout=c.layout)
