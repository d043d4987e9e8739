"""Results an older probe named differently, brought to this version's names.

Two changes of name so far. Older versions kept letters of any alphabet in file names, where
:func:`probe.filenames.safe_name` (one rule for records, saved models, tune runs and the feature
cache) maps every character outside ASCII letters, digits and ``_ . + -`` to ``_``; the rule is a
character-by-character mapping, so mapping an older name gives the name the original gets now.

And before :attr:`probe.align.config.ProbeConfig.run_tag`, a head configuration with a seed other than
its default was named ``linear-siglip-seed1-seed1`` (the tag already held the seed, and the seed was
appended again). Records, saved models and tune run folders so named are renamed in place, so
``--skip-existing`` finds them, a resumed tune run finds its checkpoint, and a rerun overwrites them
rather than writing a second record of the same result. A record's ``saved_model`` path is renamed
with its folder. Where both names exist, the one-seed name was written later: the older file is
moved to ``quarantine/`` (nothing is deleted).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

from probe.filenames import safe_name

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


def current_name(name: str) -> str:
    """The name this version gives a result an older probe named ``name``: its seed written once,
    and characters outside :func:`probe.filenames.safe_name`'s set (which older versions kept where
    they were letters in any alphabet) mapped as that rule maps them."""
    return safe_name(single_seed(name))


def _current_path(path: str) -> str:
    """A record's ``saved_model`` path under this version's names. Only a path inside the results
    folder (relative) is probe's to rename; an exported model's absolute path has only its seed fixed."""
    rename = single_seed if path.startswith("/") else current_name
    return "/".join(part if part in ("", ".", "..") else rename(part) for part in path.split("/"))


def _entries(results: Path) -> list[tuple[str, Path]]:
    """``(area, path)`` of every record file, saved-model folder and tune run folder under ``results``:
    ``records/<kind>/<dataset>/<name>.json``, ``models|tune/<dataset>/<name>/``."""
    found = []
    for area in _AREAS:
        root = results / area
        if root.is_dir():
            entries = root.glob("*/*/*.json") if area == "records" else root.glob("*/*")
            found += [(area, path) for path in sorted(entries)]
    return found


def _renamed(area: str, old: Path) -> Path:
    """Where ``old`` belongs under this version's names: its dataset folder and its own name mapped."""
    if area == "records":
        return old.parent.parent / current_name(old.parent.name) / (current_name(old.name.removesuffix(".json"))
                                                                    + ".json")
    return old.parent.parent / current_name(old.parent.name) / current_name(old.name)


def rename_older_names(results: Path, dry_run: bool = False) -> tuple[int, int]:
    """``(renamed, quarantined)``: every record file, saved-model folder and tune run folder under
    ``results`` named as an older probe named it gets this version's name (see the module docstring);
    with ``dry_run`` they are counted and nothing is changed."""
    from probe.records.store import quarantine

    renamed = moved = 0
    for area, old in _entries(results):
        new = _renamed(area, old)
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
        new.parent.mkdir(parents=True, exist_ok=True)
        old.rename(new)
        renamed += 1
        if area == "records":
            _rename_saved_model(new)
        with contextlib.suppress(OSError):  # the older dataset folder, once emptied
            old.parent.rmdir()
    return renamed, moved


def _rename_saved_model(record: Path) -> None:
    """Point a renamed record's ``saved_model`` at its renamed folder (a record that is not valid
    JSON is left for the reader to report)."""
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    saved = data.get("saved_model") if isinstance(data, dict) else None
    if isinstance(saved, str) and _current_path(saved) != saved:
        from probe.io import write_json

        write_json(record, {**data, "saved_model": _current_path(saved)})
