"""Causal language models around a compressed layer: perplexity, block caches, layer inputs, healing.

* :func:`perplexity`: ``exp`` of the mean next-token cross-entropy.
* :class:`BlockCache`: the hidden states entering decoder block ``b``, kept
  once, so that a model that differs only in blocks ``>= b`` is evaluated by
  running those blocks, the final norm and the head (the same numbers as a
  full run).
* :func:`linear_inputs`: the calibration inputs of any layer (forward hooks).
* :func:`heal`: fine-tune only the replaced layers of a compressed model
  (Adam) on the model's own next-token loss or on the outputs of the original
  model's layers (layer-wise distillation, as in "healing" after compression:
  Aizpurua et al., arXiv:2410.17397; Tomut et al., "CompactifAI",
  arXiv:2401.14109).

Nothing here loads a model or a corpus (see :mod:`qtnn.apps.lm` for
SmolLM2 and the built-in text); heavy packages (``torch``) are imported when
first used.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.validate import check_alloc, check_bool, check_choice, check_int, check_real

__all__ = ["perplexity", "BlockCache", "linear_inputs", "heal", "HealReport"]


_OBJECTIVES = ("model", "outputs", "distill")


class _Stop(Exception):
    """Raised by a hook to end a forward pass once what it needs has been recorded."""


# --------------------------------------------------------------- evaluation
def _check_windows(name: str, windows: Any) -> Any:
    import torch

    if not isinstance(windows, torch.Tensor):
        raise QtnnTypeError(f"{name} must be a torch.LongTensor of token ids (windows, length), "
                            f"got {type(windows).__name__}")
    if windows.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise QtnnTypeError(f"{name} must hold integer token ids, got dtype {windows.dtype}")
    if windows.ndim != 2 or windows.shape[0] < 1 or windows.shape[1] < 2:
        raise QtnnError(f"{name} must have shape (windows >= 1, length >= 2), got {tuple(windows.shape)}")
    if int(windows.min()) < 0:
        raise QtnnError(f"{name} must hold non-negative token ids, got {int(windows.min())}")
    return windows.long()


def _check_model(model: Any) -> Any:
    from torch import nn

    if not isinstance(model, nn.Module):
        raise QtnnTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _logits(out: Any) -> Any:
    """The logits of a model's output (``.logits``, the first of a tuple, or the tensor)."""
    logits = getattr(out, "logits", None)
    if logits is None:
        logits = out[0] if isinstance(out, (tuple, list)) else out
    return logits


def _device(model: Any) -> Any:
    import torch

    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _nll_sum(logits: Any, ids: Any) -> tuple[float, int]:
    """Sum of next-token cross-entropies (float64) and their number."""
    import torch

    pred = logits[:, :-1].reshape(-1, logits.shape[-1])
    target = ids[:, 1:].reshape(-1).to(pred.device)
    loss = torch.nn.functional.cross_entropy(pred.float() if pred.dtype in (torch.float16, torch.bfloat16)
                                             else pred, target, reduction="none")
    return float(loss.double().sum()), int(target.numel())


def _batches(n: int, batch_size: int) -> list[slice]:
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def perplexity(model: Any, windows: Any, *, batch_size: int = 8, progress: bool = True) -> float:
    """Perplexity of a causal language model on token windows.

    ``exp`` of the mean next-token cross-entropy over every predicted token of
    every window (``length - 1`` per window; the sums are accumulated in
    float64).  Each window is one sequence without padding; the model is run
    under ``torch.inference_mode`` with ``use_cache=False`` where it accepts it.

    Parameters
    ----------
    model : torch.nn.Module
        Called as ``model(input_ids)``; its output has ``.logits`` (Hugging
        Face), or is a tuple whose first item, or a tensor, of shape
        ``(batch, length, vocab)``.
    windows : torch.LongTensor
        ``(windows, length)`` token ids (:func:`corpus_windows`).
    batch_size : int
        Windows per forward pass.
    progress : bool
        Show a tqdm progress bar.

    Examples
    --------
    >>> import torch
    >>> class Uniform(torch.nn.Module):       # every token equally likely: perplexity = vocabulary
    ...     def forward(self, ids):
    ...         return torch.zeros(*ids.shape, 50, dtype=torch.float64)
    >>> round(perplexity(Uniform(), torch.randint(0, 50, (3, 16)), progress=False), 6)
    50.0
    """
    import torch
    from tqdm.auto import tqdm

    _check_model(model)
    windows = _check_windows("windows", windows)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    progress = check_bool("progress", progress)
    total, count = 0.0, 0
    dev = _device(model)
    with torch.inference_mode():
        for sl in tqdm(_batches(len(windows), batch_size), desc="perplexity", unit="batch",
                       disable=not progress):
            ids = windows[sl].to(dev)
            out = _call(model, ids)
            s, c = _nll_sum(_logits(out), ids)
            total += s
            count += c
    return math.exp(total / count)


