"""Contrastive losses for alignment heads, with several captions per image.

Both take L2-normalised image and text embeddings of one batch and the positive pairs, as a
boolean matrix (``positives[i, j]``: text ``j`` describes image ``i``) or as ``(rows, cols)``. A batch drawn from (image, caption) pairs
can hold the same image twice; marking both captions positive keeps them from being pushed apart.

- ``infonce``: CLIP's symmetric cross-entropy with a learnable temperature (init 0.07, the logit
  scale clamped at 100). With several positives a row's target is the *total* probability of its
  positives (MIL-NCE, Miech et al. 2020); with one positive per row it is exactly CLIP's loss.
- ``siglip``: SigLIP's pairwise sigmoid loss (Zhai et al. 2023), ``z = exp(t) <x, y> + b`` with
  learnable ``t`` (init log 10) and ``b`` (init -10); summed over pairs, divided by the batch size.
"""

from __future__ import annotations

import functools
import math
import weakref
from typing import TYPE_CHECKING, Any

from probe.align.config import check_loss

if TYPE_CHECKING:
    import torch

MAX_LOGIT_SCALE = 100.0


def _segment_logsumexp(values: torch.Tensor, segment: torch.Tensor, n: int) -> torch.Tensor:
    """logsumexp of ``values`` grouped by ``segment`` (ids in [0, n)); O(len(values)), no dense mask."""
    import torch

    peak = torch.full((n,), float("-inf"), dtype=values.dtype, device=values.device).scatter_reduce(
        0, segment, values.detach(), "amax")
    total = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, segment, (values - peak[segment]).exp())
    return total.log() + peak


def infonce(image: torch.Tensor, text: torch.Tensor, positives, log_scale: torch.Tensor,
            max_scale: float = MAX_LOGIT_SCALE) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE; ``log_scale`` is log(1 / temperature).

    Only the all-pairs logsumexps touch every entry of the [B, B] logits (in
    :func:`pairwise_logsumexp_sum`); the positives' terms are gathered by index, since a batch has
    about B of them, not B^2.
    """
    import torch

    scale = log_scale.clamp(max=math.log(max_scale)).exp()
    scaled = scale * image
    n_rows, n_cols = image.shape[0], text.shape[0]
    rows, cols = positive_pairs(positives)
    pos = _pair_dots(scaled, text, rows, cols)  # from the embeddings: no gradient scattered into [B, B]
    row_has = torch.zeros(n_rows, dtype=torch.bool, device=image.device).index_fill(0, rows, True)
    col_has = torch.zeros(n_cols, dtype=torch.bool, device=image.device).index_fill(0, cols, True)
    # rows (columns) without a positive take no part: weight 0
    row_weights = row_has.to(image.dtype) / row_has.sum()
    col_weights = col_has.to(image.dtype) / col_has.sum()
    all_pairs = pairwise_logsumexp_sum(scaled, text, row_weights, col_weights)
    positive_i2t = _segment_logsumexp(pos, rows, n_rows)[row_has].mean()
    positive_t2i = _segment_logsumexp(pos, cols, n_cols)[col_has].mean()
    return 0.5 * (all_pairs - positive_i2t - positive_t2i)


def siglip(image: torch.Tensor, text: torch.Tensor, positives, log_scale: torch.Tensor,
           bias: torch.Tensor, reduction: str = "batch") -> torch.Tensor:
    """SigLIP sigmoid loss: ``-sum log sigmoid(label * z) / batch`` with labels +1 / -1 (the SigLIP
    paper's normalisation), or divided by the number of logits with ``reduction="pairs"`` (SAIL's
    ``-torch.mean`` over them, model/loss.py:420).

    Written as ``sum softplus(z) - sum_positives z`` (since -log sigmoid(z) = softplus(z) - z): one
    elementwise pass over the [B, B] logits instead of building a label matrix.
    """

    scaled = log_scale.exp() * image
    rows, cols = positive_pairs(positives)
    # the positives' logits from the embeddings: no gradient scattered into a [B, B] matrix
    positive_sum = _pair_dots(scaled, text, rows, cols).sum() + bias * len(rows)
    total = pairwise_softplus_sum(scaled, text, bias) - positive_sum
    return total / (image.shape[0] * (text.shape[0] if reduction == "pairs" else 1))


def _pair_dots(a: torch.Tensor, b: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``<a[rows[p]], b[cols[p]]>`` per pair; when the pairs start with the whole diagonal (as
    :func:`batch_positive_pairs` gives them) that part needs no gather, nor a scatter backwards."""
    import torch

    n = a.shape[0]
    diagonal = torch.arange(n, device=a.device)
    if len(rows) >= n and torch.equal(rows[:n], diagonal) and torch.equal(cols[:n], diagonal):
        head = (a * b).sum(dim=1)
        if len(rows) == n:
            return head
        return torch.cat([head, (a[rows[n:]] * b[cols[n:]]).sum(dim=1)])
    return (a[rows] * b[cols]).sum(dim=1)


