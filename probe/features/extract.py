"""Feature extraction into the cache: atomic chunks, resumable, one lock per entry.

A killed run resumes from its last finished chunk; a lock keeps two runs on one key from
clobbering each other; the encoder is loaded only on a miss, so a warm cache never loads weights.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from probe.data.base import text_fingerprint
from probe.encoder_spec import EncoderSpec
from probe.encoders.preprocess import JPEG_DECODER, JPEG_DECODER_CUDA
from probe.errors import ProbeError
from probe.features.batches import bar_label, describe_input, image_chunks, text_chunks
from probe.features.cache import FORMAT_VERSION, CacheEntry, ExtractionStats, FeatureSet, cache_key, log
from probe.features.fitted import FitTexts, SavedFit
from probe.features.options import ExtractOptions, resolved_workers, storage_dtype
from probe.io import write_json, write_npy, write_npy_parts, write_npz
from probe.version import __version__


def entry_for(spec: EncoderSpec, dataset: str, split: str, input_set: str, content: str, options: ExtractOptions,
              fit_texts: FitTexts | None) -> tuple[CacheEntry, str, str]:
    """``(entry, key, storage dtype)`` of the features of these inputs (see :mod:`probe.features.cache`)."""
    fit = fit_fingerprint(fit_texts)
    dtype = storage_dtype(spec, options)
    key = cache_key(spec, dataset, split, input_set, content, dtype, key_extra(spec, fit, jpeg_decoder(options)))
    return CacheEntry(options.cache, spec, dataset, split, input_set, key), key, dtype


def fit_fingerprint(fit_texts: FitTexts | None) -> str | None:
    """The fingerprint of the corpus an encoder is fitted on, whether given as captions or as a
    saved model's fit (which names the captions it was fitted on)."""
    if fit_texts is None:
        return None
    if isinstance(fit_texts, SavedFit):
        return fit_texts.fingerprint
    return text_fingerprint(fit_texts)


def key_extra(spec: EncoderSpec, fit: str | None, decoder: str | None) -> dict[str, Any]:
    """What a cache key holds beyond the spec and the data: the fingerprint of the corpus an encoder
    was fitted on (TF-IDF), and for a vision encoder what decoded its JPEGs. The inventory rebuilds
    keys from ``meta.json`` with it (:func:`probe.features.inventory.current_key`)."""
    extra: dict[str, Any] = {"fit": fit} if fit is not None else {}
    if spec.modality == "vision":
        extra["jpeg"] = decoder
    return extra


def jpeg_decoder(options: ExtractOptions) -> str:
    """What decodes JPEGs for these options (a GPU's decoder may round otherwise than the CPU's)."""
    if options.decode == "device":
        from probe.encoders.base import pick_device

        if pick_device(options.device).startswith("cuda"):
            return JPEG_DECODER_CUDA
    return JPEG_DECODER


def serving_entries(spec: EncoderSpec, dataset: str, split: str, input_set: str, content: str,
                    options: ExtractOptions, fit_texts: FitTexts | None) -> list[CacheEntry]:
    """The entries that can serve this request, best first: its own, then for a float16 request the
    float32 one (rounded to float16 on read)."""
    entry, _, dtype = entry_for(spec, dataset, split, input_set, content, options, fit_texts)
    if dtype != "float16":
        return [entry]
    wider, _, _ = entry_for(spec, dataset, split, input_set, content, dataclasses.replace(options, dtype="float32"),
                            fit_texts)
    return [entry, wider]


def cached(spec: EncoderSpec, dataset: str, split: str, input_set: str, content: str, options: ExtractOptions,
           fit_texts: FitTexts | None) -> FeatureSet | None:
    """The finished entry that serves this request, if any (see :func:`serving_entries`)."""
    own, *wider = serving_entries(spec, dataset, split, input_set, content, options, fit_texts)
    found = own.read(verify=options.verify)
    if found is None and wider:
        found = wider[0].read(verify=options.verify)
        if found is not None:
            found.round_to = "float16"
    return found


