"""The ``qtnn`` command.

Every subcommand that reports figures takes ``--json PATH``; errors are one
line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from qtnn.cli._args import RenamedOption
from qtnn.errors import QtnnError

__all__ = ["main", "build_parser"]


def _ints(text: str) -> list[int]:
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``qtnn`` (exposed for documentation and tests).

    Examples
    --------
    >>> args = build_parser().parse_args(["depth", "--layers", "1,2"])
    >>> args.command, args.target, args.layers, args.backend
    ('depth', 'heisenberg', [1, 2], 'fake:torino')
    """
    p = argparse.ArgumentParser(
        prog="qtnn",
        description="Quantum-classical hybrid tensorized neural networks: MPO layers, "
                    "staircase circuits, benchmarks.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("compress-demo", help="train a small MLP on digits, compress its first layer to "
                                             "an MPO at several bonds and report")
    d.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    d.add_argument("--bonds", type=_ints, default=[1, 2, 4, 8, 16], help="comma-separated bonds")
    d.add_argument("--epochs", type=int, default=30, help="training epochs of the dense model")
    d.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")

    t = sub.add_parser("train", help="the main job: train a hybrid classifier (MPOLinear -> QuantumHead) "
                                     "on digits, compare paths, evaluate with shots and device noise")
    t.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    t.add_argument("--layers", type=int, default=4, help="staircase layers of the quantum head (default 4)")
    t.add_argument("--qubits", type=int, default=6, help="qubits of the head (default 6: 64 amplitudes)")
    t.add_argument("--max-bond", "--bond", type=int, default=8, action=RenamedOption, deprecated=("--bond",),
                   help="bond of the MPOLinear feature layer (default 8)")
    t.add_argument("--head", choices=["quantum", "disentangled"], default="quantum",
                   help="quantum head (probabilities) or a DisentangledLinear layer (default quantum)")
    t.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (default 0.01)")
    t.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    t.add_argument("--seed", type=int, default=0, help="seed of data split, init and shuffling (default 0)")
    t.add_argument("--device", default="default.qubit",
                   help="device the hybrid trains on (default default.qubit; backprop)")
    t.add_argument("--shots", type=int, default=4000, help="shots for the Aer and device-model runs")
    t.add_argument("--fake", default="fake:torino",
                   help="IBM device model for the noisy evaluation, or 'none' (default fake:torino)")
    t.add_argument("--fake-samples", type=int, default=200,
                   help="test samples evaluated on the device model (default 200)")
    t.add_argument("--save", metavar="PATH", help="write the trained hybrid as a checkpoint")
    t.add_argument("--checkpoint", metavar="PATH", help="write the training state after every epoch")
    t.add_argument("--resume", metavar="PATH", help="continue training from a --checkpoint file")
    t.add_argument("--nproc", type=int, default=1,
                   help="train the hybrid with DistributedDataParallel on this many local processes "
                        "(gloo on CPU; default 1). Under torchrun, leave it at 1: "
                        "torchrun --nproc-per-node N -m qtnn.cli train ...")
    t.add_argument("--torch-device", choices=["cpu", "cuda"], default="cpu",
                   help="torch device of the reference-path model and the dense MLP (default cpu)")
    t.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")

    b = sub.add_parser("bench", help="benchmarks (ratios against a baseline in the same run)")
    bsub = b.add_subparsers(dest="bench", metavar="BENCH")
    b.add_argument("--all", action="store_true", dest="bench_all",
                   help="run the summary of every benchmark (qtnn.apps.bench_summary) and write "
                        "PREFIX.json and PREFIX.png (see --prefix)")
    b.add_argument("--prefix", default="bench-all",
                   help="with --all: path prefix of the JSON and PNG files (default bench-all)")
    m = bsub.add_parser("mpo-linear", help="forward+backward time of MPOLinear against nn.Linear")
    m.add_argument("--sizes", type=_ints, default=[1024, 4096], help="square layer sizes (default 1024,4096)")
    m.add_argument("--bonds", type=_ints, default=[8, 16, 32], help="bond dims (default 8,16,32)")
    m.add_argument("--batch", default="256", help="comma-separated batch sizes (default 256)")
    m.add_argument("--modes", default="train",
                   help="comma-separated: train (forward+backward), infer (forward, no_grad); default train")
    m.add_argument("--repeats", type=int, default=7, help="timed repeats (default 7)")
    m.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="dtype of the layers (default float32)")
    m.add_argument("--device", default="cpu", help="torch device (default cpu)")
    m.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")

    h = bsub.add_parser("hybrid", help="forward+backward samples/s of a staircase layer on the reference "
                                       "path and on every QNode path")
    h.add_argument("--qubits", type=_ints, default=[6, 10], help="qubit counts (default 6,10)")
    h.add_argument("--layers", type=int, default=2, help="staircase layers (default 2)")
    h.add_argument("--batch", type=_ints, default=[64, 512],
                   help="comma-separated batch sizes, one row each (default 64,512)")
    h.add_argument("--aer-batch", type=int, default=4,
                   help="batch for qiskit.aer parameter-shift (default 4)")
    h.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    h.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")

    s = bsub.add_parser("staircase", help="fidelity against depth of the MPS -> staircase encoders, "
                                          "and disentangling error against plain truncation")
    s.add_argument("--n", type=int, default=12, help="qubits of the encoding targets (default 12)")
    s.add_argument("--max-layers", type=int, default=6, help="largest depth D (default 6)")
    s.add_argument("--methods", default="ran,sweep,iterative",
                   help="comma-separated encoders (default ran,sweep,iterative)")
    s.add_argument("--seed", type=int, default=0, help="seed of the random targets (default 0)")
    s.add_argument("--dis-qubits", type=_ints, default=[4, 5, 6],
                   help="qubits per side of the disentangling cases (default 4,5,6)")
    s.add_argument("--no-scale", action="store_true",
                   help="skip the scale runs (n=50 encoding, 2^10 x 2^10 disentangling; ~40 s)")
    s.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")
    pl = bsub.add_parser("planted", help="recovery of planted W = U0 M0 V0^T (bond 1) by the deep "
                                         "disentangling engine (method='grow')")
    pl.add_argument("--qubits", type=_ints, default=[8, 10], help="n_out,n_in (default 8,10)")
    pl.add_argument("--depths", type=_ints, default=[2, 4], help="layers per side (default 2,4)")
    pl.add_argument("--seeds", type=int, default=10, help="seeds per depth (default 10)")
    pl.add_argument("--layout", choices=["staircase", "brickwall"], default="staircase")
    pl.add_argument("--refine", type=int, default=200, help="L-BFGS iterations per stage (default 200)")
    pl.add_argument("--gates", choices=["o4", "so4"], default="o4",
                    help="planted gate family: Haar O(4), what the circuits represent (default), or "
                         "SO(4) (determinant +1 only, the grow engine's reach; a diagnostic)")
    pl.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")
    dp = sub.add_parser(
        "depth", help="fidelity, two-qubit gates, depth, duration and success probability of "
                      "staircases of D = 1, 2, ... layers on an IBM device model",
        description="Sweep the number of staircase layers D for a target (an MPS to prepare or an "
                    "MPO to disentangle) and report, per D, the fidelity (or weight error), the "
                    "two-qubit gates, depth, SWAPs, duration and estimated success probability "
                    "after transpiling for a device model, with a dense unitary as the baseline. "
                    "Writes a table, a JSON file and a PNG plot.")
    dp.add_argument("--target", default="heisenberg",
                    help="built-in target (heisenberg, ising: ground states; random-mps; "
                         "random-mpo), an .npz file of an MPS/MPO (qtnn.tn.save_tt) or of a staircase "
                         "(Staircase.save), or a checkpoint from `qtnn train --save` with --layer "
                         "(default heisenberg)")
    dp.add_argument("--layer", help="with a checkpoint: features (the MPOLinear weight, "
                                    "disentangled) or head (the trained staircase, its own input "
                                    "encoding, and both with the read-out as one circuit)")
    dp.add_argument("--n", type=int, default=8, help="qubits of a built-in target (default 8; "
                                                     "random-mpo: qubits per side)")
    dp.add_argument("--bond", type=int, default=8, help="bond of the random targets (default 8)")
    dp.add_argument("--layers", type=_ints, default=[1, 2, 3, 4],
                    help="comma-separated depths D (default 1,2,3,4)")
    dp.add_argument("--backend", default="fake:torino",
                    help="IBM device model, 'fake:<name>' (default fake:torino; e.g. fake:fez, "
                         "fake:sherbrooke)")
    dp.add_argument("--optimization-level", type=int, default=3, choices=[0, 1, 2, 3],
                    help="Qiskit transpiler level (default 3)")
    dp.add_argument("--method", default="iterative", choices=["iterative", "sweep", "ran"],
                    help="encoder for MPS targets (default iterative)")
    dp.add_argument("--max-bond", type=int, default=1,
                    help="residual bond for MPO targets (default 1)")
    dp.add_argument("--seed", type=int, default=0, help="seed of targets, encoder and transpiler")
    dp.add_argument("--no-dense", action="store_true", help="skip the dense-unitary baseline")
    dp.add_argument("--json", metavar="PATH", help="JSON output (default runs/depth/<target>.json)")
    dp.add_argument("--png", metavar="PATH", help="plot (default runs/depth/<target>.png)")

    from qtnn.cli.compress import add_parser as _add_compress

    _add_compress(sub)

    from qtnn.apps.evaluate import add_parser as _add_eval

    _add_eval(sub)

    cp = sub.add_parser("circuits", help="the circuits/ catalogue of reference OpenQASM 3 files")
    csub = cp.add_subparsers(dest="circuits", metavar="ACTION")
    csub.required = True
    cb = csub.add_parser("build", help="(re)write every catalogue file and manifest.json")
    cb.add_argument("--out", default="circuits", help="folder (default circuits)")
    cb.add_argument("--json", metavar="PATH", help="also write the manifest to this path")
    cc = csub.add_parser("check", help="rebuild in a temporary folder, compare with the committed "
                                       "files, and verify every QASM file's fidelity")
    cc.add_argument("--dir", default="circuits", help="folder (default circuits)")
    cc.add_argument("--json", metavar="PATH", help="write the verified fidelities to this file")
    return p


