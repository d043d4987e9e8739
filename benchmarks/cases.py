"""Benchmark cases. Each returns our time, the baseline's time (same process, same inputs), their
ratio and whether the two agree, so a fast wrong answer fails."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def cli_help() -> dict:
    """`probe --help` wall time against `python -c pass`: the CLI must not import torch."""

    def run(code: str) -> Callable[[], object]:
        return lambda: subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)

    ours = best_of(run("import sys; from probe.cli import main; sys.argv=['probe','--help']; main(['--help'])"), 7)
    base = best_of(run("pass"), 7)
    heavy = subprocess.run(
        [sys.executable, "-c", "import sys; from probe.cli import main; main(['--help']); "
         "print(sorted(m for m in ('torch','timm','transformers','numpy','pandas') if m in sys.modules))"],
        capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return {"case": "cli_help", "ours_s": ours, "baseline_s": base, "ratio": ours / base,
            "agree": heavy == "[]", "note": f"best of 7, +{(ours - base) * 1000:.0f} ms; heavy modules imported: {heavy}"}


def extraction(model: str = "efficientnet/lite0-in1k", split: str = "val", batch_size: int = 32,
               workers: int = 2, device: str | None = None, rounds: int = 3) -> dict:
    """End-to-end `extract` (draw, decode, preprocess in workers, encode, cache write) against the
    encoder's pure forward on the same images preloaded as tensors, same batch size."""
    import tempfile
    from pathlib import Path

    import numpy as np
    import torch

    from probe.data import get_dataset
    from probe.encoders import load_encoder
    from probe.features import split_features
    from probe.registry import Registry

    spec = Registry.load().get(model)
    data = get_dataset("shapes").load(split)
    encoder = load_encoder(spec, device=device)
    transform = encoder.transform()
    tensors = torch.stack([transform(ref.load()) for ref in data.images])
    encoder.encode(tensors[:batch_size])  # warm-up (allocator, cuDNN autotune)

    def forward() -> np.ndarray:
        return np.concatenate([encoder.encode(tensors[i:i + batch_size]) for i in range(0, len(tensors), batch_size)])

    reference = forward()
    base_times, timings, result = [], [], None
    for _ in range(rounds):  # interleaved, so a noisy neighbour slows both sides alike
        base_times.append(best_of(forward, 1))
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = split_features(spec, data, cache_dir=Path(tmp), batch_size=batch_size, workers=workers,
                                    progress=False, encoder=encoder)
            timings.append(time.perf_counter() - start)
    base = min(base_times)
    ours = min(timings)
    assert result is not None
    agree = bool(np.allclose(result.features, reference, atol=1e-4 if encoder.device == "cpu" else 5e-2))
    n = len(data.images)
    return {"case": f"extraction[{model},{encoder.device}]", "ours_s": ours, "baseline_s": base,
            "ratio": base / ours, "agree": agree, "device": encoder.device,
            "note": f"{n / ours:.1f} img/s end to end vs {n / base:.1f} img/s pure forward "
                    f"= {100 * base / ours:.0f}% (target >= 95%); batch {batch_size}, workers {workers}"}


CASES: dict[str, Callable[[], dict]] = {"cli_help": cli_help, "extraction": extraction}
