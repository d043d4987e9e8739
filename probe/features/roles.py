"""The features one encoder contributes to a run: one dense array per split role, plus the
zero-shot prompt features of a text encoder, each through the cache."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probe.features.options import ExtractOptions
from probe.pipeline.splits import SplitPlan
from probe.registry import EncoderSpec


@dataclass
class EncoderFeatures:
    """Dense features of one encoder on every split role (+ zero-shot prompts for text encoders)."""

    spec: EncoderSpec
    #: float32 arrays in memory; a role asked for as streamed may instead be a
    #: :class:`~probe.features.mapped.FeatureRows` read from the cache a batch at a time
    by_role: dict[str, Any]
    prompts: dict[str, np.ndarray] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    #: measured forward FLOPs per input, by role (None where unknown: cached before it was measured)
    flops_per_input: dict[str, float | None] = field(default_factory=dict)
    #: inputs the encoder could not read (missing or corrupt images), by role; absent when none
    skipped: dict[str, int] = field(default_factory=dict)


def encoder_features(spec: EncoderSpec, plan: SplitPlan, options: ExtractOptions,
                     roles: Sequence[str] | None = None, with_prompts: bool = True,
                     streamed_roles: Sequence[str] = (), load: Callable[[], Any] | None = None) -> EncoderFeatures:
    """Features for the plan's roles (or only ``roles``), extracting on a miss with the encoder
    loaded at most once.

    A role in ``streamed_roles`` whose float32 features exceed :func:`~probe.features.mapped.resident_limit`
    stays in the cache's memory map (:class:`~probe.features.mapped.FeatureRows`), so training reads
    it a batch at a time instead of holding it whole.

    Rows follow the split: one per image (vision) or caption (text); skipped images are NaN rows.
    A text encoder also encodes the prompts of each target's label tasks when ``with_prompts``
    (``prompts-<task>`` roles, suffixed like the target's other roles).

    ``load`` makes the encoder on a miss (default: the registry's loader for ``spec``); ``probe tune``
    passes its tuned modules here.
    """
    from probe.features import split_features
    from probe.features.mapped import resident_limit
    from probe.metrics.zeroshot import DEFAULT_TEMPLATES, prompts

    loaded: dict[str, Any] = {}

    def factory() -> Any:
        if "encoder" not in loaded:
            from probe.encoders import load_encoder

            loaded["encoder"] = load() if load is not None else load_encoder(
                spec, device=options.device, allow_download=options.allow_download)
        return loaded["encoder"]

    out = EncoderFeatures(spec, {})
    for role, data in plan.roles().items():
        if roles is not None and role not in roles:
            continue
        if spec.modality == "text" and not data.captions:  # a classification benchmark: images only
            continue
        fs = split_features(spec, data, options, fit_data=plan.fit, encoder_factory=factory)
        rows = fs.rows(data.n_images if spec.modality == "vision" else len(data.captions))
        out.by_role[role] = rows if role in streamed_roles and rows.nbytes_float32 > resident_limit() else np.asarray(rows)
        out.keys[role] = fs.path.name
        out.flops_per_input[role] = fs.meta.get("flops_per_input")
        if fs.meta.get("skipped"):
            out.skipped[role] = len(fs.meta["skipped"])
    if spec.modality == "text" and with_prompts:
        for target in plan.targets:
            for task in target.label_tasks:
                held_out = target.eval
                texts = prompts(held_out.classes[task], held_out.templates.get(task) or DEFAULT_TEMPLATES)
                fs = split_features(spec, held_out, options, fit_data=plan.fit, texts=texts,
                                    input_set=f"prompts-{task}", encoder_factory=factory)
                role = target.role(f"prompts-{task}")
                out.prompts[role] = np.asarray(fs.rows(len(texts)))
                out.keys[role] = fs.path.name
    return out