def _call(model: Any, ids: Any) -> Any:
    """``model(ids)``, with ``use_cache=False`` for Hugging Face models."""
    if hasattr(model, "config") and hasattr(model, "generate"):
        return model(input_ids=ids, use_cache=False)
    return model(ids)


# -------------------------------------------------------------- block cache
def _decoder(model: Any) -> tuple[Any, Any, Any, Any]:
    """``(base, layers, norm, lm_head)`` of a Hugging Face Llama-style causal LM."""
    from torch import nn

    base = getattr(model, "model", None)
    layers = getattr(base, "layers", None)
    norm = getattr(base, "norm", None)
    head = getattr(model, "lm_head", None)
    if not (isinstance(layers, nn.ModuleList) and isinstance(norm, nn.Module)
            and isinstance(head, nn.Module)):
        raise QtnnError(f"model must be a Llama-style causal language model with model.model.layers, "
                        f"model.model.norm and model.lm_head (e.g. transformers' LlamaForCausalLM), "
                        f"got a {type(model).__name__}")
    return base, layers, norm, head


def _run_from(model: Any, hidden: Any, block: int) -> Any:
    """Logits of ``model`` from the hidden states entering decoder block ``block``.

    Runs ``model.model`` with ``inputs_embeds=hidden`` and its ``layers``
    temporarily cut to ``layers[block:]``: the rotary position embeddings
    and the causal mask are made by the model's own ``forward`` exactly as in
    a full run (positions ``0..length-1``, no padding).
    """
    base, layers, _, head = _decoder(model)
    kept = type(layers)(list(layers)[block:])
    base._modules["layers"] = kept
    try:
        out = base(inputs_embeds=hidden, use_cache=False)
    finally:
        base._modules["layers"] = layers
    return head(out.last_hidden_state)


def _capture_block_input(model: Any, block: int, ids: Any, *, stop: bool) -> tuple[Any, Any]:
    """Hidden states entering block ``block`` on ``ids`` (and the logits when ``stop`` is false)."""
    _, layers, norm, _ = _decoder(model)
    where = layers[block] if block < len(layers) else norm
    got: list[Any] = []

    def hook(module: Any, args: Any, kwargs: Any) -> None:
        h = args[0] if args else kwargs["hidden_states"]
        got.append(h.detach().clone())
        if stop:
            raise _Stop

    handle = where.register_forward_pre_hook(hook, with_kwargs=True)
    logits = None
    try:
        logits = _logits(model(input_ids=ids, use_cache=False))
    except _Stop:
        pass
    finally:
        handle.remove()
    return got[0], logits


