"""examples/depth_study.py runs (small range) and shows linear vs exponential growth."""

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("qiskit_ibm_runtime")

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "depth_study.py"


def test_depth_study_small(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("depth_study", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--out", str(tmp_path), "--min-n", "4", "--max-n", "6", "--max-layers", "2"]) == 0
    res = json.loads((tmp_path / "depth_study.json").read_text())
    assert (tmp_path / "depth_study.png").read_bytes()[:4] == b"\x89PNG"
    st = [r for r in res["staircase"] if r["backend"] == "fake:torino" and r["layers"] == 2]
    dense = [r for r in res["dense"] if r["backend"] == "fake:torino"]
    assert all(r["swaps"] == 0 and r["on_line"] for r in res["staircase"])
    # staircase: at most 3 two-qubit gates per gate, (n-1) gates per layer -> linear in n
    assert all(r["two_qubit_gates"] <= 3 * 2 * (r["n"] - 1) for r in st)
    # dense: measured for n <= 7 and growing ~4x per qubit
    assert [r["kind"] for r in dense] == ["measured"] * 3
    g = [r["two_qubit_gates"] for r in dense]
    assert all(b / a > 3.5 for a, b in zip(g, g[1:]))
    assert "on a line without SWAPs" in capsys.readouterr().out
