"""Zero-shot classification with prompt templates and template ensembling (CLIP's recipe).

A class's embedding is the mean of its L2-normalised prompt embeddings over the templates,
renormalised. An image is classified by its most similar class embedding; top-k counts the true
class as found when fewer than k other classes score at least as high (ties go against it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from probe.metrics.vectors import TIE, l2_normalize

#: Used when a dataset brings no templates of its own (a subset of CLIP's ImageNet prompts).
DEFAULT_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "a photo of the {}.", "a drawing of a {}.",
                     "a close-up photo of a {}.", "a photo of a small {}.", "a photo of a large {}.")


def template_problem(template: str) -> str | None:
    """Why ``template`` cannot make a prompt, or None: it must name the class as ``{}`` or ``{c}`` (at
    least once, nothing else in braces, braces balanced; ``{{`` is a literal brace). A template without
    the class would give every class the same prompt."""
    import string

    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return f"{exc} (a literal brace is written {{{{ or }}}})"
    bad = [name for name, spec, conv in fields if name not in ("", "c") or spec or conv]
    if bad:
        return f"it holds {{{bad[0]}}}; the class is written {{}} or {{c}}"
    if not fields:
        return "it has no {} or {c} for the class name, so every class would get the same prompt"
    return None


def check_prompt_parts(classes: Sequence[str], templates: Sequence[str], where: str = "zero-shot prompts") -> None:
    """One line naming what is wrong when classes or templates cannot make a classifier."""
    from probe.errors import ProbeError

    if not len(classes):
        raise ProbeError(f"{where}: no class names")
    if not len(templates):
        raise ProbeError(f"{where}: no prompt templates")
    for i, template in enumerate(templates):
        if not isinstance(template, str):
            raise ProbeError(f"{where}: template {i + 1} is {template!r}, not a string")
        why = template_problem(template)
        if why:
            raise ProbeError(f"{where}: template {i + 1} {template!r}: {why}")


def prompts(classes: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Class-major list: all templates of class 0, then of class 1, ..., each exactly as the template
    gives it (clip_benchmark's ``template.format(c=classname)``, metrics/zeroshot_classification.py:48
    in 1.6.2): "a photo of a {c}." with "orange" is "a photo of a orange.", as OpenAI's and
    clip_benchmark's ImageNet numbers were computed, so scores stand beside theirs.

    Templates take the class as ``{}`` or as ``{c}`` (clip_benchmark's files use the latter).
    """
    check_prompt_parts(classes, templates)
    return [t.format(c, c=c) for c in classes for t in templates]


def class_embeddings(prompt_emb: np.ndarray, n_classes: int) -> np.ndarray:
    """[n_classes * n_templates, d] class-major prompt embeddings -> [n_classes, d] ensembled."""
    per_class = l2_normalize(np.asarray(prompt_emb, dtype=np.float64)).reshape(n_classes, -1, prompt_emb.shape[1])
    return l2_normalize(per_class.mean(axis=1))


def options_per_image(n_classes: int, candidates: np.ndarray | None) -> int:
    """How many classes every image is ranked among: all of them, or the fewest of a multiple-choice
    task's per-image options (top-k with k at least that cannot miss)."""
    return n_classes if candidates is None else int(np.asarray(candidates).sum(axis=1).min())


def topk_hits(image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray,
              ks: Sequence[int] = (1, 5), candidates: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Per labelled image (label >= 0, in order): whether its class is within the top k.

    ``candidates`` ([images, classes] bool) restricts each image to its own options (a multiple-choice
    test such as ulcc's four words per picture); classes outside them never rank above anything.
    """
    labels = np.asarray(labels)
    keep = labels >= 0
    scores = np.asarray(image_emb, dtype=np.float64)[keep] @ np.asarray(class_emb, dtype=np.float64).T
    if candidates is not None:
        scores = np.where(np.asarray(candidates, dtype=bool)[keep], scores, -np.inf)
    true = scores[np.arange(keep.sum()), labels[keep]]
    rank = (scores >= true[:, None] - TIE).sum(axis=1) - 1
    return {k: rank < k for k in ks}


def mean_per_class_recall(top1_hits: np.ndarray, labels: np.ndarray) -> float:
    """The mean over the classes present of the share of their images ranked first: clip_benchmark's
    ``mean_per_class_recall`` (scikit-learn's ``balanced_accuracy_score`` of the top-1 predictions),
    DataComp's main metric for Caltech-101, FGVC Aircraft, Flowers-102 and Pets. ``top1_hits`` and
    ``labels`` are per labelled image, in the same order."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    present = counts > 0
    recall = np.bincount(labels, weights=np.asarray(top1_hits, dtype=np.float64))[present] / counts[present]
    return float(recall.mean())


def topk_accuracy(image_emb: np.ndarray, class_emb: np.ndarray, labels: np.ndarray,
                  ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Accuracy over images with a label >= 0 (unlabelled images, label -1, are left out)."""
    if not (np.asarray(labels) >= 0).any():
        return {k: float("nan") for k in ks}
    return {k: float(hits.mean()) for k, hits in topk_hits(image_emb, class_emb, labels, ks).items()}
