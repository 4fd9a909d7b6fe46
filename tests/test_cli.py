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


def test_bench_mpo_linear_times_runs_of_calls_and_reports_one_call(monkeypatch):
    # every sample of a cell is the same number of consecutive calls (from nn.Linear's time);
    # the figures are per call
    import qtnn.apps.bench as bench

    seen = []

    def samples(fns, repeats, warmup):
        for f in fns.values():
            f()                         # runs: the layers accept the input
        seen.append(sorted(fns))
        return {"linear": [0.4, 0.5, 0.6], "mpo": [0.2, 0.3, 0.1], "model": [0.8, 0.8, 0.8],
                "twin": [0.55, 0.45, 0.5]}

    monkeypatch.setattr(bench, "_loops_for", lambda fn: 4)
    monkeypatch.setattr(bench, "_samples", samples)
    r = bench.bench_mpo_linear(sizes=(16,), bonds=(2,), batch=4, repeats=3, progress=False)
    (row,) = r["rows"]
    assert seen == [["linear", "model", "mpo", "twin"]] and row["calls_per_sample"] == 4
    assert row["twin_ratio"] == pytest.approx(1.0)
    assert row["linear_ms"] == pytest.approx(125.0) and row["mpo_ms"] == pytest.approx(50.0)
    assert row["ratio"] == pytest.approx(0.4) and row["ratio_min"] == pytest.approx(0.25)


@pytest.mark.parametrize("which", ["mpo-linear", "hybrid", "all"])
def test_benchmarks_record_the_load_from_before_their_own_work(monkeypatch, which):
    # The load average counts the benchmark's own threads once it runs, so it
    # must be read first: here it reads the number of timed loops so far.
    import os

    import qtnn.apps.bench as bench
    from qtnn.apps.bench_summary import bench_all

    started = []
    real_samples = bench._samples

    def samples(*args, **kwargs):
        started.append(1)
        return real_samples(*args, **kwargs)

    def fake_mpo_linear(**kwargs):
        started.append(1)
        return {"rows": []}

    monkeypatch.setattr(bench, "_samples", samples)
    monkeypatch.setattr(os, "getloadavg", lambda: [float(len(started))] * 3)
    if which == "mpo-linear":
        r = bench.bench_mpo_linear(sizes=(16,), bonds=(2,), batch=4, repeats=1, warmup=0,
                                   progress=False)
    elif which == "hybrid":
        r = bench.bench_hybrid(qubits=(3,), batch=4, repeats=1, aer_batch=1, progress=False)
    else:
        monkeypatch.setattr(bench, "bench_mpo_linear", fake_mpo_linear)
        r = bench_all(repeats=1, progress=False, parts=("mpo-linear",))
    assert started, "the benchmark timed nothing"
    assert r["environment"]["load_average"] == [0.0] * 3


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


def test_depth_default_target_writes_table_json_png(tmp_path, monkeypatch, capsys):
    """`qtnn depth` with defaults: Heisenberg n=8, D=1..4 on FakeTorino; table, JSON and PNG."""
    monkeypatch.chdir(tmp_path)
    assert main(["depth"]) == 0
    out = capsys.readouterr().out
    assert "fidelity" in out and "2q gates" in out and "est. success" in out
    data = json.loads((tmp_path / "runs/depth/heisenberg_n8.json").read_text())
    assert [r["layers"] for r in data["rows"]] == [1, 2, 3, 4]
    assert data["backend"] == "fake:torino" and data["dense"]["kind"] == "formula"
    assert all(r["swaps"] == 0 for r in data["rows"])
    assert (tmp_path / "runs/depth/heisenberg_n8.png").read_bytes()[:4] == b"\x89PNG"