class BlockCache:
    """The hidden states entering one decoder block, kept to evaluate variants of the later blocks.

    Compressing or healing layers of block ``b`` and later leaves the hidden
    states entering block ``b`` unchanged, so they are computed once (the
    model runs on every window up to block ``b`` and stops) and every variant
    is evaluated by running only blocks ``b..end``, the final norm and the
    head: for SmolLM2 at ``block=10`` that is 20 of 30 blocks.  The rotary
    position embeddings and the causal mask are made by the model's own
    ``forward`` (``model.model`` is called with ``inputs_embeds=`` and its
    ``layers`` temporarily cut to ``layers[b:]``), so the numbers are those of
    a full run (the construction checks this on the first batch when
    ``verify``).  For Hugging Face Llama-style models (``model.model.layers``,
    ``model.model.norm``, ``model.lm_head``; windows without padding).

    Parameters
    ----------
    model : transformers.LlamaForCausalLM (or alike)
        The model whose blocks ``< block`` every variant shares.
    windows : torch.LongTensor
        ``(windows, length)`` token ids.
    block : int
        ``0 .. num_layers`` (``num_layers``: only the final norm and the head run).
    batch_size : int
        Windows per forward pass (here and in :meth:`perplexity`).
    progress : bool
        Show a tqdm progress bar while filling the cache.
    verify : bool
        Check on the first batch that the cached path gives the logits of a
        full run (``rtol=1e-4`` in float32, ``1e-9`` in float64; an error if not).

    Attributes
    ----------
    block : int
    windows : torch.LongTensor
    hidden : torch.Tensor
        ``(windows, length, hidden_size)`` in the model's dtype.

    Examples
    --------
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> _ = torch.manual_seed(0)
    >>> cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
    ...                   num_attention_heads=2, num_key_value_heads=1)
    >>> model = LlamaForCausalLM(cfg).double().eval()
    >>> ids = torch.randint(0, 64, (4, 12))
    >>> cache = BlockCache(model, ids, block=2, progress=False)
    >>> tuple(cache.hidden.shape)
    (4, 12, 16)
    >>> full = perplexity(model, ids, progress=False)
    >>> abs(cache.perplexity(model, progress=False) - full) < 1e-12 * full
    True
    """

    def __init__(self, model: Any, windows: Any, block: int = 10, *, batch_size: int = 8,
                 progress: bool = True, verify: bool = True) -> None:
        import torch
        from tqdm.auto import tqdm

        _check_model(model)
        _, layers, _, _ = _decoder(model)
        self.windows = _check_windows("windows", windows)
        self.block = check_int("block", block, minimum=0, maximum=len(layers))
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        progress = check_bool("progress", progress)
        verify = check_bool("verify", verify)
        dev = _device(model)
        parts = []
        with torch.no_grad():
            for i, sl in enumerate(tqdm(_batches(len(self.windows), self.batch_size),
                                        desc=f"cache block {self.block}", unit="batch",
                                        disable=not progress)):
                ids = self.windows[sl].to(dev)
                h, full = _capture_block_input(model, self.block, ids, stop=not (verify and i == 0))
                if i == 0:
                    width = h.shape[-1]
                    check_alloc(f"the block cache ({len(self.windows)} x {ids.shape[1]} x {width})",
                                len(self.windows) * ids.shape[1] * width, h.element_size())
                if full is not None:
                    self._verify(model, h, full)
                parts.append(h)
        self.hidden = torch.cat(parts)

    def _verify(self, model: Any, hidden: Any, full: Any) -> None:
        import torch

        mine = _run_from(model, hidden, self.block)
        tol = 1e-9 if mine.dtype == torch.float64 else 1e-4
        scale = float(full.abs().max()) or 1.0
        err = float((mine - full).abs().max()) / scale
        if not err <= tol:
            raise QtnnError(f"the block cache of this {type(model).__name__} does not reproduce a full "
                            f"run (largest logit difference {err:.2e} of the largest logit); its "
                            "forward does more than embed, run model.model.layers, norm and lm_head")

    def __len__(self) -> int:
        return len(self.windows)

    def __repr__(self) -> str:
        return (f"BlockCache(block={self.block}, windows={len(self.windows)}, "
                f"length={self.windows.shape[1]}, hidden={self.hidden.shape[-1]})")

    def logits(self, model: Any, index: Any = None) -> Any:
        """Logits of ``model`` on the cached windows ``index`` (all by default), from block ``block``.

        Runs under the caller's grad mode (so it can be trained through).

        Examples
        --------
        >>> import torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> cfg = LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
        ...                   num_attention_heads=2, num_key_value_heads=1)
        >>> model = LlamaForCausalLM(cfg).eval()
        >>> cache = BlockCache(model, torch.randint(0, 32, (3, 5)), block=1, progress=False)
        >>> tuple(cache.logits(model, slice(0, 2)).shape)
        (2, 5, 32)
        """
        _check_model(model)
        hidden = self.hidden if index is None else self.hidden[index]
        return _run_from(model, hidden.to(_device(model)), self.block)

    def perplexity(self, model: Any, *, batch_size: int | None = None, progress: bool = True) -> float:
        """:func:`perplexity` of ``model`` on the cached windows, running only blocks ``block..end``.

        ``model`` must share blocks ``< block`` (and the embeddings) with the
        model the cache was made from; typically a copy from
        :func:`qtnn.compress` with targets in blocks ``>= block``.

        Examples
        --------
        >>> import torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> cfg = LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
        ...                   num_attention_heads=2, num_key_value_heads=1)
        >>> model = LlamaForCausalLM(cfg).eval()
        >>> cache = BlockCache(model, torch.randint(0, 32, (3, 5)), block=1, progress=False)
        >>> cache.perplexity(model, progress=False) > 1
        True
        """
        import torch
        from tqdm.auto import tqdm

        _check_model(model)
        bs = self.batch_size if batch_size is None else check_int("batch_size", batch_size, minimum=1)
        progress = check_bool("progress", progress)
        total, count = 0.0, 0
        with torch.inference_mode():
            for sl in tqdm(_batches(len(self.windows), bs), desc=f"perplexity from block {self.block}",
                           unit="batch", disable=not progress):
                s, c = _nll_sum(self.logits(model, sl), self.windows[sl])
                total += s
                count += c
        return math.exp(total / count)


