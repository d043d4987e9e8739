"""Published training setups as presets (``--preset sail``): one TOML file each, citing the script its
values come from, and ``--config FILE.toml`` in the same form for a user's own.

This module finds and reads the files; :func:`probe.align.config.preset_values` checks their values
against the head configuration they set (so that this module needs nothing above the TOML reader).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.tomlfiles import read_toml, unknown_key

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    """The shipped presets."""
    return sorted(p.stem for p in HERE.glob("*.toml"))


def preset_path(name: str) -> Path:
    """A shipped preset's file by name, or a preset file by path."""
    path = HERE / f"{name}.toml"
    if path.is_file():
        return path
    if Path(name).suffix == ".toml" and Path(name).is_file():
        return Path(name)
    raise ProbeError(f"unknown preset {name!r}; valid: {', '.join(names())} (or a .toml file)")


def read_preset_file(path: str | Path) -> dict[str, Any]:
    """``{"description", "source", "values", "unsupported"}`` of a preset file, as written (values not
    yet checked). ``unsupported`` says why probe cannot yet train what the source trained: such a
    preset refuses to run rather than run something else under the source's name."""
    data = read_toml(path, "preset")
    unknown = unknown_key(data, ("description", "source", "values", "unsupported"), "top-level key")
    if unknown:
        raise ProbeError(f"{path}: {unknown} (settings go in the [values] table)")
    for key in ("description", "source", "unsupported"):
        if not isinstance(data.get(key, ""), str):
            raise ProbeError(f"{path}: {key!r} must be text, got {data[key]!r}")
    values = data.get("values", {})
    if not isinstance(values, dict):
        raise ProbeError(f"{path}: 'values' must be a table ([values]) of settings")
    return {"description": data.get("description", ""), "source": data.get("source", ""), "values": values,
            "unsupported": data.get("unsupported", "")}
