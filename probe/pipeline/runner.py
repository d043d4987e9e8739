"""The pair runner: one loop for every command that works pair by pair (or encoder by encoder).

A command describes its work as a :class:`PairWork`: which result units an item of encoders has
(head configurations of a pair, one similarity record, one correlates record), where each unit's
record goes, how to get one encoder's features, and ``item, features, units -> records``. The
runner does the rest the same way for every command:

- plans the items and skips units whose successful record exists (``skip_existing``);
- keeps in memory only the features of the encoders the current item needs (items come vision-major,
  so a vision encoder's features stay for its whole row and a text encoder's are re-read from the
  cache, which is cheap, instead of every text encoder's staying resident for the whole sweep);
- turns an encoder that cannot give features, or a pair whose work raises, into failure records
  with the reason, and goes on;
- writes every record, shows a progress bar on a terminal and a line per result.

The executor is the seam for running items elsewhere (a process pool, Ray): it receives the jobs
and a sink for finished records; :class:`LocalExecutor` runs them in this process, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from probe.encoder_spec import EncoderSpec
from probe.errors import ProbeError

U = TypeVar("U")
Item = tuple[EncoderSpec, ...]
#: Errors that fail one item and let the run go on; anything else is a bug and stops the run.
ITEM_ERRORS = (ProbeError, OSError, RuntimeError, ValueError, ImportError)


class PairWork(Protocol[U]):
    """What a command does per item; see the module docstring."""

    @property
    def label(self) -> str:
        """What the progress bar calls the run."""

    def units(self, item: Item) -> Sequence[U]:
        """Every result of ``item``; each becomes exactly one record."""

    def path(self, item: Item, unit: U) -> Path:
        """Where the record of ``unit`` goes."""

    def features(self, spec: EncoderSpec) -> Any:
        """One encoder's features (may raise one of :data:`ITEM_ERRORS`)."""

    def run(self, item: Item, features: Sequence[Any], units: Sequence[U]) -> Iterator[tuple[U, Any]]:
        """``(unit, record)`` for the pending units; a record may itself be a failure."""

    def failure(self, item: Item, unit: U, reason: str) -> Any:
        """The failure record of ``unit``."""

    def describe(self, item: Item, unit: U, record: Any) -> str:
        """One line about a finished record (shown as the run goes)."""

    # optional: ``identity(item, unit) -> str``, the digest of what produces the unit's record
    # (:mod:`probe.records.identity`); the record stores it, and ``skip_existing`` compares it


@dataclass(frozen=True)
class Job(Generic[U]):
    """An item and its pending units."""

    item: Item
    units: tuple[U, ...]


@dataclass
class RunOutcome:
    written: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    #: records that were there but could not be kept (``--skip-existing``), with why: recomputed
    stale: list[tuple[Path, str]] = field(default_factory=list)

    def stale_summary(self) -> str | None:
        """One line counting the records recomputed because their inputs changed, by reason."""
        if not self.stale:
            return None
        from collections import Counter

        reasons = Counter(why for _, why in self.stale)
        return (f"recomputed {len(self.stale)} existing record(s) that no longer stand for this run: "
                + "; ".join(f"{n} {why}" for why, n in reasons.most_common()))


def pairs(vision: Sequence[EncoderSpec], text: Sequence[EncoderSpec]) -> list[Item]:
    """Vision-major (vision, text) items: each vision encoder's row of partners in turn."""
    return [(v, t) for v in vision for t in text]


def singles(specs: Sequence[EncoderSpec]) -> list[Item]:
    return [(spec,) for spec in specs]


