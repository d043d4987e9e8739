"""Image <-> text retrieval Recall@k with several captions per image, on embeddings.

A query counts as a hit at k if one of its positives is in the top k. Ties are broken against the
query: a negative scoring *equal* to the best positive (within float noise, :data:`~probe.metrics.vectors.TIE`)
ranks above it. So a collapsed head that
gives every pair the same score gets Recall@k = 0, not 1 (``torch.topk`` would pick by index).

The score matrix is computed once and never held whole: captions go through in chunks, each chunk
giving exact caption->image ranks and updating a short running top list per image, so 5k images x
25k captions needs a few hundred MB and one matmul's time (CLIP_benchmark's ``recall_at_k`` builds
a one-hot [queries, k, candidates] tensor per k and direction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from probe.metrics.vectors import TIE

KS = (1, 5, 10)


def _tensor(x: Any):
    import torch

    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()


def ranks_of_best_positive(scores, positives) -> np.ndarray:
    """Per query (row): number of negatives scoring >= its best positive (-1 if it has none)."""
    import torch

    scores, positives = _tensor(scores), torch.as_tensor(positives, dtype=torch.bool)
    best = scores.masked_fill(~positives, float("-inf")).amax(dim=1, keepdim=True)
    rank = ((scores >= best - TIE) & ~positives).sum(dim=1)
    return torch.where(positives.any(dim=1), rank, -1).numpy()


def recall_from_ranks(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[int, float]:
    valid = ranks >= 0
    return {k: float((ranks[valid] < k).mean()) if valid.any() else float("nan") for k in ks}


def recall_at_k(scores, positives, ks: Sequence[int] = KS) -> dict[int, float]:
    """Recall@k of a dense ``[queries, candidates]`` score matrix and boolean positives mask."""
    return recall_from_ranks(ranks_of_best_positive(scores, positives), ks)


def retrieval_ranks(image_emb, text_emb, caption_image, chunk: int = 2048, max_k: int = max(KS),
                    text_groups=None) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of the best positive for every image query (i2t) and every caption query (t2i).

    ``image_emb`` [Ni, d] and ``text_emb`` [Nt, d] are compared by dot product (normalise first for
    cosine); ``caption_image[j]`` is the image of caption ``j``. The [Nt, Ni] score matrix is
    computed once, in chunks of captions: each chunk gives its captions' exact t2i ranks and updates
    every image's running top list of captions, deep enough (``max_k`` + most captions of one
    image) that i2t ranks below ``max_k`` are exact; larger i2t ranks are reported as that depth.
    Images without captions get -1.

    ``text_groups[j]`` (optional) numbers caption texts, equal for identical texts. Identical texts
    are interchangeable: a caption whose text equals one of image ``i``'s captions is a positive for
    ``i``, and a caption query is answered by every image that has that exact text. Without this, a
    templated dataset (one caption text per class) scores i2t R@k = 0, since the duplicates of the
    right caption tie with it and ties count against the query.
    """
    import torch

    images, texts = _tensor(image_emb), _tensor(text_emb)
    owner = torch.as_tensor(np.asarray(caption_image), dtype=torch.long)
    n_images, n_texts = images.shape[0], texts.shape[0]
    shared = _SharedTexts(owner, text_groups, n_images) if text_groups is not None else None
    if shared is not None and not shared.any:
        shared = None  # no text is shared between images: the plain path gives the same ranks
    per_image = torch.bincount(owner, minlength=n_images)
    depth = min(n_texts, max_k + int(per_image.max()) if n_texts else 0)
    top_values = torch.full((n_images, depth), float("-inf"))
    top_index = torch.full((n_images, depth), -1, dtype=torch.long)
    t2i = np.empty(n_texts, dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, n_texts, chunk):
            stop = min(start + chunk, n_texts)
            scores = images @ texts[start:stop].T  # [Ni, c]: the only matmul
            if shared is None:
                own = scores.gather(0, owner[None, start:stop]).squeeze(0)
                t2i[start:stop] = ((scores >= own[None, :] - TIE).sum(dim=0) - 1).numpy()
            else:
                t2i[start:stop] = shared.caption_ranks(scores, start, stop)
            values, index = scores.topk(min(depth, stop - start), dim=1)
            merged_values = torch.cat([top_values, values], dim=1)
            merged_index = torch.cat([top_index, index + start], dim=1)
            top_values, keep = merged_values.topk(depth, dim=1)
            top_index = merged_index.gather(1, keep)
        if shared is None:
            positive = (owner[top_index.clamp(min=0)] == torch.arange(n_images)[:, None]) & (top_index >= 0)
        else:
            positive = shared.is_positive(top_index) & (top_index >= 0)
        best = top_values.masked_fill(~positive, float("-inf")).amax(dim=1, keepdim=True)
        rank = ((top_values >= best - TIE) & ~positive).sum(dim=1)
        rank = torch.where(positive.any(dim=1), rank, depth)  # best positive below the list: rank >= depth
        i2t = torch.where(per_image > 0, rank, -1).numpy()
    return i2t, t2i


