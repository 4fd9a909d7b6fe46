"""Generated bad input for ``qtnn.tn``: every public function and class refuses it with a QtnnError
whose message names the argument."""

from __future__ import annotations

import numpy as np
import pytest
from _harness import (
    ABSURD,
    HUGE,
    NAN_INF,
    NOT_ARRAY,
    NOT_INT,
    NOT_INT_NOR_NONE,
    NOT_REAL,
    Case,
    negative,
    non_positive,
    path_names,
    unknown,
    with_nonfinite,
    wrong_shape,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from qtnn.tn import (
    MPO,
    MPS,
    balanced_dims,
    load_tt,
    mpo_apply_cost,
    mpo_apply_expression,
    qubit_dims,
    save_tt,
    tt_svd,
)
from qtnn.tn.contract import plan_mpo_apply

PSI = MPS.random(4, 2, seed=0)
W = MPO.random((2, 2), (2, 2), 2, seed=0)
GOOD_SHAPES = [(1, 2, 2, 2), (2, 2, 2, 1)]

#: Bad dims sequences: empty, zero / negative / non-integer entries, not a sequence.
BAD_DIMS = st.one_of(
    st.just(()), st.just([]),
    st.lists(non_positive(-5), min_size=1, max_size=3),
    st.lists(st.floats(0.5, 3.5).filter(lambda f: f != int(f)), min_size=1, max_size=3),
    st.text(min_size=1, max_size=3), st.just({2: 2}), st.just(np.float64(2.5)),
)
BAD_BOND = st.one_of(non_positive(), NOT_INT_NOR_NONE)
BAD_CUTOFF = st.one_of(st.floats(max_value=-1e-12), st.floats(min_value=1.0), NAN_INF, NOT_REAL.filter(
    lambda v: v is not None))
BAD_SEED = st.one_of(negative(), NOT_INT_NOR_NONE)


CASES = [
    # MPS
    Case("MPS(cores)", "dtype", st.one_of(NOT_INT, NOT_ARRAY), lambda v: MPS(v), ("cores",)),
    Case("MPS(cores) legs", "shape", st.lists(st.integers(1, 3), min_size=1, max_size=5).filter(
        lambda s: len(s) != 3).map(lambda s: [np.ones(s)]), lambda v: MPS(v), ("cores",)),
    Case("MPS(cores) bonds", "shape", st.integers(2, 4), lambda b: MPS([np.ones((1, 2, b)), np.ones((b + 1, 2, 1))]),
         ("bond",)),
    Case("MPS(cores) nonfinite", "nonfinite", with_nonfinite((1, 2, 1)), lambda a: MPS([a]), ("cores[0]",)),
    Case("MPS(cores) empty", "empty", st.sampled_from([[], (), [np.ones((1, 0, 1))]]), lambda v: MPS(v),
         ("cores",)),
    Case("MPS(size)", "size", st.one_of(non_positive(), ABSURD, NOT_INT_NOR_NONE),
         lambda v: MPS([np.ones((1, 2, 1))], size=v), ("size",)),
    Case("MPS.from_dense(psi) nonfinite", "nonfinite", with_nonfinite((6,)), lambda a: MPS.from_dense(a), ("psi",)),
    Case("MPS.from_dense(psi) shape", "shape", wrong_shape((6,)).filter(lambda a: np.ndim(a) != 1),
         lambda a: MPS.from_dense(a), ("psi",)),
    Case("MPS.from_dense(psi) dtype", "dtype", NOT_ARRAY, lambda a: MPS.from_dense(a), ("psi",)),
    Case("MPS.from_dense(psi) empty", "empty", st.sampled_from([[], np.zeros(0)]), lambda a: MPS.from_dense(a),
         ("psi",)),
    Case("MPS.from_dense(dims)", "size", BAD_DIMS.filter(lambda v: not isinstance(v, str) or True),
         lambda d: MPS.from_dense(np.ones(6), dims=d), ("dims",)),
    Case("MPS.from_dense(dims) too small", "shape", st.lists(st.integers(1, 2), min_size=1, max_size=2),
         lambda d: MPS.from_dense(np.ones(6), dims=d), ("dims",)),
    Case("MPS.from_dense(dims) absurd", "size", st.one_of(ABSURD, st.lists(ABSURD, min_size=2, max_size=3)),
         lambda d: MPS.from_dense(np.ones(6), dims=d), ("dims",)),
    Case("MPS.from_dense(max_bond)", "size", BAD_BOND, lambda b: MPS.from_dense(np.ones(8), max_bond=b),
         ("max_bond",)),
    Case("MPS.from_dense(cutoff)", "nonfinite", BAD_CUTOFF, lambda c: MPS.from_dense(np.ones(8), cutoff=c),
         ("cutoff",)),
    Case("MPS.product_state(bits)", "dtype", st.one_of(st.integers(), st.text(min_size=1, max_size=3),
                                                         st.lists(NOT_INT_NOR_NONE, min_size=1, max_size=2)),
         lambda b: MPS.product_state(b), ("bits",)),
    Case("MPS.product_state(bits) range", "size", st.lists(st.integers(2, 9), min_size=1, max_size=3),
         lambda b: MPS.product_state(b), ("bits",)),
    Case("MPS.product_state(dims)", "shape", st.integers(1, 4).filter(lambda n: n != 2),
         lambda n: MPS.product_state([0, 1], dims=[2] * n), ("dims",)),
    Case("MPS.random(n)", "size", st.one_of(non_positive(), NOT_INT), lambda n: MPS.random(n, 2), ("n",)),
    Case("MPS.random(n) absurd", "size", HUGE, lambda n: MPS.random(n, 2), ("MPS", "n")),
    Case("MPS.random(bond)", "size", st.one_of(non_positive(), NOT_INT), lambda b: MPS.random(4, b), ("bond",)),
    Case("MPS.random(bond) absurd", "size", ABSURD, lambda b: MPS.random(80, b), ("bond",)),
    Case("MPS.random(phys)", "size", st.one_of(non_positive(), NOT_INT), lambda p: MPS.random(3, 2, phys=p),
         ("phys",)),
    Case("MPS.random(seed)", "dtype", BAD_SEED, lambda s: MPS.random(3, 2, seed=s), ("seed",)),
    Case("MPS.overlap(other)", "dtype", st.one_of(NOT_INT, NOT_ARRAY, st.just(W)), lambda o: PSI.overlap(o),
         ("other",)),
    Case("MPS.overlap(other) dims", "shape", st.integers(2, 6).filter(lambda n: n != 4),
         lambda n: PSI.overlap(MPS.random(n, 2)), ("phys dims",)),
    Case("MPS.normalize zero", "size", st.integers(1, 4), lambda n: MPS([np.zeros((1, 2, 1))] * n).normalize(),
         ("norm is 0",)),
    # TensorTrain methods
    Case("canonicalize(center)", "size", st.one_of(st.integers(4, 10**9), st.integers(-10**9, -5), NOT_INT),
         lambda c: PSI.copy().canonicalize(c), ("center",)),
    Case("truncate(max_bond)", "size", BAD_BOND, lambda b: PSI.copy().truncate(max_bond=b), ("max_bond",)),
    Case("truncate(cutoff)", "nonfinite", BAD_CUTOFF, lambda c: PSI.copy().truncate(cutoff=c), ("cutoff",)),
    Case("entropies(base)", "nonfinite", st.one_of(st.floats(max_value=0.0), st.just(1.0), st.just(1), NAN_INF,
                                                    NOT_REAL),
         lambda b: PSI.entropies(base=b), ("base",)),
    # MPO
    Case("MPO(cores) legs", "shape", st.lists(st.integers(1, 3), min_size=1, max_size=5).filter(
        lambda s: len(s) != 4).map(lambda s: [np.ones(s)]), lambda v: MPO(v), ("cores",)),
    Case("MPO(shape)", "shape", st.one_of(st.tuples(st.integers(5, 10**6), st.integers(1, 4)),
                                           st.tuples(st.integers(-5, 0), st.integers(1, 4)),
                                           st.text(max_size=3), st.just((1, 2, 3)), st.integers()),
         lambda s: MPO(W.cores, shape=s), ("shape",)),
    Case("MPO.from_dense(W) shape", "shape", wrong_shape((4, 4)).filter(lambda a: np.ndim(a) != 2),
         lambda a: MPO.from_dense(a), ("W",)),
    Case("MPO.from_dense(W) nonfinite", "nonfinite", with_nonfinite((3, 5)), lambda a: MPO.from_dense(a), ("W",)),
    Case("MPO.from_dense(W) dtype", "dtype", NOT_ARRAY, lambda a: MPO.from_dense(a), ("W",)),
    Case("MPO.from_dense(W) empty", "empty", st.sampled_from([np.zeros((0, 4)), np.zeros((3, 0)), [[]]]),
         lambda a: MPO.from_dense(a), ("W",)),
    Case("MPO.from_dense(out_dims)", "size", BAD_DIMS, lambda d: MPO.from_dense(np.ones((4, 4)), out_dims=d),
         ("out_dims", "dims")),
    Case("MPO.from_dense(in_dims) absurd", "size", st.one_of(ABSURD, st.lists(ABSURD, min_size=2, max_size=2)),
         lambda d: MPO.from_dense(np.ones((4, 4)), out_dims=[2, 2], in_dims=d), ("in_dims", "dims")),
    Case("MPO.from_dense(out_dims/in_dims) mismatch", "shape", st.integers(1, 3),
         lambda k: MPO.from_dense(np.ones((4, 4)), out_dims=[4] + [1] * k, in_dims=[4]), ("out_dims",)),
    Case("MPO.from_dense(max_bond)", "size", BAD_BOND, lambda b: MPO.from_dense(np.ones((4, 4)), max_bond=b),
         ("max_bond",)),
    Case("MPO.from_dense(cutoff)", "nonfinite", BAD_CUTOFF,
         lambda c: MPO.from_dense(np.ones((4, 4)), cutoff=c), ("cutoff",)),
    Case("MPO.identity(dims)", "size", st.one_of(BAD_DIMS, st.integers(), st.lists(ABSURD, min_size=1,
                                                                                      max_size=2)),
         lambda d: MPO.identity(d), ("dims", "identity")),
    Case("MPO.random(out_dims)", "size", st.one_of(BAD_DIMS, st.integers()),
         lambda d: MPO.random(d, (2, 2), 2), ("out_dims",)),
    Case("MPO.random(in_dims) length", "shape", st.integers(1, 5).filter(lambda n: n != 2),
         lambda n: MPO.random((2, 2), (2,) * n, 2), ("in_dims",)),
    Case("MPO.random(bond)", "size", st.one_of(non_positive(), NOT_INT), lambda b: MPO.random((2,), (2,), b),
         ("bond",)),
    Case("MPO.random(bond) absurd", "size", ABSURD, lambda b: MPO.random((4,) * 30, (4,) * 30, b),
         ("MPO", "bond")),
    Case("MPO.random(seed)", "dtype", BAD_SEED, lambda s: MPO.random((2,), (2,), 1, seed=s), ("seed",)),
    Case("MPO.apply(x) shape", "shape", wrong_shape((3, 4)).filter(lambda a: np.shape(a)[-1:] != (4,)),
         lambda a: W.apply(a), ("x",)),
    Case("MPO.apply(x) nonfinite", "nonfinite", with_nonfinite((2, 4)), lambda a: W.apply(a), ("x",)),
    Case("MPO.apply(x) torch nonfinite", "nonfinite", with_nonfinite((2, 4)),
         lambda a: W.apply(__import__("torch").tensor(a)), ("x",)),
    Case("MPO.apply(x) torch int", "dtype", st.integers(1, 3),
         lambda b: W.apply(__import__("torch").ones(b, 4, dtype=__import__("torch").int64)), ("x",)),
    Case("MPO.apply(x) dtype", "dtype", NOT_ARRAY, lambda a: W.apply(a), ("x",)),
    Case("MPO.dot(other)", "dtype", st.one_of(NOT_INT, NOT_ARRAY), lambda o: W.dot(o), ("other",)),
    Case("MPO.dot(other) dims", "shape", st.integers(3, 5), lambda n: W.dot(MPS.random(n, 2)), ("dims",)),
    Case("MPO.dot(max_bond)", "size", BAD_BOND, lambda b: W.dot(W, max_bond=b), ("max_bond",)),
    # functions
    Case("tt_svd(tensor)", "nonfinite", with_nonfinite((8,)), lambda a: tt_svd(a, (2, 2, 2)), ("tensor",)),
    Case("tt_svd(tensor) dtype", "dtype", NOT_ARRAY, lambda a: tt_svd(a, (2, 2)), ("tensor",)),
    Case("tt_svd(dims)", "size", BAD_DIMS, lambda d: tt_svd(np.ones(4), d), ("dims",)),
    Case("tt_svd(dims) mismatch", "shape", st.lists(st.integers(1, 5), min_size=1, max_size=3).filter(
        lambda d: int(np.prod(d)) != 8), lambda d: tt_svd(np.ones(8), d), ("dims",)),
    Case("tt_svd(max_bond)", "size", BAD_BOND, lambda b: tt_svd(np.ones(4), (2, 2), max_bond=b), ("max_bond",)),
    Case("balanced_dims(n)", "size", st.one_of(non_positive(), NOT_INT, st.integers(2**40 + 1, 10**18)),
         lambda n: balanced_dims(n, 2), ("size",)),
    Case("balanced_dims(num_cores)", "size", st.one_of(non_positive(), NOT_INT, st.integers(41, 10**12)),
         lambda k: balanced_dims(1000, k), ("num_cores",)),
    Case("balanced_dims(max_ratio)", "nonfinite", st.one_of(st.floats(max_value=0.999), NAN_INF, NOT_REAL),
         lambda r: balanced_dims(1000, 2, r), ("max_ratio",)),
    Case("qubit_dims(n)", "size", st.one_of(non_positive(), NOT_INT), lambda n: qubit_dims(n), ("size",)),
    Case("mpo_apply_cost(core_shapes)", "shape", st.one_of(
        st.just([]), st.lists(st.lists(st.integers(-2, 3), min_size=4, max_size=4), min_size=1, max_size=3),
        st.just([(1, 2, 2, 3)]), st.just([(2, 2, 2, 1)]), st.just("abcd"), NOT_INT),
        lambda c: mpo_apply_cost((3, 2), c), ("core_shapes",)),
    Case("mpo_apply_cost(x_shape)", "shape", st.one_of(
        st.lists(st.integers(-3, 5), min_size=0, max_size=4).filter(lambda x: list(x) != [3, 2, 2]),
        st.text(max_size=3), NOT_INT), lambda x: mpo_apply_cost(x, GOOD_SHAPES), ("x_shape",)),
    Case("mpo_apply_expression(x_shape)", "shape", st.lists(st.integers(-3, 5), min_size=0, max_size=4).filter(
        lambda x: len(x) != 3 or x[0] < 0 or x[1:] != [2, 2]), lambda x: mpo_apply_expression(x, GOOD_SHAPES),
        ("x_shape",)),
    Case("plan_mpo_apply(batch)", "size", st.one_of(negative(), NOT_INT), lambda b: plan_mpo_apply(b, GOOD_SHAPES),
         ("batch",)),
    Case("save_tt(tt)", "dtype", st.one_of(NOT_INT, NOT_ARRAY), lambda t: save_tt(t, "/tmp/never-written.npz"),
         ("tt",)),
    Case("save_tt(path)", "path", st.one_of(st.integers(), st.none(), st.just(b"x.npz"), st.just(""),
                                            st.just("a\x00b"), st.just("/"), st.just("/etc/passwd/x.npz")),
         lambda p: save_tt(PSI, p), path_names("path")),
    Case("load_tt(kind)", "option", unknown(("mps", "mpo")).filter(lambda v: v is not None),
         lambda k: load_tt("/tmp/never-read.npz", kind=k), ("kind",)),
    Case("load_tt(path)", "path", st.one_of(st.integers(), st.just("/nonexistent/x.npz"), st.just("/"),
                                            st.just("")), lambda p: load_tt(p), path_names("path")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
@settings(max_examples=8, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_tn_refuses_bad_input(case, data):
    case.run(data.draw(case.values, label=case.label))


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(raw=st.binary(max_size=200), seed=st.integers(0, 3))
def test_load_tt_refuses_corrupt_files(tmp_path_factory, raw, seed):
    """Truncated, bit-flipped and foreign files: a QtnnError naming the file, never a crash."""
    from _harness import expect_error

    d = tmp_path_factory.mktemp("tt")
    good = d / "good.npz"
    save_tt(MPS.random(4, 2, seed=seed), good)
    blob = good.read_bytes()
    for i, bad in enumerate([raw, blob[: len(blob) // (2 + seed)], blob[:40] + raw + blob[40 + len(raw):]]):
        p = d / f"bad{i}.npz"
        p.write_bytes(bad)
        try:
            back = load_tt(p)
        except Exception:
            expect_error("path", lambda p=p: load_tt(p), names=(str(p),))
        else:  # a flip that kept the archive valid must give a valid, checked train
            back.check()
