"""Deprecated: moved to :mod:`qtnn.apps.lm` (models, corpora) and :mod:`qtnn.compress` (perplexity,
BlockCache, linear_inputs, heal); this alias goes away in the next release.
"""

from qtnn._moved import MOVED, forwarder

__getattr__ = forwarder(__name__, MOVED[__name__])
