"""``probe.models``, ``probe.benchmarks`` and ``probe.presets``: what the registry, the benchmark
catalogue and the training presets hold, and what of it is usable on this machine, as rows a notebook
can filter (``probe models``, ``probe benchmarks`` and ``probe presets`` print the same rows)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def models(patterns: str | Sequence[str] = (), *, modality: str | None = None, available: bool = False,
           include_tests: bool = False, registry: Sequence[str | Path] = (),
           allow_download: bool = False) -> list[dict[str, Any]]:
    """Registry entries matching shell-style ``patterns`` (all when none): each entry's fields, whether
    its weights load here (``available``) and why not (``availability``), whether it is a control and
    whether it runs code beyond probe's. ``available=True`` keeps only the loadable ones.

    Example::

        import pandas as pd, probe
        pd.DataFrame(probe.models(modality="text", available=True))[["name", "embed_dim"]]
    """
    from probe.api.common import load_registry, names
    from probe.encoders.loadable import check
    from probe.errors import ProbeError

    if modality not in (None, "vision", "text"):
        raise ProbeError(f"modality {modality!r} is not one of vision, text")
    chosen = names(patterns)
    specs = load_registry(registry).list(chosen, modality=modality, include_tests=include_tests or bool(chosen),
                                         strict=True)
    rows = []
    for spec in specs:
        status = check(spec, allow_download=allow_download)
        if status.ok or not available:
            rows.append({**spec.to_dict(), "available": status.ok, "availability": status.reason,
                         "control": spec.is_control, "runs_code": spec.runs_code, "source": spec.source})
    return rows


def benchmarks(names: str | Sequence[str] = ()) -> dict[str, list[dict[str, Any]]]:
    """The benchmark catalogue (or the named benchmarks and suites): per benchmark its tasks, how many
    class names and templates it has, where its data must be, whether it is here and how to get it,
    its source's main metric, and why probe does not score it where it does not; then the suites, each
    with its members here, missing, and not scored by probe. ``{"benchmarks": [...], "suites": [...]}``."""
    from probe.api.common import names as as_names
    from probe.errors import ProbeError
    from probe.evaluation.benchmarks import class_names, prompt_templates
    from probe.evaluation.catalogue import Catalogue

    asked = as_names(names)
    catalogue = Catalogue.load()
    for name in asked:
        if name not in catalogue.benchmarks and name not in catalogue.suites:
            raise catalogue.unknown(name)
    chosen = catalogue.expand(asked) if asked else list(catalogue.benchmarks)

    def count(fn: Any, entry: Any) -> str:
        if entry.reader == "bundled" or "zeroshot" not in entry.task:
            return "-" if "zeroshot" not in entry.task else "bundled"
        if entry.reader == "recipe":
            from probe.recipes import get_recipe

            recipe = get_recipe(entry.name)
            return str(len(recipe.classnames if fn is class_names else recipe.templates))
        try:
            return str(len(fn(entry)))
        except ProbeError:
            return "needs data"

    rows = []
    for name in chosen:
        entry = catalogue.benchmarks[name]
        unsupported = bool(entry.unsupported)
        rows.append({"name": name, "task": ", ".join(entry.task),
                     "classes": "-" if unsupported else count(class_names, entry),
                     "templates": "-" if unsupported else count(prompt_templates, entry), "data": entry.where(),
                     "present": entry.present() and not unsupported, "get": entry.get,
                     "main_metric": entry.main_metric or None, "unsupported": entry.unsupported or None,
                     "description": entry.description})
    suites = []
    for suite in catalogue.suites.values():
        if asked and suite.name not in asked:
            continue
        members = [catalogue.benchmarks.get(m) for m in suite.benchmarks]
        unscored = [m.name for m in members if m is not None and m.unsupported]
        here = [m.name for m in members if m is not None and not m.unsupported and m.present()]
        suites.append({"suite": suite.name, "benchmarks": list(suite.benchmarks), "description": suite.description,
                       "here": here, "unsupported": unscored,
                       "missing": [m for m in suite.benchmarks if m not in here and m not in unscored]})
    return {"benchmarks": rows, "suites": suites}


def presets() -> list[dict[str, Any]]:
    """The shipped training presets (``--preset NAME``): each one's name, what it trains, the source
    it reproduces, its head values and (for ``probe tune``) its encoder values (``tune``), what probe
    does otherwise than its source (``differences``), and why it cannot run where probe cannot yet do
    what its source did (``unsupported``, empty when it runs).

    Example::

        import probe
        [p["name"] for p in probe.presets() if not p["unsupported"]]
    """
    from probe.align.config import read_preset
    from probe.align.presets import HERE, names

    rows = []
    for name in names():
        preset = read_preset(str(HERE / f"{name}.toml"))  # cached: the caller gets copies to change freely
        rows.append({"name": name, **preset, "values": dict(preset["values"]), "tune": dict(preset["tune"])})
    return rows