class _SharedTexts:
    """Which (image, caption) pairs are positives when identical caption texts are interchangeable.

    An image's positives are the captions whose text group is among its own captions' groups; held
    as sorted ``image * groups + group`` keys, so membership is one ``isin``. A caption's positive
    images are the images of its group, kept per group in CSR form for the vectorised t2i ranks.
    """

    def __init__(self, owner, text_groups, n_images: int):
        import torch

        self.group = torch.as_tensor(np.asarray(text_groups), dtype=torch.long)
        self.n_groups = int(self.group.max()) + 1 if len(self.group) else 1
        self.keys = torch.unique(owner * self.n_groups + self.group)  # sorted (image, group) memberships
        group_of_key, image_of_key = self.keys % self.n_groups, self.keys // self.n_groups
        order = torch.argsort(group_of_key, stable=True)
        self.group_images = image_of_key[order]  # images of group 0, then of group 1, ...
        counts = torch.bincount(group_of_key, minlength=self.n_groups)
        self.starts = torch.cumsum(counts, 0) - counts
        self.counts = counts
        self.any = bool((counts > 1).any())

    def is_positive(self, caption_index):
        """``caption_index`` [Ni, depth] (per image row) -> bool: that caption's text is one of the row image's."""
        import torch

        rows = torch.arange(caption_index.shape[0])[:, None]
        keys = rows * self.n_groups + self.group[caption_index.clamp(min=0)]
        return torch.isin(keys, self.keys)

    def caption_ranks(self, scores, start: int, stop: int) -> np.ndarray:
        """t2i ranks of captions ``start:stop`` from their [Ni, c] scores: negatives scoring at least
        the best image that has the caption's text."""
        import torch

        groups = self.group[start:stop]
        counts = self.counts[groups]
        column = torch.repeat_interleave(torch.arange(stop - start), counts)
        offset = torch.arange(len(column)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        image = self.group_images[self.starts[groups][column] + offset]
        positive_scores = scores[image, column]
        best = torch.full((stop - start,), float("-inf")).scatter_reduce(0, column, positive_scores, "amax")
        at_least = (scores >= best[None, :] - TIE).sum(dim=0)
        positives_at_least = torch.zeros(stop - start, dtype=torch.long).index_add(
            0, column, (positive_scores >= best[column] - TIE).long())
        return (at_least - positives_at_least).numpy()


def retrieval_metrics(image_emb, text_emb, caption_image, ks: Sequence[int] = KS) -> dict[str, float]:
    """``{'i2t_R@1': ..., 't2i_R@10': ..., 'probing_score': mean of the two R@10}``."""
    return metrics_from_ranks(*retrieval_ranks(image_emb, text_emb, caption_image), ks)


def metrics_from_ranks(i2t: np.ndarray, t2i: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """Recall@k both ways (queries with rank -1 left out) and the probing score when 10 is in ``ks``."""
    out = {f"i2t_R@{k}": v for k, v in recall_from_ranks(i2t, ks).items()}
    out |= {f"t2i_R@{k}": v for k, v in recall_from_ranks(t2i, ks).items()}
    if 10 in ks:
        out["probing_score"] = 0.5 * (out["i2t_R@10"] + out["t2i_R@10"])
    return out


def probing_score_ci(i2t: np.ndarray, t2i: np.ndarray, caption_image, *, k: int = 10, n_boot: int = 1000,
                     level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of the probing score, resampling images together with their captions.

    The gallery stays fixed (resampling it would change how hard retrieval is); only which queries
    are asked varies. Images and their captions move together because their hits are correlated.
    """
    owner = np.asarray(caption_image)
    n = len(i2t)
    hit_i = (i2t < k) & (i2t >= 0)
    has_i = i2t >= 0
    hit_t = np.bincount(owner, weights=(t2i < k).astype(float), minlength=n)
    count_t = np.bincount(owner, minlength=n).astype(float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    # counts[b, i]: how often image i was drawn in resample b
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n), draws.ravel()), 1)
    r_i = counts @ hit_i / np.maximum(counts @ has_i, 1)
    r_t = counts @ hit_t / np.maximum(counts @ count_t, 1)
    scores = 0.5 * (r_i + r_t)
    alpha = (1 - level) / 2
    return float(np.quantile(scores, alpha)), float(np.quantile(scores, 1 - alpha))