def _depth_target(args: argparse.Namespace) -> tuple[Any, str]:
    """(MPS, MPO or Staircase, label) named by --target / --layer."""
    import os

    from qtnn.staircase import heisenberg_ground_state, ising_ground_state
    from qtnn.tn import MPO, MPS
    from qtnn.validate import check_int

    spec = args.target
    builtin = {"heisenberg", "ising", "random-mps", "random-mpo"}
    if spec in builtin:
        n = check_int("--n", args.n, minimum=2, maximum=24)
        bond = check_int("--bond", args.bond, minimum=1)
        if spec == "heisenberg":
            return heisenberg_ground_state(n, seed=args.seed), f"heisenberg_n{n}"
        if spec == "ising":
            return ising_ground_state(n, seed=args.seed), f"ising_n{n}"
        if spec == "random-mps":
            return MPS.random(n, bond, seed=args.seed), f"random_mps_n{n}_bond{bond}"
        if n > 8:
            raise QtnnError(f"--n {n} qubits per side is too large for the random-mpo sweep "
                            f"(disentangling 2^{n} x 2^{n}); use --n <= 8")
        return MPO.random([2] * n, [2] * n, bond, seed=args.seed), f"random_mpo_{n}x{n}_bond{bond}"
    if not os.path.exists(spec):
        raise QtnnError(f"--target {spec!r} is neither a built-in target ({', '.join(sorted(builtin))}) "
                        f"nor an existing file")
    label = os.path.splitext(os.path.basename(spec))[0]
    if spec.endswith(".npz"):
        import numpy as np

        with np.load(spec, allow_pickle=False) as data:
            files = set(data.files)
        if "gates" in files:
            from qtnn.staircase import Staircase

            return Staircase.load(spec), label
        from qtnn.tn import load_tt

        return load_tt(spec), label
    from qtnn.apps.train import load_hybrid

    model, _ = load_hybrid(spec)
    if args.layer == "features":
        W = model.features.weight.detach().double().numpy()
        return MPO.from_dense(W), f"{label}_features"
    if args.layer == "head":
        body = getattr(model.head, "body", None)
        if body is None:
            raise QtnnError(f"the head of {spec!r} is not a staircase (it is a "
                            f"{type(model.head).__name__}); use --layer features")
        return model.head, f"{label}_head"
    raise QtnnError(f"--layer must be 'features' or 'head' for a checkpoint, got {args.layer!r}")


