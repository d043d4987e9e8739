"""What predicts the probing score? Unimodal correlates and similarity metrics against it.

Per encoder, a ``correlates`` record holds its unimodal scores on the dataset (vision kNN, linear
probe, k-means NMI; the MTEB-style text score), beside the published ``imagenet_knn`` / ``mteb_avg``
of its registry entry. Across probed pairs, each correlate and each similarity metric is compared
with the probing score by Spearman's rank correlation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.data.splits import SplitPlan
from probe.encoder_spec import EncoderSpec
from probe.features.options import ExtractOptions
from probe.features.roles import EncoderFeatures
from probe.pipeline.runner import Item
from probe.records import keys


@dataclass
class CorrelatesWork:
    """One correlates record per encoder (a :class:`~probe.pipeline.runner.PairWork` over single
    encoders); nothing to do on a dataset without class labels."""

    dataset_name: str
    plan: SplitPlan
    results_dir: Path
    options: ExtractOptions
    label: str = "correlates"

    def units(self, item: Item) -> Sequence[str]:
        if not self.plan.label_tasks:
            return ()
        if item[0].modality == "text" and not self.plan.fit.captions:  # labelled images, no captions
            return ()
        return ("correlates",)

    def path(self, item: Item, unit: str = "correlates") -> Path:
        from probe.records.store import record_path

        return record_path(self.results_dir, "correlates", self.dataset_name, item[0].name)

    def features(self, spec: EncoderSpec) -> EncoderFeatures:
        from probe.features.roles import encoder_features

        return encoder_features(spec, self.plan, self.options, roles=("fit", "eval"), with_prompts=False)

    @property
    def config(self) -> dict[str, Any]:
        return {"knn_temperature": 0.07, "knn_k": [10, 20], "linear": "standardise + logistic, C=1",
                "kmeans": "k = classes, n_init 3", "tasks": list(self.plan.label_tasks)}

    def identity(self, item: Item, unit: str = "correlates") -> str:
        """What produces an encoder's correlates record (:mod:`probe.records.identity`): its entry in
        full, the settings, and the content of the splits it is fitted and scored on."""
        from probe.records.identity import identity_digest

        return identity_digest("correlates", model=item[0].to_dict(), config=self.config,
                               fit=self.plan.fit.content_fingerprint, scored=self.plan.scored.content_fingerprint,
                               splits=self.plan.names())

    def _record(self, spec: EncoderSpec, **results: Any):
        from probe.records.schema import CorrelatesRecord, encoder_ref

        return CorrelatesRecord.new(identity=self.identity((spec,)), dataset=self.dataset_name,
                                    splits=self.plan.names(), seed=0, model=encoder_ref(spec),
                                    modality=spec.modality, config=self.config, **results)

    def failure(self, item: Item, unit: str, reason: str):
        return self._record(item[0], error=reason)

    def run(self, item: Item, features: Sequence[EncoderFeatures], units: Sequence[str]) -> Iterator[tuple[str, Any]]:
        from probe.metrics.quality import text_quality, vision_quality

        (spec,), (feats,) = item, features
        fit, scored = self.plan.fit, self.plan.scored
        x_fit, x_eval = feats.by_role["fit"], feats.by_role["eval"]
        if spec.modality == "vision":
            metrics = vision_quality(x_fit, fit.labels, x_eval, scored.labels)
        else:
            metrics = text_quality(x_fit, fit.caption_image, fit.labels, x_eval, scored.caption_image,
                                   scored.labels)
        for unit in units:
            yield unit, self._record(spec, metrics=metrics)

    def describe(self, item: Item, unit: str, record: Any) -> str:
        if not record.ok:
            return f"{item[0].name}: FAILED: {record.error}"
        shown = [k for k in (*VISION_CORRELATES.values(), *TEXT_CORRELATES.values()) if k in record.metrics]
        return f"{item[0].name}: " + ", ".join(f"{k} {record.metrics[k]:.3f}" for k in shown)


#: correlate name -> (which encoder it describes, metric key or published field)
VISION_CORRELATES = {"vision kNN@20": keys.VISION_KNN20, "vision kNN@10": keys.VISION_KNN10,
                     "vision linear probe": keys.VISION_LINEAR, "vision k-means NMI": keys.VISION_KMEANS_NMI,
                     "published ImageNet kNN": "published:imagenet_knn"}
TEXT_CORRELATES = {"text score (MTEB-style)": keys.TEXT_SCORE, "text STS": keys.TEXT_STS,
                   "text clustering": keys.TEXT_CLUSTERING, "text classification": keys.TEXT_CLASSIFICATION,
                   "MTEB (tasks run here)": keys.TEXT_MTEB, "published MTEB avg": "published:mteb_avg"}


def correlation_table(probed: dict[tuple[str, str], float], models: dict[str, dict[str, Any]],
                      similarity: dict[tuple[str, str], dict[str, float]]) -> list[dict[str, Any]]:
    """Rows ``{correlate, over, n, spearman, p_value}``: Spearman's r between each correlate and the
    probing score.

    A property of one encoder (its kNN accuracy, its text score, its published average) is compared
    over distinct encoders, each at its mean probing score over the pairs it is in (``over`` =
    "vision encoders" / "text encoders"): its several pairs repeat one value and are not independent
    evidence. A property of the pair (a similarity metric) is compared over pairs.
    ``models``: per encoder name, its correlates record metrics plus ``published:<field>`` values;
    ``similarity``: per pair, its similarity metrics.
    """
    from probe.metrics.rank import spearman

    def finite(value: Any) -> float | None:
        return None if value is None or not np.isfinite(value) else float(value)

    sources = [(name, "vision", key) for name, key in VISION_CORRELATES.items()]
    sources += [(name, "text", key) for name, key in TEXT_CORRELATES.items()]
    sources += [(key.replace("/", " ", 1), "pair", key)
                for key in sorted({k for m in similarity.values() for k in m})]
    rows = []
    for name, source, key in sources:
        if source == "pair":
            points = [(value, score) for pair, score in probed.items()
                      if (value := finite(similarity.get(pair, {}).get(key))) is not None]
        else:
            scores: dict[str, list[float]] = {}
            for pair, score in probed.items():
                scores.setdefault(pair[source == "text"], []).append(score)
            points = [(value, float(np.mean(scores[encoder]))) for encoder in sorted(scores)
                      if (value := finite(models.get(encoder, {}).get(key))) is not None]
        xs, ys = [x for x, _ in points], [y for _, y in points]
        row: dict[str, Any] = {"correlate": name, "over": "pairs" if source == "pair" else f"{source} encoders",
                               "n": len(xs), "spearman": None, "p_value": None}
        if len(xs) >= 3 and len(set(xs)) > 1:
            row["spearman"], row["p_value"] = spearman(xs, ys)
        rows.append(row)
    return rows
