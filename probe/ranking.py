"""Encoder selection without training (freeze-align): similarity of paired embeddings, ranked.

For every (vision, text) pair, the image features and the features of each image's first caption
(or the mean of its captions) form aligned rows; the metrics of a similarity protocol
(:mod:`probe.metrics.protocols`: mutual kNN, CKA, unbiased CKA, CKNNA, SVCCA) come with bootstrap
intervals and a shuffled-pairing null. Ranking pairs by one metric predicts which pair aligns best;
once probing records exist, :func:`rank_agreement` says how well it did.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from probe.data.splits import SplitPlan
from probe.encoder_spec import EncoderSpec
from probe.errors import ProbeError
from probe.features.options import ExtractOptions
from probe.metrics.protocols import PROTOCOLS, SimilarityProtocol
from probe.pipeline.runner import Item
from probe.records import keys

if TYPE_CHECKING:
    from probe.metrics.resampling import ResamplePlan, Side

SIMILARITY_METRICS = keys.SIMILARITY_METRICS


def check_metric(metric: str, protocol: SimilarityProtocol | None = None) -> str:
    """``metric`` if it is one, and one ``protocol`` computes; else one line naming the valid ones."""
    if metric not in SIMILARITY_METRICS:
        raise ProbeError(f"unknown metric {metric!r}; valid: {', '.join(SIMILARITY_METRICS)}")
    if protocol is not None and metric not in protocol.metrics:
        raise ProbeError(f"metric {metric!r} is not one the {protocol.name!r} similarity protocol computes; it "
                         f"computes: {', '.join(protocol.metrics)}")
    return metric


def protocol_spec(spec: EncoderSpec, protocol: SimilarityProtocol) -> EncoderSpec:
    """The entry a protocol encodes with: a vision encoder that gives token sequences pooled the
    protocol's way where it names one (the width follows: ``cls+mean`` was two tokens wide)."""
    from dataclasses import replace

    from probe.encoders.families import TOKEN_POOLINGS

    pooling = protocol.vision_pooling
    if pooling is None or spec.modality != "vision" or spec.pooling not in TOKEN_POOLINGS["vision"]:
        return spec
    if spec.pooling == pooling:
        return spec
    width = spec.embed_dim // 2 if spec.pooling == "cls+mean" else spec.embed_dim
    return replace(spec, pooling=pooling, embed_dim=width)


