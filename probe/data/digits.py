"""``digits``: scikit-learn's 1,797 handwritten digits, upsampled to RGB, with captions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probe.data.base import DatasetInfo, SplitData
from probe.errors import ProbeError

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLIT_SIZES = {"train": 1000, "val": 297, "test": 500}
SIZE = 64

INFO = DatasetInfo(
    name="digits",
    splits=tuple(SPLIT_SIZES),
    protocol="scikit-learn load_digits, seeded shuffle into 1000/297/500; 5 captions per image",
    description="handwritten digits (8x8 upsampled to 64x64 RGB), dark ink on white",
)


@dataclass(frozen=True)
class DigitImage:
    index: int

    def load(self):
        from PIL import Image

        pixels = _digits()[0][self.index]
        ink = (255 - pixels * (255 / 16)).astype(np.uint8)
        return Image.fromarray(ink).resize((SIZE, SIZE), Image.Resampling.BICUBIC).convert("RGB")

    def fingerprint(self) -> str:
        return f"digits:{self.index}"


_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    if "d" not in _CACHE:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        _CACHE["d"] = (bunch.images, bunch.target)
    return _CACHE["d"]


def make_split(split: str, seed: int = 0) -> SplitData:
    if split not in SPLIT_SIZES:
        raise ProbeError(f"digits has no split {split!r}; valid: {', '.join(SPLIT_SIZES)}")
    _, target = _digits()
    order = np.random.default_rng(seed).permutation(len(target))
    start = {"train": 0, "val": SPLIT_SIZES["train"], "test": SPLIT_SIZES["train"] + SPLIT_SIZES["val"]}[split]
    chosen = order[start:start + SPLIT_SIZES[split]]
    captions, caption_image = [], []
    for i, index in enumerate(chosen):
        word = NAMES[target[index]]
        texts = [f"a handwritten {word}", f"the digit {target[index]}", f"a picture of the number {word}",
                 f"a scanned handwritten {target[index]}", f"a small grey image of a {word}"]
        captions.extend(texts)
        caption_image.extend([i] * len(texts))
    return SplitData(
        dataset="digits", split=split, images=[DigitImage(int(i)) for i in chosen], captions=captions,
        caption_image=np.array(caption_image), labels={"digit": target[chosen].astype(np.int64)},
        classes={"digit": list(NAMES)}, protocol=INFO.protocol,
        templates={"digit": ["a handwritten {}.", "the digit {}.", "a picture of the number {}.",
                             "a blurry handwritten {}."]},
    )
