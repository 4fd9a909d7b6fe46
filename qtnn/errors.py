"""The one exception family of qtnn.

Every bad input raises a subclass of :class:`QtnnError` whose message names the
argument and the value that was received.  :class:`QtnnError` is a
:class:`ValueError`, so code that already catches ``ValueError`` keeps working;
:class:`QtnnTypeError` is also a :class:`TypeError` and
:class:`QtnnSizeError` is raised *before* allocating work that would not fit in
memory.
"""

from __future__ import annotations

__all__ = ["QtnnError", "QtnnTypeError", "QtnnSizeError"]


class QtnnError(ValueError):
    """Base class of every error qtnn raises on purpose.

    Examples
    --------
    >>> import qtnn
    >>> try:
    ...     qtnn.tn.MPO.from_dense([[1.0, 2.0]], max_bond=0)
    ... except qtnn.QtnnError as err:
    ...     print(err)
    max_bond must be a positive integer or None, got 0
    """


class QtnnTypeError(QtnnError, TypeError):
    """An argument has the wrong type (also a :class:`TypeError`)."""


class QtnnSizeError(QtnnError):
    """A request would allocate more memory than allowed; refused up front."""
