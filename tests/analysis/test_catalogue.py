"""The committed circuits/ catalogue matches its generators, and every QASM file its manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qiskit_qasm3_import")

from qtnn import QtnnError
from qtnn.analysis.export import load_qasm
from qtnn.apps import catalogue

ROOT = Path(__file__).resolve().parents[2]
CIRCUITS = ROOT / "circuits"
HINT = r"qtnn circuits build"


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory):
    """The catalogue rebuilt through the child process with the reference BLAS kernels.

    Forced as if this process ran other kernels, so that the path an AVX-512 machine takes is
    exercised everywhere (on CPUs that cannot run the reference kernels the build stays here).
    """
    out = tmp_path_factory.mktemp("circuits")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(catalogue, "_runs_reference_blas", lambda: False)
        catalogue.build_catalogue(out, progress=False)
    return out


def test_catalogue_matches_generators(rebuilt):
    catalogue.compare_catalogues(CIRCUITS, rebuilt)


def test_every_qasm_file_reaches_its_manifest_fidelity():
    rows = catalogue.verify_catalogue(CIRCUITS)
    manifest = json.loads((CIRCUITS / "manifest.json").read_text())
    assert len(rows) == len(manifest["circuits"]) >= 11
    for r in rows:
        assert abs(r["fidelity"] - r["manifest_fidelity"]) <= 1e-8


def test_manifest_rows_are_complete():
    manifest = json.loads((CIRCUITS / "manifest.json").read_text())
    files = {r["file"] for r in manifest["circuits"]}
    assert {f"heisenberg_n{n}_D{d}.qasm" for n in (8, 12) for d in (1, 2, 3, 4)} <= files
    assert {"digits_head.qasm", "digits_features_U.qasm", "digits_features_Vt.qasm"} <= files
    for r in manifest["circuits"]:
        assert {"what", "fidelity", "layers", "two_qubit_gates", "fake_torino", "seed",
                "qtnn_version", "sha256", "n_qubits", "kind"} <= set(r)
        assert r["fake_torino"]["swaps"] == 0 and r["fake_torino"]["depth"] > 0
        text = (CIRCUITS / r["file"]).read_text()
        assert text.startswith("OPENQASM 3.0;")
        assert load_qasm(text).num_qubits == r["n_qubits"]
    head = next(r for r in manifest["circuits"] if r["file"] == "digits_head.qasm")
    assert head["test_accuracy"] >= 0.9


def test_changed_generator_fails_with_rebuild_hint(tmp_path, monkeypatch):
    """A generator change (another encoder) without a rebuild is caught and says how to rebuild."""
    monkeypatch.setattr(catalogue, "_HEIS_SIZES", (8,))
    monkeypatch.setattr(catalogue, "_HEIS_LAYERS", (1, 2))
    monkeypatch.setattr(catalogue, "_ENCODE_METHOD", "ran")
    monkeypatch.setattr(catalogue, "_digits_rows", lambda out, progress: [])
    catalogue.build_catalogue(tmp_path, progress=False, reference_blas=False)   # the patches apply here
    with pytest.raises(QtnnError, match=HINT) as info:
        catalogue.compare_catalogues(CIRCUITS, tmp_path)
    msg = str(info.value)
    assert "heisenberg_n8_D2.qasm: field 'fidelity'" in msg
    assert "heisenberg_n12_D1.qasm: committed but no longer generated" in msg


def test_tampered_files_are_caught(tmp_path, rebuilt):
    copy = tmp_path / "c"
    shutil.copytree(CIRCUITS, copy)
    p = copy / "heisenberg_n8_D2.qasm"
    text = p.read_text()
    # nudge the first angle beyond the tolerance
    import re

    m = re.search(r"\d+\.\d+", text)
    p.write_text(text[:m.start()] + f"{float(m.group()) + 1e-3:.15f}" + text[m.end():])
    with pytest.raises(QtnnError, match="heisenberg_n8_D2.qasm: the committed circuit differs"):
        catalogue.compare_catalogues(copy, rebuilt)
    with pytest.raises(QtnnError, match=r"heisenberg_n8_D2.qasm does not match its manifest checksum.*"
                                        + HINT):
        catalogue.verify_catalogue(copy)
    np.savez(copy / "digits_head.npz", gates=np.zeros(3))
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(QtnnError, match="not a readable JSON manifest"):
        catalogue.verify_catalogue(copy)
    with pytest.raises(QtnnError, match="does not exist"):
        catalogue.verify_catalogue(tmp_path / "missing")


def test_small_numeric_noise_is_tolerated():
    a = "rz(0.123456789) q[0];\ncx q[0], q[1];"
    assert catalogue._same_text(a, "rz(0.123456790) q[0];\ncx q[0], q[1];")
    assert not catalogue._same_text(a, "rz(0.1235) q[0];\ncx q[0], q[1];")
    assert not catalogue._same_text(a, "ry(0.123456789) q[0];\ncx q[0], q[1];")


def test_angles_are_compared_modulo_two_pi():
    # the magic-basis angles of a gate jump by 2 pi when round-off crosses the (A, B) -> (-A, -B)
    # choice; such circuits are the same up to a global phase of -1
    a = "rz(-1.313503645773555) q[1];\nrz(2.0) q[0];"
    assert catalogue._same_text(a, "rz(4.969681661406031) q[1];\nrz(2.0) q[0];")
    assert catalogue._same_text(a, "rz(-7.596688952953141) q[1];\nrz(2.0) q[0];")
    assert not catalogue._same_text(a, "rz(1.8280890078162383) q[1];\nrz(2.0) q[0];")   # + pi
    assert not catalogue._same_text(a, "rz(4.9697) q[1];\nrz(2.0) q[0];")


def test_the_disentangled_layer_is_compared_by_structure_and_figures(tmp_path):
    # its angles are the optimum of a non-convex fit and move with round-off in the trained
    # weight; the catalogue check must not fail a machine for that, but must catch changes
    # of the circuit's gates, the residual's shapes, the weight itself or the figures
    import re

    copy = tmp_path / "c"
    shutil.copytree(CIRCUITS, copy)
    p = copy / "digits_features_U.qasm"
    text = p.read_text()
    nudged = re.sub(r"\d+\.\d{6,}", lambda m: f"{float(m.group()) + 1e-5:.15f}", text)
    assert nudged != text
    p.write_text(nudged)
    with np.load(copy / "digits_features_M.npz", allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    arrays["core_2"] = arrays["core_2"] + 1e-6
    np.savez(copy / "digits_features_M.npz", **arrays)
    catalogue.compare_catalogues(copy, CIRCUITS)  # same structure, same figures: no error

    p.write_text(nudged.replace("cx q[4], q[5];", "cz q[4], q[5];", 1))
    with pytest.raises(QtnnError, match="digits_features_U.qasm: the committed circuit differs"):
        catalogue.compare_catalogues(copy, CIRCUITS)
    p.write_text(nudged)
    arrays["core_2"] = arrays["core_2"][..., :1]
    np.savez(copy / "digits_features_M.npz", **arrays)
    with pytest.raises(QtnnError, match="digits_features_M.npz: the committed arrays differ"):
        catalogue.compare_catalogues(copy, CIRCUITS)
    shutil.copy(CIRCUITS / "digits_features_M.npz", copy / "digits_features_M.npz")
    with np.load(copy / "digits_features_W.npz", allow_pickle=False) as d:
        w = {k: d[k] for k in d.files}
    key = next(k for k, v in w.items() if v.dtype.kind == "f")
    w[key] = w[key] + 1e-5  # the trained weight itself is compared by numbers
    np.savez(copy / "digits_features_W.npz", **w)
    with pytest.raises(QtnnError, match="digits_features_W.npz: the committed arrays differ"):
        catalogue.compare_catalogues(copy, CIRCUITS)
    shutil.copy(CIRCUITS / "digits_features_W.npz", copy / "digits_features_W.npz")
    manifest = json.loads((copy / "manifest.json").read_text())
    row = next(r for r in manifest["circuits"] if r["file"] == "digits_features_U.qasm")
    row["fidelity"] += 1e-4
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(QtnnError, match="digits_features_U.qasm: field 'fidelity'"):
        catalogue.compare_catalogues(copy, CIRCUITS)
