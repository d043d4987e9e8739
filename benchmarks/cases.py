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


CASES: dict[str, Callable[[], dict]] = {"cli_help": cli_help}
