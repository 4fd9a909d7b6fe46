"""Batched, differentiable QNodes for staircase circuits (``docs/design/math.md``, section 5).

:class:`StaircaseQNode` builds the circuit ``encode(x) -> staircase -> readout``
once and runs a whole torch batch per call.

Encodings
---------
``"amplitude"``
    ``qml.StatePrep(x / ||x||)`` -- one instruction (pennylane-qiskit turns it
    into Qiskit's ``Initialize``; ``AmplitudeEmbedding`` would be decomposed
    into thousands of gates on Aer).  The norm is the caller's to keep.
``"staircase"``
    The bounded-depth encoding of each input's MPS (:func:`qtnn.staircase.encode_mps`,
    Ran, PRA 101, 032310 (2020); Rudolph et al., arXiv:2209.00595): fixed,
    non-trainable ``QubitUnitary`` gates per sample (broadcast over the batch).
    The global sign / phase is fixed so that ``<x|G|0> > 0``.  The fidelities
    ``|<x|G|0>|^2`` of the last call are in ``last_fidelities`` (and their
    mean / min in ``last_fidelity_mean`` / ``last_fidelity_min``).
``"none"``
    Start from ``|0...0>`` (``x`` must be ``None``).

Readouts
--------
``"state"``
    The amplitudes ``C |x>`` (``(B, 2**n)``; real when everything is real).
    Exact on ``default.qubit``, ``lightning.qubit``, ``qiskit.aer`` without
    shots.  On a sampling device (shots, ``fake:``, ``ibm:``) real circuits are
    read by the signed-amplitude estimator of :mod:`qtnn.quantum.signed`:
    ``n + 1`` runs of the batch (computational basis, then a Hadamard on each
    wire), i.e. ``(n + 1) * shots`` shots per input; the global sign, which no
    measurement sees, is the sign of the largest amplitude in a classical
    reference computation (:attr:`StaircaseQNode.reference`).  Forward only;
    complex circuits are a :class:`~qtnn.errors.QtnnError` there.
``"probs"``
    ``|<b|C|x>|^2`` over the basis states of ``readout_wires`` (``(B, 2**r)``).
``"expval"``
    ``<Z_w>`` for each ``w`` in ``readout_wires`` (``(B, r)``).  On Qiskit
    devices it is computed from the measured probabilities (``<Z_w> = sum_b
    p(b) (1 - 2 b_w)``, the same estimator as sampling ``Z``), so a whole
    batch stays one Sampler job.

Gate modes and parametrisation
------------------------------
For ``k = 2`` real gates (the default) the trainable parameters are the
magic-basis angles, ``weights`` of shape ``(D, n-1, 6)`` plus non-trainable
``dets`` of shape ``(D, n-1)`` (:mod:`qtnn.staircase.magic`); this is the
parametrisation of the torch modules.  ``gate_mode="matrix"`` builds every
gate matrix in torch (:func:`~qtnn.staircase.magic.magic_gates`) and applies
it as one ``qml.QubitUnitary`` (fastest on ``default.qubit`` with backprop);
``gate_mode="native"`` applies :class:`~qtnn.quantum.template.StaircaseTemplate`
(``RZ``/``RY`` + fixed gates; parameter-shift and adjoint work).  ``"auto"``
picks ``"matrix"`` on exact ``default.qubit`` (unless a shift-rule or adjoint
``diff_method`` is asked for) and ``"native"`` elsewhere.
Complex gates or ``k > 2`` use the generator parameters of
:func:`qtnn.staircase.gates_from_params` (``weights`` of shape
``(D, n-k+1, p)``, ``dets`` = the ``signs``) and run as ``QubitUnitary`` only:
differentiable by backprop on ``default.qubit``, forward-only elsewhere.

Differentiation (``diff_method="auto"``)
----------------------------------------
========================  =============  ===========  ===================  =====================
device                    readout        gate mode    diff method          notes
========================  =============  ===========  ===================  =====================
default.qubit (exact)     any            matrix       backprop             one broadcast tape;
                                                                           grads w.r.t. ``x`` too
default.qubit (shots)     probs, expval  native       parameter-shift
lightning.qubit (exact)   expval         native       adjoint              one tape per sample,
                                                                           one ``execute`` call
lightning.qubit           probs          native       parameter-shift      adjoint: expval only
lightning.qubit (exact)   state          native       none (forward only)
qiskit.aer (exact)        probs, expval  native       parameter-shift      exact statevector
qiskit.aer (exact)        state          native       none (forward only)
any sampling device       state          native       none (forward only)  signed estimator
qiskit.aer (shots)        probs, expval  native       parameter-shift      one Aer job per batch
fake:* / ibm:*            probs, expval  native       parameter-shift      one Sampler job per batch
========================  =============  ===========  ===================  =====================

Explicit choices are checked: ``"backprop"`` needs exact ``default.qubit``;
``"adjoint"`` needs an exact ``default.qubit`` / ``lightning.*`` device, the
native gates and ``readout="expval"``; ``"parameter-shift"`` and
``"finite-diff"`` need the native gates and ``probs`` / ``expval``; ``None``
is forward only.  A call that needs a gradient the chosen method cannot give
(weights or ``x`` requiring grad with ``None``; ``x`` requiring grad without
backprop) raises :class:`~qtnn.errors.QtnnError` instead of silently
returning a result without one.

Batching
--------
One call is one ``execute``: a broadcast tape on ``default.qubit``; on
``lightning.qubit`` and Qiskit devices PennyLane splits the broadcast into
``B`` tapes inside the same ``execute``; ``qiskit.aer`` sends them as one Aer
job and ``fake:`` / ``ibm:`` devices (built by :func:`qtnn.quantum.device`) as
one Sampler job.  With ``track=True`` the counts of the last forward call are
in ``last_stats`` (``qml.Tracker`` totals), ``last_tapes`` and ``last_jobs``
(tracking about doubles the cost of a call on ``default.qubit``).
"""

