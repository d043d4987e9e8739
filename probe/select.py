"""Encoder selection without training (freeze-align): similarity of paired embeddings, ranked.

For every (vision, text) pair, the image features and the features of each image's first caption
form aligned rows; mutual kNN, CKA, CKNNA and SVCCA of those rows come with bootstrap intervals and
a shuffled-pairing null. Ranking pairs by one metric predicts which pair aligns best; once probing
records exist, :func:`rank_agreement` says how well it did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from probe.registry import EncoderSpec

if TYPE_CHECKING:
    from probe.metrics.similarity import ResamplePlan, Side

SIMILARITY_METRICS = ("mutual_knn", "cka", "cknna", "svcca")


def first_caption_rows(images: np.ndarray, texts: np.ndarray, caption_image: np.ndarray, max_pairs: int,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Aligned (image row, caption row) indices: each image with its first caption, images or
    captions with non-finite features dropped, at most ``max_pairs`` of them (a seeded subsample)."""
    owner = np.asarray(caption_image)
    first_caption = np.full(len(images), -1)
    first_caption[owner[::-1]] = np.arange(len(owner))[::-1]  # last write wins: the first caption
    ok = (first_caption >= 0) & np.isfinite(images).all(axis=1)
    rows = np.flatnonzero(ok)
    rows = rows[np.isfinite(texts[first_caption[rows]]).all(axis=1)]
    if len(rows) > max_pairs:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_pairs, replace=False))
    return rows, first_caption[rows]


def similarity_metrics(a: Side, b: Side, plan: ResamplePlan
                       ) -> tuple[dict[str, float], dict[str, list[float]], dict[str, Any]]:
    """``(metrics, intervals, null)`` of every similarity metric, from two prepared sides
    (:func:`probe.metrics.similarity.side`) on the same rows."""
    from probe.metrics.similarity import pair_scores

    metrics, intervals, null = {}, {}, {}
    for name, result in pair_scores(a, b, plan).items():
        key = f"similarity/{name}"
        metrics[key] = result.value
        intervals[key] = [result.ci_low, result.ci_high]
        null[key] = {"mean": result.null_mean, "p_value": result.p_value}
    return metrics, intervals, null


