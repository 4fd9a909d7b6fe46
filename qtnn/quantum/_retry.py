"""Retries, back-off and timeouts for jobs on Qiskit backends.

A job on a Qiskit backend -- Qiskit Aer, Aer with an IBM device model
(``fake:`` devices) or a real IBM backend (``ibm:``) -- can fail for reasons
that go away: a dropped connection, a busy service, a queue that does not
answer.  :func:`run_job` submits a job, waits for its result at most
``timeout`` seconds, checks it, and on a failure tries again after a back-off
(``backoff``, then twice that, ... up to :data:`MAX_BACKOFF` seconds), at most
``tries`` times in all.  After the last try it raises
:class:`~qtnn.errors.QtnnBackendError` (or :class:`~qtnn.errors.QtnnTimeoutError`
when every try timed out) naming the backend, the number of tries and the last
failure, which is chained as ``__cause__``.

What is tried again: any exception raised while submitting or waiting (Qiskit
``JobError``, runtime errors, connection errors ...), a result that is
malformed (:class:`MalformedResult`: a failed result, counts that do not add
up to the shots, bit strings of the wrong width, the wrong number of
results), and a try that timed out (its job is cancelled first, where the job
allows it).  What is not: errors that no retry can fix -- qtnn's own
:class:`~qtnn.errors.QtnnError`, ``TypeError``, ``NotImplementedError``,
``ImportError`` and ``MemoryError`` are raised at once.

The devices take the settings as options of :func:`qtnn.quantum.device`
(``batch_jobs=True``, the default, for ``fake:`` / ``ibm:`` devices):

``job_tries`` (int, default 3)
    Tries in all (1: no retry).
``job_backoff`` (float, default 1.0)
    Seconds before the second try; doubled before each further one, capped
    at :data:`MAX_BACKOFF`.  0 retries at once.
``job_timeout`` (float or None)
    Seconds to wait for one try's result.  Default
    :data:`DEFAULT_TIMEOUT_LOCAL` (10 minutes) for local simulators (Qiskit Aer,
    ``fake:`` devices) and :data:`DEFAULT_TIMEOUT_REMOTE` (4 hours, queue time
    included) for IBM hardware; ``None`` waits for ever.
``job_retry_timeouts`` (bool, default False)
    Whether a try that timed out is tried again.  By default it is not: a job
    too large for the limit would time out again, multiplying the wait, so
    the first timeout raises :class:`~qtnn.errors.QtnnTimeoutError`.

A timed-out try is abandoned: its job is cancelled where the backend allows
it, and the thread that waited for it is left to finish on its own (a
daemon thread, so it never keeps the interpreter alive).  The jobs of local
``fake:`` devices run in a worker process (:mod:`qtnn.quantum._aerworker`:
Aer keeps the GIL, so a thread could not time them out) that the cancel
kills; their transpilation counts against the first try's timeout.

Examples
--------
>>> calls = []
>>> class Job:
...     def result(self):
...         return {"00": 10}
>>> def submit():
...     calls.append(1)
...     if len(calls) < 3:
...         raise ConnectionError("busy")
...     return Job()
>>> run_job(submit, RetryPolicy(tries=3, backoff=0.0), backend="demo")
{'00': 10}
>>> len(calls)
3
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from qtnn.errors import QtnnBackendError, QtnnError, QtnnTimeoutError
from qtnn.validate import check_bool, check_int, check_real

__all__ = ["RetryPolicy", "MalformedResult", "run_job", "call_with_retry", "check_counts",
           "OPTION_NAMES", "DEFAULT_TRIES", "DEFAULT_BACKOFF", "MAX_BACKOFF",
           "DEFAULT_TIMEOUT_LOCAL", "DEFAULT_TIMEOUT_REMOTE"]

log = logging.getLogger("qtnn.quantum")

T = TypeVar("T")

#: Tries in all, by default (the first one and two retries).
DEFAULT_TRIES = 3
#: Seconds before the second try, by default; doubled before each further one.
DEFAULT_BACKOFF = 1.0
#: Longest wait between two tries, in seconds.
MAX_BACKOFF = 60.0
#: Default timeout of one try on a local simulator (Qiskit Aer, ``fake:`` devices), in seconds.
DEFAULT_TIMEOUT_LOCAL = 600.0
#: Default timeout of one try on IBM hardware (queue time included), in seconds.
DEFAULT_TIMEOUT_REMOTE = 4 * 3600.0
#: The device options that configure the retries.
OPTION_NAMES = ("job_tries", "job_backoff", "job_timeout", "job_retry_timeouts")

#: Failures that no retry can fix: raised at once.
_PERMANENT: tuple[type[BaseException], ...] = (QtnnError, TypeError, NotImplementedError, ImportError,
                                                MemoryError)

_UNSET: Any = object()


class MalformedResult(Exception):
    """A job finished but its result cannot be used (raised by result checks; tried again)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to try a job (see the module docstring).

    Parameters
    ----------
    tries : int
        Tries in all, ``>= 1``.
    backoff : float
        Seconds before the second try (``>= 0``), doubled before each further one.
    timeout : float or None
        Seconds to wait for the result of one try (``> 0``); ``None`` waits for ever.
    max_backoff : float
        Cap on the wait between two tries.

    Examples
    --------
    >>> p = RetryPolicy(tries=4, backoff=0.5)
    >>> [p.delay(k) for k in (1, 2, 3)]
    [0.5, 1.0, 2.0]
    >>> RetryPolicy(tries=0)
    Traceback (most recent call last):
    ...
    qtnn.errors.QtnnError: job_tries must be an integer >= 1, got 0
    """

    tries: int = DEFAULT_TRIES
    backoff: float = DEFAULT_BACKOFF
    timeout: float | None = None
    max_backoff: float = MAX_BACKOFF
    retry_timeouts: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "tries", check_int("job_tries", self.tries, minimum=1, maximum=1000))
        object.__setattr__(self, "backoff", check_real("job_backoff", self.backoff, minimum=0.0,
                                                       maximum=24 * 3600.0))
        if self.timeout is not None:
            object.__setattr__(self, "timeout", check_real("job_timeout", self.timeout, minimum=0.0,
                                                           strict_min=True, allow_inf=True))
            if math.isinf(self.timeout):
                object.__setattr__(self, "timeout", None)
        object.__setattr__(self, "max_backoff", check_real("max_backoff", self.max_backoff, minimum=0.0))
        check_bool("job_retry_timeouts", self.retry_timeouts)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        return float(min(self.max_backoff, self.backoff * 2.0 ** min(attempt - 1, 60)))

    @classmethod
    def pop_from(cls, options: dict[str, Any], *, default_timeout: float | None) -> RetryPolicy:
        """Remove ``job_tries``, ``job_backoff`` and ``job_timeout`` from ``options``; the policy.

        A ``job_timeout`` that is not given takes ``default_timeout``; an explicit
        ``None`` means no timeout.

        Examples
        --------
        >>> opts = {"job_tries": 5, "optimization_level": 1}
        >>> RetryPolicy.pop_from(opts, default_timeout=60.0), opts
        (RetryPolicy(tries=5, backoff=1.0, timeout=60.0, max_backoff=60.0, retry_timeouts=False),
         {'optimization_level': 1})
        """
        tries = options.pop("job_tries", DEFAULT_TRIES)
        backoff = options.pop("job_backoff", DEFAULT_BACKOFF)
        timeout = options.pop("job_timeout", _UNSET)
        again = options.pop("job_retry_timeouts", False)
        return cls(tries=tries, backoff=backoff,
                   timeout=default_timeout if timeout is _UNSET else timeout, retry_timeouts=again)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else '(no message)'}"


def _cancel(job: Any) -> None:
    cancel = getattr(job, "cancel", None)
    if callable(cancel):
        try:
            cancel()
        except Exception as exc:  # the job may be done, or the backend may not allow it
            log.debug("could not cancel a timed-out job: %s", _describe(exc))


def _attempt(work: Callable[[dict[str, Any]], Any], timeout: float | None, name: str) -> dict[str, Any]:
    """Run ``work(box)`` in a daemon thread; wait at most ``timeout`` s.  Returns ``box``.

    ``box`` gets ``"value"`` or ``"error"`` (or neither, on a timeout); ``work`` may
    store the submitted job as ``box["job"]`` so that it can be cancelled.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work(box)
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        box["timed_out"] = True
    return box


