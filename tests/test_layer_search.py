"""A search over every layer pair keeps the best value, and judges it against the best a search
finds by chance on shuffled pairings, not against one pair's chance level."""

from __future__ import annotations

import numpy as np
import pytest

from probe.metrics.layers import layer_search
from probe.metrics.similarity import cka, mutual_knn


def _layers(rng: np.random.Generator, n: int = 120, d: int = 16, count: int = 4) -> list[np.ndarray]:
    return [rng.normal(size=(n, d)).astype(np.float32) for _ in range(count)]


def test_every_layer_pair_is_scored_and_the_planted_pair_is_found():
    rng = np.random.default_rng(0)
    vision, text = _layers(rng), _layers(rng, count=3)
    rotation = np.linalg.qr(rng.normal(size=(16, 16)))[0]
    text[2] = (vision[1] @ rotation + 0.3 * rng.normal(size=vision[1].shape)).astype(np.float32)  # shared structure
    found = layer_search(vision, text, "mutual_knn", k=5, n_boot=10, n_perm=49)
    for i, v in enumerate(vision):
        for j, t in enumerate(text):
            assert found.values[i, j] == pytest.approx(mutual_knn(v, t, k=5))
    assert found.best == (1, 2) and found.p_value == pytest.approx(1 / 50)
    assert found.best_score.ci_low <= found.best_score.value <= found.best_score.ci_high
    assert layer_search(vision, text, "cka", n_boot=0, n_perm=9).values[1, 2] == pytest.approx(cka(vision[1], text[2]))


def test_on_unrelated_layers_the_search_null_is_above_one_pairs_and_holds_its_level():
    """Over 40 seeds of unrelated 4 x 4 layer stacks: the null of the best value sits above one pair's
    null every time; judged against the search's null, the best pair is called significant at 5% about
    as often as the level says (binomial: at most 6 of 40), where judging it against its own pair's
    null would call it far more often."""
    searched = naive = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        found = layer_search(_layers(rng), _layers(rng), "mutual_knn", k=5, n_boot=0, n_perm=39, seed=seed)
        assert found.search_null_mean > found.best_score.null_mean
        searched += found.p_value <= 0.05
        naive += found.best_score.p_value <= 0.05
    assert searched <= 6
    assert naive > 2 * max(searched, 3)
