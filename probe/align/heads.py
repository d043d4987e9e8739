"""Alignment heads: small trainable maps from a frozen encoder's features to a shared space.

Three kinds, as in SAIL (Zhang et al.) and freeze-align:

- ``linear``: one affine map.
- ``mlp``: affine, GELU, affine, hidden width ``4 x out_dim``.
- ``star``: SAIL's gated layer ``W_g[ReLU6(W1 h + b1) * (W2 h + b2)] + b_g`` whose hidden width is
  ``star_width x in_dim`` (SAIL uses 8).

Every head may start with a LayerNorm of its input (on by default): random-weight and pixel
controls have badly scaled features, and without it they would lose for the wrong reason.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from probe.align.config import check_head

if TYPE_CHECKING:
    import torch


def make_head(kind: str, in_dim: int, out_dim: int = 512, *, norm: bool = True, star_width: int = 8) -> torch.nn.Module:
    """A fresh head mapping ``[N, in_dim]`` to ``[N, out_dim]`` (not yet normalised)."""
    from torch import nn

    check_head(kind)
    layers: list[nn.Module] = [nn.LayerNorm(in_dim)] if norm else []
    if kind == "linear":
        layers.append(nn.Linear(in_dim, out_dim))
    elif kind == "mlp":
        layers += [nn.Linear(in_dim, 4 * out_dim), nn.GELU(), nn.Linear(4 * out_dim, out_dim)]
    else:
        layers.append(star_layer_class()(in_dim, out_dim, width=star_width))
    return nn.Sequential(*layers)


@functools.cache
def star_layer_class() -> type:
    """The ``StarLayer`` module class, defined on first use so importing this module stays light."""
    from torch import nn

    class StarLayer(nn.Module):
        """SAIL's gated ("star") layer: ``g(relu6(f1(h)) * f2(h))``, hidden width ``width * in_dim``."""

        def __init__(self, in_dim: int, out_dim: int, width: int = 8):
            super().__init__()
            self.f1 = nn.Linear(in_dim, width * in_dim)
            self.f2 = nn.Linear(in_dim, width * in_dim)
            self.g = nn.Linear(width * in_dim, out_dim)

        def forward(self, h):
            return self.g(nn.functional.relu6(self.f1(h)) * self.f2(h))

    return StarLayer
