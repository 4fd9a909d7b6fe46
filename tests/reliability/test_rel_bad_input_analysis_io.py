"""Generated bad input for ``qtnn.analysis`` (export, QASM, depth reports, plots, the catalogue),
the file helpers (``qtnn.io``, ``qtnn.checkpoint``), the demos, training configs and ``qtnn.compress``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _harness import (
    NAN_INF,
    NOT_ARRAY,
    NOT_INT,
    NOT_REAL,
    Case,
    expect_error,
    negative,
    non_positive,
    path_names,
    unknown,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import qtnn.compress as compress_mod
from qtnn.analysis import (
    circuit_unitary,
    dense_baseline,
    depth_report,
    depth_sweep,
    load_qasm,
    plot_depth_sweep,
    qsd_cx_count,
    save_qasm,
    to_qasm2,
    to_qasm3,
    to_qiskit,
)
from qtnn.apps.catalogue import build_catalogue, check_catalogue, compare_catalogues, verify_catalogue
from qtnn.apps.demo import run_compression_demo
from qtnn.apps.digits import HybridConfig, load_digits_split
from qtnn.apps.train import load_hybrid
from qtnn.checkpoint import load_checkpoint, save_checkpoint
from qtnn.io import atomic_open, write_json
from qtnn.staircase import Staircase
from qtnn.tn import MPS

C3 = Staircase.random(3, 1, seed=0)
BASIS = ["cx", "rz", "sx", "x"]
NOT_CIRCUIT = st.one_of(NOT_INT, NOT_ARRAY, st.just(MPS.random(3, 2)))
BAD_PATH = st.one_of(st.integers(), st.none(), st.just(b"x"), st.just(""), st.just("a\x00b"),
                     st.just("/etc/passwd/x"), st.just("/"))
MLP = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))


def _bad_qasm():
    """Malformed QASM 2 texts: truncated, unknown gates, bad registers, junk."""
    good = to_qasm2(C3)
    return st.one_of(
        st.integers(20, len(good) - 5).map(lambda k: good[:k] + "\n"),
        st.just('OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; foo q[0];'),
        st.just('OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; cx q[0], q[5];'),
        st.just("OPENQASM 2.0; qreg q[-1];"),
        st.text(alphabet="OPENQASM;{}[]()qreg 0123456789", min_size=1, max_size=40).filter(
            lambda t: ";" in t or "OPENQASM" in t.upper()),
    )


CASES = [
    # export and QASM
    Case("to_qiskit(staircase)", "dtype", NOT_CIRCUIT, lambda c: to_qiskit(c), ("staircase",)),
    Case("to_qiskit(decompose)", "option", unknown(("native", "unitary")), lambda d: to_qiskit(C3, decompose=d),
         ("decompose",)),
    Case("to_qasm2(obj)", "dtype", NOT_CIRCUIT, lambda c: to_qasm2(c), ("staircase_or_circuit",)),
    Case("to_qasm3(obj)", "dtype", NOT_CIRCUIT, lambda c: to_qasm3(c), ("staircase_or_circuit",)),
    Case("save_qasm(version)", "option", st.one_of(st.integers().filter(lambda v: v not in (2, 3)), st.text(max_size=2),
                                                    st.just(2.5), st.booleans()),
         lambda v: save_qasm(C3, "/tmp/never.qasm", version=v), ("version",)),
    Case("save_qasm(path)", "path", BAD_PATH, lambda p: save_qasm(C3, p), path_names("path")),
    Case("save_qasm(obj)", "dtype", NOT_CIRCUIT, lambda c: save_qasm(c, "/tmp/never.qasm"),
         ("staircase_or_circuit",)),
    Case("load_qasm(text) malformed", "path", _bad_qasm(), lambda t: load_qasm(t), ("OpenQASM", "QASM")),
    Case("load_qasm(path)", "path", st.one_of(st.integers(), st.none(), st.just("/nonexistent.qasm"), st.just("/"),
                                              st.just("/etc/passwd")), lambda p: load_qasm(p),
         path_names("path_or_text")),
    Case("load_qasm(version)", "option", st.one_of(st.integers().filter(lambda v: v not in (2, 3)),
                                                    st.text(max_size=2), st.just(2.0)),
         lambda v: load_qasm("OPENQASM 2.0; qreg q[1];", version=v), ("version",)),
    Case("circuit_unitary(circuit)", "dtype", NOT_CIRCUIT, lambda c: circuit_unitary(c), ("circuit",)),
    Case("circuit_unitary(circuit) too wide", "size", st.integers(13, 40),
         lambda n: circuit_unitary(__import__("qiskit").QuantumCircuit(n)), ("12 qubits", "circuit")),
    # depth analysis
    Case("depth_report(circuit)", "dtype", NOT_CIRCUIT, lambda c: depth_report(c, basis_gates=BASIS), ("circuit",)),
    Case("depth_report(backend)", "option", st.one_of(
        st.text(alphabet="abcxyz:_", max_size=10).filter(lambda s: not s.startswith(("fake:", "ibm:"))),
        st.text(alphabet="xyzq", min_size=1, max_size=6).map(lambda s: f"fake:{s}"), st.integers()),
        lambda b: depth_report(C3, b), ("backend", "model")),
    Case("depth_report(optimization_level)", "option", st.one_of(st.integers().filter(lambda v: not 0 <= v <= 3),
                                                                  NOT_INT),
         lambda o: depth_report(C3, basis_gates=BASIS, optimization_level=o), ("optimization_level",)),
    Case("depth_report(basis_gates)", "option", st.one_of(
        st.lists(st.text(alphabet="fobarq", min_size=1, max_size=5), min_size=1, max_size=3), st.just([]),
        st.text(min_size=1, max_size=3), st.just([1, 2])), lambda b: depth_report(C3, basis_gates=b),
        ("basis_gates",)),
    Case("depth_report(coupling_map)", "shape", st.one_of(
        st.lists(st.lists(st.integers(-5, -1), min_size=2, max_size=2), min_size=1, max_size=3),
        st.lists(st.lists(st.integers(0, 3), min_size=3, max_size=3), min_size=1, max_size=2),
        st.just([[0, 0]]), st.text(min_size=1, max_size=3), st.just([[0, 1]])),
        lambda c: depth_report(C3, basis_gates=BASIS, coupling_map=c), ("coupling_map",)),
    Case("depth_report(backend and basis_gates)", "option", st.just("fake:torino"),
         lambda b: depth_report(C3, b, basis_gates=BASIS), ("backend",)),
    Case("depth_report(seed)", "dtype", st.one_of(negative(), NOT_INT),
         lambda s: depth_report(C3, basis_gates=BASIS, seed=s), ("seed",)),
    Case("qsd_cx_count(n)", "size", st.one_of(non_positive(), NOT_INT, st.integers(1025, 10**18)),
         lambda n: qsd_cx_count(n), ("n",)),
    Case("dense_baseline(n)", "size", st.one_of(non_positive(), NOT_INT, st.integers(1025, 10**18)),
         lambda n: dense_baseline(n), ("n",)),
    Case("dense_baseline(optimization_level)", "option", st.integers().filter(lambda v: not 0 <= v <= 3),
         lambda o: dense_baseline(20, optimization_level=o), ("optimization_level",)),
    Case("dense_baseline(measure_up_to)", "size", st.one_of(negative(), st.integers(11, 10**9)),
         lambda m: dense_baseline(3, measure_up_to=m), ("measure_up_to",)),
    Case("depth_sweep(target)", "dtype", st.one_of(NOT_INT, NOT_ARRAY, st.just(C3)),
         lambda t: depth_sweep(t, [1], basis_gates=BASIS, progress=False, dense=False), ("target",)),
    Case("depth_sweep(layers)", "size", st.one_of(
        st.just([]), st.lists(non_positive(), min_size=1, max_size=2), st.text(min_size=1, max_size=2),
        st.integers()), lambda d: depth_sweep(MPS.random(3, 2), d, basis_gates=BASIS, progress=False, dense=False),
        ("layers",)),
    Case("depth_sweep(layers) absurd", "size", st.integers(1001, 10**12),
         lambda d: depth_sweep(MPS.random(3, 2), [d], basis_gates=BASIS, progress=False, dense=False), ("layers",)),
    Case("depth_sweep(method)", "option", unknown(("iterative", "ran", "sweep")),
         lambda m: depth_sweep(MPS.random(3, 2), [1], basis_gates=BASIS, method=m, progress=False, dense=False),
         ("method",)),
    Case("depth_sweep(callback)", "dtype", st.one_of(st.integers(), st.text(min_size=1, max_size=2)),
         lambda c: depth_sweep(MPS.random(3, 2), [1], basis_gates=BASIS, callback=c, progress=False, dense=False),
         ("callback",)),
    Case("plot_depth_sweep(result)", "dtype", st.one_of(
        st.text(max_size=3), st.integers(), st.just({}), st.just({"rows": [{"layers": 1}]}),
        st.just({"rows": "abc"}), st.just({"kind": "mps", "rows": [{"fidelity": 1.0}]})),
        lambda r: plot_depth_sweep(r), ("result", "rows")),
    # catalogue
    Case("build_catalogue(out_dir)", "path", st.one_of(st.integers(), st.none(), st.just("/etc/passwd/x"),
                                                       st.just("")), lambda p: build_catalogue(p, progress=False),
         path_names("out_dir")),
    Case("check_catalogue(directory)", "path", st.one_of(st.integers(), st.just("/nonexistent"), st.just("/etc")),
         lambda p: check_catalogue(p), path_names("directory")),
    Case("verify_catalogue(directory)", "path", st.one_of(st.integers(), st.just("/nonexistent"), st.just("/etc")),
         lambda p: verify_catalogue(p), path_names("directory")),
    Case("verify_catalogue(atol)", "nonfinite", st.one_of(st.floats(max_value=-1e-12), NAN_INF, NOT_REAL),
         lambda a: verify_catalogue("circuits", atol=a), ("atol",)),
    Case("compare_catalogues(committed)", "path", st.one_of(st.integers(), st.just("/nonexistent")),
         lambda p: compare_catalogues(p, "circuits"), path_names("committed")),
    # io and checkpoints
    Case("atomic_open(path)", "path", BAD_PATH, lambda p: atomic_open(p).__enter__(), path_names("path")),
    Case("atomic_open(mode)", "option", unknown(("w", "wb", "wt")), lambda m: atomic_open("/tmp/x", m).__enter__(),
         ("mode",)),
    Case("write_json(data)", "dtype", st.one_of(st.just({1, 2}), st.just(object()), st.just({"a": np.ones(2)}),
                                                 st.just(b"x"), st.just({(1, 2): 3})),
         lambda d: write_json("/tmp/qtnn-never.json", d), ("data",)),
    Case("write_json(path)", "path", BAD_PATH, lambda p: write_json(p, {"a": 1}), path_names("path")),
    Case("save_checkpoint(path)", "path", BAD_PATH, lambda p: save_checkpoint(p, {"a": 1}), path_names("path")),
    Case("save_checkpoint(state)", "dtype", st.one_of(
        st.lists(st.integers(), max_size=2), st.text(max_size=2), st.none(),
        st.just({"f": lambda: 1}), st.just({"m": torch.nn.Linear(2, 2)}), st.just({"o": object()}),
        st.just({"a": np.ones(3)})), lambda s: save_checkpoint("/tmp/qtnn-never.pt", s), ("state",)),
    Case("load_checkpoint(path)", "path", st.one_of(st.integers(), st.none(), st.just("/nonexistent.pt"),
                                                    st.just("/"), st.just("/etc/passwd")),
         lambda p: load_checkpoint(p), path_names("path")),
    Case("load_hybrid(path)", "path", st.one_of(st.just("/nonexistent.pt"), st.just("/etc/passwd"), st.just("/")),
         lambda p: load_hybrid(p), path_names("path")),
    # demos and configs
    Case("load_digits_split(seed)", "dtype", st.one_of(negative(), NOT_INT, st.integers(2**32, 10**18)),
         lambda s: load_digits_split(s), ("seed",)),
    Case("load_digits_split(test_size)", "nonfinite", st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0),
                                                               NAN_INF, NOT_REAL),
         lambda t: load_digits_split(0, test_size=t), ("test_size",)),
    Case("run_compression_demo(seed)", "dtype", st.one_of(negative(), NOT_INT),
         lambda s: run_compression_demo(seed=s, progress=False), ("seed",)),
    Case("run_compression_demo(bonds)", "size", st.one_of(
        st.just(()), st.lists(non_positive(), min_size=1, max_size=2), st.text(max_size=2), st.integers()),
        lambda b: run_compression_demo(bonds=b, progress=False), ("bonds",)),
    Case("run_compression_demo(epochs)", "size", st.one_of(negative(), NOT_INT),
         lambda e: run_compression_demo(epochs=e, progress=False), ("epochs",)),
    Case("run_compression_demo(hidden)", "size", st.one_of(non_positive(), NOT_INT, st.integers(10**9, 10**15)),
         lambda h: run_compression_demo(hidden=h, progress=False), ("hidden", "MLP")),
    Case("HybridConfig.check(ints)", "size", st.tuples(
        st.sampled_from(["in_features", "hidden", "max_bond", "n_qubits", "n_classes", "epochs", "batch_size"]),
        st.one_of(non_positive(), NOT_INT)), lambda a: HybridConfig(**{a[0]: a[1]}).check(), lambda a: (a[0],)),
    Case("HybridConfig.check(head)", "option", unknown(("quantum", "disentangled")),
         lambda h: HybridConfig(head=h).check(), ("head",)),
    Case("HybridConfig.check(lr)", "nonfinite", st.one_of(st.floats(max_value=0.0), st.just(math.nan)),
         lambda r: HybridConfig(lr=r).check(), ("lr",)),
    # qtnn.compress
    Case("compress(targets)", "option", st.one_of(st.text(alphabet="xyz9", min_size=1, max_size=4),
                                                  st.just(["0", "nope"]), st.just("1")),
         lambda t: compress_mod.compress(MLP, t, progress=False), ("target", "module")),
    Case("compress(method)", "option", unknown(("mpo", "disentangle")),
         lambda m: compress_mod.compress(MLP, "0", method=m, progress=False), ("method",)),
    Case("compress(max_bond)", "size", st.one_of(non_positive(), st.text(min_size=1, max_size=2)),
         lambda b: compress_mod.compress(MLP, "0", max_bond=b, progress=False), ("max_bond",)),
    Case("compress(cutoff)", "nonfinite", st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0), NAN_INF),
         lambda c: compress_mod.compress(MLP, "0", cutoff=c, progress=False), ("cutoff",)),
    Case("compress(layers)", "size", st.one_of(negative(), st.integers(1001, 10**9)),
         lambda d: compress_mod.compress(MLP, "0", method="disentangle", max_bond=2, layers=d, progress=False),
         ("layers",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
@settings(max_examples=5, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_analysis_io_and_helpers_refuse_bad_input(case, data):
    case.run(data.draw(case.values, label=case.label))


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(cut=st.floats(0.0, 0.99), flip=st.integers(0, 2**16))
def test_load_checkpoint_refuses_truncated_and_flipped_files(tmp_path_factory, cut, flip):
    """Any truncation or single flipped byte of a checkpoint is refused (weights only, SHA-256)."""
    d = tmp_path_factory.mktemp("ck")
    good = d / "ck.pt"
    save_checkpoint(good, {"w": torch.arange(64.0), "epoch": 3, "losses": [1.0, 0.5]})
    blob = good.read_bytes()
    truncated = d / "truncated.pt"
    truncated.write_bytes(blob[: int(cut * len(blob))])
    expect_error("path", lambda: load_checkpoint(truncated), names=(str(truncated),))
    flipped = d / "flipped.pt"
    data = bytearray(blob)
    i = flip % len(data)
    data[i] ^= 0x5A
    flipped.write_bytes(bytes(data))
    try:
        back = load_checkpoint(flipped)
    except Exception:
        expect_error("path", lambda: load_checkpoint(flipped), names=(str(flipped),))
    else:  # a flip in zip padding/metadata that changes nothing the payload holds: same content
        assert back["epoch"] == 3 and torch.equal(back["w"], torch.arange(64.0))
