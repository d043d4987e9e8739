"""``probe.migrate``: bring a results folder written by an older probe to the names this one reads.

An explicit step, asked for by the user: no other command renames or moves a result. A run that
finds older names says how many and points here; until then it does not see them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from probe.errors import ProbeError


@dataclass(frozen=True)
class MigrationResult:
    """What :func:`migrate` did (or, with ``dry_run``, would do)."""

    results_dir: Path
    #: record files, saved-model folders and tune run folders given this version's names
    renamed: int
    #: older records superseded by a newer one of the same result, moved to ``<results>/quarantine``
    quarantined: int
    dry_run: bool

    def summary(self) -> str:
        if not self.renamed and not self.quarantined:
            return f"nothing to migrate in {self.results_dir}: every result has this version's name"
        verb = ("would rename", "would move") if self.dry_run else ("renamed", "moved")
        return (f"{verb[0]} {self.renamed} result file(s) and folder(s) in {self.results_dir} that an older probe "
                f"named (a seed written twice, ...-seed1-seed1, or characters outside A-Z a-z 0-9 _ . + -); {verb[1]} {self.quarantined} older record(s), each "
                f"superseded by a newer one, to {self.results_dir / 'quarantine'}")


def migrate(results_dir: str | Path | None = None, *, dry_run: bool = False) -> MigrationResult:
    """Rename the results an older probe named differently (records, saved models with the paths
    records hold to them, tune run folders), so ``--skip-existing`` and resumed tune runs find them.
    Nothing is deleted: where both names exist, the older file goes to ``quarantine/``. Record
    *contents* need no migration: older record formats are read as they are."""
    from probe.records.renames import rename_older_names
    from probe.settings import results_dir as chosen_results_dir
    from probe.workspace import ensure_writable

    results = chosen_results_dir(results_dir)
    if not results.is_dir():
        raise ProbeError(f"no results folder at {results}; pass the folder to migrate with --results")
    if not dry_run:
        ensure_writable(results, "--results")
    renamed, quarantined = rename_older_names(results, dry_run)
    return MigrationResult(results, renamed, quarantined, dry_run)
