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
import json
import tarfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probe.data.base import DatasetInfo, FileImage, SplitData, file_identity
from probe.errors import ProbeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


def _existing(path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ProbeError(f"dataset path {str(p)!r} does not exist")
    return p


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
        self.root = _existing(path)
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


class KarpathyDataset:
    def __init__(self, path: str):
        self.file = _existing(path)
        try:
            self.data = json.loads(self.file.read_text())["images"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ProbeError(f"{self.file}: not a Karpathy-split JSON (needs an 'images' list): {exc}") from None
        kind = "COCO" if "coco" in self.file.name.lower() else "Flickr30k" if "flickr30k" in self.file.name.lower() else "Karpathy"
        n_test = sum(1 for im in self.data if im.get("split") == "test")
        self.info = DatasetInfo(f"karpathy:{self.file}", ("train", "val", "test"),
                                f"{kind} Karpathy split ({n_test} test images), all captions per image",
                                "image-caption retrieval")

    def load(self, split: str) -> SplitData:
        _split_or_fail(self.info.name, split, dict.fromkeys(self.info.splits))
        rows = []
        for image in self.data:
            image_split = "train" if image.get("split") == "restval" else image.get("split")
            if image_split != split:
                continue
            path = str(self.file.parent / image.get("filepath", "") / image["filename"])
            for sentence in image.get("sentences", []):
                rows.append((path, sentence.get("raw", " ".join(sentence.get("tokens", []))).strip(), None))
        return _assemble(self.info.name, split, rows, self.info.protocol)


class TableDataset:
    """CSV or JSONL of image path + caption (training pairs)."""

    def __init__(self, path: str, kind: str):
        self.file = _existing(path)
        self.kind = kind
        self.rows = self._read()
        splits = sorted({r["split"] for r in self.rows})
        self.info = DatasetInfo(f"{kind}:{self.file}", tuple(splits), f"{kind.upper()} image-caption pairs",
                                "user image-caption pairs")

    def _read(self) -> list[dict]:
        records: list[tuple[int, dict]] = []
        try:
            with self.file.open(newline="", encoding="utf-8") as handle:
                if self.kind == "csv":
                    reader = csv.DictReader(handle)
                    records = [(i + 2, row) for i, row in enumerate(reader)]
                else:
                    for i, text in enumerate(handle, start=1):
                        if text.strip():
                            try:
                                records.append((i, json.loads(text)))
                            except json.JSONDecodeError as exc:
                                raise ProbeError(f"{self.file}:{i}: invalid JSON: {exc.msg}") from None
        except UnicodeDecodeError as exc:
            raise ProbeError(f"{self.file}: not UTF-8 text ({exc.reason})") from None
        out = []
        for number, row in records:
            image = (row.get("image") or "").strip()
            caption = (row.get("caption") or "").strip()
            if not image:
                raise ProbeError(f"{self.file}:{number}: row has no image path (column 'image')")
            if not caption:
                raise ProbeError(f"{self.file}:{number}: row has no caption (column 'caption')")
            label = row.get("label")
            # a label 0 (JSONL number) is a label; only a missing or empty one means unlabelled
            label = None if label is None or str(label).strip() == "" else str(label).strip()
            out.append({"image": str(self.file.parent / image), "caption": caption,
                        "split": (row.get("split") or "train").strip(), "label": label})
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

        if self.offset >= 0:
            with open(self.shard, "rb") as shard:
                shard.seek(self.offset)
                data = shard.read(self.size)
            if len(data) != self.size:
                raise OSError(f"{self.shard}:{self.member}: shard shorter than its listing (truncated?)")
        else:
            with tarfile.open(self.shard) as tar:
                handle = tar.extractfile(self.member)
                if handle is None:
                    raise OSError(f"{self.shard}:{self.member} is not a file")
                data = handle.read()
        return open_rgb(io.BytesIO(data), f"{self.shard}:{self.member}")

    def fingerprint(self) -> str:
        """The member and its shard's identity: a rewritten shard (same names, other bytes) changes its
        size, mtime or ctime, so its features are never reused."""
        return f"{self.member}@{self.offset}+{self.size}:{file_identity(self.shard)}"


class WebDataset:
    def __init__(self, path: str):
        root = _existing(path)
        self.shards = sorted(root.glob("*.tar")) if root.is_dir() else [root]
        if not self.shards:
            raise ProbeError(f"no .tar shards in {root}")
        self.info = DatasetInfo(f"wds:{root}", ("train",), "webdataset shards of image-caption pairs",
                                "user training pairs")

    def load(self, split: str) -> SplitData:
        _split_or_fail(self.info.name, split, {"train": 1})
        rows: list[tuple[str, str | None, str | None]] = []
        for shard in self.shards:
            samples: dict[str, dict[str, str]] = defaultdict(dict)
            try:
                with tarfile.open(shard) as tar:
                    for member in tar.getmembers():
                        if not member.isfile():
                            continue
                        key, _, ext = member.name.rpartition(".")
                        if "." + ext.lower() in IMAGE_SUFFIXES:
                            samples[key]["image"] = f"{member.name}\0{member.offset_data}\0{member.size}"
                        elif ext in ("txt", "json"):
                            raw = tar.extractfile(member).read().decode("utf-8")  # type: ignore[union-attr]
                            samples[key]["caption"] = json.loads(raw).get("caption", "") if ext == "json" else raw
            except tarfile.TarError as exc:
                raise ProbeError(f"{shard}: unreadable tar shard: {exc}") from None
            for _key, sample in sorted(samples.items()):
                if "image" in sample and sample.get("caption", "").strip():
                    rows.append((f"{shard}\0{sample['image']}", sample["caption"].strip(), None))
        return _assemble(self.info.name, split, rows, self.info.protocol, ref_factory=_tar_image)


def _tar_image(key: str) -> TarImage:
    shard, member, offset, size = key.split("\0")
    return TarImage(shard, member, int(offset), int(size))
