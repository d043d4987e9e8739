"""The benchmark catalogue as data: ``registry/benchmarks/*.toml`` (plus users' files).

A benchmark names its reader (how its published layout is read), its tasks, where its data must be,
and for classification where its class names and prompt templates come from: clip_benchmark's
shipped metadata (``clip_benchmark:<key>``), a file in the benchmark's data folder (``data:<file>``)
or a list. A suite groups benchmarks and reports each and their mean. Nothing heavy is imported.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe import settings
from probe.data.splits import TASKS
from probe.errors import ProbeError
from probe.tomlfiles import pop_override, read_toml, unknown_key

#: ``bundled`` and ``recipe`` benchmarks are datasets of the same name (a recipe once `probe data get` built it)
READERS = ("bundled", "recipe", "imagenet-folder", "karpathy", "coco", "winoground", "clip-wds", "ulcc")
#: main metrics a benchmark may name: zero-shot top-1, zero-shot mean per-class recall (clip_benchmark's
#: balanced accuracy), the mean of image-to-text and text-to-image recall@1
MAIN_METRICS = ("top1", "mean_per_class_recall", "mean_recall@1")
SELF_CONTAINED = ("bundled", "recipe")


@dataclass(frozen=True)
class BenchmarkEntry:
    name: str
    task: tuple[str, ...]
    reader: str
    description: str
    data: str = ""
    split: str = "test"
    classnames: str | tuple[str, ...] = ""
    templates: str | tuple[str, ...] = ""
    get: str = ""
    #: keep only each image's first N captions (a retrieval protocol's choice, e.g. SAIL's five on COCO)
    captions_per_image: int | None = None
    #: the score a suite averages for this benchmark, as its source names it (:data:`MAIN_METRICS`)
    main_metric: str = ""
    #: why probe cannot score this benchmark as its source does; it is then refused, never approximated
    unsupported: str = ""
    #: the Hugging Face dataset repo ``probe data get --allow-download`` fetches its files from
    hub_repo: str = ""
    source: str = ""

    def data_path(self) -> Path:
        """Where the benchmark's files must be (``$PROBE_DATA``/data unless ``data`` is absolute)."""
        return settings.data_root() / Path(self.data).expanduser()

    def present(self) -> bool:
        if self.reader == "recipe":
            from probe.recipes import is_built

            return is_built(self.name)
        return self.reader == "bundled" or (self.data_path().exists() and not self.preparing_marker().exists())

    def data_folder(self) -> Path:
        """The folder the benchmark's files go in (the data path, or the folder of a data file)."""
        data = self.data_path()
        return data.parent if data.suffix else data

    def preparing_marker(self) -> Path:
        """A file beside the data folder that ``probe data get`` writes before preparing it and removes
        once the preparation is complete: while it is there, the data is not trusted as present."""
        folder = self.data_folder()
        return folder.parent / f".{folder.name}.preparing"

    def where(self) -> str:
        if self.reader == "recipe":
            from probe.recipes import recipe_dir

            return str(recipe_dir(self.name))
        return "bundled" if self.reader == "bundled" else str(self.data_path())


@dataclass(frozen=True)
class Suite:
    name: str
    benchmarks: tuple[str, ...]
    description: str
    source: str = ""


def _taken(name: str, path: Path | str, first: str) -> ProbeError:
    """A name defined twice: a user's file must not silently replace a built-in benchmark (or another
    file's), since records and tabs are named by it."""
    return ProbeError(f"{path}: benchmark or suite {name!r} is already defined in {first}; choose another name "
                      "(or say override = true in the table that means to replace it)")


def builtin_dir() -> Path:
    return settings.builtin_registry_dir() / "benchmarks"


#: the type each benchmark field takes in a catalogue file ("names": a string or a list of strings)
FIELD_TYPES = {"name": "string", "task": "names", "reader": "string", "description": "string", "data": "string",
                "split": "string", "classnames": "names", "templates": "names", "get": "string",
                "captions_per_image": "count", "main_metric": "string", "unsupported": "string",
                "hub_repo": "string"}


def _check_types(raw: dict[str, Any]) -> None:
    for key, kind in FIELD_TYPES.items():
        if key not in raw:
            continue
        value = raw[key]
        if kind == "count":
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        else:
            ok = isinstance(value, str) if kind == "string" else (
                isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)))
        if not ok or (key == "name" and not value.strip()):
            want = "a non-empty string" if key == "name" else "a string" if kind == "string" else \
                "a whole number of at least 1" if kind == "count" else "a string or a list of strings"
            raise ValueError(f"{key!r} must be {want}, got {value!r}")


