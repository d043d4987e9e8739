"""``probe report``: the leaderboard and plots."""

from __future__ import annotations

import click

from probe.cli.common import CONTEXT, results_option


@click.command(context_settings=CONTEXT)
@results_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="reports", show_default=True)
@click.option("--metric", default="mutual_knn", show_default=True,
              help="Selection metric plotted against the probing score.")
@click.pass_obj
def report(obj, results_dir, out_dir, metric) -> None:
    """Write reports/leaderboard.html (self-contained, sortable, filterable), .csv, .json and plots.

    \b
    Examples:
      probe report
      probe report --results ~/runs/results --out ~/runs/reports --metric cka
    """
    from probe.api.reporting import write_report

    paths = write_report(results_dir, out_dir, metric, registry=obj.registry_paths)
    plots = sum(1 for k in paths if k.startswith("plot:"))
    click.echo(f"wrote {paths['csv']}, {paths['json']} and {plots} plot(s)")
    click.echo(f"leaderboard: {paths['html'].resolve()}")


COMMANDS = [report]
