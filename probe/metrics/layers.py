"""Which layer of each encoder lines up best, with a null that knows it searched.

platonic-rep scores every pair of layers and keeps the best (``measure_alignment.py:53-69`` at
dcd76ba). The best of many values is optimistic: on two unrelated representations, the largest of
L_v x L_t noisy scores sits above what one layer pair scores. So the null here repeats the whole
search on each shuffled pairing of the rows (the same shuffle for every layer pair) and keeps its
maximum: the p-value of the best layer pair is against the best a search finds by chance, not against
one pair's chance level. The chosen pair's value also carries the subsample interval every
similarity metric has (:mod:`probe.metrics.resampling`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from probe.metrics.resampling import ScoreWithUncertainty, pair_values, resample_plan, side, with_uncertainty


@dataclass(frozen=True)
class LayerSearch:
    """The metric for every (vision layer, text layer) pair and the best one, judged against the
    search's own null."""

    metric: str
    #: ``values[i, j]``: vision layer ``i`` against text layer ``j``
    values: np.ndarray
    #: (vision layer, text layer) of the largest value
    best: tuple[int, int]
    #: the best pair's value with its subsample interval, and a null from the best pair alone
    best_score: ScoreWithUncertainty
    #: per shuffled pairing, the largest value over every layer pair: the null of a search
    search_null: np.ndarray
    #: share of shuffled searches whose best reaches the best value (with the +1 correction)
    p_value: float

    @property
    def search_null_mean(self) -> float:
        return float(self.search_null.mean())


def layer_search(vision_layers: Sequence[np.ndarray], text_layers: Sequence[np.ndarray], metric: str = "mutual_knn",
                 *, k: int = 10, n_boot: int = 50, n_perm: int = 50, seed: int = 0, level: float = 0.95,
                 normalize: bool = True) -> LayerSearch:
    """Score ``metric`` over every (vision layer, text layer) pair of features of the same rows.

    Each layer's side (neighbours, bases) is prepared once and combined with every layer of the
    other encoder, so L_v + L_t preparations serve L_v x L_t pairs; every pair shares one resampling
    plan, so the null's shuffles are the same across the search.
    """
    n = len(vision_layers[0])
    if any(len(x) != n for x in (*vision_layers, *text_layers)):
        raise ValueError("every layer must hold the same rows")
    plan = resample_plan(n, n_boot, n_perm, seed, k=k)
    v_sides = [side(x, plan, (metric,), k=k, normalize=normalize) for x in vision_layers]
    t_sides = [side(x, plan, (metric,), k=k, normalize=normalize) for x in text_layers]
    values = np.empty((len(v_sides), len(t_sides)))
    nulls = np.empty((len(v_sides), len(t_sides), len(plan.perms)))
    boots: dict[tuple[int, int], list[float]] = {}
    for i, a in enumerate(v_sides):
        for j, b in enumerate(t_sides):
            values[i, j], boots[i, j], null = pair_values(a, b, plan, metric)
            nulls[i, j] = null
    best = tuple(int(x) for x in np.unravel_index(int(np.argmax(values)), values.shape))
    search_null = nulls.reshape(-1, len(plan.perms)).max(axis=0) if len(plan.perms) else np.zeros(0)
    value = float(values[best])
    p = (1 + int((search_null >= value).sum())) / (1 + len(search_null)) if len(search_null) else float("nan")
    score = with_uncertainty(value, boots[best], list(nulls[best]), plan, level)  # type: ignore[index]
    return LayerSearch(metric, values, best, score, search_null, float(p))  # type: ignore[arg-type]
