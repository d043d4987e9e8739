"""The ``probe`` command line.

Only click and probe's light modules are imported at start-up; every command imports what it needs
inside its function, so ``probe --help`` stays fast. A :class:`~probe.errors.ProbeError` becomes a
one-line message on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from probe import settings
from probe.cli.common import CONTEXT, RunContext
from probe.errors import ProbeError

#: every environment variable probe reads (from :mod:`probe.settings`), listed under ``probe --help``
ENVIRONMENT = "\b\nEnvironment:\n" + "\n".join(f"  {name:<27} {what}" for name, what in settings.ALL.items())


def _quiet_hub_libraries(allow_download: bool) -> None:
    """The process-wide settings of the Hugging Face libraries, set once here and nowhere else.

    Loaders already ask for local files only unless downloads are allowed; offline mode also stops
    the libraries' own background requests. Off a terminal their progress bars only clutter logs.
    """
    if not allow_download:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not sys.stderr.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@click.group(context_settings=CONTEXT, epilog=ENVIRONMENT)
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
@click.option(
    "--trust-remote-code",
    is_flag=True,
    help="Let entries from your own registry files run code (trust_remote_code, packaged loaders); "
         "also $PROBE_TRUST_REMOTE_CODE=1. probe's own entries need no flag.",
)
@click.pass_context
def cli(ctx: click.Context, registry_paths: tuple[str, ...], allow_download: bool, trust_remote_code: bool) -> None:
    """Measure how well frozen vision encoders line up with frozen text encoders.

    \b
    Examples:
      probe models 'dinov2/*'            list DINOv2 entries
      probe models --available           what loads on this machine
      probe run --vision all --text all  probe every available pair on the demo data
      probe select --top 3               rank pairs without training
      probe report                       write reports/leaderboard.html
    """
    from probe.settings import ENV_TRUST_CODE, downloads_allowed

    if trust_remote_code:  # through the environment, so data-loader workers and subprocesses agree

        os.environ[ENV_TRUST_CODE] = "1"
    allowed = allow_download or downloads_allowed()
    _quiet_hub_libraries(allowed)
    ctx.obj = RunContext(registry_paths, allow_download=allowed)


#: each command's page in the documentation (``docs/``; ``nox -s docs`` builds the site), named at the
#: end of its --help
DOC_PAGES = {"models": "reference/registry.md", "install-offline": "index.md", "presets": "guide/alignment-probing.md",
             "data": "guide/real-data.md", "datasets": "guide/real-data.md", "extract": "guide/scale.md",
             "benchmarks": "reference/benchmarks.md", "run": "guide/alignment-probing.md",
             "select": "guide/choosing-a-pair.md", "correlate": "guide/choosing-a-pair.md",
             "forecast": "guide/choosing-a-pair.md", "tune": "guide/partial-unfreezing.md",
             "eval": "guide/saved-models.md", "export": "guide/saved-models.md", "report": "guide/leaderboard.md",
             "cache": "explanation/architecture.md", "migrate": "guide/first-steps.md"}


def _register_commands() -> None:
    """Attach every command module's commands (each imports only click and light modules); each --help
    ends with the page of the documentation that explains it."""
    from probe.cli import aligned, cache, data, migrate, models, report, run, select, tune

    for module in (models, data, run, select, tune, aligned, report, cache, migrate):
        for command in module.COMMANDS:
            if command.name not in cli.commands:
                page = DOC_PAGES.get(str(command.name))
                if page and not command.epilog:
                    command.epilog = f"More: docs/{page} (the documentation site: nox -s docs)"
                cli.add_command(command)


def _log_to_stderr() -> None:
    """probe's log lines as bare messages on stderr: warnings, and at INFO one line per feature-cache
    entry a command uses (computed or read), so a long run says what it is doing."""
    import logging

    class StderrHandler(logging.StreamHandler):
        """Writes to whatever ``sys.stderr`` is when a line is logged (a caller may swap it), instead
        of the stream that was current when the handler was made; through tqdm's writer, so a line
        logged while a progress bar is drawn goes above the bar instead of into it."""

        @property
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, value) -> None:
            pass

        def emit(self, record: logging.LogRecord) -> None:
            try:
                from tqdm import tqdm

                tqdm.write(self.format(record), file=sys.stderr)
            except Exception:  # noqa: BLE001 - logging must never raise (logging.Handler.handleError's rule)
                self.handleError(record)

    logger = logging.getLogger("probe")
    if not logger.handlers:
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors -> one line on stderr, exit 2."""
    _log_to_stderr()
    _register_commands()
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
    except OSError as exc:  # the disk filled up or a folder vanished mid-run: what and where, in one line
        where = f" ({exc.filename})" if exc.filename else ""
        click.echo(f"error: {exc.strerror or exc}{where}; records and cache entries already written are kept",
                   err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


def __getattr__(name: str) -> Any:
    """``probe.cli.full_cli``: the command group with every command registered (they are registered on
    first use so that ``probe --help`` stays fast); the documentation's command reference reads it."""
    if name == "full_cli":
        _register_commands()
        return cli
    raise AttributeError(f"module 'probe.cli' has no attribute {name!r}")
