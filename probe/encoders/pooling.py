"""Pooling of token sequences into one vector, chosen by the spec's ``pooling`` field."""

from __future__ import annotations

from typing import TYPE_CHECKING

from probe.errors import ProbeError

if TYPE_CHECKING:
    import torch


def pool_vision_tokens(tokens: torch.Tensor, pooling: str | None, prefix_tokens: int) -> torch.Tensor:
    """tokens [N, L, D] with ``prefix_tokens`` leading CLS/register tokens.

    ``cls+mean`` concatenates the CLS token with the mean of patch tokens (DINOv2's linear-eval
    and SAIL's choice); ``mean`` averages patch tokens only; ``mean_all`` averages every token, CLS
    and registers included (``last_hidden_state.mean(dim=1)``, freeze-align's encoder selection).
    """
    import torch

    patches = tokens[:, prefix_tokens:]
    if pooling == "cls":
        return tokens[:, 0]
    if pooling == "mean":
        return patches.mean(dim=1)
    if pooling == "cls+mean":
        return torch.cat([tokens[:, 0], patches.mean(dim=1)], dim=-1)
    if pooling == "mean_all":
        return tokens.mean(dim=1)
    raise ProbeError(f"pooling {pooling!r} does not apply to token sequences; use cls, mean, cls+mean or mean_all")


def pool_text_tokens(hidden: torch.Tensor, mask: torch.Tensor, pooling: str | None) -> torch.Tensor:
    """hidden [N, L, D], attention mask [N, L]; ``last`` takes the last non-padding token."""
    import torch

    if pooling == "mean":
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        left_padded = bool(mask[:, -1].all())
        if left_padded:
            return hidden[:, -1]
        last = mask.sum(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ProbeError(f"pooling {pooling!r} does not apply to token sequences; use mean, cls or last")
