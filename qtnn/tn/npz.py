"""MPS / MPO files: ``.npz`` archives of the cores, no pickle, written atomically.

Format ``qtnn.tensortrain/1``: fields ``format`` (that string), ``kind``
(``"mps"`` or ``"mpo"``), ``num_sites`` and ``core_0 ... core_{n-1}`` (core
``i`` of an MPS has shape ``(left, phys, right)``, of an MPO
``(left, out, in, right)``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.io import atomic_open
from qtnn.tn.mpo import MPO
from qtnn.tn.mps import MPS
from qtnn.validate import check_path

__all__ = ["save_tt", "load_tt"]

_FORMAT = "qtnn.tensortrain/1"


def save_tt(tt: MPS | MPO, path: str | os.PathLike[str]) -> None:
    """Save an MPS or MPO as ``.npz`` (no pickle), atomically.

    Examples
    --------
    >>> import os, tempfile
    >>> psi = MPS.random(5, 3, seed=0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_tt(psi, os.path.join(d, "psi.npz"))
    ...     back = load_tt(os.path.join(d, "psi.npz"))
    >>> type(back).__name__, back.bond_dims == psi.bond_dims
    ('MPS', True)
    """
    if not isinstance(tt, (MPS, MPO)):
        raise QtnnTypeError(f"tt must be a qtnn.tn.MPS or MPO, got {type(tt).__name__}")
    path = check_path("path", path)
    kind = "mps" if isinstance(tt, MPS) else "mpo"
    # Any: numpy's stub would otherwise match these keywords against savez(allow_pickle: bool)
    fields: dict[str, Any] = {f"core_{i}": np.asarray(c) for i, c in enumerate(tt.cores)}
    with atomic_open(path, "wb") as fh:
        np.savez(fh, format=np.array(_FORMAT), kind=np.array(kind),
                 num_sites=np.array(len(tt.cores)), **fields)


def load_tt(path: str | os.PathLike[str], kind: str | None = None) -> MPS | MPO:
    """Load an MPS or MPO written by :func:`save_tt` (validated; never unpickles).

    Parameters
    ----------
    path : str or os.PathLike
    kind : {"mps", "mpo", None}
        Require this kind (``None``: whatever the file holds).

    Raises
    ------
    QtnnError
        Missing or unreadable file, another format, missing or extra cores,
        cores with the wrong number of legs or mismatched bonds, or the wrong
        ``kind``.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     save_tt(MPO.random((2, 2), (2, 2), 3, seed=0), os.path.join(d, "w.npz"))
    ...     w = load_tt(os.path.join(d, "w.npz"), kind="mpo")
    >>> w.shape
    (4, 4)
    """
    if kind not in (None, "mps", "mpo"):
        raise QtnnError(f"kind must be 'mps', 'mpo' or None, got {kind!r}")
    name = check_path("path", path)
    try:
        with np.load(name, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise QtnnError(f"{name!r} is not an .npz archive written by save_tt")
            files = set(data.files)
            if not {"format", "kind", "num_sites"} <= files:
                raise QtnnError(f"{name!r} is not an MPS/MPO file: expected fields format, kind, "
                                f"num_sites and core_<i>, got {sorted(files)}")
            fmt, got, n = data["format"], data["kind"], data["num_sites"]
            if fmt.shape != () or str(fmt) != _FORMAT:
                raise QtnnError(f"{name!r}: format must be {_FORMAT!r}, got {fmt!r}")
            if got.shape != () or str(got) not in ("mps", "mpo"):
                raise QtnnError(f"{name!r}: kind must be 'mps' or 'mpo', got {got!r}")
            if n.shape != () or n.dtype.kind not in "iu" or int(n) < 1:
                raise QtnnError(f"{name!r}: num_sites must be a positive integer, got {n!r}")
            expect = {"format", "kind", "num_sites"} | {f"core_{i}" for i in range(int(n))}
            if files != expect:
                raise QtnnError(f"{name!r}: expected fields {sorted(expect)}, got {sorted(files)}")
            cores: list[Any] = [data[f"core_{i}"] for i in range(int(n))]
    except QtnnError:
        raise
    except FileNotFoundError:
        raise QtnnError(f"path does not exist: {name!r}") from None
    except Exception as exc:  # bad zip, pickled object arrays, truncated file
        raise QtnnError(f"cannot read an MPS/MPO from {name!r}: {exc}") from exc
    if kind is not None and str(got) != kind:
        raise QtnnError(f"{name!r} holds an {str(got).upper()}, but an {kind.upper()} is needed")
    cls = MPS if str(got) == "mps" else MPO
    return cls(cores)
