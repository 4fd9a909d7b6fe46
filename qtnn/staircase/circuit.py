"""Staircase circuits held as arrays of gates.

A staircase layer on ``n`` qubits is the sequence of ``k``-qubit gates on the
windows ``(j, ..., j+k-1)`` for ``j = 0, 1, ..., n-k`` (in that order); a
circuit of ``D`` layers applies layer 0 first (see ``docs/design/math.md``, section 2, and
Ran, PRA 101, 032310 (2020); Rudolph et al., arXiv:2209.00595).  The unitary is

``G = g[D-1, n-k] ... g[D-1, 0] ... g[0, n-k] ... g[0, 0]``   (rightmost first).

Conventions: qubit 0 is the most significant bit of a basis index (PennyLane /
quimb order); inside a gate matrix the window's first qubit ``j`` is the most
significant bit of the ``2**k`` index.  Gates are real orthogonal by default
(a real unitary is a valid quantum gate) or complex unitary.

The classical simulation never forms the ``2**n x 2**n`` matrix: dense states
are updated one gate at a time by reshaping (:func:`apply_gates`, numpy or
torch, differentiable), and MPS are updated by gate application with SVD
splitting (no ``2**n`` vector at all).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.io import atomic_open
from qtnn.staircase import _mpsops
from qtnn.tn.linalg import qr_pos
from qtnn.tn.mps import CORE_OVERHEAD, MPS
from qtnn.validate import (
    as_float_array,
    check_alloc,
    check_bond,
    check_bool,
    check_choice,
    check_cutoff,
    check_int,
    check_path,
    check_seed,
    is_torch,
    pow2,
)

__all__ = ["Staircase", "apply_gates", "gates_from_params", "num_gate_params", "GeneratorParams",
           "MAX_LAYERS",
           "window_order", "brickwall_as_staircase", "LAYOUTS"]

#: Largest ``n_qubits`` for which :meth:`Staircase.to_matrix` builds the matrix.
MAX_MATRIX_QUBITS = 12

#: Tolerance on ``max |G^dagger G - I|`` for a gate to count as orthogonal / unitary.
UNITARY_ATOL = 1e-10

_FORMAT = "qtnn.staircase/1"


#: Most layers the iterative algorithms (:func:`~qtnn.staircase.encode_mps`,
#: :func:`~qtnn.staircase.disentangle`) accept: their cost grows like ``layers**2``, and
#: bounded depth is the point of a staircase (about a minute at 200 layers on 4 qubits).
MAX_LAYERS = 1000

#: Widest gate accepted: a ``k``-qubit gate is a ``2**k x 2**k`` matrix (``k = 16``: 32 GiB).
MAX_GATE_QUBITS = 16


#: Most qubits a staircase may have (a bound far past any device; it keeps array shapes finite).
MAX_QUBITS = 2**32


def _check_nk(n_qubits: Any, k: Any) -> tuple[int, int]:
    n = check_int("n_qubits", n_qubits, minimum=1, maximum=MAX_QUBITS)
    k = check_int("k", k, minimum=1, maximum=MAX_GATE_QUBITS)
    if k > n:
        raise QtnnError(f"k must be <= n_qubits={n} (a gate cannot act on more qubits than the "
                        f"circuit has), got k={k}")
    return n, k


def num_gate_params(k: int, complex: bool = False) -> int:
    """Number of real parameters of one ``k``-qubit gate.

    ``m(m-1)/2`` for a real orthogonal gate (the generator is antisymmetric; the
    determinant sign is a separate discrete choice) and ``m**2`` for a unitary
    (Hermitian generator), with ``m = 2**k``.

    Examples
    --------
    >>> num_gate_params(2), num_gate_params(2, complex=True)
    (6, 16)
    """
    k = check_int("k", k, minimum=1, maximum=MAX_GATE_QUBITS)
    check_bool("complex", complex)
    m = 2**k
    return m * m if complex else m * (m - 1) // 2


def _check_gate_array_shape(gates: Any, n: int, k: int) -> tuple[int, ...]:
    shape = tuple(int(s) for s in gates.shape)
    m = 2**k
    g = n - k + 1
    if len(shape) != 4 or shape[1:] != (g, m, m):
        raise QtnnError(f"gates must have shape (layers, n_qubits-k+1, 2**k, 2**k) = "
                        f"(D, {g}, {m}, {m}) for n_qubits={n}, k={k}; got {shape}")
    return shape


def _numeric_array(name: str, value: Any) -> np.ndarray:
    """``value`` as a finite numeric numpy array (empty allowed), or a :class:`QtnnError`."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise QtnnTypeError(f"{name} must be array-like, got {type(value).__name__}: {exc}") from None
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise QtnnTypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise QtnnError(f"{name} must be finite, got NaN or inf in an array of shape {arr.shape}")
    return arr


# ------------------------------------------------------------------ dense path
#: Circuit layouts: the order of the ``n - k + 1`` windows inside a layer.
LAYOUTS = ("staircase", "brickwall")


def _check_layout(layout: Any, k: int) -> str:
    """``layout`` validated (one of :data:`LAYOUTS`; ``"brickwall"`` needs ``k = 2``)."""
    layout = check_choice("layout", layout, LAYOUTS)
    if layout == "brickwall" and k != 2:
        raise QtnnError(f"layout='brickwall' needs k=2 (gates on neighbouring pairs), got k={k}")
    return str(layout)


