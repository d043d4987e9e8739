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