def reason(exc: BaseException) -> str:
    """``Type: first line`` of an exception, for a failure record."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def features_failed(spec: EncoderSpec, exc: BaseException) -> str:
    """The failure reason of every unit that needed an encoder whose features could not be had."""
    return f"features of {spec.name} failed: {reason(exc)}"


def job_records(work: PairWork, job: Job, features: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
    """``(unit, record)`` for every pending unit of ``job``: the work's own, then, if it raises, a
    failure record for each unit it had not finished (every executor runs a job this way)."""
    finished: set[int] = set()
    try:
        for unit, record in work.run(job.item, features, job.units):
            finished.add(id(unit))
            yield unit, record
    except ITEM_ERRORS as exc:
        for unit in job.units:
            if id(unit) not in finished:
                yield unit, work.failure(job.item, unit, reason(exc))


class ResidentFeatures:
    """Features of the encoders the current item needs, and nothing else; failures are remembered
    (with their reason) so an encoder that cannot give features is not retried for every partner."""

    def __init__(self, load: Callable[[EncoderSpec], Any]):
        self._load = load
        self._held: dict[str, Any] = {}
        self.failures: dict[str, str] = {}

    def need(self, item: Item) -> list[Any] | str:
        """The item's features in order, or the reason one of them is missing."""
        names = {spec.name for spec in item}
        for name in [n for n in self._held if n not in names]:
            del self._held[name]
        for spec in item:
            if spec.name in self.failures:
                return self.failures[spec.name]
            if spec.name not in self._held:
                try:
                    self._held[spec.name] = self._load(spec)
                except ITEM_ERRORS as exc:
                    self.failures[spec.name] = features_failed(spec, exc)
                    return self.failures[spec.name]
        return [self._held[spec.name] for spec in item]


Sink = Callable[[Item, Any, Any], None]


class LocalExecutor:
    """Runs jobs one after another in this process."""

    def execute(self, jobs: Sequence[Job], work: PairWork, sink: Sink) -> None:
        resident = ResidentFeatures(work.features)
        for job in jobs:
            features = resident.need(job.item)
            if isinstance(features, str):
                for unit in job.units:
                    sink(job.item, unit, work.failure(job.item, unit, features))
                continue
            for unit, record in job_records(work, job, features):
                sink(job.item, unit, record)


@dataclass
class PairRunner:
    """Plans, runs and records items of encoders; see the module docstring."""

    skip_existing: bool = False
    echo: Callable[[str], None] | None = None
    progress: bool = True
    executor: Any = field(default_factory=LocalExecutor)

    def plan(self, work: PairWork, items: Iterable[Item],
             stale: list[tuple[Path, str]] | None = None) -> tuple[list[Job], list[Path]]:
        """Jobs with their pending units, and the records that are already there. With
        ``skip_existing``, a successful record is kept only when it holds the identity the work would
        give it now (a work without ``identity`` keeps any); the others are appended to ``stale``
        with why, and run again."""
        from probe.records.identity import why_stale
        from probe.records.store import read_complete

        identity = getattr(work, "identity", None)
        jobs, existing = [], []
        for item in items:
            pending = []
            for unit in work.units(item):
                path = work.path(item, unit)
                record = read_complete(path) if self.skip_existing else None
                why = why_stale(record, identity(item, unit)) if record is not None and identity else None
                if record is not None and why is None:
                    existing.append(path)
                    continue
                if why is not None and stale is not None:
                    stale.append((path, why))
                pending.append(unit)
            if pending:
                jobs.append(Job(item, tuple(pending)))
        return jobs, existing

    def run(self, work: PairWork, items: Iterable[Item]) -> RunOutcome:
        import time

        from tqdm.auto import tqdm

        from probe.features.extract import new_job

        new_job()
        from probe.records.store import write_record

        stale: list[tuple[Path, str]] = []
        jobs, existing = self.plan(work, items, stale)
        outcome = RunOutcome(existing=existing, stale=stale)
        if stale and self.echo is not None:
            self.echo(outcome.stale_summary() or "")
        total = sum(len(job.units) for job in jobs)
        started = time.monotonic()
        # a bar on a terminal only (disable=None): captured output and logs stay one line per result
        with tqdm(total=total, desc=work.label, unit=" result", disable=None if self.progress else True,
                  leave=False) as bar:
            def sink(item: Item, unit: Any, record: Any) -> None:
                path = write_record(work.path(item, unit), record)
                (outcome.written if record.ok else outcome.failed).append(path)
                bar.update(1)
                if self.echo is None:
                    return
                done = len(outcome.written) + len(outcome.failed)
                line = f"[{done}/{total}] {work.describe(item, unit, record)}{progress_note(started, done, total)}"
                if bar.disable:
                    self.echo(line)
                else:
                    bar.write(line)  # above the bar, which stays at the bottom

            self.executor.execute(jobs, work, sink)
        return outcome


def progress_note(started: float, done: int, total: int) -> str:
    """`` (12 s in, about 1 min left)``: elapsed time, and an estimate from the results so far, on
    every result line, so a log read later or a redirected run still says how far it is."""
    import time

    elapsed = time.monotonic() - started
    left = elapsed / done * (total - done) if done else 0.0
    return f" ({_duration(elapsed)} in" + (f", about {_duration(left)} left)" if done < total else ")")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
