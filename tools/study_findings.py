"""The real-data study's findings, read from its records: per benchmark, how well each training-free
route ranks the real pairs, whether a layer search or the forecast improves on plain selection, whether
aligning the most similar layers beats aligning the outputs, and what each route cost.

    python tools/study_findings.py results/study --dataset tuxpaint+openclipart+emoji > findings.md

Agreement is Spearman's r between a route's value and the measured score (each pair at its best
result), over the real pairs (no control on either side, no ``@layer`` variant), with a 95% bootstrap
interval over pairs and its p-value (exact for 8 pairs or fewer). "Improves" is the paired bootstrap
interval of the difference in r on the same pairs: above 0 means better on this data. Only records
are read; nothing is recomputed.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

Pair = tuple[str, str]


def _real(pair: Pair, controls: set[str]) -> bool:
    return not (set(pair) & controls) and "@" not in pair[0] + pair[1]


def _rho(x: list[float], y: list[float]) -> str:
    from probe.metrics.rank import spearman, spearman_interval

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return "n/a"
    rho, p = spearman(x, y)
    low, high = spearman_interval(x, y)
    return f"{rho:+.2f} [{low:+.2f}, {high:+.2f}] (p = {p:.2g})"


def _r(x: list[float], y: list[float]) -> str:
    from probe.metrics.rank import spearman

    return f"{spearman(x, y)[0]:+.2f}" if len(x) >= 3 else "n/a"


def _difference(a: list[float], b: list[float], y: list[float]) -> str:
    from probe.metrics.rank import spearman_difference_interval

    if len(y) < 3:
        return "n/a"
    observed, low, high = spearman_difference_interval(a, b, y)
    verdict = "better" if low > 0 else "worse" if high < 0 else "not told apart"
    return f"{observed:+.2f} [{low:+.2f}, {high:+.2f}]: {verdict}"


def _mean_gain(gains: list[float]) -> str:
    """The mean of paired differences with a 95% percentile bootstrap interval over the pairs (scipy)."""
    if not gains:
        return "not run"
    import numpy as np
    from scipy.stats import bootstrap

    mean = float(np.mean(gains))
    if len(gains) < 2 or len(set(gains)) < 2:
        return f"{mean:+.3f} (no interval)"
    ci = bootstrap((np.asarray(gains),), np.mean, n_resamples=2000, method="percentile",
                   random_state=np.random.default_rng(0)).confidence_interval
    return f"{mean:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]; higher in {sum(g > 0 for g in gains)} of {len(gains)}"


def read(results: Path, dataset: str) -> dict[str, Any]:
    """Everything the tables need, from the records under ``results``."""
    from probe.ranking import probing_scores
    from probe.records.store import iter_records

    controls: set[str] = set()
    fit_s = eval_s = head_flops = 0.0
    n_scored = 0
    fits: set[tuple[str, str, str]] = set()
    extraction: dict[str, float] = {}
    for stored in iter_records(results, "alignment"):
        r = stored.record
        if r.dataset != dataset or not r.ok or "@" in r.vision.name + r.text.name:  # a layer's heads: apart
            continue
        controls |= {ref.name for ref in (r.vision, r.text) if ref.control}
        if r.timing is not None:
            eval_s += r.timing.eval_s
        n_scored += 1
        fit = (r.vision.name, r.text.name, repr(r.config))  # one fit, scored on every benchmark
        if fit not in fits:
            fits.add(fit)
            fit_s += r.timing.fit_grid_s if r.timing is not None else 0.0
            head_flops += r.cost.head_train_flops or 0.0
        for side, ref in (("vision", r.vision), ("text", r.text)):
            extraction[ref.name] = r.cost.extraction_flops.get(side) or 0.0
    plain: dict[Pair, float] = {}
    searched: dict[Pair, dict[str, Any]] = {}
    similarity_s = search_s = 0.0
    sampled = 0
    for stored in iter_records(results, "similarity"):
        r = stored.record
        if r.dataset != dataset or not r.ok:
            continue
        pair = (r.vision.name, r.text.name)
        seconds = r.timing.similarity_s if r.timing is not None else math.nan
        if r.config.is_default:
            plain[pair] = r.metrics["similarity/mutual_knn"]
            similarity_s += seconds
            sampled = max(sampled, r.n_pairs or 0)
        elif r.layers is not None and r.layers.get("metric") == "mutual_knn":
            searched[pair] = {"value": r.metrics["similarity/mutual_knn"], "best": r.layers["best"],
                              "p": r.layers["search_p"]}
            search_s += seconds
    forecasts: dict[str, dict[Pair, tuple[float, float, float, float]]] = defaultdict(dict)
    coverage: dict[str, float] = {}
    for stored in iter_records(results, "forecast"):
        r = stored.record
        if r.dataset != dataset:
            continue
        coverage[r.benchmark] = r.coverage
        for row in r.rows:
            if row.measured is not None:
                forecasts[r.benchmark][(row.vision, row.text)] = (row.measured, row.forecast, row.low, row.high)
    return {"probed": probing_scores(results, dataset), "controls": controls, "plain": plain, "searched": searched,
            "forecasts": forecasts, "coverage": coverage, "similarity_s": similarity_s, "search_s": search_s, "sampled": sampled,
            "fit_s": fit_s, "eval_s": eval_s, "n_fits": len(fits), "n_scored": n_scored, "head_flops": head_flops, "extraction": extraction}


def agreement_table(found: dict[str, Any]) -> list[str]:
    """Per benchmark: plain selection, the held-out forecast, and the forecast's gain over selection."""
    lines = ["| benchmark | real pairs | selection (mutual kNN) | forecast (held out) | forecast − selection | "
             "forecast coverage | all pairs, controls included: selection / forecast |", "|---|---|---|---|---|---|---|"]
    for benchmark, scores in found["probed"].items():
        pairs = sorted(p for p in scores if _real(p, found["controls"]) and p in found["plain"])
        y = [scores[p] for p in pairs]
        x = [found["plain"][p] for p in pairs]
        held = found["forecasts"].get(benchmark, {})
        both = [p for p in pairs if p in held]
        f = [held[p][1] for p in both]
        covered = sum(held[p][2] <= held[p][0] <= held[p][3] for p in both)
        every = sorted(p for p in scores if "@" not in p[0] + p[1] and p in found["plain"] and p in held)
        with_controls = (f"{_r([found['plain'][p] for p in every], [scores[p] for p in every])} / "
                         f"{_r([held[p][1] for p in every], [scores[p] for p in every])} ({len(every)})")
        lines.append(f"| {benchmark} | {len(pairs)} | {_rho(x, y)} | {_rho(f, [scores[p] for p in both])} | "
                     f"{_difference(f, [found['plain'][p] for p in both], [scores[p] for p in both])} | "
                     f"{covered} of {len(both)} (all pairs: {found['coverage'].get(benchmark, math.nan):.2f}) | "
                     f"{with_controls} |")
    return lines


