"""``probe report``: the leaderboard and plots."""

from __future__ import annotations

import click

from probe.cli import CONTEXT


@click.command(context_settings=CONTEXT)
@click.option("--results", "results_dir", type=click.Path(file_okay=False), default=None,
              help="Records folder [default: results or $PROBE_RESULTS_DIR].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="reports", show_default=True)
@click.option("--metric", default="mutual_knn", show_default=True,
              help="Selection metric plotted against the probing score.")
def report(results_dir, out_dir, metric) -> None:
    """Write reports/leaderboard.html (self-contained, sortable, filterable), .csv, .json and plots.

    \b
    Examples:
      probe report
      probe report --results ~/runs/results --out ~/runs/reports --metric cka
    """
    from pathlib import Path

    from probe.errors import ProbeError
    from probe.report import build_report
    from probe.results import default_results_dir
    from probe.select import SIMILARITY_METRICS

    if metric not in SIMILARITY_METRICS:
        raise ProbeError(f"unknown metric {metric!r}; valid: {', '.join(SIMILARITY_METRICS)}")
    paths = build_report(Path(results_dir) if results_dir else default_results_dir(), Path(out_dir),
                         f"similarity/{metric}")
    plots = sum(1 for k in paths if k.startswith("plot:"))
    click.echo(f"wrote {paths['csv']}, {paths['json']} and {plots} plot(s)")
    click.echo(f"leaderboard: {paths['html'].resolve()}")


COMMANDS = [report]
