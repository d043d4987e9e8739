"""Report figures (matplotlib, Agg), drawn per leaderboard section (one training dataset and benchmark).

Every figure plots the section's primary score with its 95% bootstrap interval. Each is drawn twice
where the section has controls: with them (hollow markers, grey italic labels) and with real
encoders only, so the page's "show controls" switch reaches the plots and their statistics too.
A correlation with a property of one encoder (its kNN accuracy, its text score) is computed over
distinct encoders, each at its mean score over its partners: one encoder's several pairs are not
independent evidence. A property of the pair (a similarity metric) is correlated over pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from probe.records import keys

_MARKERS = "osD^vP*Xh<>pd8H"
_DPI = 100


@dataclass
class Plot:
    """One figure of a section: with every row, and with real encoders only (None when the section
    has no control, or when too little is left without them: ``controls`` tells which)."""

    title: str
    all: Path
    real: Path | None
    controls: bool


def _is_control(row: dict[str, Any]) -> bool:
    return bool(row["vision_control"] or row["text_control"])


def _score_label(metric: str) -> str:
    return {keys.PROBING_SCORE: "probing score (mean R@10)", keys.ZEROSHOT_MEAN_TOP1: "zero-shot top-1",
            keys.COMPOSITIONAL_GROUP: "Winoground group score"}.get(metric, metric)


def short_names(names: list[str]) -> dict[str, str]:
    """Each name without its family prefix (``efficientnet/lite0-in1k`` -> ``lite0-in1k``), unless
    that would make two of them read the same."""
    short = {name: name.split("/", 1)[-1] for name in names}
    return short if len(set(short.values())) == len(short) else {name: name for name in names}


def _errors(value: float, low: float | None, high: float | None) -> list[list[float]] | None:
    if low is None or high is None:
        return None
    return [[max(0.0, value - low)], [max(0.0, high - value)]]


def distinct_encoder_points(rows: list[dict[str, Any]], key: str, side: str) -> tuple[list[float], list[float]]:
    """``(values, mean scores)`` per distinct ``side`` encoder: its ``key`` value and its mean primary
    score over the pairs it is in."""
    by_encoder: dict[str, tuple[float, list[float]]] = {}
    for row in rows:
        by_encoder.setdefault(row[side], (row[key], []))[1].append(row["score"][1])
    names = sorted(by_encoder)
    return [by_encoder[n][0] for n in names], [float(np.mean(by_encoder[n][1])) for n in names]


def _legend(ax, texts: list[str], visions: list[str], colour: Callable, controls: bool) -> None:
    from matplotlib.lines import Line2D

    blank = Line2D([], [], linestyle="none")
    handles = [blank] + [Line2D([], [], marker="o", linestyle="none", color=colour(t)) for t in texts]
    short = short_names([*texts, *visions])
    labels = ["text (colour)"] + [short[t] for t in texts]
    handles += [blank] + [Line2D([], [], marker=_MARKERS[i % len(_MARKERS)], linestyle="none", color="#57606a")
                          for i, _ in enumerate(visions)]
    labels += ["vision (marker)"] + [short[v] for v in visions]
    if controls:
        handles += [blank, Line2D([], [], marker="o", linestyle="none", color="#57606a", mfc="none")]
        labels += ["", "hollow: a control\n(pixels, random weights,\nTF-IDF), not a real model"]
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
              handletextpad=0.4, borderaxespad=0)


def rank_headline(points: list[dict[str, Any]], key: str, unit: str) -> str:
    """Spearman's r of ``key`` against the score over the real pairs (or real encoders) first, then,
    labelled, with the controls: controls sit far below real encoders on both axes, so a correlation
    over everything is mostly theirs."""
    from probe.metrics.rank import spearman

    def over(rows: list[dict[str, Any]], what: str) -> str:
        if unit == "pair":
            xs, ys, n = [r[key] for r in rows], [r["score"][1] for r in rows], f"{len(rows)} {what}pairs"
        else:
            xs, ys = distinct_encoder_points(rows, key, unit)
            n = f"{len(xs)} distinct {what}{unit} encoders (each at its mean over its pairs)"
        if len(xs) >= 3 and len(set(xs)) > 1:
            rho, p = spearman(xs, ys)
            return f"Spearman r = {rho:.2f} (p = {p:.2g}) over {n}"
        return f"too few distinct values for a rank correlation over {n}"

    real = [r for r in points if not _is_control(r)]
    line = over(real, "real ")
    if len(real) < len(points):
        line += f"; with the controls: {over(points, '').replace('Spearman ', '')}"
    return line


def chance_line(ax: Any, chance: float | None) -> None:
    """A dashed horizontal line at the score's chance level, labelled, where the score has one."""
    if chance is None:
        return
    ax.axhline(chance, color="#cf222e", linestyle=":", linewidth=1)
    ax.annotate(f"chance {chance:.3f}", (0.0, chance), xycoords=("axes fraction", "data"), xytext=(3, 3),
                textcoords="offset points", fontsize=7, color="#cf222e")


