"""The one encoder protocol every loader implements.

``encode(batch) -> float32 numpy [N, D]`` with the spec's pooling applied inside the encoder, so
pooling is decided by the registry entry and never scattered across callers. Vision encoders take
an already preprocessed float tensor ``[N, 3, H, W]`` (decoding and resizing happen in DataLoader
workers, see :meth:`VisionEncoder.transform`); text encoders take a list of strings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from probe.errors import ProbeError
from probe.registry import EncoderSpec

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

    def _check_dim(self, out: np.ndarray) -> np.ndarray:
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


class TextEncoder(Encoder):
    modality = "text"
    #: Encoders fitted on a corpus (TF-IDF) set this; the feature step then calls :meth:`fit`.
    needs_fit: bool = False

    def fit(self, texts: Sequence[str]) -> TextEncoder:
        return self

    def prepare(self, texts: Sequence[str]) -> list[str]:
        prefix = self.spec.text_prefix
        return [prefix + t for t in texts] if prefix else list(texts)
