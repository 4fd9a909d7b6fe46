"""Export staircase circuits to Qiskit and OpenQASM, and read them back.

Qubit order (the one conversion of ``docs/design/conventions.md``): qtnn qubit
``q`` -- qubit 0 is the most significant bit of a basis index -- is Qiskit
qubit ``n - 1 - q``.  Qiskit numbers basis states little-endian (its qubit 0
is the least significant bit), so under this map a basis index means the same
integer on both sides: ``Statevector(to_qiskit(c)).data == c.state()`` and
``circuit_unitary(to_qiskit(c)) == c.to_matrix()`` entry by entry, with no
permutation.

Gate ``(l, j)`` of a staircase acts on qtnn qubits ``j, ..., j+k-1`` with
qubit ``j`` the most significant bit of the ``2**k`` gate index.  Qiskit's
``UnitaryGate`` on ``qargs`` treats ``qargs[0]`` as the *least* significant
bit, so the gate matrix is attached unchanged to
``qargs = [n-j-k, ..., n-j-1]`` (Qiskit indices of qtnn qubits
``j+k-1, ..., j``).

``decompose="native"`` writes each real ``4 x 4`` gate in the magic-basis form
of :mod:`qtnn.quantum.template` (Vatan & Williams, PRA 69, 032315 (2004)):
``[cz if det = -1]; s, s, h, cx; rz ry rz on each qubit; cx, h, sdg, sdg``,
i.e. 2 ``cx`` (3 two-qubit gates with the ``cz`` when ``det = -1``).
Qiskit's ``rz(a) = diag(exp(-ia/2), exp(ia/2))``, ``ry``, ``s``, ``sdg``,
``h``, ``cx`` and ``cz`` are the same matrices as PennyLane's, so the
decomposition is exact including the global phase.

Qiskit is imported inside the functions only.
"""

from __future__ import annotations

import importlib.util
import numbers
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.io import atomic_open
from qtnn.validate import check_choice, short_repr

if TYPE_CHECKING:  # pragma: no cover
    from qiskit import QuantumCircuit

    from qtnn.staircase import Staircase

__all__ = ["to_qiskit", "to_qasm2", "to_qasm3", "save_qasm", "load_qasm", "circuit_unitary",
           "QASM2_BASIS"]

#: Gates a QASM 2 / 3 export is lowered to when the circuit holds other gates
#: (``UnitaryGate`` in particular); all are in ``qelib1.inc`` / ``stdgates.inc``.
QASM2_BASIS: tuple[str, ...] = ("rz", "ry", "h", "s", "sdg", "cx", "cz", "u")

#: Largest circuit width :func:`circuit_unitary` builds a dense matrix for.
MAX_UNITARY_QUBITS = 12

_QASM3_IMPORT = "qiskit_qasm3_import"


def _check_staircase(name: str, obj: Any) -> Staircase:
    from qtnn.staircase import Staircase

    if not isinstance(obj, Staircase):
        raise QtnnTypeError(f"{name} must be a qtnn.staircase.Staircase, got "
                            f"{type(obj).__name__} {short_repr(obj)}")
    return obj


def _is_circuit(obj: Any) -> bool:
    from qiskit import QuantumCircuit

    return isinstance(obj, QuantumCircuit)


