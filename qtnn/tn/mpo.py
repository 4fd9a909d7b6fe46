"""Matrix product operators (tensor trains of a matrix)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.tn.contract import plan_mpo_apply, prepare_mpo_apply
from qtnn.tn.factorize import qubit_dims
from qtnn.tn.mps import CORE_OVERHEAD, MPS, resolve_dims
from qtnn.tn.tensortrain import TensorTrain, merge_bonds, tt_svd
from qtnn.validate import (
    as_float_array,
    check_alloc,
    check_bond,
    check_bool,
    check_cutoff,
    check_dims,
    check_int,
    check_seed,
    is_torch,
)

__all__ = ["MPO", "site_dims", "mpo_dense"]


def site_dims(out_features: int, in_features: int, out_dims: Any,
               in_dims: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Resolve ``out_dims``/``in_dims`` (None, a number of cores, or dims) to equal-length tuples.

    ``None`` on both sides means one qubit per site (each side zero-padded to
    a power of two; the shorter side gets trivial sites of dimension 1 at the
    end).  The same rule serves :meth:`MPO.from_dense` and
    :class:`qtnn.nn.MPOLinear`.

    Examples
    --------
    >>> site_dims(5, 8, None, None)
    ((2, 2, 2), (2, 2, 2))
    >>> site_dims(2, 8, None, None)
    ((2, 1, 1), (2, 2, 2))
    """
    def given_len(d: Any) -> int | None:
        if d is None:
            return None
        if isinstance(d, numbers.Integral) and not isinstance(d, bool):
            return check_int("dims", d, minimum=1)
        return len(d) if isinstance(d, Sequence) and not isinstance(d, (str, bytes)) else None

    if out_dims is None and in_dims is None:
        od, idm = qubit_dims(out_features), qubit_dims(in_features)
        n = max(len(od), len(idm))  # pad the shorter side with trivial sites at the end
        return od + (1,) * (n - len(od)), idm + (1,) * (n - len(idm))
    if out_dims is None:
        out_dims = given_len(in_dims)
    if in_dims is None:
        in_dims = given_len(out_dims)
    od = resolve_dims("out_dims", out_features, out_dims)
    idm = resolve_dims("in_dims", in_features, in_dims)
    if len(od) != len(idm):
        raise QtnnError(f"out_dims {od} and in_dims {idm} must have the same number of sites")
    return od, idm


def mpo_dense(cores: Sequence[np.ndarray]) -> np.ndarray:
    """The padded dense matrix ``(prod out_dims, prod in_dims)`` of MPO cores (no cropping, no size check).

    :meth:`MPO.to_dense` checks the size and crops the padding.

    Examples
    --------
    >>> import numpy as np
    >>> mpo_dense([np.eye(2).reshape(1, 2, 2, 1)] * 2)
    array([[1., 0., 0., 0.],
           [0., 1., 0., 0.],
           [0., 0., 1., 0.],
           [0., 0., 0., 1.]])
    """
    n = len(cores)
    out = merge_bonds(cores)
    out = out.reshape(out.shape[1:-1])  # (o0, i0, o1, i1, ...)
    perm = [2 * k for k in range(n)] + [2 * k + 1 for k in range(n)]
    po = math.prod(c.shape[1] for c in cores)
    pi = math.prod(c.shape[2] for c in cores)
    return out.transpose(perm).reshape(po, pi)