def scatter(rows: list[dict[str, Any]], key: str, label: str, unit: str, metric: str, path: Path,
            chance: float | None = None) -> Path | None:
    """``key`` against the primary score, one point per pair with its interval (and the similarity
    metric's interval and shuffled-pairing null where ``unit == "pair"``); Spearman's r over distinct
    ``unit`` encoders ("vision" / "text") or over pairs."""
    import matplotlib.pyplot as plt


    points = [r for r in rows if r.get(key) is not None and r["score"] is not None]
    if len(points) < 2:
        return None
    texts, visions = sorted({r["text"] for r in points}), sorted({r["vision"] for r in points})
    palette = plt.colormaps["tab10" if len(texts) <= 10 else "tab20"]

    def colour(text: str):
        return palette(texts.index(text) % palette.N)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for r in points:
        _, value, low, high = r["score"]
        x_bounds = r.get("similarity_intervals", {}).get(key) if unit == "pair" else None
        xerr = _errors(r[key], *x_bounds) if x_bounds else None
        c = colour(r["text"])
        ax.errorbar(r[key], value, yerr=_errors(value, low, high), xerr=xerr,
                    fmt=_MARKERS[visions.index(r["vision"]) % len(_MARKERS)], ms=6, color=c,
                    mfc="none" if _is_control(r) else c, elinewidth=0.7, capsize=2, alpha=0.85)
    nulls = [r["similarity_null"][key] for r in points if key in r.get("similarity_null", {})]
    if nulls:
        ax.axvline(float(np.mean(nulls)), color="#6e7781", linestyle="--", linewidth=1)
        ax.annotate("shuffled-pairing null", (float(np.mean(nulls)), 1.0), xycoords=("data", "axes fraction"),
                    xytext=(3, -10), textcoords="offset points", fontsize=7, color="#57606a")
    chance_line(ax, chance)
    title = f"{label} vs {_score_label(metric).split(' (')[0]}\n{rank_headline(points, key, unit)}"
    ax.set_title(title, fontsize=9)
    ax.set(xlabel=label, ylabel=_score_label(metric) + ", 95% interval")
    ax.grid(alpha=0.3)
    _legend(ax, texts, visions, colour, any(_is_control(r) for r in points))
    return _save(fig, path)


def colour_range(grid: np.ndarray) -> tuple[float, float]:
    """The colour scale of a heatmap: from its lowest to its highest shown value, so pairs close in
    score are still told apart by colour (a scale from 0 squeezed the real pairs into one band)."""
    low, high = float(np.nanmin(grid)), float(np.nanmax(grid))
    return low, max(high, low + 1e-9)