def _retry(work: Callable[[dict[str, Any]], T], policy: RetryPolicy, backend: str, what: str,
           sleep: Callable[[float], None], on_failure: Callable[[BaseException], None] | None,
           spent: float = 0.0) -> T:
    if not isinstance(policy, RetryPolicy):
        raise QtnnError(f"policy must be a RetryPolicy, got {type(policy).__name__}")
    last: BaseException | None = None
    all_timeouts = True
    for attempt in range(1, policy.tries + 1):
        timeout = policy.timeout
        if timeout is not None and attempt == 1 and spent > 0:
            timeout = max(timeout - spent, 0.0)     # the preparation (transpilation) counts
        box: dict[str, Any] = (_attempt(work, timeout, f"qtnn-job-{backend}")
                               if timeout is None or timeout > 0 else {"timed_out": True})
        if box.get("timed_out"):
            _cancel(box.get("job"))
            prep = (f"; {spent:.3g} s of the limit went to preparing the circuits"
                    if attempt == 1 and spent > 0 else "")
            last = TimeoutError(f"no result within {policy.timeout:g} s (try {attempt}; job cancelled{prep})")
            if not policy.retry_timeouts:
                # a job too large for the limit would only time out again: give up now
                if on_failure is not None:
                    on_failure(last)
                raise QtnnTimeoutError(f"{what} on backend {backend!r} timed out after {policy.timeout:g} s "
                                       f"(try {attempt} of {policy.tries}; not retried: pass "
                                       f"job_retry_timeouts=True to retry timeouts{prep})") from last
        elif "error" in box:
            exc = box["error"]
            if not isinstance(exc, Exception) or (isinstance(exc, _PERMANENT)
                                                  and not isinstance(exc, QtnnBackendError)):
                raise exc
            last = exc
            all_timeouts = False
        else:
            return box["value"]
        if on_failure is not None:
            on_failure(last)
        if attempt < policy.tries:
            wait = policy.delay(attempt)
            log.warning("%s on backend %r failed (try %d of %d): %s; trying again in %.3g s",
                        what, backend, attempt, policy.tries, _describe(last), wait)
            if wait > 0:
                sleep(wait)
    cause: BaseException = last if last is not None else RuntimeError("no try ran")
    cls = QtnnTimeoutError if all_timeouts else QtnnBackendError
    tries = f"{policy.tries} {'try' if policy.tries == 1 else 'tries'}"
    raise cls(f"{what} on backend {backend!r} failed after {tries}; last failure: "
              f"{_describe(cause)}") from cause


