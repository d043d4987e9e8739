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
from typing import TYPE_CHECKING, Any

from probe.align.config import check_head

if TYPE_CHECKING:
    import torch


def make_head(kind: str, in_dim: int, out_dim: int = 512, *, norm: bool = True, star_width: int = 8,
              mlp_hidden: str = "out_dim", star_clamp: float | None = None) -> torch.nn.Module:
    """A fresh head mapping ``[N, in_dim]`` to ``[N, out_dim]`` (not yet normalised). The MLP's hidden
    layer is 4 x ``out_dim`` wide, or 4 x ``in_dim`` with ``mlp_hidden="in_dim"`` (SAIL's SiglipMLP);
    the star layer's branches are clamped to +-``star_clamp`` when given (SAIL: 1e3)."""
    from torch import nn

    check_head(kind)
    layers: list[nn.Module] = [nn.LayerNorm(in_dim)] if norm else []
    if kind == "linear":
        layers.append(nn.Linear(in_dim, out_dim))
    elif kind == "mlp":
        hidden = 4 * (in_dim if mlp_hidden == "in_dim" else out_dim)
        layers += [nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim)]
    else:
        layers.append(star_layer_class()(in_dim, out_dim, width=star_width, clamp=star_clamp))
    return nn.Sequential(*layers)


def heads_for(config: Any, v_dim: int, t_dim: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The vision and text heads a head configuration (:class:`~probe.align.config.ProbeConfig`) asks for."""
    def one(dim: int) -> torch.nn.Module:
        return make_head(config.head, dim, config.out_dim, norm=config.norm, star_width=config.star_width,
                         mlp_hidden=config.mlp_hidden, star_clamp=config.star_clamp)

    return one(v_dim), one(t_dim)


@functools.cache
def star_layer_class() -> type:
    """The ``StarLayer`` module class, defined on first use so importing this module stays light."""
    from torch import nn

    class StarLayer(nn.Module):
        """SAIL's gated ("star") layer: ``g(relu6(f1(h)) * f2(h))``, hidden width ``width * in_dim``
        (model/linear.py's StarMLP), its branches clamped to +-``clamp`` first when given."""

        def __init__(self, in_dim: int, out_dim: int, width: int = 8, clamp: float | None = None):
            super().__init__()
            self.f1 = nn.Linear(in_dim, width * in_dim)
            self.f2 = nn.Linear(in_dim, width * in_dim)
            self.g = nn.Linear(width * in_dim, out_dim)
            self.clamp = clamp

        def forward(self, h):
            a, b = self.f1(h), self.f2(h)
            if self.clamp is not None:
                a, b = a.clamp(-self.clamp, self.clamp), b.clamp(-self.clamp, self.clamp)
            return self.g(nn.functional.relu6(a) * b)

    return StarLayer