def positive_pairs(positives) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows, cols)`` of the positive pairs, from a boolean [B, B] mask or given as such a tuple."""
    if isinstance(positives, tuple):
        return positives
    return positives.nonzero(as_tuple=True)


def batch_positive_pairs(image_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive (image row, text row) pairs of a batch of (image, caption) rows: every row with
    itself, plus every two rows that share an image, without building a [B, B] mask.

    Rows are sorted by image, so an image's rows are contiguous: rows ``k`` apart in that order
    pair up when their images match, for ``k`` up to the largest number of captions an image has
    in the batch. That is O(B x captions per image) work, where a [B, B] comparison followed by
    ``nonzero`` costs O(B^2) (a gigabyte of mask at SAIL's batch of 32,768 with two captions each).
    """
    import torch

    diagonal = torch.arange(len(image_ids), device=image_ids.device)
    if len(image_ids) < 2:
        return diagonal, diagonal
    order = torch.argsort(image_ids, stable=True)
    ids = image_ids[order]
    rows, cols = [diagonal], [diagonal]
    k = 1
    while k < len(ids):
        same = ids[k:] == ids[:-k]
        if not bool(same.any()):  # sorted: no match at distance k means none further apart
            break
        left, right = order[:-k][same], order[k:][same]
        rows += [left, right]
        cols += [right, left]
        k += 1
    return torch.cat(rows), torch.cat(cols)


