"""A built recipe read as a dataset: its Karpathy JSON (captions) or clip_benchmark shards (classes)."""

from __future__ import annotations

import dataclasses
import json

from probe.data.base import DatasetInfo, SplitData
from probe.errors import ProbeError


class RecipeDataset:
    """``NAME`` for a recipe built by ``probe data get NAME``; its manifest is checked on open."""

    def __init__(self, name: str):
        from probe.recipes import ensure_built, get_recipe
        from probe.recipes.build import BUILD_VERSION

        self.recipe = get_recipe(name)
        self.folder = ensure_built(name)
        self.manifest = json.loads((self.folder / "manifest.json").read_text(encoding="utf-8"))
        splits = tuple(s for s in ("train", "val", "test") if self.manifest["counts"].get(s))
        dropped = sum(self.manifest["dropped"].values())
        counts = ", ".join(f"{s} {self.manifest['counts'][s]}" for s in splits)
        self.info = DatasetInfo(
            name, splits,
            f"recipe {name} v{BUILD_VERSION} ({counts} images; "
            f"{dropped} source items dropped, see manifest.json): {self.recipe.notes}",
            self.recipe.title)

    def load(self, split: str) -> SplitData:
        if split not in self.info.splits:
            raise ProbeError(f"dataset {self.info.name!r} has no split {split!r}; valid: {', '.join(self.info.splits)}")
        if self.recipe.kind == "captions":
            from probe.data.local import KarpathyDataset

            data = KarpathyDataset(str(self.folder / "captions.json")).load(split)
            return dataclasses.replace(data, dataset=self.info.name, protocol=self.info.protocol)
        from probe.data.published import ClipWebDataset

        reader = ClipWebDataset(self.info.name, self.folder, split, self.recipe.classnames, self.recipe.templates,
                                self.info.protocol)
        return reader.load(split)
