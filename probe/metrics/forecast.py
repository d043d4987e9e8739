"""A forecast of a pair's probing score from training-free signals, with an interval, validated so
that it never peeks.

Signals are what probe knows before fitting a head: the pair's similarity metrics, each encoder's
unimodal scores, sizes. A ridge regression on standardised signals (scikit-learn, the penalty chosen
by its own cross-validation) is fitted to the probing scores already recorded. It is judged leave
one encoder out: a pair's held-out forecast comes from a model fitted only on pairs that share
neither its vision nor its text encoder, since a pair's score is mostly its encoders' and a model
that saw a sibling pair would look better than it is. The prediction interval is split-conformal on
those held-out residuals (the ``level`` quantile of their absolute values, with the finite-sample
correction); each recorded pair's own interval is made from the other pairs' residuals, so the
coverage reported beside Spearman's rank correlation is measured, not true by construction.

A linear model extrapolates without limit, so each signal of a forecast pair is clipped to the range
the model was fitted on: an encoder unlike every other (the pixel control's zero parameters) is
forecast as the nearest fitted case, not as a score far outside every one measured. The real-data
study found this: unclipped, the held-out pixel pairs were forecast at 0.7-1.6 on a 0.05-0.26 scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from probe.errors import ProbeError

Pair = tuple[str, str]
#: the fewest pairs a held-out forecast may be fitted on
MIN_TRAINING_PAIRS = 3


def training_pairs(pair: Pair, recorded: Sequence[Pair]) -> list[Pair]:
    """The recorded pairs a held-out forecast of ``pair`` may learn from: those sharing neither its
    vision nor its text encoder."""
    return [p for p in recorded if p[0] != pair[0] and p[1] != pair[1]]


@dataclass(frozen=True)
class Forecast:
    """Held-out forecasts of the recorded pairs, forecasts of the others, and how good they are."""

    signals: tuple[str, ...]
    #: recorded pair -> (measured, held-out forecast, low, high), its interval from the others' residuals
    held_out: dict[Pair, tuple[float, float, float, float]]
    #: unrecorded pair -> (forecast, low, high), from a model fitted on every recorded pair
    predicted: dict[Pair, tuple[float, float, float]]
    #: Spearman's r of held-out forecast against measured, and its p-value
    spearman: float
    spearman_p: float
    #: share of recorded pairs whose measured score lies in its held-out interval, and the level asked
    coverage: float
    level: float
    #: half-width of every interval (split-conformal quantile of held-out absolute residuals)
    half_width: float


def _model():
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))


def _matrix(pairs: Sequence[Pair], signals: Mapping[Pair, Mapping[str, float]], names: Sequence[str]) -> np.ndarray:
    return np.array([[signals[p][n] for n in names] for p in pairs], dtype=np.float64)


def _within(x: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """``x`` with each signal clipped to the range it had in the rows the model was ``fitted`` on."""
    return np.clip(x, fitted.min(axis=0), fitted.max(axis=0))


def forecast(scores: Mapping[Pair, float], signals: Mapping[Pair, Mapping[str, float]], *,
             level: float = 0.9) -> Forecast:
    """Forecast every pair in ``signals`` from the recorded ``scores`` (see the module docstring).

    Only signals every pair has are used. Raises one line when there are too few recorded pairs for
    a held-out forecast of each (saying how many it has and needs).
    """
    from scipy.stats import spearmanr

    names = sorted(set.intersection(*(set(v) for v in signals.values()))) if signals else []
    names = [n for n in names if all(math.isfinite(signals[p][n]) for p in signals)]
    if not names:
        raise ProbeError("no training-free signal is known for every pair; run `probe select` and `probe correlate`")
    recorded = [p for p in scores if p in signals]
    short = [p for p in recorded if len(training_pairs(p, recorded)) < MIN_TRAINING_PAIRS]
    if len(recorded) < MIN_TRAINING_PAIRS + 1 or short:
        raise ProbeError(f"a forecast needs, for each of the {len(recorded)} recorded pair(s), at least "
                         f"{MIN_TRAINING_PAIRS} other recorded pairs sharing neither of its encoders; "
                         f"{len(short) if recorded else 0} have fewer: probe more pairs (at least 2 vision and 2 text "
                         "encoders beyond each pair's own)")
    held: dict[Pair, float] = {}
    for pair in recorded:
        train = training_pairs(pair, recorded)
        fitted = _matrix(train, signals, names)
        model = _model().fit(fitted, [scores[p] for p in train])
        held[pair] = float(model.predict(_within(_matrix([pair], signals, names), fitted))[0])
    residuals = np.abs([scores[p] - held[p] for p in recorded])
    half = conformal_half_width(residuals, level)
    # each recorded pair's own interval from the other pairs' residuals: coverage not by construction
    own = [conformal_half_width(np.delete(residuals, i), level) for i in range(len(residuals))]
    covered = float(np.mean(residuals <= np.array(own)))
    rho, p_value = spearmanr([held[p] for p in recorded], [scores[p] for p in recorded])
    everything = _matrix(recorded, signals, names)
    full = _model().fit(everything, [scores[p] for p in recorded])
    others = [p for p in signals if p not in scores]
    predicted = {}
    if others:
        values = full.predict(_within(_matrix(others, signals, names), everything))
        predicted = {p: (float(v), float(v) - half, float(v) + half) for p, v in zip(others, values, strict=True)}
    return Forecast(tuple(names), {p: (scores[p], held[p], held[p] - w, held[p] + w)
                                   for p, w in zip(recorded, own, strict=True)},
                    predicted, float(rho), float(p_value), covered, level, half)


def conformal_half_width(residuals: np.ndarray, level: float) -> float:
    """The split-conformal quantile of absolute residuals: the ceil((n + 1) level)-th smallest (the
    largest when that exceeds n), so a new pair's interval covers with probability at least ``level``
    when pairs are exchangeable."""
    n = len(residuals)
    rank = min(n, math.ceil((n + 1) * level))
    return float(np.sort(residuals)[rank - 1])
