"""Tests of qtnn.analysis.export: Qiskit / OpenQASM export with qtnn's qubit order."""

import os
import subprocess
import sys

import numpy as np
import pytest

from qtnn.analysis import circuit_unitary, load_qasm, save_qasm, to_qasm2, to_qasm3, to_qiskit
from qtnn.errors import QtnnError
from qtnn.staircase import Staircase

ATOL = 1e-12
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cases(ns, ks=(2, 3)):
    for n in ns:
        for k in ks:
            if k <= n:
                yield n, k


@pytest.mark.parametrize("cplx", [False, True])
@pytest.mark.parametrize("decompose", ["native", "unitary"])
@pytest.mark.parametrize("n,k", list(_cases(range(1, 9), (1, 2, 3))))
def test_to_qiskit_matches_apply(n, k, cplx, decompose):
    from qiskit.quantum_info import Statevector

    c = Staircase.random(n, 2, k=k, seed=10 * n + k, complex=cplx)
    for circ in (c, c.inverse()):                      # ascending and descending
        qc = to_qiskit(circ, decompose=decompose)
        assert qc.num_qubits == n and qc.metadata["layers"] == 2 and qc.metadata["k"] == k
        np.testing.assert_allclose(Statevector(qc).data, circ.state(), rtol=0, atol=ATOL)
        u = circuit_unitary(qc)
        # column b is the action on basis input |b>
        ref = circ.apply(np.eye(2**n, dtype=circ.gates.dtype)).T
        np.testing.assert_allclose(u, ref, rtol=0, atol=ATOL)
    assert np.abs(circuit_unitary(to_qiskit(c.inverse(), decompose=decompose))
                  @ circuit_unitary(to_qiskit(c, decompose=decompose)) - np.eye(2**n)).max() < ATOL


def test_native_gate_set_and_counts():
    c = Staircase.random(5, 3, seed=3)
    dets = np.sign(np.linalg.det(c.gates))
    ops = to_qiskit(c).count_ops()
    assert set(ops) <= {"rz", "ry", "cx", "h", "s", "sdg", "cz"}
    assert ops["cx"] == 2 * c.num_gates
    assert ops.get("cz", 0) == int((dets < 0).sum())
    assert "unitary" in to_qiskit(Staircase.random(4, 1, k=3, seed=0)).count_ops()
    assert "unitary" in to_qiskit(Staircase.random(4, 1, seed=0, complex=True)).count_ops()
    assert set(to_qiskit(c, decompose="unitary").count_ops()) == {"unitary"}


@pytest.mark.parametrize("n", [2, 3, 5])
def test_endianness_hand_made(n):
    from qiskit.quantum_info import Statevector

    xi = np.kron(np.array([[0.0, 1.0], [1.0, 0.0]]), np.eye(2))     # X on the window's first qubit
    gates = np.broadcast_to(np.eye(4), (1, n - 1, 4, 4)).copy()
    gates[0, 0] = xi                                                # window 0: X on qubit 0
    c = Staircase(n, 1, gates=gates)
    for dec in ("native", "unitary"):
        sv = Statevector(to_qiskit(c, decompose=dec)).data
        expect = np.zeros(2**n)
        expect[2 ** (n - 1)] = 1.0                                  # |10...0>
        np.testing.assert_allclose(sv, expect, rtol=0, atol=ATOL)
        np.testing.assert_allclose(sv, c.state(), rtol=0, atol=ATOL)
    # X on the last qubit (second qubit of the last window) flips the least significant bit
    gates = np.broadcast_to(np.eye(4), (1, n - 1, 4, 4)).copy()
    gates[0, n - 2] = np.kron(np.eye(2), np.array([[0.0, 1.0], [1.0, 0.0]]))
    sv = Statevector(to_qiskit(Staircase(n, 1, gates=gates), decompose="unitary")).data
    assert abs(sv[1] - 1) < ATOL


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("n,k", list(_cases(range(1, 9), (1, 2, 3))))
def test_qasm_round_trip(n, k, version):
    """Export -> text -> Qiskit import gives the staircase's unitary, global phase included."""
    dump = to_qasm2 if version == 2 else to_qasm3
    for cplx in (False, True):
        c = Staircase.random(n, 2, k=k, seed=n + 7 * k, complex=cplx)
        for circ in (c, c.inverse()):
            for dec in ("native", "unitary"):
                text = dump(to_qiskit(circ, decompose=dec))
                assert text.startswith(f"OPENQASM {version}.0;")
                u = circuit_unitary(load_qasm(text))
                np.testing.assert_allclose(u, circ.to_matrix(), rtol=0, atol=1e-10)


