"""Pages that the qtnn docs generate at build time (a local Sphinx extension).

* ``docs/api/``: one page per public module, written from that module's ``__all__`` (the one
  declaration of the public API).  Objects are documented under their public names
  (``qtnn.tn.MPO``, not the private module that defines them), so moving a private module
  changes nothing here.  A module that moved is found through :data:`API_MODULES`'
  alternatives (``qtnn.train`` or ``qtnn.apps.train``).
* ``docs/notebooks/``: copies of ``notebooks/*.ipynb`` (myst-nb only reads sources inside
  ``docs/``); a copy is rewritten only when its notebook changed, so the execution cache and
  incremental builds keep working.
* ``docs/_generated/``: Markdown tables read from the benchmark results committed in
  ``examples/*.json``, and the ``--help`` text of every ``qtnn`` subcommand.

None of these folders is committed (``.gitignore``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: The public modules, in the order of the layers.  Each entry: (section, alternatives, summary).
#: The first alternative that imports is documented; it must have ``__all__``.
API_MODULES: list[tuple[str, list[str], str]] = [
    ("library", ["qtnn"], "Top level: the exception family and the sub-packages."),
    ("library", ["qtnn.tn"], "Pure tensor-network math: MPS, MPO, TT-SVD, contraction planning."),
    ("library", ["qtnn.tn.linalg"], "Gauge-fixed dense linear algebra, whitening, BLAS threads."),
    ("library", ["qtnn.staircase"], "Staircase and brickwall circuits as arrays: encoding, "
                                    "disentangling, simulation."),
    ("library", ["qtnn.staircase.magic"], "Magic-basis parametrisation of real two-qubit gates."),
    ("library", ["qtnn.staircase.kernel"], "The compiled reference kernel of trainable staircases."),
    ("library", ["qtnn.quantum"], "PennyLane glue: devices, the staircase template, batched QNodes."),
    ("library", ["qtnn.quantum.ibm"], "IBM device models and backends."),
    ("library", ["qtnn.nn"], "Torch modules: tensorized and hybrid quantum layers."),
    ("library", ["qtnn.analysis"], "Qiskit export, OpenQASM, depth and cost on IBM device models."),
    ("library", ["qtnn.compress"], "Compressing the linear layers of any PyTorch model; perplexity, "
                                   "block caches and healing."),
    ("library", ["qtnn.errors"], "The exception family (also exported by the top level)."),
    ("library", ["qtnn.validate"], "The argument checks every layer shares."),
    ("library", ["qtnn.io"], "Atomic file writing."),
    ("library", ["qtnn.checkpoint"], "Weights-only, atomic, checksummed checkpoints."),
    ("applications", ["qtnn.apps.digits"], "The digits data set and the hybrid classifier."),
    ("applications", ["qtnn.apps.loop"], "The training loop of one process and of every DDP rank."),
    ("applications", ["qtnn.apps.train"], "The main job (``qtnn train``) and its checkpoints."),
    ("applications", ["qtnn.apps.distributed"], "Data-parallel training (DDP)."),
    ("applications", ["qtnn.apps.demo"], "The compression demo."),
    ("applications", ["qtnn.apps.bench"], "Benchmarks behind ``qtnn bench``."),
    ("applications", ["qtnn.apps.bench_circuits"], "Circuit benchmarks behind ``qtnn bench``."),
    ("applications", ["qtnn.apps.lm"], "Language models and text offline: SmolLM2, MiniLM, corpora."),
    ("applications", ["qtnn.apps.models"], "Compressed models on disk."),
    ("applications", ["qtnn.apps.catalogue"], "The ``circuits/`` catalogue."),
    ("applications", ["qtnn.cli"], "The ``qtnn`` command (see also :doc:`/cli`)."),
    ("applications", ["qtnn.cli.compress"], "``qtnn compress``."),
]


#: Base classes whose members are not repeated on every subclass's page: what torch, PennyLane
#: and Python's own classes provide.  Members that a class inherits from qtnn's own (private)
#: base classes, such as the backend switching of the quantum layers, are documented with it.
NOT_INHERITED = ",".join(["ndarray", "Module", "Operation", "Operator", "BaseException", "Exception",
                          "ValueError",
                          "TypeError", "RuntimeError", "OSError", "TimeoutError", "tuple", "dict",
                          "object"])


def _import_first(candidates: list[str]) -> Any:
    errors = []
    for name in candidates:
        try:
            return importlib.import_module(name)
        except ImportError as exc:  # the next alternative, or a warning below
            errors.append(f"{name}: {exc}")
    logger.warning("qtnn_docs: none of %s imports (%s); if the module moved, add its new name to "
                   "API_MODULES in docs/_ext/qtnn_docs.py", candidates, "; ".join(errors))
    return None


def _directive(modname: str, name: str, obj: Any) -> str:
    full = f"{modname}.{name}"
    if inspect.isclass(obj):
        kind = "autoexception" if issubclass(obj, BaseException) else "autoclass"
        return f".. {kind}:: {full}\n   :inherited-members: {NOT_INHERITED}\n"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.ismethod(obj):
        return f".. autofunction:: {full}\n"
    if callable(obj) and not inspect.ismodule(obj):
        return f".. autofunction:: {full}\n"
    simple = isinstance(obj, (int, float, str, bool, tuple, frozenset)) and len(repr(obj)) < 120
    return f".. autodata:: {full}\n" + ("" if simple else "   :no-value:\n")


def _write(path: Path, text: str) -> None:
    """Write only when the text changed (keeps Sphinx's incremental build incremental)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def write_api(docs: Path) -> None:
    out = docs / "api"
    pages: dict[str, list[tuple[str, str]]] = {"library": [], "applications": []}
    for section, candidates, summary in API_MODULES:
        mod = _import_first(candidates)
        if mod is None:
            continue
        modname = mod.__name__
        names = getattr(mod, "__all__", None)
        if names is None:
            logger.warning("qtnn_docs: %s has no __all__", modname)
            continue
        objects, submodules = [], []
        for name in names:
            if name.startswith("__"):
                continue
            obj = getattr(mod, name)
            (submodules if inspect.ismodule(obj) else objects).append((name, obj))
        title = f"``{modname}``"
        lines = [f".. _api-{modname}:\n", title, "=" * len(title), "",
                 f".. automodule:: {modname}", "   :no-members:", ""]
        if submodules:
            lines += ["Sub-packages: " + ", ".join(f":mod:`{modname}.{n}`" for n, _ in submodules) + ".", ""]
        if objects:
            lines += [".. currentmodule:: " + modname, "", ".. autosummary::", ""]
            lines += [f"   {name}" for name, _ in objects] + [""]
            for name, obj in objects:
                lines += [_directive(modname, name, obj)]
        _write(out / f"{modname}.rst", "\n".join(lines))
        pages[section].append((modname, summary))

    index = ["API reference", "=============", "",
             "Generated from the docstrings.  Every page lists exactly the names in its module's",
             "``__all__``, the one place where qtnn declares its public API; anything else is",
             "private and may change without notice.", ""]
    for section, heading in (("library", "Library (layers, lowest first)"),
                             ("applications", "Applications (built on the library)")):
        index += [heading, "-" * len(heading), "", ".. list-table::", "   :widths: 30 70", ""]
        for modname, summary in pages[section]:
            index += [f"   * - :doc:`{modname}`", f"     - {summary}"]
        index += ["", ".. toctree::", "   :hidden:", ""]
        index += [f"   {modname}" for modname, _ in pages[section]] + [""]
    _write(out / "index.rst", "\n".join(index))


def copy_notebooks(docs: Path) -> None:
    src, dst = docs.parent / "notebooks", docs / "notebooks"
    dst.mkdir(exist_ok=True)
    wanted = {p.name for p in src.glob("*.ipynb")}
    for p in dst.glob("*.ipynb"):
        if p.name not in wanted:
            p.unlink()
    for name in sorted(wanted):
        s, d = src / name, dst / name
        if not d.exists() or d.read_bytes() != s.read_bytes():
            shutil.copyfile(s, d)


# --- benchmark tables from examples/*.json ----------------------------------------------------

def _table(header: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:+.2f}%"


def smollm2_tables(data: dict[str, Any]) -> str:
    fits = ["plain", "data", "out", "data/healed", "out/healed"]
    fits += [f for f in ("data/healed-model", "out/healed-model", "data/healed-distill",
                         "out/healed-distill")
             if any(k.endswith("/" + f) for k in data["variants"])]
    fits += ["healed-model"] if any(k.endswith("/original/healed-model") for k in data["variants"]) else []
    text = [f"Baseline perplexity: {data['baseline']['perplexity']:.3f}.\n"
            if isinstance(data.get("baseline"), dict) and "perplexity" in data["baseline"] else ""]
    for target in sorted({v["target"] for v in data["variants"].values() if "target" in v}):
        rows: dict[str, dict[str, Any]] = {}
        order: list[str] = []
        for key, v in data["variants"].items():
            parts = key.split("/")
            if parts[0] != target or "change" not in v:
                continue
            if parts[1] == "removed":
                label, fit = "matrix removed", "plain"
            elif parts[1] == "original":
                label, fit = "original layer (no compression)", "/".join(parts[2:])
            else:
                family = {"mpo": "MPO", "svd": "SVD", "dis": "disentangled",
                          "dis-svd": "disentangled χ=1, SVD start"}.get(parts[1], parts[1])
                params = [p for p in parts[2:] if "=" in p]
                label = f"{family} " + " ".join(p.replace("chi", "χ") for p in params)
                fit = "/".join(p for p in parts[2:] if "=" not in p)
            if label not in rows:
                rows[label] = {"params": v.get("params")}
                order.append(label)
            rows[label][fit] = v["change"]
        text.append(f"**{target}**: change of the perplexity\n\n")
        text.append(_table(["variant", "params", *fits],
                           [[lab, rows[lab]["params"], *(_pct(rows[lab].get(f)) for f in fits)]
                            for lab in order]))
        text.append("\n")
    return "".join(text)


def depth_tables(data: dict[str, Any]) -> str:
    text = []
    for backend in sorted({r["backend"] for r in data["staircase"]}):
        rows = [[r["n"], r["layers"], f"{r['fidelity']:.4f}", r["two_qubit_gates"], r["depth"],
                 r["swaps"], f"{r['duration_ns'] / 1000:.2f}", f"{r['success_probability']:.3f}"]
                for r in data["staircase"] if r["backend"] == backend]
        text.append(f"**Staircases on `{backend}`**\n\n")
        text.append(_table(["n", "D", "fidelity", "2q gates", "depth", "SWAPs", "duration (µs)",
                            "est. success"], rows))
        text.append("\n")
    rows = [[r["n"], r["backend"], r["kind"], r["two_qubit_gates"], r.get("depth", ""),
             r.get("swaps", ""), r.get("all_to_all_two_qubit_gates", ""),
             "" if r.get("success_probability") is None else f"{r['success_probability']:.3g}"]
            for r in data["dense"]]
    text.append("**Haar-random dense unitary on the same qubits**\n\n")
    text.append(_table(["n", "backend", "kind", "2q gates", "depth", "SWAPs", "2q gates all-to-all",
                        "est. success"], rows, "rllrrrrr"))
    return "".join(text)


def minilm_tables(data: dict[str, Any]) -> str:
    text = []
    for which in ["all", *sorted({r["set"] for r in data["rows"]} - {"all"})]:
        rows = [[r["method"], r["bond"], r["depth_per_side"], r["params_after"],
                 f"{r['weight_error']:.4f}", f"{r['truncation_error']:.4f}", r["two_qubit_gates"],
                 f"{r['mean_cosine']:.3f}", f"{r['nn_agreement']:.3f}"]
                for r in data["rows"] if r["set"] == which]
        title = "all five matrices together" if which == "all" else f"`{which}` alone"
        text.append(f"**{title}**\n\n")
        text.append(_table(["method", "bond", "D per side", "params", "weight error",
                            "plain truncation", "2q gates", "mean cosine", "NN agreement"],
                           rows, "lrrrrrrrr"))
        text.append("\n")
    return "".join(text)


def gpu_tables(data: dict[str, Any]) -> str:
    head = (f"{data.get('gpu_name', '?')}, torch {data.get('torch', '?')}, CUDA "
            f"{data.get('cuda_version', '?')}; tolerance {data.get('tolerance')} "
            f"(training {data.get('train_tolerance')}).\n\n")
    rows = [[r["check"] + (f" {tuple(r['shape'])}, bond {r['bond']}" if "shape" in r else ""),
             r.get("skipped") or f"{r['max_abs_diff']:.1e}", "yes" if r.get("ok") else "NO"]
            for r in data.get("agreement", [])]
    text = head + _table(["check (GPU against CPU, float64)", "max abs difference", "ok"], rows, "lrl")
    rows = []
    for r in data.get("speed", []):
        vals = r.get("ms") or r.get("samples_per_s") or {}
        unit = "ms" if "ms" in r else "samples/s"
        rows.append([r["what"], "; ".join(f"{k}: {v:,.2f} {unit}" for k, v in vals.items())])
    return text + "\n" + _table(["timing", "result"], rows, "ll")


def mpo_linear_tables(data: dict[str, Any]) -> str:
    env = data.get("environment", {})
    load = env.get("load_average") or [float("nan")]
    head = (f"{data.get('device', 'cpu')}, {data.get('dtype')}, torch {data.get('torch', '?')}, "
            f"{env.get('cpus', '?')} CPUs, {data.get('threads', '?')} torch threads, median of "
            f"{data.get('repeats')} interleaved repeats"
            + (", each consecutive calls over at least about 20 ms" if any(
                "calls_per_sample" in r for r in data["rows"]) else "")
            + f"; load at the start {load[0]:.2f}.\n\n")
    cells: dict[tuple[int, int, int], dict[str, Any]] = {}
    for r in data["rows"]:
        cells.setdefault((r["size"], r["bond"], r["batch"]), {})[r["mode"]] = r
    twin = any("twin_ratio" in r for r in data["rows"])     # nn.Linear against its copy
    rows = []
    for (size, bond, batch), by in sorted(cells.items()):
        tr, inf = by.get("train", {}), by.get("infer", {})
        row = [f"{size}²", bond, batch,
               f"{tr['ratio']:.2f}" if tr else "", f"{tr['flops_planned_ratio']:.2f}" if tr else "",
               f"{inf['ratio']:.2f}" if inf else "",
               f"{tr.get('strategy', '')} / {inf.get('strategy', '')}"]
        if twin:
            row.append(" / ".join(f"{m['twin_ratio']:.2f}" if "twin_ratio" in m else "" for m in (tr, inf)))
        rows.append(row)
    head_row = ["size", "bond", "batch", "train: time / nn.Linear", "train: FLOPs / dense",
                "infer: time / nn.Linear", "plan (train / infer)"]
    if twin:
        head_row.append("nn.Linear's copy / nn.Linear (train / infer)")
    return head + _table(head_row, rows, "rrrrrrl" + "l" * twin)


def cli_help() -> str:
    try:
        cli = importlib.import_module("qtnn.cli")
        parser = cli.build_parser()
    except (ImportError, AttributeError) as exc:
        logger.warning("qtnn_docs: cannot build the qtnn parser: %s", exc)
        return ""

    import argparse

    out: list[str] = []

    def walk(p: argparse.ArgumentParser, path: str, level: int) -> None:
        out.append(f"{'#' * level} `{path}`\n\n```text\n{p.format_help().rstrip()}\n```\n\n")
        for action in p._actions:  # argparse has no public API for sub-parsers
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}", min(level + 1, 4))

    walk(parser, "qtnn", 2)
    return "".join(out)


def write_generated(docs: Path) -> None:
    gen, examples = docs / "_generated", docs.parent / "examples"
    makers = {"compress_smollm2.json": ("smollm2.md", smollm2_tables),
              "depth_study.json": ("depth_study.md", depth_tables),
              "compress_minilm.json": ("minilm.md", minilm_tables),
              "gpu_check_h200.json": ("gpu_check.md", gpu_tables),
              "bench_mpo_linear.json": ("mpo_linear.md", mpo_linear_tables)}
    for src, (dst, make) in makers.items():
        path = examples / src
        text = make(json.loads(path.read_text())) if path.exists() else f"*(`examples/{src}` is missing)*\n"
        _write(gen / dst, text)
    _write(gen / "cli.md", cli_help())


def _generate(app: Sphinx) -> None:
    docs = Path(app.srcdir)
    write_api(docs)
    copy_notebooks(docs)
    write_generated(docs)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", _generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
