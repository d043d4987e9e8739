"""``probe run``'s work per pair: fit a grid of heads on cached features, score each, one record each.

Each encoder runs once per split (through the feature cache), so a V x T sweep costs V + T forward
passes plus V x T head fits. The pair runner (:mod:`probe.pipeline.runner`) plans, skips finished
results, records failures and keeps only the current pair's features in memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.align.config import ProbeConfig
from probe.errors import ProbeError
from probe.features.options import ExtractOptions
from probe.features.roles import EncoderFeatures
from probe.pipeline.runner import Item
from probe.pipeline.splits import SplitPlan
from probe.records import keys
from probe.registry import EncoderSpec


@dataclass
class AlignmentSweep:
    """Every (vision, text) pair x every head configuration on one split plan."""

    dataset_name: str
    plan: SplitPlan
    configs: Sequence[ProbeConfig]
    tasks: set[str]
    results_dir: Path
    options: ExtractOptions
    label: str = "alignment"

    def units(self, item: Item) -> Sequence[ProbeConfig]:
        return self.configs

    def path(self, item: Item, config: ProbeConfig) -> Path:
        from probe.records.store import record_path

        vision, text = item
        return record_path(self.results_dir, "alignment", self.dataset_name, vision.name, text.name,
                           f"{config.tag}-seed{config.seed}")

    def features(self, spec: EncoderSpec) -> EncoderFeatures:
        from probe.features.roles import encoder_features

        return encoder_features(spec, self.plan, self.options)

    def _record(self, item: Item, config: ProbeConfig, features: Sequence[EncoderFeatures] = (), **results: Any):
        from probe.records.schema import AlignmentRecord, encoder_ref

        vision, text = item
        keys_of = {side: f.keys for side, f in zip(("vision", "text"), features, strict=False)}
        return AlignmentRecord.new(dataset=self.dataset_name, protocol=self.plan.held_out.protocol,
                                   splits=self.plan.names(), seed=config.seed, config=config,
                                   vision=encoder_ref(vision), text=encoder_ref(text), tasks=sorted(self.tasks),
                                   features={"vision": keys_of.get("vision", {}), "text": keys_of.get("text", {})},
                                   **results)

    def failure(self, item: Item, config: ProbeConfig, reason: str, features: Sequence[EncoderFeatures] = ()):
        return self._record(item, config, features, error=reason)

    def run(self, item: Item, features: Sequence[EncoderFeatures], configs: Sequence[ProbeConfig]
            ) -> Iterator[tuple[ProbeConfig, Any]]:
        from probe.align.train import AlignmentProbe, PairedFeatures, fit_grid
        from probe.encoders.base import pick_device
        from probe.evaluation.evaluate import ZeroShotTask, evaluate

        vf, tf = features
        plan = self.plan

        def paired(role: str) -> PairedFeatures:
            return PairedFeatures(vf.by_role[role], tf.by_role[role], getattr(plan, role).caption_image)

        device = pick_device(self.options.device)  # heads train where the encoders ran
        start = time.perf_counter()
        probes = [AlignmentProbe(c) for c in configs]
        try:
            fit_grid(probes, paired("fit"), paired("val") if plan.val is not None else None, device=device)
        except ProbeError as exc:
            for config in configs:
                yield config, self.failure(item, config, str(exc), features)
            return
        fit_seconds = time.perf_counter() - start
        held_out = plan.held_out
        zeroshot = [ZeroShotTask(task, tf.prompts[task], len(held_out.classes[task]), held_out.labels[task])
                    for task in plan.label_tasks]
        compositional = None
        if plan.compositional is not None and plan.compositional.swap_pairs is not None:
            compositional = (paired("compositional"), plan.compositional.swap_pairs)
        for probe in probes:
            if probe.error_:
                yield probe.config, self.failure(item, probe.config, probe.error_, features)
                continue
            start = time.perf_counter()
            metrics, intervals = evaluate(probe, paired("eval"), zeroshot=zeroshot, compositional=compositional,
                                          seed=probe.config.seed)
            yield probe.config, self._record(
                item, probe.config, features, metrics=metrics, intervals=intervals, interval_level=0.95,
                training={"device": device, "epochs_run": len(probe.history_), "best_epoch": probe.best_epoch_,
                          "steps": probe.steps_, "history": probe.history_},
                timing={"fit_grid_s": round(fit_seconds, 3), "eval_s": round(time.perf_counter() - start, 3),
                        "grid_size": len(probes)})

    def describe(self, item: Item, config: ProbeConfig, record: Any) -> str:
        vision, text = item
        head = f"{vision.name} x {text.name} [{config.tag}]"
        if not record.ok:
            return f"{head}: FAILED: {record.error}"
        lo, hi = record.interval(keys.PROBING_SCORE)
        extra = "".join(f", zero-shot {k.split('/', 1)[1]} {v:.3f}" for k, v in record.metrics.items()
                        if keys.is_zeroshot_top1(k))
        return f"{head}: probing score {record.metric(keys.PROBING_SCORE):.3f} [{lo:.3f}, {hi:.3f}]{extra}"
