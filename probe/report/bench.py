"""The benchmark cases a report folder holds (``reports/bench.json``, written by ``python -m
benchmarks``), and the line that says where and how they were measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def stamp_line(found: dict[str, Any]) -> str:
    """``at <commit> on <date>, <cpu> (<cores> cores)[, <gpu>]: <command>`` from a bench file's stamp."""
    commit = str(found.get("commit") or "an unknown commit")[:12]
    machine = f"{found.get('cpu', '?')} ({found.get('cores', '?')} cores)" + (f", {found['gpu']}" if found.get("gpu") else "")
    return f"at {commit} on {found.get('date', '?')}, {machine}: {found.get('command', '?')}"


def bench_cases(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The speed cases ``python -m benchmarks`` left in the report folder: ``{"cases": [...]}`` whose
    shown cases carry numbers ``ours_s``, ``baseline_s`` and ``ratio``, and the line saying where and
    how they were measured (its ``stamp``; None in files written before stamps). A file of another
    shape is named in one warning and left out of the page; the leaderboard is still written."""
    import logging
    import math

    if not path.exists():
        return [], None

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cases = data["cases"]
        if not isinstance(cases, list) or not all(isinstance(c, dict) for c in cases):
            raise TypeError("'cases' is not a list of objects")
        bad = next((c for c in cases if "ours_s" in c and not all(number(c.get(k)) for k in
                                                                  ("ours_s", "baseline_s", "ratio"))), None)
        if bad is not None:
            raise TypeError(f"case {bad.get('case', '?')!r} lacks a number among ours_s, baseline_s, ratio")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logging.getLogger("probe.report").warning("%s left out of the leaderboard: expected {\"cases\": [{\"case\", "
                                                  "\"ours_s\", \"baseline_s\", \"ratio\", ...}]} (%s: %s)", path,
                                                  type(exc).__name__, exc)
        return [], None
    found = data.get("stamp")
    return cases, stamp_line(found) if isinstance(found, dict) else None
