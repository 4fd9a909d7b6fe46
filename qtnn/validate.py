"""Small argument checks shared by every layer of qtnn.

Each helper raises :class:`qtnn.QtnnError` (or a subclass) with a message of the
form ``"<name> must be <what>, got <value>"``; none uses ``assert``.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import numpy as np

from qtnn.errors import QtnnError, QtnnSizeError, QtnnTypeError

#: Largest single allocation (in bytes) qtnn agrees to make for a dense object.
#: Override with the environment variable ``QTNN_MAX_BYTES``.
DEFAULT_MAX_BYTES = 4 * 1024**3

__all__ = ["check_int", "check_bond", "check_cutoff", "check_seed", "check_real", "check_bool", "check_path",
           "check_dims", "check_choice", "as_float_array", "max_bytes", "check_alloc", "pow2", "is_torch",
           "prod", "check_inputs", "check_output_weight", "short_repr", "renamed", "DEFAULT_MAX_BYTES"]

_S = TypeVar("_S", bound=str)


def short_repr(value: Any) -> str:
    """``repr(value)``, cut to 80 characters (for error messages).

    Examples
    --------
    >>> short_repr('x' * 100)[-5:]
    'xx...'
    """
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_int(name: str, value: Any, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` after checking type and range.

    Examples
    --------
    >>> check_int('layers', 3, minimum=1)
    3
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise QtnnTypeError(f"{name} must be an integer, got {short_repr(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise QtnnError(f"{name} must be an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise QtnnError(f"{name} must be an integer <= {maximum}, got {value}")
    return value


def check_bond(name: str, value: Any) -> int | None:
    """A bond limit: ``None`` (no limit) or a positive integer.

    Examples
    --------
    >>> check_bond('max_bond', 4), check_bond('max_bond', None)
    (4, None)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise QtnnError(f"{name} must be a positive integer or None, got {short_repr(value)}")
    return int(value)


def check_cutoff(name: str, value: Any) -> float:
    """A relative truncation budget in ``[0, 1)``.

    Examples
    --------
    >>> check_cutoff('cutoff', 0.01)
    0.01
    """
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise QtnnTypeError(f"{name} must be a real number in [0, 1), got {short_repr(value)}")
    value = float(value)
    if not (0.0 <= value < 1.0):
        raise QtnnError(f"{name} must be a real number in [0, 1), got {value!r}")
    return value


def check_seed(name: str, value: Any) -> int | None:
    """A random seed: ``None`` (fresh entropy) or an integer ``>= 0``.

    Examples
    --------
    >>> check_seed('seed', 7)
    7
    """
    if value is None:
        return None
    return check_int(name, value, minimum=0)


def check_real(name: str, value: Any, *, minimum: float | None = None,
               maximum: float | None = None, strict_min: bool = False,
               allow_inf: bool = False) -> float:
    """A real number (never NaN; finite unless ``allow_inf``) within the given bounds.

    Examples
    --------
    >>> check_real('lr', 1e-3, minimum=0, strict_min=True)
    0.001
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise QtnnTypeError(f"{name} must be a real number, got {short_repr(value)}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise QtnnError(f"{name} must be a finite real number, got {value!r}")
    if minimum is not None and (value < minimum or (strict_min and value == minimum)):
        raise QtnnError(f"{name} must be a real number {'>' if strict_min else '>='} {minimum:g}, "
                        f"got {value!r}")
    if maximum is not None and value > maximum:
        raise QtnnError(f"{name} must be a real number <= {maximum:g}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """A ``bool`` (or ``numpy.bool_``); anything else is a :class:`QtnnTypeError`.

    Examples
    --------
    >>> check_bool('progress', False)
    False
    """
    if not isinstance(value, (bool, np.bool_)):
        raise QtnnTypeError(f"{name} must be a bool, got {short_repr(value)}")
    return bool(value)


def check_path(name: str, value: Any) -> str:
    """A file-system path (``str`` or ``os.PathLike``), returned as ``str``.

    Examples
    --------
    >>> import pathlib
    >>> check_path('path', pathlib.Path('runs') / 'x.json')
    'runs/x.json'
    """
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise QtnnTypeError(f"{name} must be a str or os.PathLike path, got {type(value).__name__} "
                            f"{short_repr(value)}")
    path = os.fspath(value)
    if not isinstance(path, str) or not path or "\x00" in path:
        raise QtnnError(f"{name} must be a non-empty path without NUL characters, got {short_repr(value)}")
    return path


def check_dims(name: str, value: Any) -> tuple[int, ...]:
    """A non-empty sequence of positive integers.

    Examples
    --------
    >>> check_dims('out_dims', [2, 2, 2])
    (2, 2, 2)
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) == 0:
        raise QtnnError(f"{name} must be a non-empty sequence of positive integers, got {short_repr(value)}")
    out = []
    for d in value:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1:
            raise QtnnError(f"{name} must be a non-empty sequence of positive integers, "
                            f"got {short_repr(value)}")
        out.append(int(d))
    return tuple(out)


