"""Rank correlation with honest p-values for the handful of pairs a sweep often has.

scipy's Spearman p-value comes from a t approximation that is badly off for small n (it gives
p = 0 for three perfectly ordered points); below 9 pairs the p-value here is exact, by enumerating
every ordering (two-sided).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

EXACT_UP_TO = 8


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """``(rho, two-sided p)``; exact permutation p for n <= 8, scipy's otherwise."""
    from scipy.stats import rankdata, spearmanr

    result = spearmanr(x, y)
    rho = float(result.statistic)
    n = len(x)
    if n > EXACT_UP_TO or not np.isfinite(rho):
        return rho, float(result.pvalue)
    rx, ry = rankdata(x), rankdata(y)
    hits = total = 0
    for perm in itertools.permutations(range(n)):
        r = np.corrcoef(rx, ry[list(perm)])[0, 1]
        hits += abs(r) >= abs(rho) - 1e-12
        total += 1
    return rho, hits / total


def spearman_interval(x: Sequence[float], y: Sequence[float], *, n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of Spearman's r over the pairs ``(x[i], y[i])``, resampled with
    replacement. A resample whose ranks are all tied on a side has no correlation and is left out
    (with few points this happens; the interval is of the resamples that have one)."""
    values = _resampled_spearman([np.asarray(x, dtype=np.float64)], np.asarray(y, dtype=np.float64), n_boot, seed)[0]
    return _percentile_interval(values, level)


def spearman_difference_interval(a: Sequence[float], b: Sequence[float], y: Sequence[float], *, n_boot: int = 2000,
                                 level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """How much better ranking ``a`` agrees with ``y`` than ranking ``b`` does: ``(r_a - r_b, low, high)``,
    the interval from a paired bootstrap (the same resampled pairs for both), so the two rankings'
    shared luck cancels. An interval above 0 says ``a`` agrees better on these pairs."""
    from scipy.stats import spearmanr

    y_arr = np.asarray(y, dtype=np.float64)
    both = _resampled_spearman([np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)], y_arr, n_boot, seed)
    observed = float(spearmanr(a, y).statistic) - float(spearmanr(b, y).statistic)
    return (observed, *_percentile_interval(both[0] - both[1], level))


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of the finite ``values`` (a resample without a
    correlation is NaN and left out)."""
    finite = values[np.isfinite(values)]
    tail = (1 - level) / 2 * 100
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def _resampled_spearman(xs: Sequence[np.ndarray], y: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(len(xs), n_boot)`` Spearman r of each ``x`` with ``y`` on the same bootstrap resamples of the
    pairs; NaN where a resample leaves a side constant."""
    from scipy.stats import rankdata

    n = len(y)
    if n < 3 or any(len(x) != n for x in xs):
        raise ValueError(f"a Spearman interval needs 3 or more pairs of equal length, got {[len(x) for x in xs]} and {n}")
    rows = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    ry = rankdata(y[rows], axis=1)
    out = np.empty((len(xs), n_boot))
    with np.errstate(invalid="ignore", divide="ignore"):
        for i, x in enumerate(xs):
            rx = rankdata(x[rows], axis=1)
            cx, cy = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
            out[i] = (cx * cy).sum(axis=1) / np.sqrt((cx**2).sum(axis=1) * (cy**2).sum(axis=1))
    return out
