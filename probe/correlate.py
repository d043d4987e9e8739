"""What predicts the probing score? Unimodal correlates and similarity metrics against it.

Per encoder, a ``correlates`` record holds its unimodal scores on the dataset (vision kNN, linear
probe, k-means NMI; the MTEB-style text score), beside the published ``imagenet_knn`` / ``mteb_avg``
of its registry entry. Across probed pairs, each correlate and each similarity metric is compared
with the probing score by Spearman's rank correlation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from probe.registry import EncoderSpec


def correlates_path(results_dir: Path, dataset: str, spec: EncoderSpec) -> Path:
    from probe.results import record_path

    return record_path(results_dir, "correlates", dataset, spec.name)


def encoder_correlates(spec: EncoderSpec, dataset: Any, results_dir: Path, extract_kwargs: dict[str, Any],
                       recompute: bool = False) -> dict[str, Any] | None:
    """The correlates record of one encoder (computed and written on a miss); None without labels."""
    from probe.metrics.quality import text_quality, vision_quality
    from probe.results import is_complete, new_record, read_record, write_record
    from probe.sweep import encoder_features, plan_splits, spec_summary

    path = correlates_path(results_dir, dataset.info.name, spec)
    if not recompute and is_complete(path):
        return read_record(path)
    splits, label_tasks = plan_splits(dataset, {"zeroshot"}, explicit_tasks=False)
    if not label_tasks:
        return None
    feats = encoder_features(spec, splits, [], extract_kwargs, roles=("fit", "eval"))
    fit, held_out = feats.by_role["fit"], feats.by_role["eval"]
    if spec.modality == "vision":
        metrics = vision_quality(fit, splits.fit.labels, held_out, splits.eval.labels)
    else:
        metrics = text_quality(fit, splits.fit.caption_image, splits.fit.labels,
                               held_out, splits.eval.caption_image, splits.eval.labels)
    record = new_record("correlates", dataset=dataset.info.name, splits=splits.names(), seed=0,
                        model=spec_summary(spec), modality=spec.modality, metrics=metrics,
                        config={"knn_temperature": 0.07, "knn_k": [10, 20], "linear": "standardise + logistic, C=1",
                                "kmeans": "k = classes, n_init 3", "tasks": label_tasks})
    write_record(path, record)
    return record


#: correlate name -> (which encoder it describes, metric key or published field)
VISION_CORRELATES = {"vision kNN@20": "vision/knn20", "vision kNN@10": "vision/knn10",
                     "vision linear probe": "vision/linear", "vision k-means NMI": "vision/kmeans_nmi",
                     "published ImageNet kNN": "published:imagenet_knn"}
TEXT_CORRELATES = {"text score (MTEB-style)": "text/score", "text STS": "text/sts",
                   "text clustering": "text/clustering", "text classification": "text/classification",
                   "published MTEB avg": "published:mteb_avg"}


def correlation_table(probed: dict[tuple[str, str], float], models: dict[str, dict[str, Any]],
                      similarity: dict[tuple[str, str], dict[str, float]]) -> list[dict[str, Any]]:
    """Rows ``{correlate, n, spearman, p_value}`` over the probed pairs that have the correlate.

    ``models``: per encoder name, its correlates record metrics plus ``published:<field>`` values;
    ``similarity``: per pair, its similarity metrics.
    """
    from probe.metrics.rank import spearman

    def value_of(pair: tuple[str, str], source: str, key: str) -> float | None:
        table = similarity.get(pair, {}) if source == "pair" else models.get(pair[source == "text"], {})
        value = table.get(key)
        return None if value is None or not np.isfinite(value) else float(value)

    sources = [(name, "vision", key) for name, key in VISION_CORRELATES.items()]
    sources += [(name, "text", key) for name, key in TEXT_CORRELATES.items()]
    sources += [(key.replace("similarity/", "similarity "), "pair", key)
                for key in sorted({k for m in similarity.values() for k in m})]
    rows = []
    for name, source, key in sources:
        xs, ys = [], []
        for pair, probing in probed.items():
            value = value_of(pair, source, key)
            if value is not None:
                xs.append(value)
                ys.append(probing)
        row: dict[str, Any] = {"correlate": name, "n": len(xs), "spearman": None, "p_value": None}
        if len(xs) >= 3 and len(set(xs)) > 1:
            row["spearman"], row["p_value"] = spearman(xs, ys)
        rows.append(row)
    return rows
