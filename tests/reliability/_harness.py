"""Shared machinery of the reliability suite: the bad-input case counter and checker.

Every generated bad-input case goes through :func:`expect_error`, which counts it
(by class of bad input), runs it under a time limit (a hang is a failure) and
checks that it ends in the expected qtnn exception whose message names the
argument.  ``conftest.py`` prints the totals at the end of the session.
"""

from __future__ import annotations

import collections
import contextlib
import math
import re
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st

from qtnn import QtnnError

#: Cases tried, by class of bad input.
CASES: collections.Counter[str] = collections.Counter()

#: Unexpected outcomes (should stay empty: every failure also fails its test).
UNEXPECTED: list[str] = []

#: Seconds one case may take before it counts as a hang.
CASE_TIMEOUT = 20.0

#: The classes of bad input, as the summary names them.
KINDS = {
    "shape": "wrong shapes",
    "dtype": "wrong dtypes and types",
    "nonfinite": "NaN / inf",
    "empty": "empty arrays and sequences",
    "nonortho": "non-orthogonal / non-unitary gate matrices",
    "size": "negative, zero or absurd sizes (bonds, layers, qubits, dims)",
    "pow2": "sizes that are not powers of two",
    "option": "unknown option strings",
    "path": "bad paths and corrupt files",
    "cli": "bad command lines (every subcommand)",
}


class CaseTimeout(Exception):
    """A case ran past :data:`CASE_TIMEOUT` (a hang)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in the main thread after ``seconds`` (no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"the case ran for more than {seconds:g} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def expect_error(kind: str, fn: Callable[[], Any], *, names: tuple[str, ...] | str = (),
                 allowed: tuple[type[BaseException], ...] = (QtnnError,),
                 timeout: float = CASE_TIMEOUT, what: str = "") -> BaseException:
    """Run ``fn()``; it must raise one of ``allowed`` whose message names one of ``names``.

    Counts the case under ``kind``.  Anything else -- another exception type, no
    exception at all (a silent answer), or a run longer than ``timeout`` (a hang)
    -- fails the test with a message saying what happened.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    CASES[kind] += 1
    names = (names,) if isinstance(names, str) else names
    label = what or getattr(fn, "__name__", "case")
    try:
        with time_limit(timeout):
            fn()
    except allowed as exc:
        msg = str(exc)
        if names and not any(n in msg for n in names):
            UNEXPECTED.append(f"{label}: message does not name {names}: {msg!r}")
            pytest.fail(f"{label}: {type(exc).__name__} message does not name any of {names}: {msg!r}")
        if not msg.strip():
            UNEXPECTED.append(f"{label}: empty message")
            pytest.fail(f"{label}: {type(exc).__name__} with an empty message")
        return exc
    except CaseTimeout as exc:
        UNEXPECTED.append(f"{label}: hang")
        pytest.fail(f"{label}: hang: {exc}")
    except Exception as exc:
        UNEXPECTED.append(f"{label}: {type(exc).__name__}")
        pytest.fail(f"{label}: unexpected {type(exc).__name__} (wanted {[a.__name__ for a in allowed]}): "
                    f"{str(exc)[:300]}")
    UNEXPECTED.append(f"{label}: no error")
    pytest.fail(f"{label}: no error was raised (the bad input was accepted silently)")
    raise AssertionError("unreachable")  # pragma: no cover


# ----------------------------------------------------------------- strategies
NAN_INF = st.sampled_from([math.nan, math.inf, -math.inf])

#: Values that are not integers (floats, strings, bools, containers, None, bytes, complex).
NOT_INT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.booleans(),
    st.lists(st.integers(-3, 3), max_size=2),
    st.none(),
    st.just(b"3"),
    st.complex_numbers(max_magnitude=4, allow_nan=False, allow_infinity=False),
)

#: Not integers, ``None`` excluded (for arguments where ``None`` means a default).
NOT_INT_NOR_NONE = NOT_INT.filter(lambda v: v is not None)

