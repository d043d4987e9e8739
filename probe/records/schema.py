"""Typed result records: one pydantic model per kind, unknown fields rejected.

Every result probe writes is one JSON file holding one of these models. The fields say what the
numbers are and where they came from: schema and package versions, git revision, seed, the full
configuration, both encoders' names, weights and revisions, the dataset, protocol and splits, the
namespaced metrics (see :mod:`probe.records.keys`) and their bootstrap intervals. A failed result is
a record too (``status: "failed"`` with the reason and no metrics), so a sweep shows what is missing.

A record is written with the fields it was given (``exclude_unset``), so a failure record carries
no empty ``metrics`` and an older file read and written again keeps its shape. A new kind is one
class here plus its name in :data:`Record`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from probe.align.config import ProbeConfig
from probe.errors import ProbeError
from probe.unfreezing.config import TuneConfig

#: Version of the on-disk layout; :mod:`probe.records.store` migrates older files or refuses them.
SCHEMA_VERSION = 5
#: Fields that legitimately differ between two identical runs.
VOLATILE = ("created", "timing")
Status = Literal["ok", "failed"]
#: a score as records hold it: a JSON number (never a string or a boolean), finite. A NaN or an
#: infinity would sort first or last in a ranking, so it is refused on write and a file holding one is
#: damaged (quarantined on read)
Score = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class Strict(BaseModel):
    """Unknown fields are errors: a misspelt key must not be silently dropped on the next write."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Versions(Strict):
    probe: str
    git: str | None
    python: str
    torch: str
    numpy: str


class EncoderRef(Strict):
    """What a record says about one encoder: enough to find the same weights again."""

    name: str
    loader: str
    weights: str
    revision: str
    objective: str
    params_m: float
    embed_dim: int
    control: bool
    published: dict[str, float] = Field(default_factory=dict)
    #: the hidden layer the encoder was read at (``<entry>@<layer>``); absent: its output
    layer: int | None = None


class RecordBase(Strict):
    schema_version: int
    kind: str
    status: Status
    error: str | None
    created: str
    versions: Versions
    dataset: str
    seed: int
    #: digest of everything that produced this record (:mod:`probe.records.identity`); a record whose
    #: inputs changed since is recomputed, never trusted. Absent in records before schema 4.
    identity: str | None = None

    @classmethod
    def new(cls, error: str | None = None, **fields: Any):
        """A record stamped with the schema version, the time and the software versions; with
        ``error`` it is a failure record (the reason instead of results)."""
        _check_scores(cls.__name__, fields)
        stamp = {"schema_version": SCHEMA_VERSION, "kind": cls.model_fields["kind"].default,
                 "status": "failed" if error else "ok", "error": error,
                 "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": provenance()}
        return cls(**stamp, **fields)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def dump(self) -> dict[str, Any]:
        """The JSON-ready dict of the fields this record was given."""
        return self.model_dump(exclude_unset=True)


def _check_scores(kind: str, fields: dict[str, Any]) -> None:
    """A metric that is not a finite number is refused before a record is made of it (one line naming
    it); an interval that is not finite (a bootstrap with nothing to resample) is left out, said once."""
    import logging
    import math

    for key, value in (fields.get("metrics") or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ProbeError(f"{kind}: metric {key!r} is {value!r}, not a finite number; such a score would rank "
                             "first or last, so no record is written with it")
    intervals = fields.get("intervals")
    if intervals:
        bad = sorted(k for k, v in intervals.items()
                     if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v))
        if bad:
            logging.getLogger("probe.records").warning("%s: no interval for %s (its bootstrap gave no finite bound)",
                                                       kind, ", ".join(bad))
            fields["intervals"] = {k: v for k, v in intervals.items() if k not in bad}


class Scored(RecordBase):
    """A record that holds metrics when it succeeded."""

    metrics: dict[str, Score] | None = None
    intervals: dict[str, tuple[Score, Score]] | None = None
    interval_level: float | None = None
    #: what a metric scores by chance, where its definition fixes that (zero-shot 1 / options, Winoground)
    chance: dict[str, Score] | None = None

    @model_validator(mode="after")
    def _results_match_status(self):
        if self.status == "ok" and self.metrics is None:
            raise ValueError("a record with status 'ok' must hold metrics")
        if self.status == "failed" and not self.error:
            raise ValueError("a failed record must say why (error)")
        return self

    def metric(self, key: str) -> float | None:
        return (self.metrics or {}).get(key)

    def interval(self, key: str) -> tuple[float, float] | None:
        return (self.intervals or {}).get(key)


class EpochLog(Strict):
    epoch: int
    loss: float
    val_probing_score: float | None = None


class TrainingLog(Strict):
    device: str
    epochs_run: int
    best_epoch: int
    steps: int
    history: list[EpochLog]


class Timing(Strict):
    fit_grid_s: float
    eval_s: float
    grid_size: int


class CorpusRef(Strict):
    """The data heads were fitted on: which, how much, and how early stopping was held out."""

    name: str
    split: str
    fingerprint: str | None
    n_images: int | None
    n_captions: int | None
    held_out: str | None
    description: str


