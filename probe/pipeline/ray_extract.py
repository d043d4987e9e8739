"""``probe extract --executor ray``: an entry's missing chunks computed by a Ray Data actor pool.

Each actor loads the encoder once (fitted on the corpus where its family needs that) and writes
whole chunks into the shared cache, exactly the files the local executor writes
(:func:`probe.features.extract.compute_chunks`). The driver then assembles the entry as it would
locally, without loading the encoder. Chunk files are written atomically and checked when read,
so a killed driver or worker leaves finished chunks that the next run keeps, and missing ones that
it computes: the run is resumable and idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class _ChunkWriter:
    """A Ray Data actor: one encoder, any number of the entry's chunks."""

    def __init__(self, spec: Any, inputs: Sequence[Any], ranges: list[range], by_shard: bool, options: Any,
                 dtype: str, entry: Any, fit_texts: Any):
        from probe.encoders import load_encoder
        from probe.features.extract import prepared_encoder

        self.spec, self.inputs, self.ranges, self.by_shard = spec, inputs, ranges, by_shard
        self.options, self.dtype, self.entry = options, dtype, entry
        self.encoder = prepared_encoder(
            lambda: load_encoder(spec, device=options.device, allow_download=options.allow_download), spec, fit_texts)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from probe.features.batches import SilentBar
        from probe.features.extract import compute_chunks

        chunks = [int(c) for c in batch["chunk"]]
        written = list(compute_chunks(self.entry, self.spec, self.inputs, chunks, self.ranges, self.by_shard,
                                      self.encoder, self.options, self.dtype, SilentBar()))
        return {"chunk": np.asarray(written, dtype=np.int64),
                "rows": np.asarray([len(self.ranges[c]) for c in written], dtype=np.int64)}


def ray_split_features(spec: Any, data: Any, options: Any, fit_data: Any = None, concurrency: int | None = None,
                       stats: Any = None):
    """:func:`probe.features.split_features` with the missing chunks computed on Ray.

    The driver shows the inputs encoded so far and their rate (tqdm on a terminal), counting each
    chunk as an actor finishes it; ``stats`` (an :class:`~probe.features.cache.ExtractionStats`)
    receives the chunks reused and computed, the rows computed and the seconds they took."""
    import dataclasses
    import time

    import ray
    from tqdm.auto import tqdm

    from probe.features import ExtractionStats, split_features, split_inputs
    from probe.features.extract import cached, chunk_plan, entry_for

    stats = stats if stats is not None else ExtractionStats()
    inputs, content, name, fit_texts = split_inputs(spec, data, fit_data)
    found = cached(spec, data.dataset, data.split, name, content, options, fit_texts)
    if found is not None:  # the local executor would return it as it is
        stats.from_cache = True
        return found
    entry, _, dtype = entry_for(spec, data.dataset, data.split, name, content, options, fit_texts)
    ranges, by_shard = chunk_plan(spec, inputs, options)
    missing = [c for c in range(len(ranges)) if entry.read_chunk(c, ranges[c], spec.embed_dim) is None]
    stats.reused_chunks = len(ranges) - len(missing)
    if missing:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        workers = concurrency or max(1, min(len(missing), int(ray.cluster_resources().get("GPU" if gpus else "CPU", 1))))
        # the local DataLoader's workers would fork inside each actor: one process per actor is Ray's job
        actor_options = dataclasses.replace(options, workers=0, progress=False)
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours counts inputs, not chunks
        chunks = ray.data.from_items([{"chunk": c} for c in missing]).map_batches(
            _ChunkWriter, batch_size=1, concurrency=workers, num_gpus=gpus, num_cpus=1,
            fn_constructor_kwargs={"spec": spec, "inputs": inputs, "ranges": ranges, "by_shard": by_shard,
                                   "options": actor_options, "dtype": dtype, "entry": entry,
                                   "fit_texts": fit_texts})
        written: list[int] = []
        started = time.perf_counter()
        with tqdm(total=sum(len(ranges[c]) for c in missing), unit=" " + name, leave=False,
                  desc=f"{spec.name} {data.dataset}/{data.split} on Ray ({workers} actor(s))",
                  disable=None if options.progress else True) as bar:
            for row in chunks.iter_rows():  # rows arrive as actors finish chunks
                written.append(int(row["chunk"]))
                stats.computed_rows += int(row["rows"])
                bar.update(int(row["rows"]))
        stats.compute_seconds = time.perf_counter() - started
        stats.computed_chunks = len(written)
        if sorted(written) != missing:
            raise RuntimeError(f"Ray wrote {len(written)} of the {len(missing)} missing chunks of {entry.dir}")
    return split_features(spec, data, options, fit_data=fit_data)  # assembled here, the encoder not loaded
