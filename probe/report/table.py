"""The leaderboard table: one row per successful alignment record, joined with the correlates and
similarity records of the same encoders and dataset; failures listed apart with their reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe.records import keys

#: (column key, header, number format) in display order; keys ending in a record's metric name hold
#: exactly the record's value.
COLUMNS: list[tuple[str, str, str]] = [
    ("vision", "vision", ""), ("text", "text", ""), ("config", "config", ""), ("head", "head", ""),
    ("loss", "loss", ""), ("dataset", "fitted on", ""), ("benchmark", "scored on", ""), ("protocol", "protocol", ""),
    (keys.PROBING_SCORE, "probing score", ".3f"),
    (keys.interval_bounds(keys.PROBING_SCORE)[0], "CI low", ".3f"),
    (keys.interval_bounds(keys.PROBING_SCORE)[1], "CI high", ".3f"),
    (keys.FORECAST, "forecast", ".3f"),
    (keys.ZEROSHOT_MEAN_TOP1, "zero-shot top-1", ".3f"),
    (keys.retrieval("i2t_R@1"), "I→T R@1", ".3f"), (keys.retrieval("i2t_R@5"), "I→T R@5", ".3f"),
    (keys.retrieval("i2t_R@10"), "I→T R@10", ".3f"),
    (keys.retrieval("t2i_R@1"), "T→I R@1", ".3f"), (keys.retrieval("t2i_R@5"), "T→I R@5", ".3f"),
    (keys.retrieval("t2i_R@10"), "T→I R@10", ".3f"),
    (keys.COMPOSITIONAL_GROUP, "Winoground group", ".3f"),
    (keys.VISION_KNN20, "vision kNN@20", ".3f"), (keys.TEXT_SCORE, "text score", ".3f"),
    (keys.similarity("mutual_knn"), "mutual kNN", ".3f"), (keys.similarity("cka"), "CKA", ".3f"),
    (keys.similarity("unbiased_cka"), "unbiased CKA", ".3f"),
    (keys.similarity("cknna"), "CKNNA", ".3f"), (keys.similarity("svcca"), "SVCCA", ".3f"),
    ("params_m", "params (M)", ".1f"),
    ("pairs_seen", "pairs seen", ",d"), ("head_train_flops", "head FLOPs", ".3g"),
    ("extraction_flops", "encoder FLOPs", ".3g"),
]
#: Columns of a flattened record the page keeps (the rest stay in the record file).
_KEPT = ("vision", "text", "head", "loss", "dataset", "benchmark", "protocol", "vision_control", "text_control")


def _forecasts(results_dir: Path) -> dict[tuple[str, str], dict[tuple[str, str], tuple[float, float, float]]]:
    """Per (corpus, benchmark label) the newest forecast's ``(forecast, low, high)`` of each pair."""
    from probe.records.store import iter_records

    newest: dict[tuple[str, str], Any] = {}
    for stored in iter_records(results_dir, "forecast"):
        record = stored.record
        key = (record.dataset, record.benchmark)
        if record.ok and (key not in newest or record.created > newest[key].created):
            newest[key] = record
    return {key: {(row.vision, row.text): (row.forecast, row.low, row.high) for row in record.rows}
            for key, record in newest.items()}


def _correlate(correlates: dict, record: Any, model: str, key: str) -> float | None:
    """An encoder's unimodal score on the record's corpus, else on its benchmark (a captioned corpus
    has no labels for kNN; a classification benchmark does)."""
    for dataset in (record.dataset, record.benchmark.name):
        value = correlates.get((dataset, model), {}).get(key)
        if value is not None:
            return value
    return None


