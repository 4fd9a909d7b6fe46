"""Deprecated: moved to :mod:`qtnn.apps.train` (the model in :mod:`qtnn.apps.digits`, the loop in
:mod:`qtnn.apps.loop`); this alias goes away in the next release.
"""

from qtnn._moved import MOVED, forwarder

__getattr__ = forwarder(__name__, MOVED[__name__])
