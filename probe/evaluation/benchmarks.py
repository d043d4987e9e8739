"""Benchmarks by name: what fitted heads are scored on, zero-shot, after fitting on a corpus.

Names come from the catalogue (:mod:`probe.evaluation.catalogue`: bundled benchmarks, ImageNet,
COCO/Flickr Karpathy, Winoground, clip_benchmark's webdataset sets, suites of them); any dataset
probe can read (``kind:PATH``) is a benchmark too, scored on its ``test`` split with every task it
supports. A benchmark whose data is missing is refused before any work, saying where its files
must be and how to get them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from typing import Any

from probe.errors import ProbeError


class DataMissing(ProbeError):
    """A benchmark whose files are not where its catalogue entry says."""


class NotScored(ProbeError):
    """A benchmark probe does not score, because it cannot score it as its source does."""


@dataclass
class Benchmark:
    """A catalogue entry bound to its reader: a dataset (``info``, ``load``) that declares its tasks."""

    entry: Any
    dataset: Any

    @property
    def info(self) -> Any:
        """The reader's info under the catalogue's name: a benchmark is known by that name wherever its
        files are (a Karpathy reader would name it by its file's path, so the same data under two
        ``$PROBE_DATA`` roots would be two benchmarks); its content is in its features' cache keys."""
        info = self.dataset.info
        return replace(info, name=self.entry.name) if info.name != self.entry.name else info

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.entry.task

    def load(self, split: str) -> Any:
        data = self.dataset.load(split)
        return replace(data, dataset=self.entry.name) if data.dataset != self.entry.name else data


def benchmark_names(names: tuple[str, ...] | list[str]) -> list[str]:
    """``names`` with suites expanded (an unknown name is left for :func:`get_benchmark` to refuse)."""
    from probe.evaluation.catalogue import Catalogue

    return Catalogue.load().expand(names)


def get_benchmarks(names: tuple[str, ...] | list[str]) -> list[Any]:
    """The datasets behind ``names`` (suites expanded), or one error naming every one that cannot be
    scored here and why (data missing, not scored by probe), so a suite's gaps are listed at once,
    never skipped."""
    chosen, problems = [], []
    for name in benchmark_names(names):
        try:
            chosen.append(get_benchmark(name))
        except ProbeError as exc:
            problems.append((name, exc))
    if len(problems) == 1:
        raise problems[0][1]
    if problems:
        missing = [name for name, exc in problems if isinstance(exc, DataMissing)]
        unscored = [name for name, exc in problems if isinstance(exc, NotScored)]
        other = [str(exc) for _, exc in problems if not isinstance(exc, (DataMissing, NotScored))]
        parts = ([f"{len(missing)} have no data here ({', '.join(missing)})"] if missing else []) + \
                ([f"{len(unscored)} are not scored by probe ({', '.join(unscored)})"] if unscored else []) + other
        raise ProbeError(f"{len(problems)} benchmarks cannot be scored here: {'; '.join(parts)}; `probe benchmarks "
                         f"{' '.join(names)}` says how to get each and why")
    return chosen


def get_benchmark(name: str) -> Any:
    """The dataset behind benchmark ``name`` (a catalogue entry or ``kind:PATH``)."""
    from probe.data import LOCAL_KINDS, get_dataset
    from probe.evaluation.catalogue import Catalogue

    kind, sep, _ = name.partition(":")
    if sep and kind in LOCAL_KINDS:
        return get_dataset(name)
    catalogue = Catalogue.load()
    if name not in catalogue.benchmarks:
        raise catalogue.unknown(name)
    entry = catalogue.benchmarks[name]
    if entry.unsupported:
        raise NotScored(f"benchmark {name!r} is not scored by probe: {entry.unsupported}")
    if entry.reader in ("bundled", "recipe"):
        return Benchmark(entry, get_dataset(name))  # a recipe not built here says how to build it
    if entry.preparing_marker().exists():
        raise ProbeError(f"benchmark {name!r}: the preparation of {entry.data_folder()} did not finish; run "
                         f"`probe data get {name}` again")
    if not entry.present():
        raise DataMissing(f"benchmark {name!r}: its data is expected at {entry.data_path()} ({entry.get}); put it "
                         "there or point $PROBE_DATA at the folder holding it")
    return Benchmark(entry, _reader(entry))


def _reader(entry: Any) -> Any:
    from probe.data import published

    path = entry.data_path()
    if entry.reader == "karpathy":
        from probe.data.local import KarpathyDataset

        return KarpathyDataset(str(path))
    if entry.reader == "coco":
        from probe.data.coco import CocoCaptionsDataset

        return CocoCaptionsDataset(str(path), entry.name, entry.captions_per_image)
    if entry.reader == "winoground":
        return published.Winoground(entry.name, path, entry.description)
    if entry.reader == "ulcc":
        return published.Ulcc(entry.name, path, prompt_templates(entry), entry.description)
    if entry.reader == "clip-wds" and "retrieval" in entry.task:
        return published.ClipRetrievalWebDataset(entry.name, path, entry.split, entry.description)
    classnames, templates = class_names(entry), prompt_templates(entry)
    if entry.reader == "imagenet-folder":
        return published.ImageNetFolder(entry.name, path, "val", classnames, templates, entry.description)
    return published.ClipWebDataset(entry.name, path, entry.split, classnames, templates, entry.description)


def _listed(entry: Any, field: str, json_file: str, data_file: str) -> list[str]:
    source = getattr(entry, field)
    if isinstance(source, tuple):
        return list(source)
    kind, _, key = source.partition(":")
    if kind == "data":
        file = entry.data_path() / (key or data_file)
        if not file.is_file():
            raise ProbeError(f"benchmark {entry.name!r} has no {field}: {file} is missing")
        try:
            lines = [line.strip() for line in file.read_bytes().decode("utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as exc:
            raise ProbeError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        if not lines:  # never silently replaced by default templates or left with no classes
            raise ProbeError(f"{file}: empty; benchmark {entry.name!r} needs its {field}, one per line")
        return lines
    if kind == "clip_benchmark":
        table = clip_benchmark_table(json_file)
        if key not in table:
            raise ProbeError(f"benchmark {entry.name!r} has no {field}: clip_benchmark ships none for {key!r}")
        return list(table[key])
    raise ProbeError(f"benchmark {entry.name!r}: {field} {source!r} is not clip_benchmark:<key>, data:<file> or a list")


def class_names(entry: Any) -> list[str]:
    return _listed(entry, "classnames", "en_classnames.json", "classnames.txt")


def prompt_templates(entry: Any) -> list[str]:
    """The benchmark's templates, each checked (``{}`` or ``{c}`` for the class, balanced braces)."""
    from probe.metrics.zeroshot import template_problem

    templates = _listed(entry, "templates", "en_zeroshot_classification_templates.json",
                        "zeroshot_classification_templates.txt")
    for i, template in enumerate(templates, start=1):
        why = template_problem(template)
        if why:
            raise ProbeError(f"benchmark {entry.name!r} ({entry.templates}): template {i} {template!r}: {why}")
    return templates


@functools.cache
def clip_benchmark_table(file: str) -> dict[str, list[str]]:
    """One of the metadata files clip_benchmark ships (class names, prompt templates), read as data."""
    from importlib import resources

    try:
        return json.loads((resources.files("clip_benchmark") / "datasets" / file).read_text(encoding="utf-8"))
    except ModuleNotFoundError:
        raise ProbeError("class names and templates come from clip_benchmark's metadata: "
                         "`pip install clip-benchmark`") from None
