"""What a feature cache holds, and which of its entries this probe can still use.

A cache key hashes everything that changes the numbers, probe's own choices included (the feature
format, the JPEG decoder). When those change, the entries written before are never read again but
stay on disk: a CC3M-sized split is gigabytes per encoder. :func:`scan` finds every entry and says
what it is:

- ``ready``: finished, and the key this probe computes for the request its ``meta.json`` describes
  is the entry's own, so a run asking for those features reads it;
- ``stale``: finished by an older probe (its key is no longer computed) or with a ``meta.json``
  that cannot be read: nothing will read it again;
- ``partial``: an extraction that stopped before it finished (its chunks resume it).

:func:`prune` removes entries, never one whose lock a running extraction holds.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.features.cache import ENTRY_MARKER

#: what an entry can be (see the module docstring)
STATES = ("ready", "stale", "partial")


@dataclass(frozen=True)
class CachedEntry:
    """One entry folder of the cache and what :func:`scan` made of it."""

    path: Path
    model: str
    dataset: str
    split: str
    input_set: str
    state: str
    #: why a stale entry is stale; finished chunks of a partial one
    detail: str
    rows: int | None
    dim: int | None
    dtype: str | None
    bytes: int


def scan(cache: Path) -> list[CachedEntry]:
    """Every entry folder under ``cache`` (``<model>/<dataset>/<split>.<set>.<key>``), sorted."""
    if not cache.is_dir():
        return []
    return sorted((_entry(folder) for folder in _folders(cache)), key=lambda e: (e.model, e.dataset, e.split, e.input_set))


def _folders(cache: Path) -> Iterator[Path]:
    """Entry folders: three deep, named ``<split>.<set>.<key>``, real folders inside the cache (no
    link out of it), carrying probe's marker or a finished entry's ``meta.json`` for that key. A
    user's own folder that happens to look like one (``2024/summer/trip.to.rome``) is never listed,
    so never removed."""
    root = cache.resolve()
    for folder in cache.glob("*/*/*"):
        if folder.name.count(".") < 2 or not folder.is_dir() or any(p.is_symlink() for p in (
                folder, folder.parent, folder.parent.parent)):
            continue
        if not folder.resolve().is_relative_to(root):
            continue
        if (folder / ENTRY_MARKER).is_file() or _meta_names_key(folder):
            yield folder


def _meta_names_key(folder: Path) -> bool:
    """Whether ``folder/meta.json`` is a feature entry's (one written before the marker existed)."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "format_version" in meta and meta.get("key") == folder.name.rsplit(".", 1)[-1]


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _entry(folder: Path) -> CachedEntry:
    split, input_set, key = folder.name.rsplit(".", 2)
    model, dataset = folder.parent.parent.name, folder.parent.name
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        chunks = len(list((folder / "chunks").glob("*.npz")))
        return CachedEntry(folder, model, dataset, split, input_set, "partial", f"{chunks} finished chunk(s)",
                           None, None, None, _size(folder))
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        shape = meta["shape"]
        rows, dim, dtype = int(shape[0]), int(shape[1]), str(meta["dtype"])
        model, dataset, split, input_set = str(meta["model"]), str(meta["dataset"]), str(meta["split"]), str(meta["set"])
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return CachedEntry(folder, model, dataset, split, input_set, "stale", f"unreadable meta.json ({exc})",
                           None, None, None, _size(folder))
    why = _why_stale(meta, key)
    return CachedEntry(folder, model, dataset, split, input_set, "stale" if why else "ready", why or "", rows, dim,
                       dtype, _size(folder))


def _why_stale(meta: dict[str, Any], key: str) -> str | None:
    """None when this probe computes ``key`` for the request ``meta`` describes, else why not."""
    try:
        current = current_key(meta)
    except StaleEntry as exc:
        return str(exc)
    if current != key or meta.get("key") != key:
        return "its key is not the one this probe computes (an older feature format or key)"
    return None


class StaleEntry(Exception):
    """An entry's ``meta.json`` describes a request this probe would key otherwise; says why."""


def current_key(meta: dict[str, Any]) -> str:
    """The key this probe gives the request an entry's ``meta.json`` describes (encoder spec, data,
    storage dtype, corpus fit, JPEG decoder); :class:`StaleEntry` where the entry predates what a key
    now holds."""
    from probe.encoders.preprocess import JPEG_DECODER, JPEG_DECODER_CUDA
    from probe.errors import ProbeError
    from probe.features.cache import cache_key
    from probe.features.extract import key_extra
    from probe.registry import spec_from_dict

    try:
        spec = spec_from_dict(meta["spec"], source="meta.json")
    except ProbeError as exc:
        raise StaleEntry(f"its encoder spec no longer reads ({str(exc).removeprefix('meta.json: ')})") from None
    except (KeyError, TypeError, AttributeError):
        raise StaleEntry("its meta.json has no encoder spec") from None
    decoder = (meta.get("preprocessing") or {}).get("jpeg_decoder")
    if spec.modality == "vision" and decoder not in (JPEG_DECODER, JPEG_DECODER_CUDA):
        raise StaleEntry("decoded before the JPEG decoder was part of the key")
    extra = key_extra(spec, meta.get("fit_fingerprint") or None, decoder)
    try:
        return cache_key(spec, meta["dataset"], meta["split"], meta["set"], meta["content_fingerprint"], meta["dtype"],
                         extra)
    except KeyError as exc:
        raise StaleEntry(f"its meta.json has no {exc.args[0]!r}") from None


def matching(entries: Iterable[CachedEntry], patterns: tuple[str, ...] = (), dataset: str | None = None,
             states: Iterable[str] = STATES) -> list[CachedEntry]:
    """The entries whose model matches one of the shell-style ``patterns`` (all when none), of
    ``dataset`` (all when None) and in one of ``states``. A partial entry is known by its folder's
    name only (``dinov2_vit-b14``), which a pattern matches with its ``/`` read as ``_``."""
    from fnmatch import fnmatchcase

    def named(entry: CachedEntry, pattern: str) -> bool:
        return fnmatchcase(entry.model, pattern) or fnmatchcase(entry.model, pattern.replace("/", "_"))

    wanted = set(states)
    return [e for e in entries if e.state in wanted and (dataset is None or e.dataset == dataset)
            and (not patterns or any(named(e, p) for p in patterns))]


def prune(entries: Iterable[CachedEntry]) -> tuple[list[CachedEntry], list[CachedEntry]]:
    """``(removed, busy)``: each entry's folder removed under its lock; one whose lock is held (an
    extraction running on it) is left alone."""
    from filelock import FileLock, Timeout

    removed, busy = [], []
    for entry in entries:
        if not entry.path.is_dir():  # gone since the scan
            continue
        lock = FileLock(str(entry.path / ".lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            busy.append(entry)
            continue
        try:
            shutil.rmtree(entry.path)
        finally:
            lock.release()
        removed.append(entry)
        _remove_empty_parents(entry.path)
    return removed, busy


def _remove_empty_parents(folder: Path) -> None:
    """The dataset and model folders an entry leaves empty go with it."""
    for parent in (folder.parent, folder.parent.parent):
        try:
            parent.rmdir()
        except OSError:
            return
