"""``probe migrate``: results of an older probe renamed to this version's names, when asked."""

from __future__ import annotations

import click

from probe.cli.common import CONTEXT, results_option


@click.command(context_settings=CONTEXT)
@results_option
@click.option("--dry-run", is_flag=True, help="Count what would be renamed or moved; change nothing.")
def migrate(results_dir, dry_run) -> None:
    """Rename results an older probe named differently, so runs find them again.

    Records, saved models (and the paths records hold to them) and tune run folders named with their
    seed twice (...-seed1-seed1) take the one-seed names; names with characters outside
    A-Z a-z 0-9 _ . + - (which older versions kept where they were letters) take this version's. Where both names exist the older file is
    moved to <results>/quarantine/; nothing is deleted. No other command renames anything: a run that
    finds older names says how many and points here.

    \b
    Examples:
      probe migrate --dry-run
      probe migrate --results ~/runs/results
    """
    from probe.api.migration import migrate as migrate_results

    click.echo(migrate_results(results_dir, dry_run=dry_run).summary())


COMMANDS = [migrate]
