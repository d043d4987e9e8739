"""What a sweep would do, before it does it (``--dry-run`` of ``probe run``, ``extract`` and ``tune``).

A sweep over V x T encoders on a CC3M-sized corpus costs GPU-days, most of it in feature extraction.
A dry run resolves the same encoders, data and head grid as the run, then reads only the feature cache
and the records folder (no model is loaded, nothing is computed, no file is changed) and says:

- per encoder, how many of its feature sets are cached, stopped partway or missing, how many
  inputs it would still encode and the disk their features take;
- an estimate of that time, where an earlier extraction of the same encoder on the same kind of device
  left its rate in the cache (``meta.json``'s ``rate``: rows and wall seconds of its timed chunks);
- how many results would be fitted and how many are already there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.features.options import ExtractOptions
from probe.pipeline.splits import SplitPlan
from probe.registry import EncoderSpec

if TYPE_CHECKING:
    from probe.data.base import SplitData
    from probe.features.roles import FeatureRequest


@dataclass(frozen=True)
class FeatureNeed:
    """One set of inputs an encoder encodes for the plan, and what the cache already holds of it."""

    role: str
    input_set: str
    inputs: int
    #: cached (finished), partial (stopped partway: a run resumes it) or missing (not begun)
    state: str
    #: inputs a run would still encode (0 when cached; those of the unfinished chunks when partial)
    to_encode: int
    #: size of the features file a run would write (0 when cached)
    bytes_to_write: int = 0


@dataclass(frozen=True)
class Rate:
    """Inputs per second of an earlier extraction of an encoder, from its cache entry."""

    per_second: float
    device: str
    entry: Path


@dataclass(frozen=True)
class EncoderPreview:
    spec: EncoderSpec
    needs: tuple[FeatureNeed, ...]
    rate: Rate | None

    @property
    def to_encode(self) -> int:
        return sum(n.to_encode for n in self.needs)

    def count(self, state: str) -> int:
        return sum(n.state == state for n in self.needs)

    @property
    def bytes_to_write(self) -> int:
        return sum(n.bytes_to_write for n in self.needs)

    @property
    def seconds(self) -> float | None:
        """Estimated extraction time (None without a measured rate; 0 with nothing to encode)."""
        if not self.to_encode:
            return 0.0
        return self.to_encode / self.rate.per_second if self.rate else None


def feature_needs(spec: EncoderSpec, requests: Iterable[FeatureRequest], fit: SplitData | None,
                  options: ExtractOptions) -> tuple[FeatureNeed, ...]:
    """What the cache holds of each of ``requests`` (read only); ``fit`` is the corpus an encoder
    fitted on its captions (TF-IDF) is fitted on, as in the run."""
    import numpy as np

    from probe.features import split_inputs
    from probe.features.extract import chunk_plan, serving_entries
    from probe.features.options import storage_dtype

    row_bytes = spec.embed_dim * np.dtype(storage_dtype(spec, options)).itemsize
    needs, seen = [], set()
    for request in requests:
        data = request.computed_on  # a carve-out reads the whole split's entry: counted once
        inputs, content, name, fit_texts = split_inputs(spec, data, fit, request.input_set, request.texts)
        entries = serving_entries(spec, data.dataset, data.split, name, content, options, fit_texts)
        if entries[0].dir in seen:
            continue
        seen.add(entries[0].dir)
        if any(entry.looks_finished() for entry in entries):
            needs.append(FeatureNeed(request.role, name, len(inputs), "cached", 0))
            continue
        own = entries[0]
        ranges, _ = chunk_plan(spec, inputs, options)
        left = sum(len(rows) for c, rows in enumerate(ranges) if not own.chunk_path(c).is_file())
        state = "partial" if left < len(inputs) else "missing"
        needs.append(FeatureNeed(request.role, name, len(inputs), state, left, len(inputs) * row_bytes))
    return tuple(needs)


def measured_rate(spec: EncoderSpec, cache: Path, device: str) -> Rate | None:
    """The rate of this encoder's largest earlier extraction on ``device``'s kind (cpu, cuda), from any
    dataset in the cache, wherever its chunks ran; None where none recorded one (entries written before
    chunks were timed)."""
    from probe.features.cache import model_dir

    kind = device.split(":")[0]
    best: tuple[int, Rate] | None = None
    for meta_path in model_dir(cache, spec).glob("*/*/meta.json"):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            rate = meta["rate"]
            rows, seconds, where = int(rate["rows"]), float(rate["seconds"]), str(rate["device"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if meta.get("model") != spec.name or where.split(":")[0] != kind or rows <= 0 or seconds <= 0:
            continue
        if best is None or rows > best[0]:
            best = (rows, Rate(rows / seconds, where, meta_path.parent))
    return best[1] if best else None


def preview_encoders(specs: Iterable[EncoderSpec], requests: Callable[[EncoderSpec], Iterable[FeatureRequest]],
                     fit: SplitData | None, options: ExtractOptions) -> list[EncoderPreview]:
    """Each encoder's needs (``requests(spec)``: what it encodes) and its measured rate on this device."""
    from probe.encoders.base import pick_device

    device = pick_device(options.device)
    return [EncoderPreview(spec, feature_needs(spec, requests(spec), fit, options),
                           measured_rate(spec, options.cache, device)) for spec in specs]


def plan_previews(specs: Iterable[EncoderSpec], plan: SplitPlan, options: ExtractOptions) -> list[EncoderPreview]:
    """Previews of what a run over ``plan`` encodes (:func:`~probe.features.roles.feature_requests`)."""
    from probe.features.roles import feature_requests

    return preview_encoders(specs, lambda spec: feature_requests(spec, plan), plan.fit, options)


def needed_encoders(jobs: Sequence[Any]) -> list[EncoderSpec]:
    """The encoders of the runner's pending jobs, each once: an encoder whose every result is already
    there (``--skip-existing``) needs no features."""
    seen: dict[str, EncoderSpec] = {}
    for job in jobs:
        for spec in job.item:
            seen.setdefault(spec.name, spec)
    return sorted(seen.values(), key=lambda spec: spec.modality != "vision")  # vision first, each in run order


def tune_step_seconds(results_dir: Path, device: str) -> dict[tuple[str, str, str], float]:
    """Seconds per optimiser step of earlier ``probe tune`` runs on ``device``'s kind, by (vision, text,
    setting), from their records (the run with the most steps of each); a resumed run counts only the
    steps it trained itself."""
    kind = device.split(":")[0]
    best: dict[tuple[str, str, str], tuple[int, float]] = {}
    for path in (results_dir / "records" / "tune").rglob("*.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("status") != "ok" or str(record["training"]["device"]).split(":")[0] != kind:
                continue
            key = (record["vision"]["name"], record["text"]["name"], record["tune"]["setting"])
            steps = int(record["training"]["steps"]) - int(record["tune"].get("resumed_at_step") or 0)
            seconds = float(record["timing"]["train_s"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if steps > 0 and seconds > 0 and (key not in best or steps > best[key][0]):
            best[key] = (steps, seconds / steps)
    return {key: per_step for key, (_, per_step) in best.items()}


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.4 h``, ``2.1 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
