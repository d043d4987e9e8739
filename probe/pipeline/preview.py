"""What a sweep would do, before it does it (``--dry-run`` of ``probe run``, ``extract``, ``select``
and ``tune``).

A sweep over V x T encoders on a CC3M-sized corpus costs GPU-days, most of it in feature extraction.
A dry run resolves the same encoders, data and head grid as the run, then reads only the feature cache
and the records folder (no model is loaded, nothing is computed, no file is changed) and says:

- per encoder, how many of its feature sets are cached, stopped partway or missing, how many
  inputs it would still encode and the disk their features take;
- an estimate of that time, where an earlier extraction of the same encoder on the same kind of device
  left its rate in the cache (``meta.json``'s ``rate``: rows and wall seconds of its timed chunks);
- the head fits: how many, their optimiser steps at most, and their time, from each step's FLOPs
  (counted for the pair's widths without running it) over the FLOP rate earlier fits of that head
  kind reached on this kind of device (their records' counted FLOPs over their wall time);
- how many results would be fitted and how many are already there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.data.splits import SplitPlan
from probe.encoder_spec import EncoderSpec
from probe.features.options import ExtractOptions

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
        data = request.source(spec, options, fit)  # a carve-out reads the whole split's entry: counted once
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


def plan_previews(specs: Iterable[EncoderSpec], plan: SplitPlan, options: ExtractOptions,
                  roles: Sequence[str] | None = None, with_prompts: bool = True) -> list[EncoderPreview]:
    """Previews of what a run over ``plan`` encodes (:func:`~probe.features.roles.feature_requests`,
    which ``roles`` and ``with_prompts`` narrow as they narrow the run's)."""
    from probe.features.roles import feature_requests

    return preview_encoders(specs, lambda spec: feature_requests(spec, plan, roles, with_prompts), plan.fit, options)


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


@dataclass(frozen=True)
class FitPreview:
    """The head fits a run's pending pairs need (each pair fits every configuration of its grid with
    a result to write), their optimiser steps and an estimate of their time."""

    fits: int
    pairs: int
    #: each fit's steps at most: epochs x (training pairs // batch); early stopping may end it sooner
    steps: tuple[int, ...]
    #: estimated seconds of the fits whose head kind has a measured rate on this kind of device
    seconds: float
    #: fits whose head kind has none
    untimed: int
    #: FLOP/s that earlier fits on this kind of device reached, by the plan's head kinds
    rates: dict[str, float]


def head_flop_rates(results_dir: Path, device: str) -> dict[str, float]:
    """FLOP/s that earlier head fits on ``device``'s kind reached, by head kind, from the alignment
    records: the FLOPs of a pair's grid (each configuration's counted once) over the grid's wall time,
    pooled over grids of one head kind (a grid of several kinds cannot say which took the time)."""
    kind = device.split(":")[0]
    grids: dict[tuple[str, str, str, float], dict[str, tuple[str, float]]] = {}
    for path in (results_dir / "records" / "alignment").rglob("*.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("status") != "ok" or str(record["cost"]["device"]).split(":")[0] != kind:
                continue
            seconds, flops = float(record["timing"]["fit_grid_s"]), record["cost"]["head_train_flops"]
            key = (record["dataset"], record["vision"]["name"], record["text"]["name"], seconds)
            config = json.dumps(record["config"], sort_keys=True)
            head = str(record["config"]["head"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if seconds > 0 and isinstance(flops, (int, float)) and flops > 0:
            grids.setdefault(key, {})[config] = (head, float(flops))
    flops_by_head: dict[str, float] = {}
    seconds_by_head: dict[str, float] = {}
    for (*_, seconds), configs in grids.items():
        heads = {head for head, _ in configs.values()}
        if len(heads) == 1:
            head = heads.pop()
            flops_by_head[head] = flops_by_head.get(head, 0.0) + sum(flops for _, flops in configs.values())
            seconds_by_head[head] = seconds_by_head.get(head, 0.0) + seconds
    return {head: flops / seconds_by_head[head] for head, flops in flops_by_head.items()}


def preview_fits(jobs: Sequence[Any], fit_pairs: int, results_dir: Path, device: str) -> FitPreview:
    """The fits of the runner's pending ``jobs`` (pair, pending (config, benchmark) units) on a corpus
    of ``fit_pairs`` captions: steps from each configuration, FLOPs per step counted for the pair's
    feature widths (:func:`~probe.align.train.step_flops`), time from :func:`head_flop_rates`."""
    from probe.align.train import step_flops, steps_per_epoch

    rates = head_flop_rates(results_dir, device)
    counted: dict[tuple[Any, ...], float | None] = {}
    fits, seconds, untimed, steps, heads = 0, 0.0, 0, set(), set()
    for job in jobs:
        vision, text = job.item
        for config in dict.fromkeys(config for config, _ in job.units):
            heads.add(config.head)
            batch = min(config.batch_size, fit_pairs)
            n = config.epochs * steps_per_epoch(fit_pairs, config.batch_size)
            fits += 1
            steps.add(n)
            key = (config.head, config.loss, config.out_dim, config.norm, config.star_width, batch,
                   vision.embed_dim, text.embed_dim)
            if config.head not in rates:
                untimed += 1
                continue
            if key not in counted:
                counted[key] = step_flops(config, vision.embed_dim, text.embed_dim, batch) if batch else None
            per_step = counted[key]
            if per_step is None:
                untimed += 1
            else:
                seconds += n * per_step / rates[config.head]
    return FitPreview(fits, len(jobs), tuple(sorted(steps)), seconds, untimed,
                      {head: rate for head, rate in rates.items() if head in heads})


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.4 h``, ``2.1 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
