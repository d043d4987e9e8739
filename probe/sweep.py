"""``probe run``: every (vision, text) pair x every head configuration, on cached features.

Each encoder runs once per split (through the feature cache), so a V x T sweep costs V + T forward
passes plus V x T head fits. Every result, failures included, becomes one record; a failing pair
never stops the sweep, and ``skip_existing`` resumes an interrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probe.data.base import SplitData
from probe.errors import ProbeError
from probe.registry import EncoderSpec
from probe.train import ProbeConfig

TASKS = ("retrieval", "zeroshot", "compositional")
COMPOSITIONAL_SPLIT = "winoground"
ROLES = ("fit", "val", "eval", "compositional")


@dataclass
class SweepSplits:
    """Which split plays which role: heads fit on ``fit``, stop early on ``val``, are scored on ``eval``."""

    fit: SplitData
    val: SplitData | None
    eval: SplitData
    compositional: SplitData | None = None

    def names(self) -> dict[str, str | None]:
        return {role: (getattr(self, role).split if getattr(self, role) is not None else None) for role in ROLES}


def plan_splits(dataset: Any, tasks: set[str], explicit_tasks: bool) -> tuple[SweepSplits, list[str]]:
    """Load the splits a sweep needs and the zero-shot label tasks it can run; clear errors otherwise."""
    splits = dataset.info.splits
    name = dataset.info.name
    if "train" not in splits:
        raise ProbeError(f"dataset {name!r} has no 'train' split to fit heads on (splits: {', '.join(splits)})")
    eval_name = "test" if "test" in splits else "val" if "val" in splits else None
    if eval_name is None:
        raise ProbeError(f"dataset {name!r} has no 'test' or 'val' split to score on (splits: {', '.join(splits)})")
    fit = dataset.load("train")
    val = dataset.load("val") if "val" in splits and eval_name != "val" else None
    held_out = dataset.load(eval_name)
    label_tasks = [t for t, labels in held_out.labels.items() if (np.asarray(labels) >= 0).any()]
    if "zeroshot" in tasks and not label_tasks and explicit_tasks:
        raise ProbeError(f"dataset {name!r} has no class labels on {eval_name!r}, so zero-shot "
                         f"classification cannot run; drop --task zeroshot (valid here: retrieval)")
    compositional = None
    if "compositional" in tasks:
        if COMPOSITIONAL_SPLIT in splits:
            compositional = dataset.load(COMPOSITIONAL_SPLIT)
        elif explicit_tasks:
            raise ProbeError(f"dataset {name!r} has no {COMPOSITIONAL_SPLIT!r} split of swap pairs for "
                             f"--task compositional (splits: {', '.join(splits)})")
    return SweepSplits(fit, val, held_out, compositional), (label_tasks if "zeroshot" in tasks else [])


def spec_summary(spec: EncoderSpec) -> dict[str, Any]:
    published = {k: getattr(spec, k) for k in ("imagenet_knn", "imagenet_linear", "mteb_avg")
                 if getattr(spec, k) is not None}
    return {"name": spec.name, "loader": spec.loader, "weights": spec.weights, "revision": spec.revision,
            "objective": spec.objective, "params_m": spec.params_m, "embed_dim": spec.embed_dim,
            "control": spec.is_control, "published": published}


@dataclass
class EncoderFeatures:
    """Dense features of one encoder on every split role (+ zero-shot prompts for text encoders)."""

    by_role: dict[str, np.ndarray]
    prompts: dict[str, np.ndarray] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


def encoder_features(spec: EncoderSpec, splits: SweepSplits, label_tasks: list[str],
                     extract_kwargs: dict[str, Any], roles: tuple[str, ...] = ROLES) -> EncoderFeatures:
    """Features for the given roles, extracting on a miss with one encoder loaded at most once."""
    from probe.features import split_features
    from probe.metrics.zeroshot import DEFAULT_TEMPLATES, prompts

    loaded: dict[str, Any] = {}
    device = extract_kwargs.get("device")

    def factory():
        if "encoder" not in loaded:
            from probe.encoders import load_encoder

            loaded["encoder"] = load_encoder(spec, device=device)
        return loaded["encoder"]

    kwargs = {k: v for k, v in extract_kwargs.items() if k != "device"}
    out = EncoderFeatures({})
    for role in roles:
        data = getattr(splits, role)
        if data is None:
            continue
        fs = split_features(spec, data, fit_data=splits.fit, encoder_factory=factory, **kwargs)
        out.by_role[role] = fs.dense(data.n_images if spec.modality == "vision" else len(data.captions))
        out.keys[role] = fs.path.name
    if spec.modality == "text" and "eval" in roles:
        for task in label_tasks:
            texts = prompts(splits.eval.classes[task], splits.eval.templates.get(task) or DEFAULT_TEMPLATES)
            fs = split_features(spec, splits.eval, fit_data=splits.fit, texts=texts, input_set=f"prompts-{task}",
                                encoder_factory=factory, **kwargs)
            out.prompts[task] = fs.features
            out.keys[f"prompts-{task}"] = fs.path.name
    return out


@dataclass
class SweepOutcome:
    written: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    skipped_existing: int = 0


@dataclass
class Sweep:
    vision: list[EncoderSpec]
    text: list[EncoderSpec]
    dataset: Any
    configs: list[ProbeConfig]
    tasks: set[str]
    results_dir: Path
    explicit_tasks: bool = False
    skip_existing: bool = False
    extract_kwargs: dict[str, Any] = field(default_factory=dict)
    echo: Callable[[str], None] = print
    _plan: tuple[SweepSplits, list[str]] | None = field(default=None, init=False, repr=False)

    def record_path(self, v: EncoderSpec, t: EncoderSpec, config: ProbeConfig) -> Path:
        from probe.results import record_path

        return record_path(self.results_dir, "alignment", self.dataset.info.name, v.name, t.name,
                           f"{config.tag}-seed{config.seed}")

    def prepare(self) -> tuple[SweepSplits, list[str]]:
        """Load and check the splits (errors surface here, before any work starts)."""
        if self._plan is None:
            self._plan = plan_splits(self.dataset, self.tasks, self.explicit_tasks)
        return self._plan

    def run(self) -> SweepOutcome:
        splits, label_tasks = self.prepare()
        outcome = SweepOutcome()
        todo = {}
        for v in self.vision:
            for t in self.text:
                missing = [c for c in self.configs if not (self.skip_existing and self._done(v, t, c))]
                outcome.skipped_existing += len(self.configs) - len(missing)
                if missing:
                    todo[(v.name, t.name)] = missing
        if not todo:
            return outcome
        features: dict[str, EncoderFeatures | str] = {}

        def get(spec: EncoderSpec) -> EncoderFeatures | str:
            if spec.name not in features:
                try:
                    features[spec.name] = encoder_features(spec, splits, label_tasks, self.extract_kwargs)
                except (ProbeError, OSError, RuntimeError, ValueError, ImportError) as exc:
                    features[spec.name] = f"features of {spec.name} failed: {_reason(exc)}"
            return features[spec.name]

        for v in self.vision:
            if not any(key[0] == v.name for key in todo):
                continue
            for t in self.text:
                configs = todo.get((v.name, t.name))
                if not configs:
                    continue
                vf, tf = get(v), get(t)
                problem = vf if isinstance(vf, str) else tf if isinstance(tf, str) else None
                self._pair(v, t, configs, splits, label_tasks, vf, tf, problem, outcome)
            features.pop(v.name, None)  # vision features are needed for this row of pairs only
        return outcome

    def _done(self, v: EncoderSpec, t: EncoderSpec, config: ProbeConfig) -> bool:
        from probe.results import is_complete

        return is_complete(self.record_path(v, t, config))

    def _pair(self, v, t, configs, splits, label_tasks, vf, tf, problem, outcome) -> None:
        from probe.evaluate import ZeroShotTask, evaluate
        from probe.results import new_record, write_record
        from probe.train import AlignmentProbe, PairedFeatures, fit_grid

        def base(config: ProbeConfig) -> dict[str, Any]:
            return new_record("alignment", dataset=self.dataset.info.name, protocol=splits.eval.protocol,
                              splits=splits.names(), seed=config.seed, config=config.to_dict(),
                              vision=spec_summary(v), text=spec_summary(t), tasks=sorted(self.tasks),
                              features={"vision": getattr(vf, "keys", {}), "text": getattr(tf, "keys", {})})

        def fail(config: ProbeConfig, reason: str) -> None:
            path = self.record_path(v, t, config)
            write_record(path, base(config) | {"status": "failed", "error": reason})
            outcome.failed.append(path)
            self.echo(f"{v.name} x {t.name} [{config.tag}]: FAILED: {reason}")

        if problem is not None:
            for config in configs:
                fail(config, problem)
            return

        def paired(role: str) -> PairedFeatures:
            return PairedFeatures(vf.by_role[role], tf.by_role[role], getattr(splits, role).caption_image)

        from probe.encoders.base import pick_device

        device = pick_device(self.extract_kwargs.get("device"))  # heads train where the encoders ran
        start = time.perf_counter()
        probes = [AlignmentProbe(c) for c in configs]
        try:
            fit_grid(probes, paired("fit"), paired("val") if splits.val is not None else None, device=device)
        except ProbeError as exc:
            for config in configs:
                fail(config, str(exc))
            return
        fit_seconds = time.perf_counter() - start
        zeroshot = [ZeroShotTask(task, tf.prompts[task], len(splits.eval.classes[task]), splits.eval.labels[task])
                    for task in label_tasks]
        compositional = None
        if splits.compositional is not None and splits.compositional.swap_pairs is not None:
            compositional = (paired("compositional"), splits.compositional.swap_pairs)
        for probe in probes:
            if probe.error_:
                fail(probe.config, probe.error_)
                continue
            start = time.perf_counter()
            metrics, intervals = evaluate(probe, paired("eval"), zeroshot=zeroshot, compositional=compositional,
                                          seed=probe.config.seed)
            record = base(probe.config) | {
                "metrics": metrics, "intervals": intervals, "interval_level": 0.95,
                "training": {"device": device, "epochs_run": len(probe.history_), "best_epoch": probe.best_epoch_,
                             "steps": probe.steps_, "history": probe.history_},
                "timing": {"fit_grid_s": round(fit_seconds, 3), "eval_s": round(time.perf_counter() - start, 3),
                           "grid_size": len(probes)},
            }
            path = self.record_path(v, t, probe.config)
            write_record(path, record)
            outcome.written.append(path)
            lo, hi = intervals["alignment/probing_score"]
            extra = "".join(f", zero-shot {k.split('/')[1]} {metrics[k]:.3f}" for k in metrics
                            if k.startswith("zeroshot/") and k.endswith("_top1"))
            self.echo(f"{v.name} x {t.name} [{probe.config.tag}]: probing score "
                      f"{metrics['alignment/probing_score']:.3f} [{lo:.3f}, {hi:.3f}]{extra}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