def run_job(submit: Callable[[], Any], policy: RetryPolicy, *, backend: str, what: str = "job",
            validate: Callable[[Any], T] | None = None, sleep: Callable[[float], None] = time.sleep,
            on_failure: Callable[[BaseException], None] | None = None, spent: float = 0.0) -> Any:
    """Submit a job and wait for its checked result, with retries (see the module docstring).

    Parameters
    ----------
    submit : callable
        ``submit()`` submits the job and returns it; ``job.result()`` waits for it.
    policy : RetryPolicy
    backend : str
        Name of the backend, for messages.
    what : str
        What the job is, for messages (``"sampler job"`` ...).
    validate : callable, optional
        ``validate(result)`` returns what :func:`run_job` returns (default: the
        result itself); it raises :class:`MalformedResult` for a result that
        cannot be used, which counts as a failed try.
    sleep : callable
        Waits between tries (tests pass a recorder).
    on_failure : callable, optional
        Called with each failure (for counting).
    spent : float
        Seconds the first try already used before ``submit`` (transpiling its
        circuits); its wait is shortened by as much, so that the timeout bounds
        the whole try.

    Returns
    -------
    ``validate(result)`` or the result.

    Raises
    ------
    QtnnBackendError
        After ``policy.tries`` failed tries (:class:`QtnnTimeoutError` if they all
        timed out).
    """
    def work(box: dict[str, Any]) -> Any:
        job = submit()
        box["job"] = job
        result = job.result()
        return validate(result) if validate is not None else result

    return _retry(work, policy, backend, what, sleep, on_failure, spent=float(spent))


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy, *, backend: str, what: str = "job",
                    sleep: Callable[[float], None] = time.sleep,
                    on_failure: Callable[[BaseException], None] | None = None) -> T:
    """``fn()`` (which submits and waits itself) with the retries and timeout of :func:`run_job`.

    Examples
    --------
    >>> call_with_retry(lambda: 42, RetryPolicy(), backend="demo")
    42
    """
    return _retry(lambda box: fn(), policy, backend, what, sleep, on_failure)


def check_counts(counts: Any, *, shots: int | None, num_bits: int | None, where: str) -> dict[str, int]:
    """``counts`` as a ``{bitstring: count}`` dict, or :class:`MalformedResult`.

    Checks that the keys are bit strings (``"0"``/``"1"``, spaces between
    registers allowed) of ``num_bits`` bits, the values non-negative integers,
    and that they add up to ``shots`` (when given).

    Examples
    --------
    >>> check_counts({"01": 3, "10": 1}, shots=4, num_bits=2, where="circuit 0")
    {'01': 3, '10': 1}
    >>> check_counts({"01": 3}, shots=4, num_bits=2, where="circuit 0")
    Traceback (most recent call last):
    ...
    qtnn.quantum._retry.MalformedResult: circuit 0: counts add up to 3, not to the 4 shots
    """
    if not isinstance(counts, Mapping):
        raise MalformedResult(f"{where}: counts must be a dict of bit strings, got {type(counts).__name__}")
    out: dict[str, int] = {}
    total = 0
    for key, value in counts.items():
        bits = key.replace(" ", "") if isinstance(key, str) else None
        if bits is None or not bits or set(bits) - {"0", "1"} or (
                num_bits is not None and len(bits) != num_bits):
            raise MalformedResult(f"{where}: {key!r} is not a bit string of {num_bits} bits")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            try:
                ok = float(value) == int(value) and int(value) >= 0
            except (TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                raise MalformedResult(f"{where}: the count of {key!r} is {value!r}, not an integer >= 0")
        out[key] = int(value)
        total += int(value)
    if not out:
        raise MalformedResult(f"{where}: no counts")
    if shots is not None and total != shots:
        raise MalformedResult(f"{where}: counts add up to {total}, not to the {shots} shots")
    return out
