"""The one exception family of qtnn.

Every bad input raises a subclass of :class:`QtnnError` whose message names the
argument and the value that was received.  :class:`QtnnError` is a
:class:`ValueError`, so code that already catches ``ValueError`` keeps working;
:class:`QtnnTypeError` is also a :class:`TypeError` and
:class:`QtnnSizeError` is raised *before* allocating work that would not fit in
memory.  :class:`QtnnBackendError` (and its :class:`QtnnTimeoutError`) is what a
Qiskit job that kept failing raises after its last try.
"""

from __future__ import annotations

__all__ = ["QtnnError", "QtnnTypeError", "QtnnSizeError", "QtnnBackendError", "QtnnTimeoutError"]


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
    """An argument has the wrong type (also a :class:`TypeError`).

    Examples
    --------
    >>> from qtnn.tn import save_tt
    >>> try:
    ...     save_tt("not an MPS", "psi.npz")
    ... except TypeError as err:            # a TypeError and a QtnnError
    ...     print(type(err).__name__, "|", err)
    QtnnTypeError | tt must be a qtnn.tn.MPS or MPO, got str
    """


class QtnnSizeError(QtnnError):
    """A request would allocate more memory than allowed; refused up front.

    The limit is ``QTNN_MAX_BYTES`` (environment variable, default 4 GiB); the
    message says how much the work would need and what to use instead.

    Examples
    --------
    >>> from qtnn.staircase import Staircase
    >>> try:
    ...     Staircase.random(40, 1).state()
    ... except QtnnSizeError as err:
    ...     print(err)
    a dense state on 40 qubits would need 16.0 TiB, more than the limit of 4.0 GiB (set
    QTNN_MAX_BYTES to change it); use state_mps()
    """


class QtnnBackendError(QtnnError, RuntimeError):
    """A job on a Qiskit backend failed on every try (also a :class:`RuntimeError`).

    Raised by the retry logic of the Qiskit devices
    (:mod:`qtnn.quantum._retry`) after the last try; the message names the
    backend, the number of tries and the last failure, which is also chained
    as ``__cause__``.

    Examples
    --------
    >>> from qtnn.quantum._retry import RetryPolicy, run_job
    >>> def submit():
    ...     raise ConnectionError("service unavailable")
    >>> try:
    ...     run_job(submit, RetryPolicy(tries=2, backoff=0.0), backend="fake_backend")
    ... except QtnnBackendError as err:
    ...     print(err)
    job on backend 'fake_backend' failed after 2 tries; last failure: ConnectionError: service unavailable
    """


class QtnnTimeoutError(QtnnBackendError, TimeoutError):
    """A job on a Qiskit backend gave no result within its timeout (at the first timeout, or on
    every try with ``job_retry_timeouts=True``).

    Also a :class:`TimeoutError`.

    Examples
    --------
    >>> import time
    >>> from qtnn.quantum._retry import RetryPolicy, run_job
    >>> class HungJob:
    ...     def result(self):
    ...         time.sleep(1)
    >>> try:
    ...     run_job(HungJob, RetryPolicy(tries=1, timeout=0.05), backend="demo")
    ... except QtnnTimeoutError as err:
    ...     print(err)
    job on backend 'demo' timed out after 0.05 s (try 1 of 1; not retried: pass job_retry_timeouts=True to
    retry timeouts)
    """
