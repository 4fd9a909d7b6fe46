"""Torch modules whose core is a staircase circuit (DESIGN.md §5–6).

Each module runs on one of two backends, switchable at any time without
touching the weights (:meth:`set_backend`):

``"reference"``
    the classical contraction path: gates applied to the state vector in
    torch (for ``n <= FUSE_QUBITS`` the circuit is first fused into its
    ``2^n x 2^n`` matrix, so a batch costs one matmul), batched and
    differentiable.  It is the reference every quantum result is tested
    against and the fast path for training.
``"pennylane"``
    QNodes on a :func:`qtnn.quantum.device` (exact simulators, Aer with or
    without shots, IBM device models, hardware).

Real two-qubit gates are parametrised by their six magic-basis angles and a
fixed determinant sign (:mod:`qtnn.staircase.magic`), so the same weights
drive the fused matrix, one ``QubitUnitary`` per gate, or the native
parameter-shift-friendly decomposition.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from qtnn._validate import check_alloc, check_bond, check_choice, check_int, check_real, pow2
from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.nn.mpo_linear import _check_dtype

__all__ = ["StaircaseGates", "QuantumStaircase", "DisentangledLinear", "QuantumHead",
           "FUSE_QUBITS", "circuit_matrix"]

#: Up to this many qubits the reference path fuses the circuit into one matrix.
FUSE_QUBITS = 10

_BACKENDS = ("reference", "pennylane")


def circuit_matrix(gates: torch.Tensor, n_qubits: int, k: int = 2, *,
                   inverse: bool = False) -> torch.Tensor:
    """The matrix ``R`` with ``x @ R == C x`` for every state row ``x`` (``R = C^T``).

    Built by pushing the identity through the gates (differentiable).  With
    ``inverse=True`` it is the matrix of ``C^T`` (``= C^dagger`` for real gates).

    Examples
    --------
    >>> import torch
    >>> from qtnn.staircase import Staircase
    >>> c = Staircase.random(3, 2, seed=1)
    >>> R = circuit_matrix(torch.tensor(c.gates), 3)
    >>> bool(torch.allclose(R.T, torch.tensor(c.to_matrix()), atol=1e-12))
    True
    """
    from qtnn.staircase import apply_gates

    eye = torch.eye(2**n_qubits, dtype=gates.dtype, device=gates.device)
    if inverse:
        return apply_gates(eye, gates.flip(0).transpose(-1, -2), n_qubits, k, descending=True)
    return apply_gates(eye, gates, n_qubits, k)


def _run_reference(x: torch.Tensor, gates: torch.Tensor, n: int, k: int, *,
                   inverse: bool = False) -> torch.Tensor:
    """``C x`` (or ``C^T x``) for a batch of rows, fused when that is cheaper."""
    from qtnn.staircase import apply_gates

    rows = x.reshape(-1, x.shape[-1])
    if gates.shape[0] == 0:
        return x
    # fusing costs ~gates * 4^n (building the matrix) against ~gates * batch * 2^n per
    # gate application, so it pays once the batch is about as large as the state
    if n <= FUSE_QUBITS and rows.shape[0] >= 2**n:
        out = rows @ circuit_matrix(gates, n, k, inverse=inverse)
    elif inverse:
        out = apply_gates(rows, gates.flip(0).transpose(-1, -2), n, k, descending=True)
    else:
        out = apply_gates(rows, gates, n, k)
    return out.reshape(x.shape)


def _staircase_kernel() -> Any:
    """The reference path of a magic-angle staircase as one autograd Function.

    Forward applies the ``(D, n-1)`` gates to the batch in numpy, one
    broadcast ``4 x 4`` matmul per gate (``x`` reshaped to ``(-1, 4, rest)``,
    no transposes), keeping the state before every gate.  Backward runs the
    gates' transposes in reverse, collecting ``dL/dG`` for each gate, and maps
    them to the angles with the exact shift identity of rotation generators,
    ``dG/d(alpha_k) = G(alpha + pi e_k) / 2`` (every angle enters through an
    ``RZ`` or ``RY``).  A few dozen array operations per call instead of
    hundreds of small autograd nodes: this is what makes the classical path
    fast at small ``n``.
    """
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    from torch.autograd.function import once_differentiable

    from qtnn.staircase._mpsops import single_threaded_blas
    from qtnn.staircase.magic import magic_gates_fast as magic_gates

    class StaircaseReference(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, angles: torch.Tensor, dets: np.ndarray,
                    n: int) -> torch.Tensor:
            a = angles.detach().cpu().numpy().astype(np.float64, copy=False)
            if not np.all(np.isfinite(a)):
                raise QtnnError("the staircase angles must be finite, got NaN or inf")
            if angles.requires_grad:
                # the gates and their six shifted copies in one call: (D, G, 7, 4, 4)
                both = magic_gates(a[..., None, :] + _SHIFTS, dets[..., None])
                gates, shifted = both[..., 0, :, :], both[..., 1:, :, :]
            else:
                gates, shifted = magic_gates(a, dets), None
            s = x.detach().cpu().numpy().astype(np.float64, copy=False)
            b = s.shape[0]
            states = []
            with single_threaded_blas():  # small GEMMs: threads would fight torch's
                ops = _fused_ops(gates, fuse=b * 2**n >= FUSE_MIN_ENTRIES)
                for j, f, _ in ops:
                    states.append(s)
                    s = _apply_block(f, s, b * 2**j)
            ctx.save_for_backward(angles)
            ctx.stash = (shifted, gates, ops, states, x.dtype, x.device)
            return torch.from_numpy(s).to(dtype=x.dtype, device=x.device)

        @staticmethod
        @once_differentiable
        def backward(ctx: Any, gy: torch.Tensor) -> Any:
            shifted, gates, ops, states, dtype, dev = ctx.stash
            g = gy.detach().cpu().numpy().astype(np.float64, copy=False)
            b = g.shape[0]
            d_gates = np.zeros_like(gates)
            with single_threaded_blas():
                for (j, f, members), s_in in zip(reversed(ops), reversed(states), strict=False):
                    d_f = _outer_block(g, s_in, b * 2**j, f.shape[0])
                    if len(members) == 1:
                        d_gates[members[0]] = d_f
                    else:  # f = p q, p = I2 (x) G2, q = G1 (x) I2: split dL/df between the gates
                        (l1, j1), (l2, j2), p, q = members
                        d_p = d_f @ q.T
                        d_q = p.T @ d_f
                        d_gates[l2, j2] = np.einsum("iaib->ab", d_p.reshape(2, 4, 2, 4))
                        d_gates[l1, j1] = np.einsum("aibi->ab", d_q.reshape(4, 2, 4, 2))
                    g = _apply_block(f.T, g, b * 2**j)
            d_angles = 0.5 * np.einsum("lgab,lgkab->lgk", d_gates, shifted)
            gx = torch.from_numpy(g).to(dtype=dtype, device=dev) if ctx.needs_input_grad[0] else None
            ga = (torch.from_numpy(d_angles).to(dtype=ctx.saved_tensors[0].dtype,
                                                device=ctx.saved_tensors[0].device)
                  if ctx.needs_input_grad[1] else None)
            return gx, ga, None, None

    _KERNEL = StaircaseReference
    return _KERNEL


_KERNEL: Any = None

#: Fuse neighbouring gates into 3-qubit blocks once the batch of states has this
#: many entries.  Measured (2-core CPU, forward+backward, 2 layers): fused is 1.6x
#: faster at n=10 and 1.2x at n=8 (batch 64), 1.4-1.7x at batch 512, and equal at
#: n=4, now that narrow blocks run as one GEMM: always fuse.
FUSE_MIN_ENTRIES = 0

#: Row 0: the angles; rows 1-6: each angle shifted by pi (dG/d(alpha_k) = G(alpha + pi e_k) / 2).
_SHIFTS = np.vstack([np.zeros(6), np.pi * np.eye(6)])


def _fused_ops(gates: np.ndarray, fuse: bool = True) -> list[tuple[int, np.ndarray, tuple]]:
    """The gates of every layer fused in neighbouring pairs into 3-qubit blocks.

    Gates ``j`` and ``j+1`` of a layer act in that order on qubits ``j..j+2``:
    ``f = (I2 (x) G_{j+1}) (G_j (x) I2)``.  Each entry is ``(first qubit,
    block matrix, member gate indices [and the two factors])``; halving the
    passes over the state is what matters at larger ``n``, where each pass is
    memory-bound (``fuse=False`` keeps single gates; see :data:`FUSE_MIN_ENTRIES`).
    """
    d, g = gates.shape[:2]
    if not fuse or g < 2:
        return [(j, gates[layer, j], ((layer, j),)) for layer in range(d) for j in range(g)]
    # every pair (2i, 2i+1) of every layer at once: q = G_2i (x) I2, p = I2 (x) G_2i+1
    m = g // 2
    q = np.einsum("...ab,cd->...acbd", gates[:, 0:2 * m:2], _EYE2).reshape(d, m, 8, 8)
    p = np.einsum("cd,...ab->...cadb", _EYE2, gates[:, 1:2 * m:2]).reshape(d, m, 8, 8)
    f = p @ q
    ops: list[tuple[int, np.ndarray, tuple]] = []
    for layer in range(d):
        ops += [(2 * i, f[layer, i], ((layer, 2 * i), (layer, 2 * i + 1), p[layer, i], q[layer, i]))
                for i in range(m)]
        if g % 2:  # an odd number of gates: the last one alone
            ops.append((g - 1, gates[layer, g - 1], ((layer, g - 1),)))
    return ops


_EYE2 = np.eye(2)


#: A block whose trailing axis (``m x rest``) is at most this wide is applied as one
#: GEMM with ``kron(block, I_rest)``: more flops, but one well-shaped product
#: instead of ``lead`` tiny ones (measured 3-7x faster for ``rest`` = 2, 4).
_KRON_WIDTH = 16


def _kron_rest(block: np.ndarray, rest: int) -> np.ndarray:
    """``K`` with ``x.reshape(-1, m * rest) @ K`` = ``block`` on axis 1 of ``x`` as ``(lead, m, rest)``."""
    m = block.shape[0]
    return np.einsum("ab,rs->bras", block, np.eye(rest)).reshape(m * rest, m * rest)


def _apply_block(block: np.ndarray, s: np.ndarray, lead: int) -> np.ndarray:
    """``block`` (``m x m``) on axis 1 of ``s`` viewed as ``(lead, m, rest)``; returns ``(batch, -1)``."""
    b = s.shape[0]
    m = block.shape[0]
    rest = s.size // (lead * m)
    if rest == 1:  # the block ends on the last qubit: one GEMM
        return (s.reshape(lead, m) @ np.ascontiguousarray(block.T)).reshape(b, -1)
    if m * rest <= _KRON_WIDTH:
        return (s.reshape(-1, m * rest) @ _kron_rest(block, rest)).reshape(b, -1)
    return np.matmul(block, s.reshape(lead, m, rest)).reshape(b, -1)


def _outer_block(g: np.ndarray, s: np.ndarray, lead: int, m: int) -> np.ndarray:
    """``sum_{l,r} g[l, a, r] s[l, b, r]`` for both viewed as ``(lead, m, rest)``.

    The fastest formulation depends on the shape (measured, 2-core CPU): one
    GEMM when ``rest == 1``; one GEMM over rows of ``m * rest`` and the trace
    over ``rest`` when that is narrow; transposed copies and one GEMM for small
    arrays or short rows; batched products summed over ``lead`` for long rows;
    ``tensordot`` otherwise.
    """
    g3 = g.reshape(lead, m, -1)
    s3 = s.reshape(lead, m, -1)
    rest = g3.shape[2]
    if rest == 1:
        return g3.reshape(lead, m).T @ s3.reshape(lead, m)
    if m * rest <= _KRON_WIDTH:
        full = g.reshape(-1, m * rest).T @ s.reshape(-1, m * rest)
        return np.einsum("arbr->ab", full.reshape(m, rest, m, rest))
    if g3.size <= 16384 or 4 <= rest <= 8:
        return g3.transpose(1, 0, 2).reshape(m, -1) @ s3.transpose(1, 0, 2).reshape(m, -1).T
    if rest >= 16:
        return np.matmul(g3, s3.transpose(0, 2, 1)).sum(axis=0)
    return np.tensordot(g3, s3, axes=([0, 2], [0, 2]))


def _probs_from_state(state: torch.Tensor, n: int, wires: tuple[int, ...]) -> torch.Tensor:
    """Marginal probabilities of ``wires`` from (normalised) amplitudes, batched."""
    p = (state.abs() ** 2 if state.is_complex() else state**2).reshape(-1, *([2] * n))
    drop = [1 + w for w in range(n) if w not in wires]
    if drop:
        p = p.sum(dim=drop)
    order = sorted(wires)
    if list(wires) != order:
        p = p.permute(0, *[1 + order.index(w) for w in wires])
    return p.reshape((*state.shape[:-1], 2 ** len(wires)))


def _expval_from_probs(p: torch.Tensor, n: int) -> torch.Tensor:
    """``<Z_i>`` for every wire from the full distribution."""
    t = p.reshape(-1, *([2] * n))
    out = []
    for w in range(n):
        m = t.sum(dim=[1 + v for v in range(n) if v != w]) if n > 1 else t
        out.append(m[:, 0] - m[:, 1])
    return torch.stack(out, dim=-1).reshape((*p.shape[:-1], n))


class StaircaseGates(nn.Module):
    """The trainable gates of one staircase (``n_qubits``, ``layers``, 2-qubit, real).

    Holds ``angles`` (``layers x (n-1) x 6`` magic-basis angles, a parameter)
    and ``dets`` (``+-1`` per gate, a buffer).  ``gates()`` returns the
    ``(layers, n-1, 4, 4)`` orthogonal matrices, differentiable in the angles.

    Parameters
    ----------
    n_qubits, layers : int
    init : {"random", "identity"}
        Uniform angles in ``[0, 2 pi)`` (seeded by torch's RNG) or all zeros
        (every gate the identity).

    Examples
    --------
    >>> g = StaircaseGates(4, 2, init="identity")
    >>> tuple(g.gates().shape)
    (2, 3, 4, 4)
    """

    dets: torch.Tensor

    def __init__(self, n_qubits: int, layers: int, *, init: str = "random",
                 dtype: torch.dtype | None = None, device: Any = None) -> None:
        super().__init__()
        self.n_qubits = check_int("n_qubits", n_qubits, minimum=1)
        self.layers = check_int("layers", layers, minimum=0)
        check_choice("init", init, ("random", "identity"))
        if self.layers > 0 and self.n_qubits < 2:
            raise QtnnError(f"a staircase of 2-qubit gates needs n_qubits >= 2, got n_qubits="
                            f"{self.n_qubits} with layers={self.layers}")
        g = max(self.n_qubits - 1, 0)
        angles = torch.zeros(self.layers, g, 6, dtype=dtype, device=device)
        if init == "random":
            angles.uniform_(0.0, 2 * math.pi)
        self.angles = nn.Parameter(angles)
        self.register_buffer("dets", torch.ones(self.layers, g, dtype=torch.int8, device=device))

    @property
    def k(self) -> int:
        return 2

    def gates(self) -> torch.Tensor:
        """Gate matrices ``(layers, n-1, 4, 4)`` (differentiable)."""
        from qtnn.staircase.magic import magic_gates

        if self.layers == 0:
            return self.angles.new_zeros(0, max(self.n_qubits - 1, 0), 4, 4)
        return magic_gates(self.angles, self.dets.to(torch.float64).cpu().numpy())

    def load_staircase(self, staircase: Any) -> None:
        """Set the angles and dets from a real 2-qubit :class:`~qtnn.staircase.Staircase`."""
        from qtnn.staircase.magic import magic_angles

        if staircase.n_qubits == self.n_qubits and staircase.layers == self.layers == 0:
            return  # nothing to load; an empty staircase on 1 qubit has k = 1
        if staircase.n_qubits != self.n_qubits or staircase.layers != self.layers or staircase.k != 2:
            raise QtnnError(f"staircase has n_qubits={staircase.n_qubits}, layers={staircase.layers}, "
                            f"k={staircase.k}; expected {self.n_qubits}, {self.layers}, 2")
        if getattr(staircase, "descending", False):
            raise QtnnError("staircase must use the ascending gate order")
        if staircase.is_complex:
            raise QtnnTypeError("only real (orthogonal) staircases can be loaded into StaircaseGates")
        ang, dets = magic_angles(staircase.gates)
        with torch.no_grad():
            self.angles.copy_(torch.as_tensor(ang, dtype=self.angles.dtype))
            self.dets.copy_(torch.as_tensor(dets, dtype=torch.int8))

    def to_staircase(self) -> Any:
        """The current gates as a float64 :class:`~qtnn.staircase.Staircase`."""
        from qtnn.staircase import Staircase

        gates = self.gates().detach().to("cpu", torch.float64).numpy()
        return Staircase(self.n_qubits, self.layers, 2, gates)

    def extra_repr(self) -> str:
        return f"n_qubits={self.n_qubits}, layers={self.layers}"


class _QuantumModule(nn.Module):
    """Backend switching shared by the quantum modules."""

    backend: str
    qdevice: Any

    def _init_backend(self, backend: str, device: Any) -> None:
        self.backend = "reference"
        self.qdevice = None
        self._qnodes: dict[Any, Any] = {}
        self.set_backend(backend, device)

    def set_backend(self, backend: str, device: Any = None) -> None:
        """Switch between ``"reference"`` and ``"pennylane"`` (with a device or a device name).

        Parameters
        ----------
        backend : {"reference", "pennylane"}
        device : QDevice or str, optional
            Required for ``"pennylane"``; a name is passed to
            :func:`qtnn.quantum.device` with the module's qubit count.
        """
        check_choice("backend", backend, _BACKENDS)
        if backend == "pennylane":
            if device is None:
                raise QtnnError("backend='pennylane' needs a device (a qtnn.quantum.device(...) or a "
                                "device name), got None")
            from qtnn.quantum import QDevice
            from qtnn.quantum import device as make_device

            if isinstance(device, str):
                device = make_device(device, wires=self._max_wires())
            elif not isinstance(device, QDevice):
                raise QtnnTypeError(f"device must be a qtnn.quantum.device(...) or a device name, "
                                    f"got {type(device).__name__} {device!r:.60}")
        self.backend = backend
        self.qdevice = device
        self._qnodes = {}

    def _max_wires(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def _qnode(self, key: Any, **kw: Any) -> Any:
        from qtnn.quantum import StaircaseQNode

        if key not in self._qnodes:
            dev = self.qdevice
            n = kw.pop("n_qubits")
            if dev.wires != n and kw.get("readout") == "state":
                # qml.state() returns every device wire: run on a device of exactly n wires
                from qtnn.quantum import device as make_device

                dev = make_device(dev.name, wires=n, shots=dev.shots, seed=dev.seed)
            self._qnodes[key] = StaircaseQNode(dev, n, **kw)
        return self._qnodes[key]


def _check_features(x: Any, n: int, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise QtnnTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != n:
        raise QtnnError(f"{name} must have shape (..., {n}), got {tuple(x.shape)}")
    return x


def _pad(x: torch.Tensor, size: int) -> torch.Tensor:
    return x if x.shape[-1] == size else nn.functional.pad(x, (0, size - x.shape[-1]))


class QuantumStaircase(_QuantumModule):
    """A trainable staircase on ``n_qubits`` applied to encoded inputs.

    ``forward(x)`` takes ``(..., in_features)`` with ``in_features <= 2**n``
    (zero-padded), encodes ``x / ||x||`` and returns, by ``readout``:
    ``"state"`` the amplitudes ``C x`` (norm carried classically; exact
    simulators only), ``"probs"`` the probabilities of ``readout_wires`` (all
    by default), ``"expval"`` ``<Z_i>`` per wire.

    Parameters
    ----------
    n_qubits, layers : int
    in_features : int, optional
        Default ``2**n_qubits``.
    encoding : {"amplitude", "staircase"}
        Exact amplitude encoding, or the bounded-depth staircase encoding of
        each input's MPS (``encoding_layers`` layers; on the reference path the
        prepared, approximate state is used, as a device would).
    readout : {"state", "probs", "expval"}
    backend : {"reference", "pennylane"}
    device : QDevice or str, optional

    Examples
    --------
    >>> import torch
    >>> layer = QuantumStaircase(3, layers=2, readout="probs")
    >>> p = layer(torch.rand(5, 8))
    >>> tuple(p.shape), bool(torch.allclose(p.sum(-1), torch.ones(5)))
    ((5, 8), True)
    """

    def __init__(self, n_qubits: int, layers: int, k: int = 2, *, in_features: int | None = None,
                 encoding: str = "amplitude", readout: str = "state",
                 readout_wires: tuple[int, ...] | None = None, encoding_layers: int = 2,
                 backend: str = "reference", device: Any = None, init: str = "random",
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if check_int("k", k, minimum=2) != 2:
            raise QtnnError(f"k must be 2 for trainable staircases (magic-basis gates), got {k}")
        self.n_qubits = check_int("n_qubits", n_qubits, minimum=2)
        check_alloc(f"a state vector of n_qubits={self.n_qubits}", pow2(self.n_qubits),
                    hint="use fewer qubits")
        _check_dtype(dtype)
        if isinstance(readout_wires, (int, str)):
            raise QtnnTypeError(f"readout_wires must be a sequence of wire indices or None, got "
                                f"{readout_wires!r}")
        self.in_features = 2**self.n_qubits if in_features is None else check_int(
            "in_features", in_features, minimum=1, maximum=2**self.n_qubits)
        self.encoding = check_choice("encoding", encoding, ("amplitude", "staircase"))
        self.readout = check_choice("readout", readout, ("state", "probs", "expval"))
        wires = tuple(range(self.n_qubits)) if readout_wires is None else tuple(readout_wires)
        for w in wires:
            check_int("readout_wires[...]", w, minimum=0, maximum=self.n_qubits - 1)
        if len(set(wires)) != len(wires) or not wires:
            raise QtnnError(f"readout_wires must be distinct wires, got {readout_wires!r}")
        self.readout_wires = wires
        self.encoding_layers = check_int("encoding_layers", encoding_layers, minimum=1)
        self.circuit = StaircaseGates(self.n_qubits, layers, init=init, dtype=dtype)
        self.last_encoding_fidelity: float | None = None
        self._init_backend(backend, device)

    def _max_wires(self) -> int:
        return self.n_qubits

    def _encode_reference(self, xn: torch.Tensor) -> torch.Tensor:
        """Prepared states of the staircase encoding (fixed, not differentiated)."""
        from qtnn.staircase import encode_mps
        from qtnn.tn import MPS

        out, fids = [], []
        for row in xn.detach().reshape(-1, xn.shape[-1]).cpu().to(torch.float64).numpy():
            st, rep = encode_mps(MPS.from_dense(row), self.encoding_layers)
            out.append(st.state())
            fids.append(rep.final_fidelity)
        self.last_encoding_fidelity = float(np.mean(fids))
        return torch.as_tensor(np.stack(out), dtype=xn.dtype, device=xn.device).reshape(xn.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_features(x, self.in_features)
        n = self.n_qubits
        xp = _pad(x, 2**n)
        norm = xp.norm(dim=-1, keepdim=True)
        if torch.any(norm == 0):
            raise QtnnError("x must not contain all-zero rows (they cannot be amplitude-encoded)")
        xn = xp / norm
        if self.backend == "pennylane":
            qn = self._qnode("main", n_qubits=n, layers=self.circuit.layers, encoding=self.encoding,
                             readout=self.readout, readout_wires=self.readout_wires,
                             encoding_layers=self.encoding_layers)
            y = qn(xn.reshape(-1, 2**n), self.circuit.angles, self.circuit.dets)
            self.last_encoding_fidelity = getattr(qn, "last_fidelity", None)
            y = y.reshape((*x.shape[:-1], y.shape[-1])).to(x.dtype)
            return y * norm if self.readout == "state" else y
        if self.encoding == "staircase":
            xn = self._encode_reference(xn)
        if self.circuit.layers == 0:
            state = xn
        else:
            rows = xn.reshape(-1, 2**n)
            dets = self.circuit.dets.cpu().numpy().astype(np.float64)
            state = _staircase_kernel().apply(rows, self.circuit.angles, dets, n).reshape(xn.shape)
        if self.readout == "state":
            return state * norm
        if self.readout == "probs":
            return _probs_from_state(state, n, self.readout_wires)
        return _expval_from_probs(_probs_from_state(state, n, tuple(range(n))), n)


class QuantumHead(_QuantumModule):
    """Classifier head: amplitude-encode features, run a staircase, read class probabilities.

    The first ``ceil(log2(n_classes))`` wires are measured; class ``c`` gets
    the probability of basis state ``c`` and the module returns
    ``log(p_c + eps)`` as logits (softmax of them renormalises over the
    classes).  This is the architecture that runs end to end on shot-based
    devices and hardware (only probabilities are needed).

    Examples
    --------
    >>> import torch
    >>> head = QuantumHead(64, n_qubits=6, layers=2, n_classes=10)
    >>> tuple(head(torch.rand(4, 64)).shape)
    (4, 10)
    """

    def __init__(self, in_features: int, n_qubits: int, layers: int, n_classes: int, *,
                 backend: str = "reference", device: Any = None, eps: float = 1e-6,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.n_classes = check_int("n_classes", n_classes, minimum=2)
        n_qubits = check_int("n_qubits", n_qubits, minimum=2)
        n_read = max(1, math.ceil(math.log2(self.n_classes)))
        if n_read > n_qubits:
            raise QtnnError(f"n_classes={n_classes} needs {n_read} readout qubits, more than "
                            f"n_qubits={n_qubits}")
        self.eps = check_real("eps", eps, minimum=0, strict_min=True)
        self.body = QuantumStaircase(n_qubits, layers, in_features=in_features, readout="probs",
                                     readout_wires=tuple(range(n_read)), dtype=dtype)
        self.in_features = self.body.in_features
        self.n_qubits = n_qubits
        self._init_backend(backend, device)

    def _max_wires(self) -> int:
        return self.n_qubits

    def set_backend(self, backend: str, device: Any = None) -> None:
        super().set_backend(backend, device)
        self.body.set_backend(backend, self.qdevice)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.body(x)
        return torch.log(p[..., : self.n_classes] + self.eps)


class DisentangledLinear(_QuantumModule):
    r"""``y = U M V^T x + b``: a weight split into two staircases and a small MPO.

    ``V`` acts on the ``n_in = ceil(log2 in_features)`` input qubits and ``U``
    on the ``n_out`` output qubits (``out_layers`` / ``in_layers`` layers of
    real 2-qubit gates), ``M`` is an MPO of bond ``<= max_bond`` whose sites
    carry one output and one input qubit each (trivial sites pad the shorter
    side, as :meth:`qtnn.tn.MPO.from_dense`).  With ``backend="pennylane"`` the
    layer runs as QNode (``V^T``, ``"state"`` readout) -> classical ``M`` ->
    QNode (``U``), norms carried classically; this needs an exact simulator.

    After Aizpurua et al., "Quantum large language models via tensor network
    disentanglers", arXiv:2410.17397.

    Examples
    --------
    >>> import torch
    >>> lin = torch.nn.Linear(16, 8).double()
    >>> dl = DisentangledLinear.from_linear(lin, out_layers=1, in_layers=1, max_bond=4)
    >>> x = torch.randn(3, 16, dtype=torch.float64)
    >>> tuple(dl(x).shape)
    (3, 8)
    """

    def __init__(self, in_features: int, out_features: int, out_layers: int, in_layers: int,
                 max_bond: int, *, bias: bool = True, backend: str = "reference", device: Any = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.out_features = check_int("out_features", out_features, minimum=1)
        check_alloc(f"the padded input and output of in_features={self.in_features}, "
                    f"out_features={self.out_features}", self.in_features + self.out_features,
                    hint="use smaller features")
        _check_dtype(dtype)
        self.max_bond = check_bond("max_bond", max_bond)
        if self.max_bond is None:
            raise QtnnError("max_bond must be a positive integer, got None")
        self.n_in = max(1, math.ceil(math.log2(self.in_features)))
        self.n_out = max(1, math.ceil(math.log2(self.out_features)))
        sites = max(self.n_in, self.n_out)
        od = (2,) * self.n_out + (1,) * (sites - self.n_out)
        idm = (2,) * self.n_in + (1,) * (sites - self.n_in)
        from qtnn.nn.mpo_linear import bond_caps

        bonds = [1] + [min(self.max_bond, c) for c in bond_caps(od, idm)] + [1]
        self.U = StaircaseGates(self.n_out, out_layers, init="identity", dtype=dtype)
        self.V = StaircaseGates(self.n_in, in_layers, init="identity", dtype=dtype)
        self.cores = nn.ParameterList(
            nn.Parameter(torch.empty(bonds[k], od[k], idm[k], bonds[k + 1], dtype=dtype))
            for k in range(sites))
        self.bias = nn.Parameter(torch.empty(self.out_features, dtype=dtype)) if bias else None
        self.report: Any = None
        self.reset_parameters()
        self._init_backend(backend, device)

    def reset_parameters(self) -> None:
        """Cores as in :class:`~qtnn.nn.MPOLinear` (``Var(W_ij) = 1/(3 in)``), identity gates."""
        from qtnn.nn.mpo_linear import init_like_linear

        init_like_linear(list(self.cores), self.bias, self.in_features)

    def _max_wires(self) -> int:
        return max(self.n_in, self.n_out)

    @property
    def mpo(self) -> Any:
        """The residual ``M`` as a float64 :class:`~qtnn.tn.MPO`."""
        from qtnn.tn import MPO

        cores = [c.detach().cpu().to(torch.float64).numpy().copy() for c in self.cores]
        return MPO(cores, check=False)

    def _apply_m(self, z: torch.Tensor) -> torch.Tensor:
        from qtnn.tn.mpo import apply_cores

        return apply_cores(z, list(self.cores), (2**self.n_out, 2**self.n_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_features(x, self.in_features)
        lead = x.shape[:-1]
        xp = _pad(x, 2**self.n_in).reshape(-1, 2**self.n_in)
        if self.backend == "pennylane":
            z = self._state_qnode("V", xp)
            m = self._apply_m(z)
            y = self._state_qnode("U", m)
        else:
            z = _run_reference(xp, self.V.gates().to(xp.dtype), self.n_in, 2, inverse=True)
            m = self._apply_m(z)
            y = _run_reference(m, self.U.gates().to(m.dtype), self.n_out, 2)
        y = y[:, : self.out_features].reshape((*lead, self.out_features))
        return y + self.bias if self.bias is not None else y

    def _state_qnode(self, which: str, v: torch.Tensor) -> torch.Tensor:
        gates = self.V if which == "V" else self.U
        if gates.layers == 0:
            return v
        norm = v.norm(dim=-1, keepdim=True)
        safe = torch.where(norm == 0, torch.ones_like(norm), norm)
        qn = self._qnode(which, n_qubits=gates.n_qubits, layers=gates.layers, encoding="amplitude",
                         readout="state", inverse=(which == "V"))
        out = qn(v / safe, gates.angles, gates.dets).to(v.dtype)
        return out * norm

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_mpo(cls, mpo: Any, out_layers: int, in_layers: int, max_bond: int, *,
                 bias: Any = None, dtype: torch.dtype | None = None, **kwargs: Any) -> DisentangledLinear:
        """Initialise by :func:`qtnn.staircase.disentangle` of an MPO (qubit sites)."""
        from qtnn.staircase import disentangle
        from qtnn.tn import MPO

        if not isinstance(mpo, MPO):
            raise QtnnTypeError(f"mpo must be a qtnn.tn.MPO, got {type(mpo).__name__}")
        dtype = dtype or torch.get_default_dtype()
        res = disentangle(mpo, out_layers, in_layers, max_bond, **kwargs)
        out_f, in_f = mpo.shape
        return cls._from_result(res, in_f, out_f, out_layers, in_layers, max_bond, bias, dtype)

    @classmethod
    def from_linear(cls, linear: nn.Linear, out_layers: int, in_layers: int, max_bond: int,
                    **kwargs: Any) -> DisentangledLinear:
        """Initialise from a :class:`torch.nn.Linear` by disentangling its weight (float64 math).

        Keyword arguments go to :func:`qtnn.staircase.disentangle` (``sweeps``,
        ``restarts``, ``seed``...).  The result report is kept in ``.report``.
        """
        from qtnn.staircase import disentangle

        if not isinstance(linear, nn.Linear):
            raise QtnnTypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach().to("cpu", torch.float64).numpy()
        if not np.all(np.isfinite(w)):
            raise QtnnError("linear.weight must be finite, got NaN or inf")
        res = disentangle(w, out_layers, in_layers, max_bond, **kwargs)
        return cls._from_result(res, linear.in_features, linear.out_features, out_layers, in_layers,
                                max_bond, None if linear.bias is None else linear.bias.detach(),
                                linear.weight.dtype)

    @classmethod
    def _from_result(cls, res: Any, in_features: int, out_features: int, out_layers: int,
                     in_layers: int, max_bond: int, bias: Any, dtype: torch.dtype | None
                     ) -> DisentangledLinear:
        """A layer holding the result ``res`` of :func:`qtnn.staircase.disentangle` (and ``bias``)."""
        layer = cls(in_features, out_features, out_layers, in_layers, max_bond,
                    bias=bias is not None, dtype=dtype)
        layer._load(res, bias)
        return layer

    def _load(self, res: Any, bias: Any) -> None:
        self.U.load_staircase(res.U)
        self.V.load_staircase(res.V)
        if len(res.M.cores) != len(self.cores):
            raise QtnnError(f"residual MPO has {len(res.M.cores)} sites, expected {len(self.cores)}")
        dtype = self.U.angles.dtype
        self.cores = nn.ParameterList(nn.Parameter(torch.as_tensor(c, dtype=dtype).clone())
                                      for c in res.M.cores)
        if bias is not None and self.bias is not None:
            with torch.no_grad():
                self.bias.copy_(torch.as_tensor(bias, dtype=dtype))
        self.report = res

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"n_in={self.n_in}, n_out={self.n_out}, out_layers={self.U.layers}, "
                f"in_layers={self.V.layers}, bond_dims={[int(c.shape[-1]) for c in list(self.cores)[:-1]]}")