def _print_cost(label: str, rep: Any) -> None:
    """One line of a DepthReport: two-qubit gates, depth, duration, estimated success."""
    extra = (f", fidelity {rep.encoding_fidelity:.3f} on a generic input"
             if rep.encoding_fidelity is not None and rep.encoding_fidelity < 1 else "")
    esp = "" if rep.success_probability is None else (
        f", est. success {rep.success_probability:.4f} (with read-out {rep.success_with_readout:.4f})")
    print(f"  {label:<32} {rep.two_qubit_gates:>6} two-qubit gates, depth {rep.depth:>5}, "
          f"{rep.swaps} SWAPs, {(rep.duration_ns or 0.0) / 1000:.2f} us{esp}{extra}")


def _head_depth(head: Any, label: str, args: argparse.Namespace) -> dict[str, Any]:
    """``qtnn depth`` of a trained quantum head: its own input encoding, the head, and both together."""
    from qtnn.analysis import encoding_report, model_depth_report

    rep = model_depth_report(head, args.backend, optimization_level=args.optimization_level,
                             seed=args.seed, name=label)
    enc, total = rep.encoding, rep.total
    if enc is None or total is None:  # pragma: no cover - model_depth_report always sets both
        raise QtnnError(f"no encoding report for {label!r}")
    body = head.body
    kind = ("StatePrep (amplitude)" if body.encoding == "amplitude"
            else f"staircase D={body.encoding_layers}")
    # the other encoding, for comparison: the bounded-depth one beside StatePrep and vice versa
    other = (encoding_report(rep.n_qubits, "staircase", 2, args.backend,
                             optimization_level=args.optimization_level, seed=args.seed)
             if body.encoding == "amplitude" else
             encoding_report(rep.n_qubits, "amplitude", 1, args.backend,
                             optimization_level=args.optimization_level, seed=args.seed))
    print(f"{label}: {rep.n_qubits} qubits, {rep.layers} layers, {rep.logical_gates} gates, read-out "
          f"wires {list(body.readout_wires)}; on {rep.backend} (optimization level "
          f"{rep.optimization_level}, layout of the total {total.initial_layout}):")
    _print_cost(f"encoding, {kind}", enc)
    _print_cost("head (trained staircase)", rep)
    _print_cost("total (encoding + head)", total)
    _print_cost("alternative: " + ("staircase D=2" if body.encoding == "amplitude" else "StatePrep"),
                other)
    return {"target": label, "report": rep.to_dict(), "encoding": enc.to_dict(),
            "total": total.to_dict(), "alternative_encoding": other.to_dict()}


