"""Readers for benchmarks in their published layouts (data the user already has; nothing is fetched).

- ImageNet validation as one folder per wnid (``n01440764/*.JPEG``): labels follow ImageNet's class
  index (timm's synset list), so class names from clip_benchmark's 1,000-name list line up.
- Winoground as published: ``examples.jsonl`` (``caption_0``, ``caption_1``, ``image_0``,
  ``image_1``) and ``images/<name>.png``.
- clip_benchmark's webdataset layout: ``<split>/*.tar`` shards of ``<key>.<image ext>`` +
  ``<key>.cls`` (class index), with ``classnames.txt`` and ``zeroshot_classification_templates.txt``;
  or, where ``dataset_type.txt`` says ``retrieval``, ``<key>.txt`` holding the image's captions one per
  line (clip_benchmark 1.6.2 datasets/builder.py:762-782, webdataset_builder.py:232-255).
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
        try:
            lines = file.read_bytes().decode("utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise ProbeError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise ProbeError(f"cannot read {file}: {exc.strerror or exc}") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            names, texts = _winoground_example(line, f"{file}:{number}")
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


def _winoground_example(line: str, where: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """``((image_0, image_1), (caption_0, caption_1))`` of one examples.jsonl line, or one line naming
    what is wrong with it."""
    try:
        example = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProbeError(f"{where}: not a Winoground example (invalid JSON: {exc})") from None
    if not isinstance(example, dict):
        raise ProbeError(f"{where}: expected a JSON object with image_0, image_1, caption_0, caption_1; got "
                         f"{type(example).__name__}")
    values = []
    for key in ("image_0", "image_1", "caption_0", "caption_1"):
        value = example.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ProbeError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
        values.append(value)
    return (values[0], values[1]), (values[2], values[3])


def _class_index(raw: bytes, where: str) -> int:
    """A ``.cls`` member's class index: a non-negative integer in ASCII, else one line naming it (a
    negative one would silently unlabel its image)."""
    text = raw.decode("utf-8", errors="replace").strip()
    if not text.isdigit() or not text.isascii():
        raise ProbeError(f"{where}: class index {text[:40]!r} is not a non-negative integer")
    return int(text)


def shard_samples(shard: Path, payload: str) -> dict[str, dict]:
    """A clip_benchmark shard's samples by key: ``{"image": tar member}`` and ``{payload: its bytes}``
    (``cls`` for a class index, ``txt`` for captions), where the shard has them."""
    samples: dict[str, dict] = {}
    try:
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.rpartition(".")
                if "." + ext.lower() in IMAGE_SUFFIXES:
                    samples.setdefault(key, {})["image"] = member
                elif ext == payload:
                    samples.setdefault(key, {})[payload] = tar.extractfile(member).read()  # type: ignore[union-attr]
    except tarfile.TarError as exc:
        raise ProbeError(f"{shard}: unreadable tar shard: {exc}") from None
    return samples


class ClipWebDataset(_Classification):
    """clip_benchmark's webdataset layout for zero-shot classification."""

    def load(self, split: str) -> SplitData:
        shards = sorted((self.root / split).glob("*.tar"))
        if not shards:
            raise ProbeError(f"no .tar shards in {self.root / split}")
        images, labels = [], []
        for shard in shards:
            for key, sample in sorted(shard_samples(shard, "cls").items()):
                if "image" in sample and "cls" in sample:
                    member = sample["image"]
                    images.append(TarImage(str(shard), member.name, member.offset_data, member.size))
                    labels.append(_class_index(sample["cls"], f"{shard}:{key}.cls"))
        if labels and max(labels) >= len(self.classnames):
            raise ProbeError(f"{self.root}: class index {max(labels)} but only {len(self.classnames)} class names")
        return self._split(split, images, labels)


