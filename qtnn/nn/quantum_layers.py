"""Torch modules whose core is a staircase circuit (``docs/design/math.md``, sections 5-6).

Each module runs on one of two backends, switchable at any time without
touching the weights (:meth:`set_backend`):

``"reference"``
    the classical contraction path: the staircase applied to the batch of
    state vectors by one compiled kernel each way (:mod:`qtnn.staircase.kernel`;
    gates built from their angles, normalisation and readout included; large
    batches on a GPU run as torch ops there, :data:`GPU_OPS_MIN_ENTRIES`),
    batched and differentiable.  It is the reference every quantum result is
    tested against and the fast path for training.
``"pennylane"``
    QNodes on a :func:`qtnn.quantum.device` (exact simulators, Aer with or
    without shots, IBM device models, hardware).

Real two-qubit gates are parametrised by their six magic-basis angles and a
fixed determinant sign (:mod:`qtnn.staircase.magic`), so the same weights
drive the compiled reference kernel, one ``QubitUnitary`` per gate, or the native
parameter-shift-friendly decomposition.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.nn.mpo_linear import _check_dtype
from qtnn.validate import check_alloc, check_bond, check_choice, check_int, check_real, pow2, renamed

__all__ = ["StaircaseGates", "QuantumStaircase", "DisentangledLinear", "QuantumHead",
           "circuit_matrix"]

_BACKENDS = ("reference", "pennylane")


def circuit_matrix(gates: torch.Tensor, n_qubits: int, k: int = 2, *,
                   inverse: bool = False, layout: str = "staircase") -> torch.Tensor:
    """The matrix ``R`` with ``x @ R == C x`` for every state row ``x`` (``R = C^T``).

    Built by pushing the identity through the gates (differentiable).  With
    ``inverse=True`` it is the matrix of ``C^T`` (``= C^dagger`` for real gates);
    ``layout`` is the in-layer order (:func:`qtnn.staircase.window_order`).

    Examples
    --------
    >>> import torch
    >>> from qtnn.staircase import Staircase
    >>> c = Staircase.random(3, 2, seed=1)
    >>> R = circuit_matrix(torch.tensor(c.gates), 3)
    >>> bool(torch.allclose(R.T, torch.tensor(c.to_matrix()), atol=1e-12))
    True
    """
    check_int("n_qubits", n_qubits, minimum=1)
    check_alloc(f"the 2^{n_qubits} x 2^{n_qubits} circuit matrix (n_qubits={n_qubits})",
                pow2(n_qubits) ** 2, hint="use fewer qubits")
    eye = torch.eye(2**n_qubits, dtype=gates.dtype, device=gates.device)
    return _apply_circuit(eye, gates, n_qubits, k, inverse=inverse, layout=layout)


def _apply_circuit(x: torch.Tensor, gates: torch.Tensor, n: int, k: int = 2, *,
                   inverse: bool = False, layout: str = "staircase") -> torch.Tensor:
    """``C x`` for rows ``x`` as torch ops (``C^T x`` with ``inverse``: gates transposed, last first)."""
    from qtnn.staircase import apply_gates

    if inverse:
        return apply_gates(x, gates.flip(0).transpose(-1, -2), n, k, descending=True, layout=layout)
    return apply_gates(x, gates, n, k, layout=layout)


def _staircase_kernel() -> Any:
    """The reference path of a magic-angle staircase as one autograd Function.

    ``apply(x, angles, dets, n, probs, inverse, nonzero)`` runs the
    ``(D, n-1, 6)``-angle staircase (``dets`` a float64 numpy array of the
    gates' determinants) on the rows of ``x`` (``(batch, 2^n)``) and returns
    ``C x`` or, with ``probs``, ``|C x|^2 / ||x||^2``; ``inverse`` runs ``C^T``
    (gates transposed, last first); ``nonzero`` refuses all-zero rows.  The
    whole circuit, gates built from the angles included, is one compiled call
    each way (:mod:`qtnn.staircase.kernel`): this is what makes the classical
    path fast at small ``n``, where a step is dominated by per-call costs.
    Gradients flow to ``x`` and the angles.
    """
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    from torch.autograd.function import once_differentiable

    from qtnn.staircase import kernel as _jit

    def backward(ctx: Any, gy: torch.Tensor) -> Any:
        xs, a, d, pos, perm, state, r2, mode, inverse, n, dtype, dev = ctx.stash
        angles, _ = ctx.saved_tensors   # (raises if either was modified in place since forward)
        want_x, want_a = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        d_a, d_x = _jit.staircase_backward(np.ascontiguousarray(_as_numpy(gy)), state, r2, xs, a,
                                           d, pos, inverse, n, mode, want_a, want_x)
        ga = gx = None
        if want_a:
            d_a = np.ascontiguousarray(d_a[::-1]) if inverse else d_a
            if perm is not None:  # back from the order of application to (layer, window)
                full = np.empty_like(d_a)
                full[perm] = d_a
                d_a = full
            ga = _from_numpy(d_a.reshape(angles.shape), angles.dtype, angles.device)
        if want_x:
            gx = _from_numpy(d_x, dtype, dev)
        return gx, ga, None, None, None, None, None, None

    backward_once = once_differentiable(backward)

    class StaircaseReference(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, angles: torch.Tensor, dets: np.ndarray, n: int,
                    probs: bool, inverse: bool, nonzero: bool,
                    layout: str = "staircase") -> torch.Tensor:
            a = _as_numpy(angles).reshape(-1, 6)
            d = dets.reshape(-1)
            layers = a.shape[0] // max(n - 1, 1)
            pos = _gate_positions(n, layers, inverse, layout)
            perm = _gate_permutation(n, layers, layout)
            if perm is not None:
                a, d = a[perm], d[perm]
            if inverse:
                a, d = np.ascontiguousarray(a[::-1]), np.ascontiguousarray(d[::-1])
            xs = np.ascontiguousarray(_as_numpy(x))
            mode = _jit.MODE_PROBS if probs else _jit.MODE_STATE
            out, state, r2, status = _jit.staircase_forward(xs, a, d, pos, inverse, n, mode)
            if status & _jit.BAD_ANGLES:
                raise QtnnError("the staircase angles must be finite, got NaN or inf")
            if nonzero and status & _jit.ZERO_ROW:
                raise QtnnError("x must not contain all-zero rows (they cannot be amplitude-encoded)")
            ctx.save_for_backward(angles, x)  # xs and a may be views of their memory
            ctx.stash = (xs, a, d, pos, perm, state, r2, mode, inverse, n, x.dtype, x.device)
            return _from_numpy(out, x.dtype, x.device)

        @staticmethod
        def backward(ctx: Any, gy: torch.Tensor) -> Any:
            # once_differentiable (an error if a graph of this backward is ever differentiated)
            # costs a few microseconds: only needed when the backward runs with grad mode on
            return backward_once(ctx, gy) if torch.is_grad_enabled() else backward(ctx, gy)

    _KERNEL = StaircaseReference
    return _KERNEL


_KERNEL: Any = None


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    """A float64 numpy view (or copy) of a tensor, on the CPU."""
    t = t.detach()
    if t.dtype != torch.float64 or t.device.type != "cpu":
        t = t.to("cpu", torch.float64)
    return t.numpy()


def _from_numpy(a: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A tensor of ``dtype`` on ``device`` from a float64 numpy array (no copy when it can)."""
    t = torch.from_numpy(a)
    return t if dtype == torch.float64 and device.type == "cpu" else t.to(dtype=dtype, device=device)


#: The staircase encoding of QuantumStaircase(encoding="staircase", encoding_method=...) other than
#: "batched" (qtnn.quantum.encoding), the same on both backends: :func:`qtnn.staircase.encode_mps`'s
#: sweeps, the global sign fixed so <G0|x> >= 0.
_ENCODING_SWEEPS = 4


@functools.lru_cache(maxsize=64)
def _gate_positions(n: int, layers: int, inverse: bool, layout: str = "staircase") -> np.ndarray:
    """First qubit of every gate in the order the gates act (read-only)."""
    from qtnn.staircase.circuit import window_order

    order = window_order(n, 2, layout) if n >= 2 else ()
    pos = np.tile(np.asarray(order, dtype=np.int64), layers)
    pos = np.ascontiguousarray(pos[::-1]) if inverse else pos
    pos.setflags(write=False)
    return pos


@functools.lru_cache(maxsize=64)
def _gate_permutation(n: int, layers: int, layout: str) -> np.ndarray | None:
    """Flat ``(layer, window)`` index of every gate in the order the gates act (``None``: identity)."""
    from qtnn.staircase.circuit import window_order

    if layout == "staircase" or n < 2:
        return None
    order = np.asarray(window_order(n, 2, layout), dtype=np.int64)
    perm = (np.arange(layers, dtype=np.int64)[:, None] * (n - 1) + order[None, :]).reshape(-1)
    perm.setflags(write=False)
    return perm


#: On a GPU (any torch device but the CPU), a batch of at least this many amplitudes
#: (``batch x 2^n``) runs as torch ops on the device instead of the host kernel.
#: Measured on an H200 (forward+backward, 2 layers, probs; host kernel on the
#: machine's 16-core CPU, copies included): float64 n=8 batch 512 (2^17) 5.5 ms
#: host vs 8.8 ms device; n=12 batch 64 (2^18) 15.8 vs 10.8 ms; n=10 batch 512
#: 23.7 vs 10.9 ms; n=14 batch 512 1.02 s vs 20 ms; n=16 batch 64 655 vs 13 ms
#: (float32 alike).  Smaller circuits are launch-bound on the device (n=6 batch
#: 64: 0.5 ms host, 8.5 ms device).
GPU_OPS_MIN_ENTRIES = 1 << 18


def _device_ops(x: torch.Tensor, n: int) -> bool:
    """Whether the staircase on ``x`` runs as torch ops on ``x``'s device (see GPU_OPS_MIN_ENTRIES)."""
    return x.device.type != "cpu" and x.shape[0] * 2**n >= GPU_OPS_MIN_ENTRIES


@torch.compiler.disable
def _host_kernel(x: torch.Tensor, gates: StaircaseGates, n: int, probs: bool, inverse: bool,
                 nonzero: bool) -> torch.Tensor:
    """The compiled host kernel (numba on numpy views); ``torch.compile`` runs it eagerly, as a graph
    break, since its arrays cannot be traced."""
    return _staircase_kernel().apply(x, gates.angles, gates.dets_numpy(), n, probs, inverse, nonzero,
                                     gates.layout)


def _run_staircase(x: torch.Tensor, gates: StaircaseGates, n: int, *, probs: bool = False,
                   inverse: bool = False, nonzero: bool = False) -> torch.Tensor:
    """``C x`` (``C^T x`` with ``inverse``; ``|C x|^2 / ||x||^2`` with ``probs``) for rows ``x``.

    The compiled host kernel, or for large batches on a GPU torch ops on the
    device (:data:`GPU_OPS_MIN_ENTRIES`); the two agree to round-off.
    """
    has_gates = gates.layers > 0 and n >= 2
    if has_gates and not _device_ops(x, n):
        return _host_kernel(x, gates, n, probs, inverse, nonzero)
    # torch ops on x's device; magic_gates is differentiable in the angles
    y = (_apply_circuit(x, gates.gates().to(x.dtype), n, inverse=inverse, layout=gates.layout)
         if has_gates else x)
    if not (probs or nonzero):
        return y
    sq = (x * x).sum(dim=-1, keepdim=True)
    if nonzero and bool((sq == 0).any()):
        raise QtnnError("x must not contain all-zero rows (they cannot be amplitude-encoded)")
    return y * y / sq if probs else y


def _marginal(p: torch.Tensor, n: int, wires: tuple[int, ...]) -> torch.Tensor:
    """Marginal probabilities of ``wires`` (in that order) from the full distribution, batched."""
    t = p.reshape(-1, *([2] * n))
    drop = [1 + w for w in range(n) if w not in wires]
    if drop:
        t = t.sum(dim=drop)
    order = sorted(wires)
    if list(wires) != order:
        t = t.permute(0, *[1 + order.index(w) for w in wires])
    return t.reshape((*p.shape[:-1], 2 ** len(wires)))


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
    layout : {"staircase", "brickwall"}
        The in-layer gate order (:func:`qtnn.staircase.window_order`).

    Examples
    --------
    >>> g = StaircaseGates(4, 2, init="identity")
    >>> tuple(g.gates().shape)
    (2, 3, 4, 4)
    """

    dets: torch.Tensor

    def __init__(self, n_qubits: int, layers: int, *, init: str = "random",
                 dtype: torch.dtype | None = None, device: Any = None,
                 layout: str = "staircase") -> None:
        super().__init__()
        self.n_qubits = check_int("n_qubits", n_qubits, minimum=1)
        self.layers = check_int("layers", layers, minimum=0)
        check_choice("init", init, ("random", "identity"))
        self.layout = check_choice("layout", layout, ("staircase", "brickwall"))
        if self.layers > 0 and self.n_qubits < 2:
            raise QtnnError(f"a staircase of 2-qubit gates needs n_qubits >= 2, got n_qubits="
                            f"{self.n_qubits} with layers={self.layers}")
        g = max(self.n_qubits - 1, 0)
        angles = torch.zeros(self.layers, g, 6, dtype=dtype, device=device)
        if init == "random":
            angles.uniform_(0.0, 2 * math.pi)
        self.angles = nn.Parameter(angles)
        self.register_buffer("dets", torch.ones(self.layers, g, dtype=torch.int8, device=device))
        self._dets_cache: tuple[torch.Tensor, int, np.ndarray] | None = None

    @property
    def k(self) -> int:
        return 2

    def gates(self) -> torch.Tensor:
        """Gate matrices ``(layers, n-1, 4, 4)`` (differentiable)."""
        from qtnn.staircase.magic import magic_gates

        if self.layers == 0:
            return self.angles.new_zeros(0, max(self.n_qubits - 1, 0), 4, 4)
        return magic_gates(self.angles, self.dets.to(torch.float64).cpu().numpy())

    def dets_numpy(self) -> np.ndarray:
        """``dets`` as a float64 numpy array (cached until ``dets`` changes; do not modify)."""
        try:
            version = self.dets._version
        except RuntimeError:  # an inference-mode tensor keeps no version counter: no cache
            return self.dets.to("cpu", torch.float64).numpy()
        cache = self._dets_cache
        if cache is None or cache[0] is not self.dets or cache[1] != version:
            cache = (self.dets, version, self.dets.to("cpu", torch.float64).numpy())
            self._dets_cache = cache
        return cache[2]

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
        if staircase.layout != self.layout:
            raise QtnnError(f"staircase has layout={staircase.layout!r}; these gates have "
                            f"layout={self.layout!r}")
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
        return Staircase(self.n_qubits, self.layers, 2, gates, layout=self.layout)

    def extra_repr(self) -> str:
        extra = "" if self.layout == "staircase" else f", layout={self.layout!r}"
        return f"n_qubits={self.n_qubits}, layers={self.layers}{extra}"


class _QuantumModule(nn.Module):
    """Backend switching shared by the quantum modules."""

    def _backend_repr(self) -> str:
        """``backend='reference'`` or ``backend='pennylane', qdevice='<name>'`` (for ``repr``)."""
        if self.backend == "reference" or self.qdevice is None:
            return f"backend={self.backend!r}"
        return f"backend={self.backend!r}, qdevice={self.qdevice.name!r}"

    backend: str
    qdevice: Any

    def _init_backend(self, backend: str, qdevice: Any, device: Any = None) -> None:
        self.backend = "reference"
        self.qdevice = None
        self._qnodes: dict[Any, Any] = {}
        qdevice = renamed(type(self).__name__, "device", "qdevice", device, qdevice)
        self.set_backend(backend, qdevice)

    def set_backend(self, backend: str, qdevice: Any = None, *, device: Any = None) -> None:
        """Switch between ``"reference"`` and ``"pennylane"`` (with a device or a device name).

        Parameters
        ----------
        backend : {"reference", "pennylane"}
        qdevice : QDevice or str, optional
            The quantum device, required for ``"pennylane"``; a name is passed
            to :func:`qtnn.quantum.device` with the module's qubit count.
            (``device=`` is its deprecated name: ``device`` means the torch
            device everywhere else.)

        Examples
        --------
        >>> import torch
        >>> layer = QuantumStaircase(3, 1).double()
        >>> layer.set_backend("pennylane", "default.qubit")
        >>> layer.backend, layer.qdevice.name
        ('pennylane', 'default.qubit')
        """
        device = renamed(f"{type(self).__name__}.set_backend", "device", "qdevice", device, qdevice)
        check_choice("backend", backend, _BACKENDS)
        if backend == "pennylane":
            if device is None:
                raise QtnnError("backend='pennylane' needs a qdevice (a qtnn.quantum.device(...) or a "
                                "device name), got None")
            from qtnn.quantum import QDevice
            from qtnn.quantum import device as make_device

            if isinstance(device, str):
                device = make_device(device, wires=self._max_wires())
            elif not isinstance(device, QDevice):
                raise QtnnTypeError(f"qdevice must be a qtnn.quantum.device(...) or a device name, "
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

                dev = make_device(dev.name, wires=n, shots=dev.shots, seed=dev.seed, **dev.options)
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
    ``"state"`` the amplitudes ``C x`` (norm carried classically; estimated
    from counts on sampling devices), ``"probs"`` the probabilities of ``readout_wires`` (all
    by default), ``"expval"`` ``<Z_i>`` per wire.

    Parameters
    ----------
    n_qubits, layers : int
    in_features : int, optional
        Default ``2**n_qubits``.
    encoding : {"amplitude", "staircase"}
        Exact amplitude encoding, or the bounded-depth staircase encoding of
        each input (``encoding_layers`` layers; on the reference path the
        prepared, approximate state is used, as a device would).
    encoding_method : {"batched", "iterative", "ran", "sweep"}
        ``"batched"`` (default): :class:`qtnn.quantum.encoding.StaircaseEncoder`,
        the whole batch at once, cached per input (a data set is encoded once);
        the others: :func:`qtnn.staircase.encode_mps` per input.  The mean
        fidelity of the last batch is ``last_encoding_fidelity``.
    readout : {"state", "probs", "expval"}
        ``"state"`` on a sampling device is the signed-amplitude estimator of
        :mod:`qtnn.quantum.signed` (forward only).
    backend : {"reference", "pennylane"}
    qdevice : QDevice or str, optional
    layout : {"staircase", "brickwall"}
        The in-layer gate order of the trainable circuit.

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
                 backend: str = "reference", qdevice: Any = None, init: str = "random",
                 dtype: torch.dtype | None = None, layout: str = "staircase", device: Any = None,
                 encoding_method: str = "batched") -> None:
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
        self.encoding_method = check_choice("encoding_method", encoding_method,
                                            ("batched", "iterative", "ran", "sweep"))
        self.circuit = StaircaseGates(self.n_qubits, layers, init=init, dtype=dtype, layout=layout)
        self.last_encoding_fidelity: float | None = None
        self._init_backend(backend, qdevice, device)

    def _max_wires(self) -> int:
        return self.n_qubits

    def _encode_reference(self, xn: torch.Tensor) -> torch.Tensor:
        """Prepared states of the staircase encoding (fixed, not differentiated)."""
        from qtnn.staircase import encode_mps
        from qtnn.tn import MPS

        rows = xn.detach().reshape(-1, xn.shape[-1]).cpu().to(torch.float64).numpy()
        if self.encoding_method == "batched":
            from qtnn.quantum.encoding import prepare_states, shared_encoder

            res = shared_encoder(self.encoding_layers).encode(rows)
            states = prepare_states(res.gates)
            self.last_encoding_fidelity = res.fidelity_mean
            return torch.as_tensor(states, dtype=xn.dtype, device=xn.device).reshape(xn.shape)
        out, fids = [], []
        for row in rows:
            # the same encoding as the pennylane backend's QNode (method, sweeps, sign)
            st, rep = encode_mps(MPS.from_dense(row), self.encoding_layers, method=self.encoding_method,
                                 sweeps=_ENCODING_SWEEPS)
            state = st.state()
            out.append(-state if float(state @ row) < 0 else state)   # <G0|x> >= 0, as on the QNode
            fids.append(rep.final_fidelity)
        self.last_encoding_fidelity = float(np.mean(fids))
        return torch.as_tensor(np.stack(out), dtype=xn.dtype, device=xn.device).reshape(xn.shape)

    def extra_repr(self) -> str:
        enc = (f"encoding='staircase', encoding_layers={self.encoding_layers}" if self.encoding == "staircase"
               else "encoding='amplitude'")
        return (f"in_features={self.in_features}, n_qubits={self.n_qubits}, layers={self.circuit.layers}, "
                f"{enc}, readout={self.readout!r}, layout={self.circuit.layout!r}, {self._backend_repr()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_features(x, self.in_features)
        n = self.n_qubits
        xp = _pad(x, 2**n)
        if self.backend == "reference" and self.encoding == "amplitude":
            # one compiled call: normalisation, circuit and readout (C x = |x| C (x / |x|))
            rows = xp if xp.ndim == 2 else xp.reshape(-1, 2**n)
            probs = self.readout != "state"
            y = _run_staircase(rows, self.circuit, n, probs=probs, nonzero=True)
            y = y if xp.ndim == 2 else y.reshape(xp.shape)
            return self._readout(y) if probs else y
        norm = xp.norm(dim=-1, keepdim=True)
        if torch.any(norm == 0):
            raise QtnnError("x must not contain all-zero rows (they cannot be amplitude-encoded)")
        xn = xp / norm
        if self.backend == "pennylane":
            qn = self._qnode("main", n_qubits=n, layers=self.circuit.layers, encoding=self.encoding,
                             readout=self.readout, readout_wires=self.readout_wires,
                             encoding_layers=self.encoding_layers, encoding_method=self.encoding_method,
                             encoding_sweeps=_ENCODING_SWEEPS, layout=self.circuit.layout)
            y = qn(xn.reshape(-1, 2**n), self.circuit.angles, self.circuit.dets)
            self.last_encoding_fidelity = (getattr(qn, "last_fidelity_mean", None)
                                           if self.encoding == "staircase" else None)
            y = y.reshape((*x.shape[:-1], y.shape[-1])).to(x.dtype)
            return y * norm if self.readout == "state" else y
        xn = self._encode_reference(xn)       # the prepared (approximate) states, normalised
        state = _run_staircase(xn.reshape(-1, 2**n), self.circuit, n).reshape(xn.shape)
        if self.readout == "state":
            return state * norm
        return self._readout(state**2)

    def _readout(self, probs: torch.Tensor) -> torch.Tensor:
        """``"probs"`` of the readout wires or ``"expval"`` from the full distribution."""
        n = self.n_qubits
        if self.readout == "probs":
            if self.readout_wires == tuple(range(n)):
                return probs
            return _marginal(probs, n, self.readout_wires)
        from qtnn.quantum.qnode import expval_from_probs

        return expval_from_probs(probs)


class QuantumHead(_QuantumModule):
    """Classifier head: amplitude-encode features, run a staircase, read class probabilities.

    The first ``ceil(log2(n_classes))`` wires are measured; class ``c`` gets
    the probability of basis state ``c`` and the module returns
    ``log(p_c + eps)`` as logits (softmax of them renormalises over the
    classes).  This is the architecture that runs end to end on shot-based
    devices and hardware (only probabilities are needed).  ``encoding="staircase"``
    prepares each input by a staircase of ``encoding_layers`` layers instead of
    ``StatePrep`` (:mod:`qtnn.quantum.encoding`: ``encoding_layers * (n - 1)``
    two-qubit gates instead of ``O(2**n)``; approximate, its fidelity per batch
    in ``last_encoding_fidelity``).  ``layout``
    (``"staircase"`` or ``"brickwall"``) is the in-layer gate order of the
    circuit (``head.body.circuit``).

    Examples
    --------
    >>> import torch
    >>> head = QuantumHead(64, n_qubits=6, layers=2, n_classes=10)
    >>> tuple(head(torch.rand(4, 64)).shape)
    (4, 10)
    """

    def __init__(self, in_features: int, n_qubits: int, layers: int, n_classes: int, *,
                 backend: str = "reference", qdevice: Any = None, eps: float = 1e-6,
                 dtype: torch.dtype | None = None, layout: str = "staircase", device: Any = None,
                 encoding: str = "amplitude", encoding_layers: int = 2) -> None:
        super().__init__()
        self.n_classes = check_int("n_classes", n_classes, minimum=2)
        n_qubits = check_int("n_qubits", n_qubits, minimum=2)
        n_read = max(1, math.ceil(math.log2(self.n_classes)))
        if n_read > n_qubits:
            raise QtnnError(f"n_classes={n_classes} needs {n_read} readout qubits, more than "
                            f"n_qubits={n_qubits}")
        self.eps = check_real("eps", eps, minimum=0, strict_min=True)
        self.body = QuantumStaircase(n_qubits, layers, in_features=in_features, readout="probs",
                                     readout_wires=tuple(range(n_read)), dtype=dtype,
                                     layout=layout, encoding=encoding, encoding_layers=encoding_layers)
        self.in_features = self.body.in_features
        self.n_qubits = n_qubits
        self._init_backend(backend, qdevice, device)

    def _max_wires(self) -> int:
        return self.n_qubits

    def set_backend(self, backend: str, qdevice: Any = None, *, device: Any = None) -> None:
        super().set_backend(backend, qdevice, device=device)
        self.body.set_backend(backend, self.qdevice)

    @property
    def encoding(self) -> str:
        """``"amplitude"`` (``StatePrep``) or ``"staircase"`` (bounded depth)."""
        return self.body.encoding

    @property
    def last_encoding_fidelity(self) -> float | None:
        """Mean encoding fidelity of the last batch (``encoding="staircase"``; else ``None``)."""
        return self.body.last_encoding_fidelity

    def extra_repr(self) -> str:
        c = self.body.circuit
        return (f"in_features={self.in_features}, n_qubits={self.n_qubits}, layers={c.layers}, "
                f"n_classes={self.n_classes}, layout={c.layout!r}, {self._backend_repr()}")

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
    QNode (``U``), norms carried classically; on a sampling device both
    circuits are read by the signed-amplitude estimator of
    :mod:`qtnn.quantum.signed` (``(n + 1) * shots`` shots per input and circuit,
    forward only).
    ``layout`` (``"staircase"`` or ``"brickwall"``) is the in-layer gate order
    of both circuits.

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
                 max_bond: int, *, bias: bool = True, backend: str = "reference", qdevice: Any = None,
                 dtype: torch.dtype | None = None, layout: str = "staircase", device: Any = None) -> None:
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
        self.U = StaircaseGates(self.n_out, out_layers, init="identity", dtype=dtype, layout=layout)
        self.V = StaircaseGates(self.n_in, in_layers, init="identity", dtype=dtype, layout=layout)
        self.cores = nn.ParameterList(
            nn.Parameter(torch.empty(bonds[k], od[k], idm[k], bonds[k + 1], dtype=dtype))
            for k in range(sites))
        self.bias = nn.Parameter(torch.empty(self.out_features, dtype=dtype)) if bias else None
        self.report: Any = None
        self.reset_parameters()
        self._init_backend(backend, qdevice, device)

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
            z = _run_staircase(xp, self.V, self.n_in, inverse=True)
            m = self._apply_m(z)
            y = _run_staircase(m, self.U, self.n_out)
        y = y[:, : self.out_features].reshape((*lead, self.out_features))
        return y + self.bias if self.bias is not None else y

    def _state_qnode(self, which: str, v: torch.Tensor) -> torch.Tensor:
        gates = self.V if which == "V" else self.U
        if gates.layers == 0:
            return v
        norm = v.norm(dim=-1, keepdim=True)
        safe = torch.where(norm == 0, torch.ones_like(norm), norm)
        qn = self._qnode(which, n_qubits=gates.n_qubits, layers=gates.layers, encoding="amplitude",
                         readout="state", inverse=(which == "V"), layout=gates.layout)
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
                    bias=bias is not None, dtype=dtype,
                    layout=res.U.layout if res.U.layers else res.V.layout)
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
                f"in_layers={self.V.layers}, max_bond={self.max_bond}, "
                f"bond_dims={[int(c.shape[-1]) for c in list(self.cores)[:-1]]}, layout={self.U.layout!r}, "
                f"{self._backend_repr()}")
