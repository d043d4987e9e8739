"""Published training recipes as presets (``--recipe sail``): one TOML file each, citing the script
its values come from, and ``--config FILE.toml`` in the same form for a user's own."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from probe.errors import ProbeError

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.toml"))


@functools.cache
def read_recipe(path: str) -> dict[str, Any]:
    """``{"description", "source", "values"}`` of a recipe file; unknown config fields are errors."""
    from dataclasses import fields

    from probe.align.config import ProbeConfig
    from probe.tomlfiles import read_toml

    data = read_toml(path, "recipe")
    values = data.get("values", {})
    if not isinstance(values, dict):
        raise ProbeError(f"{path}: 'values' must be a table ([values]) of settings")
    known = {f.name for f in fields(ProbeConfig)} - {"recipe", "seed"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ProbeError(f"{path}: unknown setting {unknown[0]!r}; valid: {', '.join(sorted(known))}")
    defaults = ProbeConfig().to_dict()
    for name, value in values.items():
        wanted = _kind_of(defaults[name])
        if not _is_kind(value, wanted):
            raise ProbeError(f"{path}: {name} = {value!r} must be {wanted}")
    return {"description": data.get("description", ""), "source": data.get("source", ""), "values": values}


def _kind_of(default: Any) -> str:
    """What a setting takes, from its default: a bool, a whole number, a number (int or float; None
    defaults are optional numbers) or text."""
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, float) or default is None:
        return "a number"
    return "text"


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "true or false":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "a whole number":
        return isinstance(value, int)
    if kind == "a number":
        return isinstance(value, (int, float))
    return isinstance(value, str)


def recipe_values(name: str) -> dict[str, Any]:
    """The values of a shipped recipe by name, or of a recipe file by path."""
    path = HERE / f"{name}.toml"
    if not path.is_file():
        if Path(name).suffix == ".toml" and Path(name).is_file():
            path = Path(name)
        else:
            raise ProbeError(f"unknown recipe {name!r}; valid: {', '.join(names())} (or a .toml file)")
    return dict(read_recipe(str(path))["values"])
