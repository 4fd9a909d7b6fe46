"""The headline depth study: staircases against a dense unitary on IBM device models.

For n = 4..12 qubits, the staircase circuits that prepare the ground state of
the Heisenberg chain with D = 1..4 layers (qtnn.staircase.encode_mps) are
transpiled for FakeTorino (Heron, heavy-hex, CZ) and FakeSherbrooke (Eagle,
heavy-hex, ECR) at optimisation level 3, next to a generic unitary on the same
qubits (Qiskit's synthesis: measured up to 7 qubits, Qiskit's documented CX
formula beyond).  Reports two-qubit gates, depth, SWAPs, whether the staircase
sits on a line of the heavy-hex lattice, and the fidelity of each circuit.

Run:  .venv/bin/python examples/depth_study.py [--out examples] [--max-n 12]
Writes depth_study.json and depth_study.png into --out (about a minute).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

BACKENDS = ("fake:torino", "fake:sherbrooke")


def study(ns: list[int], depths: list[int], seed: int = 0) -> dict:
    from tqdm.auto import tqdm

    from qtnn.analysis import dense_baseline, depth_report
    from qtnn.staircase import encode_mps, heisenberg_ground_state

    rows, dense = [], []
    with tqdm(total=len(ns) * (len(depths) + 1), desc="depth study") as bar:
        for n in ns:
            psi = heisenberg_ground_state(n, seed=seed)
            for d in depths:
                circ, enc = encode_mps(psi, d, method="iterative", seed=seed)
                for be in BACKENDS:
                    r = depth_report(circ, be, optimization_level=3, seed=seed)
                    rows.append({"n": n, "layers": d, "backend": be,
                                 "fidelity": enc.final_fidelity, "gates": r.logical_gates,
                                 "two_qubit_gates": r.two_qubit_gates, "depth": r.depth,
                                 "two_qubit_depth": r.two_qubit_depth, "swaps": r.swaps,
                                 "on_line": r.on_line, "layout": r.layout,
                                 "duration_ns": r.duration_ns,
                                 "success_probability": r.success_probability})
                bar.update(1)
            for be in BACKENDS:
                b = dense_baseline(n, be, optimization_level=3, seed=seed)
                dense.append({"n": n, "backend": be, "kind": b.kind,
                              "two_qubit_gates": b.two_qubit_gates, "depth": b.depth,
                              "swaps": b.swaps,
                              "all_to_all_two_qubit_gates": b.all_to_all_two_qubit_gates,
                              "success_probability": b.success_probability})
            bar.update(1)
    return {"what": "Heisenberg ground-state staircases (encode_mps, iterative) vs a Haar-random "
                    "dense unitary, transpiled at optimization level 3, seed_transpiler "
                    f"{seed}", "staircase": rows, "dense": dense}


def plot(result: dict, path: str) -> None:
    from matplotlib.figure import Figure

    from qtnn.analysis.depth import qsd_cx_count
    from qtnn.analysis.plot import save_figure

    fig = Figure(figsize=(13, 4.2))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    style = {"fake:torino": "-", "fake:sherbrooke": "--"}
    ns = sorted({r["n"] for r in result["staircase"]})
    depths = sorted({r["layers"] for r in result["staircase"]})
    for be in BACKENDS:
        short = be[5:].capitalize()
        for i, d in enumerate(depths):
            pts = [r for r in result["staircase"] if r["backend"] == be and r["layers"] == d]
            ax1.plot([r["n"] for r in pts], [r["two_qubit_gates"] for r in pts], style[be],
                     color=f"C{i}", marker="o", ms=3,
                     label=f"staircase D={d}" if be == BACKENDS[0] else None)
            ax2.plot([r["n"] for r in pts], [r["depth"] for r in pts], style[be], color=f"C{i}",
                     marker="o", ms=3, label=f"staircase D={d} ({short})")
        meas = [r for r in result["dense"] if r["backend"] == be and r["kind"] == "measured"]
        ax1.plot([r["n"] for r in meas], [r["two_qubit_gates"] for r in meas], style[be],
                 color="C7", marker="s", label=f"dense unitary, measured ({short})")
        ax2.plot([r["n"] for r in meas], [r["depth"] for r in meas], style[be], color="C7",
                 marker="s", label=f"dense unitary ({short})")
    ax1.plot(ns, [qsd_cx_count(n) for n in ns], ":", color="k",
             label="dense: Qiskit's CX formula (all-to-all)")
    for d_i, d in enumerate(depths):
        pts = [r for r in result["staircase"] if r["backend"] == BACKENDS[0] and r["layers"] == d]
        ax3.plot([r["n"] for r in pts], [r["fidelity"] for r in pts], "o-", color=f"C{d_i}",
                 label=f"D={d}")
    ax1.set_yscale("log")
    ax2.set_yscale("log")
    ax1.set_title("two-qubit gates after transpilation\n(solid: FakeTorino, dashed: FakeSherbrooke)")
    ax2.set_title("circuit depth after transpilation")
    ax3.set_title("fidelity to the Heisenberg ground state")
    ax1.set_ylabel("two-qubit gates")
    ax2.set_ylabel("depth")
    ax3.set_ylabel("|<psi|circuit|0>|^2")
    for ax in (ax1, ax2, ax3):
        ax.set_xlabel("qubits n")
        ax.set_xticks(ns)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                   help="folder for depth_study.json / .png (default: next to this script)")
    p.add_argument("--min-n", type=int, default=4)
    p.add_argument("--max-n", type=int, default=12)
    p.add_argument("--max-layers", type=int, default=4)
    args = p.parse_args(argv)
    from qtnn.io import write_json

    t0 = time.perf_counter()
    res = study(list(range(args.min_n, args.max_n + 1)), list(range(1, args.max_layers + 1)))
    res["seconds"] = time.perf_counter() - t0
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, "depth_study.json"), res)
    plot(res, os.path.join(args.out, "depth_study.png"))
    print(f"{'n':>3} {'D':>2} {'backend':<16} {'fidelity':>9} {'2q':>5} {'depth':>6} {'SWAPs':>5} "
          f"{'on a line':>9}")
    for r in res["staircase"]:
        print(f"{r['n']:>3} {r['layers']:>2} {r['backend']:<16} {r['fidelity']:>9.6f} "
              f"{r['two_qubit_gates']:>5} {r['depth']:>6} {r['swaps']:>5} {r['on_line']!s:>9}")
    print("dense unitary:")
    for r in res["dense"]:
        extra = (f"depth {r['depth']}, {r['swaps']} SWAPs" if r["kind"] == "measured"
                 else "formula, all-to-all")
        print(f"{r['n']:>3}    {r['backend']:<16} {r['two_qubit_gates']:>9} two-qubit gates ({extra})")
    lines = sum(bool(r["on_line"]) and r["swaps"] == 0 for r in res["staircase"])
    print(f"staircases on a line without SWAPs: {lines} of {len(res['staircase'])}; "
          f"{res['seconds']:.0f} s; wrote {args.out}/depth_study.json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
