"""Contrastive losses for alignment heads, with several captions per image.

Both take L2-normalised image and text embeddings of one batch and a boolean ``positives`` matrix
(``positives[i, j]``: text ``j`` describes image ``i``). A batch drawn from (image, caption) pairs
can hold the same image twice; marking both captions positive keeps them from being pushed apart.

- ``infonce``: CLIP's symmetric cross-entropy with a learnable temperature (init 0.07, the logit
  scale clamped at 100). With several positives a row's target is the *total* probability of its
  positives (MIL-NCE, Miech et al. 2020); with one positive per row it is exactly CLIP's loss.
- ``siglip``: SigLIP's pairwise sigmoid loss (Zhai et al. 2023), ``z = exp(t) <x, y> + b`` with
  learnable ``t`` (init log 10) and ``b`` (init -10); summed over pairs, divided by the batch size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

LOSSES = ("infonce", "siglip")
MAX_LOGIT_SCALE = 100.0


def check_loss(kind: str) -> str:
    if kind not in LOSSES:
        from probe.errors import ProbeError

        raise ProbeError(f"unknown loss {kind!r}; valid: {', '.join(LOSSES)}")
    return kind


def infonce(image: torch.Tensor, text: torch.Tensor, positives: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE; ``log_scale`` is log(1 / temperature)."""
    import torch

    scale = log_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()
    logits = scale * image @ text.T
    masked = logits.masked_fill(~positives, float("-inf"))

    def one_way(lg: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        rows = pos.any(dim=1)
        return (torch.logsumexp(lg, dim=1) - torch.logsumexp(pos, dim=1))[rows].mean()

    return 0.5 * (one_way(logits, masked) + one_way(logits.T, masked.T))


def siglip(image: torch.Tensor, text: torch.Tensor, positives: torch.Tensor, log_scale: torch.Tensor,
           bias: torch.Tensor) -> torch.Tensor:
    """SigLIP sigmoid loss: ``-sum log sigmoid(label * z) / batch`` with labels +1 / -1."""
    import torch

    logits = log_scale.exp() * image @ text.T + bias
    labels = positives.to(logits.dtype) * 2 - 1
    return -torch.nn.functional.logsigmoid(labels * logits).sum() / image.shape[0]


def make_loss(kind: str) -> torch.nn.Module:
    """A loss module owning its learnable temperature / scale and bias."""
    import torch
    from torch import nn

    check_loss(kind)

    class ContrastiveLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kind = kind
            init = math.log(1 / 0.07) if kind == "infonce" else math.log(10.0)
            self.log_scale = nn.Parameter(torch.tensor(init))
            self.bias = nn.Parameter(torch.tensor(-10.0)) if kind == "siglip" else None

        def forward(self, image, text, positives):
            if self.bias is None:
                return infonce(image, text, positives, self.log_scale)
            return siglip(image, text, positives, self.log_scale, self.bias)

    return ContrastiveLoss()
