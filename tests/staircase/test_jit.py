"""The compiled staircase kernels against numpy references (qtnn.staircase.magic, apply_gates)."""

import math

import numpy as np
import pytest

from qtnn.staircase import _jit, apply_gates
from qtnn.staircase.magic import magic_gates


def test_build_gates_equals_magic_gates_and_shifted_copies():
    rng = np.random.default_rng(0)
    angles = rng.uniform(-7, 7, size=(9, 6))
    dets = np.where(rng.random(9) < 0.5, -1.0, 1.0)
    both = _jit.build_gates(angles, dets, True)
    np.testing.assert_allclose(both[:, 0], magic_gates(angles, dets), rtol=0, atol=1e-14)
    for k in range(6):
        shifted = angles.copy()
        shifted[:, k] += math.pi
        np.testing.assert_allclose(both[:, 1 + k], magic_gates(shifted, dets), rtol=0, atol=1e-14)
    np.testing.assert_array_equal(_jit.build_gates(angles, dets, False)[:, 0], both[:, 0])


@pytest.mark.parametrize("n,batch", [(2, 1), (3, 5), (9, 67), (12, 3)])
def test_forward_equals_apply_gates(n, batch):
    # (9, 67): chunks of 64 rows and a partial one; (12, 3): 8 rows per chunk
    rng = np.random.default_rng(n)
    layers = 2
    angles = rng.uniform(0, 2 * math.pi, size=(layers * (n - 1), 6))
    dets = np.where(rng.random(layers * (n - 1)) < 0.3, -1.0, 1.0)
    pos = np.tile(np.arange(n - 1), layers).astype(np.int64)
    x = rng.normal(size=(batch, 2**n))
    ref = apply_gates(x, magic_gates(angles, dets).reshape(layers, n - 1, 4, 4), n)
    out, _, r2, status = _jit.staircase_forward(x, angles, dets, pos, False, n, _jit.MODE_STATE)
    assert status == 0
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(r2, (x**2).sum(1), rtol=1e-14, atol=0)
    probs, *_ = _jit.staircase_forward(x, angles, dets, pos, False, n, _jit.MODE_PROBS)
    np.testing.assert_allclose(probs, ref**2 / (x**2).sum(1, keepdims=True), rtol=0, atol=1e-14)


def test_status_bits():
    pos = np.zeros(1, dtype=np.int64)
    x = np.array([[1.0, 0, 0, 0], [0, 0, 0, 0]])
    bad = np.array([[0, 0, np.inf, 0, 0, 0]], dtype=float)
    assert _jit.staircase_forward(x, bad, np.ones(1), pos, False, 2, 0)[3] == _jit.BAD_ANGLES
    assert _jit.staircase_forward(x, np.zeros((1, 6)), np.ones(1), pos, False, 2, 0)[3] == _jit.ZERO_ROW


def test_backward_leaves_the_saved_state_alone():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 16))
    a = rng.normal(size=(3, 6))
    pos = np.arange(3, dtype=np.int64)
    out, state, r2, _ = _jit.staircase_forward(x, a, np.ones(3), pos, False, 4, 1)
    keep = state.copy()
    first = _jit.staircase_backward(np.ones_like(out), state, r2, x, a, np.ones(3), pos, False, 4, 1,
                                    True, True)
    second = _jit.staircase_backward(np.ones_like(out), state, r2, x, a, np.ones(3), pos, False, 4, 1,
                                     True, True)
    np.testing.assert_array_equal(state, keep)
    for f, s in zip(first, second, strict=True):
        np.testing.assert_array_equal(f, s)


def test_falls_back_to_uncached_compilation(monkeypatch):
    calls = []

    def fake_njit(**options):
        calls.append(options["cache"])
        if options["cache"]:
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x.py'")
        return lambda fn: fn

    monkeypatch.setattr(_jit, "njit", fake_njit)

    @_jit._compiled()
    def f(v):
        return v + 1

    assert f(1) == 2
    assert calls == [True, False]


@pytest.mark.parametrize("mode", [_jit.MODE_STATE, _jit.MODE_PROBS])
@pytest.mark.parametrize("transpose", [False, True])
def test_threaded_calls_equal_the_serial_ones_bit_for_bit(monkeypatch, mode, transpose):
    # 12 qubits, 37 rows: chunks of 8 rows, the last one partial
    rng = np.random.default_rng(3)
    n, batch, m = 12, 37, 22
    angles = rng.uniform(-4, 4, size=(m, 6))
    dets = np.where(rng.random(m) < 0.5, -1.0, 1.0)
    pos = np.tile(np.arange(n - 1), 2).astype(np.int64)
    x = rng.normal(size=(batch, 2**n))
    assert 2**n * 8 == _jit.CHUNK_ENTRIES
    gy = rng.normal(size=(batch, 2**n))

    def run():
        out, state, r2, status = _jit.staircase_forward(x, angles, dets, pos, transpose, n, mode)
        grads = _jit.staircase_backward(gy, state, r2, x, angles, dets, pos, transpose, n, mode,
                                        True, True)
        return out, state, r2, status, *grads

    monkeypatch.setattr(_jit, "PARALLEL_MIN_WORK", 0)
    monkeypatch.setattr(_jit, "QUIET_MIN_WORK", 0)
    _jit.set_kernel_threads(1)
    try:
        serial = run()
        _jit.set_kernel_threads(3)
        threaded = run()
    finally:
        _jit.set_kernel_threads(None)
    assert serial[3] == threaded[3] == 0
    for s, t in zip(serial, threaded, strict=True):
        np.testing.assert_array_equal(s, t)


def test_set_kernel_threads_validates():
    from qtnn.errors import QtnnError

    with pytest.raises(QtnnError, match="threads"):
        _jit.set_kernel_threads(0)
    assert _jit.kernel_threads() >= 1
