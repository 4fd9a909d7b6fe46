"""Choosing the site dimensions of a tensor train.

Examples
--------
>>> qubit_dims(5)
(2, 2, 2)
>>> balanced_dims(4096, 4)
(8, 8, 8, 8)
>>> balanced_dims(384, 3)
(8, 8, 6)
"""

from __future__ import annotations

import math

from qtnn.errors import QtnnError
from qtnn.validate import check_int, check_real

__all__ = ["qubit_dims", "balanced_dims", "prime_factors", "MAX_SIZE"]

#: Largest size :func:`balanced_dims` factors (``2**40`` entries, 8 TiB as float64: beyond any
#: dense vector that fits in memory; trial division stays fast below it).
MAX_SIZE = 2**40

#: Most candidate sizes :func:`balanced_dims` tries before giving up.
_MAX_CANDIDATES = 100_000


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` in non-increasing order."""
    out: list[int] = []
    p = 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return sorted(out, reverse=True)


def qubit_dims(n: int) -> tuple[int, ...]:
    """All-2 dims for ``n`` entries, padded up to the next power of two.

    ``n = 1`` gives one site of dimension 2 (one qubit).

    Examples
    --------
    >>> qubit_dims(10)          # padded to 16 = 2**4
    (2, 2, 2, 2)
    """
    n = check_int("size", n, minimum=1)
    return (2,) * max(1, math.ceil(math.log2(n)))


def _split(n: int, k: int) -> tuple[int, ...] | None:
    """Split ``n`` into ``k`` factors as evenly as the primes allow."""
    bins = [1] * k
    for p in prime_factors(n):
        i = min(range(k), key=lambda j: bins[j])
        bins[i] *= p
    return tuple(sorted(bins, reverse=True))


def balanced_dims(n: int, num_cores: int, max_ratio: float = 2.0) -> tuple[int, ...]:
    """``num_cores`` dims whose product is the smallest ``m >= n`` that splits evenly.

    "Evenly" means the largest factor is at most ``max_ratio`` times the
    smallest one (a factor of 1 is allowed only when ``n`` itself is 1).
    Dims are returned in non-increasing order; the caller zero-pads ``n`` up
    to their product.

    Examples
    --------
    >>> balanced_dims(100, 2), balanced_dims(64, 3)
    ((10, 10), (4, 4, 4))
    """
    n = check_int("size", n, minimum=1, maximum=MAX_SIZE)
    num_cores = check_int("num_cores", num_cores, minimum=1)
    max_ratio = check_real("max_ratio", max_ratio, minimum=1.0)
    if num_cores == 1:
        return (n,)
    if n > 1 and num_cores > MAX_SIZE.bit_length() - 1:  # 2**num_cores > MAX_SIZE, without forming it
        raise QtnnError(f"num_cores={num_cores} sites of dimension >= 2 need at least 2**{num_cores} "
                        f"entries, more than the {MAX_SIZE} (2**40) balanced_dims handles; use fewer "
                        "cores")
    m = n
    for _ in range(_MAX_CANDIDATES):
        dims = _split(m, num_cores)
        if dims is not None and (m == 1 or (min(dims) > 1 and max(dims) <= max_ratio * min(dims))):
            return dims
        m += 1
    raise QtnnError(f"no split of a size between {n} and {m - 1} into num_cores={num_cores} dims within "
                    f"max_ratio={max_ratio:g} was found; use fewer cores or a larger max_ratio")
