"""Atomic file writing: nothing is lost if a process dies mid-write."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "write_json"]

_MODES = ("w", "wb", "wt")


def _umask() -> int:
    """The process umask: from ``/proc`` on Linux (thread-safe), else set and restored at once."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success ``os.replace`` it into place.

    If the block raises, the temporary file is removed and ``path`` is left as
    it was; if the process dies mid-write, ``path`` is left as it was and a
    hidden ``.<name>.*.tmp`` file may remain next to it.  ``mode`` is ``"w"``
    (text) or ``"wb"`` (bytes).  A path whose folder cannot be created or
    written, or that is a directory, is a :class:`~qtnn.QtnnError`.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_open(os.path.join(d, "a.txt")) as f:
    ...     _ = f.write("hello")
    >>> open(os.path.join(d, "a.txt")).read()
    'hello'
    """
    from qtnn.errors import QtnnError
    from qtnn.validate import check_path

    target = Path(check_path("path", path))
    if mode not in _MODES:
        raise QtnnError(f"mode must be one of {', '.join(map(repr, _MODES))} (atomic_open only writes), "
                        f"got {mode!r}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise QtnnError(f"path {os.fspath(path)!r} cannot be written: its folder cannot be created or "
                        f"written to ({exc.strerror or exc})") from None
    if target.is_dir():
        os.unlink(tmp)
        raise QtnnError(f"path {os.fspath(path)!r} is a directory, not a file")
    try:
        # mkstemp makes the file 0600; give it the permissions a plain open() would
        # (or those of the file it replaces)
        with contextlib.suppress(OSError):
            os.chmod(fd, stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON, atomically.

    Data that JSON cannot hold (sets, arbitrary objects, circular references)
    is a :class:`~qtnn.QtnnTypeError`, and ``path`` is then left as it was.

    Examples
    --------
    >>> import tempfile, os, json
    >>> p = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> write_json(p, {"a": [1, 2.5]})
    >>> json.load(open(p))
    {'a': [1, 2.5]}
    """
    from qtnn.errors import QtnnError, QtnnTypeError

    try:
        with atomic_open(path, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
    except QtnnError:
        raise
    except (TypeError, ValueError) as exc:  # not JSON-serialisable, circular
        raise QtnnTypeError(f"data cannot be written as JSON to {os.fspath(path)!r}: {exc}") from None