# ----------------------------------------------------------- layer inputs
def _named(model: Any, names: Any, what: str) -> list[tuple[str, Any]]:
    if isinstance(names, str):
        names = [names]
    if isinstance(names, (bytes, bytearray)) or not isinstance(names, Sequence) or not names:
        raise QtnnTypeError(f"{what} must be a module name or a non-empty list of names, got {names!r}")
    table = dict(model.named_modules(remove_duplicate=False))
    out: list[tuple[str, Any]] = []
    for n in names:
        if not isinstance(n, str):
            raise QtnnTypeError(f"{what} must hold module names (str), got {n!r}")
        if n not in table:
            near = [k for k in table if k.endswith(n.rsplit(".", 1)[-1])][:5]
            hint = f"; names like {', '.join(map(repr, near))}" if near else ""
            raise QtnnError(f"{what}: the model has no module named {n!r}{hint}")
        if n not in [m for m, _ in out]:
            out.append((n, table[n]))
    return out


def _block_of(model: Any, modules: Sequence[Any]) -> int | None:
    """The first decoder block holding any of ``modules`` (``num_layers`` for the norm/head; else None)."""
    try:
        _, layers, norm, head = _decoder(model)
    except QtnnError:
        return None
    ids = {id(m) for m in modules}
    for i, layer in enumerate(layers):
        if any(id(m) in ids for m in layer.modules()):
            return i
    tail = {id(m) for m in norm.modules()} | {id(m) for m in head.modules()}
    if ids <= tail:
        return len(layers)
    return None


def _first_tensor(out: Any) -> Any:
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out


def _run_until(model: Any, modules: Sequence[Any], batch: Any, cache: BlockCache | None,
               kind: str) -> list[Any]:
    """Inputs (``kind="input"``) or outputs (``"output"``) of ``modules`` on one batch.

    The pass stops as soon as every module has been called once.  ``batch``
    is cached hidden states when ``cache`` is given, token ids otherwise.
    """
    got: dict[int, Any] = {}
    handles = []
    want = len(modules)

    def make(i: int) -> Any:
        def pre(module: Any, args: Any, kwargs: Any) -> None:
            if i not in got:
                got[i] = args[0] if args else next(iter(kwargs.values()))
                if len(got) == want:
                    raise _Stop

        def post(module: Any, args: Any, kwargs: Any, out: Any) -> None:
            if i not in got:
                got[i] = _first_tensor(out)
                if len(got) == want:
                    raise _Stop
        return pre if kind == "input" else post

    for i, m in enumerate(modules):
        if kind == "input":
            handles.append(m.register_forward_pre_hook(make(i), with_kwargs=True))
        else:
            handles.append(m.register_forward_hook(make(i), with_kwargs=True))
    try:
        if cache is not None:
            _run_from(model, batch, cache.block)
        else:
            _call(model, batch)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = [i for i in range(want) if i not in got]
    if missing:
        raise QtnnError(f"{len(missing)} of the named modules were not called by the forward pass "
                        "(a module the model does not use, or before the cached block)")
    return [got[i] for i in range(want)]


