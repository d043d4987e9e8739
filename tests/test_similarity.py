"""Each metric against a direct N x N computation written from its published formula."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from probe.errors import ProbeError
from probe.metrics.resampling import score
from probe.metrics.similarity import METRICS, cka, cknna, mutual_knn, svcca


def normed(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def direct_knn(x, k):
    sims = normed(x) @ normed(x).T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def direct_mutual_knn(a, b, k):
    na, nb = direct_knn(a, k), direct_knn(b, k)
    return np.mean([len(set(na[i]) & set(nb[i])) / k for i in range(len(a))])


def centre(k):
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return h @ k @ h


def direct_cka(a, b):
    k, l = normed(a) @ normed(a).T, normed(b) @ normed(b).T  # noqa: E741
    kc, lc = centre(k), centre(l)
    return np.sum(kc * lc) / np.sqrt(np.sum(kc * kc) * np.sum(lc * lc))


def hsic_u(k, l):  # noqa: E741
    """Song et al. (2012), eq. 5, written out term by term."""
    n = len(k)
    kt, lt = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    one = np.ones(n)
    return (np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ kt @ lt @ one)) / (n * (n - 3))


def direct_unbiased_cka(a, b):
    k, l = normed(a) @ normed(a).T, normed(b) @ normed(b).T  # noqa: E741
    return hsic_u(k, l) / np.sqrt(hsic_u(k, k) * hsic_u(l, l))


def direct_cknna(a, b, k):
    """Huh et al. 2024 (platonic-rep): unbiased HSIC of K, L masked to mutual kNN pairs."""
    kk, ll = normed(a) @ normed(a).T, normed(b) @ normed(b).T
    n = len(a)

    def mask_of(m):
        idx = direct_knn_from_gram(m, k)
        out = np.zeros((n, n))
        np.put_along_axis(out, idx, 1, axis=1)
        return out

    def sim(x, y):
        mask = mask_of(x) * mask_of(y)
        return hsic_u(mask * x, mask * y)

    return sim(kk, ll) / np.sqrt(sim(kk, kk) * sim(ll, ll))


def direct_knn_from_gram(m, k):
    m = m.copy()
    np.fill_diagonal(m, -np.inf)
    return np.argsort(-m, axis=1, kind="stable")[:, :k]


def direct_svcca(a, b, dim):
    def reduce(x):
        x = normed(x)
        x = x - x.mean(0)
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        return u[:, :dim] * s[:dim]

    x, y = reduce(a), reduce(b)
    sxx, syy, sxy = x.T @ x, y.T @ y, x.T @ y

    def inv_sqrt(m):
        w, v = np.linalg.eigh(m)
        return v @ np.diag(w ** -0.5) @ v.T

    rho = np.linalg.svd(inv_sqrt(sxx) @ sxy @ inv_sqrt(syy), compute_uv=False)
    return rho.mean()


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(120, 6))
    a = shared @ rng.normal(size=(6, 24)) + 0.5 * rng.normal(size=(120, 24))
    b = shared @ rng.normal(size=(6, 12)) + 0.5 * rng.normal(size=(120, 12))
    return a.astype(np.float32), b.astype(np.float32)


def test_mutual_knn_matches_direct(pair):
    a, b = pair
    for k in (1, 5, 10):
        assert mutual_knn(a, b, k=k) == pytest.approx(direct_mutual_knn(a, b, k), abs=1e-9)


def test_cka_variants_match_direct(pair):
    a, b = pair
    assert cka(a, b) == pytest.approx(direct_cka(a.astype(np.float64), b.astype(np.float64)), abs=1e-5)
    assert cka(a, b, unbiased=True) == pytest.approx(direct_unbiased_cka(a.astype(np.float64), b.astype(np.float64)),
                                                     abs=1e-5)
    assert 0 < cka(a, b, kernel="rbf") <= 1


def test_cknna_matches_direct(pair):
    a, b = pair
    for k in (5, 10):
        assert cknna(a, b, k=k) == pytest.approx(direct_cknna(a.astype(np.float64), b.astype(np.float64), k), abs=1e-5)


def test_svcca_matches_direct(pair):
    a, b = pair
    assert svcca(a, b, dim=5) == pytest.approx(direct_svcca(a.astype(np.float64), b.astype(np.float64), 5), abs=1e-5)


def test_identity_and_unrelated_references():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(500, 32)).astype(np.float32)
    unrelated = rng.normal(size=(500, 16)).astype(np.float32)
    assert mutual_knn(a, a, k=10) == 1.0
    assert cka(a, a) == pytest.approx(1.0, abs=1e-6)
    assert cknna(a, a, k=10) == pytest.approx(1.0, abs=1e-4)
    assert mutual_knn(a, unrelated, k=10) == pytest.approx(10 / 499, abs=0.01)  # chance level k/(N-1)


def test_cka_invariances(pair):
    a, b = pair
    q = ortho_group.rvs(a.shape[1], random_state=3).astype(np.float32)
    for unbiased in (False, True):
        base = cka(a, b, unbiased=unbiased)
        assert cka(a @ q, b, unbiased=unbiased) == pytest.approx(base, abs=1e-5)
        assert cka(7.5 * a, b, unbiased=unbiased) == pytest.approx(base, abs=1e-5)
        assert cka(a, b, unbiased=unbiased, normalize=False) == pytest.approx(
            cka(3 * a @ q, b, unbiased=unbiased, normalize=False), abs=1e-5)


def test_score_has_interval_and_null(pair):
    a, b = pair
    result = score("cka", a, b, n_boot=30, n_perm=30)
    assert result.ci_low <= result.value <= result.ci_high
    assert result.null_mean < result.value and result.p_value < 0.05
    knn_result = score("mutual_knn", a, b, n_boot=20, n_perm=20, k=5)
    assert knn_result.null_mean == pytest.approx(5 / 119, abs=0.03)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a, b: mutual_knn(a, b[:-1]), "same number of rows"),
        (lambda a, b: mutual_knn(a, b, k=len(a)), "k must be between 1 and N-1"),
        (lambda a, b: cka(np.where(np.eye(*a.shape, dtype=bool), np.nan, a), b), "NaN or infinite"),
        (lambda a, b: cka(a, b, kernel="poly"), "kernel 'poly' is not one of"),
        (lambda a, b: score("procrustes", a, b), "unknown metric 'procrustes'"),
    ],
)
def test_bad_input_messages(pair, call, message):
    a, b = pair
    with pytest.raises(ProbeError, match=message):
        call(a, b)


def test_blocked_knn_equals_direct_across_blocks(pair):
    from probe.metrics.similarity import knn

    a, _ = pair
    x = normed(a).astype(np.float32)
    for chunk in (7, 16, 50, 4096):  # uneven blocks exercise the transposed off-diagonal updates
        idx, val = knn(x, 6, chunk=chunk)
        assert np.array_equal(idx, direct_knn(a, 6))
        assert np.allclose(val, np.take_along_axis(x @ x.T, idx, axis=1), atol=1e-6)


@pytest.mark.parametrize("metric,kwargs", [("mutual_knn", {"k": 10}), ("cka", {}), ("svcca", {})])
def test_interval_covers_the_value_and_matches_the_sampling_spread(metric, kwargs):
    """Against the spread of the metric over fresh datasets from the same process."""

    to_a, to_b = np.random.default_rng(7).normal(size=(8, 32)), np.random.default_rng(8).normal(size=(8, 24))

    def draw(seed: int, n: int = 300):  # same process, new pairs
        rng = np.random.default_rng(seed)
        latent = rng.normal(size=(n, 8))
        return latent @ to_a + rng.normal(size=(n, 32)), latent @ to_b + rng.normal(size=(n, 24))

    fresh = [METRICS[metric](*draw(s), **kwargs) for s in range(60)]
    true_width = np.quantile(fresh, 0.975) - np.quantile(fresh, 0.025)
    widths = []
    for s in range(5):
        result = score(metric, *draw(100 + s), n_boot=60, n_perm=0, **kwargs)
        assert result.ci_low <= result.value <= result.ci_high
        widths.append(result.ci_high - result.ci_low)
    assert 0.6 * true_width < np.mean(widths) < 1.6 * true_width


def test_prepared_sides_give_what_each_metric_gives_on_every_resample(pair):
    """The shared-side path (neighbours, bases, self-HSIC once per encoder and resample; shuffles
    as relabelling) against calling the metric functions on every resample."""
    from probe.metrics.resampling import pair_scores, resample_plan, side

    a, b = pair
    plan = resample_plan(len(a), n_boot=8, n_perm=8, seed=3, k=5)
    got = pair_scores(side(a, plan, k=5, dim=4), side(b, plan, k=5, dim=4), plan)
    for metric, kwargs in (("mutual_knn", {"k": 5}), ("cknna", {"k": 5}), ("cka", {}), ("svcca", {"dim": 4})):
        fn = METRICS[metric]
        value = fn(a, b, **kwargs)
        boots = [fn(a[rows], b[rows], **kwargs) for rows in plan.boots]
        nulls = [fn(a, b[perm], **kwargs) for perm in plan.perms]
        widen = np.sqrt(plan.m / (plan.n - plan.m))
        q_low, q_high = np.quantile(boots, [0.025, 0.975])
        result = got[metric]
        assert result.value == pytest.approx(value, abs=1e-6)
        assert result.ci_low == pytest.approx(value - widen * (q_high - np.median(boots)), abs=1e-5)
        assert result.ci_high == pytest.approx(value + widen * (np.median(boots) - q_low), abs=1e-5)
        assert result.null_mean == pytest.approx(np.mean(nulls), abs=1e-6)
        assert result.p_value == pytest.approx((1 + sum(v >= value - 1e-9 for v in nulls)) / 9)


def test_sides_must_match_their_plan(pair):
    from probe.metrics.resampling import resample_plan, side

    a, _ = pair
    plan = resample_plan(len(a) - 1, n_boot=2, n_perm=2)
    with pytest.raises(ProbeError, match="features have 120 rows but the resample plan is for 119"):
        side(a, plan)
    with pytest.raises(ProbeError, match="unknown metric 'procrustes'"):
        side(a, resample_plan(len(a), 1, 1), ("procrustes",))
