"""Score a fitted alignment probe on held-out features: retrieval, zero-shot, compositional.

Metric keys are namespaced (``retrieval/i2t_R@1``, ``zeroshot/shape_top1``,
``compositional/group``, ``alignment/probing_score``) so records from different tasks merge into
one table without clashes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from probe.evaluation.held_out import embed_held_out_images, rank_held_out
from probe.features.paired import PairedFeatures
from probe.records import keys

log = logging.getLogger("probe.evaluation")

if TYPE_CHECKING:
    from probe.data.splits import Target
    from probe.features.roles import EncoderFeatures


@dataclass
class ZeroShotTask:
    """One label task: class-major prompt features (classes x templates) and the images' labels."""

    name: str
    prompt_features: np.ndarray
    n_classes: int
    labels: np.ndarray
    #: [images, classes] bool: each image's own options (a multiple-choice task); None = every class
    candidates: np.ndarray | None = None


def evaluate(probe: Any, test: PairedFeatures, *, zeroshot: Sequence[ZeroShotTask] = (),
             compositional: tuple[PairedFeatures, np.ndarray] | None = None, retrieval: bool = True,
             n_boot: int = 1000, seed: int = 0) -> tuple[dict[str, float], dict[str, list[float]]]:
    """``(metrics, confidence_intervals)`` of ``probe`` (anything with ``embed_images`` and
    ``embed_texts``: a fitted probe or a saved aligned model) on the held-out features."""
    from probe.metrics.bootstrap import per_class_recall_interval, ratio_interval
    from probe.metrics.compositional import winoground_hits
    from probe.metrics.retrieval import KS, metrics_from_ranks, probing_score_ci
    from probe.metrics.zeroshot import class_embeddings, mean_per_class_recall, options_per_image, topk_hits

    def interval(num: np.ndarray, den: np.ndarray | None = None) -> list[float]:
        return list(ratio_interval(num, den, n_boot=n_boot, seed=seed))

    metrics: dict[str, float] = {}
    intervals: dict[str, list[float]] = {}
    if retrieval:
        ranked = rank_held_out(probe, test)
        images, image_ok = ranked.images, ranked.image_ok
        metrics |= {(keys.PROBING_SCORE if key == "probing_score" else keys.retrieval(key)): value
                    for key, value in metrics_from_ranks(ranked.i2t, ranked.t2i).items()}
        intervals[keys.PROBING_SCORE] = list(probing_score_ci(ranked.i2t, ranked.t2i, ranked.caption_image,
                                                              n_boot=n_boot, seed=seed))
        # recall intervals resample images with their captions, as the probing score's does
        n_images = len(ranked.i2t)
        queries = (ranked.i2t >= 0).astype(float)
        captions = np.bincount(ranked.caption_image, minlength=n_images).astype(float)
        for k in KS:
            intervals[keys.retrieval(f"i2t_R@{k}")] = interval(
                ((ranked.i2t >= 0) & (ranked.i2t < k)).astype(float), queries)
            hits = np.bincount(ranked.caption_image, weights=(ranked.t2i < k).astype(float), minlength=n_images)
            intervals[keys.retrieval(f"t2i_R@{k}")] = interval(hits, captions)
    else:  # classification only: no captions to rank
        images, image_ok = embed_held_out_images(probe, test.images)
    for task in zeroshot:
        classes = class_embeddings(probe.embed_texts(task.prompt_features), task.n_classes)
        labels = np.where(image_ok, task.labels, -1)
        ks = (1, 5) if options_per_image(task.n_classes, task.candidates) > 5 else (1,)
        if not (labels >= 0).any():  # nothing to score: no number, rather than a NaN that would rank
            log.warning("zero-shot %s: no readable test image has a label; its top-k accuracy is not reported",
                        task.name)
            continue
        for k, hits in topk_hits(images, classes, labels, ks, candidates=task.candidates).items():
            metrics[keys.zeroshot(task.name, k)] = float(hits.mean())
            intervals[keys.zeroshot(task.name, k)] = interval(hits.astype(float))
            if k == 1:
                key, kept = keys.zeroshot_per_class_recall(task.name), labels[labels >= 0]
                metrics[key] = mean_per_class_recall(hits, kept)
                intervals[key] = list(per_class_recall_interval(hits, kept, n_boot=n_boot, seed=seed))
    if compositional is not None:
        pairs, swap = compositional
        kept, left_out = scoreable_pairs(swap, pairs.images)
        if left_out:  # a pair with an unreadable image cannot be scored: out of the denominator, counted
            log.warning("compositional: %d of %d swap pair(s) left out (an image could not be read); the scores "
                        "are over the other %d", left_out, len(swap), len(kept))
        if len(kept):
            per_pair = winoground_hits(probe.embed_images(pairs.images), probe.embed_texts(pairs.texts),
                                       pairs.caption_image, kept)
            for name, hits in per_pair.items():
                metrics[keys.compositional(name)] = float(np.mean(hits))
                intervals[keys.compositional(name)] = interval(hits.astype(float))
    return metrics, intervals


def scoreable_pairs(swap_pairs: np.ndarray, image_features: Any) -> tuple[np.ndarray, int]:
    """``(swap pairs whose two images were read, how many were left out)``: an unreadable image's
    features are NaN, and scoring its pair as a miss would bias every score down."""
    swap = np.asarray(swap_pairs, dtype=np.int64).reshape(-1, 2)
    readable = np.asarray(np.isfinite(np.asarray(image_features, dtype=np.float32)).all(axis=1), dtype=bool)
    keep = readable[swap].all(axis=1) if len(swap) else np.zeros(0, dtype=bool)
    return swap[keep], int((~keep).sum())


