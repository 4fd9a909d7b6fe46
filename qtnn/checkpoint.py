"""Checkpoints of qtnn models: weights only, written atomically.

A checkpoint is one file written by :func:`torch.save` through a temporary file
and ``os.replace`` (a crash mid-write leaves the previous file intact).  It holds
only tensors and plain Python values (the model's ``config``, state dicts,
RNG states, the loss history) and is read with ``torch.load(weights_only=True)``,
which never executes code.  A SHA-256 of the payload is stored beside it inside
the file; a file whose payload no longer matches is refused.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.io import atomic_open
from qtnn.validate import check_path

__all__ = ["save_checkpoint", "load_checkpoint", "FORMAT"]

FORMAT = "qtnn.checkpoint/1"


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically.

    The state is first checked to load back with ``weights_only=True``, so a
    state that :func:`load_checkpoint` would refuse is refused here, before
    anything is written (``QtnnTypeError``).  The previous file at ``path``
    stays intact until the new one is complete.

    Examples
    --------
    >>> import tempfile, os, torch
    >>> p = os.path.join(tempfile.mkdtemp(), "ck.pt")
    >>> save_checkpoint(p, {"w": torch.ones(2), "epoch": 3})
    >>> load_checkpoint(p)["epoch"]
    3
    """
    import torch

    path = check_path("path", path)
    if not isinstance(state, dict):
        raise QtnnTypeError(f"state must be a dict of tensors and plain values, got {type(state).__name__}")
    buf = io.BytesIO()
    try:
        torch.save(state, buf)
    except Exception as exc:  # pickling errors: lambdas, open files, locks ...
        raise QtnnTypeError(f"state cannot be saved in a checkpoint ({type(exc).__name__}: {exc}); it may "
                            "hold only tensors, numbers, strings, lists, tuples and dicts") from None
    payload = buf.getvalue()
    try:  # what load_checkpoint would refuse is refused now, not when resuming
        torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise QtnnTypeError(f"state holds objects that a weights-only load refuses ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200]}); it may hold only tensors, numbers, "
                            "strings, lists, tuples and dicts") from None
    outer = io.BytesIO()
    torch.save({"format": FORMAT, "sha256": _digest(payload), "payload": payload}, outer)
    with atomic_open(path, "wb") as f:
        f.write(outer.getvalue())


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (never executes code).

    Raises
    ------
    QtnnError
        if the file is missing, not a qtnn checkpoint, or was modified.

    Examples
    --------
    >>> import tempfile, os, torch
    >>> p = os.path.join(tempfile.mkdtemp(), "ck.pt")
    >>> save_checkpoint(p, {"w": torch.zeros(3), "losses": [0.5]})
    >>> load_checkpoint(p)["losses"]
    [0.5]
    >>> with open(p, "r+b") as f:          # one byte changed anywhere: refused
    ...     _ = f.seek(-30, 2); _ = f.write(b"x")
    >>> try:
    ...     load_checkpoint(p)
    ... except QtnnError as err:
    ...     print("refused")
    refused
    """
    import torch

    path = check_path("path", path)
    if not os.path.isfile(path):
        what = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
        raise QtnnError(f"checkpoint {path!r} {what}")
    try:
        outer = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise QtnnError(f"{os.fspath(path)!r} is not a readable qtnn checkpoint "
                        f"(weights-only load refused it: {type(exc).__name__})") from None
    if not isinstance(outer, dict) or outer.get("format") != FORMAT:
        raise QtnnError(f"{os.fspath(path)!r} is not a qtnn checkpoint (format {FORMAT} expected)")
    payload = outer.get("payload")
    if not isinstance(payload, bytes) or _digest(payload) != outer.get("sha256"):
        raise QtnnError(f"checkpoint {os.fspath(path)!r} was modified or is corrupt: "
                        "its SHA-256 does not match")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise QtnnError(f"checkpoint {os.fspath(path)!r} holds objects a weights-only load "
                        f"refuses ({type(exc).__name__})") from None
