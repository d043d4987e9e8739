"""A held-out split embedded by fitted heads and ranked both ways: the one path that early stopping
and final evaluation share, so both score the same queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from probe.features.paired import PairedFeatures


@dataclass
class HeldOutRanks:
    """A held-out split embedded by a probe and ranked both ways (see :func:`rank_held_out`)."""

    images: np.ndarray  # [n_images, d], zeros where the features were not finite
    image_ok: np.ndarray  # [n_images] bool
    caption_image: np.ndarray  # owner image of each caption kept
    i2t: np.ndarray  # rank of each image's best caption, -1 for images that are not queries
    t2i: np.ndarray


def embed_held_out_images(probe: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings, image_ok)``: images whose features are not finite (skipped at extraction) are
    embedded as zero vectors and marked not ok."""
    image_ok = np.isfinite(images).all(axis=1)
    return probe.embed_images(np.where(image_ok[:, None], images, 0.0)), image_ok


def rank_held_out(probe: Any, split: PairedFeatures) -> HeldOutRanks:
    """Embed a validation or test split and rank it both ways.

    Images whose features are not finite (skipped at extraction) stay in the gallery as zero
    vectors but are not queries, and their captions are left out; early stopping and the final
    evaluation go through here, so both score the same queries.
    """
    from probe.metrics.retrieval import retrieval_ranks

    keep = split.usable_pairs()
    images, image_ok = embed_held_out_images(probe, split.images)
    owner = split.caption_image[keep]
    groups = split.text_groups[keep] if split.text_groups is not None else None
    i2t, t2i = retrieval_ranks(images, probe.embed_texts(split.texts[keep]), owner, text_groups=groups)
    i2t[~image_ok] = -1
    return HeldOutRanks(images, image_ok, owner, i2t, t2i)
