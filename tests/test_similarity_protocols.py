"""Similarity protocols: platonic-rep's and freeze-align's way of comparing paired embeddings,
checked against their published formulas (written out here from their code) and hand computations."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from probe.errors import ProbeError
from probe.metrics.protocols import PROTOCOLS, caption_means, check_protocol, clip_outliers
from probe.metrics.resampling import pair_scores, resample_plan, side
from probe.metrics.similarity import svcca, unbiased_cka
from probe.ranking import protocol_rows, protocol_spec


def _features(seed: int, n: int = 120, d: int = 24) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n, 6))
    a = shared @ rng.normal(size=(6, d)) + 0.5 * rng.standard_t(3, size=(n, d))  # heavy tails: outliers
    b = shared @ rng.normal(size=(6, d + 8)) + 0.5 * rng.normal(size=(n, d + 8))
    return a.astype(np.float32), b.astype(np.float32)


def test_outlier_clipping_is_platonic_reps_remove_outliers():
    """metrics.py:327-341 with exact=False: the bound is the mean over rows of each row's q-quantile."""
    import torch

    x, _ = _features(0)
    feats = torch.from_numpy(x)
    q_val = torch.quantile(feats.abs().flatten(start_dim=1), 0.95, dim=1).mean()
    expected = feats.clamp(-q_val, q_val).numpy()
    np.testing.assert_allclose(clip_outliers(x, 0.95), expected, rtol=1e-6)
    assert (np.abs(x) > q_val.item()).sum() > 0  # something was clipped


def test_platonic_svcca_is_standardised_features_then_sklearn_cca():
    """metrics.py:129-160: z-score each feature, top-10 left singular vectors, scikit-learn's CCA, mean
    correlation of the canonical pairs (here with an exact SVD, which svd_lowrank estimates)."""
    from sklearn.cross_decomposition import CCA

    a, b = _features(1)
    a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)

    def preprocess(act):
        act = act - act.mean(0)
        return act / (act.std(0, ddof=1) + 1e-8)

    u1 = np.linalg.svd(preprocess(a.astype(np.float64)), full_matrices=False)[0][:, :10]
    u2 = np.linalg.svd(preprocess(b.astype(np.float64)), full_matrices=False)[0][:, :10]
    c1, c2 = CCA(n_components=10, max_iter=5000, tol=1e-10).fit(u1, u2).transform(u1, u2)
    expected = np.mean([np.corrcoef(c1[:, i], c2[:, i])[0, 1] for i in range(10)])
    assert svcca(a, b, dim=10, standardize=True) == pytest.approx(expected, abs=2e-4)
    assert abs(svcca(a, b, dim=10) - expected) > 1e-3  # without standardising it differs


def test_unbiased_cka_is_platonic_reps_hsic_unbiased():
    """metrics.py:96-126 and 230-249, on Gram matrices."""
    a, b = (x.astype(np.float64) for x in _features(2))
    a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)

    def hsic_unbiased(k, l):  # noqa: E741
        m = k.shape[0]
        kt, lt = k.copy(), l.copy()
        np.fill_diagonal(kt, 0)
        np.fill_diagonal(lt, 0)
        value = np.sum(kt * lt.T) + np.sum(kt) * np.sum(lt) / ((m - 1) * (m - 2)) - 2 * np.sum(kt @ lt) / (m - 2)
        return value / (m * (m - 3))

    k, l = a @ a.T, b @ b.T  # noqa: E741
    expected = hsic_unbiased(k, l) / (np.sqrt(hsic_unbiased(k, k) * hsic_unbiased(l, l)) + 1e-6)
    assert unbiased_cka(a, b) == pytest.approx(expected, rel=1e-5)
    plan = resample_plan(len(a), 3, 3, seed=0)
    scored = pair_scores(side(a, plan, ("unbiased_cka",)), side(b, plan, ("unbiased_cka",)), plan)["unbiased_cka"]
    assert scored.value == pytest.approx(expected, rel=1e-5)
    assert scored.ci_low <= scored.value <= scored.ci_high


def test_freeze_align_on_four_images_by_hand():
    """Biased linear CKA on raw rows of image features and each image's mean caption. With one
    feature, linear CKA is the squared Pearson correlation: images 0, 1, 2, 3 against caption means
    0, (0.5 + 1.5) / 2 = 1, (2 + 4) / 2 = 3, 2: centred -1.5, -0.5, 0.5, 1.5 and -1.5, -0.5, 1.5, 0.5,
    sum of products 4, sums of squares 5 and 5, r = 0.8, CKA = 0.64."""
    protocol = check_protocol("freeze-align")
    images = np.array([[0.0], [1.0], [2.0], [3.0]], dtype=np.float32)
    captions = np.array([[0.0], [0.5], [1.5], [2.0], [4.0], [2.0]], dtype=np.float32)
    owner = np.array([0, 1, 1, 2, 2, 3])
    rows, x, y = protocol_rows(protocol, images, captions, owner, max_pairs=5000)
    assert rows.tolist() == [0, 1, 2, 3] and y.ravel().tolist() == [0.0, 1.0, 3.0, 2.0]
    plan = resample_plan(4, 0, 0)
    sides = [side(v, plan, protocol.metrics, normalize=protocol.normalize) for v in (x, y)]
    assert pair_scores(*sides, plan)["cka"].value == pytest.approx(0.64)
    # the first captions instead, 0, 0.5, 2, 2 (mean 1.125): sum of products 3.75, sum of squares 3.1875
    _, x1, y1 = protocol_rows(PROTOCOLS["probe"], images, captions, owner, max_pairs=5000)
    first = pair_scores(*(side(v, plan, ("cka",), normalize=False) for v in (x1, y1)), plan)["cka"].value
    assert first == pytest.approx(3.75 ** 2 / (5 * 3.1875))