def extract(spec: EncoderSpec, dataset: str, split: str, input_set: str, inputs: Sequence[Any], content: str, *,
            load_encoder: Callable[[], Any], options: ExtractOptions, fit_texts: FitTexts | None = None,
            stats: ExtractionStats | None = None) -> FeatureSet:
    """Features of ``inputs`` (image refs for vision specs, strings for text specs), from cache or computed.

    ``load_encoder`` is called only on a miss, so a warm cache never loads weights.
    """
    if not len(inputs):
        raise ProbeError(f"dataset {dataset!r} split {split!r} has no {input_set} to encode")
    stats = stats or ExtractionStats()
    entry, key, dtype = entry_for(spec, dataset, split, input_set, content, options, fit_texts)
    found = cached(spec, dataset, split, input_set, content, options, fit_texts)
    if found is not None:
        stats.from_cache = True
        _announce(found, "from the cache")
        return found
    from filelock import Timeout

    lock = entry.lock()
    try:
        lock.acquire(timeout=1)
    except Timeout:
        log.warning("another run is extracting %s; waiting for it", entry.dir)
        lock.acquire()
    try:
        found = entry.read(verify=options.verify)
        if found is not None:
            stats.from_cache = True
            return found
        started = time.perf_counter()
        made = _extract_locked(entry, spec, dataset, split, input_set, inputs, content, key, load_encoder, options,
                               fit_texts, stats, dtype)
        _announce(made, f"computed in {time.perf_counter() - started:.1f} s")
        return made
    finally:
        lock.release()


_announced: set[str] = set()  # cache entries already named by this job: a sweep re-reads them per pair


def new_job() -> None:
    """Start naming cache entries afresh: each job (a command, an API call) says once per entry where
    its features came from, however many jobs ran in this process before."""
    _announced.clear()


def _announce(features: FeatureSet, how: str) -> None:
    """One line per cache entry per job (INFO): model, split, rows, and computed or from the cache."""
    if str(features.path) in _announced:
        return
    _announced.add(str(features.path))
    meta = features.meta
    log.info("%s %s/%s: %d %s, %s", meta.get("model"), meta.get("dataset"), meta.get("split"),
             len(features.features), meta.get("set"), how)


def chunk_plan(spec: EncoderSpec, inputs: Sequence[Any], options: ExtractOptions) -> tuple[list[range], bool]:
    """``(row ranges, by shard)``: the chunks an entry is computed and resumed in. A chunk is a few
    batches, or, for a split of whole webdataset shards, one shard (streamed front to back)."""
    from probe.features.options import extraction_batch_size
    from probe.features.shards import shard_ranges

    by_shard = shard_ranges(inputs) if spec.modality == "vision" else None
    if by_shard is not None:
        return by_shard, True
    n, chunk_size = len(inputs), extraction_batch_size(spec, options) * max(1, options.chunk_batches)
    return [range(start, min(n, start + chunk_size)) for start in range(0, n, chunk_size)], False


def prepared_encoder(load_encoder: Callable[[], Any], spec: EncoderSpec, fit_texts: FitTexts | None) -> Any:
    """The encoder, fitted on the corpus first where its family needs that, its first batch counted."""
    encoder = _Measured(load_encoder())
    if getattr(encoder, "needs_fit", False):
        if fit_texts is None:
            raise ProbeError(f"model {spec.name!r} must be fitted on a corpus; none was given")
        if isinstance(fit_texts, SavedFit):  # a saved model's state: never refitted on what it encodes
            if not getattr(encoder, "fitted", False):
                raise ProbeError(f"model {spec.name!r} must come with its saved fit loaded; it would otherwise be "
                                 "fitted on the split it encodes")
        else:
            encoder.fit(fit_texts)
    return encoder


def compute_chunks(entry: CacheEntry, spec: EncoderSpec, inputs: Sequence[Any], chunks: list[int],
                   ranges: list[range], by_shard: bool, encoder: Any, options: ExtractOptions, dtype: str,
                   bar: Any) -> Iterator[int]:
    """Encode and write each of ``chunks`` (atomically, one file each); yields each chunk written.
    Any process that sees the cache folder can run this for any chunks of the entry."""
    from probe.features.options import extraction_batch_size
    from probe.features.shards import shard_chunks

    entry.chunks.mkdir(parents=True, exist_ok=True)
    chunk_iter = shard_chunks if by_shard else image_chunks if spec.modality == "vision" else text_chunks
    device = str(getattr(encoder, "device", "cpu"))
    last = time.perf_counter()
    for chunk, ids, feats, bad in chunk_iter(encoder, inputs, chunks, ranges, extraction_batch_size(spec, options),
                                             resolved_workers(options.workers, options.device), bar,
                                             options.decode):
        if bad and options.on_bad_image == "fail":
            position, error = bad[0]
            raise ProbeError(f"bad image #{position} ({describe_input(inputs[position])}): {error}")
        if dtype == "float16":
            _check_half_range(spec, feats)
        # the measured per-input cost and the chunk's wall time (since the previous chunk was done: data
        # loading included) travel with the chunk: an entry assembled from chunks computed in another
        # process (a resumed run, a Ray actor) still states what its inputs cost and how fast they went
        flops = getattr(encoder, "flops_per_input", None)
        now = time.perf_counter()
        seconds, last = now - last, now
        write_npz(entry.chunk_path(chunk), features=feats.astype(dtype),
                  ids=np.asarray(ids, dtype=np.int64), bad=np.asarray([p for p, _ in bad], dtype=np.int64),
                  errors=np.asarray([e for _, e in bad] or [""], dtype=str),
                  flops=np.asarray([np.nan if flops is None else flops], dtype=np.float64),
                  seconds=np.asarray([seconds], dtype=np.float64), device=np.asarray([device]))
        yield chunk