def heatmap(rows: list[dict[str, Any]], metric: str, path: Path) -> Path | None:
    """Vision x text grid of each pair's best score; controls' labels grey and italic."""
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["score"] is not None]
    if not rows:
        return None
    visions, texts = sorted({r["vision"] for r in rows}), sorted({r["text"] for r in rows})
    grid = np.full((len(visions), len(texts)), np.nan)
    control = {r["vision"]: r["vision_control"] for r in rows} | {r["text"]: r["text_control"] for r in rows}
    for r in rows:
        grid[visions.index(r["vision"]), texts.index(r["text"])] = r["score"][1]
    fig, ax = plt.subplots(figsize=(2.8 + 0.95 * len(texts), 1.6 + 0.42 * len(visions)))
    low, top = colour_range(grid)
    image = ax.imshow(grid, cmap="viridis", vmin=low, vmax=top, aspect="auto")
    for i in range(len(visions)):
        for j in range(len(texts)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if grid[i, j] < low + 0.6 * (top - low) else "black")
    short = short_names([*texts, *visions])
    ax.set_xticks(range(len(texts)), [short[t] for t in texts], rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(visions)), [short[v] for v in visions], fontsize=8)
    for tick, name in [*zip(ax.get_xticklabels(), texts, strict=True), *zip(ax.get_yticklabels(), visions, strict=True)]:
        if control[name]:
            tick.set_color("#6e7781")
            tick.set_fontstyle("italic")
    ax.set_xlabel("text encoder", fontsize=8)
    ax.set_ylabel("vision encoder", fontsize=8)
    ax.set_title("best head configuration per pair" + ("; grey italic: controls" if any(control.values()) else ""),
                 fontsize=9)
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label(_score_label(metric), fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return _save(fig, path)


def paired_means(rows: list[dict[str, Any]]) -> tuple[list[str], list[float] | None, int]:
    """``(configurations, their means, n)`` over the real pairs that have every configuration: a mean
    over different pairs per configuration would compare pairs, not configurations (three strong pairs
    tried with one head would lift that head's mean though every pair fell). ``None`` means when no
    real pair has them all."""
    rows = [r for r in rows if r["score"] is not None]
    configs = sorted({r["config"] for r in rows})
    scores = {(r["vision"], r["text"], r["config"]): r["score"][1] for r in rows}
    real = sorted({(r["vision"], r["text"]) for r in rows if not _is_control(r)})
    complete = [p for p in real if all((*p, c) in scores for c in configs)]
    if not complete:
        return configs, None, 0
    return configs, [float(np.mean([scores[(*p, c)] for p in complete])) for c in configs], len(complete)


def heads_losses(rows: list[dict[str, Any]], metric: str, path: Path, chance: float | None = None) -> Path | None:
    """One line per pair across its head configurations, and in bold the mean over the real pairs that
    have every configuration (:func:`paired_means`); nothing to draw with a single configuration."""
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["score"] is not None]
    configs, means, n_complete = paired_means(rows)
    if len(configs) < 2:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 2.5 + 1.0 * len(configs)), 4.0))
    pairs = sorted({(r["vision"], r["text"]) for r in rows})
    scores = {(r["vision"], r["text"], r["config"]): r["score"][1] for r in rows}
    for vision, text in pairs:
        xs = [i for i, c in enumerate(configs) if (vision, text, c) in scores]
        control = any(_is_control(r) for r in rows if (r["vision"], r["text"]) == (vision, text))
        ax.plot(xs, [scores[(vision, text, configs[i])] for i in xs], marker="o", ms=3, linewidth=0.8,
                color="#afb8c1" if control else "#0969da", alpha=0.6, linestyle="--" if control else "-")
    if means is not None:
        ax.plot(range(len(configs)), means, color="black", linewidth=2.2, marker="s",
                label=f"mean over the {n_complete} real pair(s) with every configuration")
    chance_line(ax, chance)
    ax.plot([], [], color="#0969da", label="one real pair")
    if any(_is_control(r) for r in rows):
        ax.plot([], [], color="#afb8c1", linestyle="--", label="a pair with a control")
    ax.set_xticks(range(len(configs)), configs, rotation=20, ha="right", fontsize=8)
    title = (f"head configurations: {n_complete} of {len(pairs)} pairs have all {len(configs)}" if means is not None
             else f"head configurations: no real pair has all {len(configs)}, so no mean is drawn")
    ax.set(ylabel=_score_label(metric), title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    return save_figure(fig, path, dpi=_DPI, bbox_inches="tight")


def save_figure(fig: Any, path: Path, **savefig: Any) -> Path:
    """``fig`` written to ``path`` as a PNG of at most 256 colours where that is smaller (it is, about
    3x, for plots: flat colours and anti-aliased edges): the leaderboard embeds every figure, twice
    where controls exist, so their bytes are the page's. Colours are matched, not dithered, so
    the text and lines stay as crisp as matplotlib drew them; then the figure is closed."""
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    drawn = io.BytesIO()
    fig.savefig(drawn, format="png", **savefig)
    plt.close(fig)
    full = drawn.getvalue()
    with Image.open(io.BytesIO(full)) as image:
        paletted = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                 dither=Image.Dither.NONE)
    small = io.BytesIO()
    paletted.save(small, format="png", optimize=True)
    path.write_bytes(min(full, small.getvalue(), key=len))
    return path


def section_plots(rows: list[dict[str, Any]], best: list[dict[str, Any]], metric: str, out_dir: Path,
                  stem: str, selection_metric: str = keys.DEFAULT_SELECTION) -> list[Plot]:
    """Every figure one section's rows support. ``best`` holds each pair's best configuration. Plots with
    the score on an axis draw its chance level where the records state one."""
    import matplotlib

    from probe.report.answer import chance_of

    chance = next((c for c in (chance_of(r, metric) for r in rows) if c is not None), None)

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str, Callable[[list, list, Path], Path | None]]] = [
        ("Score per vision x text pair", "heatmap", lambda a, b, p: heatmap(b, metric, p)),
        ("Selection metric vs score", "selection",
         lambda a, b, p: scatter(b, selection_metric, f"{selection_metric.split('/')[-1]} (probe select)", "pair",
                                 metric, p, chance)),
        ("Vision kNN accuracy vs score", "knn",
         lambda a, b, p: scatter(b, keys.VISION_KNN20, "vision kNN@20 accuracy", "vision", metric, p, chance)),
        ("MTEB-style text score vs score", "text-score",
         lambda a, b, p: scatter(b, keys.TEXT_SCORE, "MTEB-style text score", "text", metric, p, chance)),
        ("Head configurations", "heads", lambda a, b, p: heads_losses(a, metric, p, chance)),
    ]
    has_controls = any(_is_control(r) for r in rows)
    real_rows, real_best = [r for r in rows if not _is_control(r)], [r for r in best if not _is_control(r)]
    plots = []
    for title, name, draw in figures:
        everything = draw(rows, best, out_dir / f"{stem}-{name}.png")
        if everything is None:
            continue
        real = draw(real_rows, real_best, out_dir / f"{stem}-{name}-real.png") if has_controls else None
        plots.append(Plot(title, everything, real, has_controls))
    return plots
