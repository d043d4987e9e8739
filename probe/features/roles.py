"""The features one encoder contributes to a run: one dense array per split role, plus the
zero-shot prompt features of a text encoder, each through the cache."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probe.features.options import ExtractOptions
from probe.pipeline.splits import ROLES, SplitPlan
from probe.registry import EncoderSpec


@dataclass
class EncoderFeatures:
    """Dense features of one encoder on every split role (+ zero-shot prompts for text encoders)."""

    spec: EncoderSpec
    by_role: dict[str, np.ndarray]
    prompts: dict[str, np.ndarray] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


def encoder_features(spec: EncoderSpec, plan: SplitPlan, options: ExtractOptions,
                     roles: Sequence[str] = ROLES, with_prompts: bool = True) -> EncoderFeatures:
    """Features for the given roles, extracting on a miss with the encoder loaded at most once.

    Rows follow the split: one per image (vision) or caption (text); skipped images are NaN rows.
    A text encoder also encodes the prompts of each of the plan's label tasks when ``with_prompts``.
    """
    from probe.features import split_features
    from probe.metrics.zeroshot import DEFAULT_TEMPLATES, prompts

    loaded: dict[str, Any] = {}

    def factory() -> Any:
        if "encoder" not in loaded:
            from probe.encoders import load_encoder

            loaded["encoder"] = load_encoder(spec, device=options.device, allow_download=options.allow_download)
        return loaded["encoder"]

    out = EncoderFeatures(spec, {})
    for role, data in plan.by_role(tuple(roles)).items():
        if data is None:
            continue
        fs = split_features(spec, data, options, fit_data=plan.fit, encoder_factory=factory)
        out.by_role[role] = fs.dense(data.n_images if spec.modality == "vision" else len(data.captions))
        out.keys[role] = fs.path.name
    if spec.modality == "text" and with_prompts and plan.eval is not None:
        for task in plan.label_tasks:
            texts = prompts(plan.eval.classes[task], plan.eval.templates.get(task) or DEFAULT_TEMPLATES)
            fs = split_features(spec, plan.eval, options, fit_data=plan.fit, texts=texts, input_set=f"prompts-{task}",
                                encoder_factory=factory)
            out.prompts[task] = fs.features
            out.keys[f"prompts-{task}"] = fs.path.name
    return out
