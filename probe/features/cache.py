"""The content-addressed feature cache: keys, entries, and the arrays they hold.

Each (encoder, dataset, split, input set) lives in its own folder:

    <cache>/<model>/<dataset>/<split>.<set>.<key>/
        chunks/00000.npz ...   finished chunks (features + input ids), each written atomically
        features.npy, index.npy, meta.json   the consolidated entry; meta.json is written last

The key hashes everything that changes the numbers: the spec's weights, revision, preprocessing
and pooling, the dataset's content fingerprint, the storage dtype and FORMAT_VERSION. A truncated
or mismatched entry is detected (sizes and sha256 in meta.json) and recomputed, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.encoder_spec import EncoderSpec
from probe.features.mapped import map_npy
from probe.filenames import safe_name
from probe.io import sha256_file

FORMAT_VERSION = 1
#: Spec fields that cannot change the features (descriptions, licences, published scores).
_DESCRIPTIVE = {"license", "reference", "notes", "params_m", "imagenet_knn", "imagenet_linear", "mteb_avg", "objective"}
log = logging.getLogger("probe.features")


@dataclass
class FeatureSet:
    """Cached features: row ``i`` of ``features`` belongs to input ``index[i]`` (skipped inputs absent).

    ``features`` is read-only and, for an entry read from the cache, a memory map of its file
    (``mapping``): nothing is read until it is used.
    """

    features: np.ndarray
    index: np.ndarray
    meta: dict[str, Any]
    path: Path
    mapping: Any = None
    #: (file, byte offset of row 0) of a mapped entry, where batches are read from
    source: tuple[Path, int] | None = None
    #: a float32 entry serving a float16 request reads its values rounded to this dtype
    round_to: str | None = None

    def dense(self, n: int) -> np.ndarray:
        """float32 [n, D] aligned with the inputs, in memory; rows of skipped inputs are NaN."""
        return np.asarray(self.rows(n))

    def rows(self, n: int):
        """The same rows read on demand from the memory map (:class:`~probe.features.mapped.FeatureRows`)."""
        from probe.features.mapped import FeatureRows

        return FeatureRows(self.features, self.index, n, self.mapping, self.round_to, self.source)


@dataclass
class ExtractionStats:
    computed_chunks: int = 0
    reused_chunks: int = 0
    from_cache: bool = False
    #: inputs encoded in this run and the wall time that took (the rate a user sees at the end)
    computed_rows: int = 0
    compute_seconds: float = 0.0

    @property
    def rows_per_second(self) -> float | None:
        return self.computed_rows / self.compute_seconds if self.computed_rows and self.compute_seconds > 0 else None


def spec_fingerprint(spec: EncoderSpec) -> dict[str, Any]:
    return {k: v for k, v in spec.to_dict().items() if k not in _DESCRIPTIVE}


def cache_key(spec: EncoderSpec, dataset: str, split: str, input_set: str, content: str, dtype: str,
              extra: dict[str, Any] | None = None) -> str:
    payload = {"spec": spec_fingerprint(spec), "dataset": dataset, "split": split, "set": input_set,
               "content": content, "dtype": dtype, "format": FORMAT_VERSION, "extra": extra or {}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def model_dir(root: Path, spec: EncoderSpec) -> Path:
    """The folder of every entry of one encoder."""
    return root / safe_name(spec.name)


#: an empty file every entry folder holds from its creation on: ``probe cache`` lists and removes only
#: folders that carry it (or a finished entry's ``meta.json`` naming the folder's key), never a user's
ENTRY_MARKER = ".probe-entry"
#: the files a finished entry holds beside its meta.json, which states their size and checksum
ENTRY_FILES = ("features.npy", "index.npy")


class CacheEntry:
    """One cache folder; every method assumes the caller holds the entry's lock for writes."""

    def __init__(self, root: Path, spec: EncoderSpec, dataset: str, split: str, input_set: str, key: str):
        self.dir = model_dir(root, spec) / safe_name(dataset) / f"{safe_name(split)}.{safe_name(input_set)}.{key}"
        self.chunks = self.dir / "chunks"

    @property
    def meta_path(self) -> Path:
        return self.dir / "meta.json"

    def lock(self):
        from filelock import FileLock

        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / ENTRY_MARKER).touch(exist_ok=True)
        return FileLock(str(self.dir / ".lock"))

    def read(self, verify: bool = True) -> FeatureSet | None:
        """The finished entry, or None if absent or damaged (a damaged entry is removed)."""
        if not self.meta_path.is_file():
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
            files = {name: self.dir / name for name in ENTRY_FILES}
            for name, path in files.items():
                if path.stat().st_size != meta["files"][name]["bytes"]:
                    raise ValueError(f"{name} has the wrong size")
                if verify and sha256_file(path) != meta["files"][name]["sha256"]:
                    raise ValueError(f"{name} does not match its checksum")
            features, mapping, offset = map_npy(files["features.npy"])
            index = np.load(files["index.npy"], allow_pickle=False)
            if list(features.shape) != meta["shape"] or str(features.dtype) != meta["dtype"]:
                raise ValueError("shape or dtype differs from meta.json")
            if len(index) != len(features) or (len(index) and not 0 <= index.min() <= index.max() < meta["n_inputs"]):
                raise ValueError("index.npy does not fit the features")
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            # TypeError/AttributeError/IndexError: valid JSON of the wrong shape ([] or {"files": 3})
            log.warning("cache entry %s is damaged (%s: %s); recomputing", self.dir, type(exc).__name__, exc)
            self.discard_final()
            return None
        return FeatureSet(features, index, meta, self.dir, mapping,
                          source=(files["features.npy"], offset) if mapping is not None else None)

    def looks_finished(self) -> bool:
        """Whether a finished entry seems to be here: its ``meta.json``, and files of the sizes it states.
        Reads no features and repairs nothing (a dry run changes no file); :meth:`read` checks more."""
        try:
            files = json.loads(self.meta_path.read_text())["files"]
            return all((self.dir / name).stat().st_size == files[name]["bytes"] for name in ENTRY_FILES)
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def file_records(self) -> dict[str, dict[str, Any]]:
        """What meta.json's ``files`` holds: each written file's size and sha256, which :meth:`read` checks."""
        return {name: {"bytes": (self.dir / name).stat().st_size, "sha256": sha256_file(self.dir / name)}
                for name in ENTRY_FILES}

    def discard_final(self) -> None:
        for name in ("meta.json", *ENTRY_FILES):
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
                for optional in ("flops", "seconds", "device"):  # measured by the writer (older chunks lack them)
                    if optional in data.files:
                        out[optional] = data[optional]
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