def linear_inputs(model: Any, names: Any, windows: Any = None, *, block_cache: BlockCache | None = None,
                  batch_size: int = 8, progress: bool = True) -> dict[str, Any]:
    """The inputs of layers of a model on calibration windows, as ``(N, in_features)`` float64 arrays.

    Forward pre-hooks on the named modules record their first argument on
    every window (flattened over batch and position: ``N = windows x length``
    rows for a language model); each forward pass stops once every named
    module has been called.  With ``block_cache`` (whose block comes at or
    before the named modules) only the blocks from the cached one run, on the
    cache's windows.  For data-aware fits such as activation-weighted
    truncation.

    Parameters
    ----------
    model : torch.nn.Module
    names : str or list of str
        Module names as in ``model.named_modules()``.
    windows : torch.Tensor, optional
        Model inputs (token ids for a language model); not with ``block_cache``.
    block_cache : BlockCache, optional
    batch_size : int
    progress : bool

    Returns
    -------
    dict
        ``name -> numpy.ndarray`` of shape ``(N, in_features)``, float64.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> got = linear_inputs(model, ["0", "2"], x, progress=False)
    >>> got["0"].shape, got["2"].shape, bool(abs(got["0"] - x.numpy()).max() == 0)
    ((5, 3), (5, 4), True)
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    _check_model(model)
    named = _named(model, names, "names")
    if (windows is None) == (block_cache is None):
        raise QtnnError("linear_inputs needs exactly one of windows and block_cache, got "
                        f"{'both' if windows is not None else 'neither'}")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    progress = check_bool("progress", progress)
    if block_cache is not None:
        if not isinstance(block_cache, BlockCache):
            raise QtnnTypeError(f"block_cache must be a BlockCache, got {type(block_cache).__name__}")
        _check_cache_block(model, block_cache, [m for _, m in named], "names")
        data = block_cache.hidden
    else:
        if not isinstance(windows, torch.Tensor) or windows.ndim < 1 or len(windows) == 0:
            raise QtnnTypeError(f"windows must be a non-empty torch.Tensor, got {type(windows).__name__}")
        data = windows
    dev = _device(model)
    parts: dict[str, list[Any]] = {n: [] for n, _ in named}
    with torch.inference_mode():
        for sl in tqdm(_batches(len(data), batch_size), desc="layer inputs", unit="batch",
                       disable=not progress):
            got = _run_until(model, [m for _, m in named], data[sl].to(dev), block_cache, "input")
            for (n, _), x in zip(named, got, strict=True):
                if not parts[n]:
                    rows = x.numel() // x.shape[-1] * math.ceil(len(data) / (sl.stop - sl.start))
                    check_alloc(f"the inputs of {n!r} ({rows} x {x.shape[-1]})", rows * x.shape[-1])
                parts[n].append(x.detach().reshape(-1, x.shape[-1]).to("cpu", torch.float64).numpy())
    return {n: np.concatenate(v) for n, v in parts.items()}


def _check_cache_block(model: Any, cache: BlockCache, modules: Sequence[Any], what: str) -> None:
    first = _block_of(model, modules)
    if first is None or first < cache.block:
        where = "outside the decoder blocks" if first is None else f"in block {first}"
        raise QtnnError(f"{what}: a module is {where}, before the block cache's block {cache.block}; "
                        f"use a BlockCache with block <= {first if first is not None else 0}")


# ------------------------------------------------------------------ healing
@dataclass
class HealReport:
    """What :func:`heal` did.

    Attributes
    ----------
    modules : list of str
        The healed modules.
    objective : str
        ``"model"``, ``"outputs"`` or ``"distill"``.
    match : list of str
        The modules whose outputs were matched (``"outputs"``; empty for the other objectives).
    steps, batch_size, seed : int
    lr : float
    parameters : int
        Trainable parameters (those of ``modules``).
    block : int or None
        The cached block the passes started from (``None``: full passes).
    loss_before, loss_after : float
        The objective on all of ``data`` before and after: the mean next-token
        cross-entropy (``"model"``; ``exp`` of it is the perplexity on
        ``data``), the mean over ``match`` of ``||y - y_orig||^2 / ||y_orig||^2``
        (``"outputs"``) or the mean per-position ``KL(p_orig || p)`` in nats
        (``"distill"``).
    losses : list of float
        The minibatch loss of every step (before its update).
    seconds : float
    restored : bool
        The training ended worse on the whole of ``data`` than it started, so
        the parameters were put back as they were (``loss_after ==
        loss_before``).
    schedule : str
        The learning-rate schedule, ``"constant"`` or ``"cosine"``.

    Examples
    --------
    >>> r = HealReport(["0"], "outputs", ["0"], 10, 4, 0, 1e-3, 12, None, 0.5, 0.1, [0.5] * 10, 1.0)
    >>> r.as_dict()["loss_after"], round(r.improvement, 3)
    (0.1, 0.8)
    """

    modules: list[str]
    objective: str
    match: list[str]
    steps: int
    batch_size: int
    seed: int
    lr: float
    parameters: int
    block: int | None
    loss_before: float
    loss_after: float
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    restored: bool = False
    schedule: str = "constant"

    @property
    def improvement(self) -> float:
        """``1 - loss_after / loss_before`` (the fraction of the objective removed)."""
        return 1.0 - self.loss_after / self.loss_before if self.loss_before else 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field (and ``improvement``)."""
        d = asdict(self)
        d["improvement"] = self.improvement
        return d


