"""The leaderboard by benchmark: one row per fitted pair and head configuration, one column per
benchmark it was scored on (its primary score with the 95% interval), and their mean, as DataComp
reports a suite."""

from __future__ import annotations

from typing import Any

from probe.records import keys


def benchmark_matrix(stored: list[Any], main_metrics: dict[str, str] | None = None
                     ) -> tuple[list[str], list[dict[str, Any]]]:
    """``(benchmark labels, rows)``; a row holds ``scores[label] = (metric, value, lo, hi)`` and ``mean``
    over the benchmarks it has (None unless it has every benchmark of the table). A benchmark whose
    catalogue entry names its source's main metric (``main_metrics``, by benchmark name: DataComp's
    mean per-class recall, say) is shown and averaged by that, without an interval."""
    rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    labels: set[str] = set()
    for item in stored:
        r = item.record
        if r.kind != "alignment" or not r.ok:
            continue
        main = (main_metrics or {}).get(r.benchmark.name)
        found: tuple[str, float, float | None, float | None] | None
        if main:
            scored = keys.main_score(r.metrics, main)
            found = None if scored is None else (*scored, None, None)
        else:
            found = keys.primary_interval(r.metrics, r.intervals)
        if found is None:
            continue
        metric, value, lo, hi = found
        key = (r.dataset, r.vision.name, r.text.name, r.config.tag)
        row = rows.setdefault(key, {"dataset": r.dataset, "vision": r.vision.name, "text": r.text.name,
                                    "config": r.config.tag, "vision_control": r.vision.control,
                                    "text_control": r.text.control, "scores": {}})
        label = r.benchmark.label
        labels.add(label)
        row["scores"][label] = {"metric": metric, "value": value, "lo": lo, "hi": hi, "protocol": r.protocol}
    ordered = sorted(labels)
    for row in rows.values():
        values = [row["scores"][label]["value"] for label in ordered if label in row["scores"]]
        row["mean"] = sum(values) / len(values) if len(values) == len(ordered) else None
    out = sorted(rows.values(), key=lambda row: -(row["mean"] if row["mean"] is not None else -1.0))
    return ordered, out
