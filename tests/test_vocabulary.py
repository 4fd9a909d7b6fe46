"""Issue 15: one vocabulary. The new names work; the old ones still do, with a DeprecationWarning, for one release."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from qtnn import QtnnTypeError
from qtnn.apps.digits import HybridConfig
from qtnn.nn import CPConv2d, MPOLinear, QuantumStaircase, TuckerConv2d


def test_mpo_linear_max_bond_and_the_old_bond_dim():
    a = MPOLinear(32, 16, max_bond=3)
    with pytest.warns(DeprecationWarning, match=r"MPOLinear: bond_dim= is deprecated, use max_bond="):
        b = MPOLinear(32, 16, bond_dim=3)
    assert a.bond_dims == b.bond_dims
    with pytest.raises(QtnnTypeError, match="give max_bond= only"):
        MPOLinear(32, 16, max_bond=3, bond_dim=3)


def test_hybrid_config_reads_old_checkpoint_configs():
    with pytest.warns(DeprecationWarning, match="HybridConfig: bond_dim= is deprecated"):
        c = HybridConfig(bond_dim=5)
    assert c.max_bond == 5
    from dataclasses import asdict

    assert "bond_dim" not in asdict(c) and asdict(c)["max_bond"] == 5


def test_quantum_device_is_qdevice():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer = QuantumStaircase(2, 1, backend="pennylane", qdevice="default.qubit")
    assert layer.qdevice.name == "default.qubit"
    with pytest.warns(DeprecationWarning, match=r"QuantumStaircase: device= is deprecated, use qdevice="):
        QuantumStaircase(2, 1, backend="pennylane", device="default.qubit")
    with pytest.warns(DeprecationWarning, match=r"set_backend: device= is deprecated"):
        layer.set_backend("pennylane", device="default.qubit")


def test_conv_iterations_are_max_iter():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3).double()
    a = TuckerConv2d.from_conv(conv, ranks=2, max_iter=3)
    with pytest.warns(DeprecationWarning, match="n_iter= is deprecated, use max_iter="):
        b = TuckerConv2d.from_conv(conv, ranks=2, n_iter=3)
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    c = CPConv2d.from_conv(conv, rank=2, max_iter=5)
    with pytest.warns(DeprecationWarning, match="n_iter_max= is deprecated, use max_iter="):
        d = CPConv2d.from_conv(conv, rank=2, n_iter_max=5)
    torch.testing.assert_close(c(x), d(x), rtol=0, atol=0)


def test_template_shape_follows_pennylane():
    import pennylane as qml

    from qtnn.quantum import StaircaseTemplate

    assert StaircaseTemplate.shape(2, 4) == (2, 3, 6)
    assert qml.StronglyEntanglingLayers.shape(2, 4)[0] == StaircaseTemplate.shape(2, 4)[0]


def test_cli_max_bond_and_the_old_flag(capsys):
    from qtnn.cli import build_parser

    p = build_parser()
    assert p.parse_args(["train", "--max-bond", "3"]).max_bond == 3
    assert p.parse_args(["train", "--bond", "3"]).max_bond == 3
    assert "--bond is deprecated, use --max-bond" in capsys.readouterr().err
    assert p.parse_args(["compress", "m", "--max-bond", "2"]).max_bond == 2


def test_every_repr_names_shape_bond_qubits_and_backend():
    from qtnn.nn import DisentangledLinear, QuantumHead

    assert "max_bond=2" in repr(DisentangledLinear(16, 8, 1, 1, 2)) and "backend='reference'" in repr(
        DisentangledLinear(16, 8, 1, 1, 2))
    text = repr(QuantumStaircase(3, 1, backend="pennylane", qdevice="default.qubit"))
    assert "n_qubits=3" in text and "in_features=8" in text and "qdevice='default.qubit'" in text
    assert "n_classes=10" in repr(QuantumHead(16, 4, 2, 10))
    assert "bond_dims=[4]" in repr(MPOLinear(64, 32, 4))