class MPO(TensorTrain):
    """A matrix product operator ``W`` of shape ``(out_features, in_features)``.

    Core ``k`` has shape ``(left_bond, out_k, in_k, right_bond)``; site 0 holds
    the most significant digit of both the row and the column index.  ``W``
    acts like :class:`torch.nn.Linear`: ``y = W x``.  When ``shape`` is smaller
    than ``(prod(out_dims), prod(in_dims))`` the matrix was zero-padded and
    :meth:`to_dense` / :meth:`apply` remove the padding.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.random.default_rng(0).normal(size=(6, 10))
    >>> mpo = MPO.from_dense(W)
    >>> mpo.out_dims, mpo.in_dims, mpo.shape
    ((2, 2, 2, 1), (2, 2, 2, 2), (6, 10))
    >>> bool(np.allclose(mpo.to_dense(), W, rtol=0, atol=1e-12))
    True
    """

    _nphys = 2

    def __init__(self, cores: Sequence[Any], shape: tuple[int, int] | None = None, *,
                 check: bool = True) -> None:
        super().__init__(cores, check=check)
        full = (math.prod(self.out_dims), math.prod(self.in_dims))
        if shape is None:
            self.shape = full
        else:
            if not isinstance(shape, Sequence) or len(shape) != 2:
                raise QtnnError(f"shape must be a pair (out_features, in_features), got {shape!r}")
            self.shape = (check_int("shape[0]", shape[0], minimum=1, maximum=full[0]),
                          check_int("shape[1]", shape[1], minimum=1, maximum=full[1]))

    @property
    def out_dims(self) -> tuple[int, ...]:
        """Output dimension of every site."""
        return tuple(c.shape[1] for c in self.cores)

    @property
    def in_dims(self) -> tuple[int, ...]:
        """Input dimension of every site."""
        return tuple(c.shape[2] for c in self.cores)

    @property
    def out_features(self) -> int:
        """Number of rows of ``W`` (padding excluded)."""
        return self.shape[0]

    @property
    def in_features(self) -> int:
        """Number of columns of ``W`` (padding excluded)."""
        return self.shape[1]

    @property
    def padded_shape(self) -> tuple[int, int]:
        """``(prod(out_dims), prod(in_dims))``."""
        return (math.prod(self.out_dims), math.prod(self.in_dims))

    # ---------------------------------------------------------------- builders
    @classmethod
    def from_dense(cls, W: Any, out_dims: Any = None, in_dims: Any = None,
                   max_bond: int | None = None, cutoff: float = 0.0) -> MPO:
        """TT-SVD of a matrix (``docs/design/math.md``, section 1).

        ``W`` (``out x in``) is zero-padded to ``prod(out_dims) x prod(in_dims)``,
        reshaped to ``(o_0..o_{L-1}, i_0..i_{L-1})``, interleaved to
        ``(o_0 i_0, o_1 i_1, ...)`` and split left to right by SVD.

        Parameters
        ----------
        W : array_like, shape (out_features, in_features)
        out_dims, in_dims : None, int or sequence of int
            ``None`` for both: qubits (all 2, padding to powers of two; the side
            with fewer qubits gets trivial sites of dimension 1 at the end).
            An int: that number of sites with balanced dims.  ``None`` for one
            side only: the same number of sites as the other, balanced.
        max_bond : int, optional
            Largest bond kept.
        cutoff : float
            Relative Frobenius error budget in ``[0, 1)``: the result satisfies
            ``||W - W_mpo||_F <= cutoff * ||W||_F``.

        Examples
        --------
        >>> import numpy as np
        >>> mpo = MPO.from_dense(np.eye(64), out_dims=3)
        >>> mpo.out_dims, mpo.in_dims, mpo.bond_dims
        ((4, 4, 4), (4, 4, 4), [1, 1])
        """
        w = as_float_array("W", W, ndim=2)
        max_bond = check_bond("max_bond", max_bond)
        cutoff = check_cutoff("cutoff", cutoff)
        od, idm = site_dims(w.shape[0], w.shape[1], out_dims, in_dims)
        n = len(od)
        check_alloc(f"the padded {math.prod(od)} x {math.prod(idm)} matrix of out_dims={od}, "
                    f"in_dims={idm}", math.prod(od) * math.prod(idm), w.dtype.itemsize,
                    hint="choose dims whose products are close to the shape of W")
        full = np.zeros((math.prod(od), math.prod(idm)), dtype=w.dtype)
        full[: w.shape[0], : w.shape[1]] = w
        t = full.reshape(od + idm)
        perm = [j for k in range(n) for j in (k, n + k)]
        t = t.transpose(perm)
        cores, _ = tt_svd(t, [o * i for o, i in zip(od, idm, strict=True)], max_bond, cutoff)
        cores = [c.reshape(c.shape[0], o, i, c.shape[-1]) for c, o, i in zip(cores, od, idm, strict=True)]
        return cls(cores, shape=w.shape, check=False)

    @classmethod
    def identity(cls, dims: Sequence[int]) -> MPO:
        """The identity on sites of the given dims (bond 1)."""
        dims = check_dims("dims", dims)
        check_alloc(f"an identity MPO on dims {dims!r:.60}", sum(d * d + CORE_OVERHEAD for d in dims),
                    hint="use fewer or smaller sites")
        return cls([np.eye(d).reshape(1, d, d, 1) for d in dims], check=False)

    @classmethod
    def random(cls, out_dims: Sequence[int], in_dims: Sequence[int], bond: int, *,
               seed: int | None = 0, normalize: bool = True) -> MPO:
        """A random MPO with Gaussian cores (bond capped by the sizes), unit norm by default.

        Examples
        --------
        >>> MPO.random((2, 2, 2), (2, 2, 2), 8, seed=0).bond_dims
        [4, 4]
        """
        out_dims = check_dims("out_dims", out_dims)
        in_dims = check_dims("in_dims", in_dims)
        if len(out_dims) != len(in_dims):
            raise QtnnError(f"out_dims {tuple(out_dims)} and in_dims {tuple(in_dims)} "
                            "must have the same length")
        bond = check_int("bond", bond, minimum=1)
        seed = check_seed("seed", seed)
        check_bool("normalize", normalize)
        p = [o * i for o, i in zip(out_dims, in_dims, strict=True)]
        n = len(p)
        left, right = [1] * (n + 1), [1] * (n + 1)  # min(bond, prod(p[:k])) and min(bond, prod(p[k:]))
        for k in range(1, n + 1):
            left[k] = min(bond, left[k - 1] * p[k - 1])
            right[n - k] = min(bond, right[n - k + 1] * p[n - k])
        bonds = [1] + [min(left[k], right[k]) for k in range(1, n)] + [1]
        check_alloc(f"a random MPO of {n} sites, bond {bond}",
                    sum(bonds[k] * p[k] * bonds[k + 1] + CORE_OVERHEAD for k in range(n)),
                    hint="use a smaller bond or fewer/smaller sites")
        rng = np.random.default_rng(seed)
        cores = [rng.normal(size=(bonds[k], out_dims[k], in_dims[k], bonds[k + 1])) for k in range(n)]
        mpo = cls(cores)
        if normalize:
            mpo.cores[-1] /= mpo.norm()
        return mpo

    # ------------------------------------------------------------ operations
    def to_dense(self) -> np.ndarray:
        """The matrix ``W`` (padding removed).  Refuses matrices over the memory limit."""
        po, pi = self.padded_shape
        check_alloc(f"a dense {po} x {pi} matrix", po * pi, self.dtype.itemsize,
                    hint="use MPO.apply or keep the operator as an MPO")
        return mpo_dense(self.cores)[: self.shape[0], : self.shape[1]]

    def apply(self, x: Any) -> Any:
        """``y = W x`` for a batch ``x`` of shape ``(..., in_features)``, without forming ``W``.

        ``x`` may be a numpy array or a torch tensor (then the cores are
        converted to its dtype and device and autograd flows through ``x``).
        The contraction order is chosen by :mod:`qtnn.tn.contract`.

        Examples
        --------
        >>> import numpy as np
        >>> W = np.arange(12.0).reshape(3, 4)
        >>> x = np.ones((5, 4))
        >>> bool(np.allclose(MPO.from_dense(W).apply(x), x @ W.T))
        True
        """
        if is_torch(x):
            import torch

            if x.ndim < 1 or x.shape[-1] != self.in_features:
                raise QtnnError(f"x must have shape (..., {self.in_features}), got {tuple(x.shape)}")
            if not (x.is_floating_point() or x.is_complex()):
                raise QtnnTypeError(f"x must be a floating or complex tensor (the cores take its dtype), "
                                    f"got dtype {x.dtype}")
            if not bool(torch.isfinite(x).all()):
                raise QtnnError(f"x must be finite, got NaN or inf in a tensor of shape {tuple(x.shape)}")
            if np.iscomplexobj(self.dtype.type(0)) and not x.is_complex():
                x = x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
            cores = [torch.as_tensor(c, dtype=x.dtype, device=x.device) for c in self.cores]
            return apply_cores(x, cores, self.shape)
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:  # ragged nested lists
            raise QtnnTypeError(f"x must be array-like, got {type(x).__name__}: {exc}") from None
        if arr.ndim < 1 or arr.shape[-1] != self.in_features:
            raise QtnnError(f"x must have shape (..., {self.in_features}), got {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise QtnnTypeError(f"x must hold numbers, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise QtnnError(f"x must be finite, got NaN or inf in an array of shape {arr.shape}")
        return apply_cores(arr, self.cores, self.shape)

    def transpose(self) -> MPO:
        """The MPO of ``W^T`` (output and input legs swapped, no conjugation)."""
        cores = [c.transpose(0, 2, 1, 3).copy() for c in self.cores]
        return MPO(cores, shape=(self.shape[1], self.shape[0]), check=False)

    @property
    def T(self) -> MPO:
        """Shorthand for :meth:`transpose`."""
        return self.transpose()

    def dot(self, other: MPO | MPS, max_bond: int | None = None,
            cutoff: float = 0.0) -> MPO | MPS:
        """``W @ other`` for an MPO (operator product) or an MPS (``W |psi>``).

        Bonds multiply; with ``max_bond`` or ``cutoff`` the result is
        compressed by :meth:`~qtnn.tn.tensortrain.TensorTrain.truncate`.

        Examples
        --------
        >>> import numpy as np
        >>> A = MPO.from_dense(np.eye(4) * 2)
        >>> psi = MPS.from_dense(np.arange(4.0))
        >>> np.round(A.dot(psi).to_dense(), 12) + 0.0
        array([0., 2., 4., 6.])
        """
        max_bond = check_bond("max_bond", max_bond)
        cutoff = check_cutoff("cutoff", cutoff)
        if isinstance(other, MPS):
            if other.phys_dims != self.in_dims:
                raise QtnnError(f"MPS phys dims {other.phys_dims} do not match the MPO's "
                                f"in_dims {self.in_dims}")
            if other.size > self.in_features:
                raise QtnnError(f"MPS of size {other.size} does not fit in_features={self.in_features}")
            cores = []
            for a, b in zip(self.cores, other.cores, strict=True):
                c = np.einsum("aoib,cid->acobd", a, b)
                s = c.shape
                cores.append(c.reshape(s[0] * s[1], s[2], s[3] * s[4]))
            res: MPO | MPS = MPS(cores, size=math.prod(self.out_dims), check=False)
        elif isinstance(other, MPO):
            if other.out_dims != self.in_dims:
                raise QtnnError(f"other.out_dims {other.out_dims} do not match in_dims {self.in_dims}")
            if other.out_features != self.in_features:
                raise QtnnError(f"other has {other.out_features} outputs but this MPO takes "
                                f"{self.in_features} inputs")
            cores = []
            for a, b in zip(self.cores, other.cores, strict=True):
                c = np.einsum("aokb,ckid->acoibd", a, b)
                s = c.shape
                cores.append(c.reshape(s[0] * s[1], s[2], s[3], s[4] * s[5]))
            res = MPO(cores, shape=(self.out_features, other.in_features), check=False)
        else:
            raise QtnnError(f"other must be an MPO or an MPS, got {type(other).__name__}")
        if max_bond is not None or cutoff > 0:
            res.truncate(max_bond=max_bond, cutoff=cutoff)
        return res

    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, (MPO, MPS)):
            return self.dot(other)
        return NotImplemented

    def as_mps(self) -> MPS:
        """The vectorised operator as an MPS with phys dims ``out_k * in_k``."""
        return MPS([c.reshape(c.shape[0], -1, c.shape[-1]) for c in self.cores], check=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MPO):
            return NotImplemented
        return self.shape == other.shape and len(self) == len(other) and all(
            a.shape == b.shape and np.array_equal(a, b) for a, b in zip(self.cores, other.cores, strict=True))

    __hash__ = None  # type: ignore[assignment]