class _Objective:
    """The loss of :func:`heal` on a batch of window indices."""

    def __init__(self, model: Any, data: Any, cache: BlockCache | None, kind: str,
                 match_modules: list[Any], targets: list[Any] | None, scales: list[float],
                 original: Any = None) -> None:
        self.model, self.data, self.cache, self.kind = model, data, cache, kind
        self.match_modules, self.targets, self.scales = match_modules, targets, scales
        self.original = original
        self.dev = _device(model)

    def _logits_of(self, model: Any, idx: Any) -> Any:
        if self.cache is not None:
            return self.cache.logits(model, idx)
        return _logits(_call(model, self.data[idx].to(_device(model))))

    def __call__(self, idx: Any) -> Any:
        import torch

        if self.kind == "model":
            ids = self.data[idx].to(self.dev)
            logits = self._logits_of(self.model, idx)
            pred = logits[:, :-1].reshape(-1, logits.shape[-1])
            return torch.nn.functional.cross_entropy(pred, ids[:, 1:].reshape(-1))
        if self.kind == "distill":
            logits = self._logits_of(self.model, idx)
            with torch.no_grad():
                teacher = self._logits_of(self.original, idx).to(logits.device)
            v, dt = logits.shape[-1], torch.promote_types(logits.dtype, torch.float32)
            logp = torch.log_softmax(logits.reshape(-1, v).to(dt), dim=-1)
            logq = torch.log_softmax(teacher.reshape(-1, v).to(dt), dim=-1)
            return torch.nn.functional.kl_div(logp, logq, reduction="batchmean", log_target=True)
        batch = (self.cache.hidden if self.cache is not None else self.data)[idx].to(self.dev)
        outs = _run_until(self.model, self.match_modules, batch, self.cache, "output")
        terms = [((o - t[idx].to(o.device)) ** 2).mean() / s
                 for o, t, s in zip(outs, self.targets or [], self.scales, strict=True)]
        return torch.stack(terms).mean()

    def full(self, batch_size: int) -> float:
        """The objective averaged over all of ``data`` (token- / element-weighted per batch)."""
        import torch

        n = len(self.data)
        total = 0.0
        with torch.inference_mode():
            for sl in _batches(n, batch_size):
                idx = torch.arange(sl.start, sl.stop)
                total += float(self(idx)) * (sl.stop - sl.start)
        return total / n


