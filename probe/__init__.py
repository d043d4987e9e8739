"""probe: measure how well frozen vision encoders line up with frozen text encoders.

Importing the package is cheap on purpose: torch, timm and transformers are imported only by the
functions that need them.
"""

from __future__ import annotations

__version__ = "0.2.0"


def __getattr__(name: str):
    """``probe.AlignedModel`` without importing torch when ``import probe`` alone is asked for."""
    if name == "AlignedModel":
        from probe.align.model import AlignedModel

        return AlignedModel
    raise AttributeError(f"module 'probe' has no attribute {name!r}")
