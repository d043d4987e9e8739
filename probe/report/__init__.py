"""``probe report``: leaderboard (HTML, CSV, JSON) and plots from the result records.

The page is one self-contained file: inline CSS and JS, plots embedded as data URIs, no request to
any server, so it can be mailed, archived or opened from a file.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from probe.records import keys
from probe.report.table import COLUMNS, build_table, flat_rows


def build_report(results_dir: Path, out_dir: Path, selection_metric: str = keys.DEFAULT_SELECTION,
                 entries: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write leaderboard.html/.csv/.json and plots/*.png under ``out_dir``; returns their paths.
    ``entries`` (registry entries by name, read here unless given) tell which results are current."""
    import platform

    import jinja2
    import pandas as pd

    from probe.io import atomic_open, write_json
    from probe.records.store import iter_records
    from probe.records.table import best_by_pair
    from probe.report.benchmarks import benchmark_matrix
    from probe.report.heat import heat_grid
    from probe.report.plots import section_plots, short_names
    from probe.report.sections import build_sections, competition_ranks
    from probe.report.tuning import tune_tables as tune_report_tables
    from probe.version import __version__

    alignment = iter_records(results_dir, "alignment")
    tuned = iter_records(results_dir, "tune")
    rows, failures = build_table(results_dir, alignment, allow_empty=bool(tuned), entries=entries)
    best_paths = {str(s.path) for s in best_by_pair(alignment, metric=None).values()}
    labels, by_benchmark = benchmark_matrix(alignment, _main_metrics())
    real = [r for r in by_benchmark if not (r["vision_control"] or r["text_control"])]
    for row in by_benchmark:
        row["rank"] = None  # controls are shown, not ranked
    for row, rank in zip(real, competition_ranks([r["mean"] if r["mean"] is not None else float("-inf")
                                                  for r in real]), strict=True):
        row["rank"] = rank
    doubted = sum(1 for row in rows if row["doubt"])
    if doubted:
        logging.getLogger("probe.report").warning(
            "%d of %d result(s) cannot be vouched for as current (marked on the page; first: %s)", doubted, len(rows),
            next(row["doubt"] for row in rows if row["doubt"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = build_sections(rows, selection_metric)
    plots_dir = out_dir / "plots"
    made: dict[str, Path] = {}
    for section in sections:
        best = [row for row in section.rows if row["provenance"]["record"] in best_paths]
        section.plots = section_plots(section.rows, best, section.metric, plots_dir, section.id, selection_metric)
        section.heat = heat_grid(best)
        for plot in section.plots:
            made[f"{section.id}:{plot.title}"] = plot.all
    tune_tables = tune_report_tables(tuned, plots_dir)
    from probe.report.layers import layer_searches

    searches = layer_searches(iter_records(results_dir, "similarity"), plots_dir)
    for search in searches:
        if search.plot is not None:
            made[f"layers:{search.vision} x {search.text}"] = search.plot
    for tune_table in tune_tables:
        if tune_table.plot is not None:
            made[f"tune:{tune_table.vision} x {tune_table.text}"] = tune_table.plot
    table = flat_rows(rows)
    with atomic_open(out_dir / "leaderboard.csv", "w") as handle:
        pd.DataFrame(table).to_csv(handle, index=False)
    write_json(out_dir / "leaderboard.json", {"rows": table, "failures": failures,
                                              "by_benchmark": {"benchmarks": labels, "rows": by_benchmark},
                                              "tune": [{k: v for k, v in vars(t).items() if k != "plot"}
                                                       for t in tune_tables],
                                              "layer_searches": [{k: v for k, v in vars(s).items() if k != "plot"}
                                                                 for s in searches]})
    from probe.report.bench import bench_cases

    bench, bench_stamp = bench_cases(out_dir / "bench.json")
    for row in rows:
        row["provenance_json"] = json.dumps(row["provenance"], indent=1, sort_keys=True, default=str)
    env = jinja2.Environment(loader=jinja2.PackageLoader("probe", "report"), autoescape=True)
    env.globals["format"] = format
    # a pair's names without their family prefix where that stays unambiguous; the full name on hover,
    # in the details and in what the filter reads
    env.globals["short"] = short_names(sorted({r[side] for r in [*rows, *by_benchmark] for side in ("vision", "text")}))
    env.filters["wbr"] = _breakable
    env.filters["datauri"] = lambda path: "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    html = env.get_template("leaderboard.html.j2").render(
        sections=sections, failures=failures, tune_tables=tune_tables, layer_searches=searches, bench=[b for b in bench if "ours_s" in b], bench_stamp=bench_stamp,
        benchmark_labels=labels, by_benchmark=by_benchmark,
        suite_mixes_protocols=len({s["protocol"] for r in by_benchmark for s in r["scores"].values()}) > 1,
        n_rows=len(rows), n_doubted=doubted, n_controls=sum(1 for r in rows if r["vision_control"] or r["text_control"]),
        n_pairs=len({(r["vision"], r["text"]) for r in rows}),
        any_saturated=any(r["saturated"] for r in rows),
        columns=_chooser_columns(sections), many_corpora=len({s.dataset for s in sections}) > 1,
        datasets=sorted({r["dataset"] for r in rows} | {f["dataset"] for f in failures}),
        n_tune=sum(1 for s in tuned if s.record.ok), tune_datasets=sorted({t.dataset for t in tune_tables}),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), version=__version__,
        machine=platform.platform())
    with atomic_open(out_dir / "leaderboard.html", "w") as handle:
        handle.write(html)
    return {"html": out_dir / "leaderboard.html", "csv": out_dir / "leaderboard.csv",
            "json": out_dir / "leaderboard.json", **{f"plot:{k}": v for k, v in made.items()}}


def _main_metrics() -> dict[str, str]:
    """Benchmark name -> the main metric its catalogue entry names (DataComp's tasks)."""
    from probe.evaluation.catalogue import Catalogue

    return {name: entry.main_metric for name, entry in Catalogue.load().benchmarks.items() if entry.main_metric}


def _breakable(name: str):
    """A model name that may wrap after each ``/`` (``<wbr>``, which copying and filtering ignore)."""
    from markupsafe import Markup, escape

    return Markup("/<wbr>").join(escape(part) for part in str(name).split("/"))


def _chooser_columns(sections) -> list:
    """Every column some section shows, once, in table order: the column chooser's entries."""
    seen: dict[str, object] = {}
    for section in sections:
        for column in section.columns:
            seen.setdefault(column.key, column)
    order = [key for key, _, _ in COLUMNS]
    return sorted(seen.values(), key=lambda c: order.index(c.key))


__all__ = ["COLUMNS", "build_report", "build_table", "flat_rows"]
