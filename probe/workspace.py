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

    A dry run creates and renames nothing: it only checks that the run could write there, and counts
    the results an older version named that the run would rename first."""
    from probe.settings import default_cache_dir, default_results_dir

    results = Path(results_dir).expanduser() if results_dir else default_results_dir()
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(results)
    for path, option in ((results, "--results"), (cache, "--cache-dir")):
        (could_write if dry_run else ensure_writable)(path, option)
    rename_doubled_seeds(results, dry_run)
    return results, cache


def rename_doubled_seeds(results: Path, dry_run: bool = False) -> None:
    """Results named by older probe versions with their seed twice take the names this one looks for."""
    from probe.records.renames import rename_doubled_seeds as rename

    renamed, moved = rename(results, dry_run)
    if dry_run:
        if renamed or moved:
            log.info("%d result file(s) and folder(s) in %s name their seed twice: a run renames them first "
                     "(...-seed1-seed1 becomes ...-seed1); until then this dry run counts them as missing",
                     renamed + moved, results)
        return
    if renamed:
        log.info("renamed %d result file(s) and folder(s) in %s that named their seed twice (...-seed1-seed1 is "
                 "now ...-seed1)", renamed, results)
    if moved:
        log.info("moved %d older record(s) named with their seed twice, each superseded by a newer one, to %s",
                 moved, results / "quarantine")


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