@dataclass
class SelectionRun:
    """Compute (or reuse) one similarity record per pair on one split of one dataset."""

    dataset: Any
    split: str
    results_dir: Path
    k: int = 10
    max_pairs: int = 5000
    n_boot: int = 50
    n_perm: int = 50
    seed: int = 0
    extract_kwargs: dict[str, Any] | None = None

    def path(self, v: EncoderSpec, t: EncoderSpec) -> Path:
        from probe.results import record_path

        return record_path(self.results_dir, "similarity", self.dataset.info.name, v.name, t.name,
                           f"{self.split}-k{self.k}-n{self.max_pairs}-seed{self.seed}")

    def run(self, vision: list[EncoderSpec], text: list[EncoderSpec], recompute: bool = False) -> list[dict]:
        from tqdm.auto import tqdm

        from probe.errors import ProbeError
        from probe.metrics.similarity import resample_plan, side
        from probe.results import is_complete, new_record, read_record, write_record
        from probe.sweep import SweepSplits, encoder_features, spec_summary

        if self.split not in self.dataset.info.splits:
            raise ProbeError(f"dataset {self.dataset.info.name!r} has no split {self.split!r}; "
                             f"valid: {', '.join(self.dataset.info.splits)}")
        data = self.dataset.load(self.split)
        splits = SweepSplits(fit=self.dataset.load("train") if "train" in self.dataset.info.splits else data,
                             val=None, eval=data)
        features: dict[str, Any] = {}

        def feats(spec: EncoderSpec) -> np.ndarray:
            if spec.name not in features:
                features[spec.name] = encoder_features(spec, splits, [], self.extract_kwargs or {}, roles=("eval",))
            return features[spec.name].by_role["eval"]

        # Each encoder's side (neighbours, principal basis, self-HSIC on every resample) is prepared
        # once per set of rows and reused with every partner: V + T preparations, not 2 V T.
        sides: dict[tuple[str, bytes], Side] = {}

        def prepared(spec: EncoderSpec, x: np.ndarray, rows: np.ndarray, plan: ResamplePlan) -> Side:
            key = (spec.name, rows.tobytes())
            if key not in sides:
                sides[key] = side(x[rows], plan, SIMILARITY_METRICS, k=self.k)
            return sides[key]

        records = []
        # a bar on a terminal only (disable=None), as for extraction: captured stderr stays clean
        bar = tqdm(total=len(vision) * len(text), desc=f"similarity {self.dataset.info.name}/{self.split}",
                   unit=" pair", disable=None, leave=False)
        for v in vision:
            for t in text:
                bar.update(1)
                path = self.path(v, t)
                if not recompute and is_complete(path):
                    records.append(read_record(path))
                    continue
                image_rows, caption_rows = first_caption_rows(feats(v), feats(t), data.caption_image,
                                                              self.max_pairs, self.seed)
                if len(image_rows) <= self.k + 1:
                    raise ProbeError(f"split {self.split!r} has {len(image_rows)} usable pairs; need more than "
                                     f"k + 1 = {self.k + 1} (lower --k)")
                plan = resample_plan(len(image_rows), self.n_boot, self.n_perm, self.seed, k=self.k)
                metrics, intervals, null = similarity_metrics(prepared(v, feats(v), image_rows, plan),
                                                              prepared(t, feats(t), caption_rows, plan), plan)
                record = new_record("similarity", dataset=self.dataset.info.name, split=self.split, seed=self.seed,
                                    config={"k": self.k, "max_pairs": self.max_pairs, "n_boot": self.n_boot,
                                            "n_perm": self.n_perm, "pairs": "image + first caption"},
                                    n_pairs=len(image_rows), vision=spec_summary(v), text=spec_summary(t),
                                    metrics=metrics, intervals=intervals, interval_level=0.95, null=null)
                write_record(path, record)
                records.append(record)
            features.pop(v.name, None)
            for key in [key for key in sides if key[0] == v.name]:
                del sides[key]
        bar.close()
        return records


def probing_scores(results_dir: Path, dataset: str, head: str | None = None, loss: str | None = None
                   ) -> dict[tuple[str, str], float]:
    """Best probing score per (vision, text) among successful alignment records (optionally one head/loss)."""
    from probe.results import iter_records

    best: dict[tuple[str, str], float] = {}
    for record in iter_records(results_dir, "alignment"):
        config = record.get("config", {})
        if record["status"] != "ok" or record["dataset"] != dataset:
            continue
        if (head and config.get("head") != head) or (loss and config.get("loss") != loss):
            continue
        pair = (record["vision"]["name"], record["text"]["name"])
        best[pair] = max(best.get(pair, -np.inf), record["metrics"]["alignment/probing_score"])
    return best


def rank_agreement(predicted: dict[tuple[str, str], float], probed: dict[tuple[str, str], float],
                   top: int) -> dict[str, Any] | None:
    """How well ``predicted`` ranked pairs by their probing scores; None with fewer than 3 shared pairs."""
    from scipy.stats import kendalltau

    from probe.metrics.rank import spearman

    shared = sorted(set(predicted) & set(probed))
    if len(shared) < 3:
        return None
    x = [predicted[p] for p in shared]
    y = [probed[p] for p in shared]
    (rho, rho_p), tau = spearman(x, y), kendalltau(x, y)
    chosen = sorted(shared, key=lambda p: -predicted[p])[:top]
    best = sorted(shared, key=lambda p: -probed[p])[:top]
    return {"n": len(shared), "spearman": rho, "spearman_p": rho_p,
            "kendall": float(tau.statistic), "kendall_p": float(tau.pvalue),
            "top_hits": len(set(chosen) & set(best)), "top": min(top, len(shared)),
            "best_probed": max(y), "best_selected": max(probed[p] for p in chosen),
            "regret": max(y) - max(probed[p] for p in chosen)}
