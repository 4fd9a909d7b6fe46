"""Compressed models on disk: :func:`save_compressed` and :func:`load_compressed`.

A compressed model is written as a :mod:`qtnn.checkpoint` file (weights only;
loading never executes code) holding how to rebuild the source architecture
(one of the models this package knows: ``minilm``, ``smollm2`` or a digits
hybrid classifier), the shapes of the replaced layers and the state dict.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from qtnn.errors import QtnnError

__all__ = ["save_compressed", "load_compressed", "load_model", "COMPRESSED_FORMAT"]


#: The ``kind`` stored in compressed-model checkpoints.
COMPRESSED_FORMAT = "qtnn.compressed/1"


# ------------------------------------------------------ compressed checkpoints
def _module_spec(module: Any) -> dict[str, Any]:
    from qtnn.nn import DisentangledLinear, LowRankLinear, MPOLinear

    if isinstance(module, LowRankLinear):
        return {"type": "LowRankLinear", "in_features": int(module.in_features),
                "out_features": int(module.out_features), "rank": int(module.rank),
                "core_shapes": [], "bias": module.bias is not None,
                "dtype": str(module.A.dtype).replace("torch.", "")}
    spec: dict[str, Any] = {
        "in_features": int(module.in_features), "out_features": int(module.out_features),
        "core_shapes": [list(map(int, c.shape)) for c in module.cores],
        "bias": module.bias is not None, "dtype": str(module.cores[0].dtype).replace("torch.", ""),
    }
    if isinstance(module, DisentangledLinear):
        spec.update(type="DisentangledLinear", out_layers=int(module.U.layers),
                    in_layers=int(module.V.layers), max_bond=int(module.max_bond),
                    layout=module.U.layout)
    elif isinstance(module, MPOLinear):
        spec["type"] = "MPOLinear"
    else:  # pragma: no cover - only compressed layers are recorded
        raise QtnnError(f"cannot record a {type(module).__name__} in a compressed checkpoint")
    return spec


def _module_from_spec(spec: dict[str, Any]) -> Any:
    import numpy as np
    import torch
    from torch import nn

    from qtnn.nn import DisentangledLinear, LowRankLinear, MPOLinear
    from qtnn.tn import MPO

    try:
        kind = spec["type"]
        in_f, out_f = int(spec["in_features"]), int(spec["out_features"])
        shapes = [tuple(int(v) for v in s) for s in spec["core_shapes"]]
        dtype = spec["dtype"]
        bias = bool(spec["bias"])
    except (KeyError, TypeError, ValueError) as exc:
        raise QtnnError(f"a layer record of the compressed checkpoint is malformed: {exc!r}") from None
    if dtype not in ("float16", "bfloat16", "float32", "float64"):
        raise QtnnError(f"a layer record has an unsupported dtype {dtype!r}")
    dt = getattr(torch, dtype)
    if kind == "MPOLinear":
        mpo = MPO([np.zeros(s) for s in shapes], shape=(out_f, in_f), check=False)
        return MPOLinear.from_mpo(mpo, np.zeros(out_f) if bias else None, dtype=dt)
    if kind == "LowRankLinear":
        try:
            rank = int(spec["rank"])
        except (KeyError, TypeError, ValueError) as exc:
            raise QtnnError(f"a LowRankLinear record is malformed: {exc!r}") from None
        return LowRankLinear(in_f, out_f, rank, bias=bias, dtype=dt)
    if kind == "DisentangledLinear":
        layout = spec.get("layout", "staircase")
        if layout not in ("staircase", "brickwall"):
            raise QtnnError(f"a DisentangledLinear record has an unknown layout {layout!r}")
        layer = DisentangledLinear(in_f, out_f, int(spec["out_layers"]), int(spec["in_layers"]),
                                   int(spec["max_bond"]), bias=bias, dtype=dt, layout=layout)
        layer.cores = nn.ParameterList(nn.Parameter(torch.zeros(s, dtype=dt)) for s in shapes)
        return layer
    raise QtnnError(f"a layer record has an unknown type {kind!r}")


def _build_source(source: dict[str, Any]) -> Any:
    kind = source.get("kind") if isinstance(source, dict) else None
    if kind == "minilm":
        from qtnn.apps.lm import load_minilm

        return load_minilm()
    if kind == "smollm2":
        import torch

        from qtnn.apps.lm import load_smollm2

        return load_smollm2(torch.float32)[0]
    if kind == "hybrid":
        from qtnn.apps.digits import HybridClassifier, HybridConfig

        try:
            return HybridClassifier(HybridConfig(**source["config"]))
        except TypeError as exc:
            raise QtnnError(f"the checkpoint has an unknown hybrid config: {exc}") from None
    raise QtnnError(f"unknown model source {source!r} (expected 'minilm', 'smollm2' or a hybrid config)")


def save_compressed(path: str | os.PathLike[str], model: Any, source: dict[str, Any],
                    replaced: dict[str, dict[str, Any]] | Sequence[str]) -> None:
    """Write a compressed model as a :mod:`qtnn.checkpoint` file (atomic, weights only).

    Parameters
    ----------
    path : path-like
    model : torch.nn.Module
        The compressed model.
    source : dict
        How to rebuild the uncompressed architecture: ``{"kind": "minilm"}`` or
        ``{"kind": "hybrid", "config": {...}}`` (a :class:`qtnn.apps.digits.HybridConfig`).
    replaced : sequence of str or dict
        Names of the replaced layers (their shapes are read from ``model``).

    Examples
    --------
    >>> import os, tempfile, torch
    >>> from dataclasses import asdict
    >>> from qtnn.apps.digits import HybridClassifier, HybridConfig
    >>> from qtnn.compress import compress
    >>> cfg = HybridConfig(layers=1)
    >>> small, _ = compress(HybridClassifier(cfg), "features", max_bond=2, progress=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "small.pt")
    >>> save_compressed(path, small, {"kind": "hybrid", "config": asdict(cfg)}, ["features"])
    >>> again, _ = load_compressed(path)
    >>> x = torch.rand(2, 64, dtype=torch.float64)
    >>> bool(torch.equal(again(x), small(x)))
    True
    """
    from qtnn.checkpoint import save_checkpoint

    names = list(replaced)
    specs = {n: _module_spec(model.get_submodule(n)) for n in names}
    save_checkpoint(path, {"kind": COMPRESSED_FORMAT, "source": source, "layers": specs,
                           "model": model.state_dict()})


def load_compressed(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """Rebuild a model written by :func:`save_compressed` (weights-only load; never executes code).

    Returns the model and the checkpoint dict (``source``, ``layers``).

    Examples
    --------
    >>> import os, tempfile
    >>> from qtnn.checkpoint import save_checkpoint
    >>> path = os.path.join(tempfile.mkdtemp(), "other.pt")
    >>> save_checkpoint(path, {"epoch": 1})
    >>> try:
    ...     load_compressed(path)
    ... except QtnnError as err:
    ...     print(str(err).split(" is ")[1])
    not a compressed qtnn model (qtnn.compressed/1)
    """
    from qtnn.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    if ck.get("kind") != COMPRESSED_FORMAT:
        raise QtnnError(f"{os.fspath(path)!r} is not a compressed qtnn model ({COMPRESSED_FORMAT})")
    return _rebuild(ck, path), ck


def _rebuild(ck: dict[str, Any], path: Any) -> Any:
    model = _build_source(ck["source"])
    specs = ck.get("layers")
    if not isinstance(specs, dict):
        raise QtnnError(f"{os.fspath(path)!r} has no layer records")
    for name, spec in specs.items():
        new = _module_from_spec(spec)
        parent_name, _, attr = name.rpartition(".")
        try:
            parent = model.get_submodule(parent_name)
        except AttributeError:
            raise QtnnError(f"{os.fspath(path)!r} names a layer {name!r} the model does not have") from None
        setattr(parent, attr, new)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as exc:
        raise QtnnError(f"{os.fspath(path)!r} does not fit its model: {str(exc).splitlines()[0]}") from None
    model.eval()
    return model

def load_model(spec: str) -> tuple[Any, dict[str, Any], dict[str, dict[str, Any]]]:
    """A model named on the command line: ``(model, source, earlier layer records)``.

    ``spec`` is ``"minilm"``, ``"smollm2"``, a checkpoint written by ``qtnn
    train --save`` or a compressed model written by ``qtnn compress --out``
    (weights-only loads; nothing is executed).  ``source`` says how to rebuild
    the uncompressed architecture (see :func:`save_compressed`); the records
    are those of layers replaced earlier (empty unless ``spec`` is compressed).

    Examples
    --------
    >>> try:
    ...     load_model("nowhere.pt")
    ... except QtnnError as err:
    ...     print(err)
    model must be 'minilm', 'smollm2' or a checkpoint file; 'nowhere.pt' is none of them
    """
    if spec == "minilm":
        from qtnn.apps.lm import load_minilm

        return load_minilm(), {"kind": "minilm"}, {}
    if spec == "smollm2":
        import torch

        from qtnn.apps.lm import load_smollm2

        model, _ = load_smollm2(torch.float32)
        return model, {"kind": "smollm2"}, {}
    from qtnn.checkpoint import load_checkpoint

    if not os.path.isfile(spec):
        raise QtnnError(f"model must be 'minilm', 'smollm2' or a checkpoint file; {spec!r} is none of them")
    ck = load_checkpoint(spec)
    if ck.get("kind") == COMPRESSED_FORMAT:
        return _rebuild(ck, spec), ck["source"], dict(ck["layers"])
    if isinstance(ck.get("config"), dict) and "model" in ck:
        from qtnn.apps.train import hybrid_from_checkpoint

        model = hybrid_from_checkpoint(ck, spec)
        model.eval()
        return model, {"kind": "hybrid", "config": ck["config"]}, {}
    raise QtnnError(f"{spec!r} is a qtnn checkpoint but neither a hybrid model ('qtnn train --save') "
                    "nor a compressed model ('qtnn compress --out')")
