"""The features one encoder contributes to a run: one dense array per split role, plus the
zero-shot prompt features of a text encoder, each through the cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from probe.data.splits import SplitPlan
from probe.encoder_spec import EncoderSpec
from probe.features.options import ExtractOptions

if TYPE_CHECKING:
    from probe.data.base import SplitData
    from probe.features import FitSource


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
                     streamed_roles: Sequence[str] = (), load: Callable[[], Any] | None = None,
                     fit: FitSource | None = None) -> EncoderFeatures:
    """Features for the plan's roles (or only ``roles``), extracting on a miss with the encoder
    loaded at most once.

    A role in ``streamed_roles`` whose float32 features exceed :func:`~probe.features.mapped.resident_limit`
    stays in the cache's memory map (:class:`~probe.features.mapped.FeatureRows`), so training reads
    it a batch at a time instead of holding it whole.

    Rows follow the split: one per image (vision) or caption (text); skipped images are NaN rows.
    A text encoder also encodes the prompts of each target's label tasks when ``with_prompts``
    (``prompts-<task>`` roles, suffixed like the target's other roles).

    ``load`` makes the encoder on a miss (default: the registry's loader for ``spec``); ``probe tune``
    passes its tuned modules here. ``fit`` is what a corpus-fitted encoder is fitted on (default: the
    plan's fit split); a saved model passes its :class:`~probe.features.SavedFit` with a ``load`` that
    brings the saved state.
    """
    from probe.features import n_inputs, split_features
    from probe.features.mapped import resident_limit

    loaded: dict[str, Any] = {}

    def factory() -> Any:
        if "encoder" not in loaded:
            from probe.encoders import load_encoder

            loaded["encoder"] = load() if load is not None else load_encoder(
                spec, device=options.device, allow_download=options.allow_download)
        return loaded["encoder"]

    fit = plan.fit if fit is None else fit
    out = EncoderFeatures(spec, {})
    for request in feature_requests(spec, plan, roles, with_prompts):
        whole = request.source(spec, options, fit)
        fs = split_features(spec, whole, options, fit_data=fit, texts=request.texts,
                            input_set=request.input_set, encoder_factory=factory)
        role = request.role
        out.keys[role] = fs.path.name
        if request.texts is not None:  # zero-shot prompts: small, always held
            out.prompts[role] = np.asarray(fs.rows(len(request.texts)))
            continue
        rows = fs.rows(n_inputs(spec, whole))
        skipped = {int(s["index"]) for s in fs.meta.get("skipped") or []}
        picked = request.rows_in(spec, whole)
        if picked is not None:  # a carve-out or sample: its rows of the whole split's entry
            rows = rows.subset(picked)
            skipped &= set(picked.tolist())
        out.by_role[role] = rows if role in streamed_roles and rows.nbytes_float32 > resident_limit() else np.asarray(rows)
        out.flops_per_input[role] = fs.meta.get("flops_per_input")
        if skipped:
            out.skipped[role] = len(skipped)
    return out


@dataclass(frozen=True)
class FeatureRequest:
    """One set of inputs an encoder encodes for a plan: a split role's images or captions, or the
    zero-shot prompts (``texts``) of one label task of a target."""

    role: str
    data: SplitData
    input_set: str | None = None
    texts: tuple[str, ...] | None = None

    def source(self, spec: EncoderSpec, options: ExtractOptions, fit: FitSource | None) -> SplitData:
        """The split whose features serve this request. For a split cut from another
        (:class:`~probe.data.base.Subset`) that is the whole split, so its rows are read from the entry
        ``probe extract`` writes for it: always for a carve-out, and for a sample where that entry is
        cached (else the sample is encoded alone). Otherwise the request's own split."""
        from probe.features import is_cached

        parent = self.data.parent
        if parent is None or self.texts is not None:
            return self.data
        if parent.encode_whole or is_cached(spec, parent.whole, options, fit, self.input_set):
            return parent.whole
        return self.data

    def rows_in(self, spec: EncoderSpec, source: SplitData) -> np.ndarray | None:
        """Where this request's rows sit in ``source``'s features (None: its own split)."""
        if source is self.data:
            return None
        assert self.data.parent is not None
        return self.data.parent.images if spec.modality == "vision" else self.data.parent.captions


def feature_requests(spec: EncoderSpec, plan: SplitPlan, roles: Sequence[str] | None = None,
                     with_prompts: bool = True) -> Iterator[FeatureRequest]:
    """Every set of inputs ``spec`` encodes for ``plan``, in the order a run extracts them: what a run
    computes (:func:`encoder_features`) and what a dry run reports (:mod:`probe.pipeline.preview`)."""
    for role, data in plan.roles().items():
        if roles is not None and role not in roles:
            continue
        if spec.modality == "text" and not data.captions:  # a classification benchmark: images only
            continue
        yield FeatureRequest(role, data)
    if spec.modality == "text" and with_prompts:
        for target in plan.targets:
            for task in target.label_tasks:
                yield FeatureRequest(target.role(f"prompts-{task}"), target.eval, f"prompts-{task}",
                                     tuple(target.prompt_texts(task)))