def window_order(n_qubits: int, k: int = 2, layout: str = "staircase",
                 descending: bool = False) -> tuple[int, ...]:
    """The windows ``j`` of one layer in application order.

    A layer holds one ``k``-qubit gate on every window ``j..j+k-1``
    (``j = 0..n-k``).  ``"staircase"`` applies them in ascending ``j`` (depth
    ``n - k + 1`` per layer); ``"brickwall"`` (``k = 2`` only) applies the even
    windows, then the odd ones (two parallel sublayers: depth 2 per layer, the
    same gates and parameters per layer).  ``descending`` reverses the order
    (the order of the inverse circuit).

    Examples
    --------
    >>> window_order(6), window_order(6, layout="brickwall")
    ((0, 1, 2, 3, 4), (0, 2, 4, 1, 3))
    >>> window_order(6, layout="brickwall", descending=True)
    (3, 1, 4, 2, 0)
    """
    n, k = _check_nk(n_qubits, k)
    layout = _check_layout(layout, k)
    g = n - k + 1
    order = list(range(0, g, 2)) + list(range(1, g, 2)) if layout == "brickwall" else list(range(g))
    return tuple(order[::-1]) if descending else tuple(order)


def brickwall_as_staircase(gates: Any, *, descending: bool = False) -> np.ndarray:
    """The gates ``(D, n-1, 4, 4)`` of a brickwall circuit as those of a ``2D``-layer staircase.

    Each brickwall layer becomes two layers: its even windows (identities on
    the odd ones), then its odd windows -- odd first for a ``descending``
    layer.  The gates of such a layer act on disjoint qubits, so their order
    inside it does not matter and the two circuits are the same operator.

    Examples
    --------
    >>> import numpy as np
    >>> c = Staircase.random(5, 2, seed=1, layout="brickwall")
    >>> s = Staircase(5, 4, 2, brickwall_as_staircase(c.gates))
    >>> bool(np.allclose(s.to_matrix(), c.to_matrix(), rtol=0, atol=1e-12))
    True
    """
    g = np.asarray(gates)
    d, count = g.shape[:2]
    out = np.broadcast_to(np.eye(g.shape[-1], dtype=g.dtype), (2 * d, *g.shape[1:])).copy()
    first, second = (slice(1, count, 2), slice(0, count, 2)) if descending else (
        slice(0, count, 2), slice(1, count, 2))
    for layer in range(d):
        out[2 * layer, first] = g[layer, first]
        out[2 * layer + 1, second] = g[layer, second]
    return out


def apply_gates(x: Any, gates: Any, n_qubits: int, k: int = 2, *, descending: bool = False,
                layout: str = "staircase") -> Any:
    """Apply staircase gates to a batch of dense states, one gate at a time.

    Parameters
    ----------
    x : ndarray or torch.Tensor, shape (..., 2**n_qubits)
        States (need not be normalised).  Qubit 0 is the most significant bit.
    gates : ndarray or torch.Tensor, shape (D, n_qubits-k+1, 2**k, 2**k)
        ``gates[l, j]`` acts on qubits ``j..j+k-1`` in layer ``l``.  Not checked
        for orthogonality here (trainable tensors pass through unchanged).
    n_qubits, k : int
        Number of qubits and gate width.
    descending : bool
        Inside each layer apply ``j = n-k, ..., 0`` instead of ``0, ..., n-k``
        (the order of an inverse staircase).
    layout : {"staircase", "brickwall"}
        The in-layer order (:func:`window_order`; reversed with ``descending``).

    Returns
    -------
    Same type as the torch operand if either is a torch tensor (autograd flows
    through ``x`` and ``gates``), else a numpy array; dtype is the promotion of
    both dtypes, shape ``x.shape``.  Numpy input must be finite (NaN or inf is a
    :class:`~qtnn.QtnnError`); torch tensors are not scanned (this is the
    training path) and follow torch: NaN in, NaN out.  The ``2**n x 2**n`` matrix is never formed:
    each gate is a ``(2**k, 2**k)`` matmul on ``x`` reshaped to
    ``(batch, 2**j, 2**k, 2**(n-j-k))``.

    Raises
    ------
    QtnnSizeError
        If the working state would exceed the memory limit
        (:func:`qtnn.validate.check_alloc`).

    Examples
    --------
    >>> import numpy as np
    >>> cnot = np.eye(4)[[0, 1, 3, 2]]
    >>> h = np.array([[1, 1], [1, -1]]) / np.sqrt(2)
    >>> gates = np.stack([cnot @ np.kron(h, np.eye(2))])[None]   # one layer, one gate
    >>> np.round(apply_gates(np.array([1.0, 0, 0, 0]), gates, 2), 6)
    array([0.707107, 0.      , 0.      , 0.707107])
    """
    n, k = _check_nk(n_qubits, k)
    descending = check_bool("descending", descending)
    _check_layout(layout, k)
    if not is_torch(gates):
        gates = _numeric_array("gates", gates)
    _check_gate_array_shape(gates, n, k)
    if not is_torch(x):
        x = _numeric_array("x", x)
    dim = 2**n
    if len(x.shape) < 1 or int(x.shape[-1]) != dim:
        raise QtnnError(f"x must have shape (..., 2**n_qubits) = (..., {dim}); got {tuple(x.shape)}")
    lead = tuple(int(s) for s in x.shape[:-1])
    batch = math.prod(lead)
    torch_mode = is_torch(x) or is_torch(gates)
    if torch_mode:
        import torch

        if not is_torch(x):
            xarr = np.asarray(x)
            x = torch.as_tensor(xarr if xarr.flags.writeable else xarr.copy())
        if not is_torch(gates):
            garr = np.asarray(gates)
            gates = torch.as_tensor(garr if garr.flags.writeable else garr.copy())
        if not (x.is_floating_point() or x.is_complex()):
            x = x.to(torch.float64)
        dtype = torch.promote_types(x.dtype, gates.dtype)
        itemsize = torch.empty((), dtype=dtype).element_size()
        check_alloc(f"a dense batch of {batch} states on {n} qubits", 2.0 * batch * dim, itemsize,
                    hint="apply the circuit to an MPS instead")
        x = x.to(dtype)
        gates = gates.to(dtype=dtype, device=x.device)
    else:
        np_dtype = np.result_type(x.dtype, gates.dtype, np.float64)
        check_alloc(f"a dense batch of {batch} states on {n} qubits", 2.0 * batch * dim,
                    np.dtype(np_dtype).itemsize, hint="apply the circuit to an MPS instead")
        x = x.astype(np_dtype, copy=False)
        gates = gates.astype(np_dtype, copy=False)
    m = 2**k
    order = window_order(n, k, layout, descending)
    y = x.reshape(batch, dim)
    for layer in range(int(gates.shape[0])):
        for j in order:
            y = (gates[layer, j] @ y.reshape(batch, 2**j, m, 2 ** (n - j - k)))
    return y.reshape(*lead, dim)


