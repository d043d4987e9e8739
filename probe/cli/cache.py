"""Feature-cache commands: ``probe cache list``, ``probe cache prune``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from probe.cli.common import CONTEXT, cache_option, results_option
from probe.io import human_bytes

#: entry states, as :data:`probe.features.inventory.STATES` names them (not imported: it pulls in numpy,
#: and `probe --help` stays light)
STATES = ("ready", "stale", "partial")


@click.group(context_settings=CONTEXT)
def cache() -> None:
    """See and clean the feature cache: what each entry holds, and which this probe no longer reads.

    A cache key covers everything that changes the features, probe's own format and JPEG decoder
    included, so entries written by an older probe are never read again: `prune` frees their space.

    \b
    Examples:
      probe cache list                          every entry: rows, dtype, size, state
      probe cache list 'dinov2/*' -d shapes     one family on one dataset
      probe cache prune                         remove stale entries (an older probe's)
      probe cache prune --state partial --dry-run   what removing stopped extractions would free
    """


def _folder(results_dir: str | None, cache_dir: str | None) -> Path:
    from probe.settings import default_cache_dir, default_results_dir

    if cache_dir:
        return Path(cache_dir)
    return default_cache_dir(Path(results_dir) if results_dir else default_results_dir())


def _selection(patterns: tuple[str, ...], dataset: str | None, states: tuple[str, ...], results_dir: str | None,
               cache_dir: str | None) -> tuple[Path, list[Any]]:
    from probe.errors import ProbeError
    from probe.features.inventory import matching, scan

    folder = _folder(results_dir, cache_dir)
    if not folder.is_dir():
        raise ProbeError(f"no feature cache at {folder}; name one with --cache-dir or --results")
    entries = scan(folder)
    _check_names(entries, patterns, dataset, folder)
    return folder, matching(entries, patterns, dataset, states or STATES)


def _check_names(entries: list[Any], patterns: tuple[str, ...], dataset: str | None, folder: Path) -> None:
    """A model pattern or dataset that names nothing in the cache (whatever the state) is a typo,
    not an empty answer: say which the cache holds (an empty selection by ``--state`` is an answer)."""
    import difflib

    from probe.errors import ProbeError
    from probe.features.inventory import matching

    def valid(names: set[str], asked: str) -> str:
        if not names:
            return "the cache is empty"
        close = difflib.get_close_matches(asked.replace("*", "").replace("?", ""), sorted(names), n=1, cutoff=0.6)
        shown = sorted(names)
        listed = ", ".join(shown[:8]) + (f" and {len(shown) - 8} more" if len(shown) > 8 else "")
        return (f"did you mean {close[0]}? " if close else "") + f"it holds {listed}"

    if dataset is not None and not matching(entries, (), dataset):
        raise ProbeError(f"no entry of dataset {dataset!r} in the cache at {folder}; "
                         + valid({e.dataset for e in entries}, dataset))
    for pattern in patterns:
        if not matching(entries, (pattern,)):
            raise ProbeError(f"no entry of a model matching {pattern!r} in the cache at {folder}; "
                             + valid({e.model for e in entries}, pattern))


def _entries(n: int, kind: str = "") -> str:
    """``3 stale entries``, ``1 entry``."""
    return f"{n} {kind + ' ' if kind else ''}entr{'y' if n == 1 else 'ies'}"


def _summary(entries: list[Any]) -> str:
    parts = []
    for state in STATES:
        some = [e for e in entries if e.state == state]
        if some:
            parts.append(f"{len(some)} {state} ({human_bytes(sum(e.bytes for e in some))})")
    total = human_bytes(sum(e.bytes for e in entries))
    return f"{_entries(len(entries))}, {total}" + (f": {', '.join(parts)}" if parts else "")


@cache.command("list", context_settings=CONTEXT)
@click.argument("patterns", nargs=-1)
@click.option("--dataset", "-d", default=None, help="Only entries of this dataset.")
@click.option("--state", "states", type=click.Choice(STATES), multiple=True,
              help="Only entries in this state (repeatable): ready (read by runs), stale (written by an older "
                   "probe: never read again), partial (a stopped extraction; a rerun resumes it).")
@results_option
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON records instead of a table.")
def cache_list(patterns: tuple[str, ...], dataset: str | None, states: tuple[str, ...], results_dir: str | None,
               cache_dir: str | None, as_json: bool) -> None:
    """List the cache entries of models matching shell-style PATTERNS (default: all).

    \b
    Examples:
      probe cache list
      probe cache list 'efficientnet/*' --dataset shapes --state stale
    """
    folder, entries = _selection(patterns, dataset, states, results_dir, cache_dir)
    if as_json:
        click.echo(json.dumps([{**vars(e), "path": str(e.path)} for e in entries], indent=2))
        return
    from probe.cli.tables import print_table

    rows = [(e.model, e.dataset, f"{e.split}.{e.input_set}",
             "" if e.rows is None else f"{e.rows:,} x {e.dim}", e.dtype or "", human_bytes(e.bytes),
             e.state + (f": {e.detail}" if e.detail else "")) for e in entries]
    print_table(["model", "dataset", "split.set", "rows x dim", "dtype", "size", "state"], rows,
                title=f"feature cache {folder}", prose=("state",), optional=("dtype", "state"))
    click.echo(_summary(entries))
    if any(e.state == "stale" for e in entries):
        click.echo("`probe cache prune` removes the stale entries; nothing reads them again.")


@cache.command("prune", context_settings=CONTEXT)
@click.argument("patterns", nargs=-1)
@click.option("--dataset", "-d", default=None, help="Only entries of this dataset.")
@click.option("--state", "states", type=click.Choice(STATES), multiple=True, default=("stale",), show_default=True,
              help="Remove entries in this state (repeatable). partial loses a stopped extraction's finished "
                   "chunks; ready entries are recomputed when next needed.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed and freed; remove nothing.")
@results_option
@cache_option
def cache_prune(patterns: tuple[str, ...], dataset: str | None, states: tuple[str, ...], dry_run: bool,
                results_dir: str | None, cache_dir: str | None) -> None:
    """Remove cache entries of models matching shell-style PATTERNS (default: all); stale ones by default.

    An entry an extraction is writing (its lock held) is left alone and counted.

    \b
    Examples:
      probe cache prune --dry-run            # what would go, and how much it frees
      probe cache prune --state partial 'dinov2/*'
    """
    from probe.features.inventory import prune

    folder, entries = _selection(patterns, dataset, states, results_dir, cache_dir)
    what = "/".join(states)
    if dry_run:
        for entry in entries:
            click.echo(f"would remove {entry.path} ({entry.state}, {human_bytes(entry.bytes)})")
        click.echo(f"would remove {_entries(len(entries), what)} of {folder}, freeing "
                   f"{human_bytes(sum(e.bytes for e in entries))}")
        return
    removed, busy = prune(entries)
    click.echo(f"removed {_entries(len(removed), what)} of {folder}, freeing "
               f"{human_bytes(sum(e.bytes for e in removed))}")
    if busy:
        click.echo(f"left {_entries(len(busy))} that an extraction is writing: "
                   f"{', '.join(str(e.path) for e in busy[:3])}{' ...' if len(busy) > 3 else ''}", err=True)


COMMANDS = [cache]
