"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename.

A killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; give the file the permissions open() would
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: Path, data: Any) -> None:
    with atomic_open(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)


def write_npy(path: Path, array: Any) -> None:
    import numpy as np

    with atomic_open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def write_npy_parts(path: Path, parts: Iterable[Any], shape: tuple[int, ...], dtype: str) -> None:
    """An ``.npy`` file of ``shape`` written from consecutive row blocks, atomically: a feature file
    larger than memory is assembled without ever holding it whole."""
    import numpy as np

    dt = np.dtype(dtype)
    written = 0
    with atomic_open(path, "wb") as handle:
        np.lib.format.write_array_header_2_0(handle, {"descr": np.lib.format.dtype_to_descr(dt),
                                                      "fortran_order": False, "shape": tuple(shape)})
        for part in parts:
            block = np.ascontiguousarray(part, dtype=dt)
            if block.shape[1:] != tuple(shape[1:]):
                raise ValueError(f"{path}: a block of shape {block.shape} does not fit {shape}")
            handle.write(block.tobytes())
            written += len(block)
        if written != shape[0]:
            raise ValueError(f"{path}: {written} rows written, {shape[0]} declared")


def write_npz(path: Path, **arrays: Any) -> None:
    import numpy as np

    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


def sha256_file(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def human_bytes(n: float) -> str:
    """``1.3 MB``: a size in decimal units, as the cache listing and dry runs print it."""
    if n < 1000:
        return f"{n:,.0f} B"
    for unit in ("KB", "MB"):
        n /= 1000
        if n < 1000:
            return f"{n:,.1f} {unit}"
    return f"{n / 1000:,.1f} GB"