def _tables(data: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    """``[[key]]`` tables of a catalogue file, or a one-line error when ``key`` holds something else."""
    tables = data.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ProbeError(f"{path}: {key!r} must be tables ([[{key}]] ...), got {tables!r}")
    return tables


def _suite(raw: dict[str, Any], path: Path) -> Suite:
    name, members = raw.get("name"), raw.get("benchmarks")
    if not isinstance(name, str) or not name.strip():
        raise ProbeError(f"{path}: a [[suite]] needs 'name', a non-empty string; got {name!r}")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise ProbeError(f"{path}: suite {name!r}: 'benchmarks' must be a non-empty list of benchmark names, "
                         f"got {members!r}")
    unknown = unknown_key(raw, ("name", "benchmarks", "description"))
    if unknown:
        raise ProbeError(f"{path}: suite {name!r}: {unknown}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ProbeError(f"{path}: suite {name!r}: 'description' must be a string, got {description!r}")
    return Suite(name, tuple(members), description, str(path))


def _entry(raw: dict[str, Any], source: str) -> BenchmarkEntry:
    _check_types(raw)
    fields = {f.name for f in dataclasses.fields(BenchmarkEntry)} - {"source"}
    unknown = unknown_key(raw, fields)
    if unknown:
        raise ValueError(unknown)
    missing = sorted({"name", "task", "reader", "description"} - set(raw))
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    tasks = tuple(raw["task"]) if isinstance(raw["task"], list) else (raw["task"],)
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise ValueError(f"task {bad[0] if bad else tasks!r} is not one of {', '.join(TASKS)}")
    if raw["reader"] not in READERS:
        raise ValueError(f"reader {raw['reader']!r} is not one of {', '.join(READERS)}")
    if raw.get("main_metric", "top1") not in MAIN_METRICS and not raw.get("unsupported"):  # a source's own name
        raise ValueError(f"main_metric {raw['main_metric']!r} is not one of {', '.join(MAIN_METRICS)} (or say why "
                         "probe does not score it: unsupported = \"...\")")
    if raw["reader"] not in SELF_CONTAINED and not raw.get("data"):
        raise ValueError("a benchmark that is not bundled needs 'data' (where its files must be)")
    # ulcc's reader takes its words from the pictures' own dictionaries: it needs templates only
    named = raw.get("classnames") or raw["reader"] == "ulcc"
    if "zeroshot" in tasks and raw["reader"] not in SELF_CONTAINED and not (named and raw.get("templates")):
        raise ValueError("a zero-shot classification benchmark needs 'classnames' and 'templates'")
    values = dict(raw, task=tasks)
    for key in ("classnames", "templates"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    return BenchmarkEntry(**values, source=source)


@dataclass
class Catalogue:
    benchmarks: dict[str, BenchmarkEntry]
    suites: dict[str, Suite]

    @classmethod
    def load(cls, extra: tuple[str | Path, ...] = ()) -> Catalogue:
        """The shipped catalogue, then files in ``$PROBE_BENCHMARKS`` (os.pathsep-separated), then ``extra``."""
        benchmarks: dict[str, BenchmarkEntry] = {}
        suites: dict[str, Suite] = {}
        users = settings.paths(settings.ENV_BENCHMARKS)
        for path in sorted(builtin_dir().glob("*.toml")) + users + [Path(p) for p in extra]:
            data = read_toml(path, "benchmark")
            for raw in _tables(data, "benchmark", path):
                raw, override = pop_override(raw, f"{path}: benchmark {raw.get('name', '?')!r}")
                try:
                    entry = _entry(raw, str(path))
                except ValueError as exc:
                    raise ProbeError(f"{path}: benchmark {raw.get('name', '?')!r}: {exc}") from None
                if entry.name in suites or (entry.name in benchmarks and not override):
                    raise _taken(entry.name, path, (benchmarks.get(entry.name) or suites[entry.name]).source)
                benchmarks[entry.name] = entry
            for raw in _tables(data, "suite", path):
                raw, override = pop_override(raw, f"{path}: suite {raw.get('name', '?')!r}")
                suite = _suite(raw, Path(path))
                if suite.name in benchmarks or (suite.name in suites and not override):
                    raise _taken(suite.name, path, (suites.get(suite.name) or benchmarks[suite.name]).source)
                suites[suite.name] = suite
            unknown = unknown_key(data, ("benchmark", "suite"), "top-level key")
            if unknown:
                raise ProbeError(f"{path}: {unknown} ([[benchmark]] or [[suite]] tables)")
        for suite in suites.values():
            for name in suite.benchmarks:
                if name not in benchmarks:
                    raise ProbeError(f"suite {suite.name!r} names unknown benchmark {name!r}")
        return cls(benchmarks, suites)

    def expand(self, names: tuple[str, ...] | list[str]) -> list[str]:
        """Benchmark names with suites replaced by their members, in order, once each."""
        out: list[str] = []
        for name in names:
            out += list(self.suites[name].benchmarks) if name in self.suites else [name]
        return list(dict.fromkeys(out))

    def unknown(self, name: str) -> ProbeError:
        known = sorted(self.benchmarks) + sorted(self.suites)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return ProbeError(f"unknown benchmark {name!r}; {hint}`probe benchmarks` lists them (or give a dataset as "
                          "kind:PATH)")
