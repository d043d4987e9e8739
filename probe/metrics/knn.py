"""Weighted kNN classification (the DINO / SAIL protocol) with faiss.

Features are L2-normalised; each test point's k nearest training points (cosine) vote for their
class with weight ``exp(similarity / T)``, T = 0.07. All k come from one top-k search with the
largest k, so k = 10 and k = 20 cost one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from probe.metrics.vectors import l2_normalize

TEMPERATURE = 0.07


def nearest(train: np.ndarray, test: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(similarities, indices)`` [n_test, k] of each test row's k most cosine-similar train rows."""
    import faiss

    # faiss wants contiguous float32 rows
    train = l2_normalize(np.ascontiguousarray(train, dtype=np.float32))
    test = l2_normalize(np.ascontiguousarray(test, dtype=np.float32))
    index = faiss.IndexFlatIP(train.shape[1])
    index.add(train)
    return index.search(test, k)


def weighted_knn_predict(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray,
                         ks: Sequence[int] = (10, 20), temperature: float = TEMPERATURE) -> dict[int, np.ndarray]:
    """Predicted class per test row for every k in ``ks`` (one search with max(ks))."""
    train_labels = np.asarray(train_labels)
    n_classes = int(train_labels.max()) + 1
    k_max = min(max(ks), len(train))
    sims, idx = nearest(train, test, k_max)
    weights = np.exp(sims.astype(np.float64) / temperature)
    votes_of = train_labels[idx]
    out = {}
    for k in ks:
        k = min(k, k_max)
        votes = np.zeros((len(test), n_classes))
        rows = np.repeat(np.arange(len(test)), k)
        np.add.at(votes, (rows, votes_of[:, :k].ravel()), weights[:, :k].ravel())
        out[k] = votes.argmax(axis=1)
    return out


def weighted_knn_accuracy(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray,
                          ks: Sequence[int] = (10, 20)) -> dict[int, float]:
    """Top-1 accuracy per k; rows labelled -1 (no class) are left out on both sides."""
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    keep_train, keep_test = train_labels >= 0, test_labels >= 0
    preds = weighted_knn_predict(train[keep_train], train_labels[keep_train], test[keep_test], ks)
    return {k: float((pred == test_labels[keep_test]).mean()) for k, pred in zip(ks, preds.values(), strict=True)}
