"""``probe run``'s work per pair: fit a grid of heads on cached features, score each on every
benchmark of the plan, one record per (head configuration, benchmark).

Each encoder runs once per split (through the feature cache), so a V x T sweep costs V + T forward
passes plus V x T head fits; a fit is scored on every benchmark without refitting. The pair runner
(:mod:`probe.pipeline.runner`) plans, skips finished results, records failures and keeps only the
current pair's features in memory.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.align.config import ProbeConfig
from probe.data.splits import Role, SplitPlan, Target
from probe.encoder_spec import EncoderSpec
from probe.errors import ProbeError
from probe.features.options import ExtractOptions
from probe.features.roles import EncoderFeatures
from probe.pipeline.runner import Item
from probe.records import keys

log = logging.getLogger("probe.align")

#: One result: a head configuration scored on one benchmark (by the target's key).
Unit = tuple[ProbeConfig, str]


def alignment_path(results_dir: Path, corpus: str, vision: str, text: str, config: ProbeConfig,
                   benchmark: str) -> Path:
    """Where a result goes: ``<v>__<t>__<config>-seed<n>.json`` for the corpus's own test split (the
    in-domain result, however it was asked for), with ``__on-<benchmark>`` for any other benchmark."""
    from probe.records.store import record_path

    parts = [vision, text, config.run_tag] + ([] if benchmark == corpus else [f"on-{benchmark}"])
    return record_path(results_dir, "alignment", corpus, *parts)


@dataclass
class AlignmentSweep:
    """Every (vision, text) pair x every head configuration x every benchmark of one split plan."""

    dataset_name: str
    plan: SplitPlan
    configs: Sequence[ProbeConfig]
    tasks: set[str]
    results_dir: Path
    options: ExtractOptions
    save_models: bool = True
    label: str = "alignment"
    _warned: set[str] = field(default_factory=set)  # benchmarks whose saturated metrics were announced
    _fitted: dict[str, Any] = field(default_factory=dict)  # corpus-fitted text encoders, by entry name

    def units(self, item: Item) -> Sequence[Unit]:
        return [(config, target.key) for config in self.configs for target in self.plan.targets]

    def _target(self, key: str) -> Target:
        return next(t for t in self.plan.targets if t.key == key)

    def path(self, item: Item, unit: Unit) -> Path:
        (vision, text), (config, key) = item, unit
        return alignment_path(self.results_dir, self.dataset_name, vision.name, text.name, config,
                              self._target(key).benchmark)

    def identity(self, item: Item, unit: Unit) -> str:
        """What produces this unit's record (:mod:`probe.records.identity`)."""
        from probe.records.identity import pair_identity

        (vision, text), (config, key) = item, unit
        target = self._target(key)
        return pair_identity("alignment", vision, text, config, self.corpus, target,
                             target.protocol(self.dataset_name), self.tasks)

    @property
    def token_heads(self) -> bool:
        """Whether the heads read every output token (then every configuration does: :func:`check_heads_mix`)."""
        from probe.align.config import TOKEN_HEADS

        return any(config.head in TOKEN_HEADS for config in self.configs)

    def feature_spec(self, spec: EncoderSpec) -> EncoderSpec:
        """The cache entry the heads read of ``spec``: its pooled output, or its token rows for token heads."""
        if not self.token_heads:
            return spec
        from probe.align.token_heads import TEXT_TOKENS
        from probe.encoders.tokens import token_spec

        return token_spec(spec, TEXT_TOKENS)

    def features(self, spec: EncoderSpec) -> EncoderFeatures:
        from probe.features.roles import encoder_features

        return encoder_features(self.feature_spec(spec), self.plan, self.options, streamed_roles=("fit",))

    def _record(self, item: Item, unit: Unit, features: Sequence[EncoderFeatures] = (), **results: Any):
        from probe.records.schema import AlignmentRecord, encoder_ref, preset_changes

        (vision, text), (config, key) = item, unit
        plan, target = self.plan, self._target(key)

        def mine(role: str) -> bool:  # the record names the cache entries its numbers came from
            return Role.parse(role).serves(key)

        used = {side: {r: k for r, k in f.keys.items() if mine(r)} for side, f in zip(("vision", "text"), features,
                                                                                     strict=False)}
        from probe.evaluation.evaluate import dropped_counts

        dropped = dropped_counts({r: d for r, d in plan.roles().items() if mine(r)}, features[0] if features else None)
        if dropped:
            results["dropped"] = dropped
        return AlignmentRecord.new(
            identity=self.identity(item, unit), dataset=self.dataset_name, protocol=target.protocol(self.dataset_name), splits=plan.names(target),
            seed=config.seed, corpus=self.corpus, benchmark=target.reference(),
            config=config, vision=encoder_ref(vision), text=encoder_ref(text), tasks=sorted(self.tasks),
            features={"vision": used.get("vision", {}), "text": used.get("text", {})}, **results, **preset_changes(config))

    @functools.cached_property
    def corpus(self) -> dict[str, Any]:
        """What the heads were fitted on (computed once per sweep)."""
        return self.plan.corpus_ref(self.dataset_name)

    def failure(self, item: Item, unit: Unit, reason: str, features: Sequence[EncoderFeatures] = ()):
        return self._record(item, unit, features, error=reason)

    def run(self, item: Item, features: Sequence[EncoderFeatures], units: Sequence[Unit]
            ) -> Iterator[tuple[Unit, Any]]:
        from probe.align.token_heads import FreezeAlignProbe, token_width_of
        from probe.align.train import AlignmentProbe, fit_grid
        from probe.encoders.base import pick_device
        from probe.evaluation.evaluate import chance_field, saturated_metrics, score_target
        from probe.features.paired import PairedFeatures

        vf, tf = features
        plan = self.plan

        def paired(role: str, data: Any) -> PairedFeatures:
            return PairedFeatures(vf.by_role[role], tf.by_role[role], data.caption_image, data.caption_groups)

        configs = list(dict.fromkeys(config for config, _ in units))
        device = pick_device(self.options.device)  # heads train where the encoders ran
        start = time.perf_counter()
        widths = (token_width_of(self.feature_spec(item[0])), token_width_of(self.feature_spec(item[1]))) \
            if self.token_heads else (0, 0)
        probes: list[Any] = [FreezeAlignProbe(c, widths) if self.token_heads else AlignmentProbe(c) for c in configs]
        from tqdm.auto import tqdm

        from probe.features.batches import bar_label

        bar = tqdm(total=max(c.epochs for c in configs), desc=bar_label(f"fitting {item[0].name} x {item[1].name}"),
                   unit=" epoch", leave=False, disable=None if self.options.progress else True)

        def progress(epoch: int, epochs: int, status: str) -> None:  # the epoch bar: where the fit is
            bar.total, bar.n = epochs, epoch
            bar.set_postfix_str(status)

        try:
            with bar:
                val = paired("val", plan.val) if plan.val is not None else None
                if self.token_heads:
                    for probe in probes:
                        probe.fit(paired("fit", plan.fit), val, device=device, progress=progress)
                else:
                    fit_grid(probes, paired("fit", plan.fit), val, device=device, progress=progress)
        except ProbeError as exc:
            for unit in units:
                yield unit, self.failure(item, unit, str(exc), features)
            return
        fit_seconds = time.perf_counter() - start
        saved = {id(p): self._save(item, p, vf, tf) for p in probes if not p.error_ and self.save_models}
        for probe in probes:
            for unit in [u for u in units if u[0] == probe.config]:
                if probe.error_:
                    yield unit, self.failure(item, unit, probe.error_, features)
                    continue
                start = time.perf_counter()
                target = self._target(unit[1])
                metrics, intervals = score_target(probe, target, vf, tf, seed=probe.config.seed)
                saturated = saturated_metrics(target, metrics)
                if saturated and unit[1] not in self._warned:
                    self._warned.add(unit[1])
                    key, why = next(iter(saturated.items()))
                    log.warning("%s: %d metric(s) cannot miss on this benchmark, e.g. %s (%s); records and the "
                                "report flag them", target.benchmark, len(saturated), key, why)
                yield unit, self._record(
                    item, unit, features, metrics=metrics, intervals=intervals, interval_level=0.95,
                    **chance_field(target),
                    **({"saturated": saturated} if saturated else {}),
                    training={"device": device, "epochs_run": len(probe.history_), "best_epoch": probe.best_epoch_,
                              "steps": probe.steps_, "history": probe.history_},
                    timing={"fit_grid_s": round(fit_seconds, 3), "eval_s": round(time.perf_counter() - start, 3),
                            "grid_size": len(probes)},
                    cost=self._cost(probe, device, vf, tf),
                    **({"saved_model": saved[id(probe)]} if id(probe) in saved else {}))

    def _cost(self, probe: Any, device: str, vf: EncoderFeatures, tf: EncoderFeatures) -> dict[str, Any]:
        from probe.flops import scaled

        fit = self.plan.fit
        return {"pairs_seen": probe.pairs_seen_, "optimizer_steps": probe.steps_, "device": device,
                "head_train_flops": scaled(probe.flops_per_step_, probe.steps_),
                "extraction_flops": {"vision": scaled(vf.flops_per_input.get("fit"), fit.n_images),
                                     "text": scaled(tf.flops_per_input.get("fit"), len(fit.captions))}}

    def _save(self, item: Item, probe: Any, vf: EncoderFeatures, tf: EncoderFeatures) -> str:
        """Save the fitted heads with both encoders' entries; the path relative to the results folder."""
        from probe.align.model import save_aligned
        from probe.records.store import model_folder, model_ref

        vision, text = item
        folder = model_folder(self.results_dir, self.dataset_name, vision.name, text.name,
                              probe.config.run_tag)
        slots = {"vision": int(self.feature_spec(vision).tokens or 0), "text": int(self.feature_spec(text).tokens or 0)} \
            if self.token_heads else None
        save_aligned(folder, probe, vision, text, (vf.by_role["fit"].shape[1], tf.by_role["fit"].shape[1]),
                     self.corpus, fitted_text=self._fitted_text(text), token_slots=slots)
        return model_ref(self.results_dir, folder)

    def _fitted_text(self, spec: EncoderSpec) -> Any:
        """A text encoder fitted on the corpus (TF-IDF), fitted again here once per sweep for saving:
        its features may all have come from the cache, and the fit is deterministic, so this one
        encodes exactly as the one that made them."""
        from probe.encoders import load_encoder
        from probe.features import fitted_on_corpus

        if not fitted_on_corpus(spec):
            return None
        if spec.name not in self._fitted:
            encoder: Any = load_encoder(spec, device="cpu", allow_download=self.options.allow_download)
            self._fitted[spec.name] = encoder.fit(self.plan.fit.captions)
        return self._fitted[spec.name]

    def describe(self, item: Item, unit: Unit, record: Any) -> str:
        (vision, text), (config, key) = item, unit
        head = f"{vision.name} x {text.name} [{config.tag}]" + (f" on {key}" if key else "")
        if not record.ok:
            return f"{head}: FAILED: {record.error}"
        return f"{head}: {keys.headline(record.metrics, record.intervals)}"
