"""``probe report``: leaderboard (HTML, CSV, JSON) and plots from the result records.

The page is one self-contained file: inline CSS and JS, plots embedded as data URIs, no request to
any server, so it can be mailed, archived or opened from a file.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

from probe.records import keys
from probe.report.table import COLUMNS, build_table, flat_rows


def build_report(results_dir: Path, out_dir: Path, selection_metric: str = keys.DEFAULT_SELECTION
                 ) -> dict[str, Path]:
    """Write leaderboard.html/.csv/.json and plots/*.png under ``out_dir``; returns their paths."""
    import platform

    import jinja2
    import pandas as pd

    from probe import __version__
    from probe.io import atomic_open, write_json
    from probe.records.store import iter_records
    from probe.records.table import best_by_pair
    from probe.report.benchmarks import benchmark_matrix
    from probe.report.plots import make_plots

    alignment = iter_records(results_dir, "alignment")
    rows, failures = build_table(results_dir, alignment)
    best_paths = {str(s.path) for s in best_by_pair(alignment).values()}
    labels, by_benchmark = benchmark_matrix(alignment)
    best = [row for row in rows if row["provenance"]["record"] in best_paths]
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = make_plots(rows, best, out_dir / "plots", selection_metric)
    table = flat_rows(rows)
    with atomic_open(out_dir / "leaderboard.csv", "w") as handle:
        pd.DataFrame(table).to_csv(handle, index=False)
    write_json(out_dir / "leaderboard.json", {"rows": table, "failures": failures,
                                              "by_benchmark": {"benchmarks": labels, "rows": by_benchmark}})
    bench_path = out_dir / "bench.json"
    bench = json.loads(bench_path.read_text()).get("cases", []) if bench_path.exists() else []
    for row in rows:
        row["provenance_json"] = json.dumps(row["provenance"], indent=1, sort_keys=True, default=str)
    env = jinja2.Environment(loader=jinja2.PackageLoader("probe", "report"), autoescape=True)
    env.globals["format"] = format
    html = env.get_template("leaderboard.html.j2").render(
        rows=rows, failures=failures, columns=COLUMNS, bench=[b for b in bench if "ours_s" in b],
        benchmark_labels=labels, by_benchmark=by_benchmark,
        plots=[(title, base64.b64encode(path.read_bytes()).decode()) for title, path in plots.items()],
        n_rows=len(rows), n_pairs=len({(r["vision"], r["text"]) for r in rows}),
        datasets=sorted({r["dataset"] for r in rows} | {f["dataset"] for f in failures}),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), version=__version__,
        machine=platform.platform())
    with atomic_open(out_dir / "leaderboard.html", "w") as handle:
        handle.write(html)
    return {"html": out_dir / "leaderboard.html", "csv": out_dir / "leaderboard.csv",
            "json": out_dir / "leaderboard.json", **{f"plot:{k}": v for k, v in plots.items()}}


__all__ = ["COLUMNS", "build_report", "build_table", "flat_rows"]
