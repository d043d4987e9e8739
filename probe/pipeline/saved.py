"""Scoring a saved aligned model on benchmarks, without refitting (``probe eval``).

Features come through the same cache and the same evaluation as in ``probe run``, so a saved model
scored on the benchmark it was trained for gives that run's numbers again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.features.options import ExtractOptions


@dataclass
class SavedScore:
    """One benchmark's record, and the record already there from the run that fitted the model."""

    path: Path
    record: Any
    existing: Any | None


def saved_text_fit(model: Any) -> dict[str, Any]:
    """For a text encoder fitted on the training captions (TF-IDF): the model's own fit, keyed by
    those captions' fingerprint as in the run that fitted it, with a loader that brings the saved
    state. Empty for every other encoder. Without this the benchmark's own captions would be the
    corpus, and the text head would see features it was never trained on."""
    from probe.features import SavedFit, fitted_on_corpus

    if not fitted_on_corpus(model.text_spec):
        return {}
    captions = str(model.meta["corpus"]["fingerprint"]).rpartition(":")[2]
    return {"fit": SavedFit(captions), "load": lambda: model.encoder("text")}


def score_saved(model: Any, model_path: str, benchmarks: list[Any], results_dir: Path,
                options: ExtractOptions, seed: int | None = None) -> list[SavedScore]:
    """One alignment record per benchmark for ``model`` (an :class:`~probe.aligned.AlignedModel`)."""
    from probe.align.sweep import alignment_path
    from probe.data.splits import TASKS, SplitPlan, make_target
    from probe.encoders.base import pick_device
    from probe.evaluation.evaluate import chance_field, dropped_counts, saturated_metrics, score_target
    from probe.features.roles import encoder_features
    from probe.records.identity import pair_identity
    from probe.records.schema import AlignmentRecord, encoder_ref, preset_changes
    from probe.records.store import read_complete

    config, corpus = model.config, model.meta["corpus"]
    seed = config.seed if seed is None else seed
    out = []
    for benchmark in benchmarks:
        target = make_target(benchmark, set(TASKS), explicit_tasks=False, key=benchmark.info.name)
        plan = SplitPlan(fit=target.eval, targets=(target,))
        roles = [target.role("eval")] + ([target.role("compositional")] if target.compositional else [])
        if model.tuned:  # trained tensors or another pooling: the features of the model's own encoders
            vf = encoder_features(model.encoder("vision").spec, plan, options, roles=roles,
                                  load=lambda: model.encoder("vision"))
            tf = encoder_features(model.encoder("text").spec, plan, options, roles=roles,
                                  load=lambda: model.encoder("text"))
        else:
            vf = encoder_features(model.feature_spec("vision"), plan, options, roles=roles)
            tf = encoder_features(model.feature_spec("text"), plan, options, roles=roles, **saved_text_fit(model))
        metrics, intervals = score_target(model, target, vf, tf, seed=seed)
        extra: dict[str, Any] = {"saturated": saturated} if (saturated := saturated_metrics(target, metrics)) else {}
        if dropped := dropped_counts({r: d for r, d in plan.roles().items() if r in roles}, vf):
            extra["dropped"] = dropped
        fields = dict(
            dataset=corpus["name"], protocol=target.protocol(corpus["name"]),
            corpus=corpus, splits={"fit": corpus["split"], "val": None, "eval": target.eval.split,
                                   "compositional": target.compositional.split if target.compositional else None},
            benchmark=target.reference(),
            seed=config.seed, config=config, vision=encoder_ref(model.vision_spec), text=encoder_ref(model.text_spec),
            tasks=sorted(TASKS), features={"vision": vf.keys, "text": tf.keys}, metrics=metrics, intervals=intervals,
            **chance_field(target),
            interval_level=0.95, saved_model=model_path, **extra)
        if model.tuned:  # a tuned pair's record sits where `probe tune` writes it, never over a head fit's
            from probe.records.schema import TuneRecord
            from probe.unfreezing.config import TuneConfig
            from probe.unfreezing.pair import tune_record_path

            tcfg = TuneConfig(**model.meta["tune_config"])  # as it ran: resolving it again changes nothing
            identity = pair_identity("tune", model.vision_spec, model.text_spec, config, corpus, target,
                                     fields["protocol"], TASKS, tune=tcfg.resolved(pick_device(options.device)))
            record: Any = TuneRecord.new(identity=identity, tune={"setting": tcfg.setting, "config": tcfg}, **fields,
                                         **preset_changes(config, tcfg))
            path = tune_record_path(results_dir, corpus["name"], model.vision_spec.name, model.text_spec.name,
                                    f"{tcfg.tag}__{config.run_tag}", target.benchmark)
        else:
            identity = pair_identity("alignment", model.vision_spec, model.text_spec, config, corpus, target,
                                     fields["protocol"], TASKS)
            record = AlignmentRecord.new(identity=identity, **fields, **preset_changes(config))
            path = alignment_path(results_dir, corpus["name"], model.vision_spec.name, model.text_spec.name, config,
                                  target.benchmark)
        out.append(SavedScore(path, record, read_complete(path)))
    return out