def _extract_locked(entry: CacheEntry, spec: EncoderSpec, dataset: str, split: str, input_set: str,
                    inputs: Sequence[Any], content: str, key: str, load_encoder: Callable[[], Any],
                    options: ExtractOptions, fit_texts: FitTexts | None, stats: ExtractionStats,
                    dtype: str) -> FeatureSet:
    from tqdm.auto import tqdm

    n = len(inputs)
    ranges, by_shard = chunk_plan(spec, inputs, options)
    n_chunks = len(ranges)
    # what each finished chunk covers (its features are read again, one chunk at a time, at the end)
    done = {c: _covered(entry.read_chunk(c, ranges[c], spec.embed_dim)) for c in range(n_chunks)}
    missing = [c for c, data in done.items() if data is None]
    stats.reused_chunks = n_chunks - len(missing)
    started = time.time()
    measured = None
    if missing:
        encoder = measured = prepared_encoder(load_encoder, spec, fit_texts)
        # Bars only on a terminal (tqdm's disable=None): logs and captured stderr stay one clean
        # line per message; `with` clears the bar even when a chunk fails.
        with tqdm(total=n, initial=n - sum(len(ranges[c]) for c in missing), unit=" " + input_set,
                  desc=bar_label(f"{spec.name} {dataset}/{split}"), disable=None if options.progress else True, leave=False) as bar:
            for chunk in compute_chunks(entry, spec, inputs, missing, ranges, by_shard, encoder, options, dtype, bar):
                done[chunk] = _covered(entry.read_chunk(chunk, ranges[chunk], spec.embed_dim))
                stats.computed_chunks += 1
                stats.computed_rows += len(ranges[chunk])
        stats.compute_seconds = time.time() - started
    parts = [part for part in (done[c] for c in range(n_chunks)) if part is not None]
    if len(parts) < n_chunks:
        raise ProbeError(f"extraction of {entry.dir} did not finish; run again to resume")
    index = np.concatenate([p["ids"] for p in parts]).astype(np.int64)
    shape = (len(index), spec.embed_dim)
    zero_rows = 0

    def chunk_features():
        nonlocal zero_rows
        for c in range(n_chunks):
            part = entry.read_chunk(c, ranges[c], spec.embed_dim)
            if part is None:
                raise ProbeError(f"a finished chunk of {entry.dir} was damaged before consolidation; run again")
            zero_rows += int((~part["features"].any(axis=1)).sum())
            yield part["features"]

    write_npy_parts(entry.dir / "features.npy", chunk_features(), shape, dtype)
    skipped = sorted(int(b) for p in parts for b in p["bad"])
    if skipped:
        log.warning("%s %s/%s: %d of %d %s could not be read and were skipped, e.g. %s (all are listed in %s)",
                    spec.name, dataset, split, len(skipped), len(inputs), input_set, describe_input(inputs[skipped[0]]),
                    entry.meta_path)
    if zero_rows:
        # a text with no word the encoder knows (word vectors, TF-IDF) or a blank image: say how many
        log.warning("%s %s/%s: %d of %d %s have an all-zero feature vector (nothing the encoder could "
                    "represent)", spec.name, dataset, split, zero_rows, len(index), input_set)
    write_npy(entry.dir / "index.npy", index)
    meta = {
        "format_version": FORMAT_VERSION, "probe_version": __version__, "key": key,
        "model": spec.name, "spec": spec.to_dict(), "revision": spec.revision, "pooling": spec.pooling,
        "preprocessing": _preprocessing(spec, options), "dataset": dataset, "split": split, "set": input_set,
        "content_fingerprint": content, "fit_fingerprint": fit_fingerprint(fit_texts) if fit_texts else None,
        "dtype": dtype, "shape": list(shape), "n_inputs": len(inputs),
        "skipped": [{"index": s, "input": describe_input(inputs[s])} for s in skipped],
        "zero_rows": zero_rows,
        "seconds": round(time.time() - started, 3),
        "extraction": _how_extracted(spec, options, measured),
        "rate": _rate(parts),
        "flops_per_input": _flops_per_input(measured, parts),
        "files": entry.file_records(),
    }
    write_json(entry.meta_path, meta)
    shutil.rmtree(entry.chunks, ignore_errors=True)
    made = entry.read(verify=False)
    if made is None:
        raise ProbeError(f"the cache entry {entry.dir} could not be read back after writing it; run again")
    return made