def apply_cores(x: Any, cores: Sequence[Any], shape: tuple[int, int], plan: Any = None,
                bias: Any = None, prepared: Any = None) -> Any:
    """``y = W x (+ bias)`` from raw cores (numpy or torch), ``shape = (out_features, in_features)``.

    Pads ``x`` with zeros to ``prod(in_dims)``, contracts with ``plan``
    (default: the cost model's cached plan, :func:`plan_mpo_apply`), or with
    ``prepared`` (a :class:`~qtnn.tn.contract.PreparedApply` of these cores),
    and crops the output.  ``bias`` (``out_features`` entries) is added inside
    the contraction where the plan can (one fused product).  Shared by
    :meth:`MPO.apply` and :class:`qtnn.nn.MPOLinear`.
    """
    out_dims = tuple(int(c.shape[1]) for c in cores)
    in_dims = tuple(int(c.shape[2]) for c in cores)
    n_in, n_out = math.prod(in_dims), math.prod(out_dims)
    lead = tuple(x.shape[:-1])
    batch = math.prod(lead)
    torch_mode = is_torch(x)
    if torch_mode:
        import torch.nn.functional as F

        xf = x.reshape(batch, shape[1])
        if n_in != shape[1]:
            xf = F.pad(xf, (0, n_in - shape[1]))
        if bias is not None and n_out != shape[0]:
            bias = F.pad(bias, (0, n_out - shape[0]))
    else:
        xf = np.asarray(x).reshape(batch, shape[1])
        if n_in != shape[1]:
            xf = np.pad(xf, ((0, 0), (0, n_in - shape[1])))
        if bias is not None and n_out != shape[0]:
            bias = np.pad(np.asarray(bias), (0, n_out - shape[0]))
    if prepared is None:
        if plan is None:
            plan = plan_mpo_apply(batch, [tuple(c.shape) for c in cores],
                                  device_type=x.device.type if torch_mode else "cpu")
        prepared = prepare_mpo_apply(plan, cores)
    y = prepared(xf, bias)
    if n_out != shape[0]:
        y = y[:, : shape[0]]
    return y.reshape((*lead, shape[0]))