def check_choice(name: str, value: Any, choices: Sequence[_S]) -> _S:
    """One of a fixed set of option strings (typed as the choices, e.g. a ``Literal``).

    Examples
    --------
    >>> check_choice('layout', 'brickwall', ('staircase', 'brickwall'))
    'brickwall'
    """
    if not isinstance(value, str) or value not in choices:
        raise QtnnError(f"{name} must be one of {', '.join(map(repr, choices))}; got {short_repr(value)}")
    return cast(_S, value)  # one of ``choices``, which the type checker cannot see from ``in``


def as_float_array(name: str, value: Any, *, ndim: int | None = None,
                   allow_complex: bool = True) -> np.ndarray:
    """Convert to a finite float64 (or complex128) numpy array, checking shape.

    Torch tensors are detached and moved to the CPU.

    Examples
    --------
    >>> as_float_array("W", [[1, 2], [3, 4]], ndim=2).dtype
    dtype('float64')
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise QtnnTypeError(f"{name} must be array-like, got {short_repr(value)}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise QtnnTypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        if not allow_complex:
            raise QtnnTypeError(f"{name} must be real, got dtype {arr.dtype}")
        arr = arr.astype(np.complex128, copy=False)
    else:
        arr = arr.astype(np.float64, copy=False)
    if ndim is not None and arr.ndim != ndim:
        raise QtnnError(f"{name} must be a {ndim}-d array, got shape {arr.shape}")
    if arr.size == 0:
        raise QtnnError(f"{name} must not be empty, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise QtnnError(f"{name} must be finite, got NaN or inf in an array of shape {arr.shape}")
    return arr


def max_bytes() -> int:
    """The allocation limit in bytes (``QTNN_MAX_BYTES`` or 4 GiB).

    Examples
    --------
    >>> max_bytes() > 0
    True
    """
    env = os.environ.get("QTNN_MAX_BYTES")
    if env:
        try:
            return int(env)
        except ValueError:
            raise QtnnError(f"QTNN_MAX_BYTES must be an integer number of bytes, got {env!r}") from None
    return DEFAULT_MAX_BYTES


def check_alloc(what: str, numel: int | float, itemsize: int = 8, *, hint: str = "") -> None:
    """Refuse an allocation of ``numel`` elements that would exceed :func:`max_bytes`.

    Examples
    --------
    >>> check_alloc('a 40-qubit state vector', 2.0**40)   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qtnn.errors.QtnnSizeError: a 40-qubit state vector would need 8.0 TiB, ...
    """
    need = float(numel) * itemsize
    limit = max_bytes()
    if need > limit:
        msg = (f"{what} would need {_fmt_bytes(need)}, more than the limit of "
               f"{_fmt_bytes(limit)} (set QTNN_MAX_BYTES to change it)")
        if hint:
            msg += f"; {hint}"
        raise QtnnSizeError(msg)


def pow2(n: int) -> float:
    """``2.0**n`` as a float, ``inf`` when it does not fit (never forms a huge integer).

    Examples
    --------
    >>> pow2(10), pow2(5000)
    (1024.0, inf)
    """
    return 2.0**n if n < 1024 else math.inf


def _fmt_bytes(n: float) -> str:
    if not math.isfinite(n):
        return "more than 1e300 B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def is_torch(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (checked without importing torch).

    Examples
    --------
    >>> is_torch([1.0])
    False
    """
    return type(x).__module__.startswith("torch")


