"""Issue 15: the moved modules still resolve (with a warning), and the smells found in the review stay fixed."""

from __future__ import annotations

import importlib
import math
import warnings

import pytest
import torch
from torch import nn

import qtnn
from qtnn import QtnnError


@pytest.mark.parametrize("old, name, home", [
    ("qtnn.train", "HybridConfig", "qtnn.apps.digits"),
    ("qtnn.train", "train_model", "qtnn.apps.loop"),
    ("qtnn.train", "run_train", "qtnn.apps.train"),
    ("qtnn.demo", "load_digits_split", "qtnn.apps.digits"),
    ("qtnn.distributed", "train_ddp", "qtnn.apps.distributed"),
    ("qtnn.bench", "format_table", "qtnn.apps.bench"),
    ("qtnn.lm", "corpus_windows", "qtnn.apps.lm"),
    ("qtnn.lm", "heal", "qtnn.compress.llm"),
])
def test_moved_names_forward_with_a_deprecation_warning(old, name, home):
    mod = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved to {home}\.{name}"):
        obj = getattr(mod, name)
    assert obj is getattr(importlib.import_module(home), name)


def test_moved_alias_unknown_name_says_where_things_went():
    import qtnn.lm

    with pytest.raises(AttributeError, match="qtnn.apps.lm"):
        qtnn.lm.no_such_name  # noqa: B018


def test_names_moved_out_of_compress_say_where():
    with pytest.raises(AttributeError, match=r"qtnn\.apps\.models\.save_compressed"):
        qtnn.compress.save_compressed  # noqa: B018


def test_compress_is_still_callable():
    net = nn.Sequential(nn.Linear(8, 8)).double()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small, reports = qtnn.compress(net, "0", max_bond=1, progress=False)
    assert reports[0].params_after < reports[0].params_before


@pytest.mark.parametrize("tol", [math.inf, -1.0, math.nan])
def test_compress_refuses_a_tolerance_that_is_not_finite_and_nonnegative(tol):
    net = nn.Sequential(nn.Linear(8, 8)).double()
    with pytest.raises(QtnnError, match=r"tol must be a (finite )?real number"):
        qtnn.compress(net, "0", method="disentangle", max_bond=1, layers=1, tol=tol, progress=False)


def test_compression_demo_with_zero_epochs_keeps_the_weights():
    from qtnn.apps.demo import run_compression_demo

    r = run_compression_demo(hidden=16, bonds=(2,), epochs=0, finetune_epochs=0, progress=False)
    row = r["rows"][0]
    assert row["bond"] == 2
    # without training the dense model guesses: about 10% on 10 classes (450 test digits)
    assert 0.0 <= r["dense"]["accuracy"] <= 0.3


def test_cp_conv_needs_no_extra():
    """tensorly (CPConv2d.from_conv's CP-ALS) is a dependency of qtnn itself, not of an extra."""
    import pathlib
    import tomllib

    pyproject = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    assert any(d.startswith("tensorly") for d in deps), deps
    from qtnn.nn import CPConv2d

    conv = nn.Conv2d(3, 4, 3).double()
    torch.manual_seed(0)
    layer = CPConv2d.from_conv(conv, rank=2)
    assert layer(torch.randn(1, 3, 6, 6, dtype=torch.float64)).shape == (1, 4, 4, 4)
