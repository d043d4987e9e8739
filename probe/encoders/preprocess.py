"""Image preprocessing built from a registry entry (resize, centre crop, normalise)."""

from __future__ import annotations

from typing import Any

from probe.registry import EncoderSpec


class SpecTransform:
    """Picklable callable so DataLoader workers can run it: RGB -> resize -> crop -> tensor -> normalise."""

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
                T.ToTensor(),
                T.Normalize(spec.mean, spec.std),
            ]
        )

    def __call__(self, image: Any):
        return self._pipeline(image.convert("RGB"))


def build_transform(spec: EncoderSpec) -> SpecTransform:
    return SpecTransform(spec)