def test_depth_on_files_and_checkpoints(tmp_path, capsys):
    import torch

    from qtnn.apps.digits import HybridClassifier, HybridConfig
    from qtnn.checkpoint import save_checkpoint
    from qtnn.staircase import Staircase
    from qtnn.tn import MPS, save_tt

    save_tt(MPS.random(5, 4, seed=0), tmp_path / "psi.npz")
    j = tmp_path / "psi.json"
    assert main(["depth", "--target", str(tmp_path / "psi.npz"), "--layers", "1,2",
                 "--backend", "fake:fez", "--json", str(j), "--png", str(tmp_path / "psi.png")]) == 0
    assert json.loads(j.read_text())["backend"] == "fake:fez"
    Staircase.random(4, 2, seed=0).save(tmp_path / "c.npz")
    assert main(["depth", "--target", str(tmp_path / "c.npz"), "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["report"]["swaps"] == 0
    cfg = HybridConfig(layers=1, epochs=1)
    torch.manual_seed(0)
    model = HybridClassifier(cfg)
    from dataclasses import asdict

    save_checkpoint(tmp_path / "h.pt", {"config": asdict(cfg), "model": model.state_dict(),
                                        "epoch": 0, "losses": []})
    assert main(["depth", "--target", str(tmp_path / "h.pt"), "--layer", "head",
                 "--json", str(tmp_path / "h.json")]) == 0
    # issue 16: the report of a trained head shows the input encoding in front of it
    h = json.loads((tmp_path / "h.json").read_text())
    enc, total, alt = h["encoding"], h["total"], h["alternative_encoding"]
    assert enc["name"] == "encoding_amplitude_n6" and alt["name"] == "encoding_staircase_n6_D2"
    assert enc["two_qubit_gates"] > alt["two_qubit_gates"] > 0
    assert total["count_ops"]["measure"] == 4               # the read-out wires of 10 classes
    assert 0 < total["success_with_readout"] < total["success_probability"] < 1
    assert h["report"]["encoding"] == enc and h["report"]["total"] == total
    out = capsys.readouterr().out
    assert "encoding, StatePrep (amplitude)" in out and "total (encoding + head)" in out
    assert main(["depth", "--target", str(tmp_path / "h.pt"), "--layer", "features", "--layers", "1",
                 "--no-dense", "--json", str(tmp_path / "f.json"),
                 "--png", str(tmp_path / "f.png")]) == 0
    assert json.loads((tmp_path / "f.json").read_text())["kind"] == "mpo"
    capsys.readouterr()
    assert main(["depth", "--target", str(tmp_path / "h.pt")]) == 2
    assert "--layer must be 'features' or 'head'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["depth", "--target", "nothing"], "neither a built-in target"),
    (["depth", "--backend", "fake:nowhere"], "unknown IBM device model 'nowhere'"),
    (["depth", "--n", "200"], "--n must be an integer <= 24"),
    (["depth", "--target", "random-mpo", "--n", "12"], "too large"),
])
def test_depth_bad_arguments(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_circuits_check_passes_on_the_committed_catalogue(capsys):
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    assert main(["circuits", "check", "--dir", str(root / "circuits")]) == 0
    assert "matches its generators" in capsys.readouterr().out


def test_bench_hybrid_rows_per_batch(tmp_path, capsys):
    out = tmp_path / "h.json"
    assert main(["bench", "hybrid", "--qubits", "3", "--batch", "4,8", "--repeats", "1",
                 "--aer-batch", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["qubits"], r["batch"]) for r in rows] == [(3, 4), (3, 8)]
    assert all(set(r["samples_per_s"]) == {"reference", "default.qubit", "lightning.qubit",
                                           "qiskit.aer"} for r in rows)
    assert "reference / fastest QNode" in capsys.readouterr().out


def test_bench_planted_small(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["bench", "planted", "--qubits", "3,3", "--depths", "1", "--seeds", "2",
                 "--refine", "200", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    (row,) = data["summary"]
    assert row["seeds"] == 2 and row["recovered"] == sum(r["error"] < 1e-3 for r in data["rows"])
    for r in data["rows"]:  # growth never loses, and beats plain truncation
        assert r["stage_errors"][-1] == r["error"] <= r["truncation_error"]
        assert all(b <= a * (1 + 1e-12) for a, b in zip(r["stage_errors"], r["stage_errors"][1:]))
    assert "recovered" in capsys.readouterr().out
    assert data["gates"] == "o4"
    assert main(["bench", "planted", "--qubits", "3,3", "--depths", "1", "--seeds", "1", "--refine", "5",
                 "--gates", "so4", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["gates"] == "so4" and data["rows"][0]["det_minus"] == 0
    assert "SO4 gates" in capsys.readouterr().out
    assert main(["bench", "planted", "--qubits", "3"]) == 2


def test_bench_all_writes_the_summary_json_and_png(tmp_path, capsys, monkeypatch):
    import qtnn.apps.bench_summary as summary

    rows = [summary._row("encode", "n=12 D=4 heisenberg", "fidelity", 0.9989, "", "higher"),
            summary._row("mpo-linear", "1024^2 bond 8 batch 256 train", "time / nn.Linear", 0.8,
                         "x", "lower")]
    monkeypatch.setattr(summary, "bench_all", lambda: {"benchmark": "all", "commit": "abc",
                                                       "environment": {}, "seconds": 1.0,
                                                       "rows": rows})
    prefix = str(tmp_path / "sum")
    assert main(["bench", "--all", "--prefix", prefix]) == 0
    out = capsys.readouterr().out
    assert "0.800x" in out and "0.9989" in out
    assert json.loads((tmp_path / "sum.json").read_text())["rows"] == rows
    assert (tmp_path / "sum.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["bench"]) == 2
    assert "--all" in capsys.readouterr().err