def test_global_phase_survives_qasm():
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(2, global_phase=0.7)
    qc.cx(0, 1)
    for text in (to_qasm2(qc), to_qasm3(qc)):
        np.testing.assert_allclose(circuit_unitary(load_qasm(text)), circuit_unitary(qc),
                                   rtol=0, atol=1e-14)
    assert qc.global_phase == 0.7                      # the input is not modified


def test_qasm2_native_is_phase_exact():
    c = Staircase.random(4, 2, seed=5)
    u = circuit_unitary(load_qasm(to_qasm2(c)))
    np.testing.assert_allclose(u, c.to_matrix(), rtol=0, atol=1e-10)


def test_qasm3_export():
    c = Staircase.random(3, 1, k=3, seed=0, complex=True)
    text = to_qasm3(c)
    assert text.startswith("OPENQASM 3.0;") and "qubit[3]" in text
    assert to_qasm3(to_qiskit(Staircase.random(3, 1, seed=0))).count("cx ") == 4


def test_qasm3_import():
    c = Staircase.random(2, 1, seed=0)
    u = circuit_unitary(load_qasm(to_qasm3(c)))
    np.testing.assert_allclose(u, c.to_matrix(), rtol=0, atol=1e-10)


def test_qasm3_import_missing_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "qiskit_qasm3_import" else real(name, *a))
    with pytest.raises(QtnnError, match="qiskit-qasm3-import"):
        load_qasm(to_qasm3(Staircase.random(2, 1, seed=0)))


