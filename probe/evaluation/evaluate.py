"""Score a fitted alignment probe on held-out features: retrieval, zero-shot, compositional.

Metric keys are namespaced (``retrieval/i2t_R@1``, ``zeroshot/shape_top1``,
``compositional/group``, ``alignment/probing_score``) so records from different tasks merge into
one table without clashes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from probe.align.train import AlignmentProbe, PairedFeatures
from probe.evaluation.held_out import rank_held_out
from probe.records import keys


@dataclass
class ZeroShotTask:
    """One label task: class-major prompt features (classes x templates) and the images' labels."""

    name: str
    prompt_features: np.ndarray
    n_classes: int
    labels: np.ndarray


def evaluate(probe: AlignmentProbe, test: PairedFeatures, *, zeroshot: Sequence[ZeroShotTask] = (),
             compositional: tuple[PairedFeatures, np.ndarray] | None = None,
             n_boot: int = 1000, seed: int = 0) -> tuple[dict[str, float], dict[str, list[float]]]:
    """``(metrics, confidence_intervals)`` of ``probe`` on the held-out features."""
    from probe.metrics.compositional import winoground_scores
    from probe.metrics.retrieval import metrics_from_ranks, probing_score_ci
    from probe.metrics.zeroshot import class_embeddings, topk_accuracy

    ranked = rank_held_out(probe, test)
    images, image_ok = ranked.images, ranked.image_ok
    metrics = {(keys.PROBING_SCORE if key == "probing_score" else keys.retrieval(key)): value
               for key, value in metrics_from_ranks(ranked.i2t, ranked.t2i).items()}
    intervals = {keys.PROBING_SCORE: list(probing_score_ci(ranked.i2t, ranked.t2i, ranked.caption_image,
                                                                  n_boot=n_boot, seed=seed))}
    for task in zeroshot:
        classes = class_embeddings(probe.embed_texts(task.prompt_features), task.n_classes)
        labels = np.where(image_ok, task.labels, -1)
        ks = (1, 5) if task.n_classes > 5 else (1,)
        for k, value in topk_accuracy(images, classes, labels, ks).items():
            metrics[keys.zeroshot(task.name, k)] = value
    if compositional is not None:
        pairs, swap = compositional
        scores = winoground_scores(probe.embed_images(pairs.images), probe.embed_texts(pairs.texts),
                                   pairs.caption_image, swap)
        metrics |= {keys.compositional(k): v for k, v in scores.items()}
    return metrics, intervals
