"""Deprecated: moved to :mod:`qtnn.apps.demo` (the data in :mod:`qtnn.apps.digits`); this alias goes
away in the next release.
"""

from qtnn._moved import MOVED, forwarder

__getattr__ = forwarder(__name__, MOVED[__name__])