class BenchmarkRef(Strict):
    """What a record's metrics score."""

    name: str
    split: str
    compositional_split: str | None
    description: str
    #: the scored data's :attr:`~probe.data.base.SplitData.content_fingerprint` (``+`` the compositional
    #: split's where it is another): the same files under any data root give the same value; absent
    #: in records before schema 4
    fingerprint: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name}/{self.split}"


class Cost(Strict):
    """What one result cost: data seen, optimiser steps, device and measured FLOPs (wall seconds,
    which differ between identical runs, are in ``timing``).

    ``extraction_flops`` are the encoders' forward FLOPs over the training corpus (paid once per
    encoder and shared by every pair, stated per result so a result's whole cost can be read off it).
    """

    pairs_seen: int
    optimizer_steps: int
    device: str
    head_train_flops: float | None
    extraction_flops: dict[str, float | None]
    #: training FLOPs through encoders and heads (``probe tune``; a head fit has ``head_train_flops``)
    train_flops: float | None = None


class AlignmentRecord(Scored):
    """Heads fitted on one pair and scored on one benchmark: in-domain (the training dataset's own
    held-out split) or zero-shot transfer (a benchmark the heads never saw)."""

    kind: Literal["alignment"] = "alignment"
    protocol: Literal["in-domain", "zero-shot transfer"]
    corpus: CorpusRef
    benchmark: BenchmarkRef
    splits: dict[str, str | None]
    config: ProbeConfig
    vision: EncoderRef
    text: EncoderRef
    tasks: list[str]
    features: dict[str, dict[str, str]]
    training: TrainingLog | None = None
    timing: Timing | None = None
    #: the saved aligned model (heads + both encoders' entries), relative to the results folder (absolute
    #: for a model outside it, e.g. an exported one scored by ``probe eval``)
    saved_model: str | None = None
    cost: Cost | None = None
    #: what was left out of each split role, by reason: items its reader dropped (a sample without a
    #: caption, a truncated shard) and images the vision encoder could not read; absent when nothing was
    dropped: dict[str, dict[str, int]] | None = None
    #: metrics that cannot come out lower than perfect on this benchmark (fewer candidates than k, one
    #: class), with the reason; the report flags them
    saturated: dict[str, str] | None = None
    #: settings given that differ from the preset the config names: ``{setting: [preset's, used]}``
    #: (the typed option wins over the preset; absent when nothing was changed)
    preset_changes: dict[str, list[Any]] | None = None


class TuneTiming(Strict):
    train_s: float
    eval_s: float


class TuneInfo(Strict):
    """What a ``probe tune`` result trained: the setting (the paper's notation where it applies), the
    parts per side, the pooled outputs, parameter counts and how much data it saw."""

    setting: str
    config: TuneConfig
    parts: dict[str, list[str]] = Field(default_factory=dict)
    pooling: dict[str, str] = Field(default_factory=dict)
    trainable_params: dict[str, int] = Field(default_factory=dict)
    samples_seen: int | None = None
    steps: int | None = None
    #: the optimiser step a killed run was resumed from (None: it ran straight through)
    resumed_at_step: int | None = None


class TuneRecord(AlignmentRecord):
    """Heads and chosen encoder parts trained end to end on one pair, scored on one benchmark."""

    kind: Literal["tune"] = "tune"  # type: ignore[assignment]
    tune: TuneInfo
    timing: TuneTiming | None = None  # type: ignore[assignment]


class SimilarityConfig(Strict):
    k: int
    max_pairs: int
    n_boot: int
    n_perm: int
    pairs: str
    #: the similarity protocol (:meth:`probe.metrics.protocols.SimilarityProtocol.to_dict`); absent in
    #: records written before protocols existed, which were probe's own without unbiased CKA
    protocol: dict[str, Any] | None = None
    #: with a layer search: which layers (``all``, ``last:K``, a list) and the metric searched
    layers: dict[str, Any] | None = None

    @property
    def protocol_name(self) -> str:
        return str((self.protocol or {}).get("name", "probe"))

    @property
    def is_default(self) -> bool:
        """probe's own protocol at the encoders' outputs: the records the leaderboard, correlations and
        forecasts read (another protocol or a layer search measures something else)."""
        return self.protocol_name == "probe" and self.layers is None


class NullStat(Strict):
    mean: float
    p_value: float


class SimilarityTiming(Strict):
    #: wall seconds of this pair's metrics, bootstrap and null (features read from the cache; an
    #: encoder's side, prepared once and reused with every partner, is counted where it was made)
    similarity_s: float


class SimilarityRecord(Scored):
    """Training-free similarity of one pair's paired embeddings (``probe select``)."""

    kind: Literal["similarity"] = "similarity"
    split: str
    config: SimilarityConfig
    vision: EncoderRef
    text: EncoderRef
    n_pairs: int | None = None
    null: dict[str, NullStat] | None = None
    #: a layer search's every value (``values[i][j]``: vision layer ``vision[i]`` against text layer
    #: ``text[j]``), the best pair, and its p-value against the best of searches on shuffled pairings
    layers: dict[str, Any] | None = None
    timing: SimilarityTiming | None = None