# ------------------------------------------------------------ parametrisation
def _infer_m(p: int, complex: bool) -> int:
    for k in range(1, 12):
        m = 2**k
        if (m * m if complex else m * (m - 1) // 2) == p:
            return m
    kind = "m**2 (complex)" if complex else "m(m-1)/2 (real)"
    raise QtnnError(f"params must have a last axis of size {kind} with m = 2**k "
                    f"(e.g. {6 if not complex else 16} for k=2); got {p}")


def gates_from_params(params: Any, signs: Any = None, *, complex: bool = False) -> Any:
    """Orthogonal / unitary gates from unconstrained real parameters (differentiable).

    Real case (``complex=False``): ``params[..., :]`` are the ``m(m-1)/2``
    entries above the diagonal (row-major) of ``A``; the gate is
    ``G = S @ expm(A - A^T)`` with ``S = diag(sign, 1, ..., 1)``, so
    ``sign = -1`` reaches the determinant ``-1`` component of O(m).
    Complex case: ``params[..., :]`` are ``m`` diagonal entries, then the real
    and then the imaginary parts of the ``m(m-1)/2`` upper-triangle entries
    (row-major) of a Hermitian ``H``; the gate is ``G = S @ expm(i H)``.

    Parameters
    ----------
    params : ndarray or torch.Tensor, shape (..., p)
    signs : array_like of +-1, shape (...), optional
        Default all ``+1``.
    complex : bool
        Unitary instead of orthogonal gates.

    Returns
    -------
    Gates of shape ``(..., m, m)``: a torch tensor (autograd through
    ``params``, via :func:`torch.linalg.matrix_exp`) when ``params`` is one,
    else a numpy array.

    Examples
    --------
    >>> import numpy as np
    >>> g = gates_from_params(np.linspace(0.1, 0.6, 6))
    >>> g.shape, bool(np.allclose(g @ g.T, np.eye(4), atol=1e-12))
    ((4, 4), True)
    """
    import torch

    complex = check_bool("complex", complex)
    torch_in = is_torch(params)
    if torch_in:
        p = params
        if p.ndim < 1:
            raise QtnnError(f"params must have at least one axis, got shape {tuple(p.shape)}")
        if p.is_complex():
            raise QtnnTypeError(f"params must be real, got dtype {p.dtype}")
        if not p.is_floating_point():
            p = p.to(torch.float64)
        if not bool(torch.isfinite(p).all()):
            raise QtnnError(f"params must be finite, got NaN or inf in a tensor of shape {tuple(p.shape)}")
    else:
        arr = as_float_array("params", params, allow_complex=False)
        if arr.ndim < 1:
            raise QtnnError(f"params must have at least one axis, got shape {arr.shape}")
        p = torch.as_tensor(arr)
    m = _infer_m(int(p.shape[-1]), complex)
    lead = tuple(p.shape[:-1])
    iu = np.triu_indices(m, 1)
    r0 = torch.as_tensor(iu[0])
    r1 = torch.as_tensor(iu[1])
    if complex:
        cdtype = torch.complex128 if p.dtype == torch.float64 else torch.complex64
        nt = len(iu[0])
        d, re, im = p[..., :m], p[..., m:m + nt], p[..., m + nt:]
        u = torch.zeros(*lead, m, m, dtype=cdtype, device=p.device)
        u[..., r0, r1] = torch.complex(re, im)
        h = u + u.conj().transpose(-1, -2) + torch.diag_embed(d.to(cdtype))
        e = torch.linalg.matrix_exp(1j * h)
    else:
        a = torch.zeros(*lead, m, m, dtype=p.dtype, device=p.device)
        a[..., r0, r1] = p
        e = torch.linalg.matrix_exp(a - a.transpose(-1, -2))
    if signs is not None:
        s = as_float_array("signs", signs, allow_complex=False)
        try:
            s = np.broadcast_to(s, lead)
        except ValueError:
            raise QtnnError(f"signs must have shape {lead} (one per gate), got {s.shape}") from None
        if not np.all(np.abs(np.abs(s) - 1.0) == 0):
            raise QtnnError(f"signs must all be +1 or -1, got values {np.unique(s)[:6]}")
        if np.any(s < 0):
            st = torch.as_tensor(np.array(s), dtype=e.real.dtype, device=e.device)
            e = torch.cat([st[..., None, None].to(e.dtype) * e[..., :1, :], e[..., 1:, :]], dim=-2)
    if torch_in:
        return e
    return e.detach().numpy()


def _real_log_special_orthogonal(g: np.ndarray) -> np.ndarray:
    """Real antisymmetric ``X`` with ``expm(X) = g`` for ``g`` in SO(m) (real Schur form).

    ``g = Q T Q^T`` with ``T`` block diagonal (rotations and +-1 entries); each
    2x2 block gives its angle ``atan2``; the ``-1`` entries (an even number)
    are paired into rotations by ``pi``, so eigenvalues at the branch cut are
    handled exactly.
    """
    import scipy.linalg

    t, q = scipy.linalg.schur(g, output="real")
    m = g.shape[0]
    lg = np.zeros((m, m))
    minus: list[int] = []
    i = 0
    while i < m:
        if i + 1 < m and abs(t[i + 1, i]) > 1e-13:
            theta = math.atan2(t[i + 1, i] - t[i, i + 1], t[i, i] + t[i + 1, i + 1])
            lg[i, i + 1] = -theta
            lg[i + 1, i] = theta
            i += 2
            continue
        if t[i, i] < 0:
            minus.append(i)
        i += 1
    for a, b in zip(minus[0::2], minus[1::2], strict=False):
        lg[a, b] = -math.pi
        lg[b, a] = math.pi
    x = q @ lg @ q.T
    return 0.5 * (x - x.T)


def _hermitian_log_unitary(g: np.ndarray) -> np.ndarray:
    """Hermitian ``H`` with ``expm(iH) = g`` for unitary ``g`` (complex Schur form)."""
    import scipy.linalg

    t, q = scipy.linalg.schur(g.astype(np.complex128), output="complex")
    theta = np.angle(np.diagonal(t))
    h = (q * theta) @ q.conj().T
    return 0.5 * (h + h.conj().T)


# ------------------------------------------------------------------ the class
class GeneratorParams(np.ndarray):
    """Generator coordinates of gates, as returned by :meth:`Staircase.params` (a tagged ``ndarray``).

    For ``k=2`` real gates they have the shape ``(D, n-1, 6)`` of the
    magic-basis angles that :class:`qtnn.quantum.StaircaseTemplate` takes, but
    another meaning; the tag lets the template (and QNodes in ``"magic"`` gate
    mode) refuse them instead of building a wrong circuit.  Arithmetic keeps
    the tag; ``np.asarray`` drops it.

    Examples
    --------
    >>> p, s = Staircase.random(3, 1, seed=0).params()
    >>> isinstance(p, GeneratorParams), p.shape
    (True, (1, 2, 6))
    """


class Staircase:
    """A staircase circuit of ``layers`` layers of ``k``-qubit gates on ``n_qubits`` qubits.

    Parameters
    ----------
    n_qubits : int
        Number of qubits ``n >= k``.
    layers : int
        Number of layers ``D >= 0``.
    k : int
        Qubits per gate (default 2).
    gates : array_like, shape (D, n-k+1, 2**k, 2**k), optional
        ``gates[l, j]`` acts on qubits ``j..j+k-1`` in layer ``l`` (the window's
        first qubit is the gate index's most significant bit).  ``None``:
        identity gates.  Torch tensors are detached and copied.
    complex : bool
        ``False`` (default): gates must be real and orthogonal to
        :data:`UNITARY_ATOL`; ``True``: unitary, stored as complex128.
    check : bool
        Check orthogonality / unitarity (shape and finiteness are always checked).
    descending : bool
        Inside each layer apply the gates ``j = n-k, ..., 0`` instead of
        ``0, ..., n-k``.  Only :meth:`inverse` needs it: the inverse of an
        ascending staircase is a descending one.
    layout : {"staircase", "brickwall"}
        The order of the gates inside a layer (:func:`window_order`):
        ``"brickwall"`` (``k = 2``) applies the even windows, then the odd
        ones -- the same gates and parameters per layer as a staircase, depth
        2 per layer instead of ``n - 1`` (the circuits of Aizpurua et al.,
        arXiv:2410.17397).  ``descending`` reverses it.

    Attributes
    ----------
    n_qubits, layers, k : int
    layout : str
    gates : ndarray
        float64 (real) or complex128 (complex), read-only copy.
    is_complex, descending : bool

    Notes
    -----
    Order: layer 0 acts first; inside a layer the gates act on windows
    ``j = 0, 1, ..., n-k`` in that order, so
    ``G = g[D-1, n-k] ... g[D-1, 0] ... g[0, n-k] ... g[0, 0]``.

    Examples
    --------
    >>> import numpy as np
    >>> c = Staircase.random(4, 2, seed=1)
    >>> c.num_gates, c.num_params, c.depth
    (6, 36, 5)
    >>> x = np.eye(16)[0]
    >>> bool(np.allclose(c.apply(x), c.to_matrix()[:, 0], rtol=0, atol=1e-12))
    True
    """

    def __init__(self, n_qubits: int, layers: int, k: int = 2, gates: Any = None, *,
                 complex: bool = False, check: bool = True, descending: bool = False,
                 layout: str = "staircase") -> None:
        n, k = _check_nk(n_qubits, k)
        d = check_int("layers", layers, minimum=0)
        _check_layout(layout, k)
        if not isinstance(complex, (bool, np.bool_)):
            raise QtnnTypeError(f"complex must be a bool, got {complex!r}")
        if not isinstance(descending, (bool, np.bool_)):
            raise QtnnTypeError(f"descending must be a bool, got {descending!r}")
        m = 2**k
        g_count = n - k + 1
        check_alloc(f"the gates of a staircase of {d} layers of {k}-qubit gates on {n} qubits",
                    2.0 * d * g_count * m * m, 16 if complex else 8,
                    hint="use fewer layers, qubits or a smaller k")
        if gates is None:
            arr = np.broadcast_to(np.eye(m), (d, g_count, m, m)).copy()
        else:
            if hasattr(gates, "detach") and hasattr(gates, "cpu"):
                gates = gates.detach().cpu().numpy()
            try:
                garr = np.asarray(gates)
            except (ValueError, TypeError) as exc:  # ragged nested lists
                raise QtnnError(f"gates must be an array of shape ({d}, {g_count}, {m}, {m}), "
                                f"got {type(gates).__name__} that numpy cannot read: {exc}") from None
            if garr.dtype != object and garr.ndim == 4 and garr.shape[0] == 0 and d == 0 \
                    and garr.shape[1:] == (g_count, m, m):
                arr = np.zeros((0, g_count, m, m))
            else:
                arr = as_float_array("gates", gates, allow_complex=True)
            _check_gate_array_shape(arr, n, k)
            if arr.shape[0] != d:
                raise QtnnError(f"gates has {arr.shape[0]} layers but layers={d}; "
                                f"gates must have shape ({d}, {g_count}, {m}, {m})")
            if np.iscomplexobj(arr) and not complex:
                raise QtnnError("gates must be real when complex=False (pass complex=True for "
                                f"unitary gates); got dtype {arr.dtype}")
        arr = arr.astype(np.complex128 if complex else np.float64, copy=True)
        if check and arr.size:
            eye = np.eye(m)
            prod = np.conj(np.swapaxes(arr, -1, -2)) @ arr
            dev = np.abs(prod - eye).max(axis=(-1, -2))
            worst = np.unravel_index(int(np.argmax(dev)), dev.shape)
            if dev[worst] > UNITARY_ATOL:
                what = "unitary" if complex else "orthogonal"
                raise QtnnError(f"gates[{worst[0]}, {worst[1]}] is not {what}: "
                                f"max |G^dagger G - I| = {dev[worst]:.3g} > {UNITARY_ATOL:g}")
        arr.setflags(write=False)
        self.n_qubits = n
        self.layers = d
        self.k = k
        self.gates = arr
        self.is_complex = bool(complex)
        self.descending = bool(descending)
        self.layout = str(layout)

    # ---------------------------------------------------------------- builders
    @classmethod
    def random(cls, n_qubits: int, layers: int, k: int = 2, seed: int | None = 0,
               complex: bool = False, *, layout: str = "staircase") -> Staircase:
        """Haar-random orthogonal (or unitary) gates.

        Each gate is the ``Q`` factor of a Gaussian matrix with ``diag(R) > 0``
        (Mezzadri, Notices AMS 54, 592 (2007)), which is Haar distributed on
        O(m) / U(m).

        Examples
        --------
        >>> Staircase.random(3, 1, seed=0).gates.shape
        (1, 2, 4, 4)
        """
        n, k = _check_nk(n_qubits, k)
        d = check_int("layers", layers, minimum=0)
        seed = check_seed("seed", seed)
        complex = check_bool("complex", complex)
        rng = np.random.default_rng(seed)
        m = 2**k
        g_count = n - k + 1
        check_alloc(f"the gates of a staircase of {d} layers of {k}-qubit gates on {n} qubits",
                    3.0 * d * g_count * m * m, 16 if complex else 8,
                    hint="use fewer layers, qubits or a smaller k")
        out = np.empty((d, g_count, m, m), dtype=np.complex128 if complex else np.float64)
        for li in range(d):
            for j in range(g_count):
                a = rng.normal(size=(m, m))
                if complex:
                    a = a + 1j * rng.normal(size=(m, m))
                out[li, j] = qr_pos(a)[0]
        return cls(n, d, k, out, complex=complex, layout=layout)

    @classmethod
    def from_params(cls, n_qubits: int, layers: int, params: Any, signs: Any = None, k: int = 2,
                    *, complex: bool = False, layout: str = "staircase") -> Staircase:
        """Build a staircase from :func:`gates_from_params` parameters of shape ``(D, n-k+1, p)``.

        Examples
        --------
        >>> c = Staircase.random(3, 2, seed=2)
        >>> p, s = c.params()
        >>> bool(abs(Staircase.from_params(3, 2, p, s).gates - c.gates).max() < 1e-10)
        True
        """
        n, k = _check_nk(n_qubits, k)
        d = check_int("layers", layers, minimum=0)
        arr = as_float_array("params", params, allow_complex=False) if d else np.zeros(
            (0, n - k + 1, num_gate_params(k, complex)))
        want = (d, n - k + 1, num_gate_params(k, complex))
        if arr.shape != want:
            raise QtnnError(f"params must have shape {want}, got {arr.shape}")
        gates = gates_from_params(arr, signs, complex=complex) if d else None
        return cls(n, d, k, gates, complex=complex, layout=layout)

    # --------------------------------------------------------------- counting
    @property
    def num_gates(self) -> int:
        """Number of ``k``-qubit gates, ``D * (n - k + 1)``.

        Examples
        --------
        >>> Staircase(5, 3).num_gates
        12
        """
        return self.layers * (self.n_qubits - self.k + 1)

    @property
    def num_params(self) -> int:
        """Real parameters: ``num_gates * m(m-1)/2`` (real) or ``num_gates * m**2`` (complex), ``m = 2**k``.

        Examples
        --------
        >>> Staircase(5, 3).num_params, Staircase(5, 3, complex=True).num_params
        (72, 192)
        """
        return self.num_gates * num_gate_params(self.k, self.is_complex)

    @property
    def depth(self) -> int:
        """Number of time steps when gates on disjoint qubits run in parallel (as soon as possible).

        With ``G = n - k + 1`` gates per layer: ``0`` for ``D = 0``; ``D`` for
        ``k = 1``; otherwise ``G + (D - 1) * min(k, G)``.  (Gate ``(l, j)``
        starts at step ``j + 1 + k*l`` when ``G >= k``: consecutive gates of a
        layer share ``k-1`` qubits, and gate ``(l, 0)`` waits for gate
        ``(l-1, k-1)``.)  For ``k = 2`` and ``n >= 3`` this is ``n - 1 + 2(D - 1)``.  The
        count is in ``k``-qubit gates, before any compilation.

        Examples
        --------
        >>> Staircase(6, 3).depth, Staircase(6, 3, k=3).depth
        (9, 10)

        A brickwall layer is two steps (one for ``n = 2``), so ``2 D``
        (:meth:`schedule` gives the steps):

        >>> Staircase(6, 3, layout="brickwall").depth
        6
        """
        d, k, g = self.layers, self.k, self.n_qubits - self.k + 1
        if d == 0:
            return 0
        if self.layout != "staircase":
            return int(self.schedule().max())
        if k == 1:
            return d
        return g + (d - 1) * min(k, g)

    def schedule(self) -> np.ndarray:
        """ASAP time step (1-based) of every gate, shape ``(D, n-k+1)``; its max is :attr:`depth`.

        Examples
        --------
        >>> Staircase(4, 2).schedule().tolist()
        [[1, 2, 3], [3, 4, 5]]
        """
        busy = np.zeros(self.n_qubits, dtype=int)
        g_count = self.n_qubits - self.k + 1
        out = np.zeros((self.layers, g_count), dtype=int)
        order = window_order(self.n_qubits, self.k, self.layout, self.descending)
        for li in range(self.layers):
            for j in order:
                t = int(busy[j:j + self.k].max()) + 1
                busy[j:j + self.k] = t
                out[li, j] = t
        return out

    # ------------------------------------------------------------- applying
    def apply(self, state: Any, max_bond: int | None = None, cutoff: float = 0.0) -> Any:
        """``G |state>`` for dense states or an MPS.

        Parameters
        ----------
        state : ndarray, torch.Tensor (shape ``(..., 2**n)``) or :class:`~qtnn.tn.MPS`
            Dense batch (see :func:`apply_gates`; torch input stays
            differentiable) or an MPS with ``n_qubits`` sites of dimension 2.
        max_bond, cutoff : optional
            MPS only: at every SVD split keep at most ``max_bond`` singular
            values and drop a tail of relative norm ``cutoff`` (numerically zero
            tails below ``1e-14`` are always dropped).

        Returns
        -------
        ndarray, torch.Tensor or MPS
            Dense: same kind and shape as ``state``.  MPS: a new MPS (``center =
            n - 1`` for ascending circuits, ``0`` for descending ones; gauge fixed by
            :func:`~qtnn.tn.linalg.svd_fixed`).

        Examples
        --------
        >>> from qtnn.tn import MPS
        >>> c = Staircase.random(5, 2, seed=3)
        >>> psi = c.apply(MPS.product_state([0] * 5))
        >>> psi.bond_dims, round(psi.norm(), 12)
        ([2, 4, 4, 2], 1.0)
        """
        if isinstance(state, MPS):
            return self._apply_mps(state, max_bond, cutoff)
        if max_bond is not None or cutoff:
            raise QtnnError("max_bond and cutoff apply to MPS input only; got a dense state with "
                            f"max_bond={max_bond!r}, cutoff={cutoff!r}")
        return apply_gates(state, self.gates, self.n_qubits, self.k, descending=self.descending,
                           layout=self.layout)

    def _apply_mps(self, psi: MPS, max_bond: Any, cutoff: Any) -> MPS:
        max_bond = check_bond("max_bond", max_bond)
        cutoff = check_cutoff("cutoff", cutoff)
        if psi.num_sites != self.n_qubits:
            raise QtnnError(f"the MPS has {psi.num_sites} sites but the circuit has "
                            f"n_qubits={self.n_qubits}")
        if any(d != 2 for d in psi.phys_dims):
            raise QtnnError(f"the MPS must have physical dims all 2 (qubits), got {psi.phys_dims}")
        if np.iscomplexobj(self.gates) and not np.iscomplexobj(psi.cores[0]):
            cores = [c.astype(np.complex128) for c in psi.cores]
        else:
            cores = list(psi.cores)
        if self.layers == 0:
            out = psi.copy()
            out.size = 2**self.n_qubits
            return out
        gates = self.gates
        if self.layout == "brickwall":
            # each brickwall layer as two staircase layers of disjoint gates (identities between)
            gates = brickwall_as_staircase(gates, descending=self.descending)
        with _mpsops.single_threaded_blas():
            cs = _mpsops.apply_circuit(cores, gates, self.k, descending=self.descending,
                                       max_bond=max_bond, cutoff=cutoff)
        res = MPS(cs, check=False)
        res.center = 0 if self.descending else self.n_qubits - 1
        return res

    def state(self) -> np.ndarray:
        """The dense state ``G |0...0>`` (refused with ``QtnnSizeError`` when too large).

        Examples
        --------
        >>> import numpy as np
        >>> np.round(Staircase(2, 1).state(), 12)
        array([1., 0., 0., 0.])
        """
        check_alloc(f"a dense state on {self.n_qubits} qubits", 2.0 * pow2(self.n_qubits),
                    self.gates.itemsize, hint="use state_mps()")
        dim = 2**self.n_qubits
        x = np.zeros(dim, dtype=self.gates.dtype)
        x[0] = 1.0
        return self.apply(x)

    def state_mps(self, max_bond: int | None = None, cutoff: float = 0.0) -> MPS:
        """``G |0...0>`` as an MPS (bond at most ``2**((k-1) D)``), never a dense vector.

        Examples
        --------
        >>> Staircase.random(8, 2, seed=0).state_mps().max_bond
        4
        """
        check_alloc(f"an MPS on {self.n_qubits} qubits", self.n_qubits * (4.0 + CORE_OVERHEAD),
                    hint="use fewer qubits")
        return self.apply(MPS.product_state([0] * self.n_qubits), max_bond=max_bond, cutoff=cutoff)

    def inverse(self) -> Staircase:
        """The inverse circuit ``G^dagger``: layers reversed, gates conjugate-transposed,
        and the in-layer order flipped (:attr:`descending` toggled).

        Examples
        --------
        >>> import numpy as np
        >>> c = Staircase.random(4, 2, seed=0)
        >>> x = np.random.default_rng(0).normal(size=16)
        >>> bool(np.allclose(c.inverse().apply(c.apply(x)), x, rtol=0, atol=1e-12))
        True
        """
        return Staircase(self.n_qubits, self.layers, self.k, _mpsops.inverse_gates(self.gates),
                         complex=self.is_complex, check=False, descending=not self.descending,
                         layout=self.layout)

    def to_matrix(self) -> np.ndarray:
        """The ``2**n x 2**n`` unitary ``G`` (only for ``n_qubits <= 12``).

        Examples
        --------
        >>> import numpy as np
        >>> u = Staircase.random(3, 1, seed=0).to_matrix()
        >>> bool(np.allclose(u.T @ u, np.eye(8), atol=1e-12))
        True
        """
        if self.n_qubits > MAX_MATRIX_QUBITS:
            raise QtnnError(f"to_matrix builds a 2**n x 2**n matrix and is limited to n_qubits <= "
                            f"{MAX_MATRIX_QUBITS}; got n_qubits={self.n_qubits}")
        dim = 2**self.n_qubits
        return np.ascontiguousarray(self.apply(np.eye(dim, dtype=self.gates.dtype)).T)

    # -------------------------------------------------------- parametrisation
    def params(self) -> tuple[np.ndarray, np.ndarray]:
        """Parameters ``(params, signs)`` with ``gates_from_params(params, signs) == gates``.

        These are generator coordinates (a :class:`GeneratorParams` array), not
        the magic-basis angles that :class:`qtnn.quantum.StaircaseTemplate`
        takes (same shape for ``k=2`` real gates, different meaning; the
        template refuses them).  For the template use
        ``StaircaseTemplate.from_staircase(circ, wires)`` or
        :func:`qtnn.staircase.magic.magic_angles` of ``gates``.

        ``params`` has shape ``(D, n-k+1, p)`` (see :func:`gates_from_params`),
        ``signs`` shape ``(D, n-k+1)``.  Real gates: ``sign = det(G)`` and the
        generator is the real logarithm of ``S G`` in SO(m) from its real Schur
        form (eigenvalues ``-1`` are paired into rotations by ``pi``, so the
        branch cut is handled); complex gates: ``H`` from the complex Schur form
        (angles in ``(-pi, pi]``) and all signs ``+1``.  The round trip is exact
        to about ``1e-13``.

        Examples
        --------
        >>> import numpy as np
        >>> c = Staircase.random(3, 1, seed=5)
        >>> p, s = c.params()
        >>> bool(np.abs(gates_from_params(p, s) - c.gates).max() < 1e-10)
        True
        """
        m = 2**self.k
        g_count = self.n_qubits - self.k + 1
        p = num_gate_params(self.k, self.is_complex)
        out = np.zeros((self.layers, g_count, p))
        signs = np.ones((self.layers, g_count))
        iu = np.triu_indices(m, 1)
        for li in range(self.layers):
            for j in range(g_count):
                g = self.gates[li, j]
                if self.is_complex:
                    h = _hermitian_log_unitary(g)
                    out[li, j] = np.concatenate([np.diagonal(h).real, h[iu].real, h[iu].imag])
                else:
                    sg = 1.0 if np.linalg.det(g) > 0 else -1.0
                    g2 = g.copy()
                    g2[0] *= sg
                    x = _real_log_special_orthogonal(g2)
                    out[li, j] = x[iu]
                    signs[li, j] = sg
        return out.view(GeneratorParams), signs

    # ---------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Save as an ``.npz`` file (no pickle), atomically.

        The file is written by :func:`qtnn.io.atomic_open` (a temporary file in
        the same directory, moved into place with :func:`os.replace`), so
        readers never see a half-written file, and it gets the permissions a
        plain ``open`` would give it.  The name is used as given (no suffix is
        added).

        Examples
        --------
        >>> import os, tempfile
        >>> c = Staircase.random(3, 2, seed=0)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     c.save(os.path.join(d, "c.npz"))
        ...     bool((Staircase.load(os.path.join(d, "c.npz")).gates == c.gates).all())
        True
        """
        path = check_path("path", path)
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise QtnnError(f"path must be in an existing directory, got {path!r}")
        with atomic_open(path, "wb") as fh:
            np.savez(fh, format=np.array(_FORMAT), n_qubits=np.array(self.n_qubits),
                     layers=np.array(self.layers), k=np.array(self.k),
                     complex=np.array(self.is_complex), descending=np.array(self.descending),
                     layout=np.array(self.layout), gates=np.asarray(self.gates))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Staircase:
        """Load a circuit written by :meth:`save`, validating every field.

        Refuses (``QtnnError``) files that are not such an archive, that hold
        pickled objects, miss or add fields, or whose gates do not have the
        stated shape or are not orthogonal / unitary.

        Examples
        --------
        >>> import os, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     Staircase(4, 1, k=3).save(os.path.join(d, "c.npz"))
        ...     Staircase.load(os.path.join(d, "c.npz"))
        Staircase(n_qubits=4, layers=1, k=3, complex=False)
        """
        path = check_path("path", path)
        keys = {"format", "n_qubits", "layers", "k", "complex", "descending", "gates"}
        optional = {"layout"}  # files written before layouts existed are staircases
        try:
            with np.load(path, allow_pickle=False) as data:
                if not hasattr(data, "files"):
                    raise QtnnError(f"{path!r} is not an .npz archive written by Staircase.save")
                found = set(data.files)
                if not keys <= found <= keys | optional:
                    raise QtnnError(f"{path!r} is not a Staircase file: expected fields "
                                    f"{sorted(keys)} (and optionally {sorted(optional)}), "
                                    f"got {sorted(found)}")
                fields = {key: data[key] for key in found}
        except QtnnError:
            raise
        except FileNotFoundError:
            raise QtnnError(f"path does not exist: {path!r}") from None
        except Exception as exc:  # bad zip, pickled object arrays, truncated files...
            raise QtnnError(f"cannot read a Staircase from {path!r}: {exc}") from exc
        fmt = fields["format"]
        if fmt.shape != () or fmt.dtype.kind != "U" or str(fmt) != _FORMAT:
            raise QtnnError(f"{path!r}: format must be {_FORMAT!r}, got {fmt!r}")

        def scalar_int(name: str) -> int:
            v = fields[name]
            if v.shape != () or v.dtype.kind not in "iu":
                raise QtnnError(f"{path!r}: field {name} must be an integer scalar, got {v!r}")
            return int(v)

        def scalar_bool(name: str) -> bool:
            v = fields[name]
            if v.shape != () or v.dtype != np.bool_:
                raise QtnnError(f"{path!r}: field {name} must be a bool scalar, got {v!r}")
            return bool(v)

        layout = "staircase"
        if "layout" in fields:
            v = fields["layout"]
            if v.shape != () or v.dtype.kind != "U" or str(v) not in LAYOUTS:
                raise QtnnError(f"{path!r}: field layout must be one of {LAYOUTS}, got {v!r}")
            layout = str(v)
        gates = fields["gates"]
        is_complex = scalar_bool("complex")
        want = np.complex128 if is_complex else np.float64
        if gates.dtype != want:
            raise QtnnError(f"{path!r}: gates must have dtype {np.dtype(want)}, got {gates.dtype}")
        return cls(scalar_int("n_qubits"), scalar_int("layers"), scalar_int("k"), gates,
                   complex=is_complex, descending=scalar_bool("descending"), layout=layout)

    # ------------------------------------------------------------------ misc
    def copy(self) -> Staircase:
        """An independent copy.

        Examples
        --------
        >>> c = Staircase.random(3, 1)
        >>> c.copy() == c
        True
        """
        return Staircase(self.n_qubits, self.layers, self.k, self.gates, complex=self.is_complex,
                         check=False, descending=self.descending, layout=self.layout)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Staircase):
            return NotImplemented
        return (self.n_qubits, self.layers, self.k, self.is_complex, self.descending,
                self.layout) == (other.n_qubits, other.layers, other.k, other.is_complex,
                                 other.descending, other.layout) and bool(
            np.array_equal(self.gates, other.gates))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        extra = ", descending=True" if self.descending else ""
        if self.layout != "staircase":
            extra += f", layout={self.layout!r}"
        return (f"Staircase(n_qubits={self.n_qubits}, layers={self.layers}, k={self.k}, "
                f"complex={self.is_complex}{extra})")
