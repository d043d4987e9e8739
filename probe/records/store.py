"""Reading and writing records: one JSON file per result, append-only, mergeable across machines.

:func:`read_record` is the one way in: it migrates a file written under an older schema version
step by step (:data:`MIGRATIONS`), refuses one it cannot read with a one-line reason, and returns a
typed record. Paths are ``<results>/records/<kind>/<dataset>/<parts joined by __>.json``, named by
:func:`probe.filenames.safe_name` as the feature cache is, so records from several machines can be
gathered into one folder without clashes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.filenames import safe_name
from probe.records.migrations import MIGRATIONS

#: The oldest schema version this probe can still migrate from.
OLDEST_READABLE = 1


@dataclass(frozen=True)
class Stored:
    """A record and the file it was read from."""

    path: Path
    record: Any  # probe.records.schema.Record


def record_path(results_dir: Path, kind: str, dataset: str, *parts: str) -> Path:
    return results_dir / "records" / kind / safe_name(dataset) / (safe_name(*parts) + ".json")


def results_folder(results_dir: Path, area: str, dataset: str, *parts: str) -> Path:
    """``<results>/<area>/<dataset>/<parts joined by __>/``: a result's own folder (saved models, a tune
    run's checkpoint and features), named as its records are."""
    return results_dir / area / safe_name(dataset) / safe_name(*parts)


def model_folder(results_dir: Path, dataset: str, *parts: str) -> Path:
    """Where a fitted pair's saved heads go: ``<results>/models/<dataset>/<parts joined by __>/``."""
    return results_folder(results_dir, "models", dataset, *parts)


def model_ref(results_dir: Path, folder: Path | str) -> str:
    """A saved model's path as a record holds it: relative to the results folder where the model is
    inside it (the folder then moves as a whole), else absolute (an exported model scored by
    ``probe eval``), never relative to wherever the command was typed."""
    folder, results = Path(folder).expanduser().resolve(), Path(results_dir).expanduser().resolve()
    return str(folder.relative_to(results)) if folder.is_relative_to(results) else str(folder)


def write_record(path: Path, record: Any) -> Path:
    from probe.io import write_json

    write_json(path, record.dump())
    return path


def migrate(data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` brought to the current schema version, or a ProbeError saying why it cannot be."""
    from probe.records.schema import SCHEMA_VERSION

    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise DamagedRecordError(f"result record {where} has no integer schema_version ({version!r}); "
                                 "it is not a probe record")
    readable = str(SCHEMA_VERSION) if OLDEST_READABLE == SCHEMA_VERSION else f"{OLDEST_READABLE} to {SCHEMA_VERSION}"
    if version > SCHEMA_VERSION:
        raise ProbeError(f"result record {where} has schema_version {version}; this probe reads {readable} "
                         "(upgrade probe to read it)")
    if version < OLDEST_READABLE:
        raise ProbeError(f"result record {where} has schema_version {version}; this probe reads {readable} "
                         "(re-run it, or use the probe version that wrote it)")
    while version < SCHEMA_VERSION:
        data = {**MIGRATIONS[version](data), "schema_version": version + 1}
        version += 1
    return data


def parse_record(data: Any, where: str) -> Any:
    """A typed record from already-decoded JSON (migrated first)."""
    from pydantic import TypeAdapter, ValidationError

    from probe.records.schema import Record

    if not isinstance(data, dict):
        raise DamagedRecordError(f"result record {where} is not a JSON object")
    data = migrate(data, where)
    try:
        return TypeAdapter(Record).validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "record"
        raise DamagedRecordError(f"result record {where} is malformed: {field}: {first['msg']} "
                         f"({exc.error_count()} problem(s))") from None


def read_record(path: Path) -> Any:
    """One typed record; a file that cannot be read, decoded, migrated or validated is a ProbeError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProbeError(f"cannot read result record {path}: {exc}") from None
    except ValueError as exc:  # JSON and UTF-8 decoding errors: the file's bytes are bad
        raise DamagedRecordError(f"cannot read result record {path}: {exc}") from None
    return parse_record(data, str(path))


def read_complete(path: Path) -> Any | None:
    """The successful record at ``path``, or None (absent, unreadable, or a failure to retry)."""
    if not path.exists():
        return None
    try:
        record = read_record(path)
    except ProbeError:
        return None
    return record if record.ok else None


def is_complete(path: Path) -> bool:
    """True when a successful record is already there (``--skip-existing``); failures are retried."""
    return read_complete(path) is not None


class DamagedRecordError(ProbeError):
    """A record file whose bytes are not a valid record (not UTF-8 or JSON, wrong shape, failing
    validation), as opposed to a valid record from another probe version."""


def quarantine(path: Path, root: Path) -> Path | None:
    """Move a damaged record out of ``root/records`` into ``root/quarantine/records`` (same relative
    path, numbered if taken), so later reads stop tripping on it and nothing is deleted; None when
    it cannot be moved (a read-only results folder)."""
    try:
        target = root / "quarantine" / path.relative_to(root)
        stem, n = target, 1
        while target.exists():
            target = stem.with_name(f"{stem.stem}.{n}{stem.suffix}")
            n += 1
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    except (OSError, ValueError):
        return None
    return target


#: unreadable record files named one by one in the warning before the rest are only counted
NAMED_BAD_RECORDS = 5


def iter_records(results_dir: Path | str | None = None, kind: str | None = None) -> list[Stored]:
    """Every readable record (of one kind) under ``results_dir``, with its path; empty when none exists
    yet. One bad file never hides every record after it: a damaged one (not UTF-8, not JSON, wrong
    shape) is moved aside into ``<results>/quarantine/`` and named in a warning; a valid record this
    probe cannot read (another schema version) stays where it is and is named too."""
    import logging

    from probe.settings import default_results_dir

    root = Path(results_dir) if results_dir is not None else default_results_dir()
    base = root / "records" / kind if kind else root / "records"
    out, bad = [], []
    for path in sorted(base.rglob("*.json")):
        try:
            out.append(Stored(path, read_record(path)))
        except DamagedRecordError as exc:
            moved = quarantine(path, root)
            bad.append(f"{exc}; moved aside to {moved}" if moved else str(exc))
        except ProbeError as exc:
            bad.append(str(exc))
    if bad:
        log = logging.getLogger("probe.records")
        for reason in bad[:NAMED_BAD_RECORDS]:
            log.warning("skipped: %s", reason)
        log.warning("%d record file(s) under %s could not be read and were skipped%s", len(bad), base,
                    f" ({len(bad) - NAMED_BAD_RECORDS} not named above)" if len(bad) > NAMED_BAD_RECORDS else "")
    return out
