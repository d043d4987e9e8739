"""Image preprocessing built from a registry entry (decode, resize, centre crop, normalise)."""

from __future__ import annotations

import io
from typing import Any

from probe.registry import EncoderSpec

#: names decoded by torchvision when their bytes are a complete RGB or greyscale JPEG
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
#: how JPEG files and shard members become pixels; part of every vision cache key, so features
#: decoded one way never serve a request of another
JPEG_DECODER = "torchvision"


class SpecTransform:
    """Picklable callable so DataLoader workers can run it: RGB -> resize -> crop -> uint8 tensor.

    A JPEG read from a file or a shard (:meth:`from_ref`, :meth:`from_bytes`) is decoded by
    torchvision (libjpeg-turbo, as PIL uses) and resized as a uint8 tensor: about twice as fast as
    PIL's decode and resize for camera-sized images, which is what bounds extraction on a GPU, and
    within 2 of 255 levels of it per pixel. What it does not take (CMYK, a file cut short, other
    formats, images handed over already decoded) goes through PIL as before.

    Normalisation happens later, on the whole batch and on the encoder's device
    (:func:`normalize_batch`): uint8 crosses the worker pipe and the PCIe bus at a quarter of the
    bytes, and one vectorised op per batch costs less than one per image.
    """

    def __init__(self, spec: EncoderSpec):
        from torchvision import transforms as T
        from torchvision.transforms import InterpolationMode

        assert spec.image_size and spec.mean and spec.std
        self.size = spec.image_size
        self.resize = int(self.size / spec.crop_pct) if spec.crop_pct < 1.0 else self.size
        modes = {
            "bicubic": InterpolationMode.BICUBIC,
            "bilinear": InterpolationMode.BILINEAR,
            "nearest": InterpolationMode.NEAREST,
        }
        self.interpolation = modes[spec.interpolation]
        self._pipeline = T.Compose(
            [
                T.Resize(self.resize, interpolation=self.interpolation, antialias=True),
                T.CenterCrop(self.size),
                T.PILToTensor(),
            ]
        )

    def __call__(self, image: Any):
        return self._pipeline(image.convert("RGB"))

    def from_ref(self, ref: Any):
        """The pixels of an image reference: a JPEG file or shard member from its bytes, anything
        else (procedural scenes, PNGs) from its own ``load``."""
        name = getattr(ref, "path", None) or (f"{ref.shard}:{ref.member}" if hasattr(ref, "member") else None)
        if name and str(name).lower().endswith(JPEG_SUFFIXES) and hasattr(ref, "read_bytes"):
            return self.from_bytes(ref.read_bytes(), str(name))
        return self(ref.load())

    def from_bytes(self, data: bytes, name: str):
        """The pixels of an encoded image named ``name`` (its suffix says whether it is a JPEG);
        OSError / ValueError for one that cannot be read, as :func:`probe.data.images.open_rgb`."""
        from probe.data.images import open_rgb

        pixels = self.jpeg(data) if name.lower().endswith(JPEG_SUFFIXES) else None
        return pixels if pixels is not None else self(open_rgb(io.BytesIO(data), name))

    def jpeg(self, data: bytes):
        """A complete RGB or greyscale JPEG decoded and resized by torchvision, or None where PIL
        must decide (CMYK, no end marker, a header PIL refuses, such as a decompression bomb)."""
        import torch
        from PIL import Image
        from torchvision.io import ImageReadMode, decode_jpeg
        from torchvision.transforms.v2 import functional as F

        if data[:3] != b"\xff\xd8\xff" or data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
            return None
        try:
            with Image.open(io.BytesIO(data)) as header:  # reads the header only
                if header.format != "JPEG" or header.mode not in ("RGB", "L"):
                    return None
            pixels = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except Exception:  # PIL's bomb error, torchvision's RuntimeError: PIL's path says what is wrong
            return None
        pixels = F.resize(pixels, [self.resize], interpolation=self.interpolation, antialias=True)
        return F.center_crop(pixels, [self.size, self.size])


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