from __future__ import annotations

import contextlib
import functools
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.quantum.devices import QDevice
from qtnn.validate import check_choice, check_int, check_real, is_torch

__all__ = ["StaircaseQNode", "expval_from_probs", "ENCODINGS", "READOUTS", "GATE_MODES", "DIFF_METHODS"]

ENCODINGS = ("amplitude", "staircase", "none")
READOUTS = ("state", "probs", "expval")
GATE_MODES = ("auto", "matrix", "native")
DIFF_METHODS = ("auto", "backprop", "adjoint", "parameter-shift", "finite-diff", None)


@contextlib.contextmanager
def _float64_results(active: bool) -> Iterator[None]:
    """Make torch's default dtype float64 for the duration of a device call.

    PennyLane's torch interface turns results with ``torch.as_tensor``; lightning
    returns each expectation value as a Python float, which becomes float32 under
    torch's default dtype (a 1e-8 error).  The default is restored afterwards
    (not thread-safe: torch's default dtype is process-global).
    """
    if not active:
        yield
        return
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def expval_from_probs(probs: Any) -> Any:
    """``<Z_i>`` of every wire from the probabilities of ``r`` wires (wire 0 the most significant bit).

    ``probs`` is a torch tensor ``(..., 2**r)``; the result ``(..., r)`` has its
    dtype and device: ``probs @ S`` with ``S[b, i] = 1 - 2 * (bit i of b)``.

    Examples
    --------
    >>> import torch
    >>> expval_from_probs(torch.tensor([0.5, 0.0, 0.25, 0.25], dtype=torch.float64))
    tensor([0.0000, 0.5000], dtype=torch.float64)
    """
    size = int(probs.shape[-1])
    r = size.bit_length() - 1
    if size < 2 or size != 2**r:
        raise QtnnError(f"probs must have 2**r entries (r >= 1) on its last axis, got {size}")
    return probs @ _z_signs(r, probs.dtype, probs.device)


@functools.lru_cache(maxsize=64)
def _z_signs(r: int, dtype: Any, device: Any) -> Any:
    import torch

    bits = (np.arange(2**r)[:, None] >> np.arange(r - 1, -1, -1)[None, :]) & 1
    return torch.as_tensor(1.0 - 2.0 * bits, dtype=dtype, device=device)   # (2**r, r)


