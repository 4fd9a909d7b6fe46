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

from qtnn.errors import QtnnError
from qtnn.io import atomic_open

__all__ = ["save_checkpoint", "load_checkpoint", "FORMAT"]

FORMAT = "qtnn.checkpoint/1"


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically.

    Examples
    --------
    >>> import tempfile, os, torch
    >>> p = os.path.join(tempfile.mkdtemp(), "ck.pt")
    >>> save_checkpoint(p, {"w": torch.ones(2), "epoch": 3})
    >>> load_checkpoint(p)["epoch"]
    3
    """
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
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
    """
    import torch

    if not os.path.isfile(path):
        raise QtnnError(f"checkpoint {os.fspath(path)!r} does not exist")
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
