"""How deep a circuit is on a real IBM device, and what it costs (``docs/design/math.md``, section 7).

:func:`depth_report` transpiles a staircase (or any Qiskit circuit) for an IBM
device model -- ``"fake:torino"`` (Heron, ``cz``), ``"fake:sherbrooke"``
(Eagle, ``ecr``), ... from ``qiskit_ibm_runtime.fake_provider`` -- or for a bare
basis-gate set, and reports what the hardware would run: two-qubit gate count,
depth, depth in two-qubit gates, SWAPs added by routing, the layout, and two
estimates from the device's calibration data:

* duration: an as-soon-as-possible schedule of the transpiled gates with the
  target's gate durations (``rz`` is virtual and takes no time);
* success probability: ``prod(1 - error)`` over the transpiled gates, and
  separately over the read-out of the used qubits.  This is the usual
  "estimated success probability" (ESP) of the compilation literature
  (Nishio et al., ACM JETC 16, 32 (2020)); it ignores idle decoherence and
  cross-talk, so it is an optimistic estimate.

:func:`dense_baseline` is the comparison point: a Haar-random unitary on the
same qubits, synthesised by Qiskit (quantum Shannon decomposition, Shende,
Bullock & Markov, IEEE TCAD 25, 1000 (2006)) and transpiled the same way --
measured for ``n <= 7``; beyond that, Qiskit's documented CX count of the
synthesis, ``22/48 4^n - 3/2 2^n + 5/3`` for all-to-all connectivity, labelled
``kind="formula"``.

:func:`depth_sweep` ties a target (an MPS to prepare or an MPO to
disentangle) to the number of staircase layers ``D``: fidelity against
two-qubit gates, depth, duration and success probability per ``D``.

Qiskit is imported inside the functions.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.validate import check_int, short_repr

if TYPE_CHECKING:  # pragma: no cover
    from qiskit import QuantumCircuit

    from qtnn.staircase import Staircase
    from qtnn.tn import MPO, MPS

__all__ = ["DepthReport", "depth_report", "dense_baseline", "qsd_cx_count", "depth_sweep",
           "encoding_report", "model_depth_report", "model_circuit", "DENSE_MEASURED_MAX"]

#: Largest width for which :func:`dense_baseline` synthesises and transpiles a
#: generic unitary (7 qubits: ~15,000 two-qubit gates on FakeTorino, ~4 s).
DENSE_MEASURED_MAX = 7

#: Largest width for which :func:`qsd_cx_count` evaluates its formula (exact integers).
MAX_FORMULA_QUBITS = 1024


@dataclass
class DepthReport:
    """What a circuit costs on a device (see the module docstring for the estimates).

    Attributes
    ----------
    name : str
        The circuit's name.
    kind : {"measured", "formula"}
        ``"formula"``: only ``two_qubit_gates`` is set, from Qiskit's
        documented bound (dense baseline beyond :data:`DENSE_MEASURED_MAX`).
    n_qubits : int
    layers, k, logical_gates : int or None
        The staircase's depth ``D``, gate width and number of gates
        (``None`` for a circuit that is not a staircase).
    backend : str or None
        Device model name (``None`` with bare ``basis_gates``).
    basis_gates : list of str
    optimization_level, seed : int
        Qiskit's preset pass manager settings (``seed`` = ``seed_transpiler``).
    two_qubit_gates, depth, two_qubit_depth, swaps : int or None
        Of the transpiled circuit; ``swaps`` = SWAP gates inserted by routing
        (before they are translated to the basis).
    two_qubit_gates_per_gate : float or None
        ``two_qubit_gates / logical_gates`` for a staircase.
    duration_ns : float or None
        ASAP-scheduled duration of the gates (no read-out), from the device's
        gate times.
    success_probability : float or None
        ``prod(1 - gate error)`` over the transpiled gates.
    readout_probability : float or None
        ``prod(1 - read-out error)`` over the measured qubits (all used qubits
        when the circuit measures none).
    success_with_readout : float or None
        ``success_probability * readout_probability``: the estimated success
        probability including read-out.
    layout : list of int or None
        ``layout[q]`` = physical qubit holding qtnn qubit ``q`` at the end
        (qtnn order: qubit 0 is the most significant bit).
    initial_layout : list of int or None
        The same at the start of the circuit.
    on_line : bool or None
        For a ``k = 2`` staircase: every gate's two qubits are neighbours on the
        device, before and after (a line of the coupling map, no SWAP needed).
    count_ops : dict
        Operation counts of the transpiled circuit.
    all_to_all_two_qubit_gates : int or None
        Dense baseline only: CX count of Qiskit's synthesis with all-to-all
        connectivity (measured up to :data:`DENSE_MEASURED_MAX`, formula above).
    seconds : float
        Wall time of the transpilation.
    note : str
        What the numbers are (estimate, formula ...).
    encoding_fidelity : float or None
        Report of an input encoding (:func:`encoding_report`): the fidelity
        :math:`|\\langle x|G|0\\rangle|^2` of the encoded input (1 for ``StatePrep``).
    encoding : DepthReport or None
        :func:`model_depth_report`: the input encoding in front of this circuit.
    total : DepthReport or None
        :func:`model_depth_report`: encoding + circuit + measurement of the
        read-out qubits, transpiled as one circuit (what the device runs).

    Examples
    --------
    >>> from qtnn.staircase import Staircase
    >>> r = depth_report(Staircase.random(3, 1, seed=0), basis_gates=["cx", "u"])
    >>> r.kind, r.two_qubit_gates <= 6, r.duration_ns is None
    ('measured', True, True)
    >>> sorted(r.to_dict())[:3]
    ['all_to_all_two_qubit_gates', 'backend', 'basis_gates']
    """

    name: str
    kind: str
    n_qubits: int
    layers: int | None = None
    k: int | None = None
    logical_gates: int | None = None
    backend: str | None = None
    basis_gates: list[str] = field(default_factory=list)
    optimization_level: int = 3
    seed: int = 0
    two_qubit_gates: int | None = None
    two_qubit_gates_per_gate: float | None = None
    depth: int | None = None
    two_qubit_depth: int | None = None
    swaps: int | None = None
    duration_ns: float | None = None
    success_probability: float | None = None
    readout_probability: float | None = None
    layout: list[int] | None = None
    initial_layout: list[int] | None = None
    on_line: bool | None = None
    count_ops: dict[str, int] = field(default_factory=dict)
    all_to_all_two_qubit_gates: int | None = None
    seconds: float = 0.0
    note: str = ""
    success_with_readout: float | None = None
    encoding_fidelity: float | None = None
    encoding: DepthReport | None = None
    total: DepthReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return asdict(self)


# ------------------------------------------------------------------ helpers
def _as_circuit(circuit: Any) -> tuple[QuantumCircuit, Staircase | None]:
    from qiskit import QuantumCircuit

    from qtnn.analysis.export import to_qiskit
    from qtnn.staircase import Staircase

    if isinstance(circuit, Staircase):
        return to_qiskit(circuit, decompose="native"), circuit
    if isinstance(circuit, QuantumCircuit):
        return circuit, None
    raise QtnnTypeError(f"circuit must be a qtnn.staircase.Staircase or a qiskit.QuantumCircuit, "
                        f"got {type(circuit).__name__} {short_repr(circuit)}")


def _resolve_target(backend: Any, basis_gates: Any, coupling_map: Any
                    ) -> tuple[Any, str | None, list[str]]:
    """(backend object or None, backend label, basis gates)."""
    from qtnn.quantum.ibm import backend_by_name

    if backend is not None and (basis_gates is not None or coupling_map is not None):
        raise QtnnError(f"give either backend (got {short_repr(backend)}) or basis_gates/coupling_map, "
                        f"not both")
    if backend is None and basis_gates is None:
        backend = "fake:torino"
    if backend is not None:
        be = backend_by_name(backend, argument="backend")
        label = backend if isinstance(backend, str) else f"{getattr(be, 'name', type(be).__name__)}"
        basis = sorted(n for n in be.operation_names
                       if n not in ("measure", "reset", "delay", "if_else", "for_loop",
                                    "switch_case", "while_loop", "barrier", "box"))
        return be, label, basis
    if isinstance(basis_gates, str) or not isinstance(basis_gates, (list, tuple)) or not basis_gates \
            or not all(isinstance(g, str) for g in basis_gates):
        raise QtnnError(f"basis_gates must be a non-empty list of gate names such as "
                        f"['cx', 'rz', 'sx', 'x'], got {short_repr(basis_gates)}")
    from qiskit.circuit.library import get_standard_gate_name_mapping

    known = get_standard_gate_name_mapping()
    bad = [g for g in basis_gates if g not in known]
    if bad:
        raise QtnnError(f"basis_gates holds unknown gate names {bad}; known: "
                        f"{', '.join(sorted(known))}")
    return None, None, list(basis_gates)


def _edges(coupling_map: Any) -> list[tuple[int, int]]:
    """``[[control, target], ...]`` as pairs of distinct qubit indices >= 0 (else a QtnnError)."""
    if isinstance(coupling_map, (str, bytes)) or not isinstance(coupling_map, Sequence):
        raise QtnnError(f"coupling_map must be a list of [control, target] pairs, got "
                        f"{short_repr(coupling_map)}")
    edges = []
    for e in coupling_map:
        if (isinstance(e, (str, bytes)) or not isinstance(e, Sequence) or len(e) != 2
                or any(isinstance(q, bool) or not isinstance(q, numbers.Integral) or q < 0 for q in e)
                or e[0] == e[1]):
            raise QtnnError(f"coupling_map must be a list of [control, target] pairs of distinct qubit "
                            f"indices >= 0, got the entry {short_repr(e)}")
        edges.append((int(e[0]), int(e[1])))
    return edges


def _transpile(qc: QuantumCircuit, be: Any, basis: list[str], coupling_map: Any,
               optimization_level: int, seed: int) -> tuple[QuantumCircuit, int]:
    """Transpile with the preset pass manager; also return the SWAPs routing inserted."""
    from qiskit.transpiler import CouplingMap
    from qiskit.transpiler.preset_passmanagers import generate_preset_pass_manager

    if be is not None:
        pm = generate_preset_pass_manager(optimization_level=optimization_level, backend=be,
                                          seed_transpiler=seed)
    else:
        cm = None
        if coupling_map is not None:
            try:
                cm = coupling_map if isinstance(coupling_map, CouplingMap) else CouplingMap(
                    _edges(coupling_map))
            except (TypeError, ValueError, OverflowError) as exc:
                raise QtnnError(f"coupling_map must be a list of [control, target] pairs, got "
                                f"{short_repr(coupling_map)}") from exc
            if cm.size() < qc.num_qubits:
                raise QtnnError(f"circuit {qc.name!r} has {qc.num_qubits} qubits, more than the "
                                f"{cm.size()} of coupling_map")
        pm = generate_preset_pass_manager(optimization_level=optimization_level, basis_gates=basis,
                                          coupling_map=cm, seed_transpiler=seed)
    before = qc.count_ops().get("swap", 0)
    most = [before]

    def watch(**kw: Any) -> None:
        # SWAPs exist between routing and translation; the most seen at once is
        # what routing inserted (the input's own SWAPs subtracted).
        most[0] = max(most[0], kw["dag"].count_ops().get("swap", 0))

    try:
        out = pm.run(qc, callback=watch)
    except Exception as exc:  # TranspilerError and friends
        raise QtnnError(f"Qiskit could not transpile circuit {qc.name!r} "
                        f"(optimization_level={optimization_level}): {exc}") from exc
    return out, max(0, most[0] - before)


def _estimates(tqc: QuantumCircuit, target: Any, used: Sequence[int]
               ) -> tuple[float | None, float | None, float | None]:
    """ASAP duration [ns], gate success probability, read-out success probability."""
    if target is None:
        return None, None, None
    clock: dict[int, float] = {}
    log_ok = 0.0
    for inst in tqc.data:
        name = inst.operation.name
        if name in ("barrier", "delay"):
            continue
        qargs = tuple(tqc.find_bit(b).index for b in inst.qubits)
        props = None
        if name in target:
            try:
                props = target[name].get(qargs)
            except (AttributeError, KeyError):
                props = None
        dur = float(props.duration) if props is not None and props.duration else 0.0
        err = float(props.error) if props is not None and props.error else 0.0
        start = max((clock.get(q, 0.0) for q in qargs), default=0.0)
        for q in qargs:
            clock[q] = start + dur
        log_ok += math.log1p(-min(err, 1.0 - 1e-300))
    duration = max(clock.values(), default=0.0) * 1e9
    measured = sorted({tqc.find_bit(inst.qubits[0]).index for inst in tqc.data
                       if inst.operation.name == "measure"})
    read_log = 0.0
    for q in measured or used:
        props = target["measure"].get((q,)) if "measure" in target else None
        if props is not None and props.error:
            read_log += math.log1p(-min(float(props.error), 1.0 - 1e-300))
    return duration, math.exp(log_ok), math.exp(read_log)


def _layouts(tqc: QuantumCircuit, n: int) -> tuple[list[int] | None, list[int] | None]:
    lay = tqc.layout
    if lay is None:
        return list(range(n)), list(range(n))
    final = lay.final_index_layout()
    initial = lay.initial_index_layout(filter_ancillas=True)
    # qtnn qubit q is qiskit virtual qubit n-1-q
    return [int(final[n - 1 - q]) for q in range(n)], [int(initial[n - 1 - q]) for q in range(n)]


def _on_line(layout: list[int] | None, initial: list[int] | None, coupling: Any) -> bool | None:
    if coupling is None or layout is None or initial is None:
        return None
    edges = {tuple(e) for e in coupling.get_edges()}
    edges |= {(b, a) for a, b in edges}
    return all((lay[q], lay[q + 1]) in edges
               for lay in (layout, initial) for q in range(len(lay) - 1))


# ------------------------------------------------------------------ public
def depth_report(circuit: Staircase | QuantumCircuit, backend: Any = None, *,
                 basis_gates: Sequence[str] | None = None, coupling_map: Any = None,
                 optimization_level: int = 3, seed: int = 0, name: str | None = None) -> DepthReport:
    """Transpile ``circuit`` for a device (model) and report its cost.

    Parameters
    ----------
    circuit : Staircase or qiskit.QuantumCircuit
        A staircase is exported with :func:`~qtnn.analysis.to_qiskit` (native
        magic-basis form: 2 CX per real gate, 3 with ``det = -1``).
    backend : str or qiskit BackendV2, optional
        ``"fake:<model>"`` (e.g. ``"fake:torino"``, ``"fake:sherbrooke"``),
        ``"ibm:<name>"`` or a backend object.  Default ``"fake:torino"`` unless
        ``basis_gates`` is given.
    basis_gates : list of str, optional
        Transpile for a bare gate set instead (no durations or errors, so the
        two estimates are ``None``).
    coupling_map : list of pairs or CouplingMap, optional
        With ``basis_gates`` only; default all-to-all.
    optimization_level : {0, 1, 2, 3}
        Qiskit's preset pass manager level (default 3).
    seed : int
        ``seed_transpiler`` (layout and routing are randomised; the result is
        deterministic for a fixed seed).
    name : str, optional
        Label for the report (default: the circuit's name).

    Returns
    -------
    DepthReport

    Raises
    ------
    QtnnError
        Unknown backend (the valid device models are listed), a circuit wider
        than the device, bad ``optimization_level``/``basis_gates``, or a
        transpiler failure.

    Examples
    --------
    >>> from qtnn.staircase import Staircase
    >>> r = depth_report(Staircase.random(4, 1, seed=0), "fake:torino")
    >>> r.layers, r.logical_gates, r.swaps, r.on_line
    (1, 3, 0, True)
    >>> r.two_qubit_gates <= 3 * r.logical_gates and 0 < r.success_probability < 1
    True
    """
    qc, stair = _as_circuit(circuit)
    optimization_level = check_int("optimization_level", optimization_level, minimum=0, maximum=3)
    seed = check_int("seed", seed, minimum=0)
    be, label, basis = _resolve_target(backend, basis_gates, coupling_map)
    n = qc.num_qubits
    if be is not None and n > be.num_qubits:
        raise QtnnError(f"circuit {qc.name!r} has {n} qubits, more than the {be.num_qubits} "
                        f"qubits of backend {label!r}")
    t0 = time.perf_counter()
    tqc, swaps = _transpile(qc, be, basis, coupling_map, optimization_level, seed)
    seconds = time.perf_counter() - t0
    ops = {k: int(v) for k, v in tqc.count_ops().items()}
    two_q = sum(1 for inst in tqc.data
                if inst.operation.num_qubits >= 2 and inst.operation.name != "barrier")
    depth2 = tqc.depth(lambda inst: inst.operation.num_qubits >= 2
                       and inst.operation.name != "barrier")
    layout, initial = _layouts(tqc, n)
    target = be.target if be is not None else None
    duration, p_gates, p_read = _estimates(tqc, target, layout or [])
    coupling = be.coupling_map if be is not None else None
    if be is None and coupling_map is not None:
        from qiskit.transpiler import CouplingMap

        coupling = coupling_map if isinstance(coupling_map, CouplingMap) else CouplingMap(
            _edges(coupling_map))
    logical = stair.num_gates if stair is not None else None
    return DepthReport(
        name=name or qc.name, kind="measured", n_qubits=n,
        layers=stair.layers if stair is not None else None,
        k=stair.k if stair is not None else None, logical_gates=logical,
        backend=label, basis_gates=basis, optimization_level=optimization_level, seed=seed,
        two_qubit_gates=two_q,
        two_qubit_gates_per_gate=(two_q / logical) if logical else None,
        depth=int(tqc.depth()), two_qubit_depth=int(depth2), swaps=int(swaps),
        duration_ns=duration, success_probability=p_gates, readout_probability=p_read,
        success_with_readout=(p_gates * p_read if p_gates is not None and p_read is not None
                              else None),
        layout=layout, initial_layout=initial,
        on_line=(_on_line(layout, initial, coupling) if stair is not None and stair.k == 2
                 else None),
        count_ops=ops, seconds=seconds,
        note=("estimates from the device's calibration: ASAP gate duration, prod(1 - error)"
              if be is not None else "bare basis: no durations or error rates"))


def _input(n: int, x: Any, seed: int) -> Any:
    """``x`` as a float array of ``2**n`` entries, or a generic (Gaussian, seeded) input."""
    import numpy as np

    if x is None:
        return np.random.default_rng(seed).normal(size=2**n)
    arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    if arr.ndim != 1 or arr.size > 2**n or arr.size == 0:
        raise QtnnError(f"x must be one input of at most 2**n_qubits = {2**n} entries, got shape "
                        f"{arr.shape}")
    return np.pad(arr, (0, 2**n - arr.size))


def encoding_report(n_qubits: int, encoding: str = "amplitude", layers: int = 2, backend: Any = None, *,
                    basis_gates: Sequence[str] | None = None, coupling_map: Any = None,
                    optimization_level: int = 3, seed: int = 0, x: Any = None) -> DepthReport:
    """What encoding one input costs on a device: ``StatePrep`` or the bounded-depth staircase.

    The circuit is :func:`qtnn.quantum.encoding.encoding_circuit` of ``x`` (default:
    a generic input, Gaussian entries drawn with ``seed``), transpiled by
    :func:`depth_report` (no measurement; the read-out estimate is over the used
    qubits).  ``StatePrep`` of a real input costs ``O(2**n)`` two-qubit gates;
    the staircase ``layers * (n - 1)`` gates of at most 3 CX each, linear in
    ``n``, at the price of a fidelity below 1 (``encoding_fidelity``).

    Parameters
    ----------
    n_qubits : int
    encoding : {"amplitude", "staircase"}
    layers : int
        Staircase layers ``D`` (``encoding="staircase"`` only).
    backend, basis_gates, coupling_map, optimization_level, seed
        As in :func:`depth_report`.
    x : array, optional
        The input (at most ``2**n_qubits`` entries, zero-padded).

    Examples
    --------
    >>> r = encoding_report(4, "staircase", 1, basis_gates=["cx", "u"])
    >>> r.name, r.layers, r.logical_gates, r.two_qubit_gates <= 3 * 3, 0 < r.encoding_fidelity <= 1
    ('encoding_staircase_n4_D1', 1, 3, True, True)
    >>> encoding_report(4, basis_gates=["cx", "u"]).two_qubit_gates    # StatePrep: 2**n - n - 1 here
    11
    """
    from qtnn.quantum.encoding import MAX_QUBITS, encoding_circuit
    from qtnn.validate import check_choice

    n = check_int("n_qubits", n_qubits, minimum=2, maximum=MAX_QUBITS)
    encoding = check_choice("encoding", encoding, ("amplitude", "staircase"))
    layers = check_int("layers", layers, minimum=1, maximum=64)
    seed = check_int("seed", seed, minimum=0)
    qc, fid = encoding_circuit(_input(n, x, seed), encoding, layers)
    rep = depth_report(qc, backend, basis_gates=basis_gates, coupling_map=coupling_map,
                       optimization_level=optimization_level, seed=seed)
    rep.encoding_fidelity = fid
    if encoding == "staircase":
        rep.layers, rep.k, rep.logical_gates = layers, 2, layers * (n - 1)
        rep.two_qubit_gates_per_gate = (rep.two_qubit_gates or 0) / rep.logical_gates
    rep.note += ("; input encoding of " + ("a generic input" if x is None else "the given input"))
    return rep


def _quantum_body(model: Any) -> Any:
    """The QuantumStaircase of a HybridClassifier, QuantumHead or QuantumStaircase."""
    body = getattr(model, "head", model)
    body = getattr(body, "body", body)
    if not (hasattr(body, "circuit") and hasattr(body, "encoding") and hasattr(body, "readout_wires")):
        raise QtnnTypeError(f"model must be a HybridClassifier with a quantum head, a QuantumHead or a "
                            f"QuantumStaircase, got {type(model).__name__}"
                            + (f" with a {type(model.head).__name__} head" if hasattr(model, "head")
                               else ""))
    return body


def model_circuit(model: Any, x: Any = None, *, seed: int = 0, measure: bool = True) -> QuantumCircuit:
    """The Qiskit circuit a device runs for one input of a quantum head: encoding, head, read-out.

    The model's own input encoding of ``x`` (:func:`qtnn.quantum.encoding.encoding_circuit`;
    default a generic input drawn with ``seed``), then the trained staircase
    (:func:`~qtnn.analysis.to_qiskit`, native form), then -- with ``measure`` --
    the measurement of the read-out wires into a register ``readout``
    (wire ``w`` is Qiskit qubit ``n - 1 - w``).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from qiskit.quantum_info import Statevector
    >>> from qtnn.nn import QuantumHead
    >>> head = QuantumHead(8, n_qubits=3, layers=1, n_classes=2, dtype=torch.float64)
    >>> x = np.arange(1.0, 9.0)
    >>> p = Statevector(model_circuit(head, x, measure=False)).probabilities([2])   # wire 0
    >>> bool(np.allclose(p, head.body(torch.tensor(x)).detach().numpy()))
    True
    """
    from qiskit import ClassicalRegister

    from qtnn.analysis.export import to_qiskit
    from qtnn.quantum.encoding import encoding_circuit

    body = _quantum_body(model)
    n = int(body.n_qubits)
    qc, _ = encoding_circuit(_input(n, x, check_int("seed", seed, minimum=0)), body.encoding,
                             body.encoding_layers)
    head = to_qiskit(body.circuit.to_staircase(), decompose="native")
    total = qc.compose(head)
    total.name = f"{qc.name}+{head.name}"
    if measure:
        wires = list(body.readout_wires)
        creg = ClassicalRegister(len(wires), "readout")
        total.add_register(creg)
        for i, w in enumerate(wires):
            total.measure(n - 1 - w, creg[i])
    return total


def model_depth_report(model: Any, backend: Any = None, *, basis_gates: Sequence[str] | None = None,
                       coupling_map: Any = None, optimization_level: int = 3, seed: int = 0,
                       x: Any = None, name: str | None = None) -> DepthReport:
    """Cost of a trained quantum head together with its own input encoding.

    The head's staircase is reported by :func:`depth_report`; its ``encoding``
    field is the :func:`encoding_report` of the model's encoding (``StatePrep``,
    or the staircase encoding with the model's ``encoding_layers``), and its
    ``total`` field the report of encoding + head + measurement of the
    read-out wires, transpiled as one circuit: what a device runs per input.
    ``total.success_with_readout`` is the estimated success probability
    including the read-out of the measured qubits.  The parts are transpiled
    separately (their own layouts), so their counts need not add up to the
    total exactly.

    Parameters
    ----------
    model : HybridClassifier, QuantumHead or QuantumStaircase
    backend, basis_gates, coupling_map, optimization_level, seed
        As in :func:`depth_report`.
    x : array, optional
        The input to encode (default a generic input drawn with ``seed``).
    name : str, optional
        Label of the head's report (default ``"head"``).

    Raises
    ------
    QtnnTypeError
        ``model`` has no quantum head (e.g. a ``DisentangledLinear`` head).

    Examples
    --------
    >>> import torch
    >>> from qtnn.nn import QuantumHead
    >>> head = QuantumHead(16, n_qubits=4, layers=1, n_classes=4, encoding="staircase", encoding_layers=1,
    ...                    dtype=torch.float64)
    >>> r = model_depth_report(head, basis_gates=["cx", "u"])
    >>> r.encoding.name, r.encoding.logical_gates, r.total.count_ops["measure"]
    ('encoding_staircase_n4_D1', 3, 2)
    >>> r.total.two_qubit_gates <= r.encoding.two_qubit_gates + r.two_qubit_gates
    True
    """
    body = _quantum_body(model)
    n = int(body.n_qubits)
    st = body.circuit.to_staircase()
    head = depth_report(st, backend, basis_gates=basis_gates, coupling_map=coupling_map,
                        optimization_level=optimization_level, seed=seed, name=name or "head")
    enc = encoding_report(n, body.encoding, body.encoding_layers, backend, basis_gates=basis_gates,
                          coupling_map=coupling_map, optimization_level=optimization_level, seed=seed,
                          x=x)
    head.encoding = enc
    head.total = depth_report(model_circuit(body, x, seed=seed), backend, basis_gates=basis_gates,
                              coupling_map=coupling_map, optimization_level=optimization_level,
                              seed=seed)
    head.total.encoding_fidelity = enc.encoding_fidelity
    return head


def qsd_cx_count(n: int) -> int:
    """Qiskit's documented CX count of a generic ``n``-qubit unitary (all-to-all).

    ``22/48 4^n - 3/2 2^n + 5/3`` for :func:`qiskit.synthesis.qs_decomposition`
    with its optimisations (Shende, Bullock & Markov 2006; Krol & Al-Ars,
    arXiv:2403.13692), the count Qiskit's documentation states.

    Examples
    --------
    >>> [qsd_cx_count(n) for n in (2, 3, 8, 12)]
    [3, 19, 29655, 7683415]
    """
    n = check_int("n", n, minimum=1, maximum=MAX_FORMULA_QUBITS)
    if n == 1:
        return 0
    return round(Fraction(22, 48) * 4**n - Fraction(3, 2) * 2**n + Fraction(5, 3))


def dense_baseline(n: int, backend: Any = None, *, basis_gates: Sequence[str] | None = None,
                   coupling_map: Any = None, optimization_level: int = 3, seed: int = 0,
                   measure_up_to: int = DENSE_MEASURED_MAX) -> DepthReport:
    """Cost of a generic (Haar-random) ``n``-qubit unitary on the same device.

    For ``n <= measure_up_to`` the unitary (``qiskit.quantum_info.random_unitary``
    with ``seed``) is synthesised and transpiled exactly like
    :func:`depth_report` does, and its all-to-all CX count is measured with
    :func:`qiskit.synthesis.qs_decomposition`; beyond, only
    ``all_to_all_two_qubit_gates`` and ``two_qubit_gates`` are filled, from
    :func:`qsd_cx_count`, and ``kind == "formula"``.

    Examples
    --------
    >>> r = dense_baseline(3, "fake:torino")
    >>> r.kind, r.all_to_all_two_qubit_gates, r.two_qubit_gates >= 19
    ('measured', 19, True)
    >>> dense_baseline(10).kind
    'formula'
    """
    n = check_int("n", n, minimum=1, maximum=MAX_FORMULA_QUBITS)
    measure_up_to = check_int("measure_up_to", measure_up_to, minimum=0, maximum=10)
    optimization_level = check_int("optimization_level", optimization_level, minimum=0, maximum=3)
    seed = check_int("seed", seed, minimum=0)
    if n > measure_up_to:
        be, label, basis = _resolve_target(backend, basis_gates, coupling_map)
        if be is not None and n > be.num_qubits:
            raise QtnnError(f"a dense {n}-qubit unitary needs {n} qubits, more than the "
                            f"{be.num_qubits} qubits of backend {label!r}")
        cx = qsd_cx_count(n)
        return DepthReport(name=f"dense_n{n}", kind="formula", n_qubits=n, backend=label,
                           basis_gates=basis, optimization_level=optimization_level, seed=seed,
                           two_qubit_gates=cx, all_to_all_two_qubit_gates=cx,
                           note="Qiskit's documented CX count of qs_decomposition, "
                                "22/48 4^n - 3/2 2^n + 5/3 (all-to-all, before routing): "
                                "a formula, not a measurement")
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import UnitaryGate
    from qiskit.quantum_info import random_unitary
    from qiskit.synthesis import qs_decomposition

    u = random_unitary(2**n, seed=seed).data
    qc = QuantumCircuit(n, name=f"dense_n{n}")
    qc.append(UnitaryGate(u, check_input=False), range(n))
    rep = depth_report(qc, backend, basis_gates=basis_gates, coupling_map=coupling_map,
                       optimization_level=optimization_level, seed=seed)
    rep.all_to_all_two_qubit_gates = (int(qs_decomposition(u).count_ops().get("cx", 0))
                                      if n > 1 else 0)
    rep.note += "; all_to_all_two_qubit_gates: qs_decomposition, measured"
    return rep


# ------------------------------------------------------------------ sweep
def _progress(iterable: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def depth_sweep(target: MPS | MPO, layers: Sequence[int] = (1, 2, 3, 4), backend: Any = None, *,
                basis_gates: Sequence[str] | None = None, optimization_level: int = 3,
                seed: int = 0, method: str = "iterative", max_bond: int = 1, dense: bool = True,
                name: str = "target", progress: bool = True,
                callback: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Fidelity (or error) against circuit cost, one row per number of staircase layers ``D``.

    Parameters
    ----------
    target : MPS or MPO
        An MPS (qubit sites) is prepared from ``|0...0>`` by
        :func:`~qtnn.staircase.encode_mps`; the row's ``fidelity`` is
        ``|<target|circuit|0>|^2``.  An MPO is split ``W ~ U M V^T`` by
        :func:`~qtnn.staircase.disentangle` with ``D`` layers per side and a
        residual of bond ``max_bond``; the row holds ``error`` (relative
        Frobenius), ``truncation_error`` (plain truncation to the same bond)
        and the costs of ``U`` and ``V^T`` added (two circuits run one after
        the other with ``M`` in between).
    layers : sequence of int
        The depths ``D`` to try (each ``>= 1``).
    backend, basis_gates, optimization_level, seed
        As in :func:`depth_report` (``seed`` also seeds the encoder).
    method : str
        Encoder for an MPS target (default ``"iterative"``).
    max_bond : int
        Residual bond for an MPO target.
    dense : bool
        Add the :func:`dense_baseline` of the same width (measured up to 7
        qubits, formula beyond).
    name : str
        Label of the target in the result.
    progress : bool
        A progress bar over the depths.
    callback : callable, optional
        Called with every finished row.

    Returns
    -------
    dict
        ``{"target", "kind" ("mps"|"mpo"), "n_qubits", "backend",
        "optimization_level", "rows": [...], "dense": DepthReport dict or None}``.

    Examples
    --------
    >>> from qtnn.staircase import heisenberg_ground_state
    >>> res = depth_sweep(heisenberg_ground_state(6), layers=[1, 2], dense=False, progress=False)
    >>> [r["layers"] for r in res["rows"]], res["rows"][1]["fidelity"] > res["rows"][0]["fidelity"]
    ([1, 2], True)
    """
    from qtnn.tn import MPO, MPS

    if not isinstance(layers, (list, tuple, range)) or not layers:
        raise QtnnError(f"layers must be a non-empty sequence of depths >= 1, got {short_repr(layers)}")
    depths = [check_int("layers", d, minimum=1) for d in layers]
    max_bond = check_int("max_bond", max_bond, minimum=1)
    if callback is not None and not callable(callback):
        raise QtnnTypeError(f"callback must be a callable (row dict -> None) or None, got "
                            f"{short_repr(callback)}")
    if isinstance(target, MPS):
        kind = "mps"
        n = target.num_sites
    elif isinstance(target, MPO):
        kind = "mpo"
        n = target.num_sites
    else:
        raise QtnnTypeError(f"target must be a qtnn.tn.MPS or qtnn.tn.MPO, got "
                            f"{type(target).__name__} {short_repr(target)}")
    be, label, _ = _resolve_target(backend, basis_gates, None)
    backend_arg = be if be is not None else None
    rows: list[dict[str, Any]] = []
    for d in _progress(depths, len(depths), f"depth sweep {name}", progress):
        t0 = time.perf_counter()
        if isinstance(target, MPS):
            from qtnn.staircase import encode_mps

            circ, enc = encode_mps(target, d, method=method, seed=seed)
            rep = depth_report(circ, backend_arg, name=f"{name}_D{d}", basis_gates=basis_gates,
                               optimization_level=optimization_level, seed=seed)
            row = {"layers": d, "fidelity": float(enc.final_fidelity), **_cost(rep)}
            row["report"] = rep.to_dict()
        else:
            from qtnn.staircase import disentangle

            dis = disentangle(target, d, d, max_bond, seed=seed)
            ru, rv = (depth_report(c, backend_arg, name=f"{name}_{side}_D{d}", basis_gates=basis_gates,
                                   optimization_level=optimization_level, seed=seed)
                      for c, side in ((dis.U, "U"), (dis.V.inverse(), "Vt")))
            row = {"layers": d, "error": float(dis.error),
                   "truncation_error": float(dis.truncation_error),
                   **_cost_sum(ru, rv), "report_U": ru.to_dict(), "report_Vt": rv.to_dict()}
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        if callback is not None:
            callback(row)
    n_dense = max(_side_qubits(target)) if isinstance(target, MPO) else n
    base = dense_baseline(n_dense, backend_arg, basis_gates=basis_gates,
                          optimization_level=optimization_level, seed=seed).to_dict() if dense else None
    return {"target": name, "kind": kind, "n_qubits": n, "backend": label,
            "optimization_level": optimization_level, "seed": seed,
            "method": method if kind == "mps" else "disentangle",
            "max_bond": max_bond if kind == "mpo" else None, "rows": rows, "dense": base}