def build_table(results_dir: Path, alignment: list[Any] | None = None, allow_empty: bool = False,
                entries: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(rows, failures)`` from the alignment records (read here unless given). Raises ProbeError
    when there is no alignment record at all, unless ``allow_empty`` (a folder of tune results)."""
    from probe.errors import ProbeError
    from probe.records.store import iter_records
    from probe.records.table import flatten
    from probe.report.trust import doubt, registry_entries

    if alignment is None:
        alignment = iter_records(results_dir, "alignment")
    if not alignment and not allow_empty:
        raise ProbeError(f"no results under {results_dir / 'records'}; run `probe run` (or `probe tune`) first")
    entries = registry_entries() if entries is None else entries
    correlates = {(s.record.dataset, s.record.model.name): s.record.metrics
                  for s in iter_records(results_dir, "correlates") if s.record.ok}
    similarity: dict[tuple[str, str, str], Any] = {}
    for s in sorted(iter_records(results_dir, "similarity"), key=lambda s: s.record.split != "train"):
        if s.record.ok and s.record.config.is_default:  # train first; other protocols and layer searches apart
            similarity.setdefault((s.record.dataset, s.record.vision.name, s.record.text.name), s.record)
    forecasts = _forecasts(results_dir)
    rows, failures = [], []
    for stored in alignment:
        r, flat = stored.record, flatten(stored)
        base = {k: flat[k] for k in _KEPT}
        if not r.ok:
            failures.append(base | {"error": r.error, "created": r.created, "path": str(stored.path)})
            continue
        row = base | r.metrics
        row["config"] = r.config.tag  # the terminal's label of this head configuration
        row["config_values"] = r.config.to_dict()
        row["intervals"] = {key: tuple(bounds) for key, bounds in (r.intervals or {}).items()}
        low, high = r.interval(keys.PROBING_SCORE) or (None, None)  # a zero-shot-only benchmark has none
        row[keys.interval_bounds(keys.PROBING_SCORE)[0]], row[keys.interval_bounds(keys.PROBING_SCORE)[1]] = low, high
        top1 = [value for key, value in r.metrics.items() if keys.is_zeroshot_top1(key)]
        row[keys.ZEROSHOT_MEAN_TOP1] = sum(top1) / len(top1) if top1 else None
        row[keys.VISION_KNN20] = _correlate(correlates, r, r.vision.name, keys.VISION_KNN20)
        row[keys.TEXT_SCORE] = _correlate(correlates, r, r.text.name, keys.TEXT_SCORE)
        sim = similarity.get((r.dataset, r.vision.name, r.text.name))
        if sim is not None:  # with its interval and its shuffled-pairing null, which the plots draw
            row |= sim.metrics
            row["similarity_intervals"] = {key: tuple(bounds) for key, bounds in (sim.intervals or {}).items()}
            row["similarity_null"] = {key: stat.mean for key, stat in (sim.null or {}).items()}
        forecast = forecasts.get((r.dataset, row["benchmark"]), {}).get((r.vision.name, r.text.name))
        if forecast is not None:  # the pair's forecast from training-free signals (probe forecast), beside the measured
            row[keys.FORECAST] = forecast[0]
            row["intervals"][keys.FORECAST] = forecast[1:]
        # every cell's 95% interval where one was measured: the record's metrics, the similarity, the forecast
        row["cell_intervals"] = {**row["intervals"], **row.get("similarity_intervals", {})}
        row["chance"] = dict(r.chance or {})
        row["saturated"] = dict(r.saturated or {})
        top1_keys = [key for key in r.metrics if keys.is_zeroshot_top1(key)]
        if top1_keys and all(key in row["saturated"] for key in top1_keys):
            row["saturated"][keys.ZEROSHOT_MEAN_TOP1] = row["saturated"][top1_keys[0]]
        row["params_m"] = r.vision.params_m + r.text.params_m
        if r.cost is not None:
            extraction = [f for f in r.cost.extraction_flops.values() if f is not None]
            row["pairs_seen"], row["head_train_flops"] = r.cost.pairs_seen, r.cost.head_train_flops
            row["extraction_flops"] = sum(extraction) if len(extraction) == 2 else None
        row["doubt"] = doubt(r, entries)
        row["provenance"] = {"versions": r.versions.model_dump(), "created": r.created, "seed": r.seed,
                             "config": r.config.to_dict(),
                             "vision": {"name": r.vision.name, "weights": r.vision.weights,
                                        "revision": r.vision.revision, "loader": r.vision.loader},
                             "text": {"name": r.text.name, "weights": r.text.weights, "revision": r.text.revision,
                                      "loader": r.text.loader},
                             "splits": r.splits, "protocol": r.protocol, "corpus": r.corpus.model_dump(),
                             "benchmark": r.benchmark.model_dump(), "dropped": r.dropped,
                             "record": str(stored.path)}
        rows.append(row)
    # by each benchmark's primary score (probing score, else zero-shot top-1, else Winoground group)
    rows.sort(key=lambda row: -(keys.primary(row) or ("", float("-inf")))[1])
    return rows, failures


def flat_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for CSV / JSON: the table's columns (every metric of the records), every metric's 95%
    interval as ``<metric>_lo`` / ``<metric>_hi`` where its record has one, every scalar setting of the
    head configuration (lr, epochs, seed, ...), plus control flags."""
    columns = [k for k, _, _ in COLUMNS]
    extra = sorted({k for row in rows for k in row if "/" in k and k not in columns})
    bounded = sorted({k for row in rows for k in row.get("intervals", {})})
    interval_columns = [b for k in bounded for b in keys.interval_bounds(k) if b not in columns]
    settings = sorted({k for row in rows for k, v in row.get("config_values", {}).items()
                       if k not in columns and (v is None or isinstance(v, (str, int, float, bool)))})
    return [{k: row.get(k) for k in [*columns, *extra]}
            | {b: (row.get("intervals", {}).get(k) or (None, None))[i] for k in bounded
               for i, b in enumerate(keys.interval_bounds(k)) if b in interval_columns}
            | {k: row.get("config_values", {}).get(k) for k in settings}
            | {"vision_control": row.get("vision_control"), "text_control": row.get("text_control"),
               "saturated": "; ".join(f"{k}: {why}" for k, why in row.get("saturated", {}).items()) or None,
               "doubt": row.get("doubt")}
            for row in rows]
