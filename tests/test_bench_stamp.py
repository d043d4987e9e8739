"""Benchmark figures carry where and how they were measured: the commit, date, CPU model and cores,
GPU card and command (``benchmarks/stamp.py``), shown with the cases in the leaderboard."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_a_stamp_names_this_checkouts_commit_the_cpu_the_kernel_reports_and_the_command():
    from conftest import load_script

    found = load_script("benchmarks/stamp.py").stamp(["similarity", "knn"])
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert found["commit"].split("+")[0] == head
    assert found["cores"] == os.cpu_count() and found["command"] == "python -m benchmarks similarity knn"
    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")]
    assert found["cpu"] == names[0]
    import torch

    assert (found["gpu"] is None) == (not torch.cuda.is_available())
    from probe.report.bench import stamp_line

    assert stamp_line(found).startswith(f"at {head[:12]} on {found['date']}, {names[0]} ({os.cpu_count()} cores): ")
