"""The qtnn command line."""

import json
import subprocess
import sys

import pytest

from qtnn.cli import main


def test_bench_mpo_linear_small_writes_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    code = main(["bench", "mpo-linear", "--sizes", "64", "--bonds", "2,4", "--batch", "8",
                 "--repeats", "1", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert [r["bond"] for r in data["rows"]] == [2, 4]
    assert all(r["ratio"] > 0 for r in data["rows"])
    assert "time ratio" in capsys.readouterr().out


def test_demo_runs_and_reports(tmp_path):
    out = tmp_path / "demo.json"
    assert main(["compress-demo", "--bonds", "2,8", "--epochs", "3", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    errs = [r["weight_error"] for r in data["rows"]]
    assert errs[1] < errs[0]  # a larger bond keeps more of the weight


def test_errors_are_one_line_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "qtnn.cli", "bench", "mpo-linear", "--batch", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "--batch" in proc.stderr


@pytest.mark.parametrize("argv", [["bench", "mpo-linear", "--bonds", "0"], ["nope"]])
def test_bad_arguments_exit_nonzero(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_bench_staircase_small(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["bench", "staircase", "--n", "4", "--max-layers", "2", "--methods", "ran,iterative",
                 "--dis-qubits", "3", "--no-scale", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    ising = data["encode"]["targets"]["ising"]["results"]
    assert all(i >= r - 1e-12 for i, r in zip(ising["iterative"]["fidelity"], ising["ran"]["fidelity"]))
    assert all(r["error"] <= r["truncation_error"] + 1e-12 for r in data["disentangle"]["rows"])
    assert "disentangled" in capsys.readouterr().out


def test_bench_staircase_bad_method_is_one_line(capsys):
    assert main(["bench", "staircase", "--methods", "magic", "--no-scale"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qtnn: error: methods[] must be one of") and err.count("\n") == 1