class ClipRetrievalWebDataset:
    """clip_benchmark's webdataset layout for zero-shot retrieval: each sample an image and ``<key>.txt``,
    its captions one per line (builder.py:778-781 ``str.splitlines``). Samples are taken in shard and key
    order; an image without captions, or captions without an image, is counted in the split's dropped."""

    def __init__(self, name: str, path: Path, split: str, description: str):
        self.root = _folder(path, name)
        kind = retrieval_type(self.root)
        if kind != "retrieval":
            raise ProbeError(f"{self.root / DATASET_TYPE} says {kind!r}; a retrieval benchmark's says 'retrieval'")
        self.split = split
        self.info = DatasetInfo(name, (split,), description, description)

    def load(self, split: str) -> SplitData:
        if split != self.split:
            raise ProbeError(f"dataset {self.info.name!r} has no split {split!r}; valid: {self.split}")
        shards = sorted((self.root / split).glob("*.tar"), key=lambda p: (len(p.stem), p.stem))  # 0, 1, ... 10
        if not shards:
            raise ProbeError(f"no .tar shards in {self.root / split}")
        images: list[TarImage] = []
        captions: list[str] = []
        owner: list[int] = []
        dropped = {"images without captions": 0, "captions without an image": 0}
        for shard in shards:
            for key, sample in sorted(shard_samples(shard, "txt").items()):
                try:
                    texts = [t.strip() for t in sample.get("txt", b"").decode("utf-8").splitlines() if t.strip()]
                except UnicodeDecodeError as exc:
                    raise ProbeError(f"{shard}:{key}.txt: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
                if "image" not in sample:
                    dropped["captions without an image"] += bool(texts)
                    continue
                if not texts:
                    dropped["images without captions"] += 1
                    continue
                member = sample["image"]
                owner.extend([len(images)] * len(texts))
                captions.extend(texts)
                images.append(TarImage(str(shard), member.name, member.offset_data, member.size))
        if not images:
            raise ProbeError(f"{self.root / split}: no image with captions (<key>.<image> + <key>.txt)")
        return SplitData(self.info.name, split, images, captions, np.array(owner, dtype=np.int64),
                         protocol=self.info.protocol, dropped={k: v for k, v in dropped.items() if v})


#: clip_benchmark's file naming a webdataset set's task (builder.py:762-767: classification when absent)
DATASET_TYPE = "dataset_type.txt"


def retrieval_type(root: Path) -> str:
    """What ``dataset_type.txt`` says (clip_benchmark reads it stripped and lower-cased), else classification."""
    file = root / DATASET_TYPE
    return file.read_text(encoding="utf-8").strip().lower() if file.is_file() else "classification"


class Ulcc:
    """ulcc's picture dictionaries (Debian package ``ulcc``) as a four-way zero-shot test.

    Each ``dictionaries/<topic>/dictionary.json`` lists pictures with ``answer1`` (or ``answer``: the right word) and,
    for some topics, ``answer2``-``answer4`` (the distractors the game shows). The file is the body of a
    JSON object without its outer braces, so the braces are added before parsing. Words are
    translated to English through ``languages/en.lng`` (``key=word`` lines) where the topic has one.
    A picture with fewer than three distractors gets the rest from its topic's other words, chosen
    by a hash of the picture's file name (the game draws them at random), so every run asks the
    same question. The label task is ``four_way``: the picture's word among its own four options.
    """

    TASK = "four_way"
    OPTIONS = 4

    def __init__(self, name: str, path: Path, templates: Sequence[str], description: str):
        self.root = _folder(path, name)
        self.templates = list(templates)
        self.info = DatasetInfo(name, ("test",), description, description)

    def load(self, split: str) -> SplitData:
        import hashlib

        if split != "test":
            raise ProbeError(f"dataset {self.info.name!r} has no split {split!r}; valid: test")
        questions: list[tuple[Path, list[str]]] = []
        missing = 0
        for topic in sorted(p for p in self.root.iterdir() if (p / "dictionary.json").is_file()):
            english = _lng(topic / "languages" / "en.lng")
            entries = _ulcc_entries(topic / "dictionary.json")
            words = sorted({english.get(w, w) for entry in entries for w in _answers(entry)})
            for entry in entries:
                given = [english.get(w, w) for w in _answers(entry)]
                image = topic / str(entry.get("image", ""))
                if not given or not image.is_file():
                    missing += 1
                    continue
                seed = image.name
                others = sorted((w for w in words if w not in given),
                                key=lambda w: hashlib.sha256(f"{seed}\0{w}".encode()).hexdigest())  # noqa: B023
                questions.append((image, (given + others)[: self.OPTIONS]))
        if not questions:
            raise ProbeError(f"{self.root}: no ulcc picture dictionaries found (dictionaries/<topic>/dictionary.json)")
        classes = sorted({w for _, options in questions for w in options})
        index = {w: i for i, w in enumerate(classes)}
        candidates = np.zeros((len(questions), len(classes)), dtype=bool)
        for row, (_, options) in enumerate(questions):
            candidates[row, [index[w] for w in options]] = True
        data = SplitData(self.info.name, split, [FileImage(str(image)) for image, _ in questions], [],
                         np.zeros(0, dtype=np.int64),
                         labels={self.TASK: np.array([index[options[0]] for _, options in questions])},
                         classes={self.TASK: classes}, protocol=self.info.protocol,
                         templates={self.TASK: self.templates}, candidates={self.TASK: candidates})
        if missing:
            data.dropped = {"pictures without a word or an image file": missing}
        return data


def _ulcc_entries(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8").strip()
    try:
        data = json.loads(text if text.startswith("{") else "{" + text + "}")
    except json.JSONDecodeError as exc:
        raise ProbeError(f"{path}: not an ulcc dictionary ({exc.msg} at line {exc.lineno})") from None
    entries = data.get("images") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ProbeError(f"{path}: not an ulcc dictionary (needs an 'images' list of objects)")
    return entries


def _answers(entry: dict) -> list[str]:
    return [str(entry[k]).strip() for k in ("answer", "answer1", "answer2", "answer3", "answer4")
            if isinstance(entry.get(k), str) and entry[k].strip()]


def _lng(path: Path) -> dict[str, str]:
    """``key=word`` lines of an ulcc language file (``#`` comments); empty when the topic has none."""
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
             if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): word.strip() for key, word in pairs}
