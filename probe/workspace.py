"""Where a command reads and writes: the results folder and the feature cache, checked before any
work, so a read-only or missing mount is refused before a model loads or a head is fitted.

Used by the Python API and the command line alike; messages go through ``logging`` (logger
``probe``), which the command line prints on stderr and a notebook may silence.
"""

from __future__ import annotations

import logging
from pathlib import Path

from probe.errors import ProbeError

log = logging.getLogger("probe")


def folders(results_dir: str | Path | None, cache_dir: str | Path | None,
            dry_run: bool = False) -> tuple[Path, Path]:
    """``(results, cache)``: the feature cache lives in the results folder unless moved.

    A dry run creates nothing: it only checks that the run could write there. Results an older
    version named differently are counted and pointed to ``probe migrate``; nothing is renamed here."""
    from probe.settings import default_cache_dir
    from probe.settings import results_dir as chosen_results_dir

    results = chosen_results_dir(results_dir)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(results)
    for path, option in ((results, "--results"), (cache, "--cache-dir")):
        (could_write if dry_run else ensure_writable)(path, option)
    say_older_names(results)
    return results, cache


def say_older_names(results: Path) -> None:
    """One line when ``results`` holds results an older probe named differently (see
    :mod:`probe.records.renames`): this
    version does not see them until ``probe migrate`` renames them."""
    from probe.records.renames import rename_older_names

    renamed, moved = rename_older_names(results, dry_run=True) if results.is_dir() else (0, 0)
    if renamed or moved:
        log.warning("%d result file(s) and folder(s) in %s have an older probe's names (a seed written twice or characters "
                    "outside A-Z a-z 0-9 _ . + -): this "
                    "command does not see them; `probe migrate --results %s` renames them", renamed + moved,
                    results, results)


def ensure_writable(path: Path, option: str) -> None:
    """Create ``path`` and write a file in it now (``option`` names the setting that chose it)."""
    import tempfile

    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-write-check-"):
            pass
    except OSError as exc:
        raise ProbeError(f"cannot write to {path} ({exc.strerror or exc}); choose another folder with {option}") from None


def could_write(path: Path, option: str) -> None:
    """:func:`ensure_writable` for a dry run, which creates nothing: ``path``, or the nearest folder
    above it that exists, must be a folder this process may write in."""
    import os

    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "not a folder" if not existing.is_dir() else "not writable"
        raise ProbeError(f"cannot write to {path} ({existing} is {why}); choose another folder with {option}")
