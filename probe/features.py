"""Feature extraction into a content-addressed, atomic, resumable on-disk cache.

Each (encoder, dataset, split, input set) is computed once and reused by every pair, so a V x T
sweep costs V + T forward passes. An entry lives in its own folder:

    <cache>/<model>/<dataset>/<split>.<set>.<key>/
        chunks/00000.npz ...   finished chunks (features + input ids), each written atomically
        features.npy, index.npy, meta.json   the consolidated entry; meta.json is written last

The key hashes everything that changes the numbers: the spec's weights, revision, preprocessing
and pooling, the dataset's content fingerprint, the storage dtype and FORMAT_VERSION. A killed run
resumes from its last finished chunk; a lock keeps two runs on one key from clobbering each other;
a truncated or mismatched entry is detected (sizes and sha256 in meta.json) and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe import __version__
from probe.data.base import SplitData, text_fingerprint
from probe.errors import ProbeError
from probe.io import sha256_file, write_json, write_npy, write_npz
from probe.registry import EncoderSpec

FORMAT_VERSION = 1
ENV_CACHE = "PROBE_CACHE_DIR"
DTYPES = ("float16", "float32")
ON_BAD_IMAGE = ("skip", "fail")
#: Spec fields that cannot change the features (descriptions, licences, published scores).
_DESCRIPTIVE = {"license", "reference", "notes", "params_m", "imagenet_knn", "imagenet_linear", "mteb_avg", "objective"}
log = logging.getLogger("probe.features")


def needs_fit_corpus(spec: EncoderSpec) -> bool:
    """Encoders fitted on the dataset's train captions (the TF-IDF control) before encoding."""
    return spec.modality == "text" and spec.weights == "tfidf-svd"


def default_cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE, Path("results") / "features"))


@dataclass
class FeatureSet:
    """Cached features: row ``i`` of ``features`` belongs to input ``index[i]`` (skipped inputs absent)."""

    features: np.ndarray
    index: np.ndarray
    meta: dict[str, Any]
    path: Path

    def dense(self, n: int) -> np.ndarray:
        """float32 [n, D] aligned with the inputs; rows of skipped inputs are NaN."""
        out = np.full((n, self.features.shape[1]), np.nan, dtype=np.float32)
        out[self.index] = self.features
        return out


@dataclass
class ExtractionStats:
    computed_chunks: int = 0
    reused_chunks: int = 0
    from_cache: bool = False


def spec_fingerprint(spec: EncoderSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.to_dict().items() if k not in _DESCRIPTIVE}


def cache_key(spec: EncoderSpec, dataset: str, split: str, input_set: str, content: str, dtype: str,
              extra: dict[str, Any] | None = None) -> str:
    payload = {"spec": spec_fingerprint(spec), "dataset": dataset, "split": split, "set": input_set,
               "content": content, "dtype": dtype, "format": FORMAT_VERSION, "extra": extra or {}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_")[:80] or "x"


class CacheEntry:
    """One cache folder; every method assumes the caller holds the entry's lock for writes."""

    def __init__(self, root: Path, spec: EncoderSpec, dataset: str, split: str, input_set: str, key: str):
        self.dir = root / _safe(spec.name) / _safe(dataset) / f"{_safe(split)}.{_safe(input_set)}.{key}"
        self.chunks = self.dir / "chunks"

    @property
    def meta_path(self) -> Path:
        return self.dir / "meta.json"

    def lock(self):
        from filelock import FileLock

        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.dir / ".lock"))

    def read(self, verify: bool = True) -> FeatureSet | None:
        """The finished entry, or None if absent or damaged (a damaged entry is removed)."""
        if not self.meta_path.is_file():
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
            files = {name: self.dir / name for name in ("features.npy", "index.npy")}
            for name, path in files.items():
                if path.stat().st_size != meta["files"][name]["bytes"]:
                    raise ValueError(f"{name} has the wrong size")
                if verify and sha256_file(path) != meta["files"][name]["sha256"]:
                    raise ValueError(f"{name} does not match its checksum")
            features = np.load(files["features.npy"], allow_pickle=False)
            index = np.load(files["index.npy"], allow_pickle=False)
            if list(features.shape) != meta["shape"] or str(features.dtype) != meta["dtype"]:
                raise ValueError("shape or dtype differs from meta.json")
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            log.warning("cache entry %s is damaged (%s); recomputing", self.dir, exc)
            self.discard_final()
            return None
        return FeatureSet(features, index, meta, self.dir)

    def discard_final(self) -> None:
        for name in ("meta.json", "features.npy", "index.npy"):
            (self.dir / name).unlink(missing_ok=True)

    def chunk_path(self, chunk: int) -> Path:
        return self.chunks / f"{chunk:05d}.npz"

    def read_chunk(self, chunk: int, rows: range, dim: int) -> dict[str, np.ndarray] | None:
        path = self.chunk_path(chunk)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                out = {k: data[k] for k in ("features", "ids", "bad")}
            ok = (out["features"].ndim == 2 and out["features"].shape[1] == dim
                  and len(out["ids"]) == len(out["features"])
                  and set(out["ids"].tolist()) | set(out["bad"].tolist()) == set(rows))
            if not ok:
                raise ValueError("chunk content does not cover its rows")
            return out
        except Exception as exc:  # a truncated zip raises several kinds of errors
            log.warning("chunk %s is damaged (%s); recomputing it", path, exc)
            path.unlink(missing_ok=True)
            return None


