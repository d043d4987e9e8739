"""``probe models --check``: load an entry and check what it outputs before a sweep relies on it.

A registry entry can be well-formed and still wrong: a width that is not the model's, a pooling that
yields NaN in half precision, dropout left on (two passes disagree), or weights that never loaded
(every input maps to the same vector). Each of those is checked on a few fixed inputs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from probe.encoder_spec import EncoderSpec

#: fixed text inputs: different topics, so a working encoder gives clearly different vectors
SENTENCES = ("a dog runs across the grass", "two red apples on a wooden table", "the stock market fell sharply today",
             "a man plays the guitar on stage", "snow covers the mountain peaks", "a bowl of hot soup")


@dataclass
class SanityResult:
    name: str
    ok: bool
    shape: tuple[int, ...] | None = None
    finite: bool | None = None
    deterministic: bool | None = None
    distinct: bool | None = None
    ms_per_input: float | None = None
    problem: str = ""

    @property
    def shape_text(self) -> str:
        return "x".join(map(str, self.shape)) if self.shape else "-"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fixed_images(count: int = len(SENTENCES)) -> list[Any]:
    """Deterministic, visibly different RGB images (colour fields, gradients, a checkerboard)."""
    import numpy as np
    from PIL import Image

    size = 96
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    planes = [
        np.stack([x, y, 1 - x], axis=-1),
        np.stack([np.full_like(x, 0.9), np.full_like(x, 0.2), np.full_like(x, 0.1)], axis=-1),
        np.repeat(((np.floor(x * 8) + np.floor(y * 8)) % 2)[..., None], 3, axis=-1),
        np.stack([np.sin(6 * x) * 0.5 + 0.5, y, np.cos(6 * y) * 0.5 + 0.5], axis=-1),
        np.stack([1 - y, 1 - y, np.full_like(x, 0.8)], axis=-1),
        np.stack([(x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.1] * 3, axis=-1) * np.array([0.1, 0.7, 0.2]),
    ]
    return [Image.fromarray((planes[i % len(planes)] * 255).astype(np.uint8)) for i in range(count)]


def sanity_check(spec: EncoderSpec, device: str | None = None, allow_download: bool | None = None) -> SanityResult:
    """Load ``spec`` and check its output on fixed inputs; never raises for a broken entry."""
    import numpy as np

    from probe.encoders import TextEncoder, VisionEncoder, load_encoder
    from probe.errors import ProbeError

    result = SanityResult(spec.name, ok=False)
    try:
        encoder = load_encoder(spec, device=device, allow_download=allow_download)
        if isinstance(encoder, VisionEncoder):
            import torch

            transform = encoder.transform()
            inputs: Any = torch.stack([transform(image) for image in fixed_images()])
        else:
            inputs = list(SENTENCES)
            if isinstance(encoder, TextEncoder) and encoder.needs_fit:
                encoder.fit(inputs)
        started = time.perf_counter()
        first = np.asarray(encoder.encode(inputs))
        result.ms_per_input = 1000 * (time.perf_counter() - started) / len(inputs)
        second = np.asarray(encoder.encode(inputs))
    except (ProbeError, OSError, RuntimeError, ValueError, ImportError) as exc:
        result.problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        return result
    result.shape = tuple(first.shape)
    result.finite = bool(np.isfinite(first).all())
    result.deterministic = first.shape == second.shape and bool(np.allclose(first, second, rtol=1e-4, atol=1e-5))
    if result.finite:
        # every pair of distinct inputs must differ by more than rounding: a collapsed encoder does not
        scale = float(np.abs(first).max()) or 1.0
        gaps = np.abs(first[:, None, :] - first[None, :, :]).max(axis=-1) / scale
        result.distinct = bool(gaps[~np.eye(len(first), dtype=bool)].min() > 1e-4)
    problems = []
    if result.shape != (len(SENTENCES), spec.embed_dim):
        problems.append(f"shape {result.shape_text}, expected {len(SENTENCES)}x{spec.embed_dim}")
    if not result.finite:
        problems.append("non-finite values")
    if not result.deterministic:
        problems.append("two passes over the same inputs differ")
    if result.distinct is False:
        problems.append("different inputs give the same vector")
    result.problem = "; ".join(problems)
    result.ok = not problems
    return result
