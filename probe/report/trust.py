"""Which results the report cannot vouch for, and why: records are known by their content.

``probe run --skip-existing`` recomputes a record whose identity digest differs from the one the run
would give it. The report cannot recompute that digest (it would need the corpus and the benchmark's
data), but it can see two things from the records and the registry alone: a record that holds no
identity at all (written before records held what produced them), and one whose encoder reference
(loader, weights, revision, objective, width) no longer matches the registry entry of the same name.
Such rows are marked on the page and counted in one warning, never silently ranked as current.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: the fields of a record's encoder reference that decide which network it ran
_COMPARED = ("loader", "weights", "revision", "objective", "embed_dim")

UNVERIFIED = "written before records held what produced them; `probe run --skip-existing` recomputes it"


def changed_entry(ref: Any, entries: Mapping[str, Any]) -> str | None:
    """How the registry entry ``ref`` was recorded from differs now (``None`` when it is the same,
    or when the registry read has no entry of that name: a user's file not given here)."""
    layered = getattr(ref, "layer", None) is not None  # <entry>@<layer>: the entry read at a hidden layer
    spec = entries.get(ref.name.rpartition("@")[0] if layered else ref.name)
    if spec is None:
        return None
    compared = [f for f in _COMPARED if not (layered and f == "embed_dim")]  # a layer has its own width
    changed = [f"{field} {getattr(ref, field)!r} → {getattr(spec, field)!r}" for field in compared
               if getattr(ref, field) != getattr(spec, field)]
    return f"{ref.name} changed in the registry since ({', '.join(changed)})" if changed else None


def doubt(record: Any, entries: Mapping[str, Any]) -> str | None:
    """Why the report cannot vouch that ``record`` is what a run would compute now, or ``None``."""
    if getattr(record, "identity", None) is None:
        return UNVERIFIED
    reasons = [r for r in (changed_entry(record.vision, entries), changed_entry(record.text, entries)) if r]
    if reasons:
        return "; ".join(reasons) + "; `probe run --skip-existing` recomputes it"
    return None


def registry_entries(extra: Sequence[str | Path] = ()) -> dict[str, Any]:
    """The registry a run would read now (built-in, ``PROBE_REGISTRY`` and ``extra`` files), by name."""
    from probe.registry import Registry

    return {spec.name: spec for spec in Registry.load(tuple(str(p) for p in extra))}
