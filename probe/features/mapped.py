"""Cached features read a batch at a time from a memory map, so a split larger than memory trains.

A sweep over millions of pairs cannot hold every split as float32 in RAM (2M x 1,024 x 4 B is 8 GB
per encoder). :class:`FeatureRows` keeps the ``.npy`` file mapped and copies out only the rows a
batch asks for, converted to float32. Reading a page through a mapping makes it part of the
process's resident set, so after each batch the mapping's pages are handed back (``MADV_DONTNEED``:
the kernel keeps them in its page cache, so the next read is a cheap minor fault, not disk I/O).
Resident memory then grows with the batch, not with the file.
"""

from __future__ import annotations

import copy
import mmap
import os
from pathlib import Path

import numpy as np

#: A side's fit-split features stay resident (as a float32 array, on the device while training)
#: up to this many bytes; larger ones are streamed from their memory map.
DEFAULT_RESIDENT_LIMIT = 1 << 30


def resident_limit() -> int:
    """Bytes of float32 features one side may hold in memory: ``$PROBE_RESIDENT_LIMIT_MB`` or 1 GiB."""
    from probe.errors import ProbeError
    from probe.settings import ENV_RESIDENT_LIMIT, text

    raw = text(ENV_RESIDENT_LIMIT)
    if not raw:
        return DEFAULT_RESIDENT_LIMIT
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = -1.0
    if not megabytes >= 0:
        raise ProbeError(f"{ENV_RESIDENT_LIMIT}={raw!r} is not a number of megabytes >= 0")
    return int(megabytes * (1 << 20))


def map_npy(path: Path) -> tuple[np.ndarray, mmap.mmap | None, int]:
    """A read-only array over an ``.npy`` file's data, its mapping (None for an empty array) and the
    byte offset of row 0 in the file (where :class:`FeatureRows` reads batches from)."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        offset = handle.tell()
        if dtype.hasobject:
            raise ValueError(f"{path}: an object array cannot be mapped")
        count = int(np.prod(shape))
        if count == 0:
            return np.empty(shape, dtype=dtype), None, offset
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    if offset + count * dtype.itemsize > len(mapping):
        mapping.close()
        raise ValueError(f"{path} is shorter than its header says")
    array = np.ndarray(shape, dtype=dtype, buffer=mapping, offset=offset, order="F" if fortran else "C")
    return array, mapping, offset


class FeatureRows:
    """An encoder's features on a split, row ``i`` for input ``i``, read from the cache on demand.

    ``stored[k]`` holds input ``index[k]``; inputs that were skipped (unreadable images) read as
    NaN, as in :meth:`FeatureSet.dense`. ``np.asarray(rows)`` reads everything (small splits only).
    """

    dtype = np.dtype(np.float32)

    def __init__(self, stored: np.ndarray, index: np.ndarray, n: int, mapping: mmap.mmap | None = None,
                 round_to: str | None = None, source: tuple[Path, int] | None = None):
        self.stored, self.mapping = stored, mapping
        #: (file, byte offset of row 0): batches are then read with pread, not through the mapping
        self.source = source
        self._fd: int | None = None
        self.round_to = np.dtype(round_to) if round_to else None
        index = np.asarray(index, dtype=np.int64)
        #: the stored row of each input; -1 for a skipped one
        self.row_of = np.full(n, -1, dtype=np.int64)
        self.row_of[index] = np.arange(len(index))
        self.shape = (n, stored.shape[1])
        self.nbytes_float32 = n * stored.shape[1] * 4

    def subset(self, inputs: np.ndarray) -> FeatureRows:
        """The rows of these inputs, numbered from 0 in their order, read from the same file: a split
        cut from a cached one (:class:`probe.data.base.Subset`) reads the whole split's entry."""
        view = copy.copy(self)
        view._fd = None  # its own descriptor, opened on first read and closed with it
        view.row_of = self.row_of[np.asarray(inputs, dtype=np.int64)]
        view.shape = (len(view.row_of), self.shape[1])
        view.nbytes_float32 = view.shape[0] * view.shape[1] * 4
        return view

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, inputs: np.ndarray) -> np.ndarray:
        """float32 rows of ``inputs`` (in their order), read in file order for locality."""
        inputs = np.asarray(inputs, dtype=np.int64)
        rows = self.row_of[inputs]
        out = np.full((len(inputs), self.shape[1]), np.nan, dtype=np.float32)
        present = np.flatnonzero(rows >= 0)
        order = np.argsort(rows[present], kind="stable")
        wanted = rows[present][order]
        block = self._pread(wanted) if self.source is not None and self.stored.flags.c_contiguous else self.stored[wanted]
        out[present[order]] = block.astype(self.round_to) if self.round_to is not None else block
        self.release()
        return out

    def _pread(self, rows: np.ndarray) -> np.ndarray:
        """Rows (ascending) read with ``preadv``, runs of consecutive rows in one call. Reading
        through the mapping would map whole page-cache folios (up to 2 MB each on recent kernels)
        for each scattered row, and a batch of scattered rows would map most of the file."""
        assert self.source is not None
        path, offset = self.source
        if self._fd is None:
            self._fd = os.open(path, os.O_RDONLY)
        width = self.stored.shape[1] * self.stored.dtype.itemsize
        out = np.empty((len(rows), self.stored.shape[1]), dtype=self.stored.dtype)
        view = memoryview(out.data).cast("B")
        starts = np.flatnonzero(np.diff(rows, prepend=-2) != 1)
        for start, stop in zip(starts, [*starts[1:], len(rows)], strict=True):
            want = (stop - start) * width
            got = os.preadv(self._fd, [view[start * width:stop * width]], offset + int(rows[start]) * width)
            if got != want:
                raise OSError(f"{path}: {got} of {want} bytes read at row {rows[start]} (file cut short?)")
        return out

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # type: ignore[arg-type]

    def finite_rows(self, block: int = 65_536) -> np.ndarray:
        """Which inputs have a finite feature vector, reading the file a block at a time."""
        finite = np.zeros(len(self.stored), dtype=bool)
        for start in range(0, len(self.stored), block):
            stop = min(len(self.stored), start + block)
            finite[start:stop] = np.isfinite(self.stored[start:stop]).all(axis=1)
            self.release()
        present = self.row_of >= 0
        ok = np.zeros(len(self), dtype=bool)
        ok[present] = finite[self.row_of[present]]
        return ok

    def release(self) -> None:
        """Hand the pages read so far back to the kernel's page cache (out of this process's RSS)."""
        if self.mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
            self.mapping.madvise(mmap.MADV_DONTNEED)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        full = self.take(np.arange(len(self)))
        return full if dtype is None else full.astype(dtype, copy=False)
