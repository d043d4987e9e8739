"""Heads that read token sequences: freeze-align's projectors, as its authors trained them.

freeze-align (Maniparambil et al., CVPR 2025; github.com/mayug/freeze-align at 100745f) does not
project pooled features. Every vision token goes through LayerNorm, dropout and a patch projection
(a linear map plus a Linear-GELU-Linear branch); the projected patch tokens are averaged and the raw
CLS token, projected the same way by its own weights, is added. Every text token is projected the
same way, averaged under the attention mask, and passed through a ProjectionHead (Linear-GELU-
Linear, dropout, residual, LayerNorm). The temperature is learned and clamped to [0.001, 0.5] before
each step. Line numbers below are of ``train/models/clip_adjustable_combined_vis_cls.py``; the
choices are those of ``train/configs-v2/dinov2-arl-wds-combined.yaml:60-67`` (patch, patch, mean,
mean, mlp, patch).

Because the projection is not linear and comes before pooling, these heads need every token of both
encoders, not a pooled feature: see ``docs/token-features.md`` for how probe feeds them.
"""

from __future__ import annotations

from typing import Any


def patch_projection(width: int, out_dim: int) -> Any:
    """``Patch_Projection`` (:37-50): ``Linear(x) + Linear(GELU(Linear(x)))``."""
    import torch.nn as nn  # here, where a head is built: ``import probe`` loads no torch

    class PatchProjection(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear_projection = nn.Sequential(nn.Linear(width, out_dim))
            self.non_linear_projection = nn.Sequential(nn.Linear(width, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

        def forward(self, x):
            return self.linear_projection(x) + self.non_linear_projection(x)

    return PatchProjection()


def token_projection(width: int, out_dim: int, dropout: float = 0.1) -> Any:
    """The ``'patch'`` projection of every token (:103-110, :128-135, :171-178): LayerNorm, Dropout(0.1),
    :func:`patch_projection`."""
    import torch.nn as nn  # here, where a head is built: ``import probe`` loads no torch
    return nn.Sequential(nn.LayerNorm(width), nn.Dropout(dropout), patch_projection(width, out_dim))


def projection_head(width: int, out_dim: int, dropout: float = 0.1) -> Any:
    """``ProjectionHead`` (:14-34), the ``'mlp'`` projection: ``p = Linear(x)``, then
    ``LayerNorm(p + Dropout(Linear(GELU(p))))``."""
    import torch.nn as nn  # here, where a head is built: ``import probe`` loads no torch

    class ProjectionHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.projection = nn.Linear(width, out_dim)
            self.gelu = nn.GELU()
            self.fc = nn.Linear(out_dim, out_dim)
            self.dropout = nn.Dropout(dropout)
            self.layer_norm = nn.LayerNorm(out_dim)

        def forward(self, x):
            projected = self.projection(x)
            return self.layer_norm(self.dropout(self.fc(self.gelu(projected))) + projected)

    return ProjectionHead()


#: freeze-align's temperature: its start (dinov2-arl-wds-combined.yaml:35) and clamp (:340-341)
TEMPERATURE_INIT = 0.07
TEMPERATURE_RANGE = (0.001, 0.5)


def freeze_align_projector(vision_width: int, text_width: int, out_dim: int = 1024) -> Any:
    """freeze-align's projectors and temperature as one module (``out_dim`` 1024:
    dinov2-arl-wds-combined.yaml:31). ``embed_images(tokens)`` takes ``[B, T, vision_width]`` with the
    CLS token first; ``embed_texts(tokens, mask)`` takes ``[B, L, text_width]`` and the attention mask;
    ``loss(images, texts)`` is their symmetric InfoNCE at the clamped learned temperature (:454-469)."""
    import torch
    import torch.nn as nn  # here, where a head is built: ``import probe`` loads no torch
    import torch.nn.functional as F  # noqa: N812

    class FreezeAlignProjector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.local_vision_proj = token_projection(vision_width, out_dim)  # :103-110
            self.cls_vision_proj = token_projection(vision_width, out_dim)  # :128-135
            self.local_text_proj = token_projection(text_width, out_dim)  # :171-178
            # :148-151 builds it for the text encoder's width, but applies it to projected tokens (:394),
            # out_dim wide: their configuration has both 1,024; for other widths it is built to fit
            self.text_proj = projection_head(out_dim, out_dim)
            self.temp = nn.Parameter(torch.ones([]) * TEMPERATURE_INIT)  # :185

        def embed_images(self, tokens):
            local = self.local_vision_proj(tokens)[:, 1:, :].mean(dim=1)  # :402, :407-408 (every token after CLS)
            cls = self.cls_vision_proj(tokens[:, 0, :])  # :401, :412
            return F.normalize(local + cls, dim=-1)  # :413-415 (both weights 1.0, vision_proj Identity)

        def embed_texts(self, tokens, mask):
            weights = mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (self.local_text_proj(tokens) * weights).sum(dim=1) / weights.sum(dim=1)  # :388-392
            return F.normalize(self.text_proj(pooled), dim=-1)  # :394-395

        def loss(self, images, texts):
            with torch.no_grad():
                self.temp.clamp_(*TEMPERATURE_RANGE)  # :340-341
            logits = images @ texts.T / self.temp  # :454-455
            target = torch.arange(len(images), device=images.device)
            return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2  # :462-469

    return FreezeAlignProjector()
