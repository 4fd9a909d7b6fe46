"""QuantumStaircase(encoding="staircase") prepares the same states on both backends and reports its fidelity."""

from __future__ import annotations

import pytest
import torch

from qtnn.nn import QuantumStaircase


@pytest.mark.parametrize("readout", ["state", "probs"])
def test_staircase_encoding_is_the_same_on_both_backends(readout):
    torch.manual_seed(0)
    layer = QuantumStaircase(4, 2, encoding="staircase", encoding_layers=1, readout=readout).double()
    x = torch.randn(5, 16, dtype=torch.float64)
    ref = layer(x)
    f_ref = layer.last_encoding_fidelity
    layer.set_backend("pennylane", "default.qubit")
    pl = layer(x)
    f_pl = layer.last_encoding_fidelity
    # a depth-1 encoding of a random 4-qubit vector is approximate: the check is that both
    # backends prepare the *same* approximation (before: 12 vs 4 sweeps, a sign fixed on one only)
    assert f_ref is not None and f_pl is not None
    assert 0.3 < f_ref < 0.999
    assert f_pl == pytest.approx(f_ref, rel=0, abs=1e-12)
    torch.testing.assert_close(pl, ref, rtol=0, atol=1e-10)


def test_encoding_fidelity_is_none_for_exact_amplitude_encoding():
    layer = QuantumStaircase(3, 1).double()
    layer(torch.randn(2, 8, dtype=torch.float64))
    assert layer.last_encoding_fidelity is None
    layer.set_backend("pennylane", "default.qubit")
    layer(torch.randn(2, 8, dtype=torch.float64))
    assert layer.last_encoding_fidelity is None
