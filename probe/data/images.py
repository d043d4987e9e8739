"""Decoding one image for an encoder, with every way it can fail turned into an OSError/ValueError
that extraction skips and lists (``--on-bad-image skip``) or reports in one line.

- PIL's decompression-bomb *error* (over twice ``Image.MAX_IMAGE_PIXELS``) is not an OSError: it is
  re-raised as a ValueError so one hostile file cannot abort a sweep; the *warning* below that is
  silenced (the image decodes; a 10,000 x 10,000 photo is large, not hostile).
- 16-bit greyscale (``I;16``) is scaled to 8 bits, not clipped to white; transparency is composited
  on white, so a cut-out is not pasted on black.
"""

from __future__ import annotations

import warnings
from typing import Any


def open_rgb(source: Any, name: str | None = None, max_side: int | None = None) -> Any:
    """An RGB PIL image from a path or file object, no larger than ``max_side`` on its long side
    when one is given (JPEGs then decode at a fraction of their size)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                if max_side and max(image.size) > max_side:
                    image.draft("RGB", (max_side, max_side))
                image.load()
                rgb = to_rgb(image)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{name or source}: refused as a decompression bomb ({exc})") from None
    if max_side and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return rgb


def to_rgb(image: Any) -> Any:
    """RGB for any PIL mode: 16-bit greyscale scaled (not clipped), transparency composited on white."""
    import numpy as np
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")
