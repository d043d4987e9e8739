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
    """``{"description", "source", "values", "tune", "unsupported", "differences"}`` of a preset file, as
    written (values not yet checked). ``values`` are head settings; ``tune`` (a preset for
    ``probe tune``) the encoders' side. ``unsupported`` says why probe cannot yet train what the source
    trained: such a preset refuses to run rather than run something else under the source's name.
    ``differences`` names what probe does otherwise than the source where that changes no setting
    (the arithmetic's precision, how the corpus is drawn): said when the preset runs."""
    data = read_toml(path, "preset")
    texts = ("description", "source", "unsupported", "differences")
    unknown = unknown_key(data, (*texts, "values", "tune"), "top-level key")
    if unknown:
        raise ProbeError(f"{path}: {unknown} (settings go in the [values] table)")
    for key in texts:
        if not isinstance(data.get(key, ""), str):
            raise ProbeError(f"{path}: {key!r} must be text, got {data[key]!r}")
    for key in ("values", "tune"):
        if not isinstance(data.get(key, {}), dict):
            raise ProbeError(f"{path}: {key!r} must be a table ([{key}]) of settings")
    return {**{key: data.get(key, "") for key in texts}, "values": data.get("values", {}), "tune": data.get("tune", {})}
