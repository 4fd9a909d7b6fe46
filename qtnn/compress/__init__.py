"""Compress the linear layers of any PyTorch model, evaluate and heal the result.

* :func:`compress` replaces chosen :class:`torch.nn.Linear` layers by
  :class:`~qtnn.nn.MPOLinear` (TT-SVD), :class:`~qtnn.nn.DisentangledLinear`
  (``W ~ U M V^T``, circuits and a residual MPO) or
  :class:`~qtnn.nn.LowRankLinear` (SVD), with per-layer reports
  (:class:`LayerReport`, :func:`summarize`);
* :func:`heal` fine-tunes only the replaced layers;
* :func:`perplexity`, :class:`BlockCache` and :func:`linear_inputs` evaluate a
  causal language model around a compressed block.

The package is itself callable (``qtnn.compress(model, ...)`` is
:func:`compress`), so that the name works as the function whether or not the
package ``qtnn.compress`` has been imported.  The command line lives in
:mod:`qtnn.cli.compress`; the models it knows and the compressed-model file
format in :mod:`qtnn.apps`.

Examples
--------
>>> import torch
>>> from torch import nn
>>> import qtnn
>>> _ = torch.manual_seed(0)
>>> net = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))
>>> small, reports = qtnn.compress(net, "0", max_bond=2, progress=False)
>>> type(small[0]).__name__, reports[0].name
('MPOLinear', '0')
"""

from __future__ import annotations

import sys
import types
from typing import Any

from qtnn.compress.core import LayerReport, compress, linear_names, summarize
from qtnn.compress.llm import BlockCache, HealReport, heal, linear_inputs, perplexity

__all__ = ["compress", "LayerReport", "summarize", "linear_names", "heal", "HealReport", "perplexity",
           "BlockCache", "linear_inputs"]


#: names that moved out of ``qtnn.compress`` (the file format and the models it rebuilds are
#: applications, the command line is in qtnn.cli)
_MOVED_OUT = {"save_compressed": "qtnn.apps.models", "load_compressed": "qtnn.apps.models",
              "COMPRESSED_FORMAT": "qtnn.apps.models", "stdlib_sentences": "qtnn.apps.lm",
              "load_minilm": "qtnn.apps.lm", "encode_sentences": "qtnn.apps.lm",
              "embedding_agreement": "qtnn.apps.lm", "add_parser": "qtnn.cli.compress",
              "run_cli": "qtnn.cli.compress"}


def __getattr__(name: str) -> Any:
    if name in _MOVED_OUT:
        raise AttributeError(f"qtnn.compress.{name} moved to {_MOVED_OUT[name]}.{name}")
    raise AttributeError(f"module 'qtnn.compress' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, list[LayerReport]]:
        return compress(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