def _cmd_depth(args: argparse.Namespace) -> dict[str, Any]:
    import os

    from qtnn.analysis import depth_report, depth_sweep, plot_depth_sweep
    from qtnn.apps.bench import format_table
    from qtnn.staircase import Staircase

    target, label = _depth_target(args)
    json_path = args.json or os.path.join("runs", "depth", f"{label}.json")
    args.json = json_path
    if hasattr(target, "body"):                    # the quantum head of a checkpoint
        return _head_depth(target, label, args)
    if isinstance(target, Staircase):
        rep = depth_report(target, args.backend, optimization_level=args.optimization_level,
                           seed=args.seed, name=label)
        r = rep.to_dict()
        print(f"{label}: {rep.n_qubits} qubits, {rep.layers} layers, {rep.logical_gates} gates -> "
              f"{rep.two_qubit_gates} two-qubit gates on {rep.backend}, depth {rep.depth} "
              f"(two-qubit depth {rep.two_qubit_depth}), {rep.swaps} SWAPs, "
              f"{(rep.duration_ns or 0.0) / 1000:.2f} us, est. success probability "
              f"{rep.success_probability or float('nan'):.4f}, layout {rep.layout}")
        return {"target": label, "report": r}
    res = depth_sweep(target, args.layers, args.backend, optimization_level=args.optimization_level,
                      seed=args.seed, method=args.method, max_bond=args.max_bond,
                      dense=not args.no_dense, name=label, progress=True)
    cols = [("layers", "D", "d")]
    cols += ([("fidelity", "fidelity", ".6f")] if res["kind"] == "mps" else
             [("error", "error", ".4f"), ("truncation_error", "truncation", ".4f")])
    cols += [("logical_gates", "gates", "d"), ("two_qubit_gates", "2q gates", "d"),
             ("depth", "depth", "d"), ("two_qubit_depth", "2q depth", "d"), ("swaps", "SWAPs", "d"),
             ("duration_us", "us", ".2f"), ("success_probability", "est. success", ".4f")]
    rows = [{**r, "duration_us": (r["duration_ns"] or 0.0) / 1000} for r in res["rows"]]
    print(f"{label}: {res['n_qubits']} sites, {res['backend']}, optimization level "
          f"{res['optimization_level']}")
    print(format_table(rows, cols))
    dense = res["dense"]
    if dense:
        if dense["kind"] == "measured":
            print(f"dense {dense['n_qubits']}-qubit unitary: {dense['two_qubit_gates']} two-qubit "
                  f"gates, depth {dense['depth']}, {dense['swaps']} SWAPs, est. success "
                  f"{dense['success_probability']:.3g} (measured)")
        else:
            print(f"dense {dense['n_qubits']}-qubit unitary: ~{dense['two_qubit_gates']} CX "
                  f"(Qiskit's formula for all-to-all synthesis, not a measurement)")
    png = args.png or os.path.join("runs", "depth", f"{label}.png")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    except OSError as exc:
        raise QtnnError(f"--png {png!r}: cannot create its folder ({exc.strerror or exc})") from None
    plot_depth_sweep(res, png)
    print(f"wrote {png}")
    res["png"] = png
    return res