def protocol_rows(protocol: SimilarityProtocol, images: np.ndarray, texts: np.ndarray, caption_image: np.ndarray,
                  max_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image rows, X, Y)``: the compared rows of a protocol, prepared (outliers clipped where it
    says so; normalisation is the metrics' own). With first captions, an image and its first caption;
    with mean captions, an image and the mean of its captions' embeddings. Rows with non-finite
    features are dropped; at most ``max_pairs`` of them are kept (a seeded subsample)."""
    rows = protocol_row_indices(protocol, images, texts, caption_image, max_pairs, seed)
    return (rows, image_side(protocol, images, rows),
            text_side(protocol, texts, caption_image, len(images), rows))


def protocol_row_indices(protocol: SimilarityProtocol, images: np.ndarray, texts: np.ndarray,
                         caption_image: np.ndarray, max_pairs: int, seed: int = 0) -> np.ndarray:
    """The image rows :func:`protocol_rows` compares (finite features, at most ``max_pairs``)."""
    from probe.metrics.protocols import caption_means

    if protocol.captions == "first":
        return first_caption_rows(images, texts, caption_image, max_pairs, seed)[0]
    means = caption_means(texts, caption_image, len(images))
    rows = np.flatnonzero(np.isfinite(images).all(axis=1) & np.isfinite(means).all(axis=1))
    if len(rows) > max_pairs:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_pairs, replace=False))
    return rows


def _prepared_rows(protocol: SimilarityProtocol, x: np.ndarray) -> np.ndarray:
    from probe.metrics.protocols import clip_outliers

    if protocol.clip_quantile is not None:
        x = clip_outliers(x, protocol.clip_quantile)
    return np.ascontiguousarray(x, dtype=np.float32)


def image_side(protocol: SimilarityProtocol, images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """X: the image ``rows`` a protocol compares, prepared its way (see :func:`protocol_rows`)."""
    return _prepared_rows(protocol, images[rows])


def text_side(protocol: SimilarityProtocol, texts: np.ndarray, caption_image: np.ndarray, n_images: int,
              rows: np.ndarray) -> np.ndarray:
    """Y: the text row of each image in ``rows`` (its first caption, or its captions' mean), prepared."""
    from probe.metrics.protocols import caption_means

    if protocol.captions == "first":
        return _prepared_rows(protocol, texts[first_captions(caption_image, n_images)[rows]])
    return _prepared_rows(protocol, caption_means(texts, caption_image, n_images)[rows])


def first_captions(caption_image: np.ndarray, n_images: int) -> np.ndarray:
    """Each image's first caption (its index), -1 for an image without one."""
    owner = np.asarray(caption_image)
    first_caption = np.full(n_images, -1)
    first_caption[owner[::-1]] = np.arange(len(owner))[::-1]  # last write wins: the first caption
    return first_caption


def first_caption_rows(images: np.ndarray, texts: np.ndarray, caption_image: np.ndarray, max_pairs: int,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Aligned (image row, caption row) indices: each image with its first caption, images or
    captions with non-finite features dropped, at most ``max_pairs`` of them (a seeded subsample)."""
    first_caption = first_captions(caption_image, len(images))
    ok = (first_caption >= 0) & np.isfinite(images).all(axis=1)
    rows = np.flatnonzero(ok)
    rows = rows[np.isfinite(texts[first_caption[rows]]).all(axis=1)]
    if len(rows) > max_pairs:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_pairs, replace=False))
    return rows, first_caption[rows]


def selection_plan(dataset: Any, split: str, max_pairs: int, seed: int = 0, all_captions: bool = False
                   ) -> SplitPlan:
    """The split a selection compares, as a plan of one target. Where it has more images with a
    caption than ``max_pairs``, the target is a seeded sample of them, each with its first caption only
    (with ``all_captions``, every caption of each), drawn as :func:`first_caption_rows` draws (the same
    rows where every feature is finite). So the
    encoders encode those pairs, not a corpus of millions: the sample reads its rows from the whole
    split's cache entry where ``probe extract`` or ``probe run`` wrote one, and is otherwise encoded
    alone. The corpus that encoders fitted on captions learn from stays the whole training split."""
    from probe.data.splits import Target, single_split_plan

    plan = single_split_plan(dataset, split)
    data = plan.scored
    first = first_captions(data.caption_image, data.n_images)
    rows = np.flatnonzero(first >= 0)
    if len(rows) <= max_pairs:
        return plan
    rows = np.sort(np.random.default_rng(seed).choice(rows, max_pairs, replace=False))
    if all_captions:
        sample = data.subset(rows, f"{split}-sample{max_pairs}-seed{seed}-all-captions", encode_whole=False)
    else:
        sample = data.subset(rows, f"{split}-sample{max_pairs}-seed{seed}", captions=first[rows], encode_whole=False)
    return SplitPlan(fit=plan.fit, targets=(Target(dataset.info.name, sample),))


def similarity_metrics(a: Side, b: Side, plan: ResamplePlan
                       ) -> tuple[dict[str, float], dict[str, list[float]], dict[str, Any]]:
    """``(metrics, intervals, null)`` of every similarity metric, from two prepared sides
    (:func:`probe.metrics.similarity.side`) on the same rows."""
    from probe.metrics.resampling import pair_scores

    metrics, intervals, null = {}, {}, {}
    for name, result in pair_scores(a, b, plan).items():
        key = keys.similarity(name)
        metrics[key] = result.value
        intervals[key] = [result.ci_low, result.ci_high]
        null[key] = {"mean": result.null_mean, "p_value": result.p_value}
    return metrics, intervals, null


@dataclass
class SimilarityWork:
    """One similarity record per pair on one split (a :class:`~probe.pipeline.runner.PairWork`).

    Each encoder's side of the resampling plan (neighbours, principal basis, self-HSIC on every
    resample) is prepared once per set of rows and reused with every partner: V + T preparations,
    not 2 V T. A vision encoder's sides are dropped when its row of pairs is done.
    """

    dataset_name: str
    plan: SplitPlan
    results_dir: Path
    options: ExtractOptions
    k: int = 10
    max_pairs: int = 5000
    n_boot: int = 50
    n_perm: int = 50
    seed: int = 0
    protocol: SimilarityProtocol = PROTOCOLS["probe"]
    #: with ``layers`` (``all``, ``last:K``, ``2,4``), every named layer of both encoders is compared by
    #: ``layer_metric`` and the best layer pair judged against a whole search's null (:mod:`probe.metrics.layers`)
    layers: str | None = None
    layer_metric: str = "mutual_knn"
    _sides: dict[tuple[str, bytes], Side] = field(default_factory=dict, repr=False)
    _row: str | None = field(default=None, repr=False)
    _layer_specs: dict[str, list[EncoderSpec]] = field(default_factory=dict, repr=False)

    @property
    def _needs_neighbours(self) -> bool:
        return bool({"mutual_knn", "cknna"} & set(self.protocol.metrics))

    def __post_init__(self) -> None:
        data = self.plan.scored
        usable = len(np.unique(data.caption_image))
        if self._needs_neighbours and usable <= self.k + 1:
            raise ProbeError(f"split {data.split!r} has {usable} usable pairs; need more than k + 1 = {self.k + 1} "
                             "(lower --k)")

    @property
    def split(self) -> str:
        """The split compared (a sample's is the split it was drawn from)."""
        data = self.plan.scored
        return data.parent.whole.split if data.parent is not None else data.split

    @property
    def label(self) -> str:
        return f"similarity {self.dataset_name}/{self.split}"

    def units(self, item: Item) -> Sequence[str]:
        return (self.split,)

    def path(self, item: Item, unit: str) -> Path:
        from probe.records.store import record_path

        vision, text = item
        protocol = "" if self.protocol.name == "probe" else f"-{self.protocol.name}"
        layers = f"-layers-{self.layers.replace(':', '')}-{self.layer_metric}" if self.layers else ""
        return record_path(self.results_dir, "similarity", self.dataset_name, vision.name, text.name,
                           f"{self.split}-k{self.k}-n{self.max_pairs}-seed{self.seed}{protocol}{layers}")

    def layer_specs(self, spec: EncoderSpec) -> list[EncoderSpec]:
        """``spec`` at each layer ``layers`` names (its model loaded once on the CPU to count them; a
        layer it does not have, or an encoder without readable layers, is one line)."""
        from probe.features.layers import layer_variants

        assert self.layers is not None
        if spec.name not in self._layer_specs:
            self._layer_specs[spec.name] = layer_variants(spec, self.layers, self.options.allow_download)
        return self._layer_specs[spec.name]

    def features(self, spec: EncoderSpec) -> Any:
        """The compared split's features: one array, or with ``layers`` one per layer."""
        from probe.features.roles import encoder_features

        specs = self.layer_specs(protocol_spec(spec, self.protocol)) if self.layers else [protocol_spec(spec, self.protocol)]
        if self.layers:  # every layer this search reads, from one forward pass
            from probe.features.layers import prefetch_layers

            prefetch_layers(specs, self.plan, self.options, roles=("eval",))
        arrays = [encoder_features(s, self.plan, self.options, roles=("eval",), with_prompts=False).by_role["eval"]
                  for s in specs]
        return arrays if self.layers else arrays[0]

    @property
    def config(self) -> dict[str, Any]:
        layers = {"layers": {"which": self.layers, "metric": self.layer_metric}} if self.layers else {}
        return {"k": self.k, "max_pairs": self.max_pairs, "n_boot": self.n_boot, "n_perm": self.n_perm,
                "pairs": self.protocol.pairs, "protocol": self.protocol.to_dict(), **layers}

    def identity(self, item: Item, unit: str) -> str:
        """What produces this pair's record (:mod:`probe.records.identity`): both entries as the
        protocol encodes with them, the settings and protocol, and the compared rows' data."""
        from probe.records.identity import identity_digest

        vision, text = (protocol_spec(spec, self.protocol) for spec in item)
        return identity_digest("similarity", vision=vision.to_dict(), text=text.to_dict(), config=self.config,
                               seed=self.seed, data=self.plan.scored.content_fingerprint, split=self.split)

    def _record(self, item: Item, **results: Any):
        from probe.records.schema import SimilarityRecord, encoder_ref

        vision, text = item
        return SimilarityRecord.new(identity=self.identity(item, self.split), dataset=self.dataset_name,
                                    split=self.split, seed=self.seed, config=self.config,
                                    vision=encoder_ref(vision), text=encoder_ref(text), **results)

    def failure(self, item: Item, unit: str, reason: str):
        return self._record(item, error=reason)

    def _prepared(self, spec: EncoderSpec, x: np.ndarray, rows: np.ndarray, plan: ResamplePlan) -> Side:
        """One encoder's side on the compared ``rows`` (``x``: its prepared rows), made once per set of rows."""
        from probe.metrics.resampling import side

        key = (spec.name, rows.tobytes())
        if key not in self._sides:
            self._sides[key] = side(x, plan, self.protocol.metrics, k=self.k, normalize=self.protocol.normalize,
                                    standardize_svcca=self.protocol.standardize_svcca)
        return self._sides[key]

    def run(self, item: Item, features: Sequence[np.ndarray], units: Sequence[str]) -> Iterator[tuple[str, Any]]:
        from probe.metrics.resampling import resample_plan

        vision, text = item
        if self._row != vision.name:
            self._sides = {key: value for key, value in self._sides.items() if key[0] != self._row}
            self._row = vision.name
        if self.layers:
            yield from self._run_layers(item, features, units)
            return
        started = time.perf_counter()
        x_v, x_t = features
        image_rows, x, y = protocol_rows(self.protocol, x_v, x_t, self.plan.scored.caption_image, self.max_pairs,
                                         self.seed)
        self._check_usable(len(image_rows), "for this pair")
        plan = resample_plan(len(image_rows), self.n_boot, self.n_perm, self.seed, k=self.k)
        metrics, intervals, null = similarity_metrics(self._prepared(vision, x, image_rows, plan),
                                                      self._prepared(text, y, image_rows, plan), plan)
        timing = {"similarity_s": round(time.perf_counter() - started, 3)}
        for unit in units:
            yield unit, self._record(item, n_pairs=len(image_rows), metrics=metrics, intervals=intervals,
                                     interval_level=0.95, null=null, timing=timing)

    def _check_usable(self, n: int, where: str) -> None:
        """One line when fewer pairs are usable than the metrics need (k + 2 with neighbours, else 4)."""
        least = self.k + 2 if self._needs_neighbours else 4
        if n < least:
            raise ProbeError(f"split {self.split!r} has {n} usable pairs {where}; need at least {least}"
                             + (" (k + 2; lower --k)" if self._needs_neighbours else ""))

    def _run_layers(self, item: Item, features: Sequence[Any], units: Sequence[str]) -> Iterator[tuple[str, Any]]:
        """Every (vision layer, text layer) pair by ``layer_metric`` on the same rows; the record's value
        is the best pair's, its p-value against the best of a search on shuffled pairings."""
        from probe.metrics.layers import layer_search

        started = time.perf_counter()
        v_layers, t_layers = features
        owner = self.plan.scored.caption_image
        n_images = len(v_layers[0])
        # the rows every layer of both sides can use: a row dropped for one layer is dropped for all
        rows = protocol_row_indices(self.protocol, np.concatenate(v_layers, axis=1), np.concatenate(t_layers, axis=1),
                                    owner, self.max_pairs, self.seed)
        self._check_usable(len(rows), "at every layer")
        xs = [image_side(self.protocol, v, rows) for v in v_layers]
        ys = [text_side(self.protocol, t, owner, n_images, rows) for t in t_layers]
        found = layer_search(xs, ys, self.layer_metric, k=self.k, n_boot=self.n_boot, n_perm=self.n_perm,
                             seed=self.seed, normalize=self.protocol.normalize)
        key = keys.similarity(self.layer_metric)
        best = found.best_score
        # the layers features() read: the entries as the protocol encodes them
        vision_layers, text_layers = ([s.layer for s in self.layer_specs(protocol_spec(spec, self.protocol))]
                                      for spec in item)
        detail = {"metric": self.layer_metric, "vision": vision_layers, "text": text_layers,
                  "values": found.values.tolist(), "best": [vision_layers[found.best[0]], text_layers[found.best[1]]],
                  "search_null_mean": found.search_null_mean, "search_p": found.p_value}
        for unit in units:
            yield unit, self._record(item, n_pairs=len(rows), metrics={key: best.value},
                                     intervals={key: [best.ci_low, best.ci_high]}, interval_level=0.95,
                                     null={key: {"mean": found.search_null_mean, "p_value": found.p_value}},
                                     layers=detail, timing={"similarity_s": round(time.perf_counter() - started, 3)})

    def describe(self, item: Item, unit: str, record: Any) -> str:
        vision, text = item
        if not record.ok:
            return f"{vision.name} x {text.name}: FAILED: {record.error}"
        line = f"{vision.name} x {text.name}: " + ", ".join(
            f"{key.split('/', 1)[1]} {value:.3f}" for key, value in record.metrics.items())
        if record.layers:
            best = record.layers["best"]
            line += (f" at vision layer {best[0]}, text layer {best[1]} (p = {record.layers['search_p']:.2g} "
                     "against the best of a search on shuffled pairs)")
        return line


def probing_scores(results_dir: Path, dataset: str, head: str | None = None, loss: str | None = None
                   ) -> dict[str, dict[tuple[str, str], float]]:
    """Per benchmark (label such as ``shapes/test``): each (vision, text) pair's best score among
    successful alignment records fitted on ``dataset`` (optionally one head/loss). The score is the
    benchmark's primary one: the probing score where retrieval was scored, else the mean zero-shot
    top-1, else the Winoground group score. Scores of different benchmarks are never mixed."""
    from probe.records.store import iter_records
    from probe.records.table import best_by_pair

    stored = [s for s in iter_records(results_dir, "alignment")
              if s.record.dataset == dataset and s.record.ok and (not head or s.record.config.head == head)
              and (not loss or s.record.config.loss == loss)]
    out: dict[str, dict[tuple[str, str], float]] = {}
    # the dataset's own (in-domain) benchmark first, then the others by name
    for key, item in sorted(best_by_pair(stored, metric=None).items(),
                            key=lambda kv: (kv[0].benchmark.split("/")[0] != dataset, kv[0])):
        found = keys.primary(item.record.metrics)
        if found is not None:
            out.setdefault(key.benchmark, {})[(key.vision, key.text)] = found[1]
    return out


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