def heal(model: Any, modules: Any, data: Any, *, original: Any = None, objective: str = "model",
         match: Any = None, steps: int = 100, lr: float = 1e-3, schedule: str = "constant",
         batch_size: int = 4, seed: int = 0, progress: bool = True,
         block_cache: BlockCache | None = None) -> HealReport:
    """Fine-tune only the replaced layers of a compressed model (in place), everything else frozen.

    "Healing" after compression (Tomut et al., "CompactifAI",
    arXiv:2401.14109; Aizpurua et al., arXiv:2410.17397): the parameters of
    ``modules`` -- whatever their type: the cores of an
    :class:`~qtnn.nn.MPOLinear`, the gate angles and residual cores of a
    :class:`~qtnn.nn.DisentangledLinear`, the factors of a low-rank layer, a
    plain ``nn.Linear`` -- are trained with Adam; every other parameter has
    ``requires_grad`` switched off for the run (and restored after) and is
    left bit for bit as it was.  The model runs in eval mode (no dropout);
    the minibatches are drawn with a generator seeded by ``seed``, so the same
    inputs give the same parameters.

    Objectives:

    * ``"model"``: the model's own mean next-token cross-entropy on ``data``
      (token windows, e.g. ``corpus_windows(tok, "calibration")``).
    * ``"outputs"``: match the outputs of ``original`` (e.g. the uncompressed
      model) at the modules ``match`` (default ``modules``; e.g.
      ``"model.layers.10"`` for the whole decoder block): the mean over
      ``match`` of ``mean((y - y_orig)^2) / mean(y_orig^2)``.  Both models see
      the same inputs (``original`` is run on the same cached block inputs);
      the targets are computed once, before training.
    * ``"distill"``: match the next-token distributions of ``original``
      (knowledge distillation, Hinton et al., arXiv:1503.02531, at
      temperature 1): the mean over every position of ``data`` of
      ``KL(p_orig || p)``.  Unlike ``"model"``, the uncompressed model is
      already optimal (``KL = 0``), so this healing repairs the compression
      and cannot adapt the model to the domain of ``data``; it costs one extra
      forward pass of ``original`` per step (run on the same cached block
      inputs, under ``no_grad``).

    For a Llama-style model (see :class:`BlockCache`) the passes start from
    the first decoder block that holds a trained or matched module: a
    :class:`BlockCache` of ``data`` is made there (or ``block_cache`` is used),
    and an ``"outputs"`` pass stops as soon as every matched module has run.

    Parameters
    ----------
    model : torch.nn.Module
        Changed in place.
    modules : str or list of str
        Names (as in ``model.named_modules()``) of the modules to train.
    data : torch.Tensor
        Calibration windows ``(windows, length)`` (or, for a model that is not
        a language model and ``objective="outputs"``, any batch of inputs
        along dimension 0).
    original : torch.nn.Module, optional
        Required for ``objective="outputs"`` (it must have modules named
        ``match``) and ``objective="distill"``.
    objective : {"model", "outputs", "distill"}
    match : str or list of str, optional
        ``"outputs"`` only (default: ``modules``).
    steps : int
        Adam steps (0: only measure the objective).
    lr : float
        Adam learning rate (the peak one for ``schedule="cosine"``).
    schedule : {"constant", "cosine"}
        ``"cosine"``: the learning rate of step ``t`` (from 0) is
        ``lr * (1 + cos(pi * t / steps)) / 2``, falling from ``lr`` towards 0
        (Loshchilov & Hutter, arXiv:1608.03983, without restarts), which
        settles the last steps' minibatch noise.
    batch_size : int
        Windows per step (and per pass when measuring the objective).
    seed : int
    progress : bool
        A tqdm bar with the running loss.
    block_cache : BlockCache, optional
        A cache of ``data`` at a block at or before the first trained module.

    Returns
    -------
    HealReport

    Examples
    --------
    >>> import torch, qtnn
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    >>> small, _ = qtnn.compress(net, "0", max_bond=1, progress=False)
    >>> x = torch.randn(64, 8, dtype=torch.float64)
    >>> r = heal(small, "0", x, original=net, objective="outputs", steps=50, lr=1e-2,
    ...          batch_size=16, progress=False)
    >>> r.loss_after < r.loss_before, torch.equal(small[2].weight, net[2].weight)
    (True, True)
    """
    import torch

    t0 = time.perf_counter()
    _check_model(model)
    objective = check_choice("objective", objective, _OBJECTIVES)
    steps = check_int("steps", steps, minimum=0)
    lr = check_real("lr", lr, minimum=0.0, strict_min=True)
    schedule = check_choice("schedule", schedule, ("constant", "cosine"))
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    progress = check_bool("progress", progress)
    trained = _named(model, modules, "modules")
    params: list[Any] = []
    seen: set[int] = set()
    for n, m in trained:
        own = [p for p in m.parameters() if id(p) not in seen]
        if not own and not any(True for _ in m.parameters()):
            raise QtnnError(f"modules: {n!r} ({type(m).__name__}) has no parameters to train")
        seen.update(id(p) for p in own)
        params += own
    if not isinstance(data, torch.Tensor) or data.ndim < 1 or len(data) == 0:
        raise QtnnTypeError(f"data must be a non-empty torch.Tensor of windows, got {type(data).__name__}")
    match_named: list[tuple[str, Any]] = []
    if objective in ("model", "distill"):
        data = _check_windows("data", data)
        if match is not None:
            raise QtnnError(f"match is for objective='outputs' only; got match={match!r} with "
                            f"objective={objective!r}")
        if objective == "model" and original is not None:
            raise QtnnError("original is for objective='outputs' or 'distill'; got "
                            f"original={type(original).__name__} with objective='model'")
    if objective != "model":
        if original is None:
            raise QtnnError(f"objective={objective!r} needs original (the model to match), got None")
        _check_model(original)
        if original is model:
            raise QtnnError("original must be another model than model (e.g. the uncompressed one)")
    if objective == "outputs":
        match_named = _named(model, [n for n, _ in trained] if match is None else match, "match")
        _named(original, [n for n, _ in match_named], "match (in original)")

    # where the passes start
    block = _block_of(model, [m for _, m in trained] + [m for _, m in match_named])
    cache = None
    if block_cache is not None:
        if not isinstance(block_cache, BlockCache):
            raise QtnnTypeError(f"block_cache must be a BlockCache, got {type(block_cache).__name__}")
        if block_cache.windows.shape != data.shape or not torch.equal(block_cache.windows, data.long()):
            raise QtnnError("block_cache must be made from data (its windows differ)")
        _check_cache_block(model, block_cache, [m for _, m in trained] + [m for _, m in match_named],
                           "modules")
        cache = block_cache
    elif block is not None:
        cache = BlockCache(model, data, block, batch_size=max(batch_size, 8), progress=progress)

    teacher_training = original is not None and original.training
    if original is not None:
        original.eval()  # the targets / distributions without dropout; restored at the end
    try:
        return _heal_run(model, original, objective, trained, params, data, cache, match_named,
                         steps, lr, schedule, batch_size, seed, progress, t0)
    finally:
        if original is not None:
            original.train(teacher_training)


