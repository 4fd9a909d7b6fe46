r"""Bounded-depth amplitude encoding of whole data sets: batched, cached, with fidelities.

``qml.StatePrep`` (Qiskit ``Initialize``) prepares an input exactly but its
circuit grows as ``2**n`` (a random 6-qubit state: ~111 CZ on ``fake:torino``,
10 qubits: ~2,500).  A staircase of ``D`` layers of 2-qubit gates prepares an
approximation with ``D (n - 1)`` gates (at most 3 CZ each on a line of
qubits), linear in ``n``.

:class:`StaircaseEncoder` finds the gates of many inputs at once.  For each
input ``x`` it maximises the overlap :math:`\langle x|G|0\rangle` over the real
orthogonal gates of ``G`` (a staircase: layers of windows ``(j, j+1)``,
``j = 0 .. n-2``, ascending) by the environment sweeps of Rudolph et al.,
arXiv:2209.00595 (each gate in turn becomes the polar factor of its
environment, which never lowers the fidelity), run on dense state vectors
for the whole batch at once (numpy ``einsum`` and stacked 4x4 SVDs; the
inputs are at most ``2**MAX_QUBITS`` long).  The circuit grows one layer at
a time, as in Rudolph et al.'s iterative method: a layer of identities is
added first (acting on ``|0>``), then every gate is swept again.  The global
sign is fixed so that :math:`\langle x|G|0\rangle > 0`.

Results are cached per input (the bytes of each normalised row, the depth and
the sweeps), so the encodings of a data set are computed once: the second
epoch of a training run, or the evaluation of the same test set on another
device, costs a dictionary look-up per row.

The optimum has degenerate directions (e.g. the first sweep starts from
``|0...0>``, whose environments have rank one), so the gates -- not the
fidelity -- can depend on the last bit of an input: give every path the same
(unnormalised) input, as the qtnn layers do, and the encodings are identical.

The per-batch fidelities :math:`|\langle x|G|0\rangle|^2` are in
:attr:`StaircaseEncoder.last_fidelities` (and the returned :class:`Encoded`).

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(5, 16))
>>> enc = StaircaseEncoder(layers=2)
>>> out = enc.encode(x)
>>> out.gates.shape, bool(out.fidelities.min() > 0.7)
((5, 2, 3, 4, 4), True)
>>> prepared = enc.states(x)                 # G|0>, unit vectors with <x|G|0> > 0
>>> bool(np.all(np.einsum("bi,bi->b", prepared, x / np.linalg.norm(x, axis=1, keepdims=True)) > 0))
True
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.validate import check_int

__all__ = ["StaircaseEncoder", "Encoded", "shared_encoder", "prepare_states", "encoding_cost",
           "encoding_circuit"]

#: Inputs longer than ``2**MAX_QUBITS`` are refused (dense batched sweeps).
MAX_QUBITS = 14


@dataclass
class Encoded:
    """The encodings of a batch.

    Attributes
    ----------
    gates : ndarray, shape (B, D, n-1, 4, 4)
        Real orthogonal gates; layer ``d``, window ``j`` acts on wires ``(j, j+1)``
        (wire 0 the most significant bit, PennyLane's order).
    fidelities : ndarray, shape (B,)
        :math:`|\\langle x|G|0\\rangle|^2` of each normalised input.
    seconds : float
        Time spent computing (cache hits cost nothing).
    computed : int
        Rows computed in this call (the others came from the cache).
    """

    gates: np.ndarray
    fidelities: np.ndarray
    seconds: float
    computed: int

    @property
    def fidelity_mean(self) -> float:
        """Mean fidelity of the batch."""
        return float(self.fidelities.mean())

    @property
    def fidelity_min(self) -> float:
        """Lowest fidelity of the batch."""
        return float(self.fidelities.min())


def _apply(state: np.ndarray, g: np.ndarray, j: int, n: int, transpose: bool = False) -> np.ndarray:
    """Gates ``g`` (B, 4, 4) (or their transposes) on wires ``(j, j+1)`` of the batch ``state`` (B, 2**n)."""
    b = state.shape[0]
    s = state.reshape(b, 2**j, 4, 2 ** (n - j - 2))
    m = np.swapaxes(g, -1, -2) if transpose else g
    return np.matmul(m[:, None], s).reshape(b, 2**n)        # batched BLAS, ~2x einsum


def _env(chi: np.ndarray, phi: np.ndarray, j: int, n: int) -> np.ndarray:
    """``E[b, i, j'] = sum_rest chi[b, .., i, ..] phi[b, .., j', ..]`` at window ``j``."""
    b = chi.shape[0]
    c = chi.reshape(b, 2**j, 4, 2 ** (n - j - 2))
    p = phi.reshape(b, 2**j, 4, 2 ** (n - j - 2))
    return np.matmul(c, np.swapaxes(p, -1, -2)).sum(axis=1)


def _polar(e: np.ndarray) -> np.ndarray:
    """The orthogonal ``g`` maximising ``tr(g^T e)`` (stacked)."""
    u, _, vt = np.linalg.svd(e)
    return u @ vt


def _sweep_fit(x: np.ndarray, gates: np.ndarray, n: int, sweeps: int, tol: float) -> np.ndarray:
    """Environment sweeps (up, down, ...) of all gates, batched; returns the fidelities."""
    bsz, depth = gates.shape[:2]
    order = [(d, j) for d in range(depth) for j in range(n - 1)]
    zero = np.zeros((bsz, 2**n))
    zero[:, 0] = 1.0
    prev = None
    fid = np.zeros(bsz)
    for sweep in range(max(sweeps, 1)):
        seq = order if sweep % 2 == 0 else order[::-1]
        if sweep % 2 == 0:
            # phi = |0>, chi = G^T x; going up, chi loses and phi gains each gate
            phi = zero.copy()
            chi = x.copy()
            for d, j in reversed(order):
                chi = _apply(chi, gates[:, d, j], j, n, transpose=True)
            for d, j in seq:
                chi = _apply(chi, gates[:, d, j], j, n)             # chi_k = g_k chi_{k-1}
                gates[:, d, j] = _polar(_env(chi, phi, j, n))
                phi = _apply(phi, gates[:, d, j], j, n)
            ov = np.einsum("bi,bi->b", x, phi)
        else:
            # going down: phi = G|0> loses the last gate, chi = x gains its transpose
            chi = x.copy()
            phi = zero.copy()
            for d, j in order:
                phi = _apply(phi, gates[:, d, j], j, n)
            for d, j in seq:
                phi = _apply(phi, gates[:, d, j], j, n, transpose=True)
                gates[:, d, j] = _polar(_env(chi, phi, j, n))
                chi = _apply(chi, gates[:, d, j], j, n, transpose=True)
            ov = np.einsum("bi,bi->b", chi, zero)
        fid = ov**2
        if prev is not None and float(np.max(fid - prev)) < tol:
            break
        prev = fid
    return fid


def _prepare(gates: np.ndarray, n: int) -> np.ndarray:
    state = np.zeros((gates.shape[0], 2**n))
    state[:, 0] = 1.0
    for d in range(gates.shape[1]):
        for j in range(n - 1):
            state = _apply(state, gates[:, d, j], j, n)
    return state


def prepare_states(gates: np.ndarray) -> np.ndarray:
    """``G|0>`` of encodings ``gates`` (``(B, D, n-1, 4, 4)``, as in :class:`Encoded`): ``(B, 2**n)``.

    Examples
    --------
    >>> prepare_states(np.broadcast_to(np.eye(4), (1, 1, 2, 4, 4)))[0].tolist()
    [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    gates = np.asarray(gates, dtype=np.float64)
    if gates.ndim != 5 or gates.shape[-2:] != (4, 4):
        raise QtnnError(f"gates must have shape (batch, layers, n-1, 4, 4), got {gates.shape}")
    return _prepare(gates, gates.shape[2] + 1)


def _encode_batch(x: np.ndarray, layers: int, sweeps: int, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Gates and fidelities of unit rows ``x`` (B, 2**n): grown one layer at a time, swept each time."""
    bsz, dim = x.shape
    n = dim.bit_length() - 1
    gates = np.broadcast_to(np.eye(4), (bsz, 0, n - 1, 4, 4)).copy()
    fid = np.zeros(bsz)
    for _ in range(layers):
        # a new layer first (acting on |0>), identities, then every gate swept again
        new = np.broadcast_to(np.eye(4), (bsz, 1, n - 1, 4, 4)).copy()
        gates = np.concatenate([new, gates], axis=1)
        fid = _sweep_fit(x, gates, n, sweeps, tol)
    # global sign: <x|G|0> > 0 (the sweeps maximise |<x|G|0>|... and the polar factor its sign)
    ov = np.einsum("bi,bi->b", x, _prepare(gates, n))
    gates[ov < 0, -1, -1] *= -1.0
    return gates, fid


def _row_keys(x: np.ndarray, layers: int, sweeps: int) -> list[bytes]:
    tag = f"{layers}:{sweeps}:{x.shape[1]}".encode()
    return [hashlib.blake2b(row.tobytes() + tag, digest_size=16).digest() for row in x]


class StaircaseEncoder:
    """Batched, cached bounded-depth encodings (see the module docstring).

    Parameters
    ----------
    layers : int
        Staircase depth ``D >= 1`` of each encoding.
    sweeps : int
        Environment sweeps after each added layer (default 6).
    cache_size : int
        Encodings kept (rows; least recently used dropped first).

    Examples
    --------
    >>> import numpy as np
    >>> enc = StaircaseEncoder(layers=1)
    >>> x = np.array([[0.6, 0.0, 0.0, 0.8]])   # a Bell-like state: one layer is exact
    >>> round(float(enc.encode(x).fidelities[0]), 12)
    1.0
    >>> enc.encode(x).computed                 # the second time: from the cache
    0
    """

    def __init__(self, layers: int, sweeps: int = 6, cache_size: int = 200_000, tol: float = 1e-7) -> None:
        self.layers = check_int("layers", layers, minimum=1, maximum=64)
        self.sweeps = check_int("sweeps", sweeps, minimum=1, maximum=1000)
        self.cache_size = check_int("cache_size", cache_size, minimum=0)
        self.tol = float(tol)
        self._cache: OrderedDict[bytes, tuple[np.ndarray, float]] = OrderedDict()
        self.last_fidelities: np.ndarray | None = None

    def _rows(self, x: Any) -> np.ndarray:
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        arr = np.asarray(x)
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise QtnnTypeError(f"x must hold real numbers, got dtype {arr.dtype}")
        if np.iscomplexobj(arr):
            raise QtnnTypeError("x must be real (the encoder's gates are real orthogonal)")
        arr = np.atleast_2d(arr.astype(np.float64))
        if arr.ndim != 2:
            raise QtnnError(f"x must have shape (batch, 2**n), got {arr.shape}")
        dim = arr.shape[1]
        if dim < 4 or dim & (dim - 1) or dim > 2**MAX_QUBITS:
            raise QtnnError(f"x must have 2**n features with 2 <= n <= {MAX_QUBITS}, got {dim}")
        if not np.isfinite(arr).all():
            raise QtnnError("x must be finite, got NaN or inf")
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        if np.any(norms == 0):
            bad = int(np.nonzero(norms[:, 0] == 0)[0][0])
            raise QtnnError(f"x must have non-zero rows, row {bad} is zero")
        return arr / norms

    def encode(self, x: Any) -> Encoded:
        """Gates and fidelities of the rows of ``x`` (``(B, 2**n)``; normalised here)."""
        start = time.perf_counter()
        xn = self._rows(x)
        n = xn.shape[1].bit_length() - 1
        keys = _row_keys(xn, self.layers, self.sweeps)
        gates = np.empty((len(keys), self.layers, n - 1, 4, 4))
        fids = np.empty(len(keys))
        todo = []
        for i, key in enumerate(keys):
            hit = self._cache.get(key)
            if hit is None:
                todo.append(i)
            else:
                self._cache.move_to_end(key)
                gates[i], fids[i] = hit
        if todo:
            uniq: dict[bytes, int] = {}
            for i in todo:
                uniq.setdefault(keys[i], i)
            rows = list(uniq.values())
            g, f = _encode_batch(xn[rows], self.layers, self.sweeps, self.tol)
            for pos, i in enumerate(rows):
                if self.cache_size:
                    self._cache[keys[i]] = (g[pos], float(f[pos]))
            for i in todo:
                pos = rows.index(uniq[keys[i]])
                gates[i], fids[i] = g[pos], f[pos]
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self.last_fidelities = fids
        return Encoded(gates, fids, time.perf_counter() - start, len(todo))

    def states(self, x: Any) -> np.ndarray:
        """The prepared unit states ``G|0>`` of the rows of ``x`` (``(B, 2**n)``)."""
        return prepare_states(self.encode(x).gates)

    def __repr__(self) -> str:
        return f"StaircaseEncoder(layers={self.layers}, sweeps={self.sweeps}, cached={len(self._cache)})"


_SHARED: dict[tuple[int, int], StaircaseEncoder] = {}


def shared_encoder(layers: int, sweeps: int = 6) -> StaircaseEncoder:
    """The process-wide encoder (and cache) of a depth and sweep count.

    Examples
    --------
    >>> shared_encoder(2) is shared_encoder(2)
    True
    """
    key = (check_int("layers", layers, minimum=1, maximum=64), check_int("sweeps", sweeps, minimum=1))
    if key not in _SHARED:
        _SHARED[key] = StaircaseEncoder(*key)
    return _SHARED[key]


def encoding_circuit(x: Any, encoding: str = "staircase", layers: int = 2) -> tuple[Any, float]:
    """The Qiskit circuit that encodes one input ``x`` (``2**n`` real entries), and its fidelity.

    ``encoding="amplitude"``: Qiskit's ``StatePreparation`` of ``x / ||x||``
    (what ``qml.StatePrep`` is on a device; fidelity 1).  ``"staircase"``: the
    :class:`StaircaseEncoder` gates of ``layers`` layers, one ``UnitaryGate``
    each.  PennyLane wire ``w`` is Qiskit qubit ``n - 1 - w`` (both circuits
    prepare the same amplitudes as the PennyLane ones, index for index).  No
    measurement.

    Returns
    -------
    (qiskit.QuantumCircuit, float)
        The circuit (named ``"encoding_amplitude_n{n}"`` or
        ``"encoding_staircase_n{n}_D{layers}"``) and :math:`|\\langle x|G|0\\rangle|^2`.

    Examples
    --------
    >>> import numpy as np
    >>> from qiskit.quantum_info import Statevector
    >>> x = np.random.default_rng(1).normal(size=8)
    >>> qc, fid = encoding_circuit(x, "amplitude")
    >>> bool(np.allclose(Statevector(qc).data.real, x / np.linalg.norm(x))), fid
    (True, 1.0)
    >>> qc, fid = encoding_circuit(x, "staircase", layers=1)
    >>> qc.name, bool(np.isclose(abs(Statevector(qc).data @ x / np.linalg.norm(x)) ** 2, fid))
    ('encoding_staircase_n3_D1', True)
    """
    from qiskit import QuantumCircuit
    from qiskit.circuit.library import StatePreparation, UnitaryGate

    from qtnn.validate import check_choice

    encoding = check_choice("encoding", encoding, ("amplitude", "staircase"))
    enc = StaircaseEncoder(check_int("layers", layers, minimum=1, maximum=64))
    xn = enc._rows(x)                       # validated and normalised
    if xn.shape[0] != 1:
        raise QtnnError(f"x must be one input (2**n entries), got a batch of shape {xn.shape}")
    n = xn.shape[1].bit_length() - 1
    if encoding == "amplitude":
        qc = QuantumCircuit(n, name=f"encoding_amplitude_n{n}")
        # Qiskit's amplitude index sum_q b_q 2^q equals PennyLane's sum_w b_w 2^(n-1-w) for q = n-1-w
        qc.append(StatePreparation(xn[0]), range(n))
        return qc, 1.0
    res = enc.encode(xn)                    # normalised, as QuantumStaircase gives it (see above)
    qc = QuantumCircuit(n, name=f"encoding_staircase_n{n}_D{layers}")
    for d in range(layers):
        for j in range(n - 1):
            # wires (j, j+1), wire j the high bit = UnitaryGate on qubits [n-2-j, n-1-j]
            qc.append(UnitaryGate(res.gates[0, d, j]), [n - 2 - j, n - 1 - j])
    return qc, float(res.fidelities[0])


def encoding_cost(n_qubits: int, layers: int, backend: Any = "fake:torino", seed: int = 0,
                  optimization_level: int = 2) -> dict[str, dict[str, Any]]:
    """Two-qubit gates and depth of one input's encoding, staircase vs ``StatePrep``, transpiled.

    A random unit input of ``2**n_qubits`` entries (the circuits of
    :func:`encoding_circuit`); both circuits measure all
    qubits.  Returns ``{"staircase": {...}, "stateprep": {...}}`` with ``two_qubit``
    (gates on two qubits after transpilation), ``depth`` and ``fidelity`` (the
    staircase's; 1 for ``StatePrep``).  ``backend=None`` gives logical counts: CX and one-qubit
    gates without a coupling map.

    Examples
    --------
    >>> cost = encoding_cost(4, 1, optimization_level=1)
    >>> cost["staircase"]["two_qubit"] <= 3 * 3 < cost["stateprep"]["two_qubit"]
    True
    """
    from qiskit import transpile

    from qtnn.quantum.ibm import backend_by_name

    n = check_int("n_qubits", n_qubits, minimum=2, maximum=MAX_QUBITS)
    # backend=None: logical counts, CX and one-qubit gates without a coupling map
    where = {"basis_gates": ["cx", "u"]} if backend is None else {"backend": backend_by_name(backend)}
    x = np.random.default_rng(seed).normal(size=2**n)
    out: dict[str, dict[str, Any]] = {}
    for name, kind in (("staircase", "staircase"), ("stateprep", "amplitude")):
        qc, fid = encoding_circuit(x, kind, layers)
        qc.measure_all()
        tqc = transpile(qc, **where, optimization_level=optimization_level, seed_transpiler=seed)
        two = sum(1 for inst in tqc.data if inst.operation.num_qubits == 2)
        out[name] = {"two_qubit": int(two), "depth": int(tqc.depth()), "fidelity": fid}
    return out
