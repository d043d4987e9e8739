"""probe: measure how well frozen vision encoders line up with frozen text encoders.

Importing the package is cheap on purpose: torch, timm and transformers are imported only by the
functions that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"
