"""Study: does disentangling pay off on a real language model?  SmolLM2-135M-Instruct, block 10.

For each target matrix of decoder block 10 (default ``k_proj`` and
``v_proj``, 192 x 576, i.e. 8 + 10 qubits) it measures, on the built-in
offline corpus (standard-library docstrings; 32 eval windows of 256 tokens,
a disjoint calibration split):

* the matrix removed (weight zero);
* plain MPO truncation, bond 1 / 2 / 4;
* truncated SVD, rank 1 / 2 / 4 (rank r has r (576 + 192) parameters: the
  equal-parameter partner of the disentangled layer with
  ``6 * 16 * D + 36`` parameters, i.e. rank 1 ~ D = 8, 2 ~ 16, 4 ~ 32);
* the disentangled layer ``U M V^T`` with bond 1 and 2 (``--dis-bonds``)
  grown to D = 1 ... 32 layers per side (one growth run gives every depth);
* the same layer at D = 32 started from the weighted rank-R truncated SVD
  (``disentangle(..., start="svd")``, R = 8 and 16 by default; data-aware fits only);

each with the plain (Frobenius) fit, the data-aware fit on the calibration
activations (``data``), and the data- and output-aware fit (``out``: the
output errors weighted by how the next operation reads them -- for ``k_proj``
the queries of the heads that share the key, ``G = sum_h W_q,h E[x x^T]
W_q,h^T``; for ``v_proj`` the output projection, ``G = sum_h W_o,h^T W_o,h``;
rotary embeddings and attention weights are left out of ``G``, an
approximation), and the best variants of each family again after
healing (the replaced layer's parameters trained to match block 10's outputs
on the calibration windows, :func:`qtnn.compress.heal`); a few variants
(``--model-heal``: MPO bond 1, SVD rank 4 and the rank-16 SVD start, both
data-aware fits) are healed a second time, from the same fit, with the model's own
next-token loss on the calibration windows (``/healed-model``), and so is
the uncompressed layer itself (``original/healed-model``), the control that
shows what that loss gains on this corpus without any compression; the same
variants are healed a third time by distillation (``--distill``:
``/healed-distill``, the KL divergence from the original model's next-token
distributions on the calibration windows), which needs no control: the
uncompressed model is already optimal for it, so it cannot adapt the model to
the corpus.  Figures per
variant: perplexity and its change, weight error, activation error on the
eval windows (held out), parameters, qubits, two-qubit gates, seconds.

Every variant is evaluated through a :class:`qtnn.compress.BlockCache` (only blocks
10..29 run).  Results are appended to the JSON file after every variant, and
a rerun skips what the file already holds (``--fresh`` starts over).

Run (needs ``make llm``; about four hours on 2 cores)::

    .venv/bin/python examples/compress_smollm2.py
    .venv/bin/python examples/compress_smollm2.py --targets k_proj --depths 1,2,4 --heal-steps 50
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from typing import Any

import numpy as np
import torch

import qtnn
from qtnn.apps import lm
from qtnn.compress import llm
from qtnn.nn import DisentangledLinear
from qtnn.staircase import disentangle

BLOCK = 10


def _atomic_json(path: str, data: Any) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


class Study:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data: dict[str, Any] = {"settings": vars(args).copy(), "variants": {}}
        if os.path.exists(args.json) and not args.fresh:
            with open(args.json) as f:
                self.data = json.load(f)
            self.data.setdefault("variants", {})
            # settings added since the file was written (options of variants it does not hold yet)
            for k, v in vars(args).items():
                self.data.setdefault("settings", {}).setdefault(k, v)
        t0 = time.perf_counter()
        self.model, tok = lm.load_smollm2(torch.float32)
        self.original = copy.deepcopy(self.model)
        self.eval_windows = lm.corpus_windows(tok, "eval", args.eval_windows)
        self.calib_windows = lm.corpus_windows(tok, "calibration", args.calib_windows)
        self.eval_cache = llm.BlockCache(self.model, self.eval_windows, BLOCK, progress=True)
        self.calib_cache = llm.BlockCache(self.model, self.calib_windows, BLOCK, progress=True,
                                         verify=False)
        self.data["setup_seconds"] = time.perf_counter() - t0
        if "baseline" not in self.data:
            t = time.perf_counter()
            ppl = self.eval_cache.perplexity(self.model, progress=False)
            self.data["baseline"] = {"perplexity": ppl, "seconds": time.perf_counter() - t}
            self.save()
        self.base = self.data["baseline"]["perplexity"]
        print(f"baseline perplexity {self.base:.4f}")

    def save(self) -> None:
        _atomic_json(self.args.json, self.data)

    # ---------------------------------------------------------------- helpers
    def name(self, proj: str) -> str:
        kind = "self_attn" if proj in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
        return f"model.layers.{BLOCK}.{kind}.{proj}"

    def slot(self, proj: str) -> tuple[Any, str]:
        parent_name, attr = self.name(proj).rsplit(".", 1)
        return self.model.get_submodule(parent_name), attr

    def evaluate(self, key: str, proj: str, module: Any, info: dict[str, Any],
                 x_eval: np.ndarray, linear: Any) -> dict[str, Any]:
        """Put ``module`` in place of ``proj``, measure, put the original back."""
        parent, attr = self.slot(proj)
        t = time.perf_counter()
        setattr(parent, attr, module)
        try:
            ppl = self.eval_cache.perplexity(self.model, progress=False)
        finally:
            setattr(parent, attr, linear)
        xs = torch.as_tensor(x_eval, dtype=torch.float32)
        with torch.no_grad():
            ref = linear(xs).double()
            got = module(xs).double()
        act = float((got - ref).norm() / ref.norm())
        row = {**info, "perplexity": ppl, "change": ppl / self.base - 1.0,
               "activation_error_eval": act, "eval_seconds": time.perf_counter() - t,
               "params": sum(p.numel() for p in module.parameters())}
        self.data["variants"][key] = row
        self.save()
        print(f"{key:40s} ppl {ppl:8.4f} ({100 * row['change']:+6.2f}%)  weight err "
              f"{row.get('weight_error', float('nan')):.4f}  act err {act:.4f}  params {row['params']}",
              flush=True)
        return row

    def heal(self, proj: str, module: Any, objective: str = "outputs") -> tuple[Any, dict[str, Any]]:
        """Heal ``module`` in place of ``proj``: match block 10's outputs, the model's own loss, or
        the original model's next-token distributions."""
        a = self.args
        parent, attr = self.slot(proj)
        linear = getattr(parent, attr)
        setattr(parent, attr, module)
        try:
            if objective == "outputs":
                how = dict(original=self.original, match=f"model.layers.{BLOCK}", steps=a.heal_steps,
                           lr=a.heal_lr, batch_size=4)
            elif objective == "distill":
                how = dict(original=self.original, steps=a.distill_steps, lr=a.distill_lr,
                           schedule=a.distill_schedule, batch_size=a.distill_batch)
            else:
                how = dict(steps=a.model_heal_steps, lr=a.model_heal_lr, batch_size=a.model_heal_batch)
            rep = qtnn.compress.heal(self.model, self.name(proj), self.calib_windows, objective=objective,
                                     seed=a.heal_seed, progress=True, block_cache=self.calib_cache,
                                     **how)
        finally:
            setattr(parent, attr, linear)
        return module, {"heal": rep.as_dict() | {"losses": None}}

    def heal_keys(self, key: str) -> list[tuple[str, str]]:
        """``(healed key, objective)`` for every healing ``key`` gets (``key`` without the target)."""
        a = self.args
        # the original layer matches its own outputs already: it is only healed with the model loss
        out = [(key + "/healed", "outputs")] if a.heal_steps > 0 and not key.endswith("/original") else []
        if a.model_heal_steps > 0 and key.split("/", 1)[1] in a.model_heal:
            out.append((key + "/healed-model", "model"))
        if a.distill_steps > 0 and key.split("/", 1)[1] in a.distill:
            out.append((key + "/healed-distill", "distill"))
        return out

    def output_weight(self, proj: str, x: np.ndarray) -> np.ndarray | None:
        """``G`` of the output-aware fit (see the module docstring); ``None`` for other matrices."""
        attn = self.model.model.layers[BLOCK].self_attn
        cfg = self.model.config
        nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // nh
        rep = nh // nkv
        G = np.zeros((nkv * hd, nkv * hd))
        if proj == "k_proj":
            wq = attn.q_proj.weight.detach().double().numpy()
            sx = x.T @ x / len(x)
            for h in range(nh):
                g, wh = h // rep, wq[h * hd:(h + 1) * hd]
                G[g * hd:(g + 1) * hd, g * hd:(g + 1) * hd] += wh @ sx @ wh.T
        elif proj == "v_proj":
            wo = attn.o_proj.weight.detach().double().numpy()
            for h in range(nh):
                g, wh = h // rep, wo[:, h * hd:(h + 1) * hd]
                G[g * hd:(g + 1) * hd, g * hd:(g + 1) * hd] += wh.T @ wh
        else:
            return None
        return G

    # ---------------------------------------------------------------- the study
    def run_target(self, proj: str) -> None:
        a = self.args
        name = self.name(proj)
        parent, attr = self.slot(proj)
        linear = getattr(parent, attr)
        w = linear.weight.detach().double().numpy()
        x_cal = llm.linear_inputs(self.model, name, block_cache=self.calib_cache, progress=False)[name]
        x_eval = llm.linear_inputs(self.model, name, block_cache=self.eval_cache, progress=False)[name]
        done = self.data["variants"]
        common = {"target": proj, "shape": list(w.shape)}

        def want(key: str) -> bool:
            return key not in done

        key = f"{proj}/removed"
        if want(key):
            zero = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            torch.nn.init.zeros_(zero.weight)
            self.evaluate(key, proj, zero, {**common, "family": "removed", "weight_error": 1.0},
                          x_eval, linear)

        healable: dict[str, Any] = {}
        # the control: the uncompressed layer trained the same way (what healing gains on this
        # corpus without any compression, e.g. by adapting the model to its domain)
        healable[f"{proj}/original"] = (copy.deepcopy(linear), {
            **common, "family": "original", "weight_error": 0.0, "two_qubit_gates": 0})
        g_out = self.output_weight(proj, x_cal)
        for fit in a.fits:
            if fit == "out" and g_out is None:
                continue
            cal = {"": x_cal} if fit != "plain" else None
            ow = {"": g_out} if fit == "out" else None
            aware = fit != "plain"
            for bond in a.bonds:
                key = f"{proj}/mpo/chi={bond}/{fit}"
                if want(key) or (bond == 1 and aware):
                    t = time.perf_counter()
                    mod, (r,) = qtnn.compress(linear, "", "mpo", max_bond=bond, calibration=cal,
                                              output_weight=ow, refine=a.refine, progress=False)
                    info = {**common, "family": "mpo", "fit": fit, "bond": bond,
                            "weight_error": r.weight_error, "activation_error_calib": r.activation_error,
                            "qubits": [r.qubits_out, r.qubits_in], "two_qubit_gates": 0,
                            "seconds": time.perf_counter() - t}
                    if want(key):
                        self.evaluate(key, proj, mod, info, x_eval, linear)
                    if bond == 1 and aware:
                        healable[key] = (mod, info)
            for rank in a.ranks:
                key = f"{proj}/svd/rank={rank}/{fit}"
                if want(key) or aware:
                    t = time.perf_counter()
                    mod, (r,) = qtnn.compress(linear, "", "svd", rank=rank, calibration=cal,
                                              output_weight=ow, progress=False)
                    info = {**common, "family": "svd", "fit": fit, "rank": rank,
                            "weight_error": r.weight_error, "activation_error_calib": r.activation_error,
                            "two_qubit_gates": 0, "seconds": time.perf_counter() - t}
                    if want(key):
                        self.evaluate(key, proj, mod, info, x_eval, linear)
                    if aware:
                        healable[key] = (mod, info)
            for bond in a.dis_bonds:
                dmax = max(a.depths)
                keys = [f"{proj}/dis/chi={bond}/D={d}/{fit}" for d in a.depths]
                healed = [h for h, _ in self.heal_keys(f"{proj}/dis/chi={bond}/D={dmax}/{fit}")]
                if not any(want(k) for k in keys) and not (aware and bond == 1
                                                           and any(want(h) for h in healed)):
                    continue
                t = time.perf_counter()
                res = disentangle(w, dmax, dmax, bond, method="grow", refine=a.refine,
                                  inputs=x_cal if aware else None, layout=a.layout,
                                  output_weight=g_out if fit == "out" else None, progress=True)
                total = time.perf_counter() - t
                cum = 0.0
                for st in res.stages:
                    cum += st.seconds
                    d = st.U.layers
                    if d not in a.depths:
                        continue
                    key = f"{proj}/dis/chi={bond}/D={d}/{fit}"
                    mod = DisentangledLinear._from_result(st, w.shape[1], w.shape[0], d, d, bond,
                                                          None, torch.float32)
                    info = {**common, "family": "disentangled", "fit": fit, "bond": bond, "depth": d,
                            "layout": a.layout, "weight_error": st.error,
                            "activation_error_calib": st.activation_error,
                            "qubits": [st.U.n_qubits, st.V.n_qubits],
                            "two_qubit_gates": st.U.num_gates + st.V.num_gates,
                            "circuit_depth": [st.U.depth, st.V.depth],
                            "stage_seconds": st.seconds, "seconds": cum}
                    if want(key):
                        self.evaluate(key, proj, mod, info, x_eval, linear)
                    if aware and bond == 1 and d == dmax:
                        healable[key] = (mod, info)
                done.setdefault(f"{proj}/dis/chi={bond}/{fit}/growth", {
                    "seconds": total, "errors": [s.error for s in res.stages],
                    "activation_errors": [s.activation_error for s in res.stages],
                    "depths": [s.U.layers for s in res.stages]})
                self.save()

            # the SVD start: the full depth at once from the best rank-R approximation
            for rank in a.svd_starts if aware else []:
                for d in a.svd_depths:
                    key = f"{proj}/dis-svd/R={rank}/D={d}/{fit}"
                    if not want(key) and not any(want(h) for h, _ in self.heal_keys(key)):
                        continue
                    t = time.perf_counter()
                    res = disentangle(w, d, d, 1, method="grow", refine=a.svd_refine, inputs=x_cal,
                                      layout=a.layout, start="svd", start_rank=rank,
                                      output_weight=g_out if fit == "out" else None)
                    mod = DisentangledLinear._from_result(res, w.shape[1], w.shape[0], d, d, 1, None,
                                                          torch.float32)
                    info = {**common, "family": "disentangled", "start": f"svd rank {rank}",
                            "fit": fit, "bond": 1, "depth": d, "layout": a.layout,
                            "weight_error": res.error, "activation_error_calib": res.activation_error,
                            "qubits": [res.U.n_qubits, res.V.n_qubits],
                            "two_qubit_gates": res.U.num_gates + res.V.num_gates,
                            "circuit_depth": [res.U.depth, res.V.depth],
                            "seconds": time.perf_counter() - t}
                    if want(key):
                        self.evaluate(key, proj, mod, info, x_eval, linear)
                    healable[key] = (mod, info)

        for key, (mod, info) in healable.items():
            for hkey, objective in self.heal_keys(key):
                if not want(hkey):
                    continue
                t = time.perf_counter()
                healed, extra = self.heal(proj, copy.deepcopy(mod), objective)
                hinfo = {**info, **extra, "heal_seconds": time.perf_counter() - t}
                w2 = _module_weight(healed)
                hinfo["weight_error"] = float(np.linalg.norm(w2 - w) / np.linalg.norm(w))
                self.evaluate(hkey, proj, healed, hinfo, x_eval, linear)


