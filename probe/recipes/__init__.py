"""Dataset recipes: ``probe data get NAME`` turns a local source of real images with real captions or
labels into a standard-format dataset under ``$PROBE_HOME/datasets/NAME``.

A built recipe is a dataset like any other: ``--train tuxpaint``, ``--eval fashion-mnist``. Its
manifest is checked whenever it is used; a dataset whose files no longer match is refused, never used
as it is, and ``probe data get NAME`` rebuilds it: only that command builds.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from pathlib import Path

from probe.errors import ProbeError
from probe.recipes.base import Recipe
from probe.recipes.sources import RECIPES

log = logging.getLogger("probe.recipes")


def get_recipe(name: str, also: Iterable[str] = ()) -> Recipe:
    """The recipe called ``name``; an unknown name is an error whose suggestions include ``also`` (the
    other names the caller accepts, e.g. the published benchmarks ``probe data get`` prepares)."""
    if name not in RECIPES:
        known = [*RECIPES, *also]
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ProbeError(f"unknown recipe {name!r}{hint}; valid: {', '.join(known)}")
    return RECIPES[name]


def recipes_home() -> Path:
    from probe.settings import probe_home

    return probe_home() / "datasets"


def recipe_dir(name: str) -> Path:
    return recipes_home() / name


def source_root(recipe: Recipe, source: str | Path | None = None) -> Path:
    """Where the recipe's source is: ``source``, ``$PROBE_RECIPE_SOURCE_<NAME>``, or where it installs."""
    from probe.settings import recipe_source

    return Path(source or recipe_source(recipe.name) or recipe.default_root).expanduser()


def is_built(name: str) -> bool:
    return (recipe_dir(name) / "manifest.json").is_file()


def build_lock(name: str):
    """The lock a build of recipe ``name`` holds: a second `probe data get` waits for the first, and a
    reader checks the files only once a build in progress has finished."""
    from filelock import FileLock

    folder = recipe_dir(name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder.parent / f".{name}.lock"))


def get(name: str, source: str | Path | None = None, force: bool = False, progress: bool = True):
    """Build recipe ``name`` unless a build whose files match its manifest is already there."""
    from probe.recipes.build import BuildReport, build, stale_files

    recipe = get_recipe(name)
    folder = recipe_dir(name)
    with build_lock(name):
        if not force and is_built(name):
            stale = stale_files(folder)
            if not stale:
                return BuildReport(name, folder, built=False)
            log.warning("dataset %s: %d file(s) no longer match its manifest (first: %s); rebuilding",
                        name, len(stale), stale[0])
        return build(recipe, folder, source_root(recipe, source), progress=progress)


def ensure_built(name: str) -> Path:
    """The folder of built recipe ``name`` when its files still match its manifest. Reading a dataset
    never builds one: a build that is missing or whose files changed is a one-line error saying to run
    `probe data get NAME`, the one command that builds (and may take minutes and need the source)."""
    from probe.recipes.build import stale_files

    recipe = get_recipe(name)
    if not is_built(name):
        raise ProbeError(f"dataset {name!r} is not built here; run `probe data get {name}` (its source: "
                         f"`{recipe.install}`)")
    folder = recipe_dir(name)
    with build_lock(name):
        stale = stale_files(folder)
    if stale:
        raise ProbeError(f"dataset {name!r}: {len(stale)} file(s) in {folder} no longer match its manifest (first: "
                         f"{stale[0]}); run `probe data get {name}` to rebuild it from its source")
    return folder


__all__ = ["RECIPES", "Recipe", "ensure_built", "get", "get_recipe", "is_built", "recipe_dir", "source_root"]
