"""Report figures (matplotlib, Agg): what predicts probing, the vision x text heatmap, heads/losses.

Pair-level figures take ``best`` rows: each pair's best probing score over its head configurations
within one dataset and benchmark (:func:`probe.records.best_by_pair`); the heatmap draws one panel
per dataset and benchmark, so results of different data never share a cell. Controls are drawn
hollow so nobody mistakes them for real encoders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from probe.records import keys
from probe.records.keys import PROBING_SCORE


def _scatter(rows, key: str, label: str, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    from probe.metrics.rank import spearman

    points = [r for r in rows if r.get(key) is not None]
    if len(points) < 2:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 4))
    texts = sorted({r["text"] for r in points})
    colours = plt.colormaps["tab10"]
    for i, text in enumerate(texts):
        for control in (False, True):
            sel = [r for r in points if r["text"] == text and (r["vision_control"] or r["text_control"]) == control]
            if not sel:
                continue
            ax.scatter([r[key] for r in sel], [r[PROBING_SCORE] for r in sel], s=40,
                       facecolors="none" if control else colours(i % 10), edgecolors=colours(i % 10),
                       label=None if control else text)
    xs = [r[key] for r in points]
    title = f"{label} vs probing score"
    if len(points) >= 3 and len(set(xs)) > 1:
        rho, p = spearman(xs, [r[PROBING_SCORE] for r in points])
        title += f"\nSpearman r = {rho:.2f} (p = {p:.2g}, n = {len(points)})"
    ax.set(xlabel=label, ylabel="probing score (mean R@10)", title=title)
    ax.legend(fontsize=6, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def heatmap_grids(best: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[list[str], list[str], np.ndarray]]:
    """Per (dataset, benchmark): ``(visions, texts, grid)`` of best probing scores, NaN where a pair
    has no result. Each scope gets its own grid, so no cell mixes results of different data."""
    grids = {}
    for scope in sorted({(r["dataset"], r["benchmark"]) for r in best}):
        rows = [r for r in best if (r["dataset"], r["benchmark"]) == scope]
        visions, texts = sorted({r["vision"] for r in rows}), sorted({r["text"] for r in rows})
        grid = np.full((len(visions), len(texts)), np.nan)
        for r in rows:
            grid[visions.index(r["vision"]), texts.index(r["text"])] = r[PROBING_SCORE]
        grids[scope] = (visions, texts, grid)
    return grids


def _heatmap(best, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    grids = heatmap_grids(best)
    if not grids:
        return None
    widths = [max(5.0, 3.2 + 1.3 * len(texts)) for _, texts, _ in grids.values()]
    height = 1.8 + 0.45 * max(len(visions) for visions, _, _ in grids.values())
    fig, axes = plt.subplots(1, len(grids), figsize=(sum(widths), height), squeeze=False)
    for ax, ((dataset, benchmark), (visions, texts, grid)) in zip(axes[0], grids.items(), strict=True):
        top = max(1e-9, float(np.nanmax(grid)))
        image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=top, aspect="auto")
        for i in range(len(visions)):
            for j in range(len(texts)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if grid[i, j] < 0.6 * top else "black")
        ax.set_xticks(range(len(texts)), [t.split("/")[-1] for t in texts], rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(visions)), visions, fontsize=7)
        ax.set_title(f"probing score on {benchmark}, fitted on {dataset}\n(best head per pair)", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _heads(rows, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    configs = sorted({(r["head"], r["loss"]) for r in rows})
    if not configs:
        return None
    fig, ax = plt.subplots(figsize=(max(4.0, 1.5 + 1.1 * len(configs)), 3.8))
    data = [[r[PROBING_SCORE] for r in rows if (r["head"], r["loss"]) == c] for c in configs]
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(configs) + 1), [f"{h}\n{lo}" for h, lo in configs], fontsize=8)
    ax.set(ylabel="probing score", title="heads and losses across pairs")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_plots(rows: list[dict[str, Any]], best: list[dict[str, Any]], out_dir: Path,
               selection_metric: str = keys.DEFAULT_SELECTION) -> dict[str, Path]:
    """Write every figure the rows support; ``best`` are the rows of each pair's best head
    configuration per dataset and benchmark. Returns {title: png path}."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    # the figures plot the probing score: zero-shot-only benchmarks (no retrieval) are in the tables
    rows = [r for r in rows if r.get(keys.PROBING_SCORE) is not None]
    best = [r for r in best if r.get(keys.PROBING_SCORE) is not None]
    made = {
        "Vision kNN accuracy vs probing score": _scatter(best, keys.VISION_KNN20, "vision kNN@20 accuracy",
                                                         out_dir / "knn_vs_probing.png"),
        "MTEB-style text score vs probing score": _scatter(best, keys.TEXT_SCORE, "MTEB-style text score",
                                                           out_dir / "text_score_vs_probing.png"),
        "Selection metric vs probing score": _scatter(best, selection_metric, selection_metric.split("/")[-1],
                                                      out_dir / "selection_vs_probing.png"),
        "Probing score per vision x text pair": _heatmap(best, out_dir / "heatmap.png"),
        "Heads and losses": _heads(rows, out_dir / "heads_losses.png"),
    }
    return {title: path for title, path in made.items() if path is not None}