def _batches(positions: Sequence[int], size: int) -> list[list[int]]:
    return [list(positions[i:i + size]) for i in range(0, len(positions), size)]


class _ImageInputs:
    """torch Dataset over image refs: (position, tensor or None, error or None); runs in workers."""

    def __init__(self, refs: Sequence[Any], positions: Sequence[int], transform: Callable[[Any], Any]):
        self.refs, self.positions, self.transform = refs, list(positions), transform

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        position = self.positions[i]
        try:
            return position, self.transform(self.refs[position].load()), None
        except (OSError, ValueError) as exc:
            return position, None, f"{type(exc).__name__}: {exc}"


def _collate(items):
    import torch

    good = [(p, t) for p, t, _ in items if t is not None]
    bad = [(p, err) for p, t, err in items if t is None]
    tensor = torch.stack([t for _, t in good]) if good else None
    return [p for p, _ in good], tensor, bad


def extract(
    spec: EncoderSpec,
    dataset: str,
    split: str,
    input_set: str,
    inputs: Sequence[Any],
    content: str,
    *,
    load_encoder: Callable[[], Any],
    cache_dir: Path | None = None,
    batch_size: int = 64,
    workers: int = 2,
    dtype: str = "float32",
    on_bad_image: str = "skip",
    chunk_batches: int = 4,
    fit_texts: Sequence[str] | None = None,
    progress: bool = True,
    verify: bool = True,
    stats: ExtractionStats | None = None,
) -> FeatureSet:
    """Features of ``inputs`` (image refs for vision specs, strings for text specs), from cache or computed.

    ``load_encoder`` is called only on a miss, so a warm cache never loads weights.
    """
    if dtype not in DTYPES:
        raise ProbeError(f"feature dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if on_bad_image not in ON_BAD_IMAGE:
        raise ProbeError(f"--on-bad-image {on_bad_image!r} is not one of {', '.join(ON_BAD_IMAGE)}")
    if batch_size < 1:
        raise ProbeError(f"batch size must be at least 1, got {batch_size}")
    if not len(inputs):
        raise ProbeError(f"dataset {dataset!r} split {split!r} has no {input_set} to encode")
    stats = stats or ExtractionStats()
    extra = {"fit": text_fingerprint(fit_texts)} if fit_texts is not None else {}
    key = cache_key(spec, dataset, split, input_set, content, dtype, extra)
    entry = CacheEntry(cache_dir or default_cache_dir(), spec, dataset, split, input_set, key)
    found = entry.read(verify=verify)
    if found is not None:
        stats.from_cache = True
        return found
    from filelock import Timeout

    lock = entry.lock()
    try:
        lock.acquire(timeout=1)
    except Timeout:
        log.warning("another run is extracting %s; waiting for it", entry.dir)
        lock.acquire()
    try:
        found = entry.read(verify=verify)
        if found is not None:
            stats.from_cache = True
            return found
        return _extract_locked(entry, spec, dataset, split, input_set, inputs, content, key, load_encoder,
                               batch_size, workers, dtype, on_bad_image, chunk_batches, fit_texts, progress, stats)
    finally:
        lock.release()


def _extract_locked(entry, spec, dataset, split, input_set, inputs, content, key, load_encoder, batch_size,
                    workers, dtype, on_bad_image, chunk_batches, fit_texts, progress, stats) -> FeatureSet:
    from tqdm.auto import tqdm

    n = len(inputs)
    chunk_size = batch_size * max(1, chunk_batches)
    n_chunks = (n + chunk_size - 1) // chunk_size
    ranges = [range(c * chunk_size, min(n, (c + 1) * chunk_size)) for c in range(n_chunks)]
    done = {c: entry.read_chunk(c, ranges[c], spec.embed_dim) for c in range(n_chunks)}
    missing = [c for c, data in done.items() if data is None]
    stats.reused_chunks = n_chunks - len(missing)
    started = time.time()
    if missing:
        encoder = load_encoder()
        if getattr(encoder, "needs_fit", False):
            if fit_texts is None:
                raise ProbeError(f"model {spec.name!r} must be fitted on a corpus; none was given")
            encoder.fit(fit_texts)
        entry.chunks.mkdir(parents=True, exist_ok=True)
        # Bars only on a terminal (tqdm's disable=None): logs and captured stderr stay one clean
        # line per message; `with` clears the bar even when a chunk fails.
        with tqdm(total=n, initial=n - sum(len(ranges[c]) for c in missing), unit=" " + input_set,
                  desc=f"{spec.name} {dataset}/{split}", disable=None if progress else True, leave=False) as bar:
            chunk_iter = _image_chunks if spec.modality == "vision" else _text_chunks
            for chunk, ids, feats, bad in chunk_iter(encoder, inputs, missing, ranges, batch_size, workers, bar):
                if bad and on_bad_image == "fail":
                    position, error = bad[0]
                    raise ProbeError(f"bad image #{position} ({_describe(inputs[position])}): {error}")
                write_npz(entry.chunk_path(chunk), features=feats.astype(dtype),
                          ids=np.asarray(ids, dtype=np.int64), bad=np.asarray([p for p, _ in bad], dtype=np.int64),
                          errors=np.asarray([e for _, e in bad] or [""], dtype=str))
                done[chunk] = entry.read_chunk(chunk, ranges[chunk], spec.embed_dim)
                stats.computed_chunks += 1
    parts = [done[c] for c in range(n_chunks)]
    if any(p is None for p in parts):
        raise ProbeError(f"extraction of {entry.dir} did not finish; run again to resume")
    features = np.concatenate([p["features"] for p in parts]).astype(dtype)
    index = np.concatenate([p["ids"] for p in parts]).astype(np.int64)
    skipped = sorted(int(b) for p in parts for b in p["bad"])
    write_npy(entry.dir / "features.npy", features)
    write_npy(entry.dir / "index.npy", index)
    meta = {
        "format_version": FORMAT_VERSION, "probe_version": __version__, "key": key,
        "model": spec.name, "spec": spec.to_dict(), "revision": spec.revision, "pooling": spec.pooling,
        "preprocessing": _preprocessing(spec), "dataset": dataset, "split": split, "set": input_set,
        "content_fingerprint": content, "fit_fingerprint": text_fingerprint(fit_texts) if fit_texts else None,
        "dtype": dtype, "shape": list(features.shape), "n_inputs": len(inputs),
        "skipped": [{"index": s, "input": _describe(inputs[s])} for s in skipped],
        "seconds": round(time.time() - started, 3),
        "files": {name: {"bytes": (entry.dir / name).stat().st_size, "sha256": sha256_file(entry.dir / name)}
                  for name in ("features.npy", "index.npy")},
    }
    write_json(entry.meta_path, meta)
    shutil.rmtree(entry.chunks, ignore_errors=True)
    return FeatureSet(features, index, meta, entry.dir)


def _preprocessing(spec: EncoderSpec) -> dict[str, Any]:
    if spec.modality == "vision":
        return {"image_size": spec.image_size, "mean": spec.mean, "std": spec.std,
                "interpolation": spec.interpolation, "crop_pct": spec.crop_pct}
    return {"max_length": spec.max_length, "text_prefix": spec.text_prefix}


def _describe(item: Any) -> str:
    return getattr(item, "path", None) or (item.fingerprint() if hasattr(item, "fingerprint") else str(item))[:200]


def _image_chunks(encoder, refs, missing, ranges, batch_size, workers, bar):
    import torch
    from torch.utils.data import DataLoader

    positions = [p for c in missing for p in ranges[c]]
    loader: Any = DataLoader(_ImageInputs(refs, positions, encoder.transform()), batch_size=batch_size,  # type: ignore[arg-type]
                        num_workers=workers, collate_fn=_collate, shuffle=False,
                        pin_memory=str(encoder.device).startswith("cuda"),
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    chunk_of = {p: c for c in missing for p in ranges[c]}
    current, ids, feats, bad = None, [], [], []
    for batch_ids, tensor, batch_bad in loader:
        first = batch_ids[0] if batch_ids else batch_bad[0][0]
        chunk = chunk_of[first]
        if current is not None and chunk != current:
            yield current, ids, _stack(feats, encoder.dim), bad
            ids, feats, bad = [], [], []
        current = chunk
        if tensor is not None:
            with torch.inference_mode():
                feats.append(encoder.encode(tensor))
            ids.extend(batch_ids)
        bad.extend(batch_bad)
        bar.update(len(batch_ids) + len(batch_bad))
    if current is not None:
        yield current, ids, _stack(feats, encoder.dim), bad


def _text_chunks(encoder, texts, missing, ranges, batch_size, workers, bar):
    for chunk in missing:
        ids, feats = [], []
        for batch in _batches(list(ranges[chunk]), batch_size):
            feats.append(encoder.encode([texts[i] for i in batch]))
            ids.extend(batch)
            bar.update(len(batch))
        yield chunk, ids, _stack(feats, encoder.dim), []


def _stack(parts: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)


# --- the public API over datasets ------------------------------------------------------------------

def split_features(spec: EncoderSpec, data: SplitData, *, fit_data: SplitData | None = None,
                   input_set: str | None = None, texts: Sequence[str] | None = None, encoder: Any = None,
                   encoder_factory: Callable[[], Any] | None = None, **kwargs: Any) -> FeatureSet:
    """Image features of a split (vision spec) or features of its captions / given texts (text spec).

    ``encoder`` reuses an already loaded encoder on a miss; ``encoder_factory`` is called only on a
    miss (a sweep loads each model at most once, and not at all when everything is cached).
    """
    from probe.encoders import load_encoder

    if spec.modality == "vision":
        inputs: Sequence[Any] = data.images
        content, name = data.image_fingerprint(), input_set or "images"
    else:
        inputs = list(texts) if texts is not None else data.captions
        content, name = text_fingerprint(inputs), input_set or "captions"
        if needs_fit_corpus(spec) and "fit_texts" not in kwargs:
            kwargs["fit_texts"] = (fit_data or data).captions
    device = kwargs.pop("device", None)
    return extract(spec, data.dataset, data.split, name, inputs, content,
                   load_encoder=lambda: (encoder if encoder is not None else encoder_factory() if encoder_factory
                                         else load_encoder(spec, device=device)),
                   **kwargs)


def get_features(model: str | EncoderSpec, dataset: str, split: str, **kwargs: Any) -> np.ndarray:
    """float32 features of ``dataset``/``split`` for ``model``, extracted on a cache miss.

    Vision models give one row per image, text models one row per caption (rows of skipped images
    are NaN so rows stay aligned with the split).
    """
    from probe.data import get_dataset
    from probe.registry import Registry

    spec = Registry.load().get(model) if isinstance(model, str) else model
    ds = get_dataset(dataset)
    data = ds.load(split)
    fit = ds.load("train") if needs_fit_corpus(spec) and "train" in ds.info.splits else None
    result = split_features(spec, data, fit_data=fit, **kwargs)
    n = data.n_images if spec.modality == "vision" else len(data.captions)
    return result.dense(n)
