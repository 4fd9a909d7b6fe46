"""Generated bad input for ``qtnn.quantum`` (devices, QNodes, the template, the retry options) and
``qtnn.nn`` (MPO, Tucker and CP layers, the quantum layers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _harness import (
    ABSURD,
    NAN_INF,
    NOT_ARRAY,
    NOT_INT,
    NOT_INT_NOR_NONE,
    NOT_REAL,
    Case,
    negative,
    non_positive,
    unknown,
    with_nonfinite,
    wrong_shape,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from qtnn.nn import CPConv2d, DisentangledLinear, MPOLinear, QuantumHead, QuantumStaircase, TuckerConv2d
from qtnn.quantum import StaircaseQNode, StaircaseTemplate, device
from qtnn.quantum._retry import RetryPolicy
from qtnn.tn import MPO

DEV = device("default.qubit", wires=3)
QN = StaircaseQNode(DEV, 3, 1)
W0 = torch.zeros(1, 2, 6, dtype=torch.float64)
X8 = torch.rand(2, 8, dtype=torch.float64) + 0.1
LIN = MPOLinear(8, 4, 2)
TUCKER = TuckerConv2d(3, 4, 3, ranks=(2, 2))
CP = CPConv2d(3, 4, 3, rank=2)
QS = QuantumStaircase(3, 1, readout="probs")
QH = QuantumHead(8, 3, 1, 4)
DL = DisentangledLinear(4, 4, 1, 1, 2)
BAD_BOOL = st.one_of(st.integers(), st.text(max_size=2), st.none(), st.floats())
NOT_TENSOR = st.one_of(NOT_ARRAY, st.just(np.ones((2, 8))), st.just([[1.0] * 8]), st.integers())
DEVICES = ("default.qubit", "lightning.qubit", "lightning.gpu", "qiskit.aer")
BAD_DTYPE = st.sampled_from(["float32", torch.int64, torch.bool, np.float64, 3])


def _torch(a):
    return torch.tensor(a)


CASES = [
    # device()
    Case("device(name)", "option", st.one_of(unknown(DEVICES), st.sampled_from(["fake:", "ibm", "Default.Qubit",
                                                                                "qiskit.remote", "cuda"])),
         lambda n: device(n, wires=2), ("name", "device")),
    Case("device(name) unknown model", "option", st.text(alphabet="xyzq_", min_size=1, max_size=8),
         lambda n: device(f"fake:{n}", wires=2, shots=10), ("model", "fake:")),
    Case("device(wires)", "size", st.one_of(non_positive(), NOT_INT), lambda w: device("default.qubit", wires=w),
         ("wires",)),
    Case("device(wires) too large", "size", st.integers(40, 1000),
         lambda w: device(np.random.default_rng(w).choice(["default.qubit", "qiskit.aer"]), wires=w),
         ("state vector", "qubits")),
    Case("device(shots)", "size", st.one_of(non_positive(), NOT_INT_NOR_NONE),
         lambda s: device("default.qubit", wires=2, shots=s), ("shots",)),
    Case("device(seed)", "dtype", st.one_of(negative(), NOT_INT_NOR_NONE),
         lambda s: device("default.qubit", wires=2, seed=s), ("seed",)),
    Case("device(job_tries)", "size", st.one_of(non_positive(), NOT_INT, st.integers(1001, 10**9)),
         lambda t: device("qiskit.aer", wires=2, shots=10, job_tries=t), ("job_tries",)),
    Case("device(job_backoff)", "nonfinite", st.one_of(st.floats(max_value=-1e-9), NAN_INF, NOT_REAL),
         lambda b: device("qiskit.aer", wires=2, shots=10, job_backoff=b), ("job_backoff",)),
    Case("device(job_timeout)", "nonfinite", st.one_of(st.floats(max_value=0.0), st.just(float("nan")),
                                                       NOT_REAL.filter(lambda v: v is not None)),
         lambda t: device("qiskit.aer", wires=2, shots=10, job_timeout=t), ("job_timeout",)),
    Case("RetryPolicy(tries)", "size", st.one_of(non_positive(), NOT_INT), lambda t: RetryPolicy(tries=t),
         ("job_tries",)),
    # StaircaseQNode
    Case("StaircaseQNode(dev)", "dtype", st.one_of(st.text(max_size=5), st.none(), st.integers(), st.just(DEV.pl)),
         lambda d: StaircaseQNode(d, 3, 1), ("dev",)),
    Case("StaircaseQNode(n_qubits)", "size", st.one_of(non_positive(), NOT_INT, st.integers(4, 10**9)),
         lambda n: StaircaseQNode(DEV, n, 1), ("n_qubits",)),
    Case("StaircaseQNode(layers)", "size", st.one_of(negative(), NOT_INT), lambda d: StaircaseQNode(DEV, 3, d),
         ("layers",)),
    Case("StaircaseQNode(k)", "size", st.one_of(non_positive(), NOT_INT, st.integers(4, 10**6)),
         lambda k: StaircaseQNode(DEV, 3, 1, k=k), ("k",)),
    Case("StaircaseQNode(encoding)", "option", unknown(("amplitude", "staircase", "none")),
         lambda e: StaircaseQNode(DEV, 3, 1, encoding=e), ("encoding",)),
    Case("StaircaseQNode(readout)", "option", unknown(("state", "probs", "expval")),
         lambda r: StaircaseQNode(DEV, 3, 1, readout=r), ("readout",)),
    Case("StaircaseQNode(gate_mode)", "option", unknown(("auto", "matrix", "native")),
         lambda g: StaircaseQNode(DEV, 3, 1, gate_mode=g), ("gate_mode",)),
    Case("StaircaseQNode(diff_method)", "option", unknown(("auto", "backprop", "adjoint", "parameter-shift",
                                                            "finite-diff")).filter(lambda v: v is not None),
         lambda m: StaircaseQNode(DEV, 3, 1, diff_method=m), ("diff_method",)),
    Case("StaircaseQNode(readout_wires)", "size", st.one_of(
        st.lists(st.integers(3, 100), min_size=1, max_size=2), st.lists(negative(-5), min_size=1, max_size=2),
        st.just([0, 0]), st.just([]), st.text(min_size=1, max_size=2), st.integers()),
        lambda w: StaircaseQNode(DEV, 3, 1, readout_wires=w), ("readout_wires",)),
    Case("StaircaseQNode(encoding_layers)", "size", st.one_of(non_positive(), NOT_INT),
         lambda e: StaircaseQNode(DEV, 3, 1, encoding_layers=e), ("encoding_layers",)),
    Case("StaircaseQNode(encoding_method)", "option", unknown(("iterative", "ran", "sweep")),
         lambda m: StaircaseQNode(DEV, 3, 1, encoding_method=m), ("encoding_method",)),
    Case("StaircaseQNode(complex)", "dtype", BAD_BOOL, lambda c: StaircaseQNode(DEV, 3, 1, complex=c), ("complex",)),
    Case("StaircaseQNode(track)", "dtype", BAD_BOOL, lambda c: StaircaseQNode(DEV, 3, 1, track=c), ("track",)),
    Case("StaircaseQNode(inverse)", "dtype", BAD_BOOL, lambda c: StaircaseQNode(DEV, 3, 1, inverse=c), ("inverse",)),
    Case("StaircaseQNode(x) pow2", "pow2", st.integers(1, 40).filter(lambda d: d != 8),
         lambda d: QN(torch.rand(2, d) + 0.1, W0), ("x",)),
    Case("StaircaseQNode(x) nonfinite", "nonfinite", with_nonfinite((2, 8)), lambda a: QN(_torch(a), W0), ("x",)),
    Case("StaircaseQNode(x) zero row", "nonfinite", st.integers(0, 2),
         lambda r: QN(torch.cat([X8, torch.zeros(1, 8, dtype=torch.float64)])[r:], W0)
         if r < 2 else QN(torch.zeros(3, 8), W0), ("x",)),
    Case("StaircaseQNode(x) empty", "empty", st.sampled_from([(0, 8), (0,)]),
         lambda s: QN(torch.zeros(s), W0), ("x",)),
    Case("StaircaseQNode(x) dtype", "dtype", NOT_ARRAY, lambda x: QN(x, W0), ("x",)),
    Case("StaircaseQNode(weights) shape", "shape", wrong_shape((1, 2, 6)), lambda w: QN(X8, _torch(w)),
         ("weights",)),
    Case("StaircaseQNode(weights) nonfinite", "nonfinite", with_nonfinite((1, 2, 6)),
         lambda w: QN(X8, _torch(w)), ("weights",)),
    Case("StaircaseQNode(weights) dtype", "dtype", NOT_ARRAY, lambda w: QN(X8, w), ("weights",)),
    Case("StaircaseQNode(dets)", "shape", st.one_of(
        st.lists(st.sampled_from([0, 2, -3, 0.5]), min_size=2, max_size=2).map(lambda v: [v]),
        wrong_shape((1, 2)).filter(lambda a: np.size(a) != 2 or np.ndim(a) != 2), NOT_ARRAY),
        lambda d: QN(X8, W0, dets=d), ("dets",)),
    Case("StaircaseQNode.random_weights(scale)", "nonfinite", st.one_of(st.floats(max_value=-1e-9), NAN_INF,
                                                                       NOT_REAL),
         lambda s: QN.random_weights(scale=s), ("scale",)),
    Case("StaircaseQNode.random_weights(seed)", "dtype", st.one_of(negative(), NOT_INT),
         lambda s: QN.random_weights(seed=s), ("seed",)),
    Case("StaircaseTemplate(weights) shape", "shape", wrong_shape((1, 2, 6)).filter(
        lambda a: np.ndim(a) not in (3, 4) or np.shape(a)[-2:] != (2, 6) or np.shape(a)[-3] < 1),
        lambda w: StaircaseTemplate(w, wires=[0, 1, 2]), ("weights",)),
    Case("StaircaseTemplate(weights) nonfinite", "nonfinite", with_nonfinite((1, 2, 6)),
         lambda w: StaircaseTemplate(w, wires=[0, 1, 2]), ("weights",)),
    Case("StaircaseTemplate(wires)", "size", st.one_of(st.none(), st.just([0]), st.just([])),
         lambda w: StaircaseTemplate(np.zeros((1, 2, 6)), wires=w), ("wires",)),
    Case("StaircaseTemplate(dets)", "shape", st.one_of(
        st.lists(st.sampled_from([0, 2, -3]), min_size=2, max_size=2).map(lambda v: [v]), st.just([1, 1]),
        st.just("ab")), lambda d: StaircaseTemplate(np.zeros((1, 2, 6)), dets=d, wires=[0, 1, 2]), ("dets",)),
    Case("StaircaseTemplate.shape(n_layers, n_wires)", "size", st.tuples(
        st.integers(1, 3), st.one_of(st.integers(-10, 1), NOT_INT)), lambda a: StaircaseTemplate.shape(*a),
        ("n_wires",)),
    # MPOLinear
    Case("MPOLinear(in_features)", "size", st.one_of(non_positive(), NOT_INT), lambda n: MPOLinear(n, 4, 2),
         ("in_features",)),
    Case("MPOLinear(max_bond)", "size", st.one_of(non_positive(), NOT_INT), lambda b: MPOLinear(8, 4, b),
         ("max_bond",)),
    Case("MPOLinear(sizes) absurd", "size", ABSURD, lambda n: MPOLinear(n, n, 10**6), ("MPOLinear", "size")),
    Case("MPOLinear(out_dims)", "size", st.one_of(st.lists(non_positive(-5), min_size=1, max_size=2),
                                                   st.text(min_size=1, max_size=3), st.integers(41, 10**12),
                                                   st.just([3])),
         lambda d: MPOLinear(8, 4, 2, out_dims=d), ("out_dims", "dims")),
    Case("MPOLinear(dtype)", "dtype", BAD_DTYPE, lambda d: MPOLinear(8, 4, 2, dtype=d), ("dtype",)),
    Case("MPOLinear(bias)", "dtype", BAD_BOOL, lambda b: MPOLinear(8, 4, 2, bias=b), ("bias",)),
    Case("MPOLinear(x) shape", "shape", st.integers(1, 20).filter(lambda d: d != 8),
         lambda d: LIN(torch.rand(3, d)), ("x",)),
    Case("MPOLinear(x) dtype", "dtype", st.sampled_from([torch.float64, torch.int64, torch.float16, torch.bool]),
         lambda t: LIN(torch.ones(3, 8, dtype=t)), ("x",)),
    Case("MPOLinear(x) not a tensor", "dtype", NOT_TENSOR, lambda x: LIN(x), ("x",)),
    Case("MPOLinear.from_mpo(mpo)", "dtype", st.one_of(NOT_INT, NOT_ARRAY), lambda m: MPOLinear.from_mpo(m),
         ("mpo",)),
    Case("MPOLinear.from_mpo(bias)", "shape", st.one_of(wrong_shape((4,)), with_nonfinite((4,)), NOT_ARRAY),
         lambda b: MPOLinear.from_mpo(MPO.random((2, 2), (2, 2), 2), bias=b), ("bias",)),
    Case("MPOLinear.from_linear(linear)", "dtype", st.one_of(NOT_INT, st.just(torch.nn.Conv2d(1, 1, 1))),
         lambda m: MPOLinear.from_linear(m), ("linear",)),
    Case("MPOLinear.from_linear(weight) nonfinite", "nonfinite", NAN_INF,
         lambda v: MPOLinear.from_linear(torch.nn.Linear(4, 4).requires_grad_(False).apply(
             lambda m: m.weight.__setitem__((0, 0), v))), ("linear.weight",)),
    Case("MPOLinear.from_linear(max_bond)", "size", st.one_of(non_positive(), NOT_INT_NOR_NONE),
         lambda b: MPOLinear.from_linear(torch.nn.Linear(4, 4), max_bond=b), ("max_bond",)),
    # convolutions
    Case("TuckerConv2d(ranks)", "size", st.one_of(st.tuples(st.integers(5, 100), st.integers(1, 3)),
                                                   st.tuples(non_positive(), st.integers(1, 3)), st.text(max_size=2)),
         lambda r: TuckerConv2d(3, 4, 3, ranks=r), ("ranks",)),
    Case("TuckerConv2d(kernel_size)", "size", st.one_of(non_positive(), NOT_INT.filter(
        lambda v: not isinstance(v, list))), lambda k: TuckerConv2d(3, 4, k, ranks=(2, 2)), ("kernel_size",)),
    Case("TuckerConv2d(padding)", "option", st.one_of(unknown(("same", "valid")).filter(lambda v: not isinstance(v, int)
                                                                                       or v < 0),
                                                       st.just(-1), st.just((1, -1))),
         lambda p: TuckerConv2d(3, 4, 3, ranks=(2, 2), padding=p), ("padding",)),
    Case("TuckerConv2d(padding_mode)", "option", unknown(("zeros", "reflect", "replicate", "circular")),
         lambda p: TuckerConv2d(3, 4, 3, ranks=(2, 2), padding_mode=p), ("padding_mode",)),
    Case("TuckerConv2d(sizes) absurd", "size", ABSURD,
         lambda n: TuckerConv2d(n, n, 3, ranks=(n, n)), ("TuckerConv2d",)),
    Case("TuckerConv2d(x) channels", "shape", st.integers(1, 8).filter(lambda c: c != 3),
         lambda c: TUCKER(torch.rand(1, c, 6, 6)), ("input",)),
    Case("TuckerConv2d(x) smaller than kernel", "shape", st.tuples(st.integers(1, 2), st.integers(1, 8)),
         lambda hw: TUCKER(torch.rand(1, 3, *hw)), ("input", "kernel")),
    Case("TuckerConv2d(x) rank", "shape", st.integers(0, 6).filter(lambda r: r not in (3, 4)),
         lambda r: TUCKER(torch.full((3,) * r, 0.5)), ("input",)),
    Case("TuckerConv2d.from_conv(method)", "option", unknown(("hooi", "hosvd")),
         lambda m: TuckerConv2d.from_conv(torch.nn.Conv2d(3, 4, 3), ranks=(2, 2), method=m), ("method",)),
    Case("CPConv2d(rank)", "size", st.one_of(non_positive(), NOT_INT), lambda r: CPConv2d(3, 4, 3, rank=r),
         ("rank",)),
    Case("CPConv2d(x) smaller than kernel", "shape", st.tuples(st.integers(1, 8), st.integers(1, 2)),
         lambda hw: CP(torch.rand(3, *hw)), ("input", "kernel")),
    Case("CPConv2d.from_conv(conv)", "dtype", st.one_of(NOT_INT, st.just(torch.nn.Linear(2, 2))),
         lambda c: CPConv2d.from_conv(c), ("conv",)),
    Case("CPConv2d.exact_rank(out_channels)", "size", st.one_of(non_positive(), NOT_INT),
         lambda n: CPConv2d.exact_rank(n, 3, 3), ("out_channels",)),
    # quantum layers
    Case("QuantumStaircase(n_qubits)", "size", st.one_of(st.integers(-10**6, 1), NOT_INT),
         lambda n: QuantumStaircase(n, 1), ("n_qubits",)),
    Case("QuantumStaircase(k)", "size", st.one_of(st.integers(-10, 1), st.integers(3, 10**6)),
         lambda k: QuantumStaircase(3, 1, k=k), ("k",)),
    Case("QuantumStaircase(in_features) > 2**n", "pow2", st.integers(9, 10**6),
         lambda n: QuantumStaircase(3, 1, in_features=n), ("in_features",)),
    Case("QuantumStaircase(readout)", "option", unknown(("state", "probs", "expval")),
         lambda r: QuantumStaircase(3, 1, readout=r), ("readout",)),
    Case("QuantumStaircase(encoding)", "option", unknown(("amplitude", "staircase")),
         lambda e: QuantumStaircase(3, 1, encoding=e), ("encoding",)),
    Case("QuantumStaircase(init)", "option", unknown(("random", "identity")),
         lambda i: QuantumStaircase(3, 1, init=i), ("init",)),
    Case("QuantumStaircase(x) shape", "pow2", st.integers(1, 20).filter(lambda d: d != 8),
         lambda d: QS(torch.rand(2, d)), ("x",)),
    Case("QuantumStaircase(x) zero row", "nonfinite", st.integers(1, 3), lambda b: QS(torch.zeros(b, 8)), ("x",)),
    Case("QuantumStaircase.set_backend(backend)", "option", unknown(("reference", "pennylane")),
         lambda b: QS.set_backend(b), ("backend",)),
    Case("QuantumStaircase.set_backend(device) missing", "option", st.just(None),
         lambda d: QuantumStaircase(3, 1).set_backend("pennylane", d), ("device",)),
    Case("QuantumStaircase.set_backend(device name)", "option", unknown(DEVICES).filter(lambda v: isinstance(v, str)),
         lambda d: QuantumStaircase(3, 1).set_backend("pennylane", d), ("device", "name")),
    Case("QuantumHead(n_classes)", "size", st.one_of(st.integers(-10, 1), st.integers(9, 10**6), NOT_INT),
         lambda c: QuantumHead(8, 3, 1, c), ("n_classes",)),
    Case("QuantumHead(x) shape", "shape", st.integers(1, 20).filter(lambda d: d != 8),
         lambda d: QH(torch.rand(2, d)), ("x",)),
    Case("DisentangledLinear(max_bond)", "size", st.one_of(non_positive(), NOT_INT),
         lambda b: DisentangledLinear(4, 4, 1, 1, b), ("max_bond",)),
    Case("DisentangledLinear(out_layers)", "size", st.one_of(negative(), NOT_INT),
         lambda d: DisentangledLinear(4, 4, d, 1, 2), ("layers",)),
    Case("DisentangledLinear(x) shape", "shape", st.integers(1, 20).filter(lambda d: d != 4),
         lambda d: DL(torch.rand(2, d)), ("x",)),
    Case("DisentangledLinear.from_linear(linear)", "dtype", st.one_of(NOT_INT, st.just(torch.nn.Conv2d(1, 1, 1))),
         lambda m: DisentangledLinear.from_linear(m, 1, 1, 2), ("linear",)),
    Case("DisentangledLinear.from_mpo(mpo) not qubits", "shape", st.integers(3, 4),
         lambda d: DisentangledLinear.from_mpo(MPO.random((d, d), (d, d), 2), 1, 1, 2), ("W", "mpo")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
@settings(max_examples=5, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_quantum_and_nn_refuse_bad_input(case, data):
    case.run(data.draw(case.values, label=case.label))
