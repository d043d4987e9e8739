"""Errors that are the user's to fix.

The CLI prints a :class:`ProbeError` as one line and exits with status 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class ProbeError(Exception):
    """A bad input or an unavailable resource, explained in one line."""


class UnavailableError(ProbeError):
    """An encoder whose weights cannot be loaded on this machine."""
