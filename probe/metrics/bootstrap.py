"""Bootstrap intervals for scores that are sums over independent units (images, swap pairs).

A score ``sum(num) / sum(den)`` over units is recomputed on resamples of the units drawn with
replacement; the interval is the percentile interval. Resamples are drawn as multinomial counts,
in chunks, so memory stays ``chunk x units`` however many resamples are asked for.
"""

from __future__ import annotations

import numpy as np


def ratio_interval(num: np.ndarray, den: np.ndarray | None = None, *, n_boot: int = 1000, level: float = 0.95,
                   seed: int = 0, chunk: int = 100) -> tuple[float, float]:
    """Percentile interval of ``sum(num[S]) / sum(den[S])`` over resamples ``S`` of the units.

    ``den`` defaults to ones (the score is then a mean over units). Units with ``den == 0`` may be
    drawn but add nothing, as in the full-sample score.
    """
    num = np.asarray(num, dtype=np.float64)
    den = np.ones_like(num) if den is None else np.asarray(den, dtype=np.float64)
    n = len(num)
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = []
    for start in range(0, n_boot, chunk):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_boot - start)).astype(np.float64)
        totals = counts @ den
        stats.append(np.where(totals > 0, counts @ num / np.maximum(totals, 1e-300), np.nan))
    values = np.concatenate(stats)
    alpha = (1 - level) / 2
    return float(np.nanquantile(values, alpha)), float(np.nanquantile(values, 1 - alpha))


def per_class_recall_interval(top1_hits: np.ndarray, labels: np.ndarray, *, n_boot: int = 1000,
                              level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean per-class recall, resampling images within each class (a
    stratified bootstrap: the score weighs classes equally, so each keeps its size). Resampling the
    n_c images of class c with replacement makes its recall Binomial(n_c, r_c) / n_c, drawn directly."""
    labels = np.asarray(labels)
    counts = np.bincount(labels)
    present = counts > 0
    if not present.any():
        return float("nan"), float("nan")
    n = counts[present]
    recall = np.bincount(labels, weights=np.asarray(top1_hits, dtype=np.float64))[present] / n
    values = (np.random.default_rng(seed).binomial(n, recall, size=(n_boot, len(n))) / n).mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))
