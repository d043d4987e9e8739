"""Metric keys: the namespaced strings records, tables, plots and rankings agree on.

Keys are ``<namespace>/<name>`` so records of different tasks merge into one table without
clashes. Every module that reads or writes a metric takes its key from here; a typo is then an
``AttributeError`` at import time instead of a silently empty column.
"""

from __future__ import annotations

from typing import Any

PROBING_SCORE = "alignment/probing_score"
#: a pair's probing score forecast from training-free signals (``probe forecast``), shown beside the measured
FORECAST = "forecast/probing_score"
#: Mean of the zero-shot top-1 accuracies over a record's label tasks (a report column).
ZEROSHOT_MEAN_TOP1 = "zeroshot/top1"
COMPOSITIONAL_GROUP = "compositional/group"
VISION_KNN20 = "vision/knn20"
VISION_KNN10 = "vision/knn10"
VISION_LINEAR = "vision/linear"
VISION_KMEANS_NMI = "vision/kmeans_nmi"
TEXT_SCORE = "text/score"
TEXT_STS = "text/sts"
TEXT_CLUSTERING = "text/clustering"
TEXT_CLASSIFICATION = "text/classification"
#: the mean main score of the MTEB tasks run for a text encoder (``text/mteb:<task>`` per task)
TEXT_MTEB = "text/mteb"
SIMILARITY_METRICS = ("mutual_knn", "cka", "unbiased_cka", "cknna", "svcca")


def retrieval(name: str) -> str:
    """``retrieval('i2t_R@10')`` -> ``retrieval/i2t_R@10``."""
    return f"retrieval/{name}"


def zeroshot(task: str, k: int) -> str:
    return f"zeroshot/{task}_top{k}"


def zeroshot_per_class_recall(task: str) -> str:
    """``zeroshot/<task>_mean_per_class_recall``: clip_benchmark's balanced top-1 accuracy."""
    return f"zeroshot/{task}_mean_per_class_recall"


def main_score(metrics: dict[str, float], main_metric: str) -> tuple[str, float] | None:
    """The score a suite averages for a benchmark whose source names its main metric (DataComp's
    ``tasklist.yml``): ``top1`` (the mean zero-shot top-1 over its tasks), ``mean_per_class_recall``,
    ``mean_recall@1`` (of image-to-text and text-to-image); ``None`` where the record lacks it."""
    if main_metric == "mean_recall@1":
        both = [metrics.get(retrieval(f"{side}_R@1")) for side in ("i2t", "t2i")]
        return None if None in both else ("retrieval/mean_R@1", (both[0] + both[1]) / 2)  # type: ignore[operator]
    if main_metric == "mean_per_class_recall":
        values = [v for k, v in metrics.items() if k.startswith("zeroshot/") and k.endswith("_mean_per_class_recall")]
        return ("zeroshot/mean_per_class_recall", sum(values) / len(values)) if values else None
    top1 = [v for k, v in metrics.items() if is_zeroshot_top1(k)]
    return (ZEROSHOT_MEAN_TOP1, sum(top1) / len(top1)) if top1 else None


def is_zeroshot_top1(key: str) -> bool:
    """A per-task zero-shot top-1 key (not the report's mean over tasks)."""
    return key.startswith("zeroshot/") and key.endswith("_top1") and key != ZEROSHOT_MEAN_TOP1


def compositional(score: str) -> str:
    return f"compositional/{score}"


def similarity(metric: str) -> str:
    """``similarity('cka')`` -> ``similarity/cka``; unknown metrics are refused by the callers' checks."""
    return f"similarity/{metric}"


def quality(modality: str, name: str) -> str:
    """Unimodal scores: ``quality('vision', 'knn20')`` -> ``vision/knn20``."""
    return f"{modality}/{name}"


def interval_bounds(key: str) -> tuple[str, str]:
    """Column names of a metric's interval in flat tables: ``<key>_lo``, ``<key>_hi``."""
    return f"{key}_lo", f"{key}_hi"


#: The selection metric rankings and plots use unless told otherwise.
DEFAULT_SELECTION = similarity("mutual_knn")


def headline(metrics: dict[str, float], intervals: dict[str, tuple[float, float]] | None = None) -> str:
    """The scores a person looks at first, in one line: the probing score with its interval where
    retrieval was scored, every zero-shot top-1, and the Winoground group score."""
    parts = []
    if PROBING_SCORE in metrics:
        bounds = (intervals or {}).get(PROBING_SCORE)
        parts.append(f"probing score {metrics[PROBING_SCORE]:.3f}"
                     + (f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else ""))
    parts += [f"zero-shot {k.split('/', 1)[1]} {v:.3f}" for k, v in metrics.items() if is_zeroshot_top1(k)]
    if COMPOSITIONAL_GROUP in metrics:
        parts.append(f"Winoground group {metrics[COMPOSITIONAL_GROUP]:.3f}")
    return ", ".join(parts)


def primary(metrics: dict[str, float]) -> tuple[str, float] | None:
    """The one score a benchmark is ranked by: the probing score where retrieval was scored, else the
    mean zero-shot top-1 over label tasks, else the Winoground group score."""
    if PROBING_SCORE in metrics:
        return PROBING_SCORE, metrics[PROBING_SCORE]
    top1 = [v for k, v in metrics.items() if is_zeroshot_top1(k)]
    if top1:
        return ZEROSHOT_MEAN_TOP1, sum(top1) / len(top1)
    if COMPOSITIONAL_GROUP in metrics:
        return COMPOSITIONAL_GROUP, metrics[COMPOSITIONAL_GROUP]
    return None


def primary_interval(metrics: dict[str, float], intervals: dict[str, Any] | None
                     ) -> tuple[str, float, float | None, float | None] | None:
    """``(metric, value, low, high)`` of the primary score (:func:`primary`) with its interval; a mean
    zero-shot top-1 takes its task's interval when there is one task, else has none."""
    found = primary(metrics)
    if found is None:
        return None
    metric, value = found
    source = metric
    if metric == ZEROSHOT_MEAN_TOP1:
        tasks = [key for key in metrics if is_zeroshot_top1(key)]
        source = tasks[0] if len(tasks) == 1 else ""
    low, high = (intervals or {}).get(source, (None, None))
    return metric, value, low, high
