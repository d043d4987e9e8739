"""Benchmarks by name: what fitted heads are scored on, zero-shot, after fitting on a corpus.

A benchmark here is a dataset probe can read (bundled, or ``kind:PATH``) scored on its ``test``
split (``val`` when it has none): retrieval on its captions, zero-shot classification on its class
labels with its own class names and prompt templates, compositional scores on its ``winoground``
swap pairs where it has them.
"""

from __future__ import annotations

import difflib
from typing import Any

from probe.errors import ProbeError


def get_benchmark(name: str) -> Any:
    """The dataset behind benchmark ``name``; an unknown name is a one-line error with close names."""
    from probe.data import BUNDLED, LOCAL_KINDS, get_dataset

    kind, sep, _ = name.partition(":")
    if name not in BUNDLED and not (sep and kind in LOCAL_KINDS):
        close = difflib.get_close_matches(name, BUNDLED, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        valid = ", ".join(BUNDLED) + ", or " + ", ".join(f"{k}:PATH" for k in LOCAL_KINDS)
        raise ProbeError(f"unknown benchmark {name!r}; {hint}valid: {valid}")
    return get_dataset(name)
