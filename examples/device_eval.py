"""Digits heads with a bounded-depth input encoding, trained exactly, evaluated on a device model.

The 8x8 digits are resized (bilinear) to ``2**(n/2)`` pixels a side and amplitude-encoded on
``n`` qubits by a staircase of ``--enc-layers`` layers (:mod:`qtnn.quantum.encoding`); a
:class:`~qtnn.nn.QuantumHead` of ``--layers`` layers is trained on the exact reference path
(float64), then the same model and encoding are evaluated on ``fake:torino`` with shots, without
and with readout mitigation.  Prints and writes (``--json``) every figure: encoding fidelity and
time, exact accuracy, device accuracy and seconds, two-qubit gates and depth of a compiled circuit.

Run: ``python examples/device_eval.py --qubits 8 --json examples/device_eval_8.json``
"""

from __future__ import annotations

import argparse
import json
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
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--enc-layers", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--shots", type=int, default=4000)
    ap.add_argument("--device", default="fake:torino")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--job-timeout", type=float, default=600.0)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    n = args.qubits
    torch.manual_seed(args.seed)
    x, y = digit_images(n)
    perm = np.random.default_rng(args.seed).permutation(len(x))
    te, tr = perm[: args.test], perm[args.test:]
    out: dict = {"qubits": n, "layers": args.layers, "enc_layers": args.enc_layers, "shots": args.shots,
                 "device": args.device, "train": len(tr), "test": len(te)}

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
            loss = torch.nn.functional.nll_loss(torch.log_softmax(head(xt[idx]), -1), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    out["train_seconds"] = round(time.perf_counter() - t0, 1)
    xe, ye = torch.tensor(x[te]), torch.tensor(y[te])
    with torch.no_grad():
        out["exact_accuracy"] = float((head(xe).argmax(-1) == ye).double().mean())
    print(json.dumps(out), flush=True)

    for mitigation in ((None, "readout") if args.shots else ()):      # --shots 0: exact figures only
        dev = device(args.device, wires=n, shots=args.shots, seed=args.seed, mitigation=mitigation,
                     job_timeout=args.job_timeout)
        head.set_backend("pennylane", dev)
        t0 = time.perf_counter()
        with torch.no_grad():
            pred = head(xe).argmax(-1)
        key = "mitigated" if mitigation else "raw"
        out[f"{key}_accuracy"] = float((pred == ye).double().mean())
        out[f"{key}_seconds"] = round(time.perf_counter() - t0, 1)
        qc = dev.pl.last_compiled[0]
        out["compiled_two_qubit"] = sum(1 for inst in qc.data if inst.operation.num_qubits == 2)
        out["compiled_depth"] = qc.depth()
        print(json.dumps(out), flush=True)
        head.set_backend("reference")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return out


if __name__ == "__main__":
    main()
