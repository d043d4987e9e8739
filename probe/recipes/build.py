"""Building a recipe: decode, de-duplicate, split, write a standard format and a manifest.

Output (under ``$PROBE_HOME/datasets/NAME``):

- captions: ``images/<split>/<id>.png`` and ``captions.json`` in Karpathy's layout (read by the
  ``karpathy`` reader), one entry per image with the source's captions;
- classification: ``<split>/NNNNNN.tar`` shards of ``<id>.png`` + ``<id>.cls`` with ``classnames.txt`` and
  ``zeroshot_classification_templates.txt`` (clip_benchmark's webdataset layout, the ``clip-wds`` reader);
- ``manifest.json``: the source files with sizes and checksums, every output file with size, mtime and
  checksum, counts per split, and every dropped item with its reason.

Splits come from a hash of each item's key (or the source's own split), so every machine builds the
same dataset. A build writes into ``NAME.partial/`` and renames it into place at the end; a killed
build resumes from the images already written there. One build per recipe at a time (a file lock).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.data.images import open_rgb
from probe.errors import ProbeError
from probe.io import atomic_open, sha256_file, write_json
from probe.recipes.base import Recipe, SourceItem

log = logging.getLogger("probe.recipes")
BUILD_VERSION = 2
SHARD_SIZE = 1000
#: dropped items listed one by one in the manifest, per reason (the counts are always complete)
LISTED_DROPS = 200


@dataclass
class BuildReport:
    name: str
    folder: Path
    built: bool
    counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def split_of(recipe: Recipe, key: str) -> str:
    """The split of an item: a stable hash of recipe name and key mapped onto the split fractions."""
    value = int.from_bytes(hashlib.sha256(f"{recipe.name}\0{key}".encode()).digest()[:8], "big") / 2**64
    total = sum(recipe.splits.values())
    edge = 0.0
    for split, share in recipe.splits.items():
        edge += share / total
        if value < edge:
            return split
    return list(recipe.splits)[-1]


def key_rank(key: str) -> str:
    """Order in which a stated subset keeps items: a hash, so no source ordering leaks in."""
    return hashlib.sha256(key.encode()).hexdigest()


def decode(item: SourceItem, max_side: int | None = None) -> Any:
    """The item's image as RGB, no larger than ``max_side``; OSError/ValueError (PIL's errors, an image
    over twice PIL's decompression-bomb limit) for an unusable one."""
    from PIL import Image

    if item.pixels is not None:
        return Image.fromarray(item.pixels).convert("RGB")
    if item.image is None:
        raise ValueError("no image")
    return open_rgb(item.image, max_side=max_side)


