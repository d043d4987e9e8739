"""``probe.evaluate``: score a saved aligned model on benchmarks, zero-shot, without refitting.

A benchmark that the run which fitted the model already scored is compared with that run's record
(they agree unless features or code changed), or replaces it where the record's inputs differ; any
other benchmark gets a new record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

#: what became of each benchmark's record
Outcome = Literal["written", "replaced", "equal", "differs"]


@dataclass
class Scored:
    """One benchmark's new record and what was done with it."""

    path: Path
    record: Any
    outcome: Outcome


def evaluate(model: Any, benchmarks: str | Sequence[str], *, results_dir: str | Path | None = None,
             cache_dir: str | Path | None = None, workers: int | None = None, device: str | None = None,
             allow_download: bool = False, progress: bool = True) -> list[Scored]:
    """One alignment record per benchmark for ``model`` (an :class:`~probe.aligned.AlignedModel`,
    or the path of a saved model folder); suites are expanded.

    Example::

        import probe
        for scored in probe.evaluate("results/models/shapes/...", ["shapes-ood", "digits"]):
            print(scored.record.benchmark.label, scored.record.metrics, scored.outcome)
    """
    from probe.aligned import AlignedModel
    from probe.api.common import names
    from probe.evaluation.benchmarks import get_benchmarks
    from probe.features.extract import new_job
    from probe.features.options import ExtractOptions
    from probe.pipeline.saved import score_saved
    from probe.records.store import model_ref, write_record
    from probe.workspace import folders

    new_job()
    chosen = get_benchmarks(names(benchmarks))
    if isinstance(model, (str, Path)):
        source = Path(model).expanduser()
        model = AlignedModel.load(source, device=device, allow_download=allow_download)
    else:
        source = model.folder
    results, cache = folders(results_dir, cache_dir)
    options = ExtractOptions(cache_dir=cache, workers=workers, device=device, allow_download=allow_download,
                             progress=progress)
    out = []
    for score in score_saved(model, model_ref(results, source), chosen, results, options):
        existing, record = score.existing, score.record
        outcome: Outcome
        if existing is not None and existing.identity is not None and existing.identity != record.identity:
            outcome = "replaced"  # that record's inputs changed: it no longer stands for this
        elif existing is None:
            outcome = "written"
        else:
            outcome = "equal" if existing.metrics == record.metrics else "differs"
        if outcome in ("written", "replaced"):
            write_record(score.path, record)
        out.append(Scored(score.path, record, outcome))
    return out
