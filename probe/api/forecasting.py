"""``probe.forecast``: how well each pair not yet probed will align, with an interval, from the
training-free signals probe has recorded, validated leave one encoder out
(:mod:`probe.metrics.forecast`)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.errors import ProbeError

log = logging.getLogger("probe")


@dataclass
class ForecastResult:
    """Per benchmark, the forecast (:class:`probe.metrics.forecast.Forecast`) and its record."""

    dataset: str
    forecasts: dict[str, Any]
    paths: list[Path]

    def to_frame(self) -> Any:
        import pandas as pd

        rows = []
        for benchmark, found in self.forecasts.items():
            for (vision, text), (measured, value, low, high) in found.held_out.items():
                rows.append({"benchmark": benchmark, "vision": vision, "text": text, "measured": measured,
                             "forecast": value, "low": low, "high": high})
            for (vision, text), (value, low, high) in found.predicted.items():
                rows.append({"benchmark": benchmark, "vision": vision, "text": text, "measured": None,
                             "forecast": value, "low": low, "high": high})
        return pd.DataFrame(rows)


def pair_signals(results: Path, dataset: str, catalogue: Any) -> dict[tuple[str, str], dict[str, float]]:
    """Per pair with a similarity record on ``dataset`` (probe's own protocol): its similarity
    metrics, each encoder's unimodal correlates where recorded, and both encoders' sizes."""
    from probe.records.store import iter_records

    unimodal = {s.record.model.name: s.record.metrics for s in iter_records(results, "correlates") if s.record.ok}
    known = {spec.name: spec for spec in catalogue.list()}
    out: dict[tuple[str, str], dict[str, float]] = {}
    for stored in iter_records(results, "similarity"):
        r = stored.record
        if r.dataset != dataset or not r.ok or not r.config.is_default:
            continue
        pair = (r.vision.name, r.text.name)
        values = dict(r.metrics)
        for side, name in (("vision", pair[0]), ("text", pair[1])):
            values |= {k: v for k, v in unimodal.get(name, {}).items() if k.startswith(f"{side}/")}
            spec = known.get(name)
            if spec is not None and spec.params_m is not None:  # a control's 0 parameters count too
                values[f"{side}/log10_params"] = math.log10(1 + spec.params_m * 1e6)
        out.setdefault(pair, {}).update(values)
    return out


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def forecast(*, dataset: str = "shapes", head: str | None = None, loss: str | None = None, level: float = 0.9,
             results_dir: str | Path | None = None, registry: Sequence[str | Path] = ()) -> ForecastResult:
    """Forecast every pair's probing score on each benchmark from the training-free signals recorded
    on ``dataset`` (``probe select``'s similarities, ``probe correlate``'s unimodal scores, sizes),
    fitted to the probing scores of heads fitted on ``dataset`` (of ``head`` / ``loss`` when given).
    Held-out forecasts of the probed pairs come from models that saw no pair sharing either encoder;
    one forecast record per benchmark.

    Example::

        import probe
        probe.forecast(dataset="shapes").to_frame().sort_values("forecast", ascending=False)
    """
    from probe.align.config import check_head, check_loss
    from probe.api.common import load_registry
    from probe.metrics.forecast import forecast as fit_forecast
    from probe.ranking import probing_scores
    from probe.records.schema import ForecastRecord
    from probe.records.store import record_path, write_record
    from probe.settings import results_dir as chosen_results_dir

    if head is not None:
        check_head(head)
    if loss is not None:
        check_loss(loss)
    if not 0 < level < 1:
        raise ProbeError(f"level must be between 0 and 1, got {level}")
    results = chosen_results_dir(results_dir)
    probed = probing_scores(results, dataset, head, loss)
    if not probed:
        raise ProbeError(f"no successful probing records of heads fitted on {dataset!r} under {results}; run "
                         "`probe run` first")
    signals = pair_signals(results, dataset, load_registry(registry))
    if not signals:
        raise ProbeError(f"no similarity records on {dataset!r} under {results}; run `probe select --dataset "
                         f"{dataset}` first")
    forecasts, paths = {}, []
    for benchmark, scores in probed.items():
        found = fit_forecast(scores, signals, level=level)
        forecasts[benchmark] = found
        rows = [{"vision": v, "text": t, "measured": m, "forecast": f, "low": lo, "high": hi}
                for (v, t), (m, f, lo, hi) in found.held_out.items()]
        rows += [{"vision": v, "text": t, "measured": None, "forecast": f, "low": lo, "high": hi}
                 for (v, t), (f, lo, hi) in found.predicted.items()]
        config = {"head": head, "loss": loss, "signals": list(found.signals), "level": level,
                  "validation": "leave one encoder out: no pair sharing the vision or the text encoder"}
        label = benchmark.replace("/", "-")
        paths.append(write_record(record_path(results, "forecast", dataset, f"{head or 'any'}-{loss or 'any'}-{label}"),
                                  ForecastRecord.new(dataset=dataset, benchmark=benchmark, seed=0, config=config,
                                                     spearman=_finite(found.spearman),
                                                     spearman_p=_finite(found.spearman_p),
                                                     coverage=found.coverage, rows=rows)))
    return ForecastResult(dataset, forecasts, paths)
