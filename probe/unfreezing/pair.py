"""One ``probe tune`` run, planned and recorded: a (vision, text) pair, the parts each side trains, a
head configuration and a seed, trained on the plan's corpus and scored on every benchmark.

Every side's pre-training features of the corpus come from the shared feature cache (pooled as the
run pools; they say which images could be read, and a frozen side trains from them). A trainable
side's features after training are cached in the run's own folder under a revision naming the
trained weights' digest, so they never mix with the encoder's own. One record per benchmark
(``records/tune/...``), the tuned model saved loadable like any aligned model.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from probe.align.config import ProbeConfig
from probe.data.splits import SplitPlan, Target
from probe.encoder_spec import EncoderSpec
from probe.features.options import ExtractOptions, resolved_workers
from probe.unfreezing.config import TuneConfig


@dataclass(frozen=True)
class TuneJob:
    vision: EncoderSpec
    text: EncoderSpec
    config: ProbeConfig
    tune: TuneConfig

    @property
    def name(self) -> str:
        return f"{self.tune.tag}__{self.config.run_tag}"


def tune_record_path(results_dir: Path, corpus: str, vision: str, text: str, run: str, benchmark: str) -> Path:
    """``records/tune/<corpus>/<v>__<t>__<setting>__<head config>-seed<n>[__on-<benchmark>].json``."""
    from probe.records.store import record_path

    on = [] if benchmark == corpus else [f"on-{benchmark}"]
    return record_path(results_dir, "tune", corpus, vision, text, run, *on)


@dataclass
class _Prepared:
    """One side ready to train: its module (None: no module, the entry's own features), the spec its
    features are cached under, the cached features, and what trains."""

    spec: EncoderSpec
    pooled: EncoderSpec
    module: Any
    features: Any  # EncoderFeatures of fit (and val)
    trainable: Any = None
    parts: tuple[str, ...] = ()
    n_trainable: int = 0

    def loader(self, device: str) -> Any:
        """What computes this side's (untrained) features on a cache miss: the registry's loader
        (None) where they are the entry's own, else the module pooling its way."""
        if self.module is None or self.pooled == self.spec:
            return None
        from probe.unfreezing.modules import TunedEncoder

        return lambda: TunedEncoder(self.pooled, self.module, device)


@dataclass
class TuneRun:
    """Runs and records :class:`TuneJob` s on one split plan."""

    dataset_name: str
    plan: SplitPlan
    tasks: set[str]
    results_dir: Path
    options: ExtractOptions
    save_models: bool = True
    #: data-loader workers decoding images; None: the device's default
    workers: int | None = None

    def run_dir(self, job: TuneJob) -> Path:
        from probe.records.store import results_folder

        return results_folder(self.results_dir, "tune", self.dataset_name, job.vision.name, job.text.name, job.name)

    def record_path(self, job: TuneJob, target: Target) -> Path:
        return tune_record_path(self.results_dir, self.dataset_name, job.vision.name, job.text.name, job.name,
                                target.benchmark)

    def finish(self, job: TuneJob) -> None:
        """Remove a finished run's folder once its records are written: the checkpoint (optimiser
        state, ~3x the trained tensors) and the tuned encoders' benchmark features (an ImageNet-sized
        benchmark's are hundreds of MB per run), which only an interrupted run's scoring reads again.
        The trained tensors live on in the saved model."""
        import shutil

        from probe.unfreezing.train import CHECKPOINT

        run_dir = self.run_dir(job)
        (run_dir / CHECKPOINT).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "features", ignore_errors=True)
        with contextlib.suppress(OSError):  # anything else left there stays
            run_dir.rmdir()

    def run(self, job: TuneJob) -> list[tuple[Target, Any]]:
        """``(target, record)`` for every benchmark; a failure becomes failure records."""
        from probe.pipeline.runner import ITEM_ERRORS, reason
        from probe.unfreezing.parts import PartError

        try:
            return self._run(job)
        except PartError:
            raise
        except ITEM_ERRORS as exc:
            return [(t, self._record(job, t, error=reason(exc))) for t in self.plan.targets]

    # ------------------------------------------------------------------------------------------------
    def _run(self, job: TuneJob) -> list[tuple[Target, Any]]:
        from probe.encoders.base import pick_device
        from probe.features.paired import PairedFeatures
        from probe.unfreezing.train import Side, fingerprint, tune_fit

        device = pick_device(self.options.device)
        job = replace(job, tune=job.tune.resolved(device))  # records and the checkpoint key say what ran
        selections = job.tune.selections()
        vision, text = (self._prepare(spec, selection, job.tune, device)
                        for spec, selection in zip((job.vision, job.text), selections, strict=True))
        plan = self.plan
        fit = PairedFeatures(vision.features.by_role["fit"], text.features.by_role["fit"], plan.fit.caption_image,
                             plan.fit.caption_groups)
        sides = [Side(p.features.by_role["fit"], p.module if p.trainable else None, p.trainable,
                      plan.fit.images if p.spec.modality == "vision" else plan.fit.captions)
                 for p in (vision, text)]
        run_dir = self.run_dir(job)
        key = fingerprint(job.config.to_dict(), job.tune.to_dict(), job.vision.to_dict(), job.text.to_dict(),
                          plan.fit.image_fingerprint(), len(plan.fit.captions), device)
        validate = self._validator(vision, text, sides, device) if plan.val is not None else None
        result = tune_fit(sides[0], sides[1], plan.fit.caption_image, fit.usable_pairs(), job.config, job.tune, device,
                          validate=validate, run_dir=run_dir, run_key=key,
                          workers=resolved_workers(self.workers, device),
                          progress=self.options.progress)
        if result.error:
            return [(t, self._record(job, t, error=result.error)) for t in plan.targets]
        started = time.perf_counter()
        vf, tf = (self._scored_features(p, side, run_dir, device) for p, side in zip((vision, text), sides, strict=True))
        saved = self._save(job, result, vision, text, sides) if self.save_models else None
        out = []
        for target in plan.targets:
            out.append((target, self._scored(job, target, result, vision, text, vf, tf, saved, device,
                                             time.perf_counter() - started)))
        return out

    def _prepare(self, spec: EncoderSpec, selection: Any, tcfg: TuneConfig, device: str) -> _Prepared:
        """Load the encoder as a module where it trains or pools its own way, mark its trainable parts,
        and get its corpus features from the cache."""
        from probe.encoders import load_encoder
        from probe.errors import ProbeError
        from probe.features.roles import encoder_features
        from probe.unfreezing.modules import module_parts, not_trainable, pooled_spec, tunable
        from probe.unfreezing.parts import apply, count_trainable, resolve

        refusal = not_trainable(spec)
        if refusal and not selection.frozen:
            raise ProbeError(refusal)
        module = None
        if refusal is None and (not selection.frozen or tcfg.pooling == "cls"):  # a frozen control keeps its own features
            module = tunable(load_encoder(spec, device=device, allow_download=self.options.allow_download), tcfg.pooling)
        pooled = pooled_spec(spec, module) if module is not None else spec
        roles = ["fit", "val"] if self.plan.val is not None else ["fit"]
        prepared = _Prepared(spec, pooled, module, None)
        prepared.features = encoder_features(pooled, self.plan, self.options, roles=roles, with_prompts=False,
                                             load=prepared.loader(device))
        if module is not None and not selection.frozen:
            parts, _ = module_parts(module)
            prepared.trainable = resolve(selection, parts, spec.name, spec.modality)
            apply(module.backbone, prepared.trainable)
            prepared.parts = tuple(selection.parts)
            prepared.n_trainable = count_trainable(module.backbone, prepared.trainable)
        return prepared

    def _validator(self, vision: _Prepared, text: _Prepared, sides: Sequence[Any], device: str) -> Any:
        """``embedder -> val probing score``, with trainable sides re-encoding the val split each time."""
        from probe.evaluation.held_out import rank_held_out
        from probe.features.batches import encode_inputs
        from probe.features.options import extraction_batch_size
        from probe.features.paired import PairedFeatures
        from probe.metrics.retrieval import metrics_from_ranks
        from probe.unfreezing.modules import TunedEncoder

        val = self.plan.val
        assert val is not None

        def features(prepared: _Prepared, side: Any) -> Any:
            if not side.trains:
                return prepared.features.by_role["val"]
            inputs = val.images if prepared.spec.modality == "vision" else val.captions
            encoder = TunedEncoder(prepared.pooled, prepared.module, device)
            return encode_inputs(encoder, inputs, extraction_batch_size(prepared.spec, self.options),
                                 resolved_workers(self.workers, device) if prepared.spec.modality == "vision" else 0)

        def validate(embedder: Any) -> float:
            split = PairedFeatures(features(vision, sides[0]), features(text, sides[1]), val.caption_image,
                                   val.caption_groups)
            ranked = rank_held_out(embedder, split)
            return metrics_from_ranks(ranked.i2t, ranked.t2i)["probing_score"]

        return validate

    def _scored_features(self, prepared: _Prepared, side: Any, run_dir: Path, device: str) -> Any:
        """Features of every benchmark split: from the shared cache for a frozen side, from the tuned
        module (cached in the run's folder under the trained weights' digest) for a trained one."""
        from probe.features.roles import encoder_features
        from probe.unfreezing.modules import TunedEncoder, pooled_spec

        roles = [t.role(r) for t in self.plan.targets for r in ("eval", "compositional")
                 if r == "eval" or t.compositional is not None]
        if not side.trains:
            return encoder_features(prepared.pooled, self.plan, self.options, roles=roles,
                                    load=prepared.loader(device))
        tuned = pooled_spec(prepared.spec, prepared.module, f"+tuned.{_digest(side.tensors())}")

        def load() -> Any:
            return TunedEncoder(tuned, prepared.module, device)

        options = replace(self.options, cache_dir=run_dir / "features")
        return encoder_features(tuned, self.plan, options, roles=roles, load=load)

    def _scored(self, job: TuneJob, target: Target, result: Any, vision: _Prepared, text: _Prepared, vf: Any,
                tf: Any, saved: str | None, device: str, eval_s: float) -> Any:
        from probe.evaluation.evaluate import chance_field, saturated_metrics, score_target
        from probe.flops import scaled

        metrics, intervals = score_target(result.probe, target, vf, tf, seed=job.config.seed)
        saturated = saturated_metrics(target, metrics)
        heads = sum(p.numel() for h in (result.probe.vision_head_, result.probe.text_head_, result.probe.loss_)
                    for p in h.parameters())
        fit = self.plan.fit
        info = {"setting": job.tune.setting, "config": job.tune,
                "parts": {"vision": list(vision.parts), "text": list(text.parts)},
                "pooling": {"vision": vision.pooled.pooling or "", "text": text.pooled.pooling or ""},
                "trainable_params": {"vision": vision.n_trainable, "text": text.n_trainable, "heads": heads},
                "samples_seen": result.pairs_seen, "steps": result.steps, "resumed_at_step": result.resumed_at}
        return self._record(
            job, target, (vf, tf), metrics=metrics, intervals=intervals, interval_level=0.95, **chance_field(target),
            **({"saturated": saturated} if saturated else {}),
            training={"device": device, "epochs_run": len(result.history), "best_epoch": result.best_epoch,
                      "steps": result.steps, "history": result.history},
            timing={"train_s": round(result.wall_s, 3), "eval_s": round(eval_s, 3)},
            cost={"pairs_seen": result.pairs_seen, "optimizer_steps": result.steps, "device": device,
                  "head_train_flops": None, "train_flops": scaled(result.flops_per_step, result.steps),
                  "extraction_flops": {"vision": scaled(vision.features.flops_per_input.get("fit"), fit.n_images),
                                       "text": scaled(text.features.flops_per_input.get("fit"), len(fit.captions))}},
            tune=info, **({"saved_model": saved} if saved else {}))

    def identity(self, job: TuneJob, target: Target) -> str:
        """What produces the record of ``job`` on ``target`` (:mod:`probe.records.identity`): the
        setting as it runs on this device, so a planned job and the run it became agree."""
        from probe.encoders.base import pick_device
        from probe.records.identity import pair_identity

        return pair_identity("tune", job.vision, job.text, job.config, self.corpus, target,
                             target.protocol(self.dataset_name), self.tasks,
                             tune=job.tune.resolved(pick_device(self.options.device)))

    def failure_record(self, job: TuneJob, target: Target, reason: str) -> Any:
        """The record of a run that failed before scoring ``target``, with the reason."""
        return self._record(job, target, error=reason)

    def _record(self, job: TuneJob, target: Target, features: tuple[Any, Any] | None = None, **results: Any) -> Any:
        from probe.records.schema import TuneRecord, encoder_ref, preset_changes

        used = {"vision": features[0].keys, "text": features[1].keys} if features else {"vision": {}, "text": {}}
        if "tune" not in results:  # a failure: which setting failed
            results["tune"] = {"setting": job.tune.setting, "config": job.tune}
        return TuneRecord.new(
            identity=self.identity(job, target), dataset=self.dataset_name, protocol=target.protocol(self.dataset_name), splits=self.plan.names(target),
            seed=job.config.seed, corpus=self.corpus, benchmark=target.reference(), config=job.config,
            vision=encoder_ref(job.vision), text=encoder_ref(job.text), tasks=sorted(self.tasks), features=used,
            **results, **preset_changes(job.config, job.tune))

    @functools.cached_property
    def corpus(self) -> dict[str, Any]:
        """What the runs trained on (computed once: every record and saved model states it)."""
        return self.plan.corpus_ref(self.dataset_name)

    def _save(self, job: TuneJob, result: Any, vision: _Prepared, text: _Prepared, sides: Sequence[Any]) -> str:
        """The tuned pair as a saved aligned model: heads, both entries, and the trained tensors."""
        from probe.align.model import save_aligned
        from probe.records.store import model_folder, model_ref

        folder = model_folder(self.results_dir, self.dataset_name, job.vision.name, job.text.name, "tune-" + job.name)
        tuned = {side: {"pooling": job.tune.pooling if p.module is not None else None,  # as asked: cls or entry
                        "dim": p.pooled.embed_dim, "parts": list(p.parts),
                        "tensors": {k: v.detach() for k, v in trained.tensors().items()}}
                 for side, p, trained in (("vision", vision, sides[0]), ("text", text, sides[1]))}
        save_aligned(folder, result.probe, job.vision, job.text, (vision.pooled.embed_dim, text.pooled.embed_dim),
                     self.corpus, tuned=tuned, tune_config=job.tune.to_dict())
        return model_ref(self.results_dir, folder)


def _digest(tensors: dict[str, Any]) -> str:
    """A short digest of trained tensors: features of other weights get other cache keys."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensors[name].detach().float().cpu().numpy()).tobytes())
    return digest.hexdigest()[:12]
