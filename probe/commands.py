"""Registers the commands that live beside the CLI's core (data, features, ...)."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Attach every sub-command module's commands to ``group`` (modules import only click)."""
    from probe import cli_data, cli_report, cli_run, cli_select

    for module in (cli_data, cli_run, cli_select, cli_report):
        for command in module.COMMANDS:
            group.add_command(command)
