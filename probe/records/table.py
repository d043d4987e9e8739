"""Records as table rows: one flattener, one pandas frame, one best-per-pair rule.

Every table probe shows (the leaderboard, ``probe.records.load``, the pair rankings) is built from
:func:`flatten`, so a column means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, NamedTuple

from probe.records import keys
from probe.records.store import Stored, iter_records


class PairKey(NamedTuple):
    """A pair's result is only comparable within one training dataset and one benchmark."""

    dataset: str
    benchmark: str
    vision: str
    text: str


def _config(record: Any) -> dict[str, Any]:
    config = getattr(record, "config", None)
    if config is None:
        return {}
    if is_dataclass(config):
        return {f.name: getattr(config, f.name) for f in fields(config)}
    return config.model_dump()


def flatten(stored: Stored) -> dict[str, Any]:
    """One row: identity columns, the scalar config fields, every metric and ``<metric>_lo/_hi``."""
    record = stored.record
    row: dict[str, Any] = {"kind": record.kind, "status": record.status, "error": record.error,
                           "dataset": record.dataset, "created": record.created}
    for side in ("vision", "text", "model"):
        ref = getattr(record, side, None)
        if ref is not None:
            row[side] = ref.name
            row[f"{side}_control"] = ref.control
    for name in ("split", "modality"):
        if hasattr(record, name):
            row[name] = getattr(record, name)
    if record.kind == "alignment":
        row["protocol"], row["benchmark"] = record.protocol, record.benchmark.label
    row |= {k: v for k, v in _config(record).items() if isinstance(v, (str, int, float, bool)) or v is None}
    row |= getattr(record, "metrics", None) or {}
    for key, (lo, hi) in (getattr(record, "intervals", None) or {}).items():
        lo_key, hi_key = keys.interval_bounds(key)
        row[lo_key], row[hi_key] = lo, hi
    row["saturated"] = dict(getattr(record, "saturated", None) or {})
    row["path"] = str(stored.path)
    return row


def load(results_dir: Path | str | None = None, kind: str | None = None):
    """All records under ``results_dir`` as a pandas DataFrame, one row per record."""
    import pandas as pd

    return pd.DataFrame([flatten(s) for s in iter_records(results_dir, kind)])


def best_by_pair(stored: Iterable[Stored], metric: str | None = keys.PROBING_SCORE) -> dict[PairKey, Stored]:
    """The successful alignment record with the highest ``metric`` for each pair, per dataset and
    benchmark; ``metric=None`` ranks by each benchmark's primary score (:func:`keys.primary`)."""
    best: dict[PairKey, tuple[float, Stored]] = {}
    for item in stored:
        record = item.record
        if record.kind != "alignment" or not record.ok:
            continue
        if metric is None:
            found = keys.primary(record.metrics)
            value = found[1] if found is not None else None
        else:
            value = record.metric(metric)
        if value is None:
            continue
        key = PairKey(record.dataset, record.benchmark.label, record.vision.name, record.text.name)
        if key not in best or value > best[key][0]:
            best[key] = (value, item)
    return {key: item for key, (_, item) in best.items()}