def prod(dims: Sequence[int]) -> int:
    """Product of integer dims (1 for an empty sequence).

    Examples
    --------
    >>> prod([2, 3, 4]), prod([])
    (24, 1)
    """
    return int(math.prod(dims))


def check_inputs(inputs: Any, in_features: int) -> np.ndarray:
    """Recorded layer inputs as a finite real float64 ``(N, in_features)`` array.

    Torch tensors are detached and moved to the CPU; any leading shape is
    flattened into ``N``; all-zero inputs are refused.

    Examples
    --------
    >>> check_inputs([[1.0, 2.0], [3.0, 4.0]], 2).shape
    (2, 2)
    """
    if hasattr(inputs, "detach") and hasattr(inputs, "cpu"):
        inputs = inputs.detach().cpu().double()  # (bfloat16 has no numpy dtype)
    X = as_float_array("inputs", inputs, allow_complex=False)
    if X.ndim < 1 or X.shape[-1] != in_features:
        raise QtnnError(f"inputs must have shape (N, in_features) = (N, {in_features}), "
                        f"got {X.shape}")
    X = X.reshape(-1, in_features)
    if not np.any(X):
        raise QtnnError("inputs must not be all zero")
    return X


def check_output_weight(G: Any, out_features: int) -> np.ndarray:
    """``output_weight`` as a finite symmetric positive semi-definite float64 ``(out, out)`` array.

    Examples
    --------
    >>> check_output_weight([[2.0, 0.0], [0.0, 1.0]], 2).tolist()
    [[2.0, 0.0], [0.0, 1.0]]
    """
    if hasattr(G, "detach") and hasattr(G, "cpu"):
        G = G.detach().cpu().double()  # (bfloat16 has no numpy dtype)
    G = as_float_array("output_weight", G, allow_complex=False)
    if G.shape != (out_features, out_features):
        raise QtnnError(f"output_weight must have shape (out_features, out_features) = "
                        f"({out_features}, {out_features}), got {G.shape}")
    scale = float(np.abs(G).max())
    if scale == 0 or np.abs(G - G.T).max() > 1e-8 * scale:
        raise QtnnError("output_weight must be a nonzero symmetric matrix")
    lam_min = float(np.linalg.eigvalsh(0.5 * (G + G.T)).min())
    if lam_min < -1e-8 * scale:
        raise QtnnError(f"output_weight must be positive semi-definite, got an eigenvalue "
                        f"{lam_min:.3g}")
    return 0.5 * (G + G.T)


def renamed(where: str, old: str, new: str, old_value: Any, new_value: Any, default: Any = None) -> Any:
    """Resolve an argument renamed from ``old`` to ``new`` (the old name works for one release).

    Returns ``new_value`` if it was given, else ``old_value`` with a
    :class:`DeprecationWarning` naming ``where``, else ``default``; both given
    is an error.  ``None`` means "not given".

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     renamed("MPOLinear", "bond_dim", "max_bond", 4, None)
    4
    >>> str(caught[0].message)
    'MPOLinear: bond_dim= is deprecated, use max_bond= (the old name goes away in the next release)'
    """
    if old_value is None:
        return default if new_value is None else new_value
    if new_value is not None:
        raise QtnnTypeError(f"{where}: give {new}= only (got both {new}={short_repr(new_value)} and the "
                            f"deprecated {old}={short_repr(old_value)})")
    import warnings

    warnings.warn(f"{where}: {old}= is deprecated, use {new}= (the old name goes away in the next release)",
                  DeprecationWarning, stacklevel=3)
    return old_value
