"""Result records: one JSON file per result, append-only, mergeable across machines.

A record carries everything needed to trust and reproduce its numbers: schema and probe
versions, git revision, seed, the full config, both encoders' names, weights and revisions, the
feature-cache keys, dataset, protocol and splits, namespaced metrics and bootstrap intervals.
Failures are records too (``status: "failed"`` with the reason), so a sweep shows what is missing.
"""

from __future__ import annotations

import functools
import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from probe.errors import ProbeError

SCHEMA_VERSION = 1
#: Keys that legitimately differ between two identical runs.
VOLATILE = ("created", "timing")


def default_results_dir() -> Path:
    import os

    return Path(os.environ.get("PROBE_RESULTS_DIR", "results"))


@functools.cache
def git_revision() -> str | None:
    """The commit probe runs from (with ``+dirty`` when changed), or None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def provenance() -> dict[str, Any]:
    import platform

    import numpy
    import torch

    from probe import __version__

    return {"probe": __version__, "git": git_revision(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__}


def new_record(kind: str, **fields: Any) -> dict[str, Any]:
    record = {"schema_version": SCHEMA_VERSION, "kind": kind, "status": "ok", "error": None,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": provenance()}
    record.update(fields)
    return record


def record_path(results_dir: Path, kind: str, dataset: str, *parts: str) -> Path:
    def safe(text: str) -> str:
        return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in text)

    return results_dir / "records" / kind / safe(dataset) / ("__".join(safe(p) for p in parts) + ".json")


def write_record(path: Path, record: dict[str, Any]) -> None:
    from probe.io import write_json

    write_json(path, record)


def read_record(path: Path) -> dict[str, Any]:
    """One record; refuses unknown schema versions instead of misreading them."""
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ProbeError(f"cannot read result record {path}: {exc}") from None
    version = record.get("schema_version") if isinstance(record, dict) else None
    if version != SCHEMA_VERSION:
        raise ProbeError(f"result record {path} has schema_version {version!r}; this probe reads "
                         f"{SCHEMA_VERSION} (re-run it, or use the probe version that wrote it)")
    return record


def is_complete(path: Path) -> bool:
    """True when a successful record is already there (``--skip-existing``); failures are retried."""
    if not path.exists():
        return False
    try:
        return read_record(path).get("status") == "ok"
    except ProbeError:
        return False


def iter_records(results_dir: Path | str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    """Every record (of one kind) under ``results_dir``; empty when none has been written yet."""
    root = Path(results_dir) if results_dir is not None else default_results_dir()
    base = root / "records" / kind if kind else root / "records"
    return [read_record(p) | {"_path": str(p)} for p in sorted(base.rglob("*.json"))]


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One table row: identity columns, every metric, and ``<metric>_lo`` / ``<metric>_hi`` intervals."""
    row: dict[str, Any] = {"kind": record["kind"], "status": record["status"], "error": record.get("error"),
                           "dataset": record.get("dataset"), "created": record.get("created")}
    for side in ("vision", "text"):
        if isinstance(record.get(side), dict):
            row[side] = record[side]["name"]
            row[f"{side}_control"] = record[side].get("control", False)
    config = record.get("config") or {}
    row |= {k: config.get(k) for k in ("head", "loss", "seed") if k in config}
    row |= record.get("metrics") or {}
    for key, (lo, hi) in (record.get("intervals") or {}).items():
        row[f"{key}_lo"], row[f"{key}_hi"] = lo, hi
    row["path"] = record.get("_path")
    return row


def load(results_dir: Path | str | None = None, kind: str | None = None):
    """All records under ``results_dir`` as a pandas DataFrame, one row per record."""
    import pandas as pd

    return pd.DataFrame([flatten(r) for r in iter_records(results_dir, kind)])
