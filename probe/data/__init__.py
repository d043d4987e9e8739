"""Datasets by name: bundled ``shapes`` and ``digits``, or users' data as ``kind:PATH``."""

from __future__ import annotations

from typing import Protocol

from probe.data.base import DatasetInfo, SplitData
from probe.errors import ProbeError

BUNDLED = ("shapes", "digits", "shapes-ood")
LOCAL_KINDS = ("imagefolder", "karpathy", "coco", "csv", "jsonl", "wds")


class Dataset(Protocol):
    info: DatasetInfo

    def load(self, split: str) -> SplitData: ...


class BundledDataset:
    def __init__(self, name: str, seed: int = 0):
        from probe.data import digits, shapes, shapes_ood

        self.module = {"shapes": shapes, "shapes-ood": shapes_ood, "digits": digits}[name]
        self.info = self.module.INFO
        self.seed = seed

    def load(self, split: str) -> SplitData:
        return self.module.make_split(split, seed=self.seed)


def get_dataset(name: str) -> Dataset:
    """``shapes``, ``digits``, ``shapes-ood``, a built recipe (``tuxpaint``, ``fashion-mnist``, see
    ``probe data get``), several of those joined by ``+`` (one corpus), or ``imagefolder:PATH`` /
    ``karpathy:FILE`` / ``coco:FOLDER`` (COCO's own layout) / ``csv:FILE`` / ``jsonl:FILE`` / ``wds:PATH``."""
    if name in BUNDLED:
        return BundledDataset(name)
    from probe.data.merged import SEPARATOR

    if SEPARATOR in name and ":" not in name:
        from probe.data.merged import MergedDataset

        return MergedDataset(name, [get_dataset(part) for part in name.split(SEPARATOR)])
    from probe.recipes.sources import RECIPES

    if name in RECIPES:
        from probe.data.recipe import RecipeDataset

        return RecipeDataset(name)
    kind, sep, path = name.partition(":")
    if sep and kind in LOCAL_KINDS and path:
        from probe.data import local

        if kind == "imagefolder":
            return local.ImageFolderDataset(path)
        if kind == "karpathy":
            return local.KarpathyDataset(path)
        if kind == "coco":
            from probe.data.coco import CocoCaptionsDataset

            return CocoCaptionsDataset(path)
        if kind in ("csv", "jsonl"):
            return local.TableDataset(path, kind)
        return local.WebDataset(path)
    valid = ", ".join((*BUNDLED, *RECIPES)) + ", or " + ", ".join(f"{k}:PATH" for k in LOCAL_KINDS)
    raise ProbeError(f"unknown dataset {name!r}; valid: {valid}")


__all__ = ["BUNDLED", "Dataset", "DatasetInfo", "SplitData", "get_dataset"]
