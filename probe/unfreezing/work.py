"""``probe tune`` as pair work: the pair runner (:mod:`probe.pipeline.runner`) plans, skips, runs,
records and counts tune runs exactly as it does head fits, on this machine or on Ray.

An item is a (vision, text) pair; a unit is one (tune setting, head configuration, benchmark). The
units of one setting and configuration share a training run: it trains once and scores every
pending benchmark, and its run folder (checkpoint, tuned features) is removed once all its records
are written.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.align.config import ProbeConfig
from probe.pipeline.runner import Item
from probe.records import keys
from probe.unfreezing.config import TuneConfig
from probe.unfreezing.pair import TuneJob, TuneRun

#: one record: a tune setting, a head configuration and a benchmark (by its target's key)
Unit = tuple[TuneConfig, ProbeConfig, str]


@dataclass
class TuneWork:
    """Every tune run of a grid over pairs (see the module docstring)."""

    runner: TuneRun
    tune_configs: Sequence[TuneConfig]
    head_configs: Sequence[ProbeConfig]
    #: entries that cannot train, with the reason: runs that would train one are not planned
    untrainable: dict[str, str]
    label: str = "tune"

    def jobs(self, item: Item) -> list[TuneJob]:
        """The runs of a pair that can train what they ask, in grid order."""
        vision, text = item
        every = [TuneJob(vision, text, cfg, tcfg) for tcfg in self.tune_configs for cfg in self.head_configs]
        return [job for job in every if self.feasible(job)]

    def feasible(self, job: TuneJob) -> bool:
        return not any(spec.name in self.untrainable and not selection.frozen
                       for spec, selection in zip((job.vision, job.text), job.tune.selections(), strict=True))

    def units(self, item: Item) -> Sequence[Unit]:
        return [(job.tune, job.config, target.key) for job in self.jobs(item) for target in self.runner.plan.targets]

    def _job(self, item: Item, unit: Unit) -> TuneJob:
        vision, text = item
        return TuneJob(vision, text, unit[1], unit[0])

    def _target(self, key: str) -> Any:
        return next(t for t in self.runner.plan.targets if t.key == key)

    def path(self, item: Item, unit: Unit) -> Path:
        return self.runner.record_path(self._job(item, unit), self._target(unit[2]))

    def identity(self, item: Item, unit: Unit) -> str:
        """What produces this unit's record (:mod:`probe.records.identity`)."""
        return self.runner.identity(self._job(item, unit), self._target(unit[2]))

    def features(self, spec: Any) -> None:
        """Nothing ahead: a run reads the cache and loads its encoders itself."""
        return None

    def run(self, item: Item, features: Sequence[Any], units: Sequence[Unit]) -> Iterator[tuple[Unit, Any]]:
        pending: dict[tuple[TuneConfig, ProbeConfig], dict[str, Unit]] = {}
        for unit in units:  # the units themselves are yielded: executors know them by identity
            pending.setdefault((unit[0], unit[1]), {})[unit[2]] = unit
        for (tcfg, cfg), wanted in pending.items():
            job = self._job(item, (tcfg, cfg, ""))
            outcome = self.runner.run(job)
            for target, record in outcome:
                if target.key in wanted:
                    yield wanted[target.key], record
            if all(record.ok for _, record in outcome):
                self.runner.finish(job)

    def failure(self, item: Item, unit: Unit, reason: str) -> Any:
        return self.runner.failure_record(self._job(item, unit), self._target(unit[2]), reason)

    def describe(self, item: Item, unit: Unit, record: Any) -> str:
        job, target = self._job(item, unit), self._target(unit[2])
        head = f"{job.vision.name} x {job.text.name} [{job.tune.setting} | {job.config.tag}] on {target.benchmark}"
        return f"{head}: {keys.headline(record.metrics, record.intervals)}" if record.ok else f"{head}: FAILED: {record.error}"
