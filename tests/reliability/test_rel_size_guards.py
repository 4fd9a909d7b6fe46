"""Memory and size guards: work that would not fit is refused up front, saying how much it would
need and what to use instead; nothing is allocated first."""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest
import torch

from qtnn import QtnnError, QtnnSizeError
from qtnn.nn import MPOLinear, TuckerConv2d
from qtnn.quantum import device
from qtnn.staircase import Staircase, apply_gates, disentangle, heisenberg_ground_state, ising_ground_state
from qtnn.tn import MPO, MPS

# (what, call, words of the message: the object, and the alternative offered)
GUARDS = [
    ("state-vector device", lambda: device("default.qubit", wires=40),
     "a 40-qubit state vector would need 16.0 TiB", "use fewer qubits or the MPS path"),
    ("qiskit.aer statevector", lambda: device("qiskit.aer", wires=36),
     "a 36-qubit state vector would need 1.0 TiB", "use fewer qubits or the MPS path"),
    ("dense circuit state", lambda: Staircase(40, 1).state(),
     "a dense state on 40 qubits would need", "use state_mps()"),
    ("dense MPS", lambda: MPS.random(40, 2).to_dense(),
     "a dense vector of 1099511627776 entries would need 8.0 TiB", "keep the state as an MPS"),
    ("dense MPO", lambda: MPO.random((2,) * 20, (2,) * 20, 2).to_dense(),
     "a dense 1048576 x 1048576 matrix would need 8.0 TiB", "use MPO.apply"),
    ("dense batch of states", lambda: apply_gates(torch.zeros(1).expand(10**6, 2**20),
                                                  Staircase.random(20, 1).gates, 20),
     "a dense batch of 1000000 states on 20 qubits would need", "apply the circuit to an MPS"),
    ("exact ground state", lambda: heisenberg_ground_state(40, method="dense"),
     "the Heisenberg ground state on 40 qubits would need", "use method='dmrg'"),
    ("exact Ising ground state", lambda: ising_ground_state(60, method="dense"),
     "the Ising ground state on 60 qubits would need", "use method='dmrg'"),
    ("DMRG environments", lambda: heisenberg_ground_state(10**7),
     "DMRG for the heisenberg ground state on 10000000 qubits at bond 64 would need", "smaller n or max_bond"),
    ("dense disentangling path", lambda: disentangle(MPO.random((2,) * 16, (2,) * 16, 2), 1, 1, 2, method="dense"),
     "the dense path on 16+16 qubits would need 192.0 GiB", 'use method="mpo"'),
    ("random MPS", lambda: MPS.random(100, 10**5),
     "a random MPS of 100 sites, bond 100000 would need", "use a smaller n or bond"),
    ("random MPO", lambda: MPO.random((4,) * 20, (4,) * 20, 10**5),
     "a random MPO of 20 sites, bond 100000 would need", "use a smaller bond"),
    ("padded TT-SVD input", lambda: MPO.from_dense(np.ones((4, 4)), out_dims=[10**5, 10**5], in_dims=[10**5, 10**5]),
     "the padded 10000000000 x 10000000000 matrix", "choose dims whose products are close to the shape of W"),
    ("staircase gates", lambda: Staircase(30, 10**7),
     "the gates of a staircase of 10000000 layers of 2-qubit gates on 30 qubits would need 69.1 GiB",
     "use fewer layers, qubits or a smaller k"),
    ("MPOLinear cores", lambda: MPOLinear(10**6, 10**6, 10**4),
     "the cores of an MPOLinear(1000000, 1000000, max_bond=10000) would need 62.1 GiB",
     "use a smaller max_bond or fewer features"),
    ("Tucker convolution", lambda: TuckerConv2d(10**6, 10**6, 3, ranks=(10**6, 10**6)),
     "TuckerConv2d parameters would need", ""),
]


@pytest.mark.parametrize("what,call,need,alternative", GUARDS, ids=[g[0] for g in GUARDS])
def test_too_large_is_refused_with_size_and_alternative(what, call, need, alternative):
    with pytest.raises(QtnnSizeError) as info:
        call()
    msg = str(info.value)
    assert need in msg, msg
    assert alternative in msg, msg
    assert re.search(r"would need [\d.]+ [KMGTP]?i?B|would need more than 1e300 B", msg), msg
    assert "more than the limit of 4.0 GiB (set QTNN_MAX_BYTES to change it)" in msg


def test_refused_before_allocating(monkeypatch):
    """The refusal comes before the allocation: tracemalloc sees no large block."""
    monkeypatch.setenv("QTNN_MAX_BYTES", str(64 * 1024**2))
    tracemalloc.start()
    try:
        for call in (lambda: MPO.from_dense(np.ones((4, 4)), out_dims=[3000, 3000], in_dims=[1000, 1]),
                     lambda: Staircase(24, 1).state(),
                     lambda: MPS.random(24, 2).to_dense()):
            with pytest.raises(QtnnSizeError):
                call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024**2, f"{peak / 1024**2:.1f} MiB were allocated before the refusal"


def test_the_limit_is_set_by_the_environment(monkeypatch):
    psi = MPS.random(8, 2)
    monkeypatch.setenv("QTNN_MAX_BYTES", "1000")
    with pytest.raises(QtnnSizeError, match=r"a dense vector of 256 entries would need 2.0 KiB, more than the "
                                            r"limit of 1000 B"):
        psi.to_dense()
    monkeypatch.setenv("QTNN_MAX_BYTES", "lots")
    with pytest.raises(QtnnError, match="QTNN_MAX_BYTES must be an integer number of bytes, got 'lots'"):
        psi.to_dense()
    monkeypatch.setenv("QTNN_MAX_BYTES", str(10**9))
    assert MPS.random(8, 2).to_dense().shape == (256,)


def test_sizes_that_would_never_finish_are_refused_fast():
    """Absurd sizes are refused in milliseconds, without forming 2**n or looping n times."""
    import time

    from qtnn.analysis import qsd_cx_count
    from qtnn.tn import balanced_dims

    t0 = time.perf_counter()
    for call in (lambda: Staircase(2**30, 0).state(), lambda: MPS.random(10**15, 2),
                 lambda: balanced_dims(6, 2**40), lambda: MPS.from_dense(np.ones(6), dims=10**12),
                 lambda: qsd_cx_count(10**9), lambda: heisenberg_ground_state(10**12, method="dense"),
                 lambda: Staircase(2**33, 0)):
        with pytest.raises(QtnnError):
            call()
    assert time.perf_counter() - t0 < 2.0


def test_long_trains_are_normalised_without_overflow():
    """A random MPS of thousands of sites used to come back as NaN (its norm overflowed)."""
    psi = MPS.random(3000, 8, seed=0)
    assert all(np.isfinite(c).all() for c in psi.cores)
    assert abs(psi.norm() - 1.0) < 1e-12
    big = MPS([np.full((1, 2, 1), 1e200)] * 10)
    assert big.norm() == np.inf and abs(big.normalize().norm() - 1.0) < 1e-12