def test_caption_means_mark_images_without_a_caption():
    means = caption_means(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32), np.array([0, 0]), 2)
    assert means[0].tolist() == [2.0, 3.0] and np.isnan(means[1]).all()


def test_freeze_align_pools_every_token_of_a_token_encoder_only():
    import torch

    from probe.encoders.pooling import pool_vision_tokens
    from probe.registry import Registry

    tokens = torch.arange(24, dtype=torch.float32).reshape(1, 4, 6)
    assert torch.equal(pool_vision_tokens(tokens, "mean_all", 1), tokens.mean(dim=1))
    registry = Registry.load()
    vit = registry.get("test/tiny-vit")
    protocol = PROTOCOLS["freeze-align"]
    wide = replace(vit, pooling="cls+mean", embed_dim=2 * vit.embed_dim)
    assert protocol_spec(wide, protocol).pooling == "mean_all"
    assert protocol_spec(wide, protocol).embed_dim == vit.embed_dim
    assert protocol_spec(vit, PROTOCOLS["probe"]) is vit
    text = registry.get("test/tiny-bert")
    assert protocol_spec(text, protocol) is text
    assert protocol_spec(registry.get("baseline/pixels-16"), protocol).pooling == registry.get(
        "baseline/pixels-16").pooling


def test_select_under_each_protocol_names_it_and_refuses_typos(run_cli, tmp_path, shared_cache):
    from conftest import assert_one_line_error

    tiny = ("--vision", "test/tiny-vit", "--text", "test/tiny-bert", "--n-boot", "5")
    env = {"PROBE_CACHE_DIR": str(shared_cache), "PROBE_RESULTS_DIR": str(tmp_path / "r")}
    assert_one_line_error(run_cli("select", *tiny, "--protocol", "platnic", env=env),
                          "unknown similarity protocol 'platnic'", "probe, platonic, freeze-align")
    assert_one_line_error(run_cli("select", *tiny, "--protocol", "freeze-align", "--metric", "mutual_knn", env=env),
                          "metric 'mutual_knn' is not one the 'freeze-align' similarity protocol computes", "cka")
    ran = run_cli("select", *tiny, "--protocol", "freeze-align", env=env)
    assert ran.returncode == 0, ran.stderr
    assert "by cka on shapes/train" in ran.stdout
    platonic = run_cli("select", *tiny, "--protocol", "platonic", env=env)
    assert platonic.returncode == 0, platonic.stderr
    assert "one layer per encoder" in platonic.stderr  # what it does unlike its source, said
    assert "--layers all searches every layer pair" in platonic.stderr
    searched = run_cli("select", *tiny, "--protocol", "platonic", "--layers", "all", env=env)
    assert searched.returncode == 0, searched.stderr  # a layer search as platonic-rep's: only what still differs
    assert "one layer per encoder" not in searched.stderr and "clipping bound is each layer's own" in searched.stderr
    found = [json.loads(p.read_text()) for p in (tmp_path / "r" / "records" / "similarity").rglob("*.json")]
    assert sum("layers" in r["config"] for r in found) == 1
    records = {r["config"]["protocol"]["name"]: r for r in found if "layers" not in r["config"]}
    assert set(records) == {"freeze-align", "platonic"}
    assert set(records["freeze-align"]["metrics"]) == {"similarity/cka"}
    assert records["freeze-align"]["config"]["pairs"] == "image + mean of its captions"
    assert records["platonic"]["config"]["protocol"]["clip_quantile"] == 0.95
    assert len(records["platonic"]["metrics"]) == 5
    with pytest.raises(ProbeError, match="unknown similarity protocol"):
        check_protocol("clip")


def test_a_protocols_record_dict_gains_the_one_layer_caveat_only_where_it_has_one():
    """probe's own protocol holds what it held before the caveat existed, so its similarity records'
    identities (which hold this dict) are unchanged and `probe select` keeps reusing them."""
    assert set(PROTOCOLS["probe"].to_dict()) == {"name", "metrics", "normalize", "clip_quantile", "standardize_svcca",
                                                 "captions", "vision_pooling", "unlike_source"}
    assert "unlike_source_one_layer" not in PROTOCOLS["freeze-align"].to_dict()
    assert PROTOCOLS["platonic"].to_dict()["unlike_source_one_layer"].startswith("one layer per encoder")
