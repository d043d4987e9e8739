"""kNN, unimodal quality scores, rank correlation, `probe select` and `probe correlate`."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from conftest import assert_one_line_error

from probe.metrics.knn import weighted_knn_accuracy, weighted_knn_predict
from probe.metrics.quality import text_quality, vision_quality
from probe.metrics.rank import _resampled_spearman, spearman, spearman_difference_interval, spearman_interval
from probe.ranking import first_caption_rows, rank_agreement


def test_spearman_intervals_are_scipys_spearman_on_each_resample_of_the_pairs():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    y = rng.normal(size=12)
    x = y + rng.normal(size=12)
    values = _resampled_spearman([x], y, n_boot=200, seed=5)[0]
    rows = np.random.default_rng(5).integers(0, 12, size=(200, 12))  # the same resamples, drawn again
    by_scipy = np.array([spearmanr(x[r], y[r]).statistic for r in rows])
    np.testing.assert_allclose(values, by_scipy, atol=1e-12, equal_nan=True)
    low, high = spearman_interval(x, y, n_boot=200, seed=5)
    finite = by_scipy[np.isfinite(by_scipy)]
    assert (low, high) == pytest.approx((np.percentile(finite, 2.5), np.percentile(finite, 97.5)))
    assert low < spearmanr(x, y).statistic < high
    assert spearman_interval(y, 2 * y + 1) == (1.0, 1.0)  # every resample keeps the perfect order
    # a paired difference: the true ranking against noise is better, a ranking against itself is 0
    observed, low, high = spearman_difference_interval(y, rng.normal(size=12), y)
    assert observed > 0 and low > 0
    assert spearman_difference_interval(x, x, y) == (0.0, 0.0, 0.0)


def test_weighted_knn_equals_scikit_learn_with_the_same_weights():
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16))
    y_train, y_test = rng.integers(0, 5, 400), rng.integers(0, 5, 150)
    train = centres[y_train] + 1.5 * rng.normal(size=(400, 16))
    test = centres[y_test] + 1.5 * rng.normal(size=(150, 16))
    ours = weighted_knn_predict(train, y_train, test, ks=(10, 20))
    for k in (10, 20):
        sk = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute",
                                  weights=lambda d: np.exp((1 - d) / 0.07)).fit(train, y_train)
        np.testing.assert_array_equal(ours[k], sk.predict(test))
    acc = weighted_knn_accuracy(train, np.where(np.arange(400) % 7 == 0, -1, y_train), test, y_test)
    assert 0.5 < acc[20] <= 1.0  # well above chance (0.2); unlabelled train rows are left out


def test_vision_quality_separates_informative_from_random_features():
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 4, 300), rng.integers(0, 4, 100)
    coin_train, coin_test = rng.integers(0, 2, 300), rng.integers(0, 2, 100)  # a second task the features ignore
    centres = rng.normal(size=(4, 8)) * 3
    train, test = centres[y_train] + rng.normal(size=(300, 8)), centres[y_test] + rng.normal(size=(100, 8))
    good = vision_quality(train, {"c": y_train, "coin": coin_train}, test, {"c": y_test, "coin": coin_test})
    noise = vision_quality(rng.normal(size=(300, 8)), {"c": y_train}, rng.normal(size=(100, 8)), {"c": y_test})
    for key in ("vision/knn20", "vision/linear", "vision/kmeans_nmi"):
        assert noise[key] + 0.3 < good[f"{key}_c"], key
        assert good[key] == pytest.approx((good[f"{key}_c"] + good[f"{key}_coin"]) / 2)  # the mean over tasks
    # per-task scores equal scikit-learn's, computed here independently (cosine, weights exp(s / 0.07))
    knn = KNeighborsClassifier(n_neighbors=20, metric="cosine", algorithm="brute",
                               weights=lambda d: np.exp((1 - d) / 0.07)).fit(train, y_train)
    assert good["vision/knn20_c"] == pytest.approx(knn.score(test, y_test))
    linear = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(train, coin_train)
    assert good["vision/linear_coin"] == pytest.approx(linear.score(test, coin_test))


def test_text_quality_sts_follows_shared_labels():
    rng = np.random.default_rng(0)
    n = 200
    labels = {"a": rng.integers(0, 3, n), "b": rng.integers(0, 4, n)}
    owner = np.repeat(np.arange(n), 2)
    basis_a, basis_b = rng.normal(size=(3, 12)), rng.normal(size=(4, 12))

    def embed(noise: float):
        return basis_a[labels["a"][owner]] + basis_b[labels["b"][owner]] + noise * rng.normal(size=(2 * n, 12))

    sharp = text_quality(embed(0.1), owner, labels, embed(0.1), owner, labels)
    blurred = text_quality(embed(3.0), owner, labels, embed(3.0), owner, labels)
    assert sharp["text/sts"] > 0.7 and sharp["text/sts"] > blurred["text/sts"] + 0.3
    assert sharp["text/score"] == pytest.approx(
        np.mean([sharp["text/sts"], sharp["text/clustering"], sharp["text/classification"]]))


def test_exact_spearman_p_value_by_enumeration():
    rho, p = spearman([1, 2, 3], [10, 20, 30])
    assert rho == 1.0 and p == pytest.approx(2 / 6)  # two of the six orderings are as extreme
    x, y = [3, 1, 4, 1.5, 5, 9], [2, 7, 1, 8, 2.5, 8.5]
    rho, p = spearman(x, y)
    from scipy.stats import spearmanr
    perms = [spearmanr(x, [y[i] for i in perm]).statistic for perm in itertools.permutations(range(6))]
    assert p == pytest.approx(np.mean(np.abs(perms) >= abs(rho) - 1e-12))


def test_rank_agreement_and_first_caption_rows():
    predicted = {("v1", "t"): 0.9, ("v2", "t"): 0.5, ("v3", "t"): 0.7, ("v4", "t"): 0.1}
    probed = {("v1", "t"): 0.8, ("v2", "t"): 0.6, ("v3", "t"): 0.4, ("v4", "t"): 0.2}
    got = rank_agreement(predicted, probed, top=2)
    assert got["n"] == 4 and got["spearman"] == pytest.approx(0.8)
    assert got["top_hits"] == 1 and got["regret"] == 0.0  # selected v1, v3; best probed v1, v2
    assert rank_agreement(predicted, {("v1", "t"): 1.0}, 2) is None
    images = np.arange(8.0).reshape(4, 2)
    images[2] = np.nan
    texts = np.arange(12.0).reshape(6, 2) * 10
    image_rows, caption_rows = first_caption_rows(images, texts, np.array([0, 0, 1, 2, 3, 3]), max_pairs=10)
    np.testing.assert_array_equal(image_rows, [0, 1, 3])
    np.testing.assert_array_equal(caption_rows, [0, 2, 4])


TINY = ("--vision", "test/tiny-vit", "--vision", "test/tiny-vit-wide", "--text", "test/tiny-bert")


def test_select_and_correlate_cli(run_cli, tmp_path, shared_cache):
    env = {"PROBE_CACHE_DIR": str(shared_cache), "PROBE_RESULTS_DIR": str(tmp_path / "r")}
    before = run_cli("select", "--top", "1", *TINY, "--metric", "cka", env=env)
    assert before.returncode == 0, before.stderr
    assert "top 1 of 2 real pairs by cka on shapes/train" in before.stdout and "run `probe run`" in before.stdout
    sims = [json.loads(p.read_text()) for p in (tmp_path / "r" / "records" / "similarity").rglob("*.json")]
    assert len(sims) == 2 and sims[0]["n_pairs"] == 300
    assert all(0 < s["timing"]["similarity_s"] < 600 for s in sims)  # what the training-free route cost
    assert set(sims[0]["metrics"]) == {"similarity/mutual_knn", "similarity/cka", "similarity/unbiased_cka",
                                       "similarity/cknna", "similarity/svcca"}
    assert_one_line_error(run_cli("correlate", env=env), "no successful probing records", "probe run")
    ran = run_cli("run", *TINY, "--vision", "baseline/pixels-16", "--epochs", "2", env=env)
    assert ran.returncode == 0, ran.stderr
    after = run_cli("select", "--top", "2", *TINY, "--vision", "baseline/pixels-16", env=env)
    # the pixel control takes no ranking slot: it is listed for reference, and the agreement with the
    # probing scores is given over all three pairs (two real pairs are too few for a rank correlation)
    assert "top 2 of 2 real pairs" in after.stdout and "1 control pair(s), not ranked; the best: baseline/pixels-16" \
        in after.stdout
    listed = run_cli("select", "--top", "2", *TINY, "--vision", "baseline/pixels-16", "--show-controls", env=env)
    assert "1 control pair(s), for reference" in listed.stdout
    assert "ranking vs probing score over 3 probed pairs of shapes/test (with controls)" in after.stdout
    ranked = run_cli("select", "--top", "2", *TINY, "--vision", "baseline/pixels-16", "--with-controls", env=env)
    assert "top 2 of 3 pairs" in ranked.stdout and "for reference" not in ranked.stdout
    assert after.stdout.startswith("best real pair by mutual_knn on shapes/train: ")  # the answer comes first
    assert_one_line_error(run_cli("select", *TINY, "--score-on", "digits/test", env=env),
                          "--score-on 'digits/test': no probing records", "shapes/test")
    corr = run_cli("correlate", env=env)
    assert corr.returncode == 0, corr.stderr
    assert "vision kNN@20" in corr.stdout and "similarity mutual_knn" in corr.stdout
    table = json.loads(next((tmp_path / "r" / "records" / "correlation").rglob("*.json")).read_text())["table"]
    knn_row = next(r for r in table if r["correlate"] == "vision kNN@20")
    # the same correlation recomputed from the records by scipy
    from scipy.stats import spearmanr

    records = [json.loads(p.read_text()) for p in (tmp_path / "r" / "records").rglob("*.json")]
    knn = {r["model"]["name"]: r["metrics"]["vision/knn20"] for r in records if r["kind"] == "correlates"
           and r["modality"] == "vision"}
    probing = {r["vision"]["name"]: r["metrics"]["alignment/probing_score"] for r in records if r["kind"] == "alignment"}
    names = sorted(probing)
    assert knn_row["n"] == 3 and knn_row["spearman"] == pytest.approx(
        spearmanr([knn[n] for n in names], [probing[n] for n in names]).statistic)
    corr_records = list((tmp_path / "r" / "records" / "correlates").rglob("*.json"))
    assert len(corr_records) == 4  # three vision encoders, one text encoder


def test_select_bad_input(run_cli, tmp_path, shared_cache):
    env = {"PROBE_CACHE_DIR": str(shared_cache), "PROBE_RESULTS_DIR": str(tmp_path / "r")}
    assert_one_line_error(run_cli("select", "--metric", "rsa", *TINY, env=env), "unknown metric 'rsa'",
                          "mutual_knn, cka, unbiased_cka, cknna, svcca")
    assert_one_line_error(run_cli("select", *TINY, "--split", "dev", env=env), "has no split 'dev'")
    assert_one_line_error(run_cli("select", "--vision", "nope*", env=env), "no model matches 'nope*'")
    assert_one_line_error(run_cli("select", *TINY, "--split", "winoground", "--k", "100", env=env),
                          "has 80 usable pairs", "lower --k")


def test_an_encoders_own_score_is_correlated_over_distinct_encoders():
    from scipy.stats import spearmanr

    from probe.correlates import correlation_table
    from probe.report.plots import distinct_encoder_points

    # three vision encoders x two text encoders: six pairs, but only three kNN values and two text scores
    probed = {("v1", "a"): 0.2, ("v1", "b"): 0.4, ("v2", "a"): 0.5, ("v2", "b"): 0.9, ("v3", "a"): 0.6,
              ("v3", "b"): 0.1}
    models = {"v1": {"vision/knn20": 0.3}, "v2": {"vision/knn20": 0.9}, "v3": {"vision/knn20": 0.5},
              "a": {"text/score": 0.1}, "b": {"text/score": 0.7}}
    similarity = {pair: {"similarity/cka": value} for pair, value in zip(probed, [1, 2, 3, 4, 5, 6], strict=True)}
    rows = {r["correlate"]: r for r in correlation_table(probed, models, similarity)}
    knn = rows["vision kNN@20"]
    assert knn["n"] == 3 and knn["over"] == "vision encoders"
    # each encoder at its mean over its pairs: v1 0.3, v2 0.7, v3 0.35 against kNN 0.3, 0.9, 0.5
    assert knn["spearman"] == pytest.approx(spearmanr([0.3, 0.9, 0.5], [0.3, 0.7, 0.35]).statistic)
    assert rows["text score (MTEB-style)"]["n"] == 2 and rows["text score (MTEB-style)"]["spearman"] is None
    cka = rows["similarity cka"]  # a property of the pair: over the six pairs
    assert cka["n"] == 6 and cka["over"] == "pairs"
    assert cka["spearman"] == pytest.approx(spearmanr([1, 2, 3, 4, 5, 6], list(probed.values())).statistic)
    plotted = [{"vision": v, "text": t, "vision/knn20": models[v]["vision/knn20"], "score": ("m", s, None, None)}
               for (v, t), s in probed.items()]
    xs, ys = distinct_encoder_points(plotted, "vision/knn20", "vision")
    assert xs == [0.3, 0.9, 0.5] and ys == pytest.approx([0.3, 0.7, 0.35])  # the figure counts as the table does


def test_selection_encodes_its_sample_not_the_corpus_and_reads_a_cached_corpus(run_cli, tmp_path):
    """--max-pairs below the split's size: the encoders encode the sampled images and their first
    captions only (on a corpus of millions that is the point of selecting first); once the whole
    split is cached, the same sample's rows are read from it, with the same values."""
    from probe.data import get_dataset
    from probe.features import get_features
    from probe.ranking import selection_plan

    cache, results = tmp_path / "cache", tmp_path / "r"
    args = ("select", "--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--max-pairs", "40", "--n-boot", "5",
            "--results", str(results), "--cache-dir", str(cache))
    dry = run_cli(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "40 images" in _row(dry.stdout, "test/tiny-vit") and "40 texts" in _row(dry.stdout, "test/tiny-bert")
    assert "1 pair(s) to compare on a seeded sample of 40 images of shapes/train" in dry.stdout
    assert not cache.exists() and not results.exists()
    cold = run_cli(*args)
    assert cold.returncode == 0, cold.stderr
    # 40 images and 40 captions, one entry each; shapes/train (300 images, 1,500 captions) was never encoded
    entries = sorted(p.name for p in cache.glob("*/shapes/*") if p.is_dir())
    assert entries == [name for name in entries if name.startswith("train-sample40-seed0.")] and len(entries) == 2
    rows = {p.parents[2].name: np.load(p).shape for p in cache.glob("*/shapes/*/features.npy")}
    assert rows == {"test_tiny-vit": (40, 64), "test_tiny-bert": (40, 32)}
    (path,) = (results / "records" / "similarity").rglob("*.json")
    first = json.loads(path.read_text())
    assert first["split"] == "train" and first["n_pairs"] == 40
    assert path.name.endswith("train-k10-n40-seed0.json")

    # the sample is the one first_caption_rows draws from the whole split's features
    whole = {side: get_features(f"test/tiny-{side}", "shapes", "train", cache_dir=str(cache))
             for side in ("vit", "bert")}
    train = get_dataset("shapes").load("train")
    image_rows, caption_rows = first_caption_rows(whole["vit"], whole["bert"], train.caption_image, 40)
    sample = selection_plan(get_dataset("shapes"), "train", 40).scored
    np.testing.assert_array_equal(sample.parent.images, image_rows)
    np.testing.assert_array_equal(sample.parent.captions, caption_rows)
    assert sample.captions == [train.captions[j] for j in caption_rows]

    # with the whole split cached, a recomputation reads the sample's rows there: no new entry, same values
    for entry in cache.glob("*/shapes/train-sample40-*"):
        import shutil

        shutil.rmtree(entry)
    dry = run_cli(*args, "--recompute", "--dry-run")
    assert "1 of 1" in _row(dry.stdout, "test/tiny-vit") and "nothing" in _row(dry.stdout, "test/tiny-bert")
    assert "1 pair(s) to compare" in dry.stdout and "1 of them are already there and would be computed again" in dry.stdout
    kept = run_cli(*args, "--dry-run")
    assert "0 pair(s) to compare" in kept.stdout and "1 already there (skipped; --recompute" in kept.stdout
    again = run_cli(*args, "--recompute")
    assert again.returncode == 0, again.stderr
    assert not list(cache.glob("*/shapes/train-sample40-*"))
    second = json.loads(path.read_text())
    for key, value in first["metrics"].items():
        assert second["metrics"][key] == pytest.approx(value, abs=1e-5), key


def _row(stdout: str, encoder: str) -> str:
    return next(line for line in stdout.splitlines() if line.strip().startswith(encoder + " "))


def test_the_verdict_names_the_best_pair_its_ties_and_the_agreement_on_a_transfer_benchmark():
    """Computed by hand on four pairs: the best (0.30 [0.25, 0.35]) is tied with the two whose upper
    bounds reach 0.25, not with the one whose bound stops at 0.20; the agreement quoted is the transfer
    benchmark's, not the in-domain one."""
    from types import SimpleNamespace

    from probe.api.selection import SelectionResult

    def pair(vision: str, value: float, low: float, high: float):
        ref = SimpleNamespace(name=vision, control=False)
        return SimpleNamespace(vision=ref, text=SimpleNamespace(name="t", control=False),
                               metrics={"similarity/cka": value},
                               interval=lambda key, b=(low, high): b if key == "similarity/cka" else None)

    ranked = [pair("v1", 0.30, 0.25, 0.35), pair("v2", 0.28, 0.22, 0.34), pair("v3", 0.26, 0.20, 0.25),
              pair("v4", 0.15, 0.10, 0.20)]
    agreement = {"n": 4, "spearman": 0.8, "spearman_p": 0.2, "top_hits": 2, "top": 3}
    result = SelectionResult("cka", 3, "shapes", "train", ranked, [], {"shapes/test": {}, "shapes-ood/test": {}},
                             {"shapes/test": {**agreement, "spearman": 0.1}, "shapes-ood/test": agreement},
                             path=None)  # type: ignore[arg-type]
    assert [r.vision.name for r in result.tied_with_best] == ["v2", "v3"]
    assert result.default_benchmark == "shapes-ood/test"
    verdict = result.verdict()
    assert verdict.startswith("best real pair by cka on shapes/train: v1 x t, 0.300 [0.250, 0.350]; 2 other pair(s) "
                              "tied with it")
    assert "Against probing on shapes-ood/test: Spearman 0.800 (p=0.2) over 4 real pairs; 2 of the top 3" in verdict
    assert "Spearman 0.100" in result.verdict("shapes/test")
