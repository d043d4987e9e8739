"""Retrieval, zero-shot and compositional metrics against brute-force counts and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from probe.metrics.compositional import winoground_scores
from probe.metrics.retrieval import probing_score_ci, recall_at_k, retrieval_metrics, retrieval_ranks
from probe.metrics.zeroshot import class_embeddings, prompts, topk_accuracy


def brute_force_hit(scores: list[float], positive: list[bool], k: int) -> bool:
    """Sort candidates best first; on a tie a negative goes before a positive (ties count against)."""
    order = sorted(range(len(scores)), key=lambda c: (-scores[c], positive[c]))
    return any(positive[c] for c in order[:k])


def brute_force_recall(scores: np.ndarray, positives: np.ndarray, k: int) -> float:
    hits = [brute_force_hit(list(s), list(p), k) for s, p in zip(scores, positives, strict=True) if p.any()]
    return float(np.mean(hits))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrieval_equals_brute_force_with_ties_and_several_captions(seed):
    rng = np.random.default_rng(seed)
    n_images = 40
    owner = rng.integers(0, n_images - 5, size=120)  # the last five images have no caption
    images = rng.integers(0, 3, size=(n_images, 2)).astype(np.float32)  # small integers: many exact ties
    texts = rng.integers(0, 3, size=(120, 2)).astype(np.float32)
    scores = images @ texts.T
    i2t_pos = owner[None, :] == np.arange(n_images)[:, None]
    got = retrieval_metrics(images, texts, owner)
    for k in (1, 5, 10):
        assert got[f"i2t_R@{k}"] == pytest.approx(brute_force_recall(scores, i2t_pos, k))
        assert got[f"t2i_R@{k}"] == pytest.approx(brute_force_recall(scores.T, i2t_pos.T, k))
        assert recall_at_k(scores, i2t_pos, [k])[k] == pytest.approx(brute_force_recall(scores, i2t_pos, k))
    assert got["probing_score"] == pytest.approx(0.5 * (got["i2t_R@10"] + got["t2i_R@10"]))
    i2t, _ = retrieval_ranks(images, texts, owner, chunk=7)  # chunking changes nothing
    assert (i2t[-5:] == -1).all()


def test_collapsed_embeddings_score_zero_not_one():
    owner = np.repeat(np.arange(20), 2)
    got = retrieval_metrics(np.ones((20, 4)), np.ones((40, 4)), owner)
    assert got["i2t_R@10"] == 0.0 and got["t2i_R@1"] == 0.0


def test_probing_score_interval_matches_a_plain_bootstrap():
    rng = np.random.default_rng(0)
    n = 200
    owner = np.repeat(np.arange(n), 3)
    i2t = rng.integers(0, 30, size=n)
    t2i = rng.integers(0, 30, size=3 * n)
    lo, hi = probing_score_ci(i2t, t2i, owner, n_boot=3000, seed=1)
    point = 0.5 * ((i2t < 10).mean() + (t2i < 10).mean())
    # independent, slow bootstrap: resample images with their captions
    boot = []
    by_image = [np.flatnonzero(owner == i) for i in range(n)]
    for _ in range(3000):
        pick = rng.integers(0, n, size=n)
        caps = np.concatenate([by_image[i] for i in pick])
        boot.append(0.5 * ((i2t[pick] < 10).mean() + (t2i[caps] < 10).mean()))
    assert lo < point < hi
    assert lo == pytest.approx(np.quantile(boot, 0.025), abs=0.01)
    assert hi == pytest.approx(np.quantile(boot, 0.975), abs=0.01)


def test_topk_accuracy_equals_scikit_learn():
    from sklearn.metrics import top_k_accuracy_score

    rng = np.random.default_rng(0)
    images, classes = rng.normal(size=(300, 8)), rng.normal(size=(12, 8))
    labels = rng.integers(-1, 12, size=300)  # -1: unlabelled, left out
    got = topk_accuracy(images, classes, labels, ks=(1, 5))
    keep = labels >= 0
    scores = images[keep] @ classes.T
    for k in (1, 5):
        assert got[k] == pytest.approx(top_k_accuracy_score(labels[keep], scores, k=k, labels=np.arange(12)))


def test_template_ensembling_by_hand():
    # two classes x two templates, class-major
    prompt_emb = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0], [1.0, 0.0]])
    got = class_embeddings(prompt_emb, 2)
    np.testing.assert_allclose(got, [[np.sqrt(0.5), np.sqrt(0.5)], [1.0, 0.0]], atol=1e-12)
    assert prompts(["arrow", "cat"], ["a {}.", "a photo of a {}."]) == [
        "a arrow.", "a photo of a arrow.", "a cat.", "a photo of a cat."]  # as the templates say: no rewriting


def test_winoground_scores_by_hand():
    images = np.eye(4)
    caption_image = np.array([0, 1, 2, 3])
    texts = np.array([
        [0.9, 0.1, 0, 0], [0.2, 0.8, 0, 0],   # pair 1: both right -> text, image, group
        [0, 0, 0.5, 0.6], [0, 0, 0.4, 0.3],   # pair 2: captions both prefer image 3 (wrong for c0 text-wise)
    ])
    # pair 2: s(c0,i0)=.5 s(c0,i1)=.6 s(c1,i0)=.4 s(c1,i1)=.3
    # text score: .5 > .4 and .3 > .6 -> no; image score: .5 > .6 -> no
    got = winoground_scores(images, texts, caption_image, np.array([[0, 1], [2, 3]]))
    assert got == {"text": 0.5, "image": 0.5, "group": 0.5}
    texts[3] = [0, 0, 0.1, 0.7]  # now text: .5 > .1 and .7 > .6 yes; image: .5 > .6 no
    got = winoground_scores(images, texts, caption_image, np.array([[0, 1], [2, 3]]))
    assert got == {"text": 1.0, "image": 0.5, "group": 0.5}


def test_ratio_interval_matches_scipy_bootstrap_and_degenerate_cases():
    from scipy.stats import bootstrap

    from probe.metrics.bootstrap import ratio_interval

    rng = np.random.default_rng(0)
    hits = (rng.random(400) < 0.3).astype(float)
    ours = ratio_interval(hits, n_boot=4000, seed=1)
    reference = bootstrap((hits,), np.mean, n_resamples=4000, method="percentile", random_state=2).confidence_interval
    assert abs(ours[0] - reference.low) < 0.01 and abs(ours[1] - reference.high) < 0.01
    assert ours[0] < hits.mean() < ours[1]
    assert ratio_interval(np.ones(50)) == (1.0, 1.0)  # no spread, no width
    # a ratio over units: captions hit per image / captions per image, units resampled whole
    num, den = np.array([2.0, 0.0, 5.0]), np.array([2.0, 3.0, 5.0])
    lo, hi = ratio_interval(num, den, n_boot=2000)
    assert 0.0 <= lo < 7 / 10 < hi <= 1.0


def test_evaluate_gives_an_interval_for_every_score():
    from probe.evaluation.evaluate import ZeroShotTask, evaluate
    from probe.features.paired import PairedFeatures

    class Identity:
        def embed_images(self, x):
            return x / np.linalg.norm(x, axis=1, keepdims=True)

        embed_texts = embed_images

    rng = np.random.default_rng(0)
    images = rng.normal(size=(60, 8))
    texts = np.repeat(images, 2, axis=0) + 0.3 * rng.normal(size=(120, 8))
    split = PairedFeatures(images, texts, np.repeat(np.arange(60), 2))
    labels = rng.integers(0, 3, 60)
    prompts = np.repeat(images[[np.flatnonzero(labels == c)[0] for c in range(3)]], 2, axis=0)
    metrics, intervals = evaluate(Identity(), split, zeroshot=[ZeroShotTask("c", prompts, 3, labels)],
                                  compositional=(split, np.array([[0, 1], [2, 3], [4, 5]])), n_boot=200)
    assert set(intervals) == set(metrics)
    for key, (lo, hi) in intervals.items():
        assert lo <= metrics[key] + 1e-12 and metrics[key] <= hi + 1e-12, key


def test_identical_caption_texts_are_interchangeable_in_retrieval():
    """Against the dense definition: a caption is a positive for every image that has its exact text."""
    from probe.metrics.retrieval import ranks_of_best_positive, retrieval_ranks

    rng = np.random.default_rng(0)
    for _ in range(25):
        n_images, per_image = int(rng.integers(3, 30)), int(rng.integers(1, 4))
        owner = rng.permutation(np.repeat(np.arange(n_images), per_image))
        groups = np.unique(rng.integers(0, int(rng.integers(1, len(owner) + 1)), size=len(owner)),
                           return_inverse=True)[1]
        images = rng.normal(size=(n_images, 5)).astype(np.float32)
        texts = rng.normal(size=(len(owner), 5)).astype(np.float32)
        texts = texts[[np.flatnonzero(groups == g)[0] for g in groups]]  # identical texts, identical embeddings
        i2t, t2i = retrieval_ranks(images, texts, owner, chunk=7, text_groups=groups)
        positives = np.array([[groups[j] in set(groups[owner == i]) for j in range(len(owner))]
                              for i in range(n_images)])
        scores = images @ texts.T
        assert np.array_equal(np.minimum(i2t, 10), np.minimum(ranks_of_best_positive(scores, positives), 10))
        assert np.array_equal(t2i, ranks_of_best_positive(scores.T, positives.T))
    # one text per class, images embedded exactly at their class's text: perfect both ways with the
    # groups; without them every image query loses to the duplicates of its own caption
    owner = np.arange(40)
    classes = owner % 4
    texts = np.eye(4, dtype=np.float32)[classes]
    i2t, t2i = retrieval_ranks(texts.copy(), texts, owner, text_groups=classes)
    assert (i2t == 0).all() and (t2i == 0).all()
    plain_i2t, _ = retrieval_ranks(texts.copy(), texts, owner)
    assert (plain_i2t >= 9).all()


def test_scores_equal_up_to_float_noise_are_ties_whatever_the_noise():
    """Two captions with the same words under an order-blind text encoder have one embedding in exact
    arithmetic; float32 products leave them ~1e-7 apart, by run-dependent noise. Winoground's strict
    comparisons then fail (no success by noise), and in retrieval the tie goes against the query, for
    any sign of the noise."""
    from probe.metrics.compositional import winoground_scores
    from probe.metrics.retrieval import retrieval_ranks

    images = np.array([[1.0, 0.0], [0.0, 1.0]])
    for noise in (3e-7, -3e-7):
        caption = np.array([0.6, 0.8])
        texts = np.stack([caption, caption + [noise, 0.0]])  # c0 and c1: "same words, other order"
        scores = winoground_scores(images, texts, np.array([0, 1]), np.array([[0, 1]]))
        assert scores == {"text": 0.0, "image": 0.0, "group": 0.0}
        i2t, t2i = retrieval_ranks(images, texts, np.array([0, 1]))
        # image 0 scores 0.6 with its c0 and 0.6 + noise with c1: a tie either way, so c1 ranks above;
        # image 1 scores 0.8 with both; caption 0 finds image 1 (0.8) above its own (0.6)
        assert i2t.tolist() == [1, 1] and t2i.tolist() == [1, 0]
