"""What a benchmark figure is stamped with: the commit, the date, the machine (CPU model, cores, GPU
card) and the command, so a figure quoted anywhere can be traced to what produced it."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (``platform.processor()`` is empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_card() -> str | None:
    """The first CUDA device's name, or None on a machine without one."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def stamp(command: list[str]) -> dict[str, Any]:
    import torch

    from probe.records.git import git_revision

    return {"commit": git_revision(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "cpu": cpu_model(), "cores": os.cpu_count(), "gpu": gpu_card(), "torch": torch.__version__,
            "platform": platform.platform(), "command": " ".join(["python -m benchmarks", *command])}
