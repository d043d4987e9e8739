"""The report's partial-unfreezing part: ``probe tune`` results laid out as the paper's Table 2.

One table per (training corpus, pair, head configuration): a row per setting (which parts trained),
a column per benchmark holding its primary score as mean ± std over seeds, and the trainable
parameter counts. Settings in the paper's notation come in its order (the best setting first, then
its one-change variants). Beside each table, the validation probing score against samples seen, one
line per setting (mean over seeds, shaded ± std), as the paper's Figure 4 plots accuracy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probe.records import keys


@dataclass
class TuneTable:
    id: str
    dataset: str
    vision: str
    text: str
    head: str
    benchmarks: list[str]
    rows: list[dict[str, Any]]
    plot: Path | None = None
    metrics: dict[str, str] = field(default_factory=dict)  # benchmark -> its primary metric


def _head_key(config: Any) -> str:
    """The head configuration without its seed: seeds of one setting are pooled."""
    return json.dumps({k: v for k, v in config.to_dict().items() if k != "seed"}, sort_keys=True, default=str)


def _order(setting: str) -> tuple[int, str]:
    from probe.unfreezing.config import GRIDS

    grid = list(dict.fromkeys(GRIDS["to-freeze"] + GRIDS["to-freeze-16"]))
    return (grid.index(setting), setting) if setting in grid else (len(grid), setting)


def tune_tables(records: list[Any], plots_dir: Path) -> list[TuneTable]:
    """Tables (and their plots) of the successful tune records, grouped as the module says."""
    groups: dict[tuple[str, str, str, str], list[Any]] = {}
    for stored in records:
        r = stored.record
        if r.ok:
            groups.setdefault((r.dataset, r.vision.name, r.text.name, _head_key(r.config)), []).append(r)
    tables = []
    for index, ((dataset, vision, text, _), members) in enumerate(sorted(groups.items(), key=lambda g: g[0][:3])):
        benchmarks = sorted({r.benchmark.label for r in members})
        settings: dict[str, list[Any]] = {}
        for r in members:
            settings.setdefault(r.tune.setting, []).append(r)
        table = TuneTable(f"tune-{index}", dataset, vision, text, members[0].config.head + " + " + members[0].config.loss,
                          benchmarks, [])
        for setting in sorted(settings, key=_order):
            runs = settings[setting]
            row: dict[str, Any] = {"setting": setting, "seeds": len({r.seed for r in runs}),
                                   "vision_params": runs[0].tune.trainable_params.get("vision"),
                                   "text_params": runs[0].tune.trainable_params.get("text"),
                                   "samples_seen": int(np.mean([r.tune.samples_seen or 0 for r in runs])),
                                   "scores": {}}
            for label in benchmarks:
                found = [primary for r in runs if r.benchmark.label == label and (primary := keys.primary(r.metrics))]
                values = [value for _, value in found]
                if found:
                    table.metrics[label] = found[0][0]
                if values:
                    row["scores"][label] = {"mean": float(np.mean(values)),
                                            "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                                            "n": len(values)}
            table.rows.append(row)
        table.plot = _curves(settings, plots_dir / f"{table.id}.png", f"{vision} x {text}")
        tables.append(table)
    return tables


def _curves(settings: dict[str, list[Any]], path: Path, title: str) -> Path | None:
    """Validation probing score against samples seen, a line per setting (mean ± std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from probe.report.plots import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    drawn = 0
    for setting in sorted(settings, key=_order):
        curves = {}
        for r in settings[setting]:  # one run per seed: its history is the same on every benchmark
            history = [h for h in (r.training.history if r.training else []) if h.val_probing_score is not None]
            if history and r.seed not in curves and r.training.epochs_run:
                per_epoch = (r.cost.pairs_seen if r.cost else 0) / r.training.epochs_run
                curves[r.seed] = {h.epoch * per_epoch: h.val_probing_score for h in history}
        if not curves:
            continue
        xs = sorted(set.intersection(*(set(c) for c in curves.values())))
        if not xs:
            continue
        values = np.array([[c[x] for x in xs] for c in curves.values()])
        mean = values.mean(axis=0)
        (line,) = ax.plot(xs, mean, marker="o", markersize=3, label=f"{setting} ({len(curves)} seed(s))")
        if len(curves) > 1:
            spread = values.std(axis=0, ddof=1)
            ax.fill_between(xs, mean - spread, mean + spread, color=line.get_color(), alpha=0.15)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("samples seen")
    ax.set_ylabel("validation probing score")
    ax.set_title(re.sub(r"(.{60}).+", r"\1…", title), fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
