"""The report's layer-search part: for each pair a ``probe select --layers`` search compared, the
metric at every (vision layer, text layer) as a heatmap, the best pair boxed, with its value, interval
and p-value against the best a whole search finds on shuffled pairings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class LayerSearch:
    dataset: str
    split: str
    vision: str
    text: str
    metric: str
    best: tuple[int, int]
    value: float
    interval: tuple[float, float] | None
    p_value: float
    null_mean: float
    plot: Path | None = None


def layer_searches(records: list[Any], plots_dir: Path) -> list[LayerSearch]:
    """The newest successful layer search of each (corpus, split, pair, metric), its heatmap drawn."""
    newest: dict[tuple[str, ...], Any] = {}
    for stored in records:
        r = stored.record
        if not (r.ok and r.layers):
            continue
        key = (r.dataset, r.split, r.vision.name, r.text.name, r.layers["metric"])
        if key not in newest or r.created > newest[key].created:
            newest[key] = r
    out = []
    for (dataset, split, vision, text, metric), r in sorted(newest.items()):
        (value,) = r.metrics.values()
        interval = tuple(next(iter((r.intervals or {}).values()), ())) or None
        found = LayerSearch(dataset, split, vision, text, metric, (int(r.layers["best"][0]), int(r.layers["best"][1])),
                            float(value), interval,
                            float(r.layers["search_p"]), float(r.layers["search_null_mean"]))
        stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", f"layers-{dataset}-{split}-{vision}-{text}-{metric}")
        plots_dir.mkdir(parents=True, exist_ok=True)
        found.plot = layer_heatmap(r.layers, found, plots_dir / f"{stem}.png")
        out.append(found)
    return out


def layer_heatmap(layers: dict[str, Any], search: LayerSearch, path: Path) -> Path:
    """Vision layers down, text layers across, the metric in each cell, the best pair boxed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from probe.report.plots import colour_range, save_figure

    values = np.asarray(layers["values"], dtype=float)
    vision, text = list(layers["vision"]), list(layers["text"])
    fig, ax = plt.subplots(figsize=(2.4 + 0.45 * len(text), 1.6 + 0.32 * len(vision)))
    low, top = colour_range(values)
    image = ax.imshow(values, cmap="viridis", vmin=low, vmax=top, aspect="auto", origin="lower")
    if values.size <= 144:  # the numbers fit their cells
        for i in range(len(vision)):
            for j in range(len(text)):
                ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=7,
                        color="white" if values[i, j] < low + 0.6 * (top - low) else "black")
    i, j = vision.index(search.best[0]), text.index(search.best[1])
    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#cf222e", linewidth=2))
    ax.set_xticks(range(len(text)), [str(k) for k in text], fontsize=7)
    ax.set_yticks(range(len(vision)), [str(k) for k in vision], fontsize=7)
    ax.set_xlabel(f"{search.text} layer", fontsize=8)
    ax.set_ylabel(f"{search.vision} layer", fontsize=8)
    ax.set_title(f"best: vision {search.best[0]}, text {search.best[1]} (p = {search.p_value:.2g})", fontsize=9)
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label(search.metric, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return save_figure(fig, path, dpi=110, bbox_inches="tight")