#: Values that are not real numbers (strings, containers, complex with imaginary part, None, bools).
NOT_REAL = st.one_of(
    st.text(max_size=4),
    st.lists(st.floats(-1, 1), max_size=2),
    st.none(),
    st.booleans(),
    st.complex_numbers(max_magnitude=4, allow_nan=False, allow_infinity=False).filter(lambda z: z.imag != 0),
)

#: Sizes no machine can hold, whatever they count (sites, qubits, entries).
HUGE = st.one_of(st.sampled_from([2**31, 2**40, 2**62, 10**18]), st.integers(min_value=10**9, max_value=10**18))

#: Absurdly large sizes (bonds, layers, qubits, dims).
ABSURD = st.one_of(st.sampled_from([10**6, 10**9, 2**31, 2**40, 2**62, 10**18]),
                   st.integers(min_value=10**9, max_value=10**18))


def non_positive(lo: int = -10**12) -> st.SearchStrategy[int]:
    """Integers ``<= 0``."""
    return st.integers(min_value=lo, max_value=0)


def negative(lo: int = -10**12) -> st.SearchStrategy[int]:
    """Integers ``< 0``."""
    return st.integers(min_value=lo, max_value=-1)


def unknown(valid: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """Option values outside ``valid``: other strings (case and whitespace variants included), non-strings."""
    variants = [v.upper() for v in valid if v.upper() != v] + [f" {v}" for v in valid] + [f"{v}x" for v in valid]
    return st.one_of(st.text(max_size=12).filter(lambda s: s not in valid),
                     st.sampled_from(variants or ["?"]).filter(lambda s: s not in valid),
                     st.integers(-2, 2), st.just(b"x"))


def with_nonfinite(shape: tuple[int, ...], seed_strategy: st.SearchStrategy[int] | None = None
                   ) -> st.SearchStrategy[np.ndarray]:
    """Finite Gaussian arrays of ``shape`` with one entry replaced by NaN or +-inf."""
    size = int(np.prod(shape))

    def build(args: tuple[int, int, float]) -> np.ndarray:
        seed, pos, bad = args
        a = np.random.default_rng(seed).normal(size=shape)
        a.reshape(-1)[pos % size] = bad
        return a

    return st.tuples(seed_strategy or st.integers(0, 2**16), st.integers(0, size - 1), NAN_INF).map(build)


#: Things that are not numeric arrays.
NOT_ARRAY = st.sampled_from([
    "abcd", b"\x00\x01", {"a": 1}, object(), [[1.0, 2.0], [3.0]], np.array(["a", "b"]),
    np.array([None, 1.0], dtype=object), [1.0, "2"], {1.0, 2.0},
])


def wrong_shape(good: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Finite arrays whose shape differs from ``good`` (other ranks or other sizes, none empty)."""
    shapes = st.lists(st.integers(1, 5), min_size=0, max_size=4).map(tuple).filter(lambda s: s != good)
    return shapes.map(lambda s: np.ones(s) if s else np.float64(1.0))


@dataclass
class Case:
    """One generated bad-input check: ``call(value)`` must fail naming ``names``."""

    label: str
    kind: str
    values: st.SearchStrategy[Any]
    call: Callable[[Any], Any]
    names: tuple[str, ...] | str | Callable[[Any], tuple[str, ...]] = ()
    allowed: tuple[type[BaseException], ...] = field(default=(QtnnError,))

    def run(self, value: Any) -> BaseException:
        names = self.names(value) if callable(self.names) else self.names
        return expect_error(self.kind, lambda: self.call(value), names=names, allowed=self.allowed,
                            what=f"{self.label} with {short_repr(value)}")


def path_names(name: str) -> Callable[[Any], tuple[str, ...]]:
    """The message of a bad-path error names the argument or the path it was given."""
    return lambda value: (name, repr(value) if not isinstance(value, str) else value)


def short_repr(v: Any) -> str:
    text = repr(v)
    text = re.sub(r"\s+", " ", text)
    return text if len(text) < 120 else text[:117] + "..."
