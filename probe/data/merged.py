"""``A+B+C``: several datasets read as one (a training corpus made of several captioned sources).

Each split is the concatenation of the parts' splits of that name, in the order given; a split
exists when every part has it. Captions keep pointing at their own images. Label tasks are kept
only when every part has them with the same classes, since class indices of different sources do
not mean the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from probe.data.base import DatasetInfo, SplitData
from probe.errors import ProbeError

SEPARATOR = "+"


class MergedDataset:
    def __init__(self, name: str, parts: Sequence[object]):
        self.parts = list(parts)
        splits = [s for s in self.parts[0].info.splits if all(s in p.info.splits for p in self.parts)]  # type: ignore[attr-defined]
        if not splits:
            raise ProbeError(f"dataset {name!r}: its parts share no split name")
        protocol = "; ".join(f"{p.info.name}: {p.info.protocol}" for p in self.parts)  # type: ignore[attr-defined]
        self.info = DatasetInfo(name, tuple(splits), f"{len(self.parts)} datasets concatenated ({protocol})",
                                " + ".join(p.info.description for p in self.parts))  # type: ignore[attr-defined]

    def load(self, split: str) -> SplitData:
        if split not in self.info.splits:
            raise ProbeError(f"dataset {self.info.name!r} has no split {split!r}; valid: {', '.join(self.info.splits)}")
        pieces = [p.load(split) for p in self.parts]  # type: ignore[attr-defined]
        return concatenate(self.info.name, split, pieces, self.info.protocol)


def concatenate(name: str, split: str, pieces: list[SplitData], protocol: str) -> SplitData:
    images: list[object] = []
    captions: list[str] = []
    owners: list[np.ndarray] = []
    pairs: list[np.ndarray] = []
    for piece in pieces:
        offset = len(images)
        images.extend(piece.images)
        captions.extend(piece.captions)
        owners.append(np.asarray(piece.caption_image, dtype=np.int64) + offset)
        if piece.swap_pairs is not None:
            pairs.append(np.asarray(piece.swap_pairs) + offset)
    shared = [task for task in pieces[0].labels
              if all(task in p.labels and p.classes.get(task) == pieces[0].classes.get(task) for p in pieces)]
    return SplitData(
        dataset=name, split=split, images=images, captions=captions,
        caption_image=np.concatenate(owners) if owners else np.zeros(0, dtype=np.int64),
        labels={t: np.concatenate([np.asarray(p.labels[t]) for p in pieces]) for t in shared},
        classes={t: pieces[0].classes[t] for t in shared},
        swap_pairs=np.concatenate(pairs) if pairs and len(pairs) == len(pieces) else None,
        protocol=protocol, templates={t: pieces[0].templates[t] for t in shared if t in pieces[0].templates})