class CorrelatesConfig(Strict):
    knn_temperature: float
    knn_k: list[int]
    linear: str
    kmeans: str
    tasks: list[str]


class CorrelatesRecord(Scored):
    """Unimodal scores of one encoder on a dataset (``probe correlate``)."""

    kind: Literal["correlates"] = "correlates"
    splits: dict[str, str | None]
    model: EncoderRef
    modality: Literal["vision", "text"]
    config: CorrelatesConfig


class MtebConfig(Strict):
    #: the MTEB tasks run, and each one's main score (its metadata's ``main_score``)
    tasks: list[str]
    main_scores: dict[str, str]
    mteb_version: str


class MtebRecord(Scored):
    """MTEB tasks run for one text encoder (``probe correlate --mteb-task``): each task's main score
    (``text/mteb:<task>``) and their mean (``text/mteb``), the text correlate SAIL found predictive."""

    kind: Literal["mteb"] = "mteb"
    model: EncoderRef
    config: MtebConfig


class SelectionConfig(Strict):
    metric: str
    top: int
    k: int
    max_pairs: int
    head: str | None
    loss: str | None
    #: whether control pairs could take ranking slots (absent in records written before it existed)
    with_controls: bool = False
    #: the similarity protocol ranked under (absent before protocols existed: probe's own)
    protocol: str = "probe"


class RankedPair(Strict):
    vision: str
    text: str
    value: float


class Agreement(Strict):
    """How well a ranking predicted the probing scores of the same pairs."""

    n: int
    spearman: float
    spearman_p: float
    kendall: float
    kendall_p: float
    top_hits: int
    top: int
    best_probed: float
    best_selected: float
    regret: float


class SelectionRecord(RecordBase):
    kind: Literal["selection"] = "selection"
    split: str
    config: SelectionConfig
    ranking: list[RankedPair]
    #: per benchmark label (``shapes/test``): how well the ranking predicted its probing scores, over
    #: the real pairs; ``<label> (with controls)`` over every pair
    agreements: dict[str, Agreement]


class HeadFilter(Strict):
    head: str | None
    loss: str | None
    #: the MTEB tasks run for the text correlate ``text/mteb`` (absent when none were)
    mteb_tasks: list[str] | None = None


class CorrelationRow(Strict):
    correlate: str
    n: int
    #: what ``n`` counts: "pairs", "vision encoders" or "text encoders" (None: written before probe
    #: said, when every correlate was counted over pairs)
    over: str | None = None
    spearman: float | None
    p_value: float | None


class CorrelationRecord(RecordBase):
    kind: Literal["correlation"] = "correlation"
    #: the benchmark (label) whose probing scores the correlates are compared with
    benchmark: str
    config: HeadFilter
    table: list[CorrelationRow]
    n_pairs: int


class ForecastRow(Strict):
    vision: str
    text: str
    #: the probing score recorded (None: a pair not probed yet, forecast by the model fitted on all)
    measured: Score | None
    forecast: Score
    low: Score
    high: Score


class ForecastConfig(Strict):
    head: str | None
    loss: str | None
    signals: list[str]
    level: float
    validation: str


class ForecastRecord(RecordBase):
    """A forecast of probing scores from training-free signals (``probe forecast``): held-out
    forecasts of the probed pairs (leave one encoder out) and forecasts of the others, with intervals."""

    kind: Literal["forecast"] = "forecast"
    benchmark: str
    config: ForecastConfig
    #: of held-out forecast against measured (None where the forecasts are all equal)
    spearman: Score | None
    spearman_p: Score | None
    coverage: Score
    rows: list[ForecastRow]


Record = Annotated[AlignmentRecord | TuneRecord | SimilarityRecord | CorrelatesRecord | SelectionRecord
                   | CorrelationRecord | MtebRecord | ForecastRecord,
                   Field(discriminator="kind")]


def provenance() -> dict[str, Any]:
    import platform

    import numpy
    import torch

    from probe.records.git import git_revision
    from probe.version import __version__

    return {"probe": __version__, "git": git_revision(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__}


def preset_changes(config: Any, tune: Any = None) -> dict[str, Any]:
    """A record's ``preset_changes`` field, as keyword arguments: present only when there are some.
    ``tune``: a tune run's encoder settings, compared with its preset's [tune] table too."""
    changes = dict(config.preset_changes)
    if tune is not None:
        changes |= tune.preset_changes(config.recipe)
    return {"preset_changes": changes} if changes else {}


def encoder_ref(spec: Any) -> EncoderRef:
    """The record's view of a registry entry."""
    published = {k: getattr(spec, k) for k in ("imagenet_knn", "imagenet_linear", "mteb_avg")
                 if getattr(spec, k) is not None}
    return EncoderRef(name=spec.name, loader=spec.loader, weights=spec.weights, revision=spec.revision,
                      objective=spec.objective, params_m=spec.params_m, embed_dim=spec.embed_dim,
                      control=spec.is_control, published=published,
                      **({"layer": spec.layer} if spec.layer is not None else {}))
