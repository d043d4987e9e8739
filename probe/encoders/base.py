"""The one encoder protocol every loader implements.

``encode(batch) -> float32 numpy [N, D]`` with the spec's pooling applied inside the encoder, so
pooling is decided by the registry entry and never scattered across callers; ``encode_queued``
returns before a GPU's forward finishes, for extraction to keep one batch in flight. Vision encoders take
an already preprocessed float tensor ``[N, 3, H, W]`` (decoding and resizing happen in DataLoader
workers, see :meth:`VisionEncoder.transform`); text encoders take a list of strings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from probe.encoder_spec import EncoderSpec
from probe.errors import ProbeError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from probe.encoders.preprocess import SpecTransform


def pick_device(device: str | None = None) -> str:
    """CUDA when present, else CPU; an explicit choice wins once it is known to exist here."""
    import torch

    if not device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ProbeError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N") from None
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ProbeError(f"device {device!r} is not available: this torch has no working Apple MPS backend; "
                         "use --device cpu")
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise ProbeError(f"device {device!r} cannot run encoders; valid: cpu, cuda, cuda:N (mps on Apple machines)")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise ProbeError(f"device {device!r} is not available: torch sees {torch.cuda.device_count()} CUDA "
                         "device(s) here; use --device cpu")
    return device


def cuda_dtype() -> Any:
    """bf16 where the GPU supports it, else fp16."""
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: str, precision: str | None = None):
    """The precision encoders compute in: by default half precision on CUDA (:func:`cuda_dtype`) and
    float32 elsewhere; ``precision`` ("bf16" / "fp32") asks for one on any device (training chooses
    its own: bf16 runs on a CPU too, so the accelerator's code path can be checked there)."""
    import contextlib

    import torch

    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=cuda_dtype())
    return contextlib.nullcontext()


def quiet_transformers() -> None:
    """transformers draws its own "Loading weights" bar; off a terminal it only clutters logs."""
    import sys

    if not sys.stderr.isatty():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def to_numpy(features: torch.Tensor) -> np.ndarray:
    return features.detach().float().cpu().numpy()


def read_back(features: torch.Tensor) -> Callable[[], np.ndarray]:
    """A call giving ``features`` as a float32 array. On a GPU the copy into pinned host memory is
    queued behind the forward and only the call waits for it, so the host can prepare (or decode)
    the next batch while the device works; elsewhere the array is made at once."""
    import torch

    features = features.detach().float()
    if features.device.type != "cuda":
        ready = features.cpu().numpy()
        return lambda: ready
    host = torch.empty(features.shape, dtype=torch.float32, pin_memory=True)
    host.copy_(features, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()

    def wait() -> np.ndarray:
        copied.synchronize()
        return host.numpy()

    return wait


class Encoder(ABC):
    """A loaded encoder. ``dim`` equals ``spec.embed_dim``; a mismatch is caught on first encode."""

    modality: str = ""

    def __init__(self, spec: EncoderSpec, device: str):
        self.spec = spec
        self.device = device

    @property
    def dim(self) -> int:
        return self.spec.embed_dim

    @abstractmethod
    def encode(self, batch: Any) -> np.ndarray:
        """float32 array [N, embed_dim]."""

    def encode_queued(self, batch: Any) -> Callable[[], np.ndarray]:
        """Start encoding ``batch``; the returned call gives :meth:`encode`'s array. Encoders whose
        forward runs on a GPU return before it finishes (:class:`TorchVisionEncoder`), so extraction
        keeps one batch in flight; this default encodes at once."""
        ready = self.encode(batch)
        return lambda: ready

    def _check_dim(self, out: Any) -> Any:  # an array, or a tensor whose values may not be computed yet
        if out.ndim != 2 or out.shape[1] != self.spec.embed_dim:
            raise ProbeError(
                f"model {self.spec.name!r} produced features of shape {tuple(out.shape)}, "
                f"but its registry entry says embed_dim = {self.spec.embed_dim}; fix the entry"
            )
        return out


class VisionEncoder(Encoder):
    modality = "vision"

    def transform(self) -> SpecTransform:
        """PIL image (or an image ref, or encoded bytes) -> uint8 tensor [3, S, S] resized and cropped
        as the spec says (picklable for workers)."""
        from probe.encoders.preprocess import build_transform

        return build_transform(self.spec)

    def pixels(self, batch: torch.Tensor) -> torch.Tensor:
        """The batch on this encoder's device, normalised (uint8 in) or as given (float in)."""
        from probe.encoders.preprocess import normalize_batch

        return normalize_batch(batch, self.spec, self.device)


class TorchVisionEncoder(VisionEncoder):
    """A vision encoder whose :meth:`forward` is a torch model's: pixels in, pooled features out.
    Encoding runs it under inference mode and the device's autocast, and leaves the read-back queued
    (:func:`read_back`) until the features are asked for."""

    @abstractmethod
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels [N, 3, S, S] on the device -> pooled features [N, embed_dim]."""

    def encode(self, batch: torch.Tensor) -> np.ndarray:
        return self.encode_queued(batch)()

    def encode_queued(self, batch: torch.Tensor) -> Callable[[], np.ndarray]:
        import torch

        with torch.inference_mode(), autocast(self.device):
            out = self.forward(self.pixels(batch))
        self._check_dim(out)  # the shape is known before the device finishes
        return read_back(out)


class TextEncoder(Encoder):
    modality = "text"
    #: Encoders fitted on a corpus (TF-IDF) set this; the feature step then calls :meth:`fit`.
    needs_fit: bool = False

    def fit(self, texts: Sequence[str]) -> TextEncoder:
        return self

    def prepare(self, texts: Sequence[str]) -> list[str]:
        prefix = self.spec.text_prefix
        return [prefix + t for t in texts] if prefix else list(texts)
