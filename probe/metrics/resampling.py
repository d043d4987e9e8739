"""Uncertainty for the similarity metrics: resampling plans, prepared sides, intervals and nulls.

A :class:`ResamplePlan` fixes the subsamples (for the interval) and shuffles (for the null) of N
paired rows once; each encoder's :class:`Side` of it (neighbours, principal basis, self-HSIC on
every subsample) is prepared once and combined with any partner on the same rows, so V x T pairs
cost V + T preparations plus a cheap combination per pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from probe.errors import ProbeError
from probe.metrics.similarity import (
    METRICS,
    biased_linear_hsic,
    check_pair,
    cknna_from_knn,
    knn,
    mean_canonical_correlation,
    neighbour_overlap,
    principal_basis,
    standardized,
    unbiased_linear_hsic,
)
from probe.metrics.vectors import l2_normalize


@dataclass(frozen=True)
class ScoreWithUncertainty:
    value: float
    ci_low: float
    ci_high: float
    null_mean: float
    p_value: float
    n: int


@dataclass(frozen=True)
class ResamplePlan:
    """Which rows every resample of N pairs uses: ``boots`` subsample (without replacement) for the
    interval, ``perms`` shuffle the pairing for the null. Shared by every metric and every pair of
    encoders on the same rows, so each encoder's side of a resample is computed once."""

    n: int
    m: int
    boots: tuple[np.ndarray, ...]
    perms: tuple[np.ndarray, ...]


def resample_plan(n: int, n_boot: int, n_perm: int, seed: int = 0, subsample: float = 0.8, k: int = 10
                  ) -> ResamplePlan:
    rng = np.random.default_rng(seed)
    m = min(n, max(int(subsample * n), k + 2))
    boots = tuple(rng.choice(n, size=m, replace=False) for _ in range(n_boot))
    return ResamplePlan(n, m, boots, tuple(rng.permutation(n) for _ in range(n_perm)))


@dataclass
class _View:
    """One encoder's ingredients of the metrics on one set of rows (no copy of the features kept:
    with thousands of rows and dozens of encoders, per-resample copies would not fit in memory)."""

    source: np.ndarray  # all L2-normalised rows
    rows: np.ndarray | None  # None: all of them
    knn_idx: np.ndarray | None = None
    knn_val: np.ndarray | None = None
    basis: np.ndarray | None = None
    hsic_self: float | None = None
    unbiased_self: float | None = None


@dataclass
class Side:
    """One encoder's share of the metrics on the full rows and on every subsample of a plan.

    A vision encoder's neighbours, principal basis and self-HSIC on a subsample do not depend on the
    text encoder it is compared with, so ranking V x T pairs costs V + T of these, and each pair
    only combines two sides (set overlaps, a d x d product, a small SVD). A shuffled pairing only
    relabels the partner's neighbours and permutes its basis rows: no recomputation at all.
    """

    full: _View
    boots: list[_View]
    metrics: tuple[str, ...]
    k: int
    dim: int


def side(x: Any, plan: ResamplePlan, metrics: Sequence[str] = tuple(METRICS), k: int = 10, dim: int = 10,
         normalize: bool = True, standardize_svcca: bool = False) -> Side:
    """Prepare one encoder's features (rows aligned with its partners') for :func:`pair_scores`:
    rows L2-normalised unless ``normalize=False``; with ``standardize_svcca`` each subsample's
    features are scaled to unit variance before its SVCCA basis (platonic-rep's ``svcca``)."""
    for metric in metrics:
        if metric not in METRICS:
            raise ProbeError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    x, _ = check_pair(x, x, k if {"mutual_knn", "cknna"} & set(metrics) else None)
    if x.shape[0] != plan.n:
        raise ProbeError(f"features have {x.shape[0]} rows but the resample plan is for {plan.n}")
    if "cknna" in metrics and plan.m < 4:
        raise ProbeError(f"CKNNA needs at least 4 rows; got {plan.m}")
    if "svcca" in metrics and not 1 <= dim <= min(x.shape[1], plan.m - 1):
        raise ProbeError(f"svcca dim must be between 1 and {min(x.shape[1], plan.m - 1)}; got {dim}")
    if "unbiased_cka" in metrics and plan.m < 4:
        raise ProbeError(f"unbiased CKA needs at least 4 rows; got {plan.m}")
    if normalize:
        x = l2_normalize(x)

    def view(rows: np.ndarray | None) -> _View:
        sub = x if rows is None else x[rows]
        out = _View(x, rows)
        if {"mutual_knn", "cknna"} & set(metrics):
            out.knn_idx, out.knn_val = knn(sub, k)
        if "svcca" in metrics:
            out.basis = principal_basis(standardized(sub) if standardize_svcca else sub, dim)
        if "cka" in metrics:
            out.hsic_self = biased_linear_hsic(sub, sub)
        if "unbiased_cka" in metrics:
            out.unbiased_self = unbiased_linear_hsic(sub, sub)
        return out

    return Side(view(None), [view(rows) for rows in plan.boots], tuple(metrics), k, dim)