def pairwise_softplus_sum(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``softplus(a @ b.T + bias).sum()``, with gradients for ``a``, ``b`` and ``bias``.

    The [B, B] logits live only inside this function. On a CPU, ``torch.nn.functional.softplus``
    over 4096 x 4096 entries takes ~100 ms (log1p is not vectorised and every pass streams the
    whole matrix from memory), and autograd would keep the logits, then build their gradient in a
    second [B, B] matrix. Here the logits are computed by one matmul, every elementwise step runs
    on row blocks of 128k entries that stay in cache, ``softplus(x) = max(x, 0) + log(1 + exp(-|x|))``,
    and the same block is overwritten by ``sigmoid(x) = exp(min(x, 0) - log(1 + exp(-|x|)))``,
    the gradient of the sum, reusing the exponential. The backward pass is then just the two
    matmuls with that matrix; the upstream scalar scales their [B, d] results, not the [B, B] one.
    """
    import torch

    bias = bias if bias is not None else torch.zeros((), dtype=a.dtype, device=a.device)
    if a.device.type != "cpu":  # what the blocks save on a CPU, an accelerator's bandwidth gives for free
        return torch.nn.functional.softplus(a @ b.T + bias, threshold=1000).sum()
    return _pairwise_softplus_sum_function().apply(a, b, bias)


_spare_buffers: dict[tuple, torch.Tensor] = {}  # at most one free [B, B] CPU buffer


def _logits_buffer(owner: object, rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """A [rows, cols] buffer for the logits, reused across training steps on a CPU.

    A fresh 64 MiB tensor is fresh pages from the kernel: at batch 4096 first-touch page faults
    add ~12 ms to each step's logits matmul. The buffer goes back to the spare slot only when
    ``owner`` (the autograd context that saved it) is freed, so no live graph can see it reused,
    even with ``retain_graph``.
    """
    import torch

    key = (rows, cols, like.dtype)
    buffer = _spare_buffers.pop(key, None)
    if buffer is None:
        buffer = torch.empty(rows, cols, dtype=like.dtype)
    weakref.finalize(owner, _return_buffer, key, buffer)
    return buffer


def _return_buffer(key: tuple, buffer: torch.Tensor) -> None:
    _spare_buffers.clear()  # keep one: a grid with several batch sizes must not pile buffers up
    _spare_buffers[key] = buffer


BLOCK_ELEMENTS = 1 << 17  # 512 KiB of float32: a block and its temporaries stay in a 1 MiB L2


@functools.cache
def _pairwise_softplus_sum_function():
    import torch

    class PairwiseSoftplusSum(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b, bias):
            logits = torch.mm(a, b.T, out=_logits_buffer(ctx, a.shape[0], b.shape[0], a))
            # owned here: overwritten block by block with its sigmoid
            keep = any(ctx.needs_input_grad)
            total, bias_grad = 0.0, 0.0
            for block in logits.split(max(1, BLOCK_ELEMENTS // logits.shape[1])):  # float32 sums per block, float64 across blocks
                x = block + bias
                log_term = x.abs().neg_().exp_().add_(1).log_()
                total += float(x.clamp(min=0).sum()) + float(log_term.sum())
                if keep:
                    torch.clamp(x, max=0, out=block).sub_(log_term).exp_()
                    bias_grad += float(block.sum())
            ctx.save_for_backward(a, b, logits if keep else None)
            ctx.bias_grad = bias_grad
            return torch.tensor(total, dtype=a.dtype)

        @staticmethod
        def backward(ctx, grad):
            a, b, sigmoid = ctx.saved_tensors
            grad_a = (sigmoid @ b).mul_(grad) if ctx.needs_input_grad[0] else None
            grad_b = (sigmoid.T @ a).mul_(grad) if ctx.needs_input_grad[1] else None
            return grad_a, grad_b, grad * ctx.bias_grad

    return PairwiseSoftplusSum


def pairwise_logsumexp_sum(a: torch.Tensor, b: torch.Tensor, row_weights: torch.Tensor,
                           col_weights: torch.Tensor) -> torch.Tensor:
    """``row_weights @ logsumexp(L, 1) + col_weights @ logsumexp(L, 0)`` for ``L = a @ b.T``, with
    gradients for ``a`` and ``b`` (the weights are constants).

    Like :func:`pairwise_softplus_sum`, the [B, B] logits live only in here and are visited in
    cache-sized row blocks, twice: the first pass gives each block's row logsumexps and updates a
    running (max, sum) per column (the streaming logsumexp); the second overwrites the block with
    the gradient ``row_weights_i softmax_row(L)_ij + col_weights_j softmax_col(L)_ij``. Autograd
    over ``torch.logsumexp`` both ways would instead stream several [B, B] temporaries through memory.
    """
    if a.device.type != "cpu":  # as in pairwise_softplus_sum: plain autograd on accelerators
        import torch

        logits = a @ b.T
        return row_weights @ torch.logsumexp(logits, 1) + col_weights @ torch.logsumexp(logits, 0)
    return _pairwise_logsumexp_sum_function().apply(a, b, row_weights, col_weights)


@functools.cache
def _pairwise_logsumexp_sum_function():
    import torch

    class PairwiseLogsumexpSum(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b, row_weights, col_weights):
            logits = torch.mm(a, b.T, out=_logits_buffer(ctx, a.shape[0], b.shape[0], a))
            step = max(1, BLOCK_ELEMENTS // logits.shape[1])
            row_lse = torch.empty(logits.shape[0], dtype=a.dtype)
            col_max = torch.full((logits.shape[1],), float("-inf"), dtype=a.dtype)
            col_sum = torch.zeros(logits.shape[1], dtype=a.dtype)
            for start, block in zip(range(0, logits.shape[0], step), logits.split(step), strict=True):
                peak = block.amax(dim=1, keepdim=True)
                row_lse[start:start + len(block)] = (block - peak).exp_().sum(dim=1).log_().add_(peak.squeeze(1))
                new_max = torch.maximum(col_max, block.amax(dim=0))
                col_sum.mul_((col_max - new_max).exp_()).add_((block - new_max).exp_().sum(dim=0))
                col_max = new_max
            col_lse = col_sum.log_().add_(col_max)
            total = (row_weights * row_lse).sum(dtype=torch.float64) + (col_weights * col_lse).sum(dtype=torch.float64)
            keep = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
            if keep:
                col_part = torch.empty(step, logits.shape[1], dtype=a.dtype)
                for start, block in zip(range(0, logits.shape[0], step), logits.split(step), strict=True):
                    part = col_part[:len(block)]
                    torch.sub(block, col_lse, out=part).exp_().mul_(col_weights)
                    rows = slice(start, start + len(block))
                    block.sub_(row_lse[rows, None]).exp_().mul_(row_weights[rows, None]).add_(part)
            ctx.save_for_backward(a, b, logits if keep else None)
            return total.to(a.dtype)

        @staticmethod
        def backward(ctx, grad):
            a, b, gradient = ctx.saved_tensors
            grad_a = (gradient @ b).mul_(grad) if ctx.needs_input_grad[0] else None
            grad_b = (gradient.T @ a).mul_(grad) if ctx.needs_input_grad[1] else None
            return grad_a, grad_b, None, None

    return PairwiseLogsumexpSum


def make_loss(kind: str, scale_init: float | None = None, bias_init: float | None = None, *,
              reduction: str = "batch", max_scale: float | None = None) -> torch.nn.Module:
    """A loss module owning its learnable temperature / scale and bias (CLIP starts InfoNCE at scale
    1 / 0.07, SigLIP starts at scale 10 and bias -10; SAIL's presets start SigLIP at scale 20).
    ``reduction`` is SigLIP's (see :func:`siglip`); ``max_scale`` caps InfoNCE's scale inside the loss
    (100 when not given; training clamps the parameter itself where a configuration says so)."""
    import torch
    from torch import nn

    check_loss(kind)
    scale = scale_init if scale_init is not None else (1 / 0.07 if kind == "infonce" else 10.0)
    bias = bias_init if bias_init is not None else -10.0

    class ContrastiveLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.kind = kind
            self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
            self.bias = nn.Parameter(torch.tensor(bias)) if kind == "siglip" else None

        def forward(self, image, text, positives):
            if self.bias is None:
                return infonce(image, text, positives, self.log_scale, max_scale or MAX_LOGIT_SCALE)
            return siglip(image, text, positives, self.log_scale, self.bias, reduction)

    return ContrastiveLoss()


def loss_for(config: Any) -> torch.nn.Module:
    """The loss module a head configuration (:class:`~probe.align.config.ProbeConfig`) asks for."""
    return make_loss(config.loss, config.logit_scale_init, config.logit_bias_init,
                     reduction=config.siglip_reduction, max_scale=config.max_logit_scale)


def clamp_scale(loss: Any, max_scale: float | None) -> None:
    """After an optimiser step: the loss's log scale clamped to [0, ln ``max_scale``], as SAIL
    (train/train.py:120-122) and open_clip do; nothing when ``max_scale`` is None."""
    if max_scale is None:
        return
    import torch

    with torch.no_grad():
        loss.log_scale.clamp_(0, math.log(max_scale))