def to_qiskit(staircase: Staircase, *, decompose: str = "native") -> QuantumCircuit:
    """The staircase as a Qiskit ``QuantumCircuit`` (qtnn qubit ``q`` -> Qiskit qubit ``n-1-q``).

    Parameters
    ----------
    staircase : Staircase
        Any width ``k``, real or complex, ascending or descending.
    decompose : {"native", "unitary"}
        ``"unitary"``: every gate is one ``UnitaryGate``.  ``"native"``
        (default): every real two-qubit gate is written in the magic-basis form
        (``rz``, ``ry``, ``cx``, ``h``, ``s``, ``sdg`` and ``cz`` when
        ``det = -1``; see the module docstring), exact including the global
        phase; gates with ``k != 2`` or complex entries fall back to
        ``UnitaryGate``.

    Returns
    -------
    qiskit.QuantumCircuit
        On ``n_qubits`` qubits, named ``"staircase_n{n}_D{D}_k{k}"``
        (``"brickwall_n{n}_D{D}_k2"`` for a brickwall circuit), with
        ``metadata`` ``{"n_qubits", "layers", "k", "complex", "descending",
        "layout", "decompose", "qubit_order"}``.  Gates appear in application
        order: layer 0 first, windows in the order of the layout
        (:func:`qtnn.staircase.window_order`: ascending, or even then odd for a
        brickwall; reversed if ``staircase.descending``).

    Raises
    ------
    QtnnError
        If ``staircase`` is not a :class:`~qtnn.staircase.Staircase` or
        ``decompose`` is not one of the two choices.

    Examples
    --------
    >>> import numpy as np
    >>> from qiskit.quantum_info import Statevector
    >>> from qtnn.staircase import Staircase
    >>> c = Staircase.random(4, 2, seed=0)
    >>> qc = to_qiskit(c)
    >>> qc.name, qc.metadata["layers"], qc.count_ops()["cx"]
    ('staircase_n4_D2_k2', 2, 12)
    >>> bool(np.abs(Statevector(qc).data - c.state()).max() < 1e-12)
    True
    """
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import UnitaryGate

    from qtnn.staircase.circuit import window_order
    from qtnn.staircase.magic import magic_angles, native_sequence

    c = _check_staircase("staircase", staircase)
    decompose = check_choice("decompose", decompose, ("native", "unitary"))
    n, k, d = c.n_qubits, c.k, c.layers
    qc = QuantumCircuit(n, name=f"{c.layout}_n{n}_D{d}_k{k}")
    qc.metadata = {"n_qubits": n, "layers": d, "k": k, "complex": c.is_complex,
                   "descending": c.descending, "layout": c.layout, "decompose": decompose,
                   "qubit_order": "qtnn qubit q (0 = most significant) is qiskit qubit n-1-q"}
    g_count = n - k + 1
    order = window_order(n, k, c.layout, c.descending)
    gates = np.asarray(c.gates)
    native = decompose == "native" and k == 2
    angles = np.zeros((d, g_count, 6))
    dets = np.ones((d, g_count))
    if native:
        real_mask = np.all(np.imag(gates) == 0, axis=(-1, -2)) if d else np.zeros((0, g_count), bool)
        if real_mask.any():
            a, s = magic_angles(np.real(gates[real_mask]), atol=1e-9)
            angles[real_mask] = a
            dets[real_mask] = s
    else:
        real_mask = np.zeros((d, g_count), dtype=bool)
    for layer in range(d):
        for j in order:
            if native and real_mask[layer, j]:
                w0, w1 = n - 1 - j, n - 2 - j          # qiskit indices of qtnn qubits j, j+1
                for name, qubits, angle in native_sequence(dets[layer, j]):
                    ws = [(w0, w1)[q] for q in qubits]
                    if angle is None:
                        getattr(qc, name)(*ws)
                    else:
                        getattr(qc, name)(float(angles[layer, j, angle]), *ws)
            else:
                mat = gates[layer, j]
                qc.append(UnitaryGate(mat, label=f"g[{layer},{j}]", check_input=False),
                          list(range(n - j - k, n - j)))
    return qc


def _as_circuit(name: str, obj: Any) -> QuantumCircuit:
    from qtnn.staircase import Staircase

    if isinstance(obj, Staircase):
        return to_qiskit(obj, decompose="native")
    if _is_circuit(obj):
        return obj
    raise QtnnTypeError(f"{name} must be a qtnn.staircase.Staircase or a qiskit.QuantumCircuit, "
                        f"got {type(obj).__name__} {short_repr(obj)}")


def _lower(qc: QuantumCircuit) -> QuantumCircuit:
    """Rewrite gates outside :data:`QASM2_BASIS` (``UnitaryGate`` ...) into it; keeps the rest.

    OpenQASM 2 has no global phase and Qiskit's QASM 3 exporter drops it, so a
    nonzero ``global_phase`` (generic synthesis leaves one) is written as
    gates on qubit 0: ``rz(-2 phi)`` then ``u(0, 0, 2 phi)`` is
    ``diag(e^{i phi}, e^{i phi})``, exactly.
    """
    ops = set(qc.count_ops())
    out = qc
    if not ops <= set(QASM2_BASIS) | {"barrier", "measure", "reset"}:
        from qiskit import transpile

        out = transpile(qc, basis_gates=list(QASM2_BASIS), optimization_level=0)
        out.name = qc.name
        out.metadata = dict(qc.metadata or {})
    phase = float(out.global_phase) % (2 * np.pi)
    if out.num_qubits and min(phase, 2 * np.pi - phase) > 1e-14:
        out = out.copy() if out is qc else out
        out.global_phase = 0.0
        out.rz(-2 * phase, 0)
        out.u(0.0, 0.0, 2 * phase, 0)
    return out


