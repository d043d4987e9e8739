"""Each pair's best score as an HTML grid: vision encoders down, text encoders across, the cell coloured
on the shown values' range (as the PNG heatmap) and its 95% interval on hover, which an image cannot carry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class HeatGrid:
    visions: list[str]
    texts: list[str]
    #: (vision, text) -> {"value", "low", "high", "background", "colour", "title"}
    cells: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    controls: set[str] = field(default_factory=set)


def heat_grid(best: list[dict[str, Any]]) -> HeatGrid | None:
    """The grid of ``best`` (each pair's best configuration, with its ``score``); None without scores."""
    import numpy as np
    from matplotlib import colormaps, colors

    from probe.report.plots import colour_range

    rows = [r for r in best if r.get("score")]
    if not rows:
        return None
    grid = HeatGrid(sorted({r["vision"] for r in rows}), sorted({r["text"] for r in rows}))
    grid.controls = {r["vision"] for r in rows if r["vision_control"]} | {r["text"] for r in rows if r["text_control"]}
    low, top = colour_range(np.array([[r["score"][1] for r in rows]], dtype=float))
    viridis = colormaps["viridis"]
    for r in rows:
        _, value, lo, hi = r["score"]
        share = (value - low) / (top - low) if top > low else 0.5
        interval = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else " (no interval)"
        grid.cells[(r["vision"], r["text"])] = {
            "value": value, "low": lo, "high": hi, "background": colors.to_hex(viridis(share)),
            "colour": "#ffffff" if share < 0.6 else "#000000",
            "title": f"{r['vision']} × {r['text']} ({r['config']}): {value:.3f}{interval}"}
    return grid