def _cmd_circuits(args: argparse.Namespace) -> dict[str, Any]:
    from qtnn.apps.catalogue import build_catalogue, check_catalogue, verify_catalogue

    if args.circuits == "build":
        m = build_catalogue(args.out, progress=True)
        print(f"wrote {len(m['circuits'])} circuits and manifest.json to {args.out}/")
        return m
    check_catalogue(args.dir, progress=True)
    rows = verify_catalogue(args.dir)
    for r in rows:
        print(f"{r['file']:<28} fidelity {r['fidelity']:.10f} (manifest {r['manifest_fidelity']:.10f})")
    print(f"{args.dir}/ matches its generators; {len(rows)} QASM files verified")
    return {"verified": rows}


def _cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from qtnn.apps.bench import format_table
    from qtnn.apps.demo import run_compression_demo

    r = run_compression_demo(seed=args.seed, bonds=tuple(args.bonds), epochs=args.epochs)
    print(f"dense MLP 64-{r['hidden']}-10 on digits: test accuracy {r['dense']['accuracy']:.4f}, "
          f"first layer {r['dense']['params']} parameters")
    print(format_table(r["rows"], [("bond", "bond", "d"), ("params", "params", "d"),
                                   ("compression", "x smaller", ".1f"),
                                   ("weight_error", "rel. error", ".4f"),
                                   ("accuracy", "acc", ".4f"),
                                   ("accuracy_finetuned", "acc (fine-tuned)", ".4f")]))
    print("bond entropies (bits) at the largest bond:", r["rows"][-1]["entropies"])
    print(f"done in {r['seconds']:.1f} s")
    return r


