"""The forecast: never fitted on a pair sharing an encoder with the pair it forecasts, recovers a
planted relation, reports honest coverage, and says when it has too few pairs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_one_line_error

from probe.errors import ProbeError
from probe.metrics.forecast import conformal_half_width, forecast, training_pairs


def _grid(n_vision: int, n_text: int, seed: int = 0, noise: float = 0.02):
    """Pairs whose score is a planted linear function of two signals, plus noise, and a third signal
    that is pure noise."""
    rng = np.random.default_rng(seed)
    vq, tq = rng.uniform(size=n_vision), rng.uniform(size=n_text)
    signals, scores = {}, {}
    for i in range(n_vision):
        for j in range(n_text):
            pair = (f"v{i}", f"t{j}")
            sim = 0.5 * vq[i] + 0.5 * tq[j] + 0.05 * rng.normal()
            signals[pair] = {"similarity/cka": sim, "vision/knn20": vq[i], "noise": rng.normal()}
            scores[pair] = 0.2 + 0.5 * sim + 0.3 * vq[i] + noise * rng.normal()
    return scores, signals


def test_a_held_out_forecast_never_learns_from_a_pair_sharing_an_encoder(monkeypatch):
    import probe.metrics.forecast as module

    scores, signals = _grid(4, 5)
    seen: list[tuple[tuple[str, str], list]] = []
    original = module.training_pairs

    def spy(pair, recorded):
        train = original(pair, recorded)
        seen.append((pair, train))
        return train

    monkeypatch.setattr(module, "training_pairs", spy)
    forecast(scores, signals)
    held_out = [(pair, train) for pair, train in seen]
    assert {pair for pair, _ in held_out} == set(scores)
    for pair, train in held_out:
        assert train and all(p[0] != pair[0] and p[1] != pair[1] for p in train)
        assert len(train) == 3 * 4  # the other vision encoders' pairs with the other text encoders


def test_the_forecast_recovers_a_planted_relation_and_forecasts_unprobed_pairs():
    scores, signals = _grid(5, 6)
    probed = {p: s for p, s in scores.items() if p != ("v0", "t0") and p != ("v4", "t5")}
    found = forecast(probed, signals, level=0.9)
    assert found.spearman > 0.9 and found.spearman_p < 1e-6
    assert set(found.predicted) == {("v0", "t0"), ("v4", "t5")}
    for pair, (value, low, high) in found.predicted.items():
        assert low < value < high and abs(value - scores[pair]) < 0.1
    assert found.signals == ("noise", "similarity/cka", "vision/knn20")


def test_a_signal_outside_the_fitted_range_is_clipped_not_extrapolated():
    """One vision encoder unlike the others (a size signal of 0 where the rest have 6-8, as the pixel
    control has): its held-out pairs are forecast within the scores measured, not far beyond them."""
    scores, signals = _grid(5, 6)
    for (vision, _), values in signals.items():
        values["vision/log10_params"] = 0.0 if vision == "v0" else 6.0 + 0.4 * int(vision[1:])
        scores[(vision, _)] += 0.0 if vision == "v0" else 0.2 * int(vision[1:])  # size helps, among the others
    found = forecast(scores, signals)
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    for pair, (_, value, _, _) in found.held_out.items():
        assert low - span < value < high + span, (pair, value)
    # unclipped, the same ridge model puts v0's pairs far outside (what the clip prevents)
    from probe.metrics.forecast import _matrix, _model

    names = list(found.signals)
    train = training_pairs(("v0", "t0"), list(scores))
    model = _model().fit(_matrix(train, signals, names), [scores[p] for p in train])
    unclipped = float(model.predict(_matrix([("v0", "t0")], signals, names))[0])
    assert not low - span < unclipped < high + span


def test_coverage_is_measured_on_held_out_pairs_and_near_the_level():
    """Over 20 noisy grids the held-out intervals (each from the other pairs' residuals) cover about
    90% of measured scores: at least 80% on average, and not all of them every time."""
    coverages = [forecast(*_grid(5, 6, seed=seed, noise=0.05), level=0.9).coverage for seed in range(20)]
    assert 0.8 <= float(np.mean(coverages)) <= 0.97
    assert min(coverages) < 1.0
    assert conformal_half_width(np.arange(1.0, 11.0), 0.9) == 10.0  # ceil(11 * 0.9) = 10th of 10
    assert conformal_half_width(np.arange(1.0, 21.0), 0.5) == 11.0  # ceil(21 * 0.5) = 11th


def test_too_few_pairs_says_how_many_it_has_and_needs():
    scores, signals = _grid(2, 3)
    with pytest.raises(ProbeError, match="a forecast needs, for each of the 6 recorded pair.s., at least 3 other"):
        forecast(scores, signals)
    assert training_pairs(("v0", "t0"), list(scores)) == [("v1", "t1"), ("v1", "t2")]
    with pytest.raises(ProbeError, match="no training-free signal"):
        forecast({("v0", "t0"): 0.1}, {("v0", "t0"): {"a": float("nan")}})


def test_probe_forecast_from_recorded_runs_and_selections(run_cli, tmp_path, shared_cache):
    """Three vision and three text encoders, probed on all but one pair: each probed pair gets a
    held-out forecast from the four pairs sharing neither encoder, the unprobed pair a forecast; the
    record holds both, and a forecast without probing records is one line."""
    import json

    encoders = ("--vision", "test/tiny-vit", "--vision", "test/tiny-vit-wide", "--vision", "baseline/pixels-16",
                "--text", "test/tiny-bert", "--text", "baseline/tfidf-svd-256", "--text", "baseline/random-bert-l6")
    env = {"PROBE_CACHE_DIR": str(shared_cache), "PROBE_RESULTS_DIR": str(tmp_path / "r")}
    assert run_cli("select", *encoders, "--n-boot", "2", env=env).returncode == 0
    assert_one_line_error(run_cli("forecast", env=env), "no successful probing records", "probe run")
    ran = run_cli("run", *encoders, "--epochs", "1", "--task", "retrieval", env=env)
    assert ran.returncode == 0, ran.stderr
    unprobed = next((tmp_path / "r" / "records" / "alignment").rglob("baseline_pixels-16__baseline_random-bert-l6*"))
    unprobed.unlink()  # left unprobed: forecast only
    shown = run_cli("forecast", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "held-out Spearman" in shown.stdout and "1 forecast" in shown.stdout
    (path,) = (tmp_path / "r" / "records" / "forecast").rglob("*.json")
    record = json.loads(path.read_text())
    rows = {(r["vision"], r["text"]): r for r in record["rows"]}
    assert len(rows) == 9 and rows[("baseline/pixels-16", "baseline/random-bert-l6")]["measured"] is None
    assert all(r["low"] <= r["forecast"] <= r["high"] for r in rows.values())
    assert "leave one encoder out" in record["config"]["validation"]
    assert {"similarity/mutual_knn", "vision/log10_params", "text/log10_params"} <= set(record["config"]["signals"])
    # the study's findings read these records: one fit per probed pair, every pair's similarity
    from conftest import load_script

    findings = load_script("tools/study_findings.py")
    found = findings.read(tmp_path / "r", "shapes")
    assert found["n_fits"] == found["n_scored"] == 8 and len(found["plain"]) == 9 and found["similarity_s"] > 0
    (benchmark,) = found["probed"]
    assert set(found["forecasts"][benchmark]) == set(rows) - {("baseline/pixels-16", "baseline/random-bert-l6")}
    table = findings.agreement_table(found)
    assert len(table) == 3 and table[2].startswith(f"| {benchmark} | ")
