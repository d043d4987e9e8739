"""Image preprocessing built from a registry entry (resize, centre crop, normalise)."""

from __future__ import annotations

from typing import Any

from probe.registry import EncoderSpec


class SpecTransform:
    """Picklable callable so DataLoader workers can run it: RGB -> resize -> crop -> uint8 tensor.

    Normalisation happens later, on the whole batch and on the encoder's device
    (:func:`normalize_batch`): uint8 crosses the worker pipe and the PCIe bus at a quarter of the
    bytes, and one vectorised op per batch costs less than one per image.
    """

    def __init__(self, spec: EncoderSpec):
        from torchvision import transforms as T
        from torchvision.transforms import InterpolationMode

        assert spec.image_size and spec.mean and spec.std
        size = spec.image_size
        resize = int(size / spec.crop_pct) if spec.crop_pct < 1.0 else size
        modes = {
            "bicubic": InterpolationMode.BICUBIC,
            "bilinear": InterpolationMode.BILINEAR,
            "nearest": InterpolationMode.NEAREST,
        }
        self._pipeline = T.Compose(
            [
                T.Resize(resize, interpolation=modes[spec.interpolation], antialias=True),
                T.CenterCrop(size),
                T.PILToTensor(),
            ]
        )

    def __call__(self, image: Any):
        return self._pipeline(image.convert("RGB"))


def build_transform(spec: EncoderSpec) -> SpecTransform:
    return SpecTransform(spec)


def normalize_batch(batch: Any, spec: EncoderSpec, device: str) -> Any:
    """uint8 [N, 3, S, S] -> float32 normalised on ``device``; float input passes through (moved)."""
    import torch

    batch = batch.to(device, non_blocking=True)
    if batch.dtype != torch.uint8:
        return batch
    assert spec.mean and spec.std
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1) * 255
    return (batch.float() - mean) / std
