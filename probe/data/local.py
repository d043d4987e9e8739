"""Readers for users' own data, each saying which protocol it follows.

- ``imagefolder:PATH``: ``PATH/<split>/<class>/*.jpg`` (or ``PATH/<class>/*`` as split ``all``);
  classification, captions "a photo of a <class>".
- ``karpathy:FILE.json``: COCO / Flickr30k Karpathy split (``dataset_coco.json``); images under the
  JSON's folder at ``filepath/filename``; ``restval`` counts as train; five captions per image.
- ``csv:FILE`` / ``jsonl:FILE``: columns ``image``, ``caption`` and optional ``split``, ``label``;
  image paths relative to the file's folder; several rows may share an image.
- ``wds:PATH``: webdataset tar shards (a .tar file or a folder of them); samples grouped by key,
  an image member (.jpg/.jpeg/.png/.webp) and a caption member (.txt or .json with "caption").
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tarfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probe.data.base import DatasetInfo, FileImage, SplitData, file_identity
from probe.errors import ProbeError

log = logging.getLogger("probe.data")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


def _existing(path: str, kind: str, want: str | None = None) -> Path:
    """``path`` as an absolute Path (the same dataset from any working folder, on any worker);
    ``want`` ("file" or "folder") is what ``kind:`` must be given."""
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise ProbeError(f"dataset path {str(p)!r} does not exist")
    if want == "file" and p.is_dir():
        raise ProbeError(f"{kind}:{p} is a folder; {kind}: takes a file")
    if want == "folder" and not p.is_dir():
        raise ProbeError(f"{kind}:{p} is a file; {kind}: takes a folder")
    return p


def _read_text(file: Path) -> str:
    try:
        return file.read_bytes().decode("utf-8-sig")  # -sig: a byte-order mark is not part of the text
    except UnicodeDecodeError as exc:
        raise ProbeError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _text_field(where: str, row: dict, name: str, *, allow_int: bool = False) -> str | None:
    """``row[name]`` as stripped text, None when absent or blank; any other type is refused, naming
    the place and the field (a NaN or a list must never become a caption or a path)."""
    value = row.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    wanted = "text or a whole number" if allow_int else "text"
    raise ProbeError(f"{where}: field {name!r} must be {wanted}, got {type(value).__name__} {json.dumps(value)[:40]}")


def _split_or_fail(name: str, split: str, available: dict) -> None:
    if split not in available:
        raise ProbeError(f"dataset {name!r} has no split {split!r}; valid: {', '.join(sorted(available)) or 'none'}")


def _assemble(name: str, split: str, rows: Sequence[tuple[str, str | None, str | None]], protocol: str,
              ref_factory=FileImage) -> SplitData:
    """rows of (image key, caption or None, label or None) -> SplitData (images deduplicated)."""
    if not rows:
        raise ProbeError(f"dataset {name!r} split {split!r} is empty")
    image_index: dict[str, int] = {}
    captions, caption_image, labels = [], [], []
    for key, caption, label in rows:
        if key not in image_index:
            image_index[key] = len(image_index)
            labels.append(label)
        if caption is not None:
            captions.append(caption)
            caption_image.append(image_index[key])
    out_labels, classes = {}, {}
    if any(lab is not None for lab in labels):
        names = sorted({lab for lab in labels if lab is not None})
        lookup = {n: i for i, n in enumerate(names)}
        out_labels["label"] = np.array([lookup.get(lab, -1) if lab is not None else -1 for lab in labels])
        classes["label"] = names
    return SplitData(dataset=name, split=split, images=[ref_factory(k) for k in image_index], captions=captions,
                     caption_image=np.array(caption_image, dtype=np.int64), labels=out_labels,
                     classes=classes, protocol=protocol)


class ImageFolderDataset:
    def __init__(self, path: str):
        self.root = _existing(path, "imagefolder", "folder")
        subdirs = {p.name: p for p in sorted(self.root.iterdir()) if p.is_dir()}
        split_dirs = {k: v for k, v in subdirs.items() if k in ("train", "val", "test")}
        self.split_dirs = split_dirs or {"all": self.root}
        self.info = DatasetInfo(f"imagefolder:{self.root}", tuple(self.split_dirs),
                                "ImageFolder classification (class = folder name)", "user images by class folder")

    def load(self, split: str) -> SplitData:
        _split_or_fail(self.info.name, split, self.split_dirs)
        rows = []
        for class_dir in sorted(p for p in self.split_dirs[split].iterdir() if p.is_dir()):
            label = class_dir.name.replace("_", " ")
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    rows.append((str(file), f"a photo of a {label}", label))
        return _assemble(self.info.name, split, rows, self.info.protocol)


#: the split names of Karpathy's JSON (``restval`` is read as train)
KARPATHY_SPLITS = ("train", "val", "test", "restval")


class KarpathyDataset:
    def __init__(self, path: str):
        self.file = _existing(path, "karpathy", "file")
        try:
            data = json.loads(_read_text(self.file))
        except json.JSONDecodeError as exc:
            raise ProbeError(f"{self.file}: not a Karpathy-split JSON (invalid JSON: {exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise ProbeError(f"{self.file}: not a Karpathy-split JSON (needs an object with an 'images' list)")
        self.default_folder = "flickr30k-images" if (self.file.parent / "flickr30k-images").is_dir() else ""
        self.unknown_splits: Counter[str] = Counter()
        self.data = [self._checked(i, image) for i, image in enumerate(data["images"])]
        if self.unknown_splits:
            log.warning("%s: %d image(s) with a split that is not %s are left out of every split (%s)", self.file,
                        sum(self.unknown_splits.values()), ", ".join(KARPATHY_SPLITS),
                        ", ".join(f"{name}: {n}" for name, n in self.unknown_splits.most_common(5)))
        kind = "COCO" if "coco" in self.file.name.lower() else "Flickr30k" if "flickr30k" in self.file.name.lower() else "Karpathy"
        n_test = sum(1 for im in self.data if im["split"] == "test")
        self.info = DatasetInfo(f"karpathy:{self.file}", ("train", "val", "test"),
                                f"{kind} Karpathy split ({n_test} test images), all captions per image",
                                "image-caption retrieval")

    def _checked(self, number: int, image: object) -> dict:
        """One entry of 'images' as {path, split, captions}, or a one-line error naming it."""
        where = f"{self.file}: images[{number}]"
        if not isinstance(image, dict):
            raise ProbeError(f"{where}: expected an object with filename, split, sentences")
        filename = _text_field(where, image, "filename")
        if filename is None:
            raise ProbeError(f"{where}: no 'filename'")
        sentences = image.get("sentences", [])
        if not isinstance(sentences, list):
            raise ProbeError(f"{where}: 'sentences' must be a list of objects with 'raw'")
        captions = []
        for j, sentence in enumerate(sentences):
            if not isinstance(sentence, dict):
                raise ProbeError(f"{where}.sentences[{j}]: expected an object with 'raw'")
            raw = _text_field(f"{where}.sentences[{j}]", sentence, "raw")
            tokens = sentence.get("tokens", [])
            if raw is None and isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
                raw = " ".join(tokens).strip() or None
            if raw is not None:
                captions.append(raw)
        split = _text_field(where, image, "split")
        if split not in KARPATHY_SPLITS:  # left out of every split, and counted (a typo must not vanish)
            self.unknown_splits[repr(split) if split is not None else "missing"] += 1
        # Karpathy's Flickr30k JSON has no filepath: its images are in flickr30k-images/ beside it
        folder = _text_field(where, image, "filepath") or self.default_folder
        return {"path": str(self.file.parent / folder / filename),
                "split": "train" if split == "restval" else split, "captions": captions}

    def load(self, split: str) -> SplitData:
        _split_or_fail(self.info.name, split, dict.fromkeys(self.info.splits))
        chosen = [image for image in self.data if image["split"] == split]
        rows = [(image["path"], caption, None) for image in chosen for caption in image["captions"]]
        data = _assemble(self.info.name, split, rows, self.info.protocol)
        without = sum(1 for image in chosen if not image["captions"])
        if without:  # an image with no caption cannot be a retrieval query or a training pair
            log.warning("%s/%s: %d image(s) without a caption left out", self.info.name, split, without)
            data.dropped = {"images without a caption": without}
        if self.unknown_splits:
            data.dropped = {**data.dropped, "images of no known split (left out of every split)":
                            sum(self.unknown_splits.values())}
        return data


class TableDataset:
    """CSV or JSONL of image path + caption (training pairs)."""

    def __init__(self, path: str, kind: str):
        self.file = _existing(path, kind, "file")
        self.kind = kind
        self.rows = self._read()
        splits = sorted({r["split"] for r in self.rows})
        self.info = DatasetInfo(f"{kind}:{self.file}", tuple(splits), f"{kind.upper()} image-caption pairs",
                                "user image-caption pairs")

    def _read(self) -> list[dict]:
        text = _read_text(self.file)
        records: list[tuple[int, object]] = []
        if self.kind == "csv":
            reader = csv.DictReader(io.StringIO(text, newline=""))
            records = [(i + 2, row) for i, row in enumerate(reader)]
            missing = [c for c in ("image", "caption") if c not in (reader.fieldnames or [])]
            if records and missing:
                raise ProbeError(f"{self.file}: no {' or '.join(repr(c) for c in missing)} column; "
                                 f"its columns are {', '.join(reader.fieldnames or [])}")
        else:
            for i, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        records.append((i, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise ProbeError(f"{self.file}:{i}: invalid JSON: {exc.msg}") from None
        out = []
        for number, row in records:
            where = f"{self.file}:{number}"
            if not isinstance(row, dict):
                raise ProbeError(f"{where}: expected an object with image, caption[, split, label], "
                                 f"got {type(row).__name__}")
            image = _text_field(where, row, "image")
            caption = _text_field(where, row, "caption")
            if not image:
                raise ProbeError(f"{where}: row has no image path (column 'image')")
            if not caption:
                raise ProbeError(f"{where}: row has no caption (column 'caption')")
            # a label 0 (JSONL number) is a label; only a missing or empty one means unlabelled
            label = _text_field(where, row, "label", allow_int=True)
            out.append({"image": str(self.file.parent / image), "caption": caption,
                        "split": _text_field(where, row, "split") or "train", "label": label})
        if not out:
            raise ProbeError(f"{self.file}: no rows; expected columns image, caption[, split, label]")
        return out

    def load(self, split: str) -> SplitData:
        _split_or_fail(self.info.name, split, dict.fromkeys(self.info.splits))
        rows = [(r["image"], r["caption"], r["label"]) for r in self.rows if r["split"] == split]
        return _assemble(self.info.name, split, rows, self.info.protocol)


@dataclass(frozen=True)
class TarImage:
    """One image inside a tar shard. With ``offset``/``size`` (from the listing that found it) the
    bytes are read directly; without them the shard's headers are scanned to find the member."""

    shard: str
    member: str
    offset: int = -1
    size: int = -1

    def load(self):
        import io

        from probe.data.images import open_rgb

        return open_rgb(io.BytesIO(self.read_bytes()), f"{self.shard}:{self.member}")

    def read_bytes(self) -> bytes:
        """The member's encoded bytes."""
        if self.offset >= 0:
            with open(self.shard, "rb") as shard:
                shard.seek(self.offset)
                data = shard.read(self.size)
            if len(data) != self.size:
                raise OSError(f"{self.shard}:{self.member}: shard shorter than its listing (truncated?)")
            return data
        with tarfile.open(self.shard) as tar:
            handle = tar.extractfile(self.member)
            if handle is None:
                raise OSError(f"{self.shard}:{self.member} is not a file")
            return handle.read()

    def fingerprint(self) -> str:
        """The member and its shard's identity: a rewritten shard (same names, other bytes) changes its
        size, mtime or ctime, so its features are never reused."""
        return f"{self.member}@{self.offset}+{self.size}:{file_identity(self.shard)}"


