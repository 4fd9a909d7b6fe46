"""Common machinery of MPS and MPO: canonical forms, truncation, entropies.

A tensor train is a list of cores ``A_k`` of shape ``(left_bond, *phys, right_bond)``
with end bonds of size 1.  Site 0 is the most significant index of the dense
object it represents (PennyLane's and quimb's order).  The functions in this
module see every core as a three-leg tensor ``(left, prod(phys), right)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from qtnn.errors import QtnnError
from qtnn.tn.linalg import entropy, qr_pos, svd_fixed, truncation_rank
from qtnn.validate import as_float_array, check_bond, check_cutoff, check_dims, check_int, check_real

__all__ = ["TensorTrain", "tt_svd"]

T = TypeVar("T", bound="TensorTrain")


def _remaining_budget(total: float, used_sq: float, bonds_left: int) -> float:
    """Share of an absolute error budget for the next bond.

    The budget not spent on earlier bonds is spread evenly over the bonds still
    to truncate, so ``sqrt(sum of squared discarded norms) <= total`` always.
    """
    left = max(total * total - used_sq, 0.0)
    return math.sqrt(left / max(bonds_left, 1))


def tt_svd(tensor: np.ndarray, dims: Sequence[int], max_bond: int | None = None,
           cutoff: float = 0.0) -> tuple[list[np.ndarray], list[float]]:
    """Tensor-train SVD (Oseledets, SIAM J. Sci. Comput. 33, 2295 (2011)).

    Splits ``tensor`` (any shape with ``prod(dims)`` entries, read in C order as
    ``(d_0, ..., d_{L-1})``) into cores of shape ``(left, d_k, right)`` from left
    to right.  At each bond at most ``max_bond`` singular values are kept and
    the longest tail whose norm fits the bond's share of the budget
    ``cutoff * ||tensor||_F`` is dropped.

    Returns
    -------
    cores : list of ndarray
        The cores; all but the last are left-orthonormal (isometries).
    discarded : list of float
        The Frobenius norm of the singular values dropped at each bond.  The
        left-orthonormal factors make the errors orthogonal, so
        ``||tensor - tt||_F == sqrt(sum(d**2 for d in discarded))`` exactly and
        this is at most ``cutoff * ||tensor||_F``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(8.0)
    >>> cores, disc = tt_svd(t, (2, 2, 2))
    >>> [c.shape for c in cores]
    [(1, 2, 2), (2, 2, 2), (2, 2, 1)]
    >>> disc
    [0.0, 0.0]
    """
    dims = check_dims("dims", dims)
    max_bond = check_bond("max_bond", max_bond)
    cutoff = check_cutoff("cutoff", cutoff)
    a = as_float_array("tensor", tensor).reshape(-1)
    if a.size != math.prod(dims):
        raise QtnnError(f"tensor has {a.size} entries but dims {dims} need {math.prod(dims)}")
    total = cutoff * float(np.linalg.norm(a))
    cores: list[np.ndarray] = []
    discarded: list[float] = []
    used_sq = 0.0
    left = 1
    rest = a.reshape(1, -1)
    nb = len(dims) - 1
    for k, d in enumerate(dims[:-1]):
        mat = rest.reshape(left * d, -1)
        u, s, vh = svd_fixed(mat)
        budget = _remaining_budget(total, used_sq, nb - k)
        r = truncation_rank(s, max_bond, budget)
        tail = float(np.sqrt(np.sum(s[r:] ** 2)))
        used_sq += tail * tail
        discarded.append(tail)
        cores.append(u[:, :r].reshape(left, d, r))
        rest = s[:r, None] * vh[:r]
        left = r
    cores.append(rest.reshape(left, dims[-1], 1))
    return cores, discarded


def _scaled(a: np.ndarray) -> tuple[np.ndarray, int]:
    """``(a * 2**-e, e)`` with the largest entry of the result in ``[0.5, 1)`` when ``a`` is far
    from 1 in magnitude (``e = 0`` otherwise); exact, as scaling by a power of two is."""
    big = float(np.abs(a).max()) if a.size else 0.0
    if big == 0 or 2.0**-256 < big < 2.0**256:
        return a, 0
    e = math.frexp(big)[1]
    return (a * 2.0**-e if abs(e) < 1000 else a * 2.0 ** (-e // 2) * 2.0 ** (-e + e // 2)), e


class TensorTrain:
    """Base class of :class:`~qtnn.tn.MPS` and :class:`~qtnn.tn.MPO`.

    Holds ``cores`` (a list of numpy arrays) and ``center``, the index of the
    orthogonality centre when the train is known to be in mixed canonical form
    (``None`` otherwise).  Methods that change the cores in place return
    ``self`` (or, for :meth:`truncate`, the error), so calls chain.

    Examples
    --------
    >>> from qtnn.tn import MPS
    >>> psi = MPS.random(6, 4, seed=0)
    >>> isinstance(psi, TensorTrain), psi.bond_dims
    (True, [2, 4, 4, 4, 2])
    >>> err = psi.copy().truncate(max_bond=2)       # returns the relative error
    >>> 0 < err < 1
    True
    """

    #: number of physical legs per core (1 for MPS, 2 for MPO)
    _nphys = 1

    cores: list[np.ndarray]
    center: int | None

    def __init__(self, cores: Sequence[Any], *, check: bool = True) -> None:
        if isinstance(cores, (str, bytes)) or not isinstance(cores, Sequence) or len(cores) == 0:
            raise QtnnError(f"cores must be a non-empty list of arrays, got {cores!r:.80}")
        self.cores = [as_float_array(f"cores[{k}]", c, ndim=2 + self._nphys)
                      for k, c in enumerate(cores)]
        self.center = None
        if check:
            self.check()

    # ------------------------------------------------------------------ basics
    def check(self) -> None:
        """Check that neighbouring bonds match and end bonds are 1.

        Raises
        ------
        QtnnError
            naming the first core that does not fit.
        """
        for k, c in enumerate(self.cores):
            if c.ndim != 2 + self._nphys:
                raise QtnnError(f"cores[{k}] must have {2 + self._nphys} legs, got shape {c.shape}")
        if self.cores[0].shape[0] != 1:
            raise QtnnError(f"cores[0] must have left bond 1, got shape {self.cores[0].shape}")
        if self.cores[-1].shape[-1] != 1:
            raise QtnnError(f"cores[{len(self.cores) - 1}] must have right bond 1, "
                            f"got shape {self.cores[-1].shape}")
        for k in range(len(self.cores) - 1):
            r, l_ = self.cores[k].shape[-1], self.cores[k + 1].shape[0]
            if r != l_:
                raise QtnnError(f"bond mismatch between cores[{k}] (right bond {r}) and "
                                f"cores[{k + 1}] (left bond {l_})")

    @property
    def num_sites(self) -> int:
        """Number of cores."""
        return len(self.cores)

    def __len__(self) -> int:
        return len(self.cores)

    @property
    def bond_dims(self) -> list[int]:
        """Internal bond dimensions (``num_sites - 1`` numbers)."""
        return [c.shape[-1] for c in self.cores[:-1]]

    @property
    def max_bond(self) -> int:
        """Largest internal bond dimension (1 for a single site)."""
        return max(self.bond_dims, default=1)

    @property
    def num_params(self) -> int:
        """Total number of entries in the cores."""
        return int(sum(c.size for c in self.cores))

    @property
    def dtype(self) -> np.dtype:
        """Common dtype of the cores (complex if any core is)."""
        return np.result_type(*self.cores)

    def copy(self: T) -> T:
        """A deep copy."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.cores = [c.copy() for c in self.cores]
        return new

    def _flat(self, k: int) -> np.ndarray:
        c = self.cores[k]
        return c.reshape(c.shape[0], -1, c.shape[-1])

    def _set_flat(self, k: int, a: np.ndarray, phys: tuple[int, ...]) -> None:
        self.cores[k] = a.reshape(a.shape[0], *phys, a.shape[-1])

    def _phys(self, k: int) -> tuple[int, ...]:
        return tuple(self.cores[k].shape[1:-1])

    # --------------------------------------------------------- canonical forms
    def _shift_right(self, k: int) -> None:
        """Make core ``k`` left-orthonormal, pushing the rest into core ``k+1``."""
        a = self._flat(k)
        l_, p, r = a.shape
        q, rr = qr_pos(a.reshape(l_ * p, r))
        self._set_flat(k, q.reshape(l_, p, -1), self._phys(k))
        nxt = self._flat(k + 1)
        self._set_flat(k + 1, np.tensordot(rr, nxt, axes=(1, 0)), self._phys(k + 1))

    def _shift_left(self, k: int) -> None:
        """Make core ``k`` right-orthonormal, pushing the rest into core ``k-1``."""
        a = self._flat(k)
        l_, p, r = a.shape
        q, rr = qr_pos(a.reshape(l_, p * r).T)
        self._set_flat(k, q.T.reshape(-1, p, r), self._phys(k))
        prv = self._flat(k - 1)
        self._set_flat(k - 1, np.tensordot(prv, rr.T, axes=(2, 0)), self._phys(k - 1))

    def canonicalize(self: T, center: int) -> T:
        """Bring the train into mixed canonical form around ``center`` (in place).

        Cores left of ``center`` become left-orthonormal, cores right of it
        right-orthonormal (QR with a non-negative diagonal, so the result is
        unique for full-rank cores).  Negative ``center`` counts from the end.

        Examples
        --------
        >>> import numpy as np
        >>> from qtnn.tn import MPS
        >>> psi = MPS.from_dense(np.arange(1.0, 9.0)).canonicalize(0)
        >>> psi.center, bool(np.isclose(np.linalg.norm(psi.cores[0]), np.linalg.norm(np.arange(1.0, 9.0))))
        (0, True)
        """
        n = self.num_sites
        center = check_int("center", center, minimum=-n, maximum=n - 1) % n
        for k in range(0, center):
            self._shift_right(k)
        for k in range(n - 1, center, -1):
            self._shift_left(k)
        self.center = center
        return self

    def left_canonicalize(self: T) -> T:
        """All cores but the last left-orthonormal (centre at the last site)."""
        return self.canonicalize(self.num_sites - 1)

    def right_canonicalize(self: T) -> T:
        """All cores but the first right-orthonormal (centre at site 0)."""
        return self.canonicalize(0)

    def is_left_orthonormal(self, k: int, atol: float = 1e-12) -> bool:
        """Whether core ``k`` satisfies ``sum_{l,p} conj(A) A = I`` on its right bond."""
        a = self._flat(k)
        m = a.reshape(-1, a.shape[-1])
        return bool(np.allclose(m.conj().T @ m, np.eye(m.shape[1]), rtol=0, atol=atol))

    def is_right_orthonormal(self, k: int, atol: float = 1e-12) -> bool:
        """Whether core ``k`` satisfies ``sum_{p,r} A conj(A) = I`` on its left bond."""
        a = self._flat(k)
        m = a.reshape(a.shape[0], -1)
        return bool(np.allclose(m @ m.conj().T, np.eye(m.shape[0]), rtol=0, atol=atol))

    # ------------------------------------------------------------ norm, SVDs
    def norm(self) -> float:
        """Frobenius norm (2-norm of the represented vector / matrix)."""
        env = np.ones((1, 1))
        exp2 = 0  # env is kept scaled by 2**-exp2 (exact: powers of two), so long trains
        for k in range(self.num_sites):  # neither overflow nor underflow
            a = self._flat(k)
            a, e = _scaled(a)
            env, f = _scaled(np.einsum("ab,apc,bpd->cd", env, a.conj(), a, optimize=True))
            exp2 += 2 * e + f
        val = max(env.real.item(), 0.0)
        if exp2 % 2:
            val, exp2 = 2.0 * val, exp2 - 1
        try:
            return float(math.ldexp(math.sqrt(val), exp2 // 2))
        except OverflowError:
            return math.inf

    def truncate(self, max_bond: int | None = None, cutoff: float = 0.0) -> float:
        """Compress the bonds in place; return the relative error.

        The train is left-canonicalised, then swept right to left with an SVD at
        every bond, keeping at most ``max_bond`` singular values and dropping a
        tail within the bond's share of the budget ``cutoff * norm``.  Since
        each SVD is taken at the orthogonality centre the errors are
        orthogonal, so the returned number

        ``||A - A_trunc||_F / ||A||_F == sqrt(sum of squared discarded singular values) / ||A||_F``

        is exact (the square root of the discarded weight), and at most
        ``cutoff`` when only ``cutoff`` limits the bonds.  The result is
        right-canonical (``center == 0``).

        Examples
        --------
        >>> import numpy as np
        >>> from qtnn.tn import MPS
        >>> psi = MPS.from_dense(np.random.default_rng(0).normal(size=64))
        >>> err = psi.truncate(max_bond=2)
        >>> psi.bond_dims, round(err, 3) > 0
        ([2, 2, 2, 2, 2], True)
        """
        max_bond = check_bond("max_bond", max_bond)
        cutoff = check_cutoff("cutoff", cutoff)
        n = self.num_sites
        self.left_canonicalize()
        nrm = float(np.linalg.norm(self.cores[-1]))
        total = cutoff * nrm
        used_sq = 0.0
        for k in range(n - 1, 0, -1):
            a = self._flat(k)
            l_, p, r = a.shape
            u, s, vh = svd_fixed(a.reshape(l_, p * r))
            budget = _remaining_budget(total, used_sq, k)
            keep = truncation_rank(s, max_bond, budget)
            used_sq += float(np.sum(s[keep:] ** 2))
            self._set_flat(k, vh[:keep].reshape(keep, p, r), self._phys(k))
            prv = self._flat(k - 1)
            self._set_flat(k - 1, np.tensordot(prv, u[:, :keep] * s[:keep], axes=(2, 0)),
                           self._phys(k - 1))
        self.center = 0
        return math.sqrt(used_sq) / nrm if nrm > 0 else 0.0

    def schmidt_values(self) -> list[np.ndarray]:
        """Singular values across every bond (not normalised).

        Entry ``k`` holds the Schmidt coefficients between sites ``0..k`` and
        ``k+1..`` of the tensor seen as a vector (for an MPO: the vectorised
        operator, output and input legs of a site kept together).
        """
        tt = self.copy().right_canonicalize()
        out = []
        for k in range(tt.num_sites - 1):
            a = tt._flat(k)
            l_, p, r = a.shape
            u, s, vh = svd_fixed(a.reshape(l_ * p, r))
            tt._set_flat(k, u.reshape(l_, p, -1), tt._phys(k))
            nxt = tt._flat(k + 1)
            tt._set_flat(k + 1, np.tensordot(s[:, None] * vh, nxt, axes=(1, 0)), tt._phys(k + 1))
            out.append(s)
        return out

    def entropies(self, base: float = 2.0) -> np.ndarray:
        """Von Neumann entropy of the normalised Schmidt spectrum at every bond.

        ``S_k = -sum_j p_j log(p_j)`` with ``p_j = s_j**2 / sum(s**2)``, in bits
        by default (``base=2``; use ``base=math.e`` for nats).  For a train
        that is zero everywhere the entropies are 0.

        Examples
        --------
        >>> import numpy as np
        >>> from qtnn.tn import MPS
        >>> bell = MPS.from_dense(np.array([1.0, 0.0, 0.0, 1.0]))
        >>> np.round(bell.entropies(), 12)
        array([1.])
        """
        base = check_real("base", base, minimum=0.0, strict_min=True)
        if base == 1.0:
            raise QtnnError("base must be a real number > 0 other than 1 (log base), got 1.0")
        out = []
        for s in self.schmidt_values():
            w = s**2
            tot = w.sum()
            out.append(entropy(w / tot, base) if tot > 0 else 0.0)
        return np.array(out, dtype=np.float64)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(sites={self.num_sites}, "
                f"phys={[self._phys(k) for k in range(min(self.num_sites, 4))]}"
                f"{'...' if self.num_sites > 4 else ''}, bonds={self.bond_dims})")
