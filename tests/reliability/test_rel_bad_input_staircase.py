"""Generated bad input for ``qtnn.staircase``: circuits, their parametrisation, the encoders and the
disentangler, the ground states and the benchmarks."""

from __future__ import annotations

import numpy as np
import pytest
from _harness import (
    HUGE,
    NAN_INF,
    NOT_ARRAY,
    NOT_INT,
    NOT_INT_NOR_NONE,
    NOT_REAL,
    Case,
    expect_error,
    negative,
    non_positive,
    path_names,
    unknown,
    with_nonfinite,
    wrong_shape,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from qtnn.apps.bench_circuits import disentangle_benchmark, staircase_benchmark
from qtnn.staircase import (
    Staircase,
    apply_gates,
    disentangle,
    encode_mps,
    gates_from_params,
    heisenberg_ground_state,
    ising_ground_state,
)
from qtnn.staircase.circuit import MAX_LAYERS, num_gate_params
from qtnn.staircase.magic import magic_angles, magic_gates
from qtnn.tn import MPO, MPS

C3 = Staircase.random(3, 1, seed=0)
PSI = MPS.random(4, 2, seed=0)
W = MPO.random((2, 2), (2, 2), 2, seed=0)
ORTHO = Staircase.random(3, 2, seed=1).gates          # (2, 2, 4, 4), orthogonal
BAD_BOOL = st.one_of(st.integers(), st.text(max_size=2), st.none(), st.floats())
BAD_LAYERS = st.one_of(negative(), NOT_INT, st.integers(MAX_LAYERS + 1, 10**18))
BAD_SEED = st.one_of(negative(), NOT_INT_NOR_NONE)


def _non_orthogonal(args: tuple[int, float, int]) -> np.ndarray:
    """Orthogonal gates with one gate perturbed by ``eps`` (at least 1e-8: beyond the 1e-10 tolerance)."""
    seed, eps, which = args
    g = ORTHO.copy()
    rng = np.random.default_rng(seed)
    g.reshape(-1, 4, 4)[which % 4] += eps * rng.normal(size=(4, 4))
    return g


NON_ORTHO = st.one_of(
    st.tuples(st.integers(0, 2**16), st.floats(1e-7, 10.0), st.integers(0, 3)).map(_non_orthogonal),
    st.integers(0, 2**16).map(lambda s: np.random.default_rng(s).normal(size=(2, 2, 4, 4))),
    st.just(np.zeros((2, 2, 4, 4))),
    st.just(2.0 * np.broadcast_to(np.eye(4), (2, 2, 4, 4))),
)


CASES = [
    # Staircase(...)
    Case("Staircase(n_qubits)", "size", st.one_of(non_positive(), NOT_INT), lambda n: Staircase(n, 1), ("n_qubits",)),
    Case("Staircase(layers)", "size", st.one_of(negative(), NOT_INT), lambda d: Staircase(3, d), ("layers",)),
    Case("Staircase(layers) absurd", "size", HUGE, lambda d: Staircase(30, d), ("layers", "staircase")),
    Case("Staircase(k)", "size", st.one_of(non_positive(), NOT_INT, st.integers(4, 10**6)),
         lambda k: Staircase(3, 1, k=k), ("k",)),
    Case("Staircase(k) absurd", "size", st.integers(17, 10**12), lambda k: Staircase(2**32, 1, k=k), ("k",)),
    Case("Staircase(gates) non-orthogonal", "nonortho", NON_ORTHO, lambda g: Staircase(3, 2, gates=g),
         ("orthogonal",)),
    Case("Staircase(gates) non-unitary complex", "nonortho", NON_ORTHO,
         lambda g: Staircase(3, 2, gates=g * np.exp(0.3j), complex=True), ("unitary",)),
    Case("Staircase(gates) complex when real", "dtype", st.floats(0.1, 3.0),
         lambda a: Staircase(3, 2, gates=ORTHO * np.exp(1j * a)), ("gates", "complex")),
    Case("Staircase(gates) nonfinite", "nonfinite", with_nonfinite((2, 2, 4, 4)), lambda g: Staircase(3, 2, gates=g),
         ("gates",)),
    Case("Staircase(gates) shape", "shape", wrong_shape((2, 2, 4, 4)), lambda g: Staircase(3, 2, gates=g),
         ("gates",)),
    Case("Staircase(gates) dtype", "dtype", NOT_ARRAY, lambda g: Staircase(3, 2, gates=g), ("gates",)),
    Case("Staircase(gates) empty", "empty", st.sampled_from([np.zeros((0, 2, 4, 4)), []]),
         lambda g: Staircase(3, 2, gates=g), ("gates",)),
    Case("Staircase(complex)", "dtype", BAD_BOOL, lambda c: Staircase(3, 1, complex=c), ("complex",)),
    Case("Staircase(descending)", "dtype", BAD_BOOL, lambda c: Staircase(3, 1, descending=c), ("descending",)),
    Case("Staircase.random(seed)", "dtype", BAD_SEED, lambda s: Staircase.random(3, 1, seed=s), ("seed",)),
    Case("Staircase.random(layers) absurd", "size", HUGE, lambda d: Staircase.random(20, d), ("layers", "staircase")),
    Case("Staircase.random(complex)", "dtype", BAD_BOOL, lambda c: Staircase.random(3, 1, complex=c), ("complex",)),
    Case("Staircase.from_params(params) shape", "shape", wrong_shape((1, 2, 6)),
         lambda p: Staircase.from_params(3, 1, p), ("params",)),
    Case("Staircase.from_params(params) nonfinite", "nonfinite", with_nonfinite((1, 2, 6)),
         lambda p: Staircase.from_params(3, 1, p), ("params",)),
    Case("Staircase.from_params(params) complex", "dtype", st.floats(0.1, 2.0),
         lambda a: Staircase.from_params(3, 1, np.ones((1, 2, 6)) * (1 + 1j * a)), ("params",)),
    Case("Staircase.from_params(signs)", "dtype", st.one_of(
        st.lists(st.sampled_from([0.0, 2.0, -3.0, 0.5]), min_size=2, max_size=2).map(lambda v: [v]),
        wrong_shape((1, 2)).filter(lambda a: np.size(a) > 2), NOT_ARRAY),
        lambda s: Staircase.from_params(3, 1, np.ones((1, 2, 6)), signs=s), ("signs",)),
    # applying
    Case("Staircase.apply(state) shape", "pow2", st.integers(1, 40).filter(lambda d: d != 8),
         lambda d: C3.apply(np.ones(d)), ("x", "2**n_qubits")),
    Case("Staircase.apply(state) nonfinite", "nonfinite", with_nonfinite((2, 8)), lambda x: C3.apply(x), ("x",)),
    Case("Staircase.apply(state) dtype", "dtype", NOT_ARRAY, lambda x: C3.apply(x), ("x",)),
    Case("Staircase.apply(max_bond) dense", "option", st.integers(1, 8), lambda b: C3.apply(np.ones(8), max_bond=b),
         ("max_bond",)),
    Case("Staircase.apply(MPS, max_bond)", "size", st.one_of(non_positive(), NOT_INT_NOR_NONE),
         lambda b: C3.apply(MPS.random(3, 2), max_bond=b), ("max_bond",)),
    Case("Staircase.apply(MPS) sites", "shape", st.integers(1, 6).filter(lambda n: n != 3),
         lambda n: C3.apply(MPS.random(n, 2)), ("sites", "n_qubits")),
    Case("Staircase.apply(MPS) phys", "shape", st.integers(3, 5),
         lambda p: C3.apply(MPS.random(3, 2, phys=p)), ("physical dims",)),
    Case("Staircase.state() too large", "size", st.integers(40, 2**32),
         lambda n: Staircase(n, 0).state(), ("dense state", "state_mps")),
    Case("Staircase.state_mps() too large", "size", st.integers(10**9, 2**32),
         lambda n: Staircase(n, 0).state_mps(), ("MPS",)),
    Case("Staircase(n_qubits) absurd", "size", st.integers(2**32 + 1, 10**18), lambda n: Staircase(n, 0),
         ("n_qubits",)),
    Case("Staircase.to_matrix() too large", "size", st.integers(13, 2**32),
         lambda n: Staircase(n, 0).to_matrix(), ("n_qubits",)),
    Case("Staircase.save(path)", "path", st.one_of(st.integers(), st.none(), st.just(""), st.just("/nonexistent/c.npz")),
         lambda p: C3.save(p), path_names("path")),
    Case("Staircase.load(path)", "path", st.one_of(st.integers(), st.just("/nonexistent.npz"), st.just("/"),
                                                   st.just("/etc/passwd")), lambda p: Staircase.load(p),
         path_names("path")),
    # apply_gates
    Case("apply_gates(x) pow2", "pow2", st.integers(1, 40).filter(lambda d: d != 8),
         lambda d: apply_gates(np.ones(d), ORTHO, 3), ("x",)),
    Case("apply_gates(x) nonfinite", "nonfinite", with_nonfinite((3, 8)), lambda x: apply_gates(x, ORTHO, 3), ("x",)),
    Case("apply_gates(gates) nonfinite", "nonfinite", with_nonfinite((2, 2, 4, 4)),
         lambda g: apply_gates(np.ones(8), g, 3), ("gates",)),
    Case("apply_gates(gates) shape", "shape", wrong_shape((2, 2, 4, 4)).filter(
        lambda a: np.ndim(a) != 4 or np.shape(a)[1:] != (2, 4, 4)), lambda g: apply_gates(np.ones(8), g, 3),
        ("gates",)),
    Case("apply_gates(gates) dtype", "dtype", NOT_ARRAY, lambda g: apply_gates(np.ones(8), g, 3), ("gates",)),
    Case("apply_gates(n_qubits)", "size", st.one_of(non_positive(), NOT_INT, HUGE),
         lambda n: apply_gates(np.ones(8), ORTHO, n), ("n_qubits", "gates")),
    Case("apply_gates(descending)", "dtype", BAD_BOOL, lambda d: apply_gates(np.ones(8), ORTHO, 3, descending=d),
         ("descending",)),
    # parametrisation
    Case("gates_from_params(params) last axis", "shape", st.integers(1, 40).filter(
        lambda p: p not in (1, 6, 28, 120, 496)), lambda p: gates_from_params(np.ones((2, p))), ("params",)),
    Case("gates_from_params(params) scalar", "shape", st.floats(-3, 3), lambda v: gates_from_params(np.float64(v)),
         ("params",)),
    Case("gates_from_params(params) nonfinite", "nonfinite", with_nonfinite((3, 6)), lambda p: gates_from_params(p),
         ("params",)),
    Case("gates_from_params(params) torch nonfinite", "nonfinite", with_nonfinite((3, 6)),
         lambda p: gates_from_params(__import__("torch").tensor(p)), ("params",)),
    Case("gates_from_params(params) dtype", "dtype", NOT_ARRAY, lambda p: gates_from_params(p), ("params",)),
    Case("gates_from_params(complex)", "dtype", BAD_BOOL, lambda c: gates_from_params(np.ones(6), complex=c),
         ("complex",)),
    Case("num_gate_params(k)", "size", st.one_of(non_positive(), NOT_INT, st.integers(17, 10**12)),
         lambda k: num_gate_params(k), ("k",)),
    # encode_mps
    Case("encode_mps(mps)", "dtype", st.one_of(NOT_INT, NOT_ARRAY, st.just(W)), lambda m: encode_mps(m, 1), ("mps",)),
    Case("encode_mps(mps) not qubits", "shape", st.integers(3, 5), lambda p: encode_mps(MPS.random(3, 2, phys=p), 1),
         ("mps",)),
    Case("encode_mps(layers)", "size", BAD_LAYERS, lambda d: encode_mps(PSI, d), ("layers",)),
    Case("encode_mps(method)", "option", unknown(("iterative", "ran", "sweep")),
         lambda m: encode_mps(PSI, 1, method=m), ("method",)),
    Case("encode_mps(sweeps)", "size", st.one_of(negative(), NOT_INT), lambda s: encode_mps(PSI, 1, sweeps=s),
         ("sweeps",)),
    Case("encode_mps(k)", "size", st.one_of(non_positive(), NOT_INT, st.integers(5, 10**9)),
         lambda k: encode_mps(PSI, 1, k=k), ("k",)),
    Case("encode_mps(seed)", "dtype", st.one_of(negative(), NOT_INT), lambda s: encode_mps(PSI, 1, seed=s),
         ("seed",)),
    Case("encode_mps(tol)", "nonfinite", st.one_of(st.floats(max_value=-1e-300), NAN_INF, NOT_REAL),
         lambda t: encode_mps(PSI, 1, tol=t), ("tol",)),
    Case("encode_mps(complex)", "dtype", st.one_of(st.integers(), st.text(max_size=2), st.floats()),
         lambda c: encode_mps(PSI, 1, complex=c), ("complex",)),
    Case("encode_mps zero state", "size", st.integers(2, 5),
         lambda n: encode_mps(MPS([np.zeros((1, 2, 1))] * n), 1), ("norm",)),
    # disentangle
    Case("disentangle(W) dtype", "dtype", st.one_of(NOT_INT, NOT_ARRAY, st.just(PSI)),
         lambda w: disentangle(w, 1, 1, 2), ("W",)),
    Case("disentangle(W) shape", "shape", wrong_shape((4, 4)).filter(lambda a: np.ndim(a) != 2),
         lambda w: disentangle(w, 1, 1, 2), ("W",)),
    Case("disentangle(W) nonfinite", "nonfinite", with_nonfinite((4, 4)), lambda w: disentangle(w, 1, 1, 2), ("W",)),
    Case("disentangle(W) empty", "empty", st.sampled_from([np.zeros((0, 4)), np.zeros((4, 0))]),
         lambda w: disentangle(w, 1, 1, 2), ("W",)),
    Case("disentangle(W) not qubits", "shape", st.integers(3, 5),
         lambda d: disentangle(MPO.random((d, d), (d, d), 2), 1, 1, 2), ("W",)),
    Case("disentangle(out_layers)", "size", BAD_LAYERS, lambda d: disentangle(W, d, 1, 2), ("out_layers",)),
    Case("disentangle(in_layers)", "size", BAD_LAYERS, lambda d: disentangle(W, 1, d, 2), ("in_layers",)),
    Case("disentangle(max_bond)", "size", st.one_of(non_positive(), NOT_INT), lambda b: disentangle(W, 1, 1, b),
         ("max_bond",)),
    Case("disentangle(sweeps)", "size", st.one_of(negative(), NOT_INT), lambda s: disentangle(W, 1, 1, 2, sweeps=s),
         ("sweeps",)),
    Case("disentangle(k)", "size", st.one_of(non_positive(), NOT_INT, st.integers(3, 10**9)),
         lambda k: disentangle(W, 1, 1, 2, k=k), ("k", "layers")),
    Case("disentangle(restarts)", "size", st.one_of(negative(), NOT_INT),
         lambda r: disentangle(W, 1, 1, 2, restarts=r), ("restarts",)),
    Case("disentangle(tol)", "nonfinite",
         st.one_of(st.floats(max_value=-1e-300), NAN_INF, NOT_REAL.filter(lambda v: v is not None)),
         lambda t: disentangle(W, 1, 1, 2, tol=t), ("tol",)),
    Case("disentangle(method)", "option", unknown(("auto", "dense", "mpo", "grow")),
         lambda m: disentangle(W, 1, 1, 2, method=m), ("method",)),
    Case("disentangle(refine)", "size", st.one_of(negative(), NOT_INT), lambda r: disentangle(W, 1, 1, 2, refine=r),
         ("refine",)),
    Case("disentangle(work_bond)", "size", st.one_of(non_positive(), NOT_INT_NOR_NONE),
         lambda b: disentangle(W, 1, 1, 2, work_bond=b), ("work_bond",)),
    Case("Disentangled.to_mpo(max_bond)", "size", st.one_of(non_positive(), NOT_INT_NOR_NONE),
         lambda b: disentangle(W, 0, 0, 2).to_mpo(max_bond=b), ("max_bond",)),
    # ground states
    Case("heisenberg_ground_state(n)", "size", st.one_of(st.integers(-10**6, 1), NOT_INT),
         lambda n: heisenberg_ground_state(n), ("n",)),
    Case("heisenberg_ground_state(n) absurd", "size", HUGE, lambda n: heisenberg_ground_state(n), ("DMRG",)),
    Case("heisenberg_ground_state(n) dense absurd", "size", st.integers(40, 10**18),
         lambda n: heisenberg_ground_state(n, method="dense"), ("Heisenberg", "dmrg")),
    Case("heisenberg_ground_state(max_bond)", "size", st.one_of(non_positive(), NOT_INT_NOR_NONE),
         lambda b: heisenberg_ground_state(4, max_bond=b), ("max_bond",)),
    Case("heisenberg_ground_state(method)", "option", unknown(("auto", "dense", "dmrg")),
         lambda m: heisenberg_ground_state(4, method=m), ("method",)),
    Case("heisenberg_ground_state(seed)", "dtype", st.one_of(negative(), NOT_INT),
         lambda s: heisenberg_ground_state(4, seed=s), ("seed",)),
    Case("ising_ground_state(h)", "nonfinite", st.one_of(st.floats(max_value=0.0), NAN_INF, NOT_REAL),
         lambda h: ising_ground_state(4, h=h), ("h",)),
    Case("ising_ground_state(n) dense absurd", "size", st.integers(40, 10**18),
         lambda n: ising_ground_state(n, method="dense"), ("Ising", "dmrg")),
    # magic-basis gates
    Case("magic_gates(angles) shape", "shape", wrong_shape((2, 6)).filter(lambda a: np.shape(a)[-1:] != (6,)),
         lambda a: magic_gates(a), ("angles",)),
    Case("magic_gates(angles) nonfinite", "nonfinite", with_nonfinite((2, 6)), lambda a: magic_gates(a),
         ("angles",)),
    Case("magic_gates(angles) torch nonfinite", "nonfinite", with_nonfinite((2, 6)),
         lambda a: magic_gates(__import__("torch").tensor(a)), ("angles",)),
    Case("magic_gates(angles) dtype", "dtype", NOT_ARRAY, lambda a: magic_gates(a), ("angles",)),
    Case("magic_gates(dets)", "shape", st.one_of(st.sampled_from([0, 2, -3, 0.5]).map(lambda v: [v, 1]),
                                                 st.just([1, 1, 1]), st.just("ab")),
         lambda d: magic_gates(np.zeros((2, 6)), dets=d), ("dets",)),
    Case("magic_angles(gates) non-orthogonal", "nonortho", NON_ORTHO.map(lambda g: g[0, 0]),
         lambda g: magic_angles(g), ("orthogonal",)),
    Case("magic_angles(gates) shape", "shape", wrong_shape((4, 4)).filter(lambda a: np.shape(a)[-2:] != (4, 4)),
         lambda g: magic_angles(g), ("gates",)),
    # benchmarks
    Case("staircase_benchmark(n)", "size", st.one_of(st.integers(-10**6, 1), NOT_INT),
         lambda n: staircase_benchmark(n=n), ("n",)),
    Case("staircase_benchmark(max_layers)", "size", st.one_of(non_positive(), NOT_INT),
         lambda d: staircase_benchmark(n=4, max_layers=d), ("max_layers",)),
    Case("staircase_benchmark(methods)", "option", st.one_of(
        st.just(()), st.text(max_size=5), st.lists(unknown(("iterative", "ran", "sweep")), min_size=1, max_size=2)),
        lambda m: staircase_benchmark(n=4, max_layers=1, methods=m), ("methods",)),
    Case("staircase_benchmark(k)", "size", st.one_of(non_positive(), st.integers(5, 10**6)),
         lambda k: staircase_benchmark(n=4, max_layers=1, k=k), ("k",)),
    Case("disentangle_benchmark(qubits)", "size", st.one_of(
        st.just(()), st.lists(st.one_of(non_positive(), st.integers(40, 10**9)), min_size=1, max_size=2),
        st.text(max_size=3)), lambda q: disentangle_benchmark(qubits=q), ("qubits",)),
    Case("disentangle_benchmark(bonds)", "size", st.lists(non_positive(), min_size=1, max_size=2),
         lambda b: disentangle_benchmark(qubits=(2,), bonds=b), ("bonds",)),
    Case("disentangle_benchmark(seed)", "dtype", st.one_of(negative(), NOT_INT),
         lambda s: disentangle_benchmark(qubits=(2,), seed=s), ("seed",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
@settings(max_examples=6, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_staircase_refuses_bad_input(case, data):
    case.run(data.draw(case.values, label=case.label))


def _npz(tmp, **fields):
    path = tmp / "c.npz"
    np.savez(path, **fields)
    return path


GOOD_FIELDS = {"format": np.array("qtnn.staircase/1"), "n_qubits": np.array(3), "layers": np.array(2),
               "k": np.array(2), "complex": np.array(False), "descending": np.array(False), "gates": ORTHO}


@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(field=st.sampled_from(sorted(GOOD_FIELDS)), bad=st.sampled_from(
    ["drop", "string", "float", "negative", "nonortho", "shape", "extra"]))
def test_staircase_load_refuses_tampered_files(tmp_path_factory, field, bad):
    """A Staircase file with one field removed, retyped or altered is refused naming the file."""
    fields = dict(GOOD_FIELDS)
    if bad == "drop":
        del fields[field]
    elif bad == "string":
        fields[field] = np.array("x")
    elif bad == "float":
        fields[field] = np.array(2.5)
    elif bad == "negative":
        fields[field] = np.array(-1)
    elif bad == "nonortho":
        fields["gates"] = ORTHO + 1e-3
    elif bad == "shape":
        fields["gates"] = ORTHO[:1]
    else:
        fields["junk"] = np.array(1)
    path = _npz(tmp_path_factory.mktemp("st"), **fields)
    try:
        Staircase.load(path)
    except Exception:
        expect_error("path", lambda: Staircase.load(path), names=(str(path), "gates", "layers", "k", "n_qubits"))
    else:
        pytest.fail(f"a Staircase file with {field!r} changed ({bad}) was accepted")