class WebDataset:
    def __init__(self, path: str):
        root = _existing(path, "wds")
        self.shards = sorted(root.glob("*.tar")) if root.is_dir() else [root]
        if not self.shards:
            raise ProbeError(f"no .tar shards in {root}")
        self.info = DatasetInfo(f"wds:{root}", ("train",), "webdataset shards of image-caption pairs",
                                "user training pairs")

    def load(self, split: str) -> SplitData:
        _split_or_fail(self.info.name, split, {"train": 1})
        rows: list[tuple[str, str | None, str | None]] = []
        dropped: Counter[str] = Counter()
        examples: dict[str, str] = {}

        def drop(reason: str, where: str) -> None:
            dropped[reason] += 1
            examples.setdefault(reason, where)

        for shard in self.shards:
            samples, truncated = _read_shard(shard, drop)
            if truncated:
                drop("truncated shards (samples after the cut are lost)", str(shard))
            for key, sample in sorted(samples.items()):
                if "unreadable" in sample:
                    continue
                if "image" not in sample:
                    drop("samples without an image", f"{shard}:{key}")
                elif not sample.get("caption", "").strip():
                    drop("samples without a caption", f"{shard}:{key}")
                else:
                    rows.append((f"{shard}\0{sample['image']}", sample["caption"].strip(), None))
        summary = "; ".join(f"{count} {reason}, e.g. {examples[reason]}" for reason, count in dropped.items())
        if not rows and dropped:
            raise ProbeError(f"{self.info.name}: no usable sample: {summary}")
        if dropped:
            log.warning("%s: %s", self.info.name, summary)
        data = _assemble(self.info.name, split, rows, self.info.protocol, ref_factory=_tar_image)
        data.dropped = dict(dropped)
        return data