def _cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from qtnn.apps.digits import HybridConfig
    from qtnn.apps.train import run_train

    if args.qubits < 1:
        raise QtnnError(f"--qubits must be a positive integer, got {args.qubits}")
    cfg = HybridConfig(hidden=2**args.qubits if args.qubits <= 6 else 64, max_bond=args.max_bond,
                       n_qubits=args.qubits, layers=args.layers, head=args.head, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    fake = None if args.fake.lower() == "none" else args.fake
    if args.fake_samples < 1 or args.shots < 1:
        raise QtnnError(f"--shots and --fake-samples must be positive, got {args.shots} and "
                        f"{args.fake_samples}")
    if args.nproc < 1:
        raise QtnnError(f"--nproc must be a positive integer, got {args.nproc}")
    r = run_train(cfg, train_device=args.device, shots=args.shots, fake=fake,
                  fake_samples=args.fake_samples, save=args.save, checkpoint=args.checkpoint,
                  resume=args.resume, nproc=args.nproc, torch_device=args.torch_device)
    if r.get("rank", 0) != 0:        # torchrun: rank 0 reports and writes the files
        args.json = None
        return r
    a = r["accuracy"]
    c = r["config"]
    print(f"hybrid: MPOLinear(64->{c['hidden']}, bond {c['max_bond']}) -> tanh -> "
          f"{'QuantumHead' if c['head'] == 'quantum' else 'DisentangledLinear'}"
          f"({c['n_qubits']} qubits, {c['layers']} layers); {r['params']['hybrid']} parameters "
          f"(dense MLP: {r['params']['dense_mlp']})")
    print(f"test accuracy, hybrid trained on {args.device}:        {a['hybrid_pennylane']:.4f}")
    print(f"test accuracy, same weights on the reference path:   {a['pennylane_on_reference']:.4f}")
    print(f"test accuracy, hybrid trained on the reference path: {a['hybrid_reference']:.4f}")
    print(f"test accuracy, dense MLP of equal width:             {a['dense_mlp']:.4f}")
    print(f"test accuracy, qiskit.aer with {r['shots']} shots:          {a['aer_shots']:.4f}")
    if fake:
        print(f"test accuracy, {fake} with {r['shots']} shots (first {r['fake_samples']} samples): "
              f"{a[f'{fake}_shots']:.4f} (exact on the same samples: {a['reference_same_subset']:.4f})")
    jobs = ", ".join(f"{k}: {v['jobs']} jobs for {v['circuits']} circuits" for k, v in r["jobs"].items())
    print(f"shot-based evaluation, submitted {jobs}")
    if "distributed" in r:
        d = r["distributed"]
        print(f"trained with DistributedDataParallel on {d['world_size']} processes ({d['backend']}); "
              f"largest parameter difference between ranks {d['rank_divergence']:.1e}")
    res = r["resources"]
    print(f"circuit: {res['qubits']} qubits, {res['layers']} staircase layers, {res['two_qubit_gates']} "
          f"two-qubit gates, depth {res['depth']}, {res['params']} circuit parameters")
    if "encoding" in res:
        e = res["encoding"]
        alt = ("bounded-depth alternative: QuantumHead(encoding='staircase')"
               if e["kind"].startswith("amplitude")
               else "exact alternative: QuantumHead(encoding='amplitude')")
        fid = f", fidelity {e['fidelity']:.3f}" if e["fidelity"] < 1 else ""
        print(f"input encoding, {e['kind']}: {e['two_qubit_gates']} CX, depth {e['depth']}{fid} "
              f"(generic input, no coupling map); encoding + circuit: {res['total_two_qubit_gates']} "
              f"two-qubit gates ({alt}; `qtnn depth --layer head` for a device)")
    if "device" in res:
        d = res["device"]
        print(f"on {d['backend']} (transpiled, optimization level 3, generic input): encoding "
              f"{d['encoding_two_qubit_gates']} + head {d['head_two_qubit_gates']} -> "
              f"{d['total_two_qubit_gates']} two-qubit gates together, depth {d['total_depth']}, "
              f"{d['total_swaps']} SWAPs; est. success probability {d['success_probability']:.3f}, "
              f"{d['success_with_readout']:.3f} with read-out")
    print(f"time: {r['seconds']['total']:.1f} s")
    return r


def _cmd_bench(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "bench_all", False):
        if args.bench is not None:
            raise QtnnError(f"--all runs every benchmark; leave out the benchmark name {args.bench!r}")
        from qtnn.apps.bench_summary import bench_all, format_summary, plot_summary
        from qtnn.io import write_json

        r = bench_all()
        print(format_summary(r))
        write_json(args.prefix + ".json", r)
        plot_summary(r, args.prefix + ".png")
        print(f"wrote {args.prefix}.json and {args.prefix}.png")
        return r
    if args.bench is None:
        raise QtnnError("BENCH is required: a benchmark name (mpo-linear, hybrid, staircase, planted) "
                        "or --all")
    if args.bench == "staircase":
        return _cmd_bench_staircase(args)
    if args.bench == "hybrid":
        return _cmd_bench_hybrid(args)
    if args.bench == "planted":
        return _cmd_bench_planted(args)
    from qtnn.apps.bench import bench_mpo_linear, format_table

    try:
        batches = [int(t) for t in args.batch.split(",") if t.strip()]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1 or args.repeats < 1:
        raise QtnnError(f"--batch and --repeats must be positive, got {args.batch} and {args.repeats}")
    from qtnn.apps.bench import format_environment

    r = bench_mpo_linear(sizes=args.sizes, bonds=args.bonds, batch=batches,
                         repeats=args.repeats, dtype=args.dtype, device=args.device,
                         modes=[m for m in args.modes.split(",") if m])
    print(f"MPOLinear vs nn.Linear (train: forward+backward, infer: forward), {args.dtype}, "
          f"{args.device}, median of {args.repeats}")
    print(format_environment(r["environment"]))
    print(format_table(r["rows"], [("size", "size", "d"), ("bond", "bond", "d"),
                                   ("batch", "batch", "d"), ("mode", "mode", "s"),
                                   ("strategy", "plan", "s"), ("model_strategy", "model plan", "s"),
                                   ("flops_planned_ratio", "FLOPs/dense", ".3f"),
                                   ("linear_ms", "Linear ms", ".2f"), ("mpo_ms", "MPO ms", ".2f"),
                                   ("ratio", "time ratio", ".3f"),
                                   ("model_ratio", "model ratio", ".3f"),
                                   ("ratio_min", "ratio (min)", ".3f"),
                                   ("params_ratio", "params/dense", ".4f")]))
    return r


def _cmd_bench_hybrid(args: argparse.Namespace) -> dict[str, Any]:
    from qtnn.apps.bench import bench_hybrid

    if args.aer_batch < 1 or args.repeats < 1 or args.layers < 0:
        raise QtnnError("--aer-batch and --repeats must be positive and --layers >= 0")
    r = bench_hybrid(qubits=args.qubits, layers=args.layers, batch=args.batch,
                     repeats=args.repeats, aer_batch=args.aer_batch)
    from qtnn.apps.bench import format_environment

    print(f"forward+backward samples/s, {args.layers} staircase layers "
          f"(qiskit.aer: batch {args.aer_batch}, parameter-shift)")
    print(format_environment(r["environment"]))
    names = list(r["rows"][0]["samples_per_s"])
    print("qubits  batch  " + "  ".join(f"{n:>16}" for n in names) + "  reference / fastest QNode")
    for row in r["rows"]:
        cells = "  ".join(f"{row['samples_per_s'][n]:>16.1f}" for n in names)
        print(f"{row['qubits']:>6}  {row['batch']:>5}  {cells}  {row['speedup']:.1f}x "
              f"({row['fastest_qnode']})")
    return r


def _cmd_bench_staircase(args: argparse.Namespace) -> dict[str, Any]:
    from qtnn.apps.bench import format_table
    from qtnn.apps.bench_circuits import disentangle_benchmark, format_benchmark, staircase_benchmark

    if args.n < 2 or args.max_layers < 1:
        raise QtnnError(f"--n must be >= 2 and --max-layers >= 1, got {args.n} and {args.max_layers}")
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    enc = staircase_benchmark(n=args.n, max_layers=args.max_layers, methods=methods, seed=args.seed)
    print(format_benchmark(enc))
    dis = disentangle_benchmark(qubits=args.dis_qubits, seed=args.seed, progress=True)
    print("\ndisentangle (W ~ U M V^T) against plain MPO truncation, " + dis["what"])
    print(format_table(dis["rows"], [("qubits_per_side", "n/side", "d"), ("layers", "D/side", "d"),
                                     ("max_bond", "bond", "d"), ("truncation_error", "truncation", ".4f"),
                                     ("error", "disentangled", ".4f"), ("ratio", "ratio", ".3f"),
                                     ("seconds", "s", ".2f")]))
    out = {"encode": enc, "disentangle": dis}
    if not args.no_scale:
        from qtnn.apps.bench_circuits import scale_benchmark

        sc = scale_benchmark(seed=args.seed)
        a, b = sc["encode_n50_bond16_D4"], sc["disentangle_2^10_bond32_D4_chi4"]
        print(f"\nscale: encode random MPS n=50 bond 16 D=4 (iterative): {a['seconds']:.1f} s, "
              f"fidelity {a['fidelity']:.6f}")
        print(f"scale: disentangle 2^10 x 2^10 MPO bond 32, D=4/side, max_bond 4 ({b['method']} path): "
              f"{b['seconds']:.1f} s, error {b['error']:.4f} vs truncation {b['truncation_error']:.4f}")
        out["scale"] = sc
    return out


def _cmd_bench_planted(args: argparse.Namespace) -> dict[str, Any]:
    from qtnn.apps.bench import format_table
    from qtnn.apps.bench_circuits import planted_benchmark

    if len(args.qubits) != 2:
        raise QtnnError(f"--qubits must be two integers n_out,n_in, got {args.qubits}")
    r = planted_benchmark(args.qubits[0], args.qubits[1], args.depths, args.seeds, layout=args.layout,
                          refine=args.refine, gates=args.gates, progress=True)
    print(f"planted U0 M0 V0^T, bond 1, {r['n_out']}+{r['n_in']} qubits, {r['layout']}, "
          f"{r['gates'].upper()} gates, refine {r['refine']}: recovered = relative error < "
          f"{r['threshold']:g}")
    print(format_table(r["summary"], [("depth", "D", "d"), ("seeds", "seeds", "d"),
                                      ("recovered", "recovered", "d"),
                                      ("median_error", "median err", ".3e"),
                                      ("best_error", "best err", ".3e"), ("seconds", "s", ".1f")]))
    return r


def _cmd_compress(args: argparse.Namespace) -> dict[str, Any]:
    from qtnn.cli.compress import run_cli

    return run_cli(args)


def _handler(command: str) -> Any:
    """The function that runs ``command`` (argparse has already rejected unknown ones)."""
    return {"compress-demo": _cmd_demo, "train": _cmd_train, "bench": _cmd_bench,
            "depth": _cmd_depth, "circuits": _cmd_circuits, "compress": _cmd_compress,
            "eval": _cmd_eval}[command]


def _cmd_eval(args: argparse.Namespace) -> dict[str, Any]:
    from qtnn.apps.evaluate import cmd_eval

    return cmd_eval(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qtnn`` console script; returns the exit code.

    Examples
    --------
    >>> main(["depth", "--n", "100"])   # errors: one line on stderr, exit code 2
    2
    """
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    # A deprecation notice of the pinned stack (a qiskit-ibm-runtime plugin) says nothing a
    # user of the command can act on.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="stevedore.*")
    try:
        result = _handler(args.command)(args)
        if getattr(args, "json", None):
            from qtnn.io import write_json

            write_json(args.json, result)
            print(f"wrote {args.json}")
    except QtnnError as err:
        print(f"qtnn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qtnn: interrupted", file=sys.stderr)
        return 130
    return 0