def _heal_run(model: Any, original: Any, objective: str, trained: list[tuple[str, Any]],
              params: list[Any], data: Any, cache: BlockCache | None,
              match_named: list[tuple[str, Any]], steps: int, lr: float, schedule: str,
              batch_size: int, seed: int, progress: bool, t0: float) -> HealReport:
    """The body of :func:`heal` after validation (``original`` already in eval mode)."""
    import torch
    from tqdm.auto import tqdm

    targets, scales = None, []
    if objective == "outputs":
        orig_modules = [m for _, m in _named(original, [n for n, _ in match_named], "match")]
        parts: list[list[Any]] = [[] for _ in orig_modules]
        src = cache.hidden if cache is not None else data
        with torch.no_grad():
            for sl in _batches(len(src), max(batch_size, 8)):
                outs = _run_until(original, orig_modules, src[sl].to(_device(original)), cache, "output")
                for p, o in zip(parts, outs, strict=True):
                    p.append(o.detach().clone())
        targets = [torch.cat(p) for p in parts]
        scales = [max(float((t.double() ** 2).mean()), 1e-300) for t in targets]

    loss_fn = _Objective(model, data, cache, objective, [m for _, m in match_named], targets, scales,
                         original if objective == "distill" else None)
    flags = {id(p): p.requires_grad for p in model.parameters()}
    was_training = model.training
    model.eval()
    losses: list[float] = []
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        before = loss_fn.full(max(batch_size, 8))
        start = [p.detach().clone() for p in params]
        opt = torch.optim.Adam(params, lr=lr)
        gen = torch.Generator().manual_seed(seed)
        order: list[int] = []
        bar = tqdm(range(steps), desc=f"heal ({objective})", unit="step", disable=not progress)
        for t in bar:
            if schedule == "cosine":
                for g in opt.param_groups:
                    g["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * t / steps))
            while len(order) < batch_size:
                order += torch.randperm(len(data), generator=gen).tolist()
            idx, order = torch.tensor(order[:batch_size]), order[batch_size:]
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = loss_fn(idx)
                loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
        bar.close()
        after = loss_fn.full(max(batch_size, 8))
        restored = after > before
        if restored:  # never hand back a layer worse on the objective than it came
            with torch.no_grad():
                for p, s0 in zip(params, start, strict=True):
                    p.copy_(s0)
            after = before
    finally:
        for p in model.parameters():
            p.requires_grad_(flags.get(id(p), True))
            p.grad = None
        model.train(was_training)
    return HealReport(modules=[n for n, _ in trained], objective=objective,
                      match=[n for n, _ in match_named], steps=steps, batch_size=batch_size, seed=seed,
                      lr=lr, schedule=schedule, parameters=sum(p.numel() for p in params),
                      block=None if cache is None else cache.block, loss_before=before,
                      loss_after=after, losses=losses, seconds=time.perf_counter() - t0,
                      restored=restored)