def _read_shard(shard: Path, drop) -> tuple[dict[str, dict[str, str]], bool]:
    """A shard's samples by key ({"image": listing, "caption": text}) and whether it is truncated.

    A tar cut short ends, for :mod:`tarfile`, at the last header it could read, silently; a complete
    one ends with two zero blocks after its last member. A member whose data runs past the end of
    the file, or a missing end marker, marks the shard as truncated. A caption that is not UTF-8, or
    a .json that is not an object with a text "caption", drops its sample (counted by ``drop``).
    """
    samples: dict[str, dict[str, str]] = defaultdict(dict)
    size = shard.stat().st_size
    end = 0
    try:
        with tarfile.open(shard) as tar:
            for member in tar:
                end = member.offset_data + ((member.size + 511) // 512) * 512
                if not member.isfile():
                    continue
                key, _, ext = member.name.rpartition(".")
                if member.offset_data + member.size > size:
                    break  # its data is cut off: handled as truncation below
                if "." + ext.lower() in IMAGE_SUFFIXES:
                    samples[key]["image"] = f"{member.name}\0{member.offset_data}\0{member.size}"
                elif ext in ("txt", "json"):
                    caption = _shard_caption(tar.extractfile(member).read(), ext)  # type: ignore[union-attr]
                    if caption is None:
                        drop(f"samples whose .{ext} caption is not UTF-8 text" + (" in a JSON object" if ext == "json" else ""),
                             f"{shard}:{member.name}")
                        samples[key]["unreadable"] = "1"  # counted here, not again as caption-less
                    else:
                        samples[key]["caption"] = caption
    except tarfile.TarError as exc:
        if not samples:
            raise ProbeError(f"{shard}: unreadable tar shard ({' '.join(str(exc).split())})") from None
        return samples, True
    return samples, end + 1024 > size


def _shard_caption(raw: bytes, ext: str) -> str | None:
    try:
        text = raw.decode("utf-8")
        if ext == "txt":
            return text
        value = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    caption = value.get("caption") if isinstance(value, dict) else None
    return caption if isinstance(caption, str) else None


def _tar_image(key: str) -> TarImage:
    shard, member, offset, size = key.split("\0")
    return TarImage(shard, member, int(offset), int(size))
