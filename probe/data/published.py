"""Readers for benchmarks in their published layouts (data the user already has; nothing is fetched).

- ImageNet validation as one folder per wnid (``n01440764/*.JPEG``): labels follow ImageNet's class
  index (timm's synset list), so class names from clip_benchmark's 1,000-name list line up.
- Winoground as published: ``examples.jsonl`` (``caption_0``, ``caption_1``, ``image_0``,
  ``image_1``) and ``images/<name>.png``.
- clip_benchmark's webdataset layout: ``<split>/*.tar`` shards of ``<key>.<image ext>`` +
  ``<key>.cls`` (class index), with ``classnames.txt`` and ``zeroshot_classification_templates.txt``.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from probe.data.base import DatasetInfo, FileImage, SplitData
from probe.data.local import IMAGE_SUFFIXES, TarImage
from probe.errors import ProbeError


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ProbeError(f"{what} data not found at {path}")
    return path


class _Classification:
    """A zero-shot classification benchmark: one split, class names and prompt templates given."""

    def __init__(self, name: str, path: Path, split: str, classnames: Sequence[str], templates: Sequence[str],
                 description: str):
        self.root = _folder(path, name)
        self.classnames, self.templates, self.split = list(classnames), list(templates), split
        self.info = DatasetInfo(name, (split,), description, description)

    def _split(self, split: str, images: list, labels: list[int]) -> SplitData:
        return SplitData(self.info.name, split, images, [], np.zeros(0, dtype=np.int64),
                         labels={"class": np.array(labels, dtype=np.int64)}, classes={"class": self.classnames},
                         protocol=self.info.protocol, templates={"class": self.templates})


class ImageNetFolder(_Classification):
    """Zero-shot classification over ImageNet's classes; images in wnid folders."""

    def load(self, split: str) -> SplitData:
        from timm.data import ImageNetInfo

        synsets = ImageNetInfo().label_names()
        if len(self.classnames) != len(synsets):
            raise ProbeError(f"{self.info.name}: {len(self.classnames)} class names for ImageNet's {len(synsets)} classes")
        index = {wnid: i for i, wnid in enumerate(synsets)}
        folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        unknown = [p.name for p in folders if p.name not in index]
        if unknown or not folders:
            raise ProbeError(f"{self.root}: {'folder ' + repr(unknown[0]) + ' is not an ImageNet wnid' if unknown else 'no wnid folders'}"
                             " (expected n01440764/ ... one folder per class)")
        images, labels = [], []
        for folder in folders:
            for file in sorted(folder.iterdir()):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    images.append(FileImage(str(file)))
                    labels.append(index[folder.name])
        return self._split(split, images, labels)


class Winoground:
    """Two images and two captions per example, the captions the same words in another order."""

    def __init__(self, name: str, path: Path, description: str):
        self.root = _folder(path, name)
        self.info = DatasetInfo(name, ("test",), description, description)

    def load(self, split: str) -> SplitData:
        file = self.root / "examples.jsonl"
        if not file.is_file():
            raise ProbeError(f"{file} not found (Winoground's examples.jsonl)")
        images: list[FileImage] = []
        captions: list[str] = []
        owner: list[int] = []
        pairs: list[tuple[int, int]] = []
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                example = json.loads(line)
                names = (example["image_0"], example["image_1"])
                texts = (example["caption_0"], example["caption_1"])
            except (json.JSONDecodeError, KeyError) as exc:
                raise ProbeError(f"{file}:{number}: not a Winoground example ({exc})") from None
            first = len(images)
            for image, caption in zip(names, texts, strict=True):
                owner.append(len(images))
                captions.append(caption)
                images.append(FileImage(str(self._image(image))))
            pairs.append((first, first + 1))
        return SplitData(self.info.name, split, images, captions, np.array(owner), swap_pairs=np.array(pairs),
                         protocol=self.info.protocol)

    def _image(self, name: str) -> Path:
        for suffix in ("", ".png", ".jpg"):
            path = self.root / "images" / f"{name}{suffix}"
            if path.is_file():
                return path
        return self.root / "images" / f"{name}.png"  # reported as missing when it is encoded


class ClipWebDataset(_Classification):
    """clip_benchmark's webdataset layout for zero-shot classification."""

    def load(self, split: str) -> SplitData:
        shards = sorted((self.root / split).glob("*.tar"))
        if not shards:
            raise ProbeError(f"no .tar shards in {self.root / split}")
        images, labels = [], []
        for shard in shards:
            samples: dict[str, dict] = {}
            try:
                with tarfile.open(shard) as tar:
                    for member in tar.getmembers():
                        key, _, ext = member.name.rpartition(".")
                        if "." + ext.lower() in IMAGE_SUFFIXES:
                            samples.setdefault(key, {})["image"] = member
                        elif ext == "cls":
                            samples.setdefault(key, {})["cls"] = tar.extractfile(member).read().decode().strip()  # type: ignore[union-attr]
            except tarfile.TarError as exc:
                raise ProbeError(f"{shard}: unreadable tar shard: {exc}") from None
            for _key, sample in sorted(samples.items()):
                if "image" in sample and "cls" in sample:
                    member = sample["image"]
                    images.append(TarImage(str(shard), member.name, member.offset_data, member.size))
                    labels.append(int(sample["cls"]))
        if labels and max(labels) >= len(self.classnames):
            raise ProbeError(f"{self.root}: class index {max(labels)} but only {len(self.classnames)} class names")
        return self._split(split, images, labels)
