"""Which hidden layer each side of a pair is aligned at (``probe run --layer``): a block number, the
last block, or the layer pair a recorded layer search (``probe select --layers``) found most similar.

A side read at a hidden layer is an encoder variant of its own (``<name>@<layer>``), so its records,
saved models and cache entries are apart from the entry's own output and its identity names the layer:
a run at the last block never stands in for a run at the output, which ends in the entry's pooling
and final norm.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probe.errors import ProbeError

#: what --layer takes besides a block number
NAMED = ("last", "best")


def check_layer_choice(which: str | int | None, option: str) -> str | None:
    """``which`` as text if it is a block number (1 or more), ``last`` or ``best``; one line otherwise."""
    if which is None:
        return None
    text = str(which).strip()
    if text in NAMED or (text.isdigit() and int(text) >= 1):
        return text
    raise ProbeError(f"{option} {which!r} is not a block number (1 or more), last or best")


def layered_pairs(items: Sequence[tuple[Any, ...]], vision: str | None, text: str | None, dataset: str,
                  results_dir: Path, allow_download: bool | None) -> list[tuple[Any, ...]]:
    """``items`` with each side at its chosen layer (None: the entry's output). ``best`` reads the newest
    layer search of that pair on ``dataset`` in ``results_dir``; a pair without one is one line."""
    from probe.features.layers import layer_variants, readable_layers
    from probe.records.store import iter_records

    if vision is None and text is None:
        return list(items)
    searches = [s.record for s in iter_records(results_dir, "similarity")  # read once for every pair
                if s.record.ok and s.record.layers and s.record.dataset == dataset] if "best" in (vision, text) else []
    layers: dict[str, list[tuple[int, int]]] = {}  # each encoder loaded once to count its layers
    out: list[tuple[Any, ...]] = []
    for v, t in items:
        best = _searched_best(searches, v.name, t.name, dataset, results_dir) if "best" in (vision, text) else None
        sides = []
        for spec, which, index in ((v, vision, 0), (t, text, 1)):
            if which is None:
                sides.append(spec)
                continue
            layer = str(best[index]) if which == "best" and best is not None else "last:1" if which == "last" else which
            if spec.name not in layers:
                layers[spec.name] = readable_layers(spec, allow_download)
            sides.append(layer_variants(spec, layer, available=layers[spec.name])[0])
        out.append((sides[0], sides[1]))
    return out


def _searched_best(searches: list[Any], vision: str, text: str, dataset: str, results_dir: Path) -> tuple[int, int]:
    """The best (vision layer, text layer) of the newest of ``searches`` (successful layer searches on
    ``dataset``) that compared this pair."""
    found = [r for r in searches if r.vision.name == vision and r.text.name == text]
    if not found:
        raise ProbeError(f"--layer best needs a layer search of {vision} x {text} on {dataset}: run probe select "
                         f"--layers all --dataset {dataset} --results {results_dir} first")
    newest = max(found, key=lambda record: record.created)
    best = newest.layers["best"]
    return int(best[0]), int(best[1])