class StaircaseQNode:
    """A staircase circuit on a device, callable on torch batches.

    Parameters
    ----------
    dev : QDevice
        From :func:`qtnn.quantum.device`; the circuit uses wires ``0..n_qubits-1``.
    n_qubits : int
        ``n >= k``; at most ``dev.wires``.
    layers : int
        Staircase depth ``D >= 0``.
    k : int
        Qubits per gate (default 2).
    encoding : {"amplitude", "staircase", "none"}
    readout : {"state", "probs", "expval"}
    readout_wires : sequence of int, optional
        Wires for ``probs`` / ``expval`` (default all, ascending; ``state``
        always reads all).
    gate_mode : {"auto", "matrix", "native"}
    diff_method : {"auto", "backprop", "adjoint", "parameter-shift", "finite-diff", None}
        See the module table.
    encoding_layers : int
        Depth of the staircase encoding (``encoding="staircase"``; default 2).
    encoding_method : str
        ``method`` of :func:`~qtnn.staircase.encode_mps` (default ``"iterative"``), or
        ``"batched"``: :class:`qtnn.quantum.encoding.StaircaseEncoder` (the whole
        batch at once, cached per input; real inputs).
    encoding_sweeps : int
        ``sweeps`` of :func:`~qtnn.staircase.encode_mps` (default 4).
    complex : bool
        Unitary (complex) gates with generator parameters (matrix mode only).
    track : bool
        Record device statistics of each forward call (``last_stats``).
    inverse : bool
        Run the inverse circuit ``C^dagger`` (layers and gates reversed, each
        gate adjoint; ``C^T`` for real gates), e.g. the ``V^T`` of a
        disentangled weight.
    layout : {"staircase", "brickwall"}
        The in-layer gate order (:func:`qtnn.staircase.window_order`).

    Attributes
    ----------
    weight_shape : tuple
        Shape of ``weights``.
    gate_mode, diff_method : str or None
        The resolved choices.
    qnode : pennylane.QNode
    last_fidelities, last_fidelity_mean, last_fidelity_min
        Staircase encoding of the last call (else ``None``).
    last_stats : dict or None; last_tapes, last_jobs : int or None
        With ``track=True``: tracker totals, device tapes (``simulations``,
        or circuits for Qiskit devices) and jobs (``jobs`` or ``batches``) of
        the last forward call.

    Raises
    ------
    QtnnError
        Unknown options, ``state`` on a sampling device, a diff method that
        cannot work on this device / readout / gate mode, bad sizes.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from qtnn.quantum import device
    >>> from qtnn.staircase import apply_gates
    >>> from qtnn.staircase.magic import magic_gates
    >>> qn = StaircaseQNode(device("default.qubit", 3), 3, layers=2, readout="state")
    >>> qn.gate_mode, qn.diff_method, qn.weight_shape
    ('matrix', 'backprop', (2, 2, 6))
    >>> x = torch.tensor(np.random.default_rng(0).normal(size=(4, 8)))
    >>> w = torch.tensor(np.random.default_rng(1).normal(size=(2, 2, 6)), requires_grad=True)
    >>> out = qn(x, w)
    >>> ref = apply_gates(x / x.norm(dim=1, keepdim=True), magic_gates(w), 3)
    >>> out.shape, bool((out - ref).abs().max() < 1e-12)
    (torch.Size([4, 8]), True)
    """

    def __init__(self, dev: QDevice, n_qubits: int, layers: int, k: int = 2, *,
                 encoding: str = "amplitude", readout: str = "probs",
                 readout_wires: Any = None, gate_mode: str = "auto", diff_method: Any = "auto",
                 encoding_layers: int = 2, encoding_method: str = "iterative",
                 encoding_sweeps: int = 4, complex: bool = False, track: bool = False,
                 inverse: bool = False, layout: str = "staircase") -> None:
        from qtnn.staircase.circuit import num_gate_params

        if not isinstance(dev, QDevice):
            raise QtnnTypeError(f"dev must be a QDevice from qtnn.quantum.device(), got {type(dev).__name__}")
        n = check_int("n_qubits", n_qubits, minimum=1)
        if n > dev.wires:
            raise QtnnError(f"n_qubits={n} is more than the {dev.wires} wires of device {dev.name!r}")
        self.k = check_int("k", k, minimum=1)
        if self.k > n:
            raise QtnnError(f"k must be <= n_qubits={n}, got k={self.k}")
        self.layers = check_int("layers", layers, minimum=0)
        self.encoding = check_choice("encoding", encoding, ENCODINGS)
        self.readout = check_choice("readout", readout, READOUTS)
        if gate_mode not in GATE_MODES:
            raise QtnnError(f"gate_mode must be one of {', '.join(map(repr, GATE_MODES))}; got {gate_mode!r}")
        if diff_method not in DIFF_METHODS:
            raise QtnnError(f"diff_method must be one of {', '.join(map(repr, DIFF_METHODS))}; "
                            f"got {diff_method!r}")
        if not isinstance(complex, (bool, np.bool_)):
            raise QtnnTypeError(f"complex must be a bool, got {complex!r}")
        if not isinstance(track, (bool, np.bool_)):
            raise QtnnTypeError(f"track must be a bool, got {track!r}")
        if not isinstance(inverse, (bool, np.bool_)):
            raise QtnnTypeError(f"inverse must be a bool, got {inverse!r}")
        self.inverse = bool(inverse)
        from qtnn.staircase.circuit import window_order

        self.layout = check_choice("layout", layout, ("staircase", "brickwall"))
        self._order = window_order(n, self.k, self.layout)
        self.dev = dev
        self.n_qubits = n
        self.complex = bool(complex)
        self.track = bool(track)
        self.encoding_layers = check_int("encoding_layers", encoding_layers, minimum=1)
        from qtnn.staircase.encode import METHODS as _ENC_METHODS

        self.encoding_method = check_choice("encoding_method", encoding_method, (*_ENC_METHODS, "batched"))
        self.encoding_sweeps = check_int("encoding_sweeps", encoding_sweeps, minimum=0)
        self.magic = self.k == 2 and not self.complex
        g = n - self.k + 1
        self.weight_shape = (self.layers, g, 6 if self.magic else num_gate_params(self.k, self.complex))

        # readout wires
        if readout_wires is None:
            wires = tuple(range(n))
        else:
            if isinstance(readout_wires, (str, bytes)) or not hasattr(readout_wires, "__iter__"):
                raise QtnnError(f"readout_wires must be a sequence of wire indices, got {readout_wires!r}")
            wires = tuple(readout_wires)
            if (not wires or any(isinstance(w, bool) or not isinstance(w, numbers.Integral)
                                 or not 0 <= w < n for w in wires) or len(set(wires)) != len(wires)):
                raise QtnnError(f"readout_wires must be distinct integers in [0, {n}), got {readout_wires!r}")
            wires = tuple(int(w) for w in wires)
        if self.readout == "state":
            if readout_wires is not None and wires != tuple(range(n)):
                raise QtnnError(f"readout 'state' reads all {n} wires; got readout_wires={readout_wires!r}")
            if not dev.supports_state and self.complex:
                raise QtnnError(
                    f"readout 'state' on the sampling device {dev.name!r} (shots={dev.shots}) estimates "
                    "real amplitudes (qtnn.quantum.signed); complex=True gates give complex ones: use "
                    "an exact simulator or readout 'probs' / 'expval'")
        self.readout_wires = wires
        #: ``readout="state"`` on a sampling device: the signed-amplitude estimator
        #: (:mod:`qtnn.quantum.signed`, ``n + 1`` settings of ``shots`` shots each).
        self.signed = self.readout == "state" and not dev.supports_state
        self._reference: StaircaseQNode | None = None

        # device facts
        name = dev.name
        self._dq = name == "default.qubit"
        self._lightning = name.startswith("lightning")
        self._qiskit = dev.kind in ("aer", "fake", "ibm")

        # gate mode
        if gate_mode == "auto":
            gate_mode = "matrix" if (not self.magic or (self._dq and dev.exact and diff_method in (
                "auto", "backprop", None))) else "native"
        if gate_mode == "native" and not self.magic:
            raise QtnnError(f"gate_mode 'native' needs real k=2 gates (magic-basis angles); got k={self.k}, "
                            f"complex={self.complex}: use gate_mode 'matrix' (QubitUnitary)")
        self.gate_mode = gate_mode

        # diff method
        exact_dq = self._dq and dev.exact
        if diff_method == "auto":
            if exact_dq:
                diff_method = "backprop"
            elif gate_mode == "matrix" or self.readout == "state":
                diff_method = None
            elif self._lightning and dev.exact and self.readout == "expval":
                diff_method = "adjoint"
            else:
                diff_method = "parameter-shift"
        where = f"device {name!r} (shots={dev.shots}), readout {self.readout!r}, gate_mode {gate_mode!r}"
        if diff_method == "backprop" and not exact_dq:
            raise QtnnError(f"diff_method 'backprop' needs default.qubit with shots=None; got {where}")
        if diff_method == "adjoint":
            if not (dev.exact and (self._dq or self._lightning)):
                raise QtnnError(f"diff_method 'adjoint' needs an exact default.qubit or lightning device; "
                                f"got {where}")
            if self.readout != "expval" or gate_mode != "native":
                raise QtnnError(f"diff_method 'adjoint' supports readout 'expval' with gate_mode 'native' "
                                f"only; got {where}")
        if diff_method in ("parameter-shift", "finite-diff"):
            if gate_mode != "native":
                raise QtnnError(f"diff_method {diff_method!r} needs gate_mode 'native' (a trainable "
                                f"QubitUnitary has no shift rule); got {where}")
            if self.readout == "state":
                raise QtnnError(f"diff_method {diff_method!r} cannot differentiate readout 'state'; "
                                f"use default.qubit with backprop or diff_method=None; got {where}")
        self.diff_method = diff_method

        self._probs_for_expval = self.readout == "expval" and self._qiskit

        self.last_fidelities: np.ndarray | None = None
        self.last_fidelity_mean: float | None = None
        self.last_fidelity_min: float | None = None
        self.last_stats: dict | None = None
        self.last_signed_info: dict | None = None
        self.last_tapes: int | None = None
        self.last_jobs: int | None = None
        self.qnode = dev.qnode(self._circuit, interface="torch", diff_method=diff_method)

    # ---------------------------------------------------------------- circuit
    def _circuit(self, xn: Any, params: Any, enc: Any, dets: tuple, hwire: int | None = None) -> Any:
        import pennylane as qml

        from qtnn.quantum.template import StaircaseTemplate

        n, k = self.n_qubits, self.k
        wires = list(range(n))
        if self.encoding == "amplitude":
            qml.StatePrep(xn, wires=wires)
        elif self.encoding == "staircase":
            for layer in range(int(enc.shape[1])):
                for j in range(n - 1):
                    qml.QubitUnitary(enc[:, layer, j], wires=[j, j + 1])
        if self.layers and self.inverse:  # C^dagger: layers and gates reversed, gates adjoint
            if self.gate_mode == "native":
                qml.adjoint(StaircaseTemplate)(params, dets=dets, wires=wires, layout=self.layout)
            else:
                for layer in reversed(range(self.layers)):
                    for j in reversed(self._order):
                        g = params[layer, j]
                        qml.QubitUnitary(g.transpose(-1, -2).conj(), wires=list(range(j, j + k)))
        elif self.layers:
            if self.gate_mode == "native":
                StaircaseTemplate(params, dets=dets, wires=wires, layout=self.layout)
            else:
                for layer in range(self.layers):
                    for j in self._order:
                        qml.QubitUnitary(params[layer, j], wires=list(range(j, j + k)))
        if self.signed:
            if hwire is not None:
                qml.Hadamard(wires=hwire)
            return qml.probs(wires=wires)
        if self.readout == "state":
            return qml.state()
        if self.readout == "probs" or self._probs_for_expval:
            return qml.probs(wires=list(self.readout_wires))
        return [qml.expval(qml.Z(w)) for w in self.readout_wires]

    # ------------------------------------------------------------ validation
    def _check_x(self, x: Any) -> tuple[Any, bool]:
        import torch

        dim = 2**self.n_qubits
        if self.encoding == "none":
            if x is not None:
                raise QtnnError("encoding 'none' starts from |0...0>: x must be None, got an input of "
                                f"shape {tuple(getattr(x, 'shape', ()))}")
            return None, False
        if x is None:
            raise QtnnError(f"x must be a (batch, {dim}) tensor for encoding {self.encoding!r}, got None")
        if not is_torch(x):
            arr = np.asarray(x)
            if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
                raise QtnnTypeError(f"x must hold numbers, got dtype {arr.dtype}")
            x = torch.as_tensor(arr.copy())
        if not (x.is_floating_point() or x.is_complex()):
            x = x.to(torch.float64)
        squeeze = x.ndim == 1
        if squeeze:
            x = x[None]
        if x.ndim != 2 or int(x.shape[1]) != dim:
            raise QtnnError(f"x must have shape (batch, 2**n_qubits) = (batch, {dim}); got "
                            f"{tuple(x.shape) if not squeeze else tuple(x.shape[1:])}")
        if int(x.shape[0]) == 0:
            raise QtnnError("x must hold at least one sample, got batch size 0")
        if not bool(torch.isfinite(x.detach()).all()):
            raise QtnnError(f"x must be finite, got NaN or inf in a tensor of shape {tuple(x.shape)}")
        if bool((x.detach().abs().sum(dim=1) == 0).any()):
            bad = int(torch.nonzero(x.detach().abs().sum(dim=1) == 0)[0, 0])
            raise QtnnError(f"x must have non-zero rows to be encoded as x/||x||; row {bad} is zero")
        if self.complex is False and x.is_complex() and self.encoding == "staircase":
            raise QtnnError("a complex x needs complex gates for the staircase encoding; "
                            "pass complex=True or a real x")
        return x, squeeze

    def _check_weights(self, weights: Any) -> Any:
        import torch

        from qtnn.staircase.circuit import GeneratorParams

        # (the other way round cannot be confused: generator coordinates are used only where
        # their shape differs from the 6 magic angles, k > 2 or complex gates)
        if self.magic and isinstance(weights, GeneratorParams):
            raise QtnnTypeError("weights must be magic-basis angles (k=2 real gates), got the generator "
                                "coordinates of Staircase.params(); use weights_for(circ)")
        if not is_torch(weights):
            arr = np.asarray(weights)
            if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
                raise QtnnTypeError(f"weights must hold numbers, got dtype {arr.dtype}")
            weights = torch.as_tensor(arr.astype(np.float64))
        if weights.is_complex():
            raise QtnnTypeError(f"weights must be real, got dtype {weights.dtype}")
        if tuple(weights.shape) != self.weight_shape:
            raise QtnnError(f"weights must have shape {self.weight_shape} (layers, n_qubits-k+1, params); "
                            f"got {tuple(weights.shape)}")
        weights = weights.to(torch.float64)                 # the circuit runs in float64
        if not bool(torch.isfinite(weights.detach()).all()):
            raise QtnnError(f"weights must be finite, got NaN or inf in a tensor of shape "
                            f"{tuple(weights.shape)}")
        return weights

    def _check_dets(self, dets: Any) -> tuple:
        from qtnn.staircase.magic import check_dets

        shape = tuple(self.weight_shape[:2])
        arr = check_dets(dets, shape, shape_text=f"(layers, n_qubits-k+1) = {shape}")
        return tuple(tuple(int(v) for v in row) for row in arr)

    # -------------------------------------------------------------- encoding
    def _staircase_encoding(self, xn: Any, raw: Any = None) -> Any:
        import torch

        from qtnn.staircase.encode import encode_mps
        from qtnn.tn.mps import MPS

        arr = xn.detach().cpu().numpy()
        arr = arr.astype(np.complex128 if np.iscomplexobj(arr) else np.float64)
        if self.encoding_method == "batched" and not (self.complex or np.iscomplexobj(arr)):
            from qtnn.quantum.encoding import shared_encoder

            # the encoder normalises (and caches by) the caller's input itself: the same input
            # then gives bit-identical gates on every path (the optimum's degenerate directions
            # make the gates sensitive to the last bit of a twice-normalised input)
            src = raw if raw is not None else xn
            res = shared_encoder(self.encoding_layers).encode(src.detach().cpu().numpy().astype(np.float64))
            self.last_fidelities = res.fidelities
            self.last_fidelity_mean = res.fidelity_mean
            self.last_fidelity_min = res.fidelity_min
            return torch.as_tensor(res.gates)
        out = []
        fids = np.empty(arr.shape[0])
        for b, vec in enumerate(arr):
            circ, rep = encode_mps(MPS.from_dense(vec), layers=self.encoding_layers,
                                   method=self.encoding_method, sweeps=self.encoding_sweeps,
                                   complex=bool(np.iscomplexobj(vec)) or self.complex)
            gates = np.array(circ.gates)
            ov = np.vdot(circ.state(), vec)               # <G0|x>: x ~ ov G|0>
            if abs(ov) > 0:                               # fix the global sign / phase
                gates[-1, -1] *= (ov / abs(ov)) if np.iscomplexobj(gates) else np.sign(ov.real)
            fids[b] = rep.final_fidelity
            out.append(gates)
        dtype = np.complex128 if any(np.iscomplexobj(g) for g in out) else np.float64
        enc = np.stack([g.astype(dtype) for g in out])
        self.last_fidelities = fids
        self.last_fidelity_mean = float(fids.mean())
        self.last_fidelity_min = float(fids.min())
        return torch.as_tensor(enc)

    # ------------------------------------------------------------------ call
    def gates(self, weights: Any, dets: Any = None) -> Any:
        """The gate array ``(D, n-k+1, 2**k, 2**k)`` the circuit applies (torch, differentiable).

        Examples
        --------
        >>> import torch
        >>> from qtnn.quantum import device
        >>> qn = StaircaseQNode(device("default.qubit", 3), 3, layers=1)
        >>> qn.gates(torch.zeros(1, 2, 6)).shape
        torch.Size([1, 2, 4, 4])
        """
        from qtnn.staircase.circuit import gates_from_params
        from qtnn.staircase.magic import magic_gates

        w = self._check_weights(weights)
        d = self._check_dets(dets)
        if self.magic:
            return magic_gates(w, np.asarray(d, dtype=np.float64).reshape(self.weight_shape[:2]))
        return gates_from_params(w, np.asarray(d, dtype=np.float64).reshape(self.weight_shape[:2]),
                                 complex=self.complex)

    def weights_for(self, circ: Any) -> tuple[Any, Any]:
        """``(weights, dets)`` that make this QNode run the gates of ``circ`` (a Staircase).

        The right kind for the QNode: magic-basis angles for real two-qubit
        gates, generator coordinates otherwise.  ``weights`` is a
        float64 torch tensor with ``requires_grad=True``.

        Examples
        --------
        >>> import numpy as np, torch
        >>> from qtnn.quantum import device
        >>> from qtnn.staircase import Staircase
        >>> circ = Staircase.random(3, 1, seed=2)
        >>> qn = StaircaseQNode(device("default.qubit", 3), 3, layers=1)
        >>> w, d = qn.weights_for(circ)
        >>> bool(np.abs(qn.gates(w, d).detach().numpy() - circ.gates).max() < 1e-12)
        True
        """
        import torch

        from qtnn.staircase import Staircase
        from qtnn.staircase.magic import magic_angles

        if not isinstance(circ, Staircase):
            raise QtnnTypeError(f"circ must be a qtnn.staircase.Staircase, got {type(circ).__name__}")
        want = (self.weight_shape[0], self.n_qubits, self.k, self.layout)
        got = (circ.layers, circ.n_qubits, circ.k, circ.layout)
        if want != got:
            raise QtnnError(f"circ must match this QNode (layers, n_qubits, k, layout) = {want}, got {got}")
        if circ.is_complex != self.complex:
            raise QtnnError(f"circ must have {'complex' if self.complex else 'real'} gates like this QNode")
        if self.magic:
            angles, dets = magic_angles(circ.gates)
        else:
            angles, dets = circ.params()
        w = torch.tensor(np.asarray(angles), dtype=torch.float64, requires_grad=True)
        return w, np.asarray(dets)

    def random_weights(self, seed: int = 0, scale: float = 1.0) -> Any:
        """Gaussian initial ``weights`` (float64 torch tensor, ``requires_grad=True``).

        Examples
        --------
        >>> from qtnn.quantum import device
        >>> StaircaseQNode(device("default.qubit", 4), 4, layers=2).random_weights().shape
        torch.Size([2, 3, 6])
        """
        import torch

        seed = check_int("seed", seed, minimum=0)
        scale = check_real("scale", scale, minimum=0.0)
        arr = np.random.default_rng(seed).normal(scale=scale, size=self.weight_shape)
        return torch.tensor(arr, dtype=torch.float64, requires_grad=True)

    def __call__(self, x: Any, weights: Any, dets: Any = None) -> Any:
        """Run the batch.

        Parameters
        ----------
        x : torch.Tensor, shape (B, 2**n) or (2**n,), or None
            Raw inputs (need not be normalised; ``x / ||x||`` is encoded).
            ``None`` for ``encoding="none"``.
        weights : torch.Tensor, shape :attr:`weight_shape`
        dets : array_like of +-1, shape (D, n-k+1), optional
            Determinants (magic angles) or signs (generator parameters); default all ``+1``.

        Returns
        -------
        torch.Tensor
            ``state``: ``(B, 2**n)`` (real when gates and input are real);
            ``probs``: ``(B, 2**r)``; ``expval``: ``(B, r)``.  Without a batch
            axis when ``x`` is 1-d or ``None``.  dtype float64 (complex128 for
            a complex state).
        """
        import pennylane as qml
        import torch

        x, squeeze = self._check_x(x)
        w = self._check_weights(weights)
        dets_t = self._check_dets(dets)
        grad_on = torch.is_grad_enabled()
        if grad_on and w.requires_grad and self.diff_method is None:
            raise QtnnError(
                f"weights require grad but {self._where()} has no gradient (diff_method=None); "
                "use default.qubit (backprop), or call under torch.no_grad() / detach the weights")
        if grad_on and x is not None and x.requires_grad and self.diff_method != "backprop":
            raise QtnnError(
                f"x requires grad, but gradients with respect to the input need diff_method "
                f"'backprop' (default.qubit with shots=None); {self._where()} uses "
                f"{self.diff_method!r}: detach x (freeze the classical layers before the circuit)")
        if grad_on and x is not None and x.requires_grad and self.encoding == "staircase":
            raise QtnnError("x requires grad, but the staircase encoding is fixed per sample (not "
                            "differentiable in x): detach x or use encoding 'amplitude'")

        xn = enc = None
        if x is not None:
            x = x.to(torch.float64) if not x.is_complex() else x.to(torch.complex128)
            xn = x / torch.linalg.vector_norm(x, dim=1, keepdim=True)
        if self.encoding == "staircase":
            enc = self._staircase_encoding(xn, raw=x)
        else:
            self.last_fidelities = self.last_fidelity_mean = self.last_fidelity_min = None
        if self.gate_mode == "matrix":
            params = self.gates(w, dets_t).to(torch.float64 if not self.complex else torch.complex128)
        else:
            params = w.to(torch.float64)

        if self.signed:
            return self._signed_state(x, xn, params, enc, dets_t, w, squeeze)
        with _float64_results(not self._dq):
            if self.track:
                with qml.Tracker(self.dev.pl) as tracker:
                    out = self.qnode(xn, params, enc, dets_t)
                totals: dict[str, Any] = dict(tracker.totals)
                self.last_stats = totals
                self.last_tapes = int(totals.get("simulations", totals.get("executions", 0)))
                self.last_jobs = int(totals.get("jobs") or totals.get("batches")
                                     or totals.get("execute_and_derivative_batches") or 0)
            else:
                out = self.qnode(xn, params, enc, dets_t)

        if isinstance(out, (list, tuple)):
            out = torch.stack(list(out), dim=-1)
        if self._probs_for_expval:
            out = expval_from_probs(out.to(torch.float64))
        if self.readout == "state":
            real_in = (x is None or not x.is_complex()) and (enc is None or not enc.is_complex())
            if real_in and not self.complex:
                out = out.real
        elif out.is_complex():  # pragma: no cover - probabilities and <Z> are real
            out = out.real
        if squeeze:
            out = out[0]
        return out

    def _signed_state(self, x: Any, xn: Any, params: Any, enc: Any, dets_t: tuple, w: Any,
                      squeeze: bool) -> Any:
        """``readout="state"`` on a sampling device: :func:`qtnn.quantum.signed.signed_amplitudes`.

        ``n + 1`` runs of the batch (computational basis, then a Hadamard on each
        wire); the global sign (not measurable) of each output is the sign of its
        largest amplitude in a classical reference computation of that amplitude
        (:attr:`reference`, an exact ``default.qubit`` copy of this circuit).
        """
        import torch

        from qtnn.quantum.signed import signed_amplitudes

        n = self.n_qubits
        with _float64_results(not self._dq):
            runs = [self.qnode(xn, params, enc, dets_t, None)]
            runs += [self.qnode(xn, params, enc, dets_t, q) for q in range(n)]
        probs = [np.asarray(r.detach().cpu().numpy() if is_torch(r) else r, dtype=np.float64) for r in runs]
        probs = [p[None] if p.ndim == 1 else p for p in probs]
        pz = probs[0]
        ph = np.stack(probs[1:], axis=1)
        roots = np.argmax(pz, axis=1)
        with torch.no_grad():
            ref = self.reference(x, w.detach(), dets_t)
        ref = ref[None] if ref.ndim == 1 else ref
        sign = np.where(ref.numpy()[np.arange(len(roots)), roots] < 0, -1.0, 1.0)
        est, info = signed_amplitudes(pz, ph, sign_of_root=sign)
        self.last_signed_info = {"pz": pz, "ph": ph, "estimate": est, **info}
        out = torch.as_tensor(est, dtype=torch.float64)
        return out[0] if squeeze else out

    @property
    def reference(self) -> StaircaseQNode:
        """This circuit on an exact ``default.qubit`` with ``readout="state"`` (sign reference)."""
        if self._reference is None:
            from qtnn.quantum.devices import device

            self._reference = StaircaseQNode(
                device("default.qubit", self.n_qubits), self.n_qubits, self.layers, self.k,
                encoding=self.encoding, readout="state", diff_method=None,
                encoding_layers=self.encoding_layers, encoding_method=self.encoding_method,
                encoding_sweeps=self.encoding_sweeps, inverse=self.inverse, layout=self.layout)
        return self._reference

    def _where(self) -> str:
        return f"device {self.dev.name!r} with readout {self.readout!r} and gate_mode {self.gate_mode!r}"

    def __repr__(self) -> str:
        return (f"StaircaseQNode(device={self.dev.name!r}, n_qubits={self.n_qubits}, layers={self.layers}, "
                f"k={self.k}, encoding={self.encoding!r}, readout={self.readout!r}, "
                f"gate_mode={self.gate_mode!r}, diff_method={self.diff_method!r}"
                + ("" if self.layout == "staircase" else f", layout={self.layout!r}") + ")")
