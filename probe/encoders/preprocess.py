"""Image preprocessing built from a registry entry (decode, resize, centre crop, normalise)."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from probe.encoder_spec import EncoderSpec

#: names decoded by torchvision when their bytes are a complete RGB or greyscale JPEG
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
#: how JPEG files and shard members become pixels; part of every vision cache key, so features
#: decoded one way never serve a request of another
JPEG_DECODER = "torchvision"
#: the same decoding done on a CUDA device (nvjpeg), which may round otherwise: cached apart
JPEG_DECODER_CUDA = JPEG_DECODER + "-cuda"


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
        from torchvision.io import ImageReadMode, decode_jpeg

        if not decodable(data):
            return None
        try:
            pixels = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except RuntimeError:  # PIL's path says what is wrong
            return None
        return self.crop(pixels)

    def crop(self, pixels: Any):
        """Decoded uint8 pixels [3, H, W] or a batch [N, 3, H, W] of one size (on any device) resized
        and centre-cropped as PIL's path does."""
        from torchvision.transforms.v2 import functional as F

        pixels = F.resize(pixels, [self.resize], interpolation=self.interpolation, antialias=True)
        return F.center_crop(pixels, [self.size, self.size])


def decodable(data: bytes) -> bool:
    """Whether torchvision may decode ``data``: a complete JPEG (start and end markers) whose header
    PIL accepts (no decompression bomb) and whose pixels are RGB or greyscale (not CMYK)."""
    from PIL import Image

    if data[:3] != b"\xff\xd8\xff" or data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        return False
    try:
        with Image.open(io.BytesIO(data)) as header:  # reads the header only
            return header.format == "JPEG" and header.mode in ("RGB", "L")
    except Exception:  # PIL's bomb error or an unreadable header: PIL's path says what is wrong
        return False


class DeviceDecoding(SpecTransform):
    """JPEGs decoded on the encoder's device (nvjpeg on a GPU), a batch at a time, in the main
    process: data-loader workers only read bytes, so decoding no longer bounds a GPU's extraction by
    its host's cores. Anything else is decoded in the workers as :class:`SpecTransform` does.

    A worker's item is a JPEG's bytes (a 1-D uint8 tensor) or finished pixels [3, S, S];
    :meth:`collate` keeps them in a list and :meth:`finish` turns the list into the usual batch. A
    JPEG the device cannot decode is decoded by PIL there, and one PIL cannot read is listed as bad."""

    @classmethod
    def of(cls, transform: SpecTransform) -> DeviceDecoding:
        made = cls.__new__(cls)
        made.__dict__.update(transform.__dict__)
        return made

    def from_bytes(self, data: bytes, name: str):
        import torch

        if name.lower().endswith(JPEG_SUFFIXES) and decodable(data):
            return torch.frombuffer(bytearray(data), dtype=torch.uint8), name
        return super().from_bytes(data, name)

    @staticmethod
    def collate(items: list) -> tuple[list[int], list, list[tuple[int, str]]]:
        good = [(p, t) for p, t, _ in items if t is not None]
        return [p for p, _ in good], [t for _, t in good], [(p, err) for p, t, err in items if t is None]

    def finish(self, positions: list[int], items: list, device: str) -> tuple[list[int], Any, list[tuple[int, str]]]:
        """``(positions, uint8 batch [N, 3, S, S] on device or None, bad)`` of a collated batch."""
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        from probe.data.images import open_rgb

        encoded = [i for i, item in enumerate(items) if isinstance(item, tuple)]
        decoded: dict[int, Any] = {}
        if encoded:
            try:
                decoded = dict(zip(encoded, decode_jpeg([items[i][0] for i in encoded], mode=ImageReadMode.RGB,
                                                        device=device), strict=True))
            except RuntimeError:  # one bad image fails the batch: decode each on its own
                for i in encoded:
                    with contextlib.suppress(RuntimeError):  # PIL decides below
                        decoded[i] = decode_jpeg(items[i][0], mode=ImageReadMode.RGB, device=device)
        resized = self._crop_by_size(decoded)
        kept, crops, bad = [], [], []
        for i, (position, item) in enumerate(zip(positions, items, strict=True)):
            try:
                if not isinstance(item, tuple):
                    crops.append(item.to(device, non_blocking=True))
                elif i in resized:
                    crops.append(resized[i])
                else:
                    data, name = item
                    crops.append(self(open_rgb(io.BytesIO(data.numpy().tobytes()), name)).to(device))
                kept.append(position)
            except (OSError, ValueError) as exc:
                bad.append((position, f"{type(exc).__name__}: {exc}"))
        return kept, torch.stack(crops) if crops else None, bad


    def _crop_by_size(self, decoded: dict[int, Any]) -> dict[int, Any]:
        """Decoded images resized and cropped a group of one size at a time: one batched resize per
        group, where one per image would cost a GPU a few kernel launches per image (shards written
        by img2dataset and the like hold many images of one size). Each image's pixels are those of
        resizing it alone."""
        import torch

        groups: dict[tuple[int, ...], list[int]] = {}
        for i, pixels in decoded.items():
            groups.setdefault(tuple(pixels.shape), []).append(i)
        out: dict[int, Any] = {}
        for same in groups.values():
            out.update(zip(same, self.crop(torch.stack([decoded[i] for i in same])), strict=True))
        return out


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
