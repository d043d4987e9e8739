"""The batch machinery of feature extraction: images read and decoded by data-loader workers (or on
the device), encoders run batch by batch (one batch ahead on a GPU), rows grouped into the chunks a
cache entry is written in.

Apart from the cache orchestration in :mod:`probe.features.extract`, so that whole-shard streaming
(:mod:`probe.features.shards`) and in-memory encoding (``probe tune``) use the same loop. torch is
imported inside the functions that run batches, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np


def _batches(positions: Sequence[int], size: int) -> list[list[int]]:
    return [list(positions[i:i + size]) for i in range(0, len(positions), size)]


class ImageInputs:
    """torch Dataset over image refs: (position, tensor or None, error or None); runs in workers."""

    def __init__(self, refs: Sequence[Any], positions: Sequence[int], transform: Any):  # a SpecTransform
        self.refs, self.positions, self.transform = refs, list(positions), transform

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        position = self.positions[i]
        try:
            return position, self.transform.from_ref(self.refs[position]), None
        except (OSError, ValueError) as exc:
            return position, None, f"{type(exc).__name__}: {exc}"


def collate_images(items):
    import torch

    good = [(p, t) for p, t, _ in items if t is not None]
    bad = [(p, err) for p, t, err in items if t is None]
    tensor = torch.stack([t for _, t in good]) if good else None
    return [p for p, _ in good], tensor, bad


def describe_input(item: Any) -> str:
    return getattr(item, "path", None) or (item.fingerprint() if hasattr(item, "fingerprint") else str(item))[:200]


def loader_transform(encoder: Any, decode: str) -> tuple[Any, Callable, Callable | None]:
    """``(transform, collate, finish)`` of an encoder's images: decoded in the data-loader workers
    (``finish`` None), or, with ``decode="device"``, JPEGs decoded on the encoder's device by
    ``finish(positions, items, device)`` in the main process."""
    from probe.encoders.preprocess import DeviceDecoding, SpecTransform

    transform = encoder.transform()
    if decode == "device" and isinstance(transform, SpecTransform):
        transform = DeviceDecoding.of(transform)
        return transform, transform.collate, transform.finish
    return transform, collate_images, None


def encoded_batches(encoder: Any, loader: Any, finish: Callable | None,
                    ) -> Iterator[tuple[list[int], np.ndarray | None, list[tuple[int, str]]]]:
    """``(positions, features or None, bad)`` of each loader batch, in order. On a GPU the encoder
    runs one batch ahead: batch i + 1 is taken from the loader (and decoded on the device by
    ``finish``) and its forward queued before batch i's features are read back, so the host's share
    of a batch overlaps the device's forward (:meth:`~probe.encoders.base.Encoder.encode_queued`).
    A CPU's forward is the host's own work: there each batch is done before the next is taken, so
    a chunk is written as soon as its last batch is encoded."""
    import torch

    def ready(item: tuple) -> tuple[list[int], np.ndarray | None, list[tuple[int, str]]]:
        ids, queued, bad = item
        return ids, None if queued is None else queued(), bad

    ahead = str(encoder.device).startswith("cuda")
    previous = None
    for ids, tensor, bad in loader:
        if finish is not None:
            ids, tensor, more_bad = finish(ids, tensor, str(encoder.device))
            bad = bad + more_bad
        with torch.inference_mode():
            queued = None if tensor is None else encoder.encode_queued(tensor)
        if previous is not None:
            yield ready(previous)
        previous = (ids, queued, bad)
        if not ahead:
            yield ready(previous)
            previous = None
    if previous is not None:
        yield ready(previous)


def image_chunks(encoder, refs, missing, ranges, batch_size, workers, bar, decode: str = "workers"):
    from torch.utils.data import DataLoader

    positions = [p for c in missing for p in ranges[c]]
    transform, collate, finish = loader_transform(encoder, decode)
    loader: Any = DataLoader(ImageInputs(refs, positions, transform), batch_size=batch_size,  # type: ignore[arg-type]
                        num_workers=workers, collate_fn=collate, shuffle=False,
                        pin_memory=str(encoder.device).startswith("cuda") and finish is None,
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    chunk_of = {p: c for c in missing for p in ranges[c]}
    current, ids, feats, bad = None, [], [], []
    for batch_ids, out, batch_bad in encoded_batches(encoder, loader, finish):
        chunk = chunk_of[batch_ids[0] if batch_ids else batch_bad[0][0]]  # a batch never spans chunks
        if current is not None and chunk != current:
            yield current, ids, _stack(feats, encoder.dim), bad
            ids, feats, bad = [], [], []
        current = chunk
        if out is not None:
            feats.append(out)
            ids.extend(batch_ids)
        bad.extend(batch_bad)
        bar.update(len(batch_ids) + len(batch_bad))
    if current is not None:
        yield current, ids, _stack(feats, encoder.dim), bad


def text_chunks(encoder, texts, missing, ranges, batch_size, workers, bar, decode: str = "workers"):
    for chunk in missing:
        ids, feats = [], []
        for batch in _batches(list(ranges[chunk]), batch_size):
            feats.append(encoder.encode([texts[i] for i in batch]))
            ids.extend(batch)
            bar.update(len(batch))
        yield chunk, ids, _stack(feats, encoder.dim), []


def _stack(parts: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)


class SilentBar:
    """A progress bar that shows nothing, for extraction with no terminal to draw on."""

    def update(self, n: int) -> None:
        pass


def encode_inputs(encoder: Any, inputs: Sequence[Any], batch_size: int, workers: int = 0) -> np.ndarray:
    """float32 features of every input, in memory and in order (NaN rows for images that cannot be
    read): extraction without a cache entry, for encoders whose weights change as they are used
    (``probe tune`` scores its held-out split after every epoch)."""
    n = len(inputs)
    out = np.full((n, encoder.dim), np.nan, dtype=np.float32)
    chunk_iter = image_chunks if encoder.spec.modality == "vision" else text_chunks
    for _, ids, feats, _bad in chunk_iter(encoder, inputs, [0], [range(n)], batch_size, workers, SilentBar()):
        out[np.asarray(ids, dtype=np.int64)] = feats
    return out


def bar_label(text: str, width: int = 32) -> str:
    """A progress bar's label cut to ``width`` characters (its middle elided), so the bar, its counts and
    its ETA still fit a 100-column terminal line."""
    return text if len(text) <= width else text[: width // 2 - 1] + "…" + text[-(width - width // 2):]
