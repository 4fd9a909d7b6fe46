"""Matrix product states."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.tn.factorize import balanced_dims, qubit_dims
from qtnn.tn.linalg import qr_pos
from qtnn.tn.tensortrain import TensorTrain, tt_svd
from qtnn.validate import (
    as_float_array,
    check_alloc,
    check_bond,
    check_bool,
    check_cutoff,
    check_dims,
    check_int,
    check_seed,
)

__all__ = ["MPS", "resolve_dims", "capped_power"]


#: Memory (in float64 entries) counted per core on top of its entries: the Python and
#: numpy object overhead of one small array, so that millions of tiny cores are refused too.
CORE_OVERHEAD = 16


def capped_power(base: int, exponent: int, cap: int) -> int:
    """``min(cap, base**exponent)`` without forming huge integers.

    Examples
    --------
    >>> capped_power(2, 10**9, 64), capped_power(2, 3, 64)
    (64, 8)
    """
    if base <= 1 or exponent <= 0:
        return min(cap, 1)
    if exponent * math.log2(base) >= math.log2(cap) + 1:
        return cap
    return min(cap, base**exponent)


def resolve_dims(name: str, size: int, dims: Any) -> tuple[int, ...]:
    """Site dims for ``size`` entries: ``None`` (qubits), an int (number of cores) or a sequence."""
    if dims is None:
        return qubit_dims(size)
    if isinstance(dims, numbers.Integral) and not isinstance(dims, bool):
        cores = check_int(name, dims, minimum=1)
        try:
            return balanced_dims(size, cores)
        except QtnnError as exc:
            raise QtnnError(f"{name}={cores} (a number of sites) does not fit size {size}: {exc}") from None
    dims = check_dims(name, dims)
    if math.prod(dims) < size:
        raise QtnnError(f"{name}={dims} has product {math.prod(dims)}, smaller than the size {size} "
                        f"it must hold")
    return dims


class MPS(TensorTrain):
    """A matrix product state (tensor train of a vector).

    Core ``k`` has shape ``(left_bond, phys_k, right_bond)``; site 0 is the
    most significant digit of the basis index (qubit 0 = leftmost bit, as in
    PennyLane and quimb).  ``size`` is the logical length of the vector; when it
    is smaller than ``prod(phys_dims)`` the vector was zero-padded and
    :meth:`to_dense` crops the padding.

    Parameters
    ----------
    cores : sequence of array_like
        Three-leg cores.
    size : int, optional
        Logical length (default: ``prod(phys_dims)``).

    Examples
    --------
    >>> import numpy as np
    >>> psi = MPS.from_dense(np.ones(8) / np.sqrt(8))
    >>> psi.phys_dims, psi.bond_dims
    ((2, 2, 2), [1, 1])
    >>> round(psi.norm(), 12)
    1.0
    """

    _nphys = 1

    def __init__(self, cores: Sequence[Any], size: int | None = None, *, check: bool = True) -> None:
        super().__init__(cores, check=check)
        full = math.prod(self.phys_dims)
        self.size = full if size is None else check_int("size", size, minimum=1, maximum=full)

    @property
    def phys_dims(self) -> tuple[int, ...]:
        """Physical dimension of every site."""
        return tuple(c.shape[1] for c in self.cores)

    # ---------------------------------------------------------------- builders
    @classmethod
    def from_dense(cls, psi: Any, dims: Any = None, max_bond: int | None = None,
                   cutoff: float = 0.0) -> MPS:
        """TT-SVD of a vector.

        Parameters
        ----------
        psi : array_like, shape (N,)
            The vector (real or complex).
        dims : None, int or sequence of int
            ``None``: qubits, i.e. all dims 2, zero-padding ``N`` to the next
            power of two.  An int: that many sites with balanced dims (see
            :func:`~qtnn.tn.factorize.balanced_dims`).  A sequence: the dims,
            whose product must be at least ``N``.
        max_bond : int, optional
            Largest bond kept.
        cutoff : float
            Relative Frobenius error budget in ``[0, 1)``.

        Examples
        --------
        >>> import numpy as np
        >>> v = np.arange(1.0, 6.0)
        >>> psi = MPS.from_dense(v)
        >>> psi.phys_dims, psi.size
        ((2, 2, 2), 5)
        >>> bool(np.allclose(psi.to_dense(), v, rtol=0, atol=1e-12))
        True
        """
        vec = as_float_array("psi", psi, ndim=1)
        max_bond = check_bond("max_bond", max_bond)
        cutoff = check_cutoff("cutoff", cutoff)
        d = resolve_dims("dims", vec.size, dims)
        check_alloc(f"the padded vector of dims={d}", math.prod(d), vec.dtype.itemsize,
                    hint="choose dims whose product is close to the size of psi")
        full = np.zeros(math.prod(d), dtype=vec.dtype)
        full[: vec.size] = vec
        cores, _ = tt_svd(full, d, max_bond, cutoff)
        return cls(cores, size=vec.size, check=False)

    @classmethod
    def product_state(cls, bits: Sequence[int], dims: Sequence[int] | None = None) -> MPS:
        """The basis state ``|b_0 b_1 ...>`` (bond 1).

        Examples
        --------
        >>> MPS.product_state([1, 0]).to_dense()
        array([0., 0., 1., 0.])
        """
        if isinstance(bits, (str, bytes)) or not isinstance(bits, Sequence):
            raise QtnnTypeError(f"bits must be a sequence of integers such as [0, 1, 1], got "
                                f"{type(bits).__name__} {bits!r:.80}")
        bits = [check_int(f"bits[{k}]", b, minimum=0) for k, b in enumerate(bits)]
        if not bits:
            raise QtnnError("bits must not be empty")
        dims = (2,) * len(bits) if dims is None else check_dims("dims", dims)
        if len(dims) != len(bits):
            raise QtnnError(f"dims has {len(dims)} entries but bits has {len(bits)}")
        cores = []
        for k, (b, d) in enumerate(zip(bits, dims, strict=True)):
            if b >= d:
                raise QtnnError(f"bits[{k}]={b} does not fit a site of dimension {d}")
            c = np.zeros((1, d, 1))
            c[0, b, 0] = 1.0
            cores.append(c)
        return cls(cores, check=False)

    @classmethod
    def random(cls, n: int, bond: int, *, phys: int = 2, seed: int | None = 0,
               complex: bool = False, normalize: bool = True) -> MPS:
        """A random MPS with Gaussian cores and bond ``bond`` (capped by the sizes).

        Examples
        --------
        >>> MPS.random(6, 4, seed=1).bond_dims
        [2, 4, 4, 4, 2]
        """
        n = check_int("n", n, minimum=1)
        bond = check_int("bond", bond, minimum=1)
        phys = check_int("phys", phys, minimum=1)
        seed = check_seed("seed", seed)
        check_bool("complex", complex)
        check_bool("normalize", normalize)
        widest = capped_power(phys, n // 2, bond)
        check_alloc(f"a random MPS of {n} sites, bond {bond}",
                    n * (phys * widest * widest * (2 if complex else 1) + CORE_OVERHEAD),
                    hint="use a smaller n or bond")
        bonds = [1] + [capped_power(phys, min(k, n - k), bond) for k in range(1, n)] + [1]
        rng = np.random.default_rng(seed)
        cores = []
        for k in range(n):
            shape = (bonds[k], phys, bonds[k + 1])
            c = rng.normal(size=shape)
            if complex:
                c = c + 1j * rng.normal(size=shape)
            cores.append(c)
        psi = cls(cores, check=False)
        if normalize:
            psi.normalize()
        return psi

    # ------------------------------------------------------------ operations
    def to_dense(self) -> np.ndarray:
        """The vector (padding removed).

        Refuses (``QtnnSizeError``) a vector larger than the memory limit.
        """
        full = math.prod(self.phys_dims)
        check_alloc(f"a dense vector of {full} entries", full, self.dtype.itemsize,
                    hint="keep the state as an MPS")
        out = self.cores[0].reshape(-1, self.cores[0].shape[-1])
        for c in self.cores[1:]:
            out = np.tensordot(out, c, axes=(1, 0)).reshape(-1, c.shape[-1])
        return out.reshape(-1)[: self.size]

    def overlap(self, other: MPS) -> complex | float:
        """Inner product ``<self|other>`` (``self`` conjugated), without dense vectors.

        Examples
        --------
        >>> a = MPS.product_state([0, 1])
        >>> a.overlap(a)
        1.0
        """
        if not isinstance(other, MPS):
            raise QtnnError(f"other must be an MPS, got {type(other).__name__}")
        if other.phys_dims != self.phys_dims:
            raise QtnnError(f"phys dims differ: {self.phys_dims} vs {other.phys_dims}")
        env = np.ones((1, 1))
        for a, b in zip(self.cores, other.cores, strict=True):
            env = np.einsum("ab,apc,bpd->cd", env, a.conj(), b, optimize=True)
        val = env.item()
        return float(val.real) if np.isrealobj(env) else complex(val)

    def normalize(self) -> MPS:
        """Scale to unit norm in place (returns ``self``)."""
        nrm = self.norm()
        if 0 < nrm < math.inf and 2.0**-900 < nrm < 2.0**900:
            k = self.center if self.center is not None else self.num_sites - 1
            self.cores[k] = self.cores[k] / nrm
            return self
        # The norm over- or underflows a float (long trains): sweep QR from the left, rescaling
        # every R to unit norm (a positive factor, so the direction is kept), and normalise the
        # last core, which then holds the whole norm.
        n = self.num_sites
        for k in range(n - 1):
            a = self._flat(k)
            l_, p, r = a.shape
            q, rr = qr_pos(a.reshape(l_ * p, r))
            scale = float(np.abs(rr).max())
            if scale == 0:
                raise QtnnError("cannot normalise an MPS whose norm is 0")
            self._set_flat(k, q.reshape(l_, p, -1), self._phys(k))
            nxt = self._flat(k + 1)
            self._set_flat(k + 1, np.tensordot(rr / scale, nxt, axes=(1, 0)), self._phys(k + 1))
        last = self.cores[-1] / float(np.abs(self.cores[-1]).max(initial=0.0) or 1.0)
        scale = float(np.linalg.norm(last))
        if scale == 0:
            raise QtnnError("cannot normalise an MPS whose norm is 0")
        self.cores[-1] = last / scale
        self.center = n - 1
        return self

    def __eq__(self, other: object) -> bool:  # structural equality, used in tests
        if not isinstance(other, MPS):
            return NotImplemented
        return self.size == other.size and len(self) == len(other) and all(
            a.shape == b.shape and np.array_equal(a, b) for a, b in zip(self.cores, other.cores, strict=True))

    __hash__ = None  # type: ignore[assignment]