def _relabelled(idx: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Neighbour indices of ``x[perm]`` from those of ``x``: row i is old row perm[i]."""
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm))
    return inverse[idx[perm]]


def _pair_value(metric: str, a: _View, b: _View, perm: np.ndarray | None = None) -> float:
    """One metric for two views of the same rows; ``perm`` shuffles b's rows (the null)."""
    if metric in ("mutual_knn", "cknna"):
        assert a.knn_idx is not None and a.knn_val is not None and b.knn_idx is not None and b.knn_val is not None
        idx_b, val_b = b.knn_idx, b.knn_val
        if perm is not None:
            idx_b, val_b = _relabelled(idx_b, perm), val_b[perm]
        if metric == "mutual_knn":
            return neighbour_overlap(a.knn_idx, idx_b)
        return cknna_from_knn(a.knn_idx, a.knn_val, idx_b, val_b)
    if metric == "svcca":
        assert a.basis is not None and b.basis is not None
        return mean_canonical_correlation(a.basis, b.basis if perm is None else b.basis[perm])
    rows_a = slice(None) if a.rows is None else a.rows
    rows_b = slice(None) if b.rows is None else b.rows
    if perm is not None:
        rows_b = perm if b.rows is None else b.rows[perm]
    if metric == "unbiased_cka":
        assert a.unbiased_self is not None and b.unbiased_self is not None
        cross, denom = (unbiased_linear_hsic(a.source[rows_a], b.source[rows_b]),
                        np.sqrt(max(a.unbiased_self, 0.0) * max(b.unbiased_self, 0.0)))
        return float(cross / denom) if denom > 0 else 0.0
    assert a.hsic_self is not None and b.hsic_self is not None
    cross = biased_linear_hsic(a.source[rows_a], b.source[rows_b])
    denom = np.sqrt(max(a.hsic_self, 0.0) * max(b.hsic_self, 0.0))
    return float(cross / denom) if denom > 0 else 0.0


def pair_scores(a: Side, b: Side, plan: ResamplePlan, level: float = 0.95) -> dict[str, ScoreWithUncertainty]:
    """Every metric both sides were prepared for, with its interval and shuffled-pairing null."""
    if a.k != b.k or a.dim != b.dim:
        raise ProbeError("both sides must be prepared with the same k and dim")
    return {metric: with_uncertainty(*pair_values(a, b, plan, metric), plan, level)
            for metric in (m for m in a.metrics if m in b.metrics)}


def pair_values(a: Side, b: Side, plan: ResamplePlan, metric: str) -> tuple[float, list[float], list[float]]:
    """``(value, subsample values, shuffled-pairing values)`` of one metric for two prepared sides:
    what an interval and a null are made of (a layer search takes the maximum of the null values over
    its layer pairs, shuffle by shuffle)."""
    value = _pair_value(metric, a.full, b.full)
    boots = [_pair_value(metric, va, vb) for va, vb in zip(a.boots, b.boots, strict=True)]
    nulls = [_pair_value(metric, a.full, b.full, perm) for perm in plan.perms]
    return value, boots, nulls


def with_uncertainty(value: float, boots: list[float], nulls: list[float], plan: ResamplePlan,
                      level: float) -> ScoreWithUncertainty:
    alpha = (1 - level) / 2
    low, high = np.nan, np.nan
    if boots:
        # A subsample of m of the n pairs is a smaller problem, so its values are shifted (k neighbours
        # among fewer points; spurious canonical correlations grow as N shrinks towards d), and
        # without replacement they spread less than new data would. Centre on the full-sample value
        # and widen by the delete-d jackknife factor sqrt(m / d).
        q_low, q_high = np.quantile(boots, [alpha, 1 - alpha])
        widen = np.sqrt(plan.m / max(plan.n - plan.m, 1))
        centre = float(np.median(boots))
        low, high = value - widen * (q_high - centre), value + widen * (centre - q_low)
    p = (1 + sum(v >= value for v in nulls)) / (1 + len(nulls)) if nulls else float("nan")
    return ScoreWithUncertainty(value, float(low), float(high), float(np.mean(nulls)) if nulls else float("nan"),
                                float(p), plan.n)


def score(metric: str, a: Any, b: Any, n_boot: int = 100, n_perm: int = 100, level: float = 0.95,
          seed: int = 0, subsample: float = 0.8, **kwargs: Any) -> ScoreWithUncertainty:
    """A metric with a confidence interval over resampled pairs and a shuffled-pairing null.

    Pairs are resampled *without* replacement (a fraction ``subsample`` of them): a duplicated row
    would be its own nearest neighbour in both spaces, and duplicates add shared variance that
    inflates CKA and SVCCA when N is not much larger than d. The interval is the basic interval
    centred on the full-sample value and scaled by the delete-d jackknife factor sqrt(m / (n - m))
    (Shao & Wu 1989). ``kwargs`` go to the metric (``k``, ``dim``; CKA's ``kernel``, ``unbiased``).
    """
    if metric not in METRICS:
        raise ProbeError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    a, b = check_pair(a, b, kwargs.get("k"))
    plan = resample_plan(a.shape[0], n_boot, n_perm, seed, subsample, kwargs.get("k", 10))
    shared = {"k", "dim"}
    if set(kwargs) <= shared:  # the fast path: each side prepared once per resample
        sides = [side(x, plan, (metric,), **kwargs) for x in (a, b)]
        return pair_scores(sides[0], sides[1], plan, level)[metric]
    fn = METRICS[metric]  # other settings (an RBF or unbiased CKA, no normalisation): recompute each time
    value = fn(a, b, **kwargs)
    boots = [fn(a[rows], b[rows], **kwargs) for rows in plan.boots]
    nulls = [fn(a, b[perm], **kwargs) for perm in plan.perms]
    return with_uncertainty(value, boots, nulls, plan, level)
