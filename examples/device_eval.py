"""Digits heads with a bounded-depth input encoding, trained exactly, evaluated on a device model.

The 8x8 digits are resized (bilinear) to ``2**(n/2)`` pixels a side and amplitude-encoded on
``n`` qubits by a staircase of ``--enc-layers`` layers (:mod:`qtnn.quantum.encoding`); a
:class:`~qtnn.nn.QuantumHead` of ``--layers`` layers is trained on the exact reference path
(float64), then the same model and encoding are evaluated on ``fake:torino`` with shots: once
without mitigation (timed: the evaluation whose time the speed figure quotes), once with
``mitigation="readout+zne"`` (timed; ``--mitigation`` picks another), whose shots also give the
readout-only, ZNE-only and raw figures (``QDevice.pl.last_variants``, :mod:`qtnn.quantum.mitigation`).  Prints and writes
(``--json``) every figure: encoding fidelity and time, exact accuracy, device accuracy per
mitigation and seconds, two-qubit gates and depth of a compiled circuit, the machine load.

The class of an input is the most likely of the basis states ``0..9`` of the first four wires.
Trained with the softmax over those ten probabilities (``--loss softmax``) the head leaves most of
the mass on the six other states and separates the classes by ~0.015 in absolute probability (8
qubits: median top-two gap), which gate noise and 4,000 shots erase; ``--loss direct`` (the default:
``-log p(class)`` of the measured distribution) puts ~96 % of the mass on the classes and widens the
gap to ~0.04.  The default configuration (``--loss direct``, ``--layers 3``, ``--enc-layers 2``) was
chosen on a validation split of the training set (``--validation``;
``examples/device_eval_selection_8.json``), not on the test samples.

Run: ``python examples/device_eval.py --qubits 8 --json examples/device_eval_8.json``
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch


def digit_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    side = 2 ** (n // 2)
    imgs = torch.tensor(d.images, dtype=torch.float64)[:, None]
    if side != 8:
        imgs = torch.nn.functional.interpolate(imgs, size=(side, side), mode="bilinear", align_corners=True)
    x = imgs.reshape(len(d.images), -1).numpy()
    if n % 2:                                    # odd n: two images side by side would be needed
        raise SystemExit("use an even number of qubits")
    return x, d.target


def main(argv: list[str] | None = None) -> dict:
    from qtnn.nn import QuantumHead
    from qtnn.quantum import device
    from qtnn.quantum.encoding import shared_encoder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qubits", type=int, default=8)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--enc-layers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--shots", type=int, default=4000)
    ap.add_argument("--device", default="fake:torino")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loss", choices=["softmax", "direct"], default="direct",
                    help="softmax: cross-entropy over the 10 class probabilities renormalised; direct: "
                         "-log p(class) of the measured distribution (puts the mass on the classes)")
    ap.add_argument("--validation", action="store_true",
                    help="evaluate on a validation split (the first --test training samples, not trained "
                         "on) instead of the test samples: for choosing a configuration")
    ap.add_argument("--job-timeout", type=float, default=1800.0)
    ap.add_argument("--mitigation", default="readout+zne", choices=("readout", "zne", "readout+zne"),
                    help="mitigation of the second run (its shots also give the figures of the parts)")
    ap.add_argument("--zne-scales", default="1,3", help="odd noise scales of ZNE, e.g. 1,3 or 1,3,5")
    ap.add_argument("--zne-test", type=int, default=None,
                    help="evaluate the mitigated run on the first N test samples only (default: all)")
    ap.add_argument("--skip-raw", action="store_true",
                    help="only the mitigated run (its shots also give the raw figure, untimed)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    n = args.qubits
    torch.manual_seed(args.seed)
    x, y = digit_images(n)
    perm = np.random.default_rng(args.seed).permutation(len(x))
    te, tr = perm[: args.test], perm[args.test:]
    if args.validation:                     # the test samples stay unseen: evaluate on held-out training
        te, tr = tr[: args.test], tr[args.test:]
    out: dict = {"qubits": n, "layers": args.layers, "enc_layers": args.enc_layers, "loss": args.loss,
                 "shots": args.shots, "device": args.device, "train": len(tr),
                 "validation" if args.validation else "test": len(te), "cpus": os.cpu_count()}

    t0 = time.perf_counter()
    enc = shared_encoder(args.enc_layers).encode(x)
    out["encode_seconds_all_1797"] = round(time.perf_counter() - t0, 2)
    out["encoding_fidelity_mean"] = round(enc.fidelity_mean, 4)
    out["encoding_fidelity_min"] = round(enc.fidelity_min, 4)
    out["encoding_fidelity_test_mean"] = round(float(enc.fidelities[te].mean()), 4)

    head = QuantumHead(2**n, n_qubits=n, layers=args.layers, n_classes=10, encoding="staircase",
                       encoding_layers=args.enc_layers, dtype=torch.float64)
    xt, yt = torch.tensor(x[tr]), torch.tensor(y[tr])
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(len(xt))
        for i in range(0, len(xt), 128):
            idx = order[i:i + 128]
            logp = head(xt[idx])                 # log p(class) of the measured distribution
            if args.loss == "softmax":
                logp = torch.log_softmax(logp, -1)
            loss = torch.nn.functional.nll_loss(logp, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    out["train_seconds"] = round(time.perf_counter() - t0, 1)
    xe, ye = torch.tensor(x[te]), torch.tensor(y[te])
    with torch.no_grad():
        out["exact_accuracy"] = float((head(xe).argmax(-1) == ye).double().mean())
    print(json.dumps(out), flush=True)

    scales = tuple(int(v) for v in args.zne_scales.split(","))
    n_mit = len(te) if args.zne_test is None else min(args.zne_test, len(te))
    if n_mit < len(te):
        with torch.no_grad():
            out["exact_accuracy_mitigated_subset"] = float((head(xe[:n_mit]).argmax(-1) == ye[:n_mit])
                                                           .double().mean())
    runs = (args.mitigation,) if args.skip_raw else (None, args.mitigation)
    for mitigation in (runs if args.shots else ()):                      # --shots 0: exact only
        opts = {"zne_scales": scales} if mitigation and "zne" in mitigation else {}
        dev = device(args.device, wires=n, shots=args.shots, seed=args.seed, mitigation=mitigation,
                     job_timeout=args.job_timeout, **opts)
        head.set_backend("pennylane", dev)
        xs, ys = (xe, ye) if mitigation is None else (xe[:n_mit], ye[:n_mit])
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        with torch.no_grad():
            pred = head(xs).argmax(-1)
        seconds = round(time.perf_counter() - t0, 1)
        load = round(max(load, os.getloadavg()[0]), 2)
        if mitigation is None:
            out.update(raw_accuracy=float((pred == ys).double().mean()), raw_seconds=seconds,
                       raw_load=load)
            qc = dev.pl.last_compiled[0]
            out["compiled_two_qubit"] = sum(1 for inst in qc.data if inst.operation.num_qubits == 2)
            out["compiled_depth"] = qc.depth()
        else:
            out.update(mitigation=mitigation, mitigated_test=n_mit, mitigated_seconds=seconds,
                       mitigated_load=load)
            if "zne" in mitigation:
                out["zne_scales"] = list(scales)
            for key, rows in dev.pl.last_variants.items():     # one row per sample, one per measurement
                p = np.array([r[0][: head.n_classes] for r in rows])
                out[f"{key}_accuracy_same_shots"] = float((torch.tensor(p.argmax(-1)) == ys).double().mean())
        print(json.dumps(out), flush=True)
        head.set_backend("reference")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
