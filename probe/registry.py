"""The model catalogue: frozen, validated encoder specs read from ``registry/*.toml``.

Each ``[[model]]`` table is one encoder. A ``[defaults.<family>]`` table in the same file holds the
fields every entry of that family shares (family = the part of the name before ``/``), so an entry
is a few lines. Unknown or missing fields are errors that name the file and the entry, because a
misspelt ``pooling`` silently falling back to a default would change every number downstream.

Only strings and numbers live here; nothing heavy is imported.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from probe import settings
from probe.encoder_spec import MODALITIES, NAME_RE, OBJECTIVES, EncoderSpec
from probe.errors import ProbeError
from probe.settings import builtin_registry_dir

__all__ = ["EncoderSpec", "Registry", "builtin_registry_dir", "parse_registry_file", "spec_from_dict"]

_FIELDS = {f.name: f for f in dataclasses.fields(EncoderSpec) if f.name != "source"}
_REQUIRED = {
    name
    for name, f in _FIELDS.items()
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
}
_VISION_REQUIRED = {"image_size", "mean", "std"}


def _check_type(value: Any, name: str) -> Any:
    """Coerce TOML values to the declared field types, or say what was expected."""
    expected = _FIELDS[name].type
    if name in ("mean", "std"):
        if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
            raise ValueError(f"field {name!r} must be a list of 3 numbers, got {value!r}")
        return tuple(float(v) for v in value)
    if name == "requires":
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ValueError(f"field 'requires' must be a list of pip requirements, got {value!r}")
        from packaging.requirements import InvalidRequirement, Requirement

        for requirement in value:
            try:
                Requirement(requirement)
            except InvalidRequirement:
                raise ValueError(f"requires: {requirement!r} is not a pip requirement (e.g. 'einops>=0.7')") from None
        return tuple(value)
    if name in ("arch_kwargs", "model_kwargs"):
        if not isinstance(value, dict):
            raise ValueError(f"field {name!r} must be a table, got {value!r}")
        return dict(value)
    if "int" in str(expected) and "float" not in str(expected):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"field {name!r} must be an integer, got {value!r}")
        return value
    if "float" in str(expected):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"field {name!r} must be a number, got {value!r}")
        return float(value)
    if "bool" in str(expected):
        if not isinstance(value, bool):
            raise ValueError(f"field {name!r} must be true or false, got {value!r}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a string, got {value!r}")
    return value


def _build_spec(raw: dict[str, Any], source: str) -> EncoderSpec:
    from probe.tomlfiles import unknown_key

    unknown = unknown_key(raw, _FIELDS)
    if unknown:
        raise ValueError(unknown)
    required = _REQUIRED | (_VISION_REQUIRED if raw.get("modality") == "vision" else set())
    missing = sorted(required - set(raw))
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    values = {k: _check_type(v, k) for k, v in raw.items()}
    if not NAME_RE.match(values["name"]):
        raise ValueError(f"name {values['name']!r} must look like 'family/arch.tag' in lower case")
    for key, allowed in (("modality", MODALITIES), ("objective", OBJECTIVES)):
        if values[key] not in allowed:
            raise ValueError(f"{key} {values[key]!r} is not one of {', '.join(allowed)}")
    from probe.encoders.families import family

    family(values["loader"]).validate(values)  # the loader family knows its poolings and needs
    _check_ranges(values)
    return EncoderSpec(**values, source=source)


def _check_ranges(values: dict[str, Any]) -> None:
    """Values that parse but cannot work (an image of size 0 would cache empty features; a std of 0
    divides by zero and caches inf) are refused here, naming the field and what would be valid."""
    import math

    positive = ("embed_dim", "image_size", "max_length")
    for name in positive:
        if name in values and values[name] is not None and values[name] <= 0:
            raise ValueError(f"{name} must be positive, got {values[name]}")
    if values.get("params_m", 0) < 0:
        raise ValueError(f"params_m must be 0 or more, got {values['params_m']}")
    if values.get("prefix_tokens", 0) < 0:
        raise ValueError(f"prefix_tokens must be 0 or more, got {values['prefix_tokens']}")
    crop = values.get("crop_pct", 1.0)
    if not 0.0 < crop <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop}")
    for name in ("mean", "std"):
        numbers = values.get(name) or ()
        if any(not math.isfinite(v) for v in numbers):
            raise ValueError(f"{name} must hold finite numbers, got {list(numbers)}")
    if any(v <= 0 for v in values.get("std") or ()):
        raise ValueError(f"std values must be positive (they divide the pixels), got {list(values['std'])}")
    for name in ("imagenet_knn", "imagenet_linear", "mteb_avg"):
        if values.get(name) is not None and not 0.0 <= values[name] <= 100.0:
            raise ValueError(f"{name} is a percentage, got {values[name]}")


def spec_from_dict(raw: dict[str, Any], source: str) -> EncoderSpec:
    """A spec from :meth:`EncoderSpec.to_dict` output (a saved model's copy), validated like a
    registry entry; fields left at None are the defaults."""
    try:
        return _build_spec({k: v for k, v in raw.items() if v is not None}, source=source)
    except ValueError as exc:
        raise ProbeError(f"{source}: model {raw.get('name', '?')!r}: {exc}") from None


def parse_registry_file(path: Path) -> list[EncoderSpec]:
    """Read one TOML file; every problem is a :class:`ProbeError` naming the file and entry."""
    return _parse_registry_file(path)[0]


def _parse_registry_file(path: Path) -> tuple[list[EncoderSpec], set[str]]:
    """``(specs, names that say override = true)`` of one registry file."""
    from probe.tomlfiles import pop_override, read_toml, unknown_key

    data = read_toml(path, "registry")
    top_unknown = unknown_key(data, ("model", "defaults", "modality"), "top-level key")
    if top_unknown:
        raise ProbeError(f"{path}: {top_unknown} ([[model]] tables, [defaults.<family>] tables, modality)")
    file_defaults = {"modality": data["modality"]} if "modality" in data else {}
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict) or not all(isinstance(t, dict) for t in defaults.values()):
        raise ProbeError(f"{path}: 'defaults' must be tables of fields per family ([defaults.<family>])")
    for family, table in defaults.items():
        bad = unknown_key(table, _FIELDS)
        if bad:
            raise ProbeError(f"{path}: [defaults.{family}]: {bad}")
    entries = data.get("model", [])
    if not isinstance(entries, list):
        raise ProbeError(f"{path}: 'model' must be an array of tables ([[model]])")
    specs, overrides = [], set()
    for index, raw in enumerate(entries, start=1):
        if not isinstance(raw, dict):
            raise ProbeError(f"{path}: 'model' must be an array of tables ([[model]])")
        label = raw.get("name", f"#{index}")
        raw, override = pop_override(raw, f"{path}: model {label!r}")
        family = str(raw.get("name", "")).split("/", 1)[0]
        merged = {**file_defaults, **defaults.get(family, {}), **raw}
        try:
            specs.append(_build_spec(merged, source=str(path)))
        except ValueError as exc:
            raise ProbeError(f"{path}: model {label!r}: {exc}") from None
        if override:
            overrides.add(specs[-1].name)
    return specs, overrides


def _expand(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for item in paths:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(path.glob("*.toml"))
            if not found:
                raise ProbeError(f"registry folder {str(path)!r} holds no .toml files")
            out.extend(found)
        elif path.exists():
            out.append(path)
        else:
            raise ProbeError(f"registry path {str(path)!r} does not exist; give a .toml file or a folder of them")
    return out


class Registry:
    """All specs from the built-in catalogue plus user files; lookups by name or shell pattern."""

    def __init__(self, specs: Sequence[EncoderSpec], overrides: Iterable[str] = ()):
        """``overrides``: names whose later definition (a user file's ``override = true``) replaces
        an earlier one; any other name defined twice is an error."""
        self._specs: dict[str, EncoderSpec] = {}
        allowed = set(overrides)
        for spec in specs:
            if spec.name in self._specs and spec.name not in allowed:
                first = self._specs[spec.name].source
                raise ProbeError(f"model {spec.name!r} is defined twice: in {first} and in {spec.source} (a file "
                                 "that means to replace an entry says override = true in it)")
            self._specs[spec.name] = spec

    @classmethod
    def load(cls, extra: Iterable[str | Path] = (), include_builtin: bool = True) -> Registry:
        """Built-in files, then ``$PROBE_REGISTRY`` (os.pathsep-separated), then ``extra``."""
        paths: list[str | Path] = [builtin_registry_dir()] if include_builtin else []
        paths += settings.paths(settings.ENV_REGISTRY)
        paths += list(extra)
        specs: list[EncoderSpec] = []
        overrides: set[str] = set()
        for path in _expand(paths):
            found, named = _parse_registry_file(path)
            specs.extend(found)
            overrides |= named
        return cls(specs, overrides)

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self):
        return iter(self.list())

    def names(self) -> list[str]:
        return natural_sorted(self._specs)

    def get(self, name: str) -> EncoderSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise ProbeError(_no_match_message(name, self._specs)) from None

    def list(
        self,
        patterns: Sequence[str] = (),
        modality: str | None = None,
        include_tests: bool = True,
        strict: bool = False,
    ) -> list[EncoderSpec]:
        """Specs whose names match any shell-style pattern, naturally sorted.

        With ``strict``, a pattern that matches nothing is an error suggesting close names.
        ``all`` is a pattern meaning every non-test entry.
        """
        if modality is not None and modality not in MODALITIES:
            raise ProbeError(f"modality {modality!r} is not one of {', '.join(MODALITIES)}")
        pool = {n: s for n, s in self._specs.items() if modality is None or s.modality == modality}
        if not patterns:
            chosen = {n for n, s in pool.items() if include_tests or not s.is_test}
        else:
            chosen = set()
            for pattern in patterns:
                if pattern == "all":
                    hits = {n for n, s in pool.items() if not s.is_test}
                else:
                    hits = {n for n in pool if fnmatch.fnmatchcase(n, pattern)}
                if strict and not hits:
                    other = sorted({s.modality for n, s in self._specs.items()
                                    if pattern != "all" and fnmatch.fnmatchcase(n, pattern)})
                    if other:  # the name exists, for the other modality
                        raise ProbeError(f"{pattern!r} names {' and '.join(other)} model(s); this option takes "
                                         f"{modality} models (`probe models --modality {modality}` lists them)")
                    raise ProbeError(_no_match_message(pattern, pool))
                chosen |= hits
        return [self._specs[n] for n in natural_sorted(chosen)]


def _no_match_message(pattern: str, names: Iterable[str]) -> str:
    names = natural_sorted(names)
    stem = pattern.replace("*", "").replace("?", "").strip("/")
    close = difflib.get_close_matches(stem, names, n=3, cutoff=0.6)
    if not close and stem:
        families = sorted({n.split("/", 1)[0] for n in names})
        close_families = difflib.get_close_matches(stem.split("/", 1)[0], families, n=3, cutoff=0.5)
        close = [f"{family}/*" for family in close_families]
    hint = f"; did you mean {', '.join(close)}?" if close else "; `probe models` lists them all"
    return f"no model matches {pattern!r}{hint}"


def natural_sort_key(text: str) -> list[Any]:
    """'vit-b14' < 'vit-l14', 'lite2' < 'lite10': digits compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text.lower())]


def natural_sorted(items: Iterable[str]) -> list[str]:
    return sorted(items, key=natural_sort_key)