@pytest.mark.parametrize("version", [2, 3])
def test_save_qasm_atomic(tmp_path, version):
    c = Staircase.random(3, 2, seed=1)
    p = tmp_path / "sub" / "c.qasm"
    save_qasm(c, p, version=version)
    save_qasm(to_qiskit(c), str(p), version=version)      # overwrite in place
    assert sorted(os.listdir(p.parent)) == ["c.qasm"]
    assert p.read_text() == (to_qasm2(c) if version == 2 else to_qasm3(c))
    np.testing.assert_allclose(circuit_unitary(load_qasm(p)), c.to_matrix(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(circuit_unitary(load_qasm(str(p))), c.to_matrix(), rtol=0, atol=1e-10)


def test_save_qasm_failure_leaves_nothing(tmp_path):
    p = tmp_path / "c.qasm"
    p.write_text("old")
    with pytest.raises(QtnnError, match="staircase_or_circuit"):
        save_qasm(object(), p)
    with pytest.raises(QtnnError, match="version must be 2 or 3, got 4"):
        save_qasm(Staircase.random(2, 1), p, version=4)
    assert os.listdir(tmp_path) == ["c.qasm"] and p.read_text() == "old"


@pytest.mark.parametrize("text", [
    'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; cx q[0] q[1];',
    'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; foo q[0];',
    'OPENQASM 2.0; qreg q[2]; h q[5];',
])
def test_malformed_qasm(text):
    with pytest.raises(QtnnError, match="malformed OpenQASM 2 in the given text"):
        load_qasm(text)


@pytest.mark.parametrize("text", [
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; cx q[0] q[1];',
    'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; foo q[0];',
    'OPENQASM 3.0; qubit[2] q; h q[5];',
])
def test_malformed_qasm3(text):
    with pytest.raises(QtnnError, match="malformed OpenQASM 3 in the given text"):
        load_qasm(text)


def test_load_qasm_bad_inputs(tmp_path):
    with pytest.raises(QtnnError, match="cannot be read as a file"):
        load_qasm(str(tmp_path / "missing.qasm"))
    with pytest.raises(QtnnError, match="path_or_text must be"):
        load_qasm(12)
    with pytest.raises(QtnnError, match="version must be 2, 3 or None, got 4"):
        load_qasm("OPENQASM 2.0;", version=4)
    with pytest.raises(QtnnError, match="version=3 but the given text declares OPENQASM 2"):
        load_qasm('OPENQASM 2.0; qreg q[1];', version=3)


@pytest.mark.parametrize("bad", [None, 3, np.eye(4), "circuit"])
def test_non_staircase_inputs(bad):
    with pytest.raises(QtnnError, match="staircase must be a qtnn.staircase.Staircase"):
        to_qiskit(bad)
    with pytest.raises(QtnnError, match="staircase_or_circuit must be"):
        to_qasm2(bad)
    with pytest.raises(QtnnError, match="staircase_or_circuit must be"):
        to_qasm3(bad)
    with pytest.raises(QtnnError, match="circuit must be a qiskit.QuantumCircuit"):
        circuit_unitary(bad)


def test_bad_decompose():
    with pytest.raises(QtnnError, match="decompose must be one of 'native', 'unitary'; got 'qasm'"):
        to_qiskit(Staircase.random(2, 1), decompose="qasm")


def test_circuit_unitary_rejects_measure():
    from qiskit import QuantumCircuit

    qc = QuantumCircuit(1, 1)
    qc.measure(0, 0)
    with pytest.raises(QtnnError, match="no unitary"):
        circuit_unitary(qc)


def test_zero_layers():
    qc = to_qiskit(Staircase(3, 0))
    assert qc.size() == 0
    np.testing.assert_allclose(circuit_unitary(qc), np.eye(8), rtol=0, atol=0)


def test_import_does_not_load_qiskit():
    code = "import sys, qtnn.analysis; print(any(m.split('.')[0] == 'qiskit' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": _ROOT + os.pathsep
                              + os.environ.get("PYTHONPATH", "")}, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("decompose", ["native", "unitary"])
@pytest.mark.parametrize("n", [2, 3, 6])
def test_brickwall_export_follows_the_layout(n, decompose):
    c = Staircase.random(n, 3, seed=n, layout="brickwall")
    for circ in (c, c.inverse()):
        qc = to_qiskit(circ, decompose=decompose)
        assert qc.metadata["layout"] == "brickwall"
        np.testing.assert_allclose(circuit_unitary(qc), circ.to_matrix(), rtol=0, atol=ATOL)
    # the same gates in staircase order are another operator (n >= 4: the orders differ)
    if n >= 4:
        assert np.abs(circuit_unitary(to_qiskit(Staircase(n, 3, 2, c.gates)))
                      - c.to_matrix()).max() > 1e-3


@pytest.mark.parametrize("cplx", [False, True])
def test_brickwall_complex_export_and_qasm_round_trip(cplx):
    c = Staircase.random(5, 2, seed=3, complex=cplx, layout="brickwall")
    for circ in (c, c.inverse()):
        for dec in ("native", "unitary"):
            qc = to_qiskit(circ, decompose=dec)
            assert qc.name == "brickwall_n5_D2_k2" and qc.metadata["layout"] == "brickwall"
            assert qc.metadata["descending"] == circ.descending
            np.testing.assert_allclose(circuit_unitary(qc), circ.to_matrix(), rtol=0, atol=ATOL)
            for dump in (to_qasm2, to_qasm3):
                u = circuit_unitary(load_qasm(dump(qc)))
                np.testing.assert_allclose(u, circ.to_matrix(), rtol=0, atol=1e-10)


def test_brickwall_export_order_and_depth():
    c = Staircase.random(6, 3, seed=1, layout="brickwall")
    qc = to_qiskit(c, decompose="unitary")
    # one gate per window, in the order even windows then odd ones (qtnn window j = qiskit
    # qubits n-2-j, n-1-j), layer after layer
    firsts = [min(qc.find_bit(q).index for q in inst.qubits) for inst in qc.data]
    assert [6 - 2 - f for f in firsts] == [0, 2, 4, 1, 3] * 3
    # every gate is one instruction, so the circuit depth is the staircase's ASAP depth:
    # 2 per brickwall layer (6) against n - 1 + 2 (D - 1) = 9 for the staircase order
    assert qc.depth() == c.depth == 6
    assert to_qiskit(Staircase(6, 3, 2, c.gates), decompose="unitary").depth() == 9
    inv = to_qiskit(c.inverse(), decompose="unitary")
    firsts = [min(inv.find_bit(q).index for q in inst.qubits) for inst in inv.data]
    assert [6 - 2 - f for f in firsts] == [3, 1, 4, 2, 0] * 3 and inv.depth() == 6
