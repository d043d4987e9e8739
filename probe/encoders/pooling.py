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


def token_rows(hidden: torch.Tensor, mask: torch.Tensor | None, slots: int) -> torch.Tensor:
    """Rows ``[N, 1 + slots x D]`` of token sequences ``hidden [N, L, D]``: each row the count of its
    real tokens (the attention mask's, or all L), then its tokens, padding and the tokens beyond
    ``slots`` left out, the rest zeros. What token heads (freeze-align's projectors) read back from the
    feature cache; :func:`split_token_rows` undoes it."""
    import torch

    n, length, width = hidden.shape
    if mask is None:
        mask = torch.ones(n, length, dtype=torch.long, device=hidden.device)
    keep = min(length, slots)
    counts = mask[:, :keep].sum(1)
    left_padded = bool(mask[:, -1].all()) and not bool(mask[:, 0].all())
    if left_padded:
        raise ProbeError("token rows need right-padded sequences; this tokenizer pads on the left")
    tokens = torch.zeros(n, slots, width, dtype=hidden.dtype, device=hidden.device)
    tokens[:, :keep] = hidden[:, :keep] * mask[:, :keep].unsqueeze(-1).to(hidden.dtype)
    return torch.cat([counts.to(hidden.dtype).unsqueeze(1), tokens.reshape(n, slots * width)], dim=1)


def split_token_rows(rows: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tokens [N, slots, width], mask [N, slots])`` of :func:`token_rows`' rows."""
    import torch

    counts = rows[:, 0].round().long()
    tokens = rows[:, 1:].reshape(rows.shape[0], -1, width)
    mask = (torch.arange(tokens.shape[1], device=rows.device)[None, :] < counts[:, None]).long()
    return tokens, mask