def _module_weight(mod: Any) -> np.ndarray:
    """The dense weight of a bias-free linear module, by applying it to the identity (float64)."""
    m = copy.deepcopy(mod).double()
    with torch.no_grad():
        eye = torch.eye(m.in_features, dtype=torch.float64)
        return m(eye).T.numpy()


def plot(data: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(data["variants"].values())
    targets = sorted({r["target"] for r in rows if "target" in r})
    fig, axes = plt.subplots(1, len(targets), figsize=(6.5 * len(targets) + 2.6, 4.6), squeeze=False)
    for ax, proj in zip(axes[0], targets, strict=True):
        mine = [r for r in rows if r.get("target") == proj and "perplexity" in r]
        for fam, marker in (("mpo", "s"), ("svd", "^"), ("disentangled", "o")):
            for fit, ls in (("plain", ":"), ("data", "--"), ("out", "-")):
                pts = sorted((r["params"], 100 * r["change"]) for r in mine
                             if r["family"] == fam and r.get("fit") == fit and "heal" not in r
                             and (fam != "disentangled" or r.get("bond") == 1) and "start" not in r)
                if pts:
                    ax.plot(*zip(*pts, strict=True), ls, marker=marker, label=f"{fam} ({fit})")
        for fit, color in (("data", "navy"), ("out", "darkcyan")):
            pts = [(r["params"], 100 * r["change"]) for r in mine
                   if "start" in r and r.get("fit") == fit and "heal" not in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), "D", color=color, label=f"disentangled, SVD start ({fit})")
        # healed variants: one star per variant, coloured by family (no labels: they crowd)
        for tag, color, pick in (("mpo", "tab:green", lambda r: r["family"] == "mpo"),
                                 ("svd", "tab:brown", lambda r: r["family"] == "svd"),
                                 ("disentangled, grown", "tab:olive",
                                  lambda r: r["family"] == "disentangled" and "start" not in r),
                                 ("disentangled, SVD start", "navy", lambda r: "start" in r)):
            for objective, marker, how in (("outputs", "*", "healed"), ("model", "P", "healed (model loss)"),
                                           ("distill", "X", "healed (distillation)")):
                pts = [(r["params"], 100 * r["change"]) for r in mine if "heal" in r and pick(r)
                       and r["heal"]["objective"] == objective]
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker, color=color, ms=12 if marker == "*" else 9,
                            mec="k", mew=0.5, ls="", label=f"{tag}, {how}")
        removed = [r for r in mine if r["family"] == "removed"]
        if removed:
            ax.axhline(100 * removed[0]["change"], color="grey", lw=0.8, label="removed")
        control = [r for r in mine if r["family"] == "original"]
        if control:
            ax.axhline(100 * control[0]["change"], color="black", lw=0.8, ls="--",
                       label="original layer, healed (model loss)")
        ax.axhline(1.0, color="red", lw=0.6, ls=":", label="+1 %")
        ax.set_xscale("log")
        ax.set_xlabel("parameters of the replaced layer")
        ax.set_ylabel("perplexity change (%)")
        ax.set_title(f"SmolLM2-135M block {BLOCK} {proj} (baseline {data['baseline']['perplexity']:.2f})")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(data: dict[str, Any]) -> str:
    """The study as a Markdown table (one row per variant, in the order they were run)."""
    lines = ["| matrix | variant | fit | healed | params | qubits | 2q gates | weight err "
             "| act. err (eval) | perplexity | change | fit s | heal s |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["variants"].values():
        if "perplexity" not in r:
            continue
        fam = r["family"]
        what = {"removed": "removed", "original": "original layer", "mpo": f"MPO χ={r.get('bond')}",
                "svd": f"SVD rank {r.get('rank')}",
                "disentangled": f"disentangled χ={r.get('bond')} D={r.get('depth')}"}[fam]
        if "start" in r:
            what += f", {r['start']} start"
        qubits = "+".join(str(q) for q in r["qubits"]) if "qubits" in r else ""
        fit_s = f"{r['seconds']:.0f}" if "seconds" in r else ""
        heal_s = f"{r['heal_seconds']:.0f}" if "heal_seconds" in r else ""
        lines.append(f"| {r['target']} | {what} | {r.get('fit', '')} | {r['heal']['objective'] if 'heal' in r else ''} "
                     f"| {r['params']} | {qubits} | {r.get('two_qubit_gates', 0)} | {r['weight_error']:.4f} "
                     f"| {r['activation_error_eval']:.4f} | {r['perplexity']:.3f} "
                     f"| {100 * r['change']:+.2f}% | {fit_s} | {heal_s} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--targets", default="k_proj,v_proj")
    p.add_argument("--depths", default="1,2,4,8,16,32")
    p.add_argument("--bonds", default="1,2,4", help="MPO bonds")
    p.add_argument("--ranks", default="1,2,4", help="SVD ranks")
    p.add_argument("--dis-bonds", default="1,2", help="bonds of the disentangled residual")
    p.add_argument("--fits", default="plain,data,out",
                   help="which fits to run: plain (the weight), data (the activations), out (the "
                        "activations weighted by how attention reads the outputs)")
    p.add_argument("--layout", default="staircase", choices=["staircase", "brickwall"])
    p.add_argument("--refine", type=int, default=100, help="L-BFGS iterations per growth stage")
    p.add_argument("--svd-starts", default="8,16",
                   help="ranks of the disentangled layer's SVD start (data-aware fits; '' for none)")
    p.add_argument("--svd-depths", default="32", help="depths of the SVD-started fits")
    p.add_argument("--svd-refine", type=int, default=200,
                   help="L-BFGS iterations after the SVD start")
    p.add_argument("--eval-windows", type=int, default=32)
    p.add_argument("--calib-windows", type=int, default=64)
    p.add_argument("--heal-steps", type=int, default=500)
    p.add_argument("--heal-lr", type=float, default=1e-3)
    p.add_argument("--model-heal",
                   default="original,mpo/chi=1/data,mpo/chi=1/out,svd/rank=4/data,svd/rank=4/out,"
                           "dis-svd/R=16/D=32/data,dis-svd/R=16/D=32/out",
                   help="variants (keys without the target) healed again with the model's own loss")
    p.add_argument("--model-heal-steps", type=int, default=150,
                   help="Adam steps of the model-loss healing (0: none)")
    p.add_argument("--model-heal-lr", type=float, default=1e-3)
    p.add_argument("--model-heal-batch", type=int, default=2)
    p.add_argument("--distill",
                   default="mpo/chi=1/data,mpo/chi=1/out,svd/rank=4/data,svd/rank=4/out,"
                           "dis-svd/R=16/D=32/data,dis-svd/R=16/D=32/out",
                   help="variants (keys without the target) healed again by distillation from the "
                        "original model")
    p.add_argument("--distill-steps", type=int, default=150,
                   help="Adam steps of the distillation healing (0: none)")
    p.add_argument("--distill-lr", type=float, default=1e-3)
    p.add_argument("--distill-batch", type=int, default=2)
    p.add_argument("--distill-schedule", choices=["constant", "cosine"], default="constant",
                   help="learning-rate schedule of the distillation healing")
    p.add_argument("--heal-seed", type=int, default=0,
                   help="seed of every healing's minibatch order (the spread over seeds: run again with "
                        "another seed and another --json)")
    p.add_argument("--json", default="examples/compress_smollm2.json")
    p.add_argument("--png", default="examples/compress_smollm2.png")
    p.add_argument("--fresh", action="store_true", help="ignore an existing JSON file")
    a = p.parse_args()
    for k in ("depths", "bonds", "ranks", "dis_bonds", "svd_starts", "svd_depths"):
        setattr(a, k, [int(v) for v in getattr(a, k).split(",") if v])
    a.fits = [v for v in a.fits.split(",") if v]
    if not a.fits or set(a.fits) - {"plain", "data", "out"}:
        p.error(f"--fits: a comma-separated list of plain, data, out; got {','.join(a.fits)!r}")
    a.model_heal = [v for v in a.model_heal.split(",") if v]
    a.distill = [v for v in a.distill.split(",") if v]
    torch.manual_seed(0)
    study = Study(a)
    for proj in a.targets.split(","):
        study.run_target(proj)
    plot(study.data, a.png)
    print(markdown(study.data))
    print(f"wrote {a.json} and {a.png}")


if __name__ == "__main__":
    main()
