"""Timing helpers shared by the benchmark cases: best-of-N wall time and the matmul floor."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_rate(n: int = 4096, device: str = "cpu") -> float:
    """The float32 matmul rate (FLOP/s) of ``device`` from an n x n x n product: the floor of every case."""
    import torch

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)

    def product() -> None:
        a @ b
        sync(device)

    product()
    return 2 * n**3 / best_of(product, 3)


def sync(device: str) -> None:
    """Wait for queued kernels, so wall times on an accelerator are the work's."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