def png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def build(recipe: Recipe, out: Path, root: Path, progress: bool = True) -> BuildReport:
    """Build ``recipe`` from the source at ``root`` into ``out`` (replacing what is there)."""
    from tqdm.auto import tqdm

    if not recipe.source_present(root):
        raise ProbeError(f"recipe {recipe.name!r}: its source is not at {root}; install it with `{recipe.install}` "
                         "(or pass --source DIR)")
    started = time.time()
    partial = out.with_name(out.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    dropped: Counter[str] = Counter()
    drop_list: list[dict[str, str]] = []

    def drop(key: str, reason: str, detail: str = "") -> None:
        dropped[reason] += 1
        if dropped[reason] <= LISTED_DROPS:
            drop_list.append({"key": key, "reason": reason, **({"detail": detail} if detail else {})})

    chosen: dict[str, list[SourceItem]] = {split: [] for split in recipe.splits}
    for item in recipe.items(root):
        if item.drop:
            drop(item.key, item.drop)
            continue
        split = item.split or split_of(recipe, item.group or item.key)
        chosen.setdefault(split, []).append(item)
    for split, items in chosen.items():
        limit = (recipe.limit or {}).get(split)
        if limit is not None and len(items) > limit:
            items.sort(key=lambda i: key_rank(i.key))
            dropped[f"beyond the stated {split} subset"] += len(items) - limit
            del items[limit:]
    journal = _read_journal(partial / "journal.jsonl")
    seen: dict[str, str] = {}
    written: dict[str, list[dict[str, Any]]] = {split: [] for split in chosen}
    total = sum(len(items) for items in chosen.values())
    with tqdm(total=total, desc=f"building {recipe.name}", unit=" images", disable=None if progress else True,
              leave=False) as bar, (partial / "journal.jsonl").open("a", encoding="utf-8") as journal_out:
        for split, items in chosen.items():
            for item in sorted(items, key=lambda i: i.key):
                bar.update(1)
                done = journal.get(item.key)  # only captioned builds write images (and the journal) as they go
                stamp = _source_stamp(item)
                if (done and stamp is not None and done.get("source") == stamp
                        and (partial / "images" / split / f"{done['digest'][:16]}.png").is_file()):
                    data, digest = None, done["digest"]  # decoded and written before the build was stopped
                else:
                    try:
                        data = png_bytes(decode(item, recipe.max_side))
                    except (OSError, ValueError) as exc:
                        drop(item.key, "unreadable image", f"{type(exc).__name__}: {exc}"[:300])
                        continue
                    digest = hashlib.sha256(data).hexdigest()
                if digest in seen:
                    drop(item.key, "duplicate image")
                    continue
                seen[digest] = item.key
                if recipe.kind == "captions" and data is not None:
                    with atomic_open(partial / "images" / split / f"{digest[:16]}.png") as handle:
                        handle.write(data)
                    journal_out.write(json.dumps({"key": item.key, "digest": digest, "source": stamp}) + "\n")
                    journal_out.flush()
                written[split].append({"key": item.key, "id": digest[:16], "png": data, "captions": item.captions,
                                       "label": item.label})
    files = _write_outputs(recipe, partial, written)
    counts = {split: len(entries) for split, entries in written.items() if entries}
    seconds = round(time.time() - started, 2)
    manifest = {
        "recipe": recipe.name, "build_version": BUILD_VERSION, "kind": recipe.kind, "title": recipe.title,
        "licence": recipe.licence, "source_root": str(root), "source_files": _source_files(recipe, root),
        "splits": recipe.splits, "limit": recipe.limit, "max_side": recipe.max_side, "counts": counts, "dropped": dict(dropped),
        "dropped_items": drop_list, "classnames": list(recipe.classnames), "templates": list(recipe.templates),
        "notes": recipe.notes, "seconds": seconds, "files": files,
    }
    write_json(partial / "manifest.json", manifest)
    (partial / "journal.jsonl").unlink(missing_ok=True)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return BuildReport(recipe.name, out, True, counts, dict(dropped), seconds)


def _write_outputs(recipe: Recipe, folder: Path, written: dict[str, list[dict[str, Any]]]) -> dict[str, dict]:
    files: list[Path] = []
    if recipe.kind == "captions":
        images = []
        for split, entries in written.items():
            for entry in entries:
                path = folder / "images" / split / f"{entry['id']}.png"  # written while decoding
                files.append(path)
                images.append({"filepath": f"images/{split}", "filename": path.name, "split": split,
                               "source": entry["key"], "sentences": [{"raw": c} for c in entry["captions"]]})
        keep = set(files)
        for stray in (folder / "images").rglob("*.png"):  # left by an earlier, stopped build
            if stray not in keep:
                stray.unlink()
        with atomic_open(folder / "captions.json", "w") as handle:
            json.dump({"dataset": recipe.name, "images": images}, handle, indent=1)
        files.append(folder / "captions.json")
    else:
        for split, entries in written.items():
            for start in range(0, len(entries), SHARD_SIZE):
                shard = folder / split / f"{start // SHARD_SIZE:06d}.tar"
                with atomic_open(shard) as handle, tarfile.open(fileobj=handle, mode="w") as tar:
                    for entry in entries[start:start + SHARD_SIZE]:
                        _add(tar, f"{entry['id']}.png", entry["png"])
                        _add(tar, f"{entry['id']}.cls", str(entry["label"]).encode())
                files.append(shard)
        for name, lines in (("classnames.txt", recipe.classnames),
                            ("zeroshot_classification_templates.txt", recipe.templates)):
            with atomic_open(folder / name, "w") as handle:
                handle.write("\n".join(lines) + "\n")
            files.append(folder / name)
    return {path.relative_to(folder).as_posix(): _describe(path) for path in files}


def _read_journal(path: Path) -> dict[str, dict[str, str]]:
    """Items a stopped build already wrote (a torn last line is ignored)."""
    done = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    for line in lines:
        try:
            entry = json.loads(line)
            done[entry["key"]] = entry
        except (ValueError, KeyError, TypeError):
            continue
    return done


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # the same bytes on every machine
    tar.addfile(info, io.BytesIO(data))


def _source_stamp(item: SourceItem) -> list[int] | None:
    """Size, mtime and ctime of an item's source image: a resumed build reuses what it decoded before
    only while these are unchanged (a source rewritten since is decoded again)."""
    if item.image is None:
        return None
    try:
        stat = item.image.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _describe(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns,
            "sha256": sha256_file(path)}


def _source_files(recipe: Recipe, root: Path) -> dict[str, dict[str, Any]]:
    """Every file the recipe reads, with size and checksum (what the dataset was built from)."""
    return {name: {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
            for name, path in recipe.source_files(root)}


def stale_files(folder: Path) -> list[str]:
    """Output files that no longer match the manifest (missing, resized or rewritten since the build).

    A file whose size, mtime and ctime are as built is trusted as the feature cache trusts its
    entries: ctime cannot be set back, so a file rewritten in place with its size and mtime restored
    still shows. Any other file is hashed and compared with the manifest's sha256; one that matches
    (copied, or from a manifest written before ctimes were kept) has its times stored, so the next
    check is cheap again."""
    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        items = list(files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ["manifest.json"]
    stale, refreshed = [], False
    for name, described in items:
        path = folder / name
        try:
            stat = path.stat()
        except OSError:
            stale.append(name)
            continue
        if not isinstance(described, dict) or stat.st_size != described.get("bytes"):
            stale.append(name)
            continue
        if stat.st_mtime_ns == described.get("mtime_ns") and stat.st_ctime_ns == described.get("ctime_ns"):
            continue
        if sha256_file(path) != described.get("sha256"):
            stale.append(name)
            continue
        described.update(mtime_ns=stat.st_mtime_ns, ctime_ns=stat.st_ctime_ns)
        refreshed = True
    if refreshed and not stale:
        write_json(manifest_path, manifest)
    return stale
