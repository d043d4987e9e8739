"""``probe.correlate``: how well each unimodal score (vision kNN, linear probe, k-means NMI, an
MTEB-style text score, published averages) and each similarity metric predicts the probing score."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import ProbeError

log = logging.getLogger("probe")


@dataclass
class CorrelationResult:
    """Each encoder's unimodal scores, and per benchmark the table of correlates with the probing score."""

    dataset: str
    fitted_on: str
    #: encoder name -> its scores (metric key -> value; ``published:<field>`` from the registry)
    models: dict[str, dict[str, float]]
    #: benchmark label -> rows (correlate, over, n, spearman, p_value)
    tables: dict[str, list[dict[str, Any]]]
    #: probed pairs per benchmark label
    n_pairs: dict[str, int]
    #: the correlation records written
    paths: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    #: correlates records that were there but no longer stood for this data or these encoder entries
    #: (recomputed), with why
    stale: list[tuple[Path, str]] = field(default_factory=list)

    def to_frame(self) -> Any:
        """Every table's rows with their benchmark, as one DataFrame."""
        import pandas as pd

        return pd.DataFrame([{"benchmark": benchmark, **row} for benchmark, rows in self.tables.items() for row in rows])


def _unimodal_values(spec: Any, record: Any, tasks: list[Any], results: Path, failed: list[Path], *,
                     device: str | None, allow_download: bool, recompute: bool) -> dict[str, float]:
    """One encoder's correlates: its correlates record's metrics, the MTEB tasks' scores for a text
    encoder when ``tasks`` are given (a failure is added to ``failed``), and its registry entry's
    published averages."""
    from probe.records.store import read_complete

    values = dict(record.metrics) if record is not None else {}
    if tasks and spec.modality == "text":
        from probe.mteb_scores import run_mteb

        path = run_mteb(spec, tasks, results, device=device, allow_download=allow_download, recompute=recompute)
        ran = read_complete(path)
        if ran is not None and ran.ok:
            values |= ran.metrics
        else:
            failed.append(path)
            log.warning("%s: MTEB failed: %s", spec.name, ran.error if ran is not None else "no record")
    for published in ("imagenet_knn", "mteb_avg"):
        if getattr(spec, published) is not None:
            values[f"published:{published}"] = getattr(spec, published)
    return values


def correlate(*, dataset: str = "shapes", corpus: str | None = None, head: str | None = None, loss: str | None = None,
              recompute: bool = False, results_dir: str | Path | None = None, cache_dir: str | Path | None = None,
              workers: int | None = None, device: str | None = None, registry: Sequence[str | Path] = (),
              allow_download: bool = False, progress: bool = True, mteb_tasks: Sequence[Any] = ()
              ) -> CorrelationResult:
    """Correlate every probed encoder's unimodal scores on ``dataset`` (and every pair's similarity
    from ``probe select`` records) with the probing scores of heads fitted on ``corpus`` (default:
    ``dataset``), of ``head`` / ``loss`` only when given; one correlation record per benchmark.
    ``mteb_tasks`` (MTEB task names; the ``mteb`` extra) are run for every probed text encoder, and
    their mean main score is a correlate beside the registry's published MTEB averages.

    Example::

        import probe
        table = probe.correlate(dataset="shapes").to_frame()
        table.sort_values("spearman", ascending=False)
    """
    from probe.align.config import check_head, check_loss
    from probe.api.common import load_registry
    from probe.correlates import CorrelatesWork, correlation_table
    from probe.data import get_dataset
    from probe.data.splits import in_domain_plan
    from probe.features.options import ExtractOptions
    from probe.pipeline.runner import PairRunner, singles
    from probe.ranking import probing_scores
    from probe.records.schema import CorrelationRecord
    from probe.records.store import iter_records, read_complete, record_path, write_record
    from probe.workspace import folders

    if head is not None:
        check_head(head)
    if loss is not None:
        check_loss(loss)
    tasks = []
    if mteb_tasks:
        from probe.mteb_scores import mteb_tasks as check_mteb_tasks

        tasks = check_mteb_tasks(list(mteb_tasks))
    results, cache = folders(results_dir, cache_dir)
    ds = get_dataset(dataset)
    fitted_on = get_dataset(corpus).info.name if corpus else ds.info.name
    probed = probing_scores(results, fitted_on, head, loss)
    if not probed:
        raise ProbeError(f"no successful probing records of heads fitted on {fitted_on!r} under {results}; "
                         f"run `probe run` first" + ("" if corpus else " (or name their corpus with --corpus)"))
    catalogue = load_registry(registry)
    known = {s.name for s in catalogue.list()}
    names = sorted({name for scores in probed.values() for pair in scores for name in pair})
    for name in names:
        if name not in known:
            log.info("skipping %s: no longer in the registry", name)
    specs = [catalogue.get(name) for name in names if name in known]
    options = ExtractOptions(cache_dir=cache, workers=workers, device=device, allow_download=allow_download,
                             progress=progress)
    work = CorrelatesWork(ds.info.name, in_domain_plan(ds, {"zeroshot"}, explicit_tasks=False), results, options)
    if not work.plan.fit.captions and any(s.modality == "text" for s in specs):
        log.info("%s has no captions: text encoders get no unimodal scores here (their published MTEB averages "
                 "still count)", ds.info.name)
    outcome = PairRunner(skip_existing=not recompute, progress=progress, echo=log.info).run(work, singles(specs))
    failed = list(outcome.failed)
    models = {spec.name: _unimodal_values(spec, read_complete(work.path((spec,))), tasks, results, failed,
                                          device=device, allow_download=allow_download, recompute=recompute)
              for spec in specs}
    similarity = {(s.record.vision.name, s.record.text.name): s.record.metrics
                  for s in iter_records(results, "similarity")
                  if s.record.dataset == fitted_on and s.record.ok and s.record.config.is_default}
    tables, paths = {}, []
    for benchmark, scores in probed.items():
        rows = correlation_table(scores, models, similarity)
        tables[benchmark] = rows
        label = benchmark.replace("/", "-")
        paths.append(write_record(record_path(results, "correlation", fitted_on,
                                              f"{head or 'any'}-{loss or 'any'}-{label}"),
                                  CorrelationRecord.new(dataset=fitted_on, benchmark=benchmark, seed=0,
                                                        config={"head": head, "loss": loss,
                                                                **({"mteb_tasks": [t.metadata.name for t in tasks]}
                                                                   if tasks else {})}, table=rows,
                                                        n_pairs=len(scores))))
    return CorrelationResult(ds.info.name, fitted_on, models, tables, {b: len(s) for b, s in probed.items()}, paths,
                             failed, outcome.stale)
