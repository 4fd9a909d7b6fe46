"""MPO -> ``U . M . V^T``: disentangling a weight matrix with staircase circuits.

After Aizpurua et al., "Quantum large language models via tensor network
disentanglers", arXiv:2410.17397 (see ``docs/design/math.md``, section 4).  A weight
``W`` (``out x in``, held as an MPO on ``n_out`` output and ``n_in`` input
qubits) is written as

``W ~ U M V^T``

with ``U`` a staircase circuit on the output qubits (``out_layers`` layers),
``V`` one on the input qubits (``in_layers`` layers) and ``M`` an MPO of bond
at most ``max_bond``.  ``U M V^T`` acts on an input ``x`` as: ``V^T`` first,
then ``M``, then ``U``.  Without circuits this is plain truncation of ``W``;
the circuits move correlations out of the MPO into gates, so the same bond
loses less.

Conventions (those of :class:`qtnn.staircase.Staircase`): gates have shape
``(D, n-k+1, 2**k, 2**k)``, layer 0 acts first, ``j`` ascending inside a
layer, qubit 0 is the most significant bit.  Real ``W`` gives real orthogonal
gates, complex ``W`` unitary gates.

Algorithm
---------
Since ``U`` and ``V`` are unitary, ``||W - U M V^T||_F = ||X - M||_F`` with
``X = U^dagger W conj(V)``, and ``||U M V^T||_F = ||M||_F``, so the error is
computed without dense matrices as
``err^2 = ||W||^2 - 2 Re <W, U M V^T> + ||M||^2`` (reported relative to
``||W||``; the cancellation puts a floor of about ``1e-8`` under the relative
errors that can be resolved -- smaller ones are reported as such noise or 0).

*Alternating sweeps* (the scheme of ``docs/design/math.md``, section 4).  One sweep:

1. *Gates.*  In a fixed order (a topological order of the circuit
   ``U (x) V``), each gate ``g`` is replaced by the unitary polar factor of
   its environment ``F`` (the conjugated derivative of ``<W, U M V^T>`` with
   respect to ``g``), which maximises the overlap with everything else fixed
   (Evenbly & Vidal, PRB 79, 144108 (2009); Rudolph et al., arXiv:2209.00595)
   -- so the error never increases during this step.  For real problems the
   real part of ``F`` is used (:func:`qtnn.tn.linalg.polar_unitary`).
2. *Residual.*  ``M' = truncate_{max_bond}(X)``: ``X`` in MPO form, then TT-SVD
   truncation by :meth:`qtnn.tn.MPO.truncate`.  ``M'`` replaces ``M`` only if it
   lowers the error (TT-SVD is quasi-optimal, not optimal), so the error per
   sweep is non-increasing.

A start sweeps until a sweep gains less than ``tol`` (relative).

*Joint refinement.*  One-gate-at-a-time updates converge slowly once gates
are coupled (Slagle, SciPost Phys. 11, 056 (2021)); on planted problems they
stall at errors of 1e-2..1e-4 for hundreds of sweeps.  So each start ends
with up to ``refine`` L-BFGS iterations on all gates (``g = g0 expm(A)``,
``A`` antisymmetric / anti-Hermitian, so gates stay exactly orthogonal /
unitary) and the cores of ``M`` together, with exact gradients from the same
environments (see :mod:`qtnn.staircase._dis_opt`).  The refined state is kept
only if its (exactly recomputed) error is lower.

*Starts.*  The identity circuits (their first ``M`` is *exactly* the plain
truncation of ``W``, so the result is never worse than truncation) and
``restarts`` seeded random ones (alternately orthogonal gates near the
identity, ``polar(I + 0.3 Z)``, and Haar-random gates, each with
``M = truncate(X)``); the best state seen is returned.

Two paths compute the same steps (and agree to round-off):

* ``"dense"`` (``n_out + n_in <= 12`` by default; the MPO path is as fast from
  about 12 qubits on and faster beyond): ``W`` and ``M`` as dense
  ``2**n_out x 2**n_in`` tensors, gates applied by reshaping, environments by
  one matrix product.
* ``"mpo"``: never forms a ``2**n`` object.  Environments and overlaps come
  from an exact contraction of the network ``<W | (U (x) V) | M>`` with
  left/right environment tensors along a slanted cut (each partial contraction
  holds the ``W`` bond, the ``M`` bond and about one wire per layer, size
  ``~ chi_W chi_M 2**((k-1)(D_out+D_in))`` up to a factor 4), so the reported
  error is exact and the cost is linear in the number of qubits.  ``X`` is
  built by applying the inverse circuit to ``W``'s legs by ``k``-site SVD
  splits at the orthogonality centre, keeping at most ``work_bond`` values per
  bond (exact when that cap does not bind; it only affects the quality of the
  ``M`` update).

Examples
--------
>>> import numpy as np
>>> from qtnn.staircase import Staircase
>>> from qtnn.tn import MPO
>>> U0, V0 = Staircase.random(4, 1, seed=1), Staircase.random(4, 1, seed=2)
>>> M0 = MPO.random((2,) * 4, (2,) * 4, 1, seed=3)
>>> W = U0.to_matrix() @ M0.to_dense() @ V0.to_matrix().T
>>> res = disentangle(W, 1, 1, max_bond=1)
>>> bool(res.truncation_error > 0.1), bool(res.error < 1e-6)
(True, True)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.staircase._dis_network import (
    Layout,
    Network,
    apply_circuit,
    dense_apply,
    dense_circuit,
    dense_env,
    gate_axes,
    gate_order,
    polar_update,
)
from qtnn.staircase._dis_opt import lbfgs_refine
from qtnn.staircase.circuit import MAX_LAYERS, Staircase, brickwall_as_staircase
from qtnn.tn.linalg import polar_unitary, psd_factor, relative_error, whitening
from qtnn.tn.linalg import single_threaded_blas as _single_threaded_blas
from qtnn.tn.mpo import MPO, mpo_dense
from qtnn.tn.tensortrain import TensorTrain, tt_svd
from qtnn.validate import (
    as_float_array,
    check_alloc,
    check_bond,
    check_choice,
    check_inputs,
    check_int,
    check_output_weight,
    check_real,
)

__all__ = ["disentangle", "Disentangled", "SweepRecord", "DENSE_MAX_QUBITS"]

#: ``method="auto"`` uses the dense path when ``n_out + n_in`` is at most this.
DENSE_MAX_QUBITS = 12

#: Relative errors below this count as exact (stop sweeping).
_EXACT = 1e-12


class SweepRecord(NamedTuple):
    """One entry of :attr:`Disentangled.history`.

    ``restart`` 0 is the identity start; ``sweep`` 0 is a start's initial
    state (``kind="start"``), then one entry per alternating sweep
    (``kind="sweep"``) and one for the joint L-BFGS refinement
    (``kind="lbfgs"``).  ``error`` is the relative error of the start's
    current state, ``best`` the smallest error seen so far over all starts
    (non-increasing along the list).  Within a start ``error`` never increases.
    """

    restart: int
    sweep: int
    error: float
    best: float
    kind: str = "start"


@dataclass
class Disentangled:
    """Result of :func:`disentangle`: ``W ~ U M V^T``.

    Attributes
    ----------
    U : Staircase
        Circuit on the ``n_out`` output qubits.
    V : Staircase
        Circuit on the ``n_in`` input qubits (``V^T`` acts on the input first).
    M : MPO
        Residual of bond at most ``max_bond``, an operator on the padded qubit
        space: ``M.shape == (2**n_out, 2**n_in)``.
    error : float
        ``||W - U M V^T||_F / ||W||_F`` on the padded matrix (which equals
        ``W`` in its top-left block and is zero elsewhere).
    truncation_error : float
        The same for plain truncation of ``W`` to ``max_bond``
        (:meth:`qtnn.tn.MPO.truncate`); ``error <= truncation_error`` always.
    history : list of SweepRecord
        Per-sweep errors of every start, with the best so far.
    params_before : int
        Entries of ``W`` as given (dense entries, or the MPO's core entries).
    params_after : int
        ``M.num_params + U.num_params + V.num_params``.
    shape : tuple of int
        ``W``'s logical shape (padding excluded).
    method : str
        ``"dense"`` or ``"mpo"``, the path that ran.
    k : int
        Gate width.
    restart : int
        The start that gave the result (0 = identity).
    activation_error : float or None
        With ``inputs``: ``||(A - W) X^T||_F / ||W X^T||_F`` of the result
        ``A`` on the given inputs ``X`` (``None`` without inputs).
    truncation_activation_error : float or None
        The same for plain truncation of ``W`` to ``max_bond``.
    seconds : float
        ``method="grow"``: the optimisation time of the last stage.
    stages : list of Disentangled
        ``method="grow"``: the result after every stage (stage 0 without
        circuits, then depths 1, 2, 4, ..., the last being this result), each
        with its own errors and seconds; empty for the other methods.

    Examples
    --------
    >>> import numpy as np
    >>> d = disentangle(np.random.default_rng(0).normal(size=(8, 8)), 1, 1, max_bond=1)
    >>> d.U, d.M.bond_dims, d.error <= d.truncation_error
    (Staircase(n_qubits=3, layers=1, k=2, complex=False), [1, 1], True)
    >>> W = d.to_dense()                      # U M V^T, 8 x 8
    >>> W.shape
    (8, 8)
    """

    U: Staircase
    V: Staircase
    M: MPO
    error: float
    truncation_error: float
    history: list[SweepRecord] = field(repr=False)
    params_before: int
    params_after: int
    shape: tuple[int, int]
    method: str
    k: int
    restart: int = 0
    activation_error: float | None = None
    truncation_activation_error: float | None = None
    seconds: float = 0.0
    stages: list[Disentangled] = field(default_factory=list, repr=False)

    def _layout(self) -> Layout:
        return Layout(self.M.num_sites, self.U.n_qubits, self.V.n_qubits, self.U.layers,
                      self.V.layers, self.k)

    def _gates(self) -> dict[str, np.ndarray]:
        return {"U": np.asarray(self.U.gates), "V": np.asarray(self.V.gates)}

    def _staircase_form(self) -> tuple[Layout, dict[str, np.ndarray]]:
        """The layout and gates of ``U``, ``V`` as staircases (what the network helpers apply).

        A brickwall layer is two staircase layers: its even gates (identities
        between: disjoint, so their order is free), then its odd gates.
        """
        if self.U.layout != "brickwall" and self.V.layout != "brickwall":
            return self._layout(), self._gates()
        gates = {s: brickwall_as_staircase(g) for s, g in self._gates().items()}
        return Layout(self.M.num_sites, self.U.n_qubits, self.V.n_qubits, gates["U"].shape[0],
                      gates["V"].shape[0], self.k), gates

    def to_dense(self) -> np.ndarray:
        """The matrix ``U M V^T`` (cropped to :attr:`shape`).

        Computed by applying the gates to the dense ``M`` (no ``2**n x 2**n``
        circuit matrix is formed); refused with :class:`qtnn.QtnnSizeError`
        when the matrix would exceed the memory limit.

        Examples
        --------
        >>> import numpy as np
        >>> W = np.random.default_rng(0).normal(size=(8, 8))
        >>> res = disentangle(W, 1, 1, max_bond=1, sweeps=3, restarts=0)
        >>> A = res.to_dense()
        >>> bool(abs(np.linalg.norm(W - A) / np.linalg.norm(W) - res.error) < 1e-10)
        True
        """
        po, pi = self.M.padded_shape
        itemsize = np.dtype(self.M.dtype).itemsize
        check_alloc(f"a dense {po} x {pi} matrix", 3.0 * po * pi, itemsize,
                    hint="use to_mpo() or keep the factors")
        lay, gates = self._staircase_form()
        T = mpo_dense(self.M.cores).reshape((2,) * lay.n_out + (2,) * lay.n_in)
        T = dense_circuit(T, lay, gates, inverse=False)
        return np.ascontiguousarray(T.reshape(po, pi)[: self.shape[0], : self.shape[1]])

    def to_mpo(self, max_bond: int | None = None) -> MPO:
        """``U M V^T`` as an MPO of shape :attr:`shape`.

        The gates are applied to ``M``'s legs by SVD splits at the
        orthogonality centre; with ``max_bond`` every split keeps at most that
        many values and the result is truncated to it at the end, else the
        product is exact (its bond can reach ``max_bond(M) * 4**(D_out+D_in)``
        for 2-qubit gates, capped by the matrix size).

        Examples
        --------
        >>> import numpy as np
        >>> W = np.random.default_rng(0).normal(size=(8, 8))
        >>> res = disentangle(W, 1, 1, max_bond=1, sweeps=2, restarts=0)
        >>> bool(np.allclose(res.to_mpo().to_dense(), res.to_dense(), rtol=0, atol=1e-12))
        True
        """
        max_bond = check_bond("max_bond", max_bond)
        lay, gates = self._staircase_form()
        cores = apply_circuit(self.M.cores, lay, gates, inverse=False, cap=max_bond)
        out = MPO(cores, shape=self.shape, check=False)
        if max_bond is not None:
            out.truncate(max_bond=max_bond)
        return out


# ------------------------------------------------------------------ helpers
def _as_mpo(W: Any) -> tuple[MPO, int]:
    """``W`` as an MPO on qubit sites, and its number of entries as given."""
    if isinstance(W, MPO):
        mpo = W
        params = W.num_params
    elif isinstance(W, TensorTrain):
        raise QtnnTypeError(f"W must be an MPO or a 2-d array, got {type(W).__name__}")
    else:
        arr = as_float_array("W", W, ndim=2)
        mpo = MPO.from_dense(arr)
        params = int(arr.size)
    for name, dims in (("out_dims", mpo.out_dims), ("in_dims", mpo.in_dims)):
        n = sum(1 for d in dims if d == 2)
        if any(d not in (1, 2) for d in dims) or any(d != 2 for d in dims[:n]):
            raise QtnnError(f"W must be an MPO on qubits: every {name} entry 2, except trivial "
                            f"sites of dim 1 at the end; got {name}={dims}")
        if n == 0:
            raise QtnnError(f"W must have at least one qubit on each side; got {name}={dims}")
    for s, c in enumerate(mpo.cores):
        if not np.all(np.isfinite(c)):
            raise QtnnError(f"W must be finite, got NaN or inf in core {s}")
    return mpo, params



def _exact_mpo(X: np.ndarray, out_dims: tuple[int, ...], in_dims: tuple[int, ...]) -> MPO:
    """Exact TT-SVD (no truncation) of a padded dense matrix on the given site dims."""
    n = len(out_dims)
    t = X.reshape(out_dims + in_dims).transpose([j for s in range(n) for j in (s, n + s)])
    cores, _ = tt_svd(t, [o * i for o, i in zip(out_dims, in_dims, strict=True)])
    cores = [c.reshape(c.shape[0], o, i, c.shape[-1])
             for c, o, i in zip(cores, out_dims, in_dims, strict=True)]
    return MPO(cores, check=False)


def _start_gates(lay: Layout, rng: np.random.Generator, kind: str, dtype: Any) -> dict[str, np.ndarray]:
    """Identity, near-identity (``polar(I + 0.3 Z)``) or Haar-random gates."""
    m = 2**lay.k
    out = {}
    for side in ("U", "V"):
        d, g = lay.layers(side), lay.n_gates(side)
        arr = np.zeros((d, g, m, m), dtype=dtype)
        for l_ in range(d):
            for j in range(g):
                if kind == "identity":
                    arr[l_, j] = np.eye(m)
                    continue
                z = rng.normal(size=(m, m))
                if np.iscomplexobj(arr):
                    z = z + 1j * rng.normal(size=(m, m))
                arr[l_, j] = polar_unitary(np.eye(m) + 0.3 * z if kind == "near" else z)
        out[side] = arr
    return out




def _disentangle_grow(mpo: MPO, params_before: int, d_out: int, d_in: int, max_bond: int, k: int,
                      refine: int, tol: float, inputs: Any, layout: str, damp: float,
                      progress: bool, output_weight: Any = None, start: str = "identity",
                      start_rank: int = 2, start_sweeps: int = 500) -> Disentangled:
    """``method="grow"``: staged growth with joint L-BFGS (:mod:`qtnn.staircase._grow`)."""
    from qtnn.staircase import _grow

    if any(np.iscomplexobj(c) for c in mpo.cores):
        raise QtnnTypeError("method='grow' fits real orthogonal gates: W must be real")
    if k != 2:
        raise QtnnError(f"method='grow' uses 2-qubit gates: k must be 2, got k={k}")
    out_f, in_f = mpo.shape
    n_out = sum(1 for d in mpo.out_dims if d == 2)
    n_in = sum(1 for d in mpo.in_dims if d == 2)
    check_alloc(f"the dense {2**n_out} x {2**n_in} padded weight", 4.0 * 2**n_out * 2**n_in,
                hint="use method='mpo' (staircase layout, no inputs)")
    W = mpo.to_dense()
    X = None if inputs is None else check_inputs(inputs, in_f)
    L = None if X is None else whitening(X, in_f, damp)
    G = None if output_weight is None else check_output_weight(output_weight, out_f)
    Lo = None if G is None else psd_factor(G, damp)
    prob = _grow.make_problem(W, n_out, n_in, L, Lo)
    need = _grow.autograd_bytes(prob, d_out, d_in)
    check_alloc(f"the gradient of a {d_out}+{d_in}-layer fit on {n_out}+{n_in} qubits",
                need / 8.0, hint="use fewer layers or fewer inputs")
    # plain truncation: the start of stage 0, and the reference errors
    M0 = mpo.copy()
    trunc_err = M0.truncate(max_bond=max_bond)
    M0.shape = mpo.padded_shape
    # reporting problems: the Frobenius error on the logical block, and the undamped activations
    frob = prob if L is None and Lo is None else _grow.make_problem(W, n_out, n_in, None)
    stages = _grow.stage_depths(d_out, d_in) if start == "identity" else [(d_out, d_in)]
    history: list[SweepRecord] = []
    best = math.inf
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(stages) + 1, desc=f"disentangle grow {n_out}+{n_in} qubits",
                   unit="stage")

    def on_stage(i: int, res: Any) -> None:
        nonlocal best
        e = math.sqrt(max(res.f, 0.0)) if prob is frob else _error_at(frob, res, layout)
        best = min(best, e)
        history.append(SweepRecord(0, i, e, best, "grow" if start == "identity" or i == 0 else "svd"))
        if bar is not None:
            bar.set_postfix_str(f"D={res.gu.shape[0]}/{res.gv.shape[0]} f={res.f:.4g}", refresh=False)
            bar.update()

    cores0 = [np.asarray(c, dtype=np.float64) for c in M0.cores]
    try:
        if start == "identity":
            results = _grow.grow(prob, d_out, d_in, layout, cores0, refine, tol, on_stage)
        else:
            results = _grow.grow(prob, 0, 0, layout, cores0, refine, tol, on_stage)  # depth 0 only
            t_start = time.perf_counter()
            gu, gv, cores = _grow.svd_start(prob, W, L, Lo, start_rank, d_out, d_in, layout,
                                            start_sweeps)
            fitted = _grow.refine(prob, gu, gv, cores, layout, refine, tol)
            if not fitted.f <= results[0].f:   # never worse than M alone (depth 0)
                r0 = results[0]
                fitted = _grow.StageResult(_grow.add_identity_layers(r0.gu, d_out),
                                           _grow.add_identity_layers(r0.gv, d_in), r0.cores, r0.f,
                                           fitted.iterations, fitted.evaluations, fitted.seconds)
            fitted.seconds = time.perf_counter() - t_start   # the isometry fits included
            results.append(fitted)
            on_stage(1, fitted)
    finally:
        if bar is not None:
            bar.close()
    Wx = Wp_x = np.zeros(0)
    if X is not None:
        Wx = W @ X.T
        Wp_x = MPO(M0.cores, check=False).to_dense()[:out_f, :in_f] @ X.T
    built = []
    for st in results:
        du, dv = st.gu.shape[0], st.gv.shape[0]
        M = MPO([np.array(c) for c in st.cores], check=False)
        M.truncate(max_bond=max_bond)  # canonical SVD gauge; exact since the bonds are <= max_bond
        M.shape = mpo.padded_shape
        U = Staircase(n_out, du, 2, st.gu, layout=layout) if n_out >= 2 else Staircase(n_out, 0, n_out)
        V = Staircase(n_in, dv, 2, st.gv, layout=layout) if n_in >= 2 else Staircase(n_in, 0, n_in)
        res = Disentangled(U=U, V=V, M=M, error=0.0, truncation_error=float(trunc_err),
                           history=history, params_before=int(params_before),
                           params_after=int(M.num_params + U.num_params + V.num_params),
                           shape=(out_f, in_f), method="grow", k=2, restart=0,
                           seconds=float(st.seconds))
        A = res.to_dense()
        res.error = relative_error(A, W)
        if X is not None:
            res.activation_error = relative_error(A @ X.T, Wx)
            res.truncation_activation_error = relative_error(Wp_x, Wx)
        built.append(res)
    final = built[-1]
    final.stages = built
    return final


def _error_at(p: Any, res: Any, layout: str) -> float:
    from qtnn.staircase import _grow

    return math.sqrt(max(_grow.objective_value(p, res.gu, res.gv, res.cores, layout), 0.0))



# ------------------------------------------------------------------ engines
class _DenseEngine:
    """Dense tensors ``(o_0..o_{n_out-1}, i_0..i_{n_in-1})``; for small operators."""

    def __init__(self, lay: Layout, W: MPO, gates: dict[str, np.ndarray], is_complex: bool,
                 max_bond: int) -> None:
        size = 2 ** (lay.n_out + lay.n_in)
        check_alloc(f"the dense path on {lay.n_out}+{lay.n_in} qubits", 6.0 * size,
                    16 if is_complex else 8, hint='use method="mpo"')
        self.lay, self.gates, self.is_complex, self.max_bond = lay, gates, is_complex, max_bond
        self.shape = (2,) * lay.n_out + (2,) * lay.n_in
        self.Wt = mpo_dense(W.cores).reshape(self.shape)
        self.out_dims, self.in_dims = W.out_dims, W.in_dims
        self.order = gate_order(lay)
        self._X: np.ndarray | None = None

    def invalidate(self) -> None:
        self._X = None

    def _x(self) -> np.ndarray:
        if self._X is None:
            self._X = dense_circuit(self.Wt, self.lay, self.gates, inverse=True)
        return self._X

    def m_candidate(self) -> MPO:
        X = self._x().reshape(2**self.lay.n_out, 2**self.lay.n_in)
        M = _exact_mpo(X, self.out_dims, self.in_dims)
        M.truncate(max_bond=self.max_bond)
        return M

    def overlap(self, M: MPO) -> complex:
        Mt = mpo_dense(M.cores).reshape(self.shape)
        return complex(np.vdot(self._x(), Mt))

    def sweep(self, M: MPO) -> complex:
        k = self.lay.k
        top = self._x()
        bot = mpo_dense(M.cores).reshape(self.shape)
        for side, l_, j in self.order:
            ax = gate_axes(self.lay, side, j)
            top = dense_apply(top, self.gates[side][l_, j], ax, k)
            g = polar_update(dense_env(top, bot, ax, k), self.is_complex)
            self.gates[side][l_, j] = g
            bot = dense_apply(bot, g, ax, k)
        self._X = None
        return complex(np.vdot(self.Wt, bot))

    def gradient(self, M: MPO) -> tuple[complex, dict, list[np.ndarray]]:
        """Overlap and its holomorphic derivatives w.r.t. every gate and every core of ``M``."""
        k = self.lay.k
        X = self._x()
        top = X
        bot = mpo_dense(M.cores).reshape(self.shape)
        genv = {}
        for side, l_, j in self.order:
            ax = gate_axes(self.lay, side, j)
            g = self.gates[side][l_, j]
            top = dense_apply(top, g, ax, k)
            genv[(side, l_, j)] = np.conj(dense_env(top, bot, ax, k))
            bot = dense_apply(bot, g, ax, k)
        n = M.num_sites
        d = [o * i for o, i in zip(self.out_dims, self.in_dims, strict=True)]
        t = np.conj(X).reshape(self.out_dims + self.in_dims).transpose(
            [j for s in range(n) for j in (s, n + s)]).reshape(d)
        right = [np.ones((1, 1))] * n
        acc = np.ones((1, 1))
        for s in range(n - 1, -1, -1):
            right[s] = acc
            c = M.cores[s]
            acc = np.tensordot(c.reshape(c.shape[0], -1, c.shape[-1]), acc, axes=(2, 0)).reshape(
                c.shape[0], -1)
        menv = []
        left = np.ones((1, 1))
        for s in range(n):
            c = M.cores[s]
            dl = left.shape[0]
            e = np.tensordot(np.tensordot(left, t.reshape(dl, d[s], -1), axes=(0, 0)), right[s],
                             axes=(2, 1))
            menv.append(e.reshape(c.shape))
            left = (left @ c.reshape(c.shape[0], -1)).reshape(dl * d[s], c.shape[-1])
        return complex(np.vdot(X, mpo_dense(M.cores).reshape(self.shape))), genv, menv


class _NetworkEngine:
    """Exact network contraction for environments; capped MPO algebra for ``X``."""

    def __init__(self, lay: Layout, W: MPO, gates: dict[str, np.ndarray], is_complex: bool,
                 max_bond: int, work_bond: int) -> None:
        self.lay, self.gates, self.max_bond, self.work_bond = lay, gates, max_bond, work_bond
        self.W = W
        self.net = Network(lay, W.cores, gates, is_complex)
        self._m: MPO | None = None
        itemsize = 16 if is_complex else 8
        # the m-independent part of the size estimate uses a bond-max_bond M
        size = self.net_size_estimate()
        check_alloc(f"the network environments of the MPO path ({len(self.net.order)} tensors)",
                    size, itemsize, hint="use fewer layers or a smaller max_bond")

    def net_size_estimate(self) -> float:
        probe = MPO.random(self.W.out_dims, self.W.in_dims, self.max_bond, seed=0, normalize=False)
        self.net.set_m(probe.cores)
        est = float(self.net.max_env_size()) * (len(self.net.order) + 4)
        self._m = None
        return est

    def invalidate(self) -> None:
        self._m = None
        self.net.invalidate()

    def _use(self, M: MPO) -> None:
        if M is not self._m:
            self.net.set_m(M.cores)
            self._m = M

    def m_candidate(self) -> MPO:
        cores = apply_circuit(self.W.cores, self.lay, self.gates, inverse=True, cap=self.work_bond)
        M = MPO(cores, check=False)
        M.truncate(max_bond=self.max_bond)
        return M

    def overlap(self, M: MPO) -> complex:
        self._use(M)
        return self.net.prepare()

    def sweep(self, M: MPO) -> complex:
        self._use(M)
        return self.net.sweep()

    def gradient(self, M: MPO) -> tuple[complex, dict, list[np.ndarray]]:
        self._use(M)
        return self.net.gradients()


# --------------------------------------------------------------------- main
@_single_threaded_blas()
def disentangle(W: Any, out_layers: int, in_layers: int, max_bond: int, *, sweeps: int = 20, k: int = 2,
                restarts: int = 2, seed: int = 0, tol: float | None = None, method: str = "auto",
                refine: int = 100, work_bond: int | None = None, inputs: Any = None,
                layout: str = "staircase", damp: float = 1e-2, output_weight: Any = None,
                start: str = "identity", start_rank: int = 2, start_sweeps: int = 500,
                progress: bool = False) -> Disentangled:
    """Split ``W ~ U M V^T`` with staircase circuits ``U``, ``V`` and an MPO ``M`` of small bond.

    After Aizpurua et al., arXiv:2410.17397; see the module docstring for the
    algorithm and ``docs/design/math.md``, section 4.

    Parameters
    ----------
    W : MPO or array_like, shape (out_features, in_features)
        The weight.  An MPO must have qubit sites: out and in dims 2, except
        trivial dim-1 sites at the end (what :meth:`MPO.from_dense` with the
        default dims gives when ``n_out != n_in``).  A dense matrix is converted
        with :meth:`MPO.from_dense` (qubit dims, zero-padded to powers of two);
        errors are then measured on the padded matrix, which equals ``W`` in
        its top-left block and is zero elsewhere.  Real or complex.
    out_layers, in_layers : int
        Layers ``D_out`` of ``U`` (output qubits) and ``D_in`` of ``V`` (input
        qubits), ``0 <= D <= MAX_LAYERS`` (1000).  A side with fewer than ``k`` qubits must have 0
        layers (its empty circuit is then built with ``k = n``).
    max_bond : int
        Largest bond of ``M`` (``>= 1``).
    sweeps : int
        Most sweeps per start (``>= 0``).
    k : int
        Qubits per gate (default 2).
    restarts : int
        Random starts besides the identity start (``>= 0``), seeded by ``seed``.
    seed : int
        Seed of the random starts (the result is deterministic).
    tol : float, optional
        A start stops sweeping when a sweep lowers its error by less than
        ``tol`` times the error (or the error is below ``1e-12``); default
        ``1e-3``.  ``method="grow"``: a stage stops when an L-BFGS iteration
        changes the relative squared error by less than ``tol`` (default
        ``1e-14``, in effect ``refine`` iterations: deep layers gain little
        per iteration but a lot in total).
    method : {"auto", "dense", "mpo", "grow"}
        ``"auto"``: ``"grow"`` when ``inputs`` are given or ``layout`` is
        ``"brickwall"``, else ``"dense"`` when ``n_out + n_in <=
        DENSE_MAX_QUBITS`` (12), else ``"mpo"``.  ``"dense"`` and ``"mpo"``
        compute the same alternating steps (see the module docstring).
        ``"grow"`` (real ``W``, ``k = 2``) is the deep-circuit engine: dense
        in the padded matrix (any size that fits the memory limit), layers
        added identity-started in stages of depth 1, 2, 4, ..., each stage an
        L-BFGS refinement of all gates and ``M``'s cores together; the error
        never increases from a stage to the next (``history`` lists them,
        ``kind="grow"``).  Padding is "don't care": only the logical block
        ``W`` is fitted.  ``sweeps``, ``restarts`` and ``work_bond`` do not
        apply to it.
    refine : int
        Most L-BFGS iterations of the joint refinement at the end of each start
        (``0``: sweeps only, the plain alternating scheme); with
        ``method="grow"`` the iterations of each stage.
    work_bond : int, optional
        MPO path: bond cap of ``X = U^dagger W conj(V)`` before its truncation
        to ``max_bond`` (default ``max(64, 4 * max_bond)``).  It only affects
        the quality of the ``M`` update, never the exactness of the reported
        error.
    inputs : array_like or torch.Tensor, shape (N, in_features), optional
        Recorded inputs of the layer (calibration activations).  The fit then
        minimises the *activation* error ``||(U M V^T - W) X^T||_F`` instead of
        the weight error, by folding a whitening factor ``L`` (``L L^T = X^T
        X / N + damp * mean(diag) I``) into the input side; the result's
        ``activation_error`` reports ``||(A - W) X^T|| / ||W X^T||`` on these
        inputs (without the damping).  Uses ``method="grow"``.
    layout : {"staircase", "brickwall"}
        In-layer gate order of ``U`` and ``V``
        (:func:`qtnn.staircase.window_order`); ``"brickwall"`` needs
        ``method="grow"``.
    damp : float
        Ridge term of the whitening, relative to the mean input power
        (``>= 0``); it keeps directions that the calibration inputs barely
        visit from being fitted arbitrarily.  The same relative term is added
        to ``output_weight``.
    output_weight : array_like, shape (out_features, out_features), optional
        A symmetric positive semi-definite ``G`` that weights the output
        errors: the fit minimises ``||G^(1/2) (U M V^T - W) X^T||_F`` (with
        ``inputs``; ``||G^(1/2) (U M V^T - W)||_F`` without).  For a layer
        whose outputs are read through a known linear map ``P`` (an
        attention key read by the queries, a value read by the output
        projection), ``G = E[P^T P]`` makes the fit care about the errors the
        next operation sees.  Uses ``method="grow"``.
    start : {"identity", "svd"}
        ``method="grow"``: where the circuits start.  ``"identity"`` grows
        them from identity layers in stages (above).  ``"svd"`` starts the
        full depth at once from the best rank-``start_rank`` approximation of
        the fitted objective (the weighted truncated SVD when ``inputs`` or
        ``output_weight`` are given): ``M`` is a bond-1 product whose
        ``start_rank`` non-zero entries carry the singular values (exact when
        they have product form), and ``U``, ``V`` are fitted so that they map
        those basis states to the singular vectors (polar sweeps of
        :func:`qtnn.staircase._grow.fit_isometry`, at most ``start_sweeps``);
        one L-BFGS refinement of everything follows.  ``stages`` then holds
        depth 0 (``M`` alone) and the full depth, and the result is never
        worse than depth 0.  On SmolLM2's ``k_proj`` at ``D = 32`` this start
        roughly halves the activation error of identity growth (README).
    start_rank : int
        Rank of the ``"svd"`` start, a power of two (``1 <= start_rank <=
        2**min(n_out, n_in)`` and at most ``min(W.shape)``).
    start_sweeps : int
        Most polar sweeps of each circuit's isometry fit (``"svd"`` start).
    progress : bool
        ``method="grow"``: a progress bar over the stages.

    Returns
    -------
    Disentangled
        ``U``, ``V``, ``M``, ``error``, ``truncation_error``, ``history`` ...;
        ``error <= truncation_error``, and with ``out_layers = in_layers = 0``
        ``M`` and ``error`` are exactly those of ``W.truncate(max_bond)``.

    Raises
    ------
    QtnnError
        Bad arguments (negative layers, ``max_bond < 1``, non-qubit MPO dims,
        NaN/inf entries, unknown method, ...).
    QtnnSizeError
        If the chosen path would exceed the memory limit.

    Examples
    --------
    >>> import numpy as np
    >>> from qtnn.tn import MPO
    >>> W = MPO.random((2,) * 5, (2,) * 5, 8, seed=0)
    >>> res = disentangle(W, 2, 2, max_bond=2, sweeps=5, restarts=0, refine=10)
    >>> bool(res.error <= res.truncation_error), res.M.max_bond, res.U.layers, res.method
    (True, 2, 2, 'dense')
    >>> plain = disentangle(W, 0, 0, max_bond=2)
    >>> plain.error == plain.truncation_error == W.copy().truncate(max_bond=2)
    True
    >>> s = disentangle(W, 2, 2, max_bond=1, start="svd", start_rank=4, refine=10)
    >>> [st.U.layers for st in s.stages], bool(s.error <= s.stages[0].error), s.method
    ([0, 2], True, 'grow')
    """
    mpo, params_before = _as_mpo(W)
    d_out = check_int("out_layers", out_layers, minimum=0, maximum=MAX_LAYERS)
    d_in = check_int("in_layers", in_layers, minimum=0, maximum=MAX_LAYERS)
    max_bond = check_int("max_bond", max_bond, minimum=1)
    sweeps = check_int("sweeps", sweeps, minimum=0)
    k = check_int("k", k, minimum=1)
    restarts = check_int("restarts", restarts, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    tol = None if tol is None else check_real("tol", tol, minimum=0)
    refine = check_int("refine", refine, minimum=0)
    method = check_choice("method", method, ("auto", "dense", "mpo", "grow"))
    layout = check_choice("layout", layout, ("staircase", "brickwall"))
    damp = check_real("damp", damp, minimum=0)
    start = check_choice("start", start, ("identity", "svd"))
    start_rank = check_int("start_rank", start_rank, minimum=1)
    start_sweeps = check_int("start_sweeps", start_sweeps, minimum=0)
    if start_rank & (start_rank - 1):
        raise QtnnError(f"start_rank must be a power of two, got start_rank={start_rank}")
    if not isinstance(progress, (bool, np.bool_)):
        raise QtnnTypeError(f"progress must be a bool, got {progress!r}")
    aware = inputs is not None or output_weight is not None
    if (aware or layout != "staircase") and method in ("dense", "mpo"):
        what = ("inputs" if inputs is not None else "output_weight" if output_weight is not None
                else f"layout={layout!r}")
        raise QtnnError(f"{what} needs method='grow' (or 'auto'), got method={method!r}")
    work_bond = check_bond("work_bond", work_bond)
    if work_bond is None:
        work_bond = max(64, 4 * max_bond)

    n_sites = mpo.num_sites
    n_out = sum(1 for d in mpo.out_dims if d == 2)
    n_in = sum(1 for d in mpo.in_dims if d == 2)
    for name, d, n in (("out_layers", d_out, n_out), ("in_layers", d_in, n_in)):
        if d > 0 and n < k:
            raise QtnnError(f"{name} must be 0 when W has fewer than k={k} qubits on that side "
                            f"({n}); got {name}={d}")
    lay = Layout(n_sites, n_out, n_in, d_out, d_in, k)
    if start == "svd":
        if method in ("dense", "mpo"):
            raise QtnnError(f"start='svd' needs method='grow' (or 'auto'), got method={method!r}")
        if start_rank > min(2 ** min(n_out, n_in), *mpo.shape):
            raise QtnnError(f"start_rank must be at most 2**min(n_out, n_in) = {2 ** min(n_out, n_in)} "
                            f"and at most min(W.shape) = {min(mpo.shape)}, got start_rank={start_rank}")
    if method == "auto" and (aware or layout != "staircase" or start == "svd"):
        method = "grow"
    if method == "grow":
        return _disentangle_grow(mpo, params_before, d_out, d_in, max_bond, k, refine,
                                 1e-14 if tol is None else tol,
                                 inputs, layout, damp, progress, output_weight,
                                 start, start_rank, start_sweeps)
    if tol is None:
        tol = 1e-3
    if method == "auto":
        method = "dense" if n_out + n_in <= DENSE_MAX_QUBITS else "mpo"
    is_complex = bool(np.iscomplexobj(mpo.cores[0])) or any(np.iscomplexobj(c) for c in mpo.cores)
    dtype = np.complex128 if is_complex else np.float64
    padded = mpo.padded_shape

    # ---- the identity start: exactly plain truncation of W
    M0 = mpo.copy()
    trunc_err = M0.truncate(max_bond=max_bond)
    M0.shape = padded
    gates = _start_gates(lay, np.random.default_rng(seed), "identity", dtype)
    history = [SweepRecord(0, 0, trunc_err, trunc_err, "start")]
    best_err, best_gates, best_m, best_r = trunc_err, {s: g.copy() for s, g in gates.items()}, M0, 0

    has_gates = lay.n_gates("U") * d_out + lay.n_gates("V") * d_in > 0
    w_norm2 = mpo.norm() ** 2
    if has_gates and w_norm2 > 0:
        if method == "dense":
            engine: _DenseEngine | _NetworkEngine = _DenseEngine(lay, mpo, gates, is_complex, max_bond)
        else:
            engine = _NetworkEngine(lay, mpo, gates, is_complex, max_bond, work_bond)
        keys = gate_order(lay)

        def rel(ov: complex, M: MPO) -> float:
            e2 = w_norm2 - 2.0 * ov.real + M.norm() ** 2
            return math.sqrt(max(e2, 0.0) / w_norm2)

        for r in range(restarts + 1):
            if r == 0:
                M, err = M0, trunc_err
            else:
                rng = np.random.default_rng([seed, r])
                start_g = _start_gates(lay, rng, "near" if r % 2 else "haar", dtype)
                for side in ("U", "V"):
                    gates[side][...] = start_g[side]
                engine.invalidate()
                M = engine.m_candidate()
                err = rel(engine.overlap(M), M)

            def record(sweep: int, kind: str, M: MPO, err: float, r: int = r) -> None:
                nonlocal best_err, best_gates, best_m, best_r
                if err < best_err:
                    best_err, best_r = err, r
                    best_gates, best_m = {s_: g.copy() for s_, g in gates.items()}, M
                history.append(SweepRecord(r, sweep, err, best_err, kind))

            if r > 0:
                record(0, "start", M, err)
            s = 0
            for s in range(1, sweeps + 1):
                prev = err
                err_g = rel(engine.sweep(M), M)
                cand = engine.m_candidate()
                err_c = rel(engine.overlap(cand), cand)
                if err_c < err_g:
                    M, err = cand, err_c
                else:
                    err = err_g
                record(s, "sweep", M, err)
                if err <= _EXACT or prev - err <= tol * prev:
                    break
            if refine > 0 and err > _EXACT:
                saved = {s_: g.copy() for s_, g in gates.items()}
                Mr = lbfgs_refine(engine.gradient, engine.invalidate, gates, keys, M, w_norm2,
                                  refine, is_complex)
                Mr.truncate(max_bond=max_bond)  # fixed (canonical SVD) gauge; bonds are <= max_bond
                err_r = rel(engine.overlap(Mr), Mr)
                if err_r < err:
                    M, err = Mr, err_r
                else:
                    for side in ("U", "V"):
                        gates[side][...] = saved[side]
                    engine.invalidate()
                record(s + 1, "lbfgs", M, err)

    def circuit(side: str, n: int, d: int) -> Staircase:
        kk = k if n >= k else n
        g = best_gates[side] if n >= k else None
        return Staircase(n, d, kk, g, complex=is_complex)

    U = circuit("U", n_out, d_out)
    V = circuit("V", n_in, d_in)
    params_after = best_m.num_params + U.num_params + V.num_params
    return Disentangled(U=U, V=V, M=best_m, error=float(best_err), truncation_error=float(trunc_err),
                        history=history, params_before=int(params_before),
                        params_after=int(params_after), shape=(mpo.shape[0], mpo.shape[1]),
                        method=method, k=k, restart=best_r)
