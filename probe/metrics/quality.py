"""Unimodal quality scores that SAIL found to predict alignment.

Vision: weighted kNN accuracy (k = 10, 20), linear-probe accuracy, k-means NMI, each per label
task and averaged over tasks. Text, in the manner of MTEB on the dataset's captions: STS (Spearman
between caption cosine similarity and a ground truth counting the label tasks two captions share),
clustering (V-measure of k-means), classification (logistic regression), one score per task type
and their mean (MTEB averages per task type first).
"""

from __future__ import annotations

import numpy as np

from probe.metrics.knn import weighted_knn_accuracy
from probe.metrics.vectors import l2_normalize
from probe.records import keys


def _labelled(labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {task: np.asarray(v) for task, v in labels.items() if (np.asarray(v) >= 0).sum() >= 2}


def linear_probe_accuracy(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray,
                          c: float = 1.0) -> float:
    """Accuracy of a logistic-regression probe on standardised features.

    L-BFGS makes thousands of small BLAS calls; with numpy's BLAS threads contending with torch's
    OpenMP threads on the same cores each call waits on spinning threads (1.2 s for a fit that takes
    0.04 s single-threaded on 2 cores), so BLAS runs single-threaded here.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    keep_train, keep_test = y_train >= 0, y_test >= 0
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    with threadpool_limits(limits=1, user_api="blas"):
        model.fit(train[keep_train], y_train[keep_train])
        return float(model.score(test[keep_test], y_test[keep_test]))


def kmeans_score(x: np.ndarray, y: np.ndarray, measure: str = "nmi", seed: int = 0) -> float:
    """k-means with k = number of classes on L2-normalised rows; NMI or V-measure against ``y``."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score, v_measure_score

    keep = y >= 0
    k = len(np.unique(y[keep]))
    clusters = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(l2_normalize(x[keep]))
    fn = normalized_mutual_info_score if measure == "nmi" else v_measure_score
    return float(fn(y[keep], clusters))


def vision_quality(train: np.ndarray, train_labels: dict[str, np.ndarray], test: np.ndarray,
                   test_labels: dict[str, np.ndarray]) -> dict[str, float]:
    """``vision/knn10``, ``vision/knn20``, ``vision/linear``, ``vision/kmeans_nmi`` (means over label
    tasks) and the same per task (``vision/knn20_shape``)."""
    ok_train, ok_test = np.isfinite(train).all(axis=1), np.isfinite(test).all(axis=1)
    per_task: dict[str, dict[str, float]] = {}
    for task, y_test in _labelled(test_labels).items():
        y_train = np.where(ok_train, train_labels[task], -1)
        y_test = np.where(ok_test, y_test, -1)
        if (y_train >= 0).sum() < 2:
            continue
        tr, te = np.nan_to_num(train), np.nan_to_num(test)
        knn = weighted_knn_accuracy(tr, y_train, te, y_test, ks=(10, 20))
        per_task[task] = {"knn10": knn[10], "knn20": knn[20],
                          "linear": linear_probe_accuracy(tr, y_train, te, y_test),
                          "kmeans_nmi": kmeans_score(te, y_test, "nmi")}
    return _summarise("vision", per_task)


def text_quality(train_texts: np.ndarray, train_owner: np.ndarray, train_labels: dict[str, np.ndarray],
                 test_texts: np.ndarray, test_owner: np.ndarray, test_labels: dict[str, np.ndarray],
                 n_sts_pairs: int = 4000, seed: int = 0) -> dict[str, float]:
    """MTEB-style text score on captions labelled through their images (see module docstring)."""
    from scipy.stats import spearmanr

    tasks = [t for t in _labelled(test_labels) if t in train_labels]
    if not tasks:
        return {}
    y_test = {t: np.asarray(test_labels[t])[test_owner] for t in tasks}
    y_train = {t: np.asarray(train_labels[t])[train_owner] for t in tasks}
    per_task = {t: {"clustering": kmeans_score(test_texts, y_test[t], "v_measure", seed),
                    "classification": linear_probe_accuracy(train_texts, y_train[t], test_texts, y_test[t])}
                for t in tasks}
    # STS over captions labelled in every task: ground truth = number of shared labels
    full = np.flatnonzero(np.all([y_test[t] >= 0 for t in tasks], axis=0))
    rng = np.random.default_rng(seed)
    i, j = rng.choice(full, n_sts_pairs), rng.choice(full, n_sts_pairs)
    keep = i != j
    i, j = i[keep], j[keep]
    truth = sum((y_test[t][i] == y_test[t][j]).astype(float) for t in tasks)
    unit = l2_normalize(test_texts)
    cosine = (unit[i] * unit[j]).sum(axis=1)
    out = _summarise("text", per_task)
    out[keys.TEXT_STS] = float(spearmanr(cosine, truth).statistic)
    out[keys.TEXT_SCORE] = float(np.mean([out[keys.TEXT_STS], out[keys.TEXT_CLUSTERING],
                                          out[keys.TEXT_CLASSIFICATION]]))
    return out


def _summarise(prefix: str, per_task: dict[str, dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for task, scores in per_task.items():
        out |= {keys.quality(prefix, f"{name}_{task}"): value for name, value in scores.items()}
    if per_task:
        names = next(iter(per_task.values())).keys()
        out |= {keys.quality(prefix, name): float(np.mean([s[name] for s in per_task.values()])) for name in names}
    return out
