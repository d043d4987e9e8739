"""How features are extracted and where they are kept, as one frozen value passed down whole."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from probe import settings
from probe.errors import ProbeError

#: storage dtypes of cached features; "auto" is float16 where the encoder runs in half precision
DTYPES = ("auto", "float16", "float32")
ON_BAD_IMAGE = ("skip", "fail")
#: where JPEGs are decoded: in the data-loader workers, or on the encoder's device (nvjpeg on a GPU)
DECODES = ("workers", "device")


@dataclass(frozen=True)
class ExtractOptions:
    """Everything that decides how a cache miss is computed (and where hits are found).

    ``device`` and ``allow_download`` reach the encoder loader; ``allow_download=None`` means
    ``$PROBE_ALLOW_DOWNLOAD`` decides.
    """

    cache_dir: Path | None = None
    #: None: the encoder family's choice for the device (see :func:`extraction_batch_size`)
    batch_size: int | None = None
    #: data-loader workers decoding images; None: the device's default (see :func:`default_workers`)
    workers: int | None = None
    #: see :func:`storage_dtype`
    dtype: str = "auto"
    on_bad_image: str = "skip"
    chunk_batches: int = 4
    progress: bool = True
    verify: bool = True
    device: str | None = None
    allow_download: bool | None = None
    #: see :data:`DECODES`
    decode: str = "workers"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ProbeError(f"feature dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.decode not in DECODES:
            raise ProbeError(f"--decode {self.decode!r} is not one of {', '.join(DECODES)}")
        if self.on_bad_image not in ON_BAD_IMAGE:
            raise ProbeError(f"--on-bad-image {self.on_bad_image!r} is not one of {', '.join(ON_BAD_IMAGE)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ProbeError(f"batch size must be at least 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise ProbeError(f"workers must be 0 or more, got {self.workers}")

    @property
    def cache(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir is not None else settings.default_cache_dir()


#: data-loader workers on a CPU, where the encoder's own threads want the cores
CPU_WORKERS = 2
#: the most workers a GPU gets by default: each is a process holding the split's image list and a few
#: prefetched batches, so a many-core machine does not start one per core
MAX_GPU_WORKERS = 16


def default_workers(device: str) -> int:
    """Data-loader workers when none are asked for: 2 on a CPU, where the encoder's forward uses every
    core and decoding is a small share of the time; on a GPU, whose forward outruns one core's
    decoding (about 1 ms per camera-sized JPEG) many times over, the GPU's share of the usable cores
    less two (the main process and the pinning thread), at most 16. The share counts every GPU of the
    machine, so one process per GPU (Ray's tasks, each shown one GPU) does not oversubscribe it."""
    if not str(device).startswith("cuda"):
        return CPU_WORKERS
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or CPU_WORKERS)
    return max(CPU_WORKERS, min(MAX_GPU_WORKERS, cores // _gpus_on_machine() - 2))


def _gpus_on_machine() -> int:
    """NVIDIA GPUs in the machine, whichever this process is shown (the driver lists each in /proc)."""
    listed = Path("/proc/driver/nvidia/gpus")
    if listed.is_dir():
        found = sum(1 for _ in listed.iterdir())
        if found:
            return found
    import torch

    return max(1, torch.cuda.device_count())


def resolved_workers(workers: int | None, device: str | None) -> int:
    """``workers`` as given, else :func:`default_workers` for the device (picked when None)."""
    if workers is not None:
        return workers
    from probe.encoders.base import pick_device

    return default_workers(device or pick_device())


#: extraction batch on a GPU when none is given
GPU_BATCH_SIZE = 64


def extraction_batch_size(spec, options: ExtractOptions) -> int:
    """The batch a cache miss is computed with: the one asked for, else 64 on a GPU and the loader
    family's CPU batch (16 for torch models, whose large activation buffers cost page faults at 32+
    on a CPU; 64 for onnxruntime, which keeps its own arena)."""
    if options.batch_size is not None:
        return options.batch_size
    from probe.encoders.base import pick_device
    from probe.encoders.families import family_of

    device = options.device or pick_device()
    return GPU_BATCH_SIZE if str(device).startswith("cuda") else family_of(spec).cpu_batch_size


def storage_dtype(spec, options: ExtractOptions) -> str:
    """The dtype an encoder's features are cached in: the one asked for, else ("auto") float16 where
    the encoder runs in half precision (torch models on a GPU, whose outputs carry bf16's 8-bit
    mantissa, which float16's 10 bits hold) and float32 elsewhere.

    Which cache entry serves a request: a float32 entry serves a float16 request (its values are
    rounded to float16 on read, exactly what a float16 entry of the same outputs holds); a float16
    entry never serves a float32 request, which is computed anew."""
    if options.dtype != "auto":
        return options.dtype
    from probe.encoders.base import pick_device
    from probe.encoders.families import family_of

    device = str(options.device or pick_device())
    return "float16" if family_of(spec).half_precision(spec, device) else "float32"
