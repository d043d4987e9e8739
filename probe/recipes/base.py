"""What a dataset recipe is: a source of real images with their own captions or labels.

A recipe only *reads* its source (a Debian or npm package, a folder the user has) and says, item by
item, what the source holds: a stable key, an image file, the captions or the label exactly as the
source gives them, or why the item cannot be used. Building (decoding, de-duplicating, splitting,
writing standard formats, the manifest) is :mod:`probe.recipes.build`'s job, the same for every recipe.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: what a recipe builds: captioned images (Karpathy-style JSON, retrieval and training corpora) or
#: labelled images (clip_benchmark's webdataset layout, zero-shot classification)
KINDS = ("captions", "classification")


@dataclass(frozen=True)
class SourceItem:
    """One image of a source. ``drop`` names why it is unusable (then nothing else needs to be set)."""

    key: str
    image: Path | None = None
    captions: tuple[str, ...] = ()
    label: int | None = None
    drop: str = ""
    #: items of one group share a split (near-duplicates with one caption must not straddle train and test)
    group: str = ""
    #: the source's own split when it has one (Fashion-MNIST's t10k is ``test``); else a hash decides
    split: str = ""
    #: decoded pixels for sources that are not image files (idx arrays): an HxW or HxWx3 uint8 array
    pixels: Any = None


@dataclass(frozen=True)
class Recipe:
    """A named way to turn one source into a dataset.

    ``items(root)`` yields the source's items; ``default_root`` is where the source installs, and
    ``install`` the exact command that puts it there.
    """

    name: str
    kind: str
    title: str
    licence: str
    install: str
    default_root: str
    #: fractions of items per split, assigned by a hash of the item's key (same split on every machine)
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.05, "test": 0.15})
    #: classification: class names and the prompt templates the recipe states (``{}`` = class name)
    classnames: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    #: images larger than this on their long side are downscaled to it (as img2dataset does): encoders
    #: see 224-518 px, and a 13,000 px clip-art rendering would otherwise be decoded at every extraction
    max_side: int = 512
    #: at most this many items per split (a stated subset for large sources); None = all
    limit: dict[str, int] | None = None
    notes: str = ""

    def items(self, root: Path) -> Iterator[SourceItem]:
        raise NotImplementedError

    def source_files(self, root: Path) -> Iterator[tuple[str, Path]]:
        """``(name, path)`` of every file the recipe reads (the manifest checksums them): by default
        every file under ``root``."""
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            yield path.relative_to(root).as_posix(), path

    def source_present(self, root: Path) -> bool:
        return root.exists()