def to_qasm2(staircase_or_circuit: Staircase | QuantumCircuit) -> str:
    """OpenQASM 2 text of a staircase (native decomposition) or of a Qiskit circuit.

    Gates outside ``qelib1.inc`` (``UnitaryGate``) are first transpiled to
    :data:`QASM2_BASIS` with ``optimization_level=0`` (no layout, no qubit
    permutation).  QASM 2 has no global phase: a nonzero one is written as
    two single-qubit gates on qubit 0, so a loaded circuit has the original's
    unitary exactly, phase included.

    Parameters
    ----------
    staircase_or_circuit : Staircase or qiskit.QuantumCircuit

    Returns
    -------
    str

    Raises
    ------
    QtnnError
        For any other input type, or if Qiskit cannot write the circuit.

    Examples
    --------
    >>> from qtnn.staircase import Staircase
    >>> text = to_qasm2(Staircase.random(3, 1, seed=0))
    >>> text.splitlines()[0], text.count("cx ")
    ('OPENQASM 2.0;', 4)
    """
    from qiskit import qasm2

    qc = _lower(_as_circuit("staircase_or_circuit", staircase_or_circuit))
    try:
        return qasm2.dumps(qc)
    except qasm2.QASM2ExportError as exc:
        raise QtnnError(f"staircase_or_circuit cannot be written as OpenQASM 2 "
                        f"(circuit {qc.name!r}): {exc}") from exc


def to_qasm3(staircase_or_circuit: Staircase | QuantumCircuit) -> str:
    """OpenQASM 3 text of a staircase (native decomposition) or of a Qiskit circuit.

    ``UnitaryGate`` instructions are lowered as in :func:`to_qasm2`.

    Examples
    --------
    >>> from qtnn.staircase import Staircase
    >>> to_qasm3(Staircase.random(2, 1, seed=0)).splitlines()[:2]
    ['OPENQASM 3.0;', 'include "stdgates.inc";']
    """
    from qiskit import qasm3

    qc = _lower(_as_circuit("staircase_or_circuit", staircase_or_circuit))
    try:
        return qasm3.dumps(qc)
    except qasm3.QASM3ExporterError as exc:
        raise QtnnError(f"staircase_or_circuit cannot be written as OpenQASM 3 "
                        f"(circuit {qc.name!r}): {exc}") from exc


def save_qasm(obj: Staircase | QuantumCircuit, path: str | os.PathLike[str],
              version: int = 2) -> None:
    """Write ``obj`` as OpenQASM ``version`` (2 or 3) to ``path`` atomically.

    The text goes to a temporary file next to ``path`` that replaces ``path``
    only once fully written (:func:`qtnn.io.atomic_open`).

    Raises
    ------
    QtnnError
        If ``version`` is not 2 or 3, or ``obj`` is neither a staircase nor a
        circuit.

    Examples
    --------
    >>> import os, tempfile
    >>> from qtnn.staircase import Staircase
    >>> p = os.path.join(tempfile.mkdtemp(), "c.qasm")
    >>> save_qasm(Staircase.random(2, 1, seed=0), p)
    >>> load_qasm(p).num_qubits
    2
    """
    if isinstance(version, bool) or not isinstance(version, numbers.Integral) or version not in (2, 3):
        raise QtnnError(f"version must be 2 or 3, got {short_repr(version)}")
    if not isinstance(path, (str, os.PathLike)):
        raise QtnnTypeError(f"path must be a str or os.PathLike, got {short_repr(path)}")
    text = to_qasm2(obj) if version == 2 else to_qasm3(obj)
    with atomic_open(path, "w") as f:
        f.write(text)


def _detect_version(text: str) -> int | None:
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("//"):
            continue
        if s.upper().startswith("OPENQASM"):
            head = s[len("OPENQASM"):].strip()
            if head.startswith("2"):
                return 2
            if head.startswith("3"):
                return 3
        return None
    return None


