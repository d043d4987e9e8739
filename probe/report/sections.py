"""The leaderboard's sections: one per training dataset and benchmark, each ranked by its own score.

Results of different data are never ranked against each other: a section holds the rows of one
(fitted on, scored on) scope, its rank column follows that benchmark's primary score, and its table
shows only the columns some row of it has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from probe.records import keys
from probe.report.answer import answer
from probe.report.table import COLUMNS

#: What each primary score means, said above its section's table.
SCORE_MEANING = {
    keys.PROBING_SCORE: "probing score: mean of image→text and text→image Recall@10 on held-out pairs (SAIL)",
    keys.ZEROSHOT_MEAN_TOP1: "zero-shot top-1 accuracy (mean over the benchmark's label tasks)",
    keys.COMPOSITIONAL_GROUP: "Winoground group score",
}
#: Columns every section states once in its heading instead of on each row.
_IN_HEADING = ("dataset", "benchmark", "protocol")
#: Columns the page shows at first; the others are one click away in the column chooser.
#: (head and loss are in the config's name, so their own columns start hidden)
_SHOWN_FIRST = {"config", keys.PROBING_SCORE, keys.ZEROSHOT_MEAN_TOP1,
                keys.retrieval("i2t_R@1"), keys.retrieval("i2t_R@10"), keys.retrieval("t2i_R@10"),
                keys.COMPOSITIONAL_GROUP, keys.VISION_KNN20, keys.TEXT_SCORE, keys.similarity("mutual_knn"),
                keys.similarity("cka"), "params_m", keys.FORECAST}


@dataclass
class Column:
    key: str
    header: str
    fmt: str
    shown: bool

    @property
    def numeric(self) -> bool:
        return bool(self.fmt)


@dataclass
class Section:
    """One (training dataset, benchmark) scope: its ranked rows, table columns and figures."""

    id: str
    dataset: str
    benchmark: str
    protocol: str
    metric: str
    rows: list[dict[str, Any]]
    columns: list[Column]
    plots: list[Any] = field(default_factory=list)
    #: the tab's opening answer (:func:`probe.report.answer.answer`), None without a scored real pair
    answer: dict[str, Any] | None = None
    #: each pair's best score as an HTML grid with intervals on hover (:mod:`probe.report.heat`)
    heat: Any = None

    @property
    def meaning(self) -> str:
        return SCORE_MEANING.get(self.metric, self.metric)

    @property
    def n_controls(self) -> int:
        return sum(1 for row in self.rows if row["vision_control"] or row["text_control"])


def competition_ranks(values: list[float]) -> list[int]:
    """Ranks of already descending ``values`` as sports tables give them: ties share the better rank
    and the next rank skips (1, 2, 2, 4)."""
    ranks: list[int] = []
    for i, value in enumerate(values):
        ranks.append(ranks[-1] if i and value == values[i - 1] else i + 1)
    return ranks


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def build_sections(rows: list[dict[str, Any]], selection_metric: str = keys.DEFAULT_SELECTION) -> list[Section]:
    """Group the leaderboard rows by (fitted on, scored on); rank each group's real pairs by its
    primary score (controls are shown in score order but take no rank, so real ranks have no gaps).

    Every row gets ``rank`` (None for a control) and ``score`` = ``(metric, value, low, high)``; rows
    without any primary score (nothing scored) rank last."""
    scopes: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        row["score"] = keys.primary_interval(row, row.get("intervals"))
        scopes.setdefault((row["dataset"], row["benchmark"]), []).append(row)
    sections, used = [], set()
    for (dataset, benchmark), members in sorted(scopes.items()):
        members.sort(key=lambda r: -(r["score"][1] if r["score"] else float("-inf")))
        real = [r for r in members if not (r["vision_control"] or r["text_control"])]
        scored = [r["score"][1] if r["score"] else float("-inf") for r in real]
        for row in members:
            row["rank"] = None  # a control is a yardstick, shown beside the ranking, not in it
        for row, rank in zip(real, competition_ranks(scored), strict=True):
            row["rank"] = rank
        metric = next((r["score"][0] for r in members if r["score"]), keys.PROBING_SCORE)
        columns = [Column(key, header, fmt, key in _SHOWN_FIRST) for key, header, fmt in COLUMNS
                   if key not in ("vision", "text", *_IN_HEADING)
                   and key not in keys.interval_bounds(keys.PROBING_SCORE)  # drawn inside the score cell
                   and (not fmt or any(r.get(key) is not None for r in members))]
        ident = _slug(f"{benchmark}-{dataset}")
        while ident in used:
            ident += "-x"
        used.add(ident)
        protocols = sorted({r["protocol"] for r in members})
        sections.append(Section(ident, dataset, benchmark, " / ".join(protocols), metric, members, columns,
                                answer=answer(members, selection_metric)))
    return sections