def _check_half_range(spec: EncoderSpec, feats: np.ndarray) -> None:
    """float16 holds magnitudes up to 65,504: larger features would be stored as infinities."""
    finite = feats[np.isfinite(feats)]
    top = float(np.abs(finite).max()) if finite.size else 0.0
    if top > float(np.finfo(np.float16).max):
        raise ProbeError(f"features of {spec.name} reach {top:.4g}, beyond float16's range (65,504); "
                         "extract them with --dtype float32")


def _covered(chunk: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """A finished chunk without its features: which inputs it holds and skipped, and their cost."""
    return None if chunk is None else {k: chunk[k] for k in ("ids", "bad", "flops", "seconds", "device") if k in chunk}


def _flops_per_input(measured: Any, parts: list[dict[str, np.ndarray]]) -> float | None:
    """The forward cost per input: measured in this process, else as the chunks' writers measured it."""
    if measured is not None and measured.flops_per_input is not None:
        return measured.flops_per_input
    known = [float(p["flops"][0]) for p in parts if "flops" in p and np.isfinite(p["flops"][0])]
    return known[0] if known else None


class _Measured:
    """An encoder whose first batch runs under the FLOP counter (per-input forward cost for records)."""

    def __init__(self, encoder: Any):
        self.encoder = encoder
        self.flops_per_input: float | None = None
        self._counted = False

    def encode(self, batch: Any) -> np.ndarray:
        if self._counted:
            return self.encoder.encode(batch)
        from probe.flops import counted

        out, flops = counted(lambda: self.encoder.encode(batch))
        self._counted = True
        self.flops_per_input = flops / len(batch) if flops and len(batch) else None
        return out

    def encode_queued(self, batch: Any) -> Callable[[], np.ndarray]:
        if self._counted:
            return self.encoder.encode_queued(batch)
        ready = self.encode(batch)  # the first batch runs under the counter, at once
        return lambda: ready

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)


def _how_extracted(spec: EncoderSpec, options: ExtractOptions, encoder: Any) -> dict[str, Any] | None:
    """Where and how this process computed the entry's missing chunks, so ``seconds`` can be read
    (None when every chunk was computed elsewhere: a resumed run's earlier process, Ray actors)."""
    if encoder is None:
        return None
    from probe.features.options import extraction_batch_size

    vision = spec.modality == "vision"
    return {"device": str(encoder.device), "batch_size": extraction_batch_size(spec, options),
            "workers": resolved_workers(options.workers, options.device) if vision else 0,
            "decode": options.decode if vision else None}


def _rate(parts: list[dict[str, np.ndarray]]) -> dict[str, Any] | None:
    """Rows and wall seconds of the entry's chunks on the device that computed most of them, wherever
    they ran (this process, an earlier one, Ray actors): the rate a dry run estimates from. None for
    chunks written before chunks were timed."""
    by_device: dict[str, list[float]] = {}
    for part in parts:
        if "seconds" in part and "device" in part:
            rows_seconds = by_device.setdefault(str(part["device"][0]), [0, 0.0])
            rows_seconds[0] += len(part["ids"]) + len(part["bad"])
            rows_seconds[1] += float(part["seconds"][0])
    if not by_device:
        return None
    device, (rows, seconds) = max(by_device.items(), key=lambda item: item[1][0])
    return {"device": device, "rows": int(rows), "seconds": round(seconds, 3)}


def _preprocessing(spec: EncoderSpec, options: ExtractOptions) -> dict[str, Any]:
    if spec.modality == "vision":
        return {"image_size": spec.image_size, "mean": spec.mean, "std": spec.std,
                "interpolation": spec.interpolation, "crop_pct": spec.crop_pct, "jpeg_decoder": jpeg_decoder(options)}
    return {"max_length": spec.max_length, "text_prefix": spec.text_prefix}
