"""Results named with their seed twice, brought to the one-seed names.

Before :attr:`probe.align.config.ProbeConfig.run_tag`, a head configuration with a seed other than
its default was named ``linear-siglip-seed1-seed1`` (the tag already held the seed, and the seed was
appended again). Records, saved models and tune run folders so named are renamed in place, so
``--skip-existing`` finds them, a resumed tune run finds its checkpoint, and a rerun overwrites them
rather than writing a second record of the same result. A record's ``saved_model`` path is renamed
with its folder. Where both names exist, the one-seed name was written later: the older file is
moved to ``quarantine/`` (nothing is deleted).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

#: a name component whose seed is written inside the tag and again at its end
_DOUBLED = re.compile(r"^(?P<head>.*?)-seed(?P<n>\d+)(?P<rest>-.*)?-seed(?P=n)$")
#: the folders whose entries are named after head configurations
_AREAS = ("records", "models", "tune")


def single_seed(name: str) -> str:
    """``name`` with each ``__``-separated component's doubled seed written once, at its end."""
    def one(component: str) -> str:
        found = _DOUBLED.match(component)
        if found is None:
            return component
        return f"{found['head']}{found['rest'] or ''}-seed{found['n']}"

    return "__".join(one(c) for c in name.split("__"))


def _single_seed_path(path: str) -> str:
    return "/".join(single_seed(part) for part in path.split("/"))


def rename_doubled_seeds(results: Path, dry_run: bool = False) -> tuple[int, int]:
    """``(renamed, quarantined)``: every record file, saved-model folder and tune run folder under
    ``results`` named with its seed twice gets its one-seed name (see the module docstring); with
    ``dry_run`` they are counted and nothing is changed."""
    from probe.records.store import quarantine

    renamed = moved = 0
    for area in _AREAS:
        root = results / area
        if not root.is_dir():
            continue
        # records/<kind>/<dataset>/<name>.json; models|tune/<dataset>/<name>/
        entries = root.glob("*/*/*.json") if area == "records" else root.glob("*/*")
        suffix = ".json" if area == "records" else ""
        for old in sorted(p for p in entries if "-seed" in p.name):
            new = old.with_name(single_seed(old.name.removesuffix(suffix)) + suffix)
            if new == old:
                continue
            if dry_run:
                moved += area == "records" and new.exists()
                renamed += not new.exists()
                continue
            if new.exists():
                if area == "records" and quarantine(old, results) is not None:
                    moved += 1
                continue
            old.rename(new)
            renamed += 1
            if area == "records":
                _rename_saved_model(new)
    return renamed, moved


def _rename_saved_model(record: Path) -> None:
    """Point a renamed record's ``saved_model`` at its renamed folder (a record that is not valid
    JSON is left for the reader to report)."""
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    saved = data.get("saved_model") if isinstance(data, dict) else None
    if isinstance(saved, str) and _single_seed_path(saved) != saved:
        from probe.io import write_json

        write_json(record, {**data, "saved_model": _single_seed_path(saved)})
