"""What every dataset split looks like to the rest of probe.

A split is a list of images plus captions that point at them, optional class labels for
zero-shot classification, and optional Winoground-style swap pairs. Images are *references*
(picklable objects with ``load() -> PIL.Image``) so DataLoader workers decode or draw them, and
the main process never holds a split's pixels.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class ImageRef(Protocol):
    def load(self) -> Any:
        """Return a PIL image; raise OSError/ValueError for a missing or corrupt file."""

    def fingerprint(self) -> str:
        """Short stable text identifying the content (path, size, mtime and ctime, or scene parameters)."""


def file_identity(path: str) -> str:
    """Path, size, mtime and ctime in nanoseconds. ctime cannot be set back by hand (`touch -d`,
    `cp -p`), so a file rewritten in place with its old size and mtime still changes it; a change
    of metadata only (chmod) costs a recomputation, never a stale reuse."""
    import os

    try:
        stat = os.stat(path)
    except OSError:
        return f"{path}:missing"
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}"


@dataclass(frozen=True)
class FileImage:
    path: str

    def load(self) -> Any:
        from probe.data.images import open_rgb

        return open_rgb(self.path)

    def read_bytes(self) -> bytes:
        """The encoded file (JPEGs are decoded from these, see :class:`probe.encoders.preprocess.SpecTransform`)."""
        with open(self.path, "rb") as handle:
            return handle.read()

    def fingerprint(self) -> str:
        return file_identity(self.path)


@dataclass
class SplitData:
    """One split. ``caption_image[j]`` is the image index of caption ``j``."""

    dataset: str
    split: str
    images: Sequence[Any]
    captions: list[str]
    caption_image: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    swap_pairs: np.ndarray | None = None
    protocol: str = ""
    #: Zero-shot prompt templates per label task ("a drawing of a {}."); generic ones when absent.
    templates: dict[str, list[str]] = field(default_factory=dict)
    #: What the reader left out, by reason ("samples without a caption": 3); records carry it.
    dropped: dict[str, int] = field(default_factory=dict)
    #: Multiple-choice label tasks: [images, classes] bool, each image's own options (its label among them)
    candidates: dict[str, np.ndarray] = field(default_factory=dict)
    #: for a split cut from another (:meth:`subset`, a corpus's held-out carve-out): where its rows sit there
    parent: Subset | None = None

    def __post_init__(self) -> None:
        self.caption_image = np.asarray(self.caption_image, dtype=np.int64)
        if len(self.captions) != len(self.caption_image):
            raise ValueError("captions and caption_image differ in length")

    @property
    def n_images(self) -> int:
        return len(self.images)

    @functools.cached_property
    def content_fingerprint(self) -> str:
        """What this split holds, the same wherever its files lie: image files by their path relative
        to the folder they share and their size (a shard member by shard, name and size), generated
        images by their own fingerprint, then the captions, which image each describes, the labels and
        the swap pairs. Records name the data a benchmark scored by it, so the same files under two
        data roots (two machines) are known to be one benchmark's; the feature cache keys by
        :meth:`image_fingerprint`, which also holds each file's absolute path and times."""
        import os

        files = [getattr(ref, "path", None) or getattr(ref, "shard", None) for ref in self.images]
        folders = {os.path.dirname(str(f)) for f in files if f}
        base = os.path.commonpath(sorted(folders)) if folders else ""
        digest = hashlib.sha256()
        for ref in self.images:
            if hasattr(ref, "member"):
                part = f"tar:{os.path.relpath(ref.shard, base)}:{ref.member}:{ref.size}"
            elif hasattr(ref, "path"):
                try:
                    size: int | str = os.stat(ref.path).st_size
                except OSError:
                    size = "missing"
                part = f"file:{os.path.relpath(ref.path, base)}:{size}"
            else:
                part = ref.fingerprint()
            digest.update(part.encode() + b"\0")
        digest.update("\0".join(self.captions).encode() + b"\1")
        digest.update(np.ascontiguousarray(self.caption_image, dtype=np.int64).tobytes())
        for task in sorted(self.labels):
            digest.update(task.encode() + b"\0" + np.ascontiguousarray(self.labels[task], dtype=np.int64).tobytes())
            digest.update("\0".join(self.classes.get(task, [])).encode())
        if self.swap_pairs is not None:
            digest.update(b"swap" + np.ascontiguousarray(self.swap_pairs, dtype=np.int64).tobytes())
        return digest.hexdigest()[:20]

    def image_fingerprint(self) -> str:
        digest = hashlib.sha256()
        for ref in self.images:
            digest.update(ref.fingerprint().encode())
            digest.update(b"\0")
        return digest.hexdigest()[:20]

    @functools.cached_property
    def caption_groups(self) -> np.ndarray:
        """One number per caption, equal for identical texts: retrieval treats identical captions as
        the same caption (a templated dataset repeats one text per class)."""
        if not self.captions:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.asarray(self.captions, dtype=object).astype(str), return_inverse=True)[1].astype(np.int64)

    def captions_of(self, image: int) -> list[int]:
        return np.flatnonzero(self.caption_image == image).tolist()

    def subset(self, images: Sequence[int] | np.ndarray, split: str, captions: Sequence[int] | np.ndarray | None = None,
               encode_whole: bool = True) -> SplitData:
        """The given images (in that order) with their labels and attributes and all their captions (or
        only ``captions``, indices of this split's captions of those images), as a split of its own name
        (its content fingerprint follows from its images). ``encode_whole``: see :class:`Subset`."""
        rows = np.asarray(images, dtype=np.int64)
        new_index = np.full(self.n_images, -1, dtype=np.int64)
        new_index[rows] = np.arange(len(rows))
        keep = (np.flatnonzero(new_index[self.caption_image] >= 0) if captions is None
                else np.asarray(captions, dtype=np.int64))
        if captions is not None and len(keep) and (new_index[self.caption_image[keep]] < 0).any():
            raise ValueError("a kept caption belongs to an image left out")
        parent = (Subset(self.parent.whole, self.parent.images[rows], self.parent.captions[keep], encode_whole)
                  if self.parent else Subset(self, rows, keep, encode_whole))  # a subset of a subset: the first whole
        return SplitData(dataset=self.dataset, split=split, images=[self.images[i] for i in rows],
                         captions=[self.captions[j] for j in keep], caption_image=new_index[self.caption_image[keep]],
                         labels={k: np.asarray(v)[rows] for k, v in self.labels.items()}, classes=self.classes,
                         attributes={k: np.asarray(v)[rows] for k, v in self.attributes.items()},
                         swap_pairs=None, protocol=self.protocol, templates=self.templates,
                         candidates={k: np.asarray(v)[rows] for k, v in self.candidates.items()}, parent=parent)


@dataclass(frozen=True)
class Subset:
    """Where a split cut from another sits in it: image ``i`` is ``whole``'s image ``images[i]``,
    caption ``j`` its caption ``captions[j]``. Features are read through these rows from the whole
    split's cache entry (the one ``probe extract`` writes), not encoded again under a name of their own.

    ``encode_whole``: a carve-out (a corpus's fit and held-out parts, which together cover the split)
    has the whole split encoded where it is not cached yet; a sample (``probe select`` compares 5,000
    pairs of a corpus of millions) reads the whole split's entry only where it is cached, and is
    otherwise encoded alone."""

    whole: SplitData
    images: np.ndarray
    captions: np.ndarray
    encode_whole: bool = True


def text_fingerprint(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts)).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    splits: tuple[str, ...]
    protocol: str
    description: str