def layer_table(found: dict[str, Any]) -> list[str]:
    """Per benchmark, over the pairs with a layer search: does the best layer pair's similarity rank
    them better than the outputs' similarity, and does aligning those layers beat aligning the outputs?"""
    lines = ["| benchmark | pairs | outputs' mutual kNN | best layer pair's | best − outputs | "
             "aligned at the best layers − at the outputs |", "|---|---|---|---|---|---|"]
    for benchmark, scores in found["probed"].items():
        pairs = sorted(p for p in found["searched"] if p in scores and p in found["plain"])
        y = [scores[p] for p in pairs]
        outputs = [found["plain"][p] for p in pairs]
        best = [found["searched"][p]["value"] for p in pairs]
        gains = []
        for vision, text in pairs:
            bv, bt = found["searched"][(vision, text)]["best"]
            at_layers = scores.get((f"{vision}@{bv}", f"{text}@{bt}"))
            if at_layers is not None:
                gains.append(at_layers - scores[(vision, text)])
        aligned = _mean_gain(gains)
        lines.append(f"| {benchmark} | {len(pairs)} | {_rho(outputs, y)} | {_rho(best, y)} | "
                     f"{_difference(best, outputs, y)} | {aligned} |")
    return lines


def cost_lines(found: dict[str, Any]) -> list[str]:
    shared = sum(found["extraction"].values())
    return [
        f"- Training-free: {len(found['plain'])} pairs' similarities (mutual kNN, CKA, unbiased CKA, CKNNA, SVCCA, "
        f"each with bootstrap and null) took {found['similarity_s'] / 60:.1f} min of compute; "
        f"{len(found['searched'])} layer searches {found['search_s'] / 60:.1f} min.",
        f"- Probing: {found['n_fits']} fits took {found['fit_s'] / 60:.1f} min and {found['head_flops'] / 1e12:.1f} "
        f"TFLOP of head training; scoring their {found['n_scored']} results {found['eval_s'] / 60:.1f} min.",
        f"- Both read the same cached features: {shared / 1e12:.0f} TFLOP of encoder forward passes over the "
        f"training corpus ({len(found['extraction'])} encoders, once each); selection reads its "
        f"{found['sampled']:,}-pair sample of them.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--dataset", required=True, help="the corpus the heads were fitted on")
    args = parser.parse_args()
    found = read(args.results, args.dataset)
    print("\n".join(["## Agreement with the measured score, real pairs", "", *agreement_table(found), "",
                     "## Layer search", "", *layer_table(found), "", "## Cost", "", *cost_lines(found)]))


if __name__ == "__main__":
    main()