def dropped_counts(roles: dict[str, Any], vision: EncoderFeatures | None) -> dict[str, dict[str, int]]:
    """Per split role, what its reader dropped, the images the vision encoder could not read and the
    swap pairs left out of the compositional scores because of them: what a record's ``dropped`` says."""
    out: dict[str, dict[str, int]] = {}
    for role, data in roles.items():
        counts = dict(data.dropped)
        if vision is not None and vision.skipped.get(role):
            counts["unreadable images (skipped at extraction)"] = vision.skipped[role]
            if data.swap_pairs is not None and role in vision.by_role:
                _, left_out = scoreable_pairs(data.swap_pairs, vision.by_role[role])
                if left_out:
                    counts["swap pairs left out (an image unreadable)"] = left_out
        if counts:
            out[role] = counts
    return out


def score_target(embedder: Any, target: Target, vision: EncoderFeatures, text: EncoderFeatures, seed: int = 0
                 ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Every task of one benchmark target from both encoders' features (roles as the target names them)."""
    def paired(base: str, data: Any) -> PairedFeatures:
        role = target.role(base)
        texts = text.by_role.get(role)
        if texts is None:  # no captions to encode (classification benchmark)
            texts = np.zeros((0, 1), dtype=np.float32)
        return PairedFeatures(vision.by_role[role], texts, data.caption_image, data.caption_groups)

    zeroshot = [ZeroShotTask(task, text.prompts[target.role(f"prompts-{task}")], len(target.eval.classes[task]),
                             target.eval.labels[task], target.eval.candidates.get(task))
                for task in target.label_tasks]
    compositional = None
    if target.compositional is not None and target.compositional.swap_pairs is not None:
        compositional = (paired("compositional", target.compositional), target.compositional.swap_pairs)
    return evaluate(embedder, paired("eval", target.eval), zeroshot=zeroshot, compositional=compositional,
                    retrieval=target.retrieval, seed=seed)


#: Winoground's scores by chance (Thrush et al. 2022, Table 1 "Random chance": text 25.00, image 25.00,
#: group 16.67): each of the pair's two comparisons is a coin flip, and the group score needs all four
COMPOSITIONAL_CHANCE = {"text": 0.25, "image": 0.25, "group": 1 / 6}


def chance_levels(target: Target) -> dict[str, float]:
    """What each zero-shot and compositional metric of ``target`` scores by chance (a random ranking of
    each image's options): top-k, min(k, options) / options averaged over the labelled images; mean
    per-class recall, each class's mean of 1 / options averaged over the classes; Winoground's scores,
    :data:`COMPOSITIONAL_CHANCE`. Retrieval has none here: its recalls depend on the gallery."""
    from probe.metrics.zeroshot import options_per_image

    out: dict[str, float] = {}
    data = target.eval
    for task in target.label_tasks:
        labels, n_classes = np.asarray(data.labels[task]), len(data.classes[task])
        candidates = data.candidates.get(task)
        keep = labels >= 0
        if not keep.any():
            continue
        options = (np.full(int(keep.sum()), n_classes) if candidates is None
                   else np.asarray(candidates)[keep].sum(axis=1)).astype(float)
        for k in ((1, 5) if options_per_image(n_classes, candidates) > 5 else (1,)):
            out[keys.zeroshot(task, k)] = float(np.mean(np.minimum(k, options) / options))
        kept = labels[keep]
        out[keys.zeroshot_per_class_recall(task)] = float(np.mean([np.mean(1 / options[kept == c])
                                                                   for c in np.unique(kept)]))
    if target.compositional is not None and target.compositional.swap_pairs is not None:
        out |= {keys.compositional(name): value for name, value in COMPOSITIONAL_CHANCE.items()}
    return out


def chance_field(target: Target) -> dict[str, Any]:
    """A record's ``chance`` field as keyword arguments: present only where some metric has a chance level."""
    found = chance_levels(target)
    return {"chance": found} if found else {}


def saturated_metrics(target: Target, metrics: dict[str, float]) -> dict[str, str]:
    """Metrics of ``target`` that cannot come out lower than perfect, with the reason.

    Recall@k over at most k candidates is 1 whatever the embeddings (text->image with at most k test
    images; image->text with at most k distinct caption texts, since identical texts count as one),
    and so is the probing score built on R@10; zero-shot top-k over at most k class prompts is 1.
    Such a number says nothing about the pair, so records and the report flag it.
    """
    from probe.metrics.retrieval import KS
    from probe.metrics.zeroshot import options_per_image

    data, out = target.eval, {}
    if target.retrieval and data.captions:
        n_images, n_texts = data.n_images, len(set(data.captions))
        for k in KS:
            if n_images <= k:
                out[keys.retrieval(f"t2i_R@{k}")] = f"only {n_images} test images: every caption finds its image in the top {k}"
            if n_texts <= k:
                out[keys.retrieval(f"i2t_R@{k}")] = f"only {n_texts} distinct test captions: every image finds one in the top {k}"
        reasons = [out[key] for key in (keys.retrieval("t2i_R@10"), keys.retrieval("i2t_R@10")) if key in out]
        if reasons:
            out[keys.PROBING_SCORE] = "; ".join(reasons)
    for task in target.label_tasks:
        n_classes = options_per_image(len(data.classes[task]), data.candidates.get(task))
        for k in (1, 5):
            if n_classes <= k:
                out[keys.zeroshot(task, k)] = f"only {n_classes} class(es) of {task!r}: top-{k} cannot miss"
    return {key: why for key, why in out.items() if key in metrics}