def _cost(rep: DepthReport) -> dict[str, Any]:
    return {"two_qubit_gates": rep.two_qubit_gates, "depth": rep.depth,
            "two_qubit_depth": rep.two_qubit_depth, "swaps": rep.swaps,
            "duration_ns": rep.duration_ns, "success_probability": rep.success_probability,
            "logical_gates": rep.logical_gates}


def _cost_sum(a: DepthReport, b: DepthReport) -> dict[str, Any]:
    def add(x: Any, y: Any) -> Any:
        return None if x is None or y is None else x + y

    def mul(x: Any, y: Any) -> Any:
        return None if x is None or y is None else x * y

    return {"two_qubit_gates": add(a.two_qubit_gates, b.two_qubit_gates),
            "depth": add(a.depth, b.depth), "two_qubit_depth": add(a.two_qubit_depth, b.two_qubit_depth),
            "swaps": add(a.swaps, b.swaps), "duration_ns": add(a.duration_ns, b.duration_ns),
            "success_probability": mul(a.success_probability, b.success_probability),
            "logical_gates": add(a.logical_gates, b.logical_gates)}


def _side_qubits(mpo: MPO) -> tuple[int, int]:
    out = sum(1 for c in mpo.cores if c.shape[1] > 1)
    inp = sum(1 for c in mpo.cores if c.shape[2] > 1)
    return out, inp