def load_qasm(path_or_text: str | os.PathLike[str], version: int | None = None) -> QuantumCircuit:
    """Read OpenQASM 2 (or 3) from a file path or from the text itself.

    Parameters
    ----------
    path_or_text : str or os.PathLike
        An ``os.PathLike`` is a path; a ``str`` is QASM text when it contains
        ``"OPENQASM"`` or a ``;``, otherwise a path.
    version : {2, 3, None}
        ``None``: read from the ``OPENQASM`` header (2 if there is none).
        QASM 3 import needs the optional package ``qiskit_qasm3_import``.

    Returns
    -------
    qiskit.QuantumCircuit
        Qiskit's qubit order; :func:`circuit_unitary` gives its matrix in
        qtnn's order.

    Raises
    ------
    QtnnError
        Unreadable file, malformed text (Qiskit's parser message included),
        bad ``version``, or QASM 3 without ``qiskit_qasm3_import``.

    Examples
    --------
    >>> qc = load_qasm('OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; x q[1];')
    >>> qc.num_qubits, qc.count_ops()["x"]
    (2, 1)
    """
    if version is not None and (isinstance(version, bool) or not isinstance(version, numbers.Integral)
                                or version not in (2, 3)):
        raise QtnnError(f"version must be 2, 3 or None, got {short_repr(version)}")
    if isinstance(path_or_text, os.PathLike) or (
            isinstance(path_or_text, str) and "OPENQASM" not in path_or_text.upper()
            and ";" not in path_or_text):
        p = Path(path_or_text)
        try:
            text = p.read_text()
        except UnicodeDecodeError as exc:
            raise QtnnError(f"path_or_text {short_repr(str(path_or_text))} is a file that is not QASM "
                            f"text (not UTF-8: {exc.reason})") from exc
        except OSError as exc:
            raise QtnnError(f"path_or_text {short_repr(str(path_or_text))} is not QASM text (no "
                            f"'OPENQASM' header or ';') and cannot be read as a file: "
                            f"{exc.strerror or exc}") from exc
        where = f"file {str(p)!r}"
    elif isinstance(path_or_text, str):
        text = path_or_text
        where = "the given text"
    else:
        raise QtnnTypeError(f"path_or_text must be a str (QASM text or a path) or os.PathLike, "
                            f"got {type(path_or_text).__name__} {short_repr(path_or_text)}")
    detected = _detect_version(text)
    if version is None:
        version = detected or 2
    elif detected is not None and detected != version:
        raise QtnnError(f"version={version} but {where} declares OPENQASM {detected}")
    if version == 3:
        if importlib.util.find_spec(_QASM3_IMPORT) is None:
            raise QtnnError(f"loading OpenQASM 3 ({where}) needs the optional package "
                            f"'qiskit-qasm3-import' (module {_QASM3_IMPORT}), which is not "
                            f"installed; OpenQASM 3 export (to_qasm3) works without it")
        from qiskit import qasm3

        try:
            return qasm3.loads(text)
        except Exception as exc:  # the importer raises several exception types
            raise QtnnError(f"malformed OpenQASM 3 in {where}: {exc}") from exc
    from qiskit import qasm2

    try:
        return qasm2.loads(text, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    except qasm2.QASM2ParseError as exc:
        raise QtnnError(f"malformed OpenQASM 2 in {where}: {exc}") from exc


def circuit_unitary(circuit: QuantumCircuit) -> np.ndarray:
    """The unitary of a Qiskit circuit as a ``2**n x 2**n`` array in qtnn's qubit order.

    qtnn qubit ``q`` (0 = most significant) is Qiskit qubit ``n-1-q``; with
    Qiskit's little-endian indices this labels every basis state with the same
    integer, so ``Operator(circuit).data`` is already in qtnn order and is
    returned as is (global phase included).  For a circuit from
    :func:`to_qiskit`, the result equals :meth:`Staircase.to_matrix`.

    Raises
    ------
    QtnnError
        If ``circuit`` is not a ``QuantumCircuit``, has more than 12 qubits,
        or holds non-unitary instructions (measure, reset).

    Examples
    --------
    >>> from qiskit import QuantumCircuit
    >>> qc = QuantumCircuit(2); _ = qc.x(1)        # qiskit qubit 1 = qtnn qubit 0
    >>> circuit_unitary(qc).real[:, 0].tolist()    # |00> -> |10> = index 2
    [0.0, 0.0, 1.0, 0.0]
    """
    from qiskit.quantum_info import Operator

    if not _is_circuit(circuit):
        raise QtnnTypeError(f"circuit must be a qiskit.QuantumCircuit, got "
                            f"{type(circuit).__name__} {short_repr(circuit)}")
    if circuit.num_qubits > MAX_UNITARY_QUBITS:
        raise QtnnError(f"circuit_unitary builds a 2**n x 2**n matrix and is limited to "
                        f"{MAX_UNITARY_QUBITS} qubits; got circuit with {circuit.num_qubits}")
    try:
        return np.asarray(Operator(circuit).data, dtype=np.complex128)
    except Exception as exc:  # QiskitError for measure / reset / unknown definitions
        raise QtnnError(f"circuit {circuit.name!r} has no unitary (it holds non-unitary or "
                        f"undefined instructions): {exc}") from exc
