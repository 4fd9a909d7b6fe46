"""Deprecated: moved to :mod:`qtnn.apps.bench`; this alias goes away in the next release."""

from qtnn._moved import MOVED, forwarder

__getattr__ = forwarder(__name__, MOVED[__name__])
