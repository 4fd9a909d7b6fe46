"""The staircase circuit as a PennyLane template of native, trainable gates.

:class:`StaircaseTemplate` applies ``D`` staircase layers of real orthogonal
two-qubit gates (``docs/design/math.md``, section 2; Ran, PRA 101, 032310 (2020)) in the
magic-basis parametrisation of :mod:`qtnn.staircase.magic` (Vatan & Williams,
PRA 69, 032315 (2004)).  Each gate on wires ``(w_j, w_{j+1})`` decomposes
into (first gate first)::

    [CZ(w_j, w_j+1) if det = -1]
    S(w_j)  S(w_j+1)  H(w_j+1)  CNOT(w_j+1 -> w_j)                      # M
    RZ(phi_A) RY(theta_A) RZ(omega_A) on w_j                            # A
    RZ(phi_B) RY(theta_B) RZ(omega_B) on w_j+1                          # B
    CNOT(w_j+1 -> w_j)  H(w_j+1)  S^dagger(w_j)  S^dagger(w_j+1)        # M^dagger

so the only trainable gates are ``RZ`` and ``RY`` (two-term parameter-shift
rule; adjoint differentiation on ``lightning.qubit``), and the matrix of the
decomposition equals :meth:`qtnn.staircase.Staircase.to_matrix` of
``magic_gates(weights, dets)`` exactly (wire ``wires[0]`` is qubit 0, the most
significant bit).

Complex gates and gates on ``k > 2`` qubits have no such native form here;
:class:`~qtnn.quantum.qnode.StaircaseQNode` runs them as one
``qml.QubitUnitary`` per gate, which is differentiable by backpropagation on
``default.qubit`` only.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pennylane as qml
from pennylane import math
from pennylane.decomposition import add_decomps, adjoint_resource_rep, register_resources
from pennylane.operation import Operation
from pennylane.wires import Wires

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.validate import check_choice, check_int

__all__ = ["StaircaseTemplate"]


def _check_dets(dets: Any, layers: int, g_count: int) -> tuple[tuple[int, ...], ...]:
    from qtnn.staircase.magic import check_dets

    want = (layers, g_count)
    d = check_dets(dets, want, shape_text=f"(layers, n_wires-1) = {want}")
    return tuple(tuple(int(v) for v in row) for row in d)


class StaircaseTemplate(Operation):
    r"""``D`` staircase layers of real orthogonal two-qubit gates in native PennyLane gates.

    Parameters
    ----------
    weights : tensor_like, shape (D, n-1, 6) or (batch, D, n-1, 6)
        Magic-basis angles of gate ``j`` of layer ``l`` (see
        :func:`qtnn.staircase.magic.magic_gates`).  A leading batch axis is
        parameter broadcasting.  Trainable (numpy, autograd, torch, ...).
    dets : array_like of +-1, shape (D, n-1), optional
        Determinant of each gate (default all ``+1``).  A hyperparameter:
        not trainable, stored as a tuple of tuples.
    wires : sequence, length n >= 2
        ``wires[0]`` is qubit 0 (the most significant bit).

    Raises
    ------
    QtnnError
        Bad shapes, fewer than 2 wires, ``dets`` not in ``{+1, -1}``,
        non-finite weights.

    Notes
    -----
    Gate ``(l, j)`` acts on ``(wires[j], wires[j+1])``; layer 0 first and, in
    a layer, ``j = 0, 1, ..., n-2`` in that order, so the template's matrix is
    ``Staircase(n, D, gates=magic_gates(weights, dets)).to_matrix()``.  The
    decomposition of one gate is listed in :mod:`qtnn.quantum.template`:
    6 ``RZ``/``RY`` rotations, 2 ``CNOT``, 2 ``H``, 2 ``S``, 2 ``S^dagger`` and
    one ``CZ`` when ``det = -1``.  ``grad_method = None``: PennyLane's gradient
    transforms and devices decompose the template into these gates.

    Examples
    --------
    >>> import numpy as np, pennylane as qml
    >>> from qtnn.staircase import Staircase
    >>> from qtnn.staircase.magic import magic_gates
    >>> w = np.random.default_rng(0).normal(size=(2, 2, 6))
    >>> op = StaircaseTemplate(w, dets=[[1, -1], [-1, 1]], wires=[0, 1, 2])
    >>> u = qml.matrix(op, wire_order=[0, 1, 2])
    >>> ref = Staircase(3, 2, gates=magic_gates(w, [[1, -1], [-1, 1]])).to_matrix()
    >>> bool(np.abs(u - ref).max() < 1e-12)
    True
    >>> len(op.decomposition())
    58
    """

    grad_method = None
    ndim_params = (3,)
    resource_keys: ClassVar[set[str]] = {"num_wires", "num_layers", "num_reflections"}

    def __init__(self, weights: Any, dets: Any = None, wires: Any = None,
                 layout: str = "staircase") -> None:
        if wires is None:
            raise QtnnError("wires must be given (a sequence of at least 2 wires), got None")
        wires = Wires(wires)
        n = len(wires)
        if n < 2:
            raise QtnnError(f"wires must hold at least 2 wires for two-qubit gates, got {n} "
                            f"({wires.tolist()})")
        from qtnn.staircase.circuit import GeneratorParams

        if isinstance(weights, GeneratorParams):
            raise QtnnTypeError("weights must be magic-basis angles, got the generator coordinates of "
                                "Staircase.params() (same shape, another meaning); use "
                                "StaircaseTemplate.from_staircase(circ, wires) or "
                                "qtnn.staircase.magic.magic_angles(circ.gates)")
        shape = tuple(int(s) for s in math.shape(weights))
        if len(shape) not in (3, 4) or shape[-1] != 6 or shape[-2] != n - 1 or shape[-3] < 1:
            raise QtnnError(f"weights must have shape (layers, n_wires-1, 6) = (D, {n - 1}, 6) with "
                            f"D >= 1 (or a leading batch axis) for {n} wires, got {shape}")
        if not math.is_abstract(weights):
            vals = weights.detach().cpu().numpy() if hasattr(weights, "detach") else \
                np.asarray(math.unwrap(weights))
            if np.iscomplexobj(vals):
                raise QtnnError(f"weights must be real angles, got dtype {vals.dtype}")
            if not (np.issubdtype(vals.dtype, np.number) or vals.dtype == np.bool_):
                raise QtnnTypeError(f"weights must hold real angles, got dtype {vals.dtype}")
            if not np.all(np.isfinite(vals)):
                raise QtnnError(f"weights must be finite, got NaN or inf in an array of shape {shape}")
        from qtnn.staircase.circuit import LAYOUTS

        layout = check_choice("layout", layout, LAYOUTS)
        self._hyperparameters = {"dets": _check_dets(dets, shape[-3], n - 1), "layout": layout}
        super().__init__(weights, wires=wires)

    @classmethod
    def from_staircase(cls, circ: Any, wires: Any = None) -> StaircaseTemplate:
        """The template of a :class:`qtnn.staircase.Staircase` of real two-qubit gates.

        The gates are converted to magic-basis angles and determinants
        (:func:`qtnn.staircase.magic.magic_angles`); the layout is the
        circuit's.  ``wires`` defaults to ``range(n_qubits)``.

        Examples
        --------
        >>> import numpy as np, pennylane as qml
        >>> from qtnn.staircase import Staircase
        >>> circ = Staircase.random(3, 2, seed=1)
        >>> op = StaircaseTemplate.from_staircase(circ)
        >>> bool(np.abs(qml.matrix(op, wire_order=[0, 1, 2]) - circ.to_matrix()).max() < 1e-12)
        True
        """
        from qtnn.staircase import Staircase
        from qtnn.staircase.magic import magic_angles

        if not isinstance(circ, Staircase):
            raise QtnnTypeError(f"circ must be a qtnn.staircase.Staircase, got {type(circ).__name__}")
        if circ.k != 2 or circ.is_complex:
            raise QtnnError(f"circ must have real two-qubit gates (k=2, real), got k={circ.k}, "
                            f"complex={circ.is_complex}")
        if circ.layers < 1:
            raise QtnnError("circ must have at least one layer, got 0")
        wires = list(range(circ.n_qubits)) if wires is None else wires
        if len(Wires(wires)) != circ.n_qubits:
            raise QtnnError(f"wires must name the circuit's {circ.n_qubits} qubits, got "
                            f"{len(Wires(wires))} wires")
        angles, dets = magic_angles(circ.gates)
        return cls(np.asarray(angles), dets=dets, wires=wires, layout=circ.layout)

    @property
    def num_params(self) -> int:
        """One trainable tensor, ``weights``."""
        return 1

    @property
    def resource_params(self) -> dict:
        """Resource parameters for PennyLane's graph decomposition."""
        dets = self.hyperparameters["dets"]
        return {"num_wires": len(self.wires), "num_layers": len(dets),
                "num_reflections": sum(v < 0 for row in dets for v in row)}

    @staticmethod
    def shape(n_layers: int, n_wires: int) -> tuple[int, int, int]:
        """Shape ``(n_layers, n_wires - 1, 6)`` of ``weights`` (PennyLane's argument order).

        The arguments follow PennyLane's templates (e.g.
        ``StronglyEntanglingLayers.shape(n_layers, n_wires)``); before this
        release the order was ``(n_wires, layers)``: pass keywords to be safe.

        Examples
        --------
        >>> StaircaseTemplate.shape(n_layers=2, n_wires=4)
        (2, 3, 6)
        """
        return (check_int("n_layers", n_layers, minimum=1), check_int("n_wires", n_wires, minimum=2) - 1, 6)

    @staticmethod
    def compute_decomposition(weights: Any, wires: Any, dets: tuple,
                              layout: str = "staircase") -> list:
        r"""The native gates (see the module docstring), layer 0 first, windows in ``layout`` order.

        Examples
        --------
        >>> import numpy as np
        >>> ops = StaircaseTemplate.compute_decomposition(np.zeros((1, 1, 6)), wires=[0, 1],
        ...                                               dets=((-1,),))
        >>> [op.name for op in ops][:5]
        ['CZ', 'S', 'S', 'Hadamard', 'CNOT']
        """
        from qtnn.staircase.circuit import window_order
        from qtnn.staircase.magic import native_sequence

        wires = Wires(wires)
        ops: list = []
        order = window_order(len(wires), 2, layout)
        for layer, row in enumerate(dets):
            for j in order:
                pair = (wires[j], wires[j + 1])
                for name, qubits, angle in native_sequence(row[j]):
                    ws = [pair[q] for q in qubits]
                    if angle is not None:
                        ops.append(_ROTATIONS[name](weights[..., layer, j, angle], ws))
                    elif name == "sdg":
                        ops.append(qml.adjoint(qml.S(ws)))
                    else:
                        ops.append(_FIXED[name](wires=ws))
        return ops


#: PennyLane's gates for the names of :func:`qtnn.staircase.magic.native_sequence`
_ROTATIONS: dict[str, Any] = {"rz": qml.RZ, "ry": qml.RY}
_FIXED: dict[str, Any] = {"s": qml.S, "h": qml.Hadamard, "cx": qml.CNOT, "cz": qml.CZ}


def _resources(num_wires: int, num_layers: int, num_reflections: int) -> dict:
    g = num_layers * (num_wires - 1)
    res = {qml.RZ: 4 * g, qml.RY: 2 * g, qml.CNOT: 2 * g, qml.Hadamard: 2 * g, qml.S: 2 * g,
           adjoint_resource_rep(qml.S): 2 * g}
    if num_reflections:
        res[qml.CZ] = num_reflections
    return res


@register_resources(_resources)
def _staircase_decomposition(weights: Any, wires: Any, dets: tuple, layout: str = "staircase",
                             **_: Any) -> None:
    StaircaseTemplate.compute_decomposition(weights, wires=wires, dets=dets,
                                            layout=layout)  # queues the gates


add_decomps(StaircaseTemplate, _staircase_decomposition)
