"""Several hidden layers of one encoder from one forward pass, each cached under a key that names it.

A layer search reads an encoder at every layer it compares. Reading each layer by its own forward
pass costs L passes; here the layers still missing from the cache are read together by one variant
(:meth:`~probe.encoder_spec.EncoderSpec.at_layers`: every layer's pooled features side by side),
extracted through the ordinary cache (chunked, resumable, locked), then split column by column into
each layer's own entry, exactly what that layer's own extraction would have written, and the wide
entry is removed. A layer already cached is not computed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np

from probe.encoder_spec import EncoderSpec
from probe.features.options import ExtractOptions

log = logging.getLogger("probe")

#: rows copied from the wide entry at a time (bounded memory however long the split)
_BLOCK = 4096


def extract_layers(specs: Sequence[EncoderSpec], data: Any, options: ExtractOptions) -> list[EncoderSpec]:
    """Compute, in one forward pass over ``data``, the entries of ``specs`` (one entry at several layers,
    :meth:`~probe.encoder_spec.EncoderSpec.at_layer`) the cache lacks; the layers computed."""
    from probe.features import is_cached, split_features

    missing = [spec for spec in specs if not is_cached(spec, data, options)]
    if len(missing) < 2:  # one layer's own extraction is one pass already
        return []
    bases = {spec.name.rpartition("@")[0] for spec in missing}
    if len(bases) != 1 or any(spec.layer is None for spec in missing):
        raise ValueError(f"extract_layers takes one entry at several layers, got {sorted(s.name for s in missing)}")
    plain = dataclasses.replace(missing[0], name=next(iter(bases)), layer=None)
    wide = plain.at_layers([int(s.layer or 0) for s in missing], [s.embed_dim for s in missing])
    made = split_features(wide, data, options)
    offset = 0
    by_layer = {s.layer: s for s in missing}
    for layer in wide.layers:
        spec = by_layer[layer]
        _write_layer_entry(made, spec, slice(offset, offset + spec.embed_dim), data, options)
        offset += spec.embed_dim
    shutil.rmtree(made.path, ignore_errors=True)  # every layer now has its own entry
    for folder in (made.path.parent, made.path.parent.parent):  # the wide variant's dataset and model folders
        with contextlib.suppress(OSError):
            folder.rmdir()
    return missing


def prefetch_layers(specs: Sequence[EncoderSpec], plan: Any, options: ExtractOptions, roles: Sequence[str]) -> int:
    """:func:`extract_layers` for the splits ``roles`` of ``plan`` read (their images or captions, not
    prompts), so each layer's own read afterwards comes from the cache; the entries computed."""
    from probe.features.roles import feature_requests

    computed = 0
    for request in feature_requests(specs[0], plan, roles, with_prompts=False):
        computed += len(extract_layers(specs, request.source(specs[0], options, plan.fit), options))
    return computed


def _write_layer_entry(wide: Any, spec: EncoderSpec, columns: slice, data: Any, options: ExtractOptions) -> None:
    """``spec``'s entry from ``columns`` of the wide entry: the same rows, index, skipped inputs and
    provenance, under ``spec``'s own key (written last, so a half-written entry is never read)."""
    from probe.features import split_inputs
    from probe.features.extract import entry_for
    from probe.io import write_json, write_npy, write_npy_parts

    _, content, name, fit_texts = split_inputs(spec, data)
    entry, key, dtype = entry_for(spec, data.dataset, data.split, name, content, options, fit_texts)
    with entry.lock():
        if entry.read(verify=False) is not None:
            return
        entry.dir.mkdir(parents=True, exist_ok=True)
        rows = wide.features
        n = len(rows)
        zero_rows = 0

        def blocks():
            nonlocal zero_rows
            for start in range(0, n, _BLOCK):
                block = np.asarray(rows[start:start + _BLOCK, columns])
                zero_rows += int((~block.any(axis=1)).sum())
                yield block

        write_npy_parts(entry.dir / "features.npy", blocks(), (n, spec.embed_dim), dtype)
        write_npy(entry.dir / "index.npy", np.asarray(wide.index))
        meta = {**wide.meta, "key": key, "model": spec.name, "spec": spec.to_dict(), "dtype": dtype,
                "shape": [n, spec.embed_dim], "zero_rows": zero_rows, "files": entry.file_records()}
        meta["extraction"] = {**(wide.meta.get("extraction") or {}), "pass": wide.meta["model"]}
        write_json(entry.meta_path, meta)


def readable_layers(spec: Any, allow_download: bool | None = None) -> list[tuple[int, int]]:
    """``(layer, width)`` of every hidden layer of ``spec``: its model is loaded once on the CPU to count
    and measure them; an encoder without readable layers is one line."""
    from probe.encoders import load_encoder
    from probe.encoders.layers import encoder_layers

    return encoder_layers(load_encoder(spec, device="cpu", allow_download=allow_download))


def layer_variants(spec: Any, which: str, allow_download: bool | None = None,
                   available: list[tuple[int, int]] | None = None) -> list[Any]:
    """``spec`` at each layer ``which`` names (``all``, ``last:K``, ``2,4``) among ``available`` (default:
    :func:`readable_layers`); a layer it lacks is one line."""
    from probe.encoders.layers import chosen_layers

    available = readable_layers(spec, allow_download) if available is None else available
    return [spec.at_layer(layer, width) for layer, width in chosen_layers(spec, available, which)]
