"""Images of webdataset shards encoded by streaming each shard in order with the webdataset library.

Reading a shard front to back is how shards are meant to be read (and the only way for ``pipe:``
or object-store URLs): DataLoader workers each take whole shards (webdataset's ``split_by_worker``),
decode only the members the split needs, and the cache is written one chunk per shard, so a killed
extraction resumes at shard grain. An image that does not decode is skipped and listed, as for any
other reader; members a cut-short shard never delivered are listed as missing from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset


def _tar_bytes(size: int) -> int:
    """What a member occupies in a tar: its 512-byte header and its data in whole 512-byte blocks."""
    return 512 + -(-size // 512) * 512


def shard_ranges(refs: Sequence[Any], min_density: float = 0.3) -> list[range] | None:
    """One row range per shard when every input is an image inside a tar shard, each shard's inputs
    are contiguous (as :class:`~probe.data.local.WebDataset` lists them), and the wanted images make
    at least ``min_density`` of the bytes their shards span (headers included; captions lie between
    them); else None (read each image by its
    offset). A split's own shards are streamed; a small held-out slice of them is not worth reading
    every shard front to back for.
    (This module imports torch: import it where extraction runs, not at start-up.)"""
    from probe.data.local import TarImage

    if not refs or not all(isinstance(ref, TarImage) and ref.offset >= 0 for ref in refs):
        return None
    ranges, start, wanted, spanned = [], 0, 0, 0
    seen: set[str] = set()
    for i in range(1, len(refs) + 1):
        if i == len(refs) or refs[i].shard != refs[start].shard:
            if refs[start].shard in seen:
                return None  # a shard's inputs are not contiguous
            seen.add(refs[start].shard)
            group = refs[start:i]
            wanted += sum(_tar_bytes(ref.size) for ref in group)
            spanned += max(ref.offset + ref.size for ref in group) - min(ref.offset for ref in group)
            ranges.append(range(start, i))
            start = i
    return ranges if wanted >= min_density * spanned else None


class _ShardStream(IterableDataset):
    """An iterable torch dataset: ``(position, tensor or None, error or None)`` for every wanted
    member of the given shards, shards split among DataLoader workers."""

    def __init__(self, shards: list[str], wanted: dict[tuple[str, str], int], transform: Any):  # a SpecTransform
        super().__init__()
        self.shards, self.wanted, self.transform = shards, wanted, transform

    def __iter__(self) -> Iterator[tuple[int, Any, str | None]]:
        import webdataset

        def note(exc: Exception) -> bool:  # a shard cut short: keep what it delivered, go on
            return True

        stream = webdataset.WebDataset(self.shards, handler=note, shardshuffle=False, empty_check=False,
                                       nodesplitter=None, workersplitter=webdataset.split_by_worker)
        for sample in stream:
            shard, key = sample["__url__"], sample["__key__"]
            for ext, data in sample.items():
                position = self.wanted.get((shard, f"{key}.{ext}"))
                if position is None or not isinstance(data, bytes):
                    continue
                try:
                    yield position, self.transform.from_bytes(data, f"{shard}:{key}.{ext}"), None
                except (OSError, ValueError) as exc:
                    yield position, None, f"{type(exc).__name__}: {exc}"


def shard_loader(encoder: Any, refs: Sequence[Any], missing: list[int], ranges: list[range], batch_size: int,
                 workers: int, decode: str = "workers") -> tuple[Any, Any]:
    """``(loader, finish)``: the DataLoader streaming the missing chunks' shards in batches of
    ``(positions, uint8 pixels or the device decoder's items, bad)``, and the device decoder's
    ``finish`` (None when the workers decode). The benchmarks time it alone, without the encoder."""
    from torch.utils.data import DataLoader

    from probe.features.batches import loader_transform

    wanted = {(refs[p].shard, refs[p].member): p for c in missing for p in ranges[c]}
    shards = [refs[ranges[c].start].shard for c in missing]
    transform, collate, finish = loader_transform(encoder, decode)
    loader: Any = DataLoader(_ShardStream(shards, wanted, transform),
                             batch_size=batch_size, num_workers=min(workers, len(shards)), collate_fn=collate,
                             pin_memory=str(encoder.device).startswith("cuda") and finish is None,
                             prefetch_factor=4 if workers else None)
    return loader, finish


def shard_chunks(encoder: Any, refs: Sequence[Any], missing: list[int], ranges: list[range], batch_size: int,
                 workers: int, bar: Any, decode: str = "workers",
                 ) -> Iterator[tuple[int, list[int], np.ndarray, list[tuple[int, str]]]]:
    """``(chunk, ids, features, bad)`` for each missing chunk (one shard each), streamed."""
    from probe.features.batches import encoded_batches

    chunk_of = {p: c for c in missing for p in ranges[c]}
    loader, finish = shard_loader(encoder, refs, missing, ranges, batch_size, workers, decode)
    pending: dict[int, tuple[list[int], list[np.ndarray], list[tuple[int, str]]]] = {c: ([], [], []) for c in missing}

    def finished(chunk: int):
        ids, feats, bad = pending.pop(chunk)
        parts = np.concatenate(feats) if feats else np.zeros((0, encoder.dim), dtype=np.float32)
        return chunk, ids, parts, bad

    for batch_ids, out, batch_bad in encoded_batches(encoder, loader, finish):
        if out is not None:
            chunks = np.array([chunk_of[p] for p in batch_ids])
            for chunk in np.unique(chunks):  # a batch may end one worker's shard and start its next
                rows = np.flatnonzero(chunks == chunk)
                pending[int(chunk)][0].extend(batch_ids[r] for r in rows)
                pending[int(chunk)][1].append(out[rows])
        for position, error in batch_bad:
            pending[chunk_of[position]][2].append((position, error))
        bar.update(len(batch_ids) + len(batch_bad))
        for chunk in {chunk_of[p] for p in (*batch_ids, *(p for p, _ in batch_bad))}:
            ids, _, bad = pending[chunk]
            if len(ids) + len(bad) == len(ranges[chunk]):
                yield finished(chunk)
    for chunk in list(pending):  # what a cut-short shard never delivered
        ids, _, bad = pending[chunk]
        got = set(ids) | {p for p, _ in bad}
        lost = [p for p in ranges[chunk] if p not in got]
        bad.extend((p, f"not delivered by its shard {refs[p].shard} (cut short?)") for p in lost)
        bar.update(len(lost))
        yield finished(chunk)
