"""``probe.select``: rank (vision, text) pairs by how similar their embeddings of the same image-caption
pairs are, with no training, and say how well that ranking predicted the probing scores.

The command ``probe select`` calls :func:`select` and prints its :class:`SelectionResult`; a
notebook gets the same ranking, agreements and selection record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import ProbeError

log = logging.getLogger("probe")


@dataclass
class SelectionResult:
    """The ranking of one selection and how it compares with probing."""

    metric: str
    top: int
    dataset: str
    split: str
    #: similarity records of the pairs ranked (controls apart unless ``with_controls``), best first
    candidates: list[Any]
    #: control pairs (pixels, random weights, TF-IDF), listed for reference, best first
    references: list[Any]
    #: probing scores by benchmark label, by (vision, text), that the ranking was compared with
    probed: dict[str, dict[tuple[str, str], float]]
    #: per benchmark (and "<benchmark> (with controls)"): Spearman, Kendall, top hits ...
    agreements: dict[str, dict[str, Any]]
    #: the selection record written
    path: Path
    #: similarity records that failed (the reason is in each), and those recomputed because stale
    failed: list[Path] = field(default_factory=list)
    stale: list[tuple[Path, str]] = field(default_factory=list)
    #: the benchmark a summary quotes, when the caller chose one (see :attr:`default_benchmark`)
    score_on: str | None = None

    @property
    def selected(self) -> list[tuple[str, str]]:
        """The ``top`` pairs chosen, best first."""
        return [(r.vision.name, r.text.name) for r in self.candidates[: self.top]]

    @property
    def tied_with_best(self) -> list[Any]:
        """Candidates (best first, the best excluded) whose 95% interval overlaps the best one's: this
        data does not tell them apart from it. Empty without intervals (``n_boot=0``)."""
        from probe.records import keys

        if not self.candidates:
            return []
        key = keys.similarity(self.metric)
        best = self.candidates[0].interval(key)
        if best is None:
            return []
        return [r for r in self.candidates[1:] if (bounds := r.interval(key)) is not None and bounds[1] >= best[0]]

    @property
    def default_benchmark(self) -> str | None:
        """The benchmark a summary quotes probing scores of: the one asked for (``score_on``), else a
        transfer benchmark (scored on data the heads never saw) where there is one, else the in-domain one."""
        if self.score_on is not None:
            return self.score_on
        transfer = [label for label in self.probed if label.split("/")[0] != self.dataset]
        chosen = transfer or list(self.probed)
        return chosen[0] if chosen else None

    def verdict(self, benchmark: str | None = None) -> str:
        """The answer in words one can quote: the best real pair with its interval, how many are tied
        with it, and how well the ranking agreed with probing on ``benchmark`` (default:
        :attr:`default_benchmark`)."""
        from probe.records import keys

        if not self.candidates:
            return f"no pair could be ranked by {self.metric} on {self.dataset}/{self.split}"
        key = keys.similarity(self.metric)
        best = self.candidates[0]
        bounds = best.interval(key)
        interval = f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else ""
        ties = self.tied_with_best
        kind = "pair" if any(r.vision.control or r.text.control for r in self.candidates) else "real pair"
        line = (f"best {kind} by {self.metric} on {self.dataset}/{self.split}: {best.vision.name} x {best.text.name}, "
                f"{best.metrics[key]:.3f}{interval}")
        line += (f"; {len(ties)} other pair(s) tied with it (95% intervals overlap)" if ties else
                 "; no other pair's interval reaches it" if bounds else "; no interval (n_boot=0)")
        label = benchmark or self.default_benchmark
        agreement = self.agreements.get(label) if label else None
        if agreement:
            line += (f". Against probing on {label}: Spearman {agreement['spearman']:.3f} "
                     f"(p={agreement['spearman_p']:.2g}) over {agreement['n']} real pairs; {agreement['top_hits']} of "
                     f"the top {agreement['top']} selected are among the top {agreement['top']} probed")
        else:
            line += ". No probing records of 3 or more of these pairs yet: run `probe run` to check the ranking"
        return line

    def to_frame(self) -> Any:
        """The ranking (candidates, then references) as a DataFrame: value, interval, null mean and
        the first benchmark's probing score where one exists."""
        import pandas as pd

        from probe.records import keys

        key = keys.similarity(self.metric)
        shown = next(iter(self.probed.values()), {})
        rows = []
        for rank, r in [(str(i), r) for i, r in enumerate(self.candidates, 1)] + [("-", r) for r in self.references]:
            bounds = r.interval(key) or (None, None)
            rows.append({"rank": rank, "vision": r.vision.name, "text": r.text.name,
                         "control": r.vision.control or r.text.control, self.metric: r.metrics[key],
                         f"{self.metric}_lo": bounds[0], f"{self.metric}_hi": bounds[1], "null": r.null[key].mean,
                         "probing_score": shown.get((r.vision.name, r.text.name))})
        return pd.DataFrame(rows)


def plan_selection(vision: str | Sequence[str] = "all", text: str | Sequence[str] = "all", *,
                   dataset: str = "shapes", split: str = "train", metric: str | None = None, protocol: str = "probe",
                   layers: str | None = None, k: int = 10,
                   max_pairs: int = 5000, n_boot: int = 50, results_dir: str | Path | None = None,
                   cache_dir: str | Path | None = None, workers: int | None = None, device: str | None = None,
                   executor: str = "local", ray_address: str | None = None, registry: Sequence[str | Path] = (),
                   allow_download: bool = False, progress: bool = True, dry_run: bool = False
                   ) -> tuple[Any, list[tuple[Any, ...]], list[Any]]:
    """Check every input and make the similarity work: ``(work, pairs, entries skipped)``. ``protocol``
    names a similarity protocol (:data:`probe.metrics.protocols.PROTOCOLS`); ``metric`` must be one it
    computes (its first, when not given)."""
    from probe.api.common import resolve_sides
    from probe.data import get_dataset
    from probe.features.options import ExtractOptions
    from probe.metrics.protocols import check_protocol
    from probe.pipeline.ray_executor import check_executor, for_workers
    from probe.pipeline.runner import pairs
    from probe.ranking import SimilarityWork, check_metric, protocol_spec, selection_plan
    from probe.workspace import folders

    chosen = check_protocol(protocol)
    check_metric(metric or chosen.metrics[0], chosen)
    check_executor(executor, ray_address)
    if max_pairs < k + 2 and {"mutual_knn", "cknna"} & set(chosen.metrics):  # k neighbours besides the point itself
        raise ProbeError(f"--max-pairs {max_pairs} is too few for --k {k}; give at least k + 2 = {k + 2}")
    ds = get_dataset(dataset)
    v_specs, t_specs, skipped = resolve_sides(vision, text, registry, allow_download)
    results, cache = for_workers(executor, *folders(results_dir, cache_dir, dry_run))
    options = ExtractOptions(cache_dir=cache, workers=workers, device=device, allow_download=allow_download,
                             progress=progress)
    unlike = chosen.unlike(layers)
    if unlike:
        log.warning("similarity protocol %r: %s", chosen.name, unlike)
    plan = selection_plan(ds, split, max_pairs, all_captions=chosen.captions == "mean")
    work = SimilarityWork(ds.info.name, plan, results, options, k=k, max_pairs=max_pairs, n_boot=n_boot,
                          n_perm=n_boot, protocol=chosen, layers=layers, layer_metric=metric or chosen.metrics[0])
    if layers and not dry_run:  # a layer an encoder lacks is bad input, said before any features are made
        for spec in [*v_specs, *t_specs]:
            work.layer_specs(protocol_spec(spec, chosen))
    return work, pairs(v_specs, t_specs), skipped


def select(vision: str | Sequence[str] = "all", text: str | Sequence[str] = "all", *, top: int = 3,
           metric: str | None = None, with_controls: bool = False, recompute: bool = False,
           head: str | None = None, loss: str | None = None, executor: str = "local",
           ray_address: str | None = None, score_on: str | None = None, **settings: Any) -> SelectionResult:
    """Rank (vision, text) pairs by embedding similarity on paired data, with no training.

    Each pair's image features and first-caption features on ``dataset``/``split`` (a seeded sample
    of ``max_pairs`` images of a larger split) are compared by mutual kNN, CKA, unbiased CKA, CKNNA
    and SVCCA with bootstrap intervals and a shuffled-pairing null; pairs are ranked by ``metric``
    (mutual kNN unless given). ``protocol="platonic"`` or ``"freeze-align"`` compares them as those
    sources did (:mod:`probe.metrics.protocols`; freeze-align ranks by biased CKA on raw rows of
    all-token means and caption means). Control pairs are
    listed apart unless ``with_controls``. Where probing records exist (of ``head`` / ``loss`` only,
    when given), the result says how well the ranking predicted them. Similarity records that stand
    for this selection are reused unless ``recompute``.

    ``layers`` (``"all"``, ``"last:K"``, ``"2,4"``) compares every named layer of both encoders by
    ``metric`` and ranks each pair by its best layer pair, judged against the best a whole search finds
    on shuffled pairings. ``score_on`` names the benchmark whose probing scores the summary quotes
    (checked before any pair is encoded).

    Other keyword arguments are :func:`plan_selection`'s: ``protocol``, ``dataset``, ``split``, ``k``,
    ``max_pairs``, ``n_boot``, ``results_dir``, ``cache_dir``, ``workers``, ``device``,
    ``registry``, ``allow_download``, ``progress``.

    Example::

        import probe
        chosen = probe.select(top=3, dataset="shapes")
        chosen.selected, chosen.agreements
    """
    from probe.align.config import check_head, check_loss
    from probe.api.common import log_skipped
    from probe.pipeline.ray_executor import executor_for
    from probe.pipeline.runner import PairRunner
    from probe.ranking import probing_scores, rank_agreement
    from probe.records import keys
    from probe.records.schema import SelectionRecord
    from probe.records.store import read_record, record_path, write_record

    if top < 1:
        raise ProbeError(f"top must be >= 1, got {top}")
    if head is not None:
        check_head(head)
    if loss is not None:
        check_loss(loss)
    work, items, skipped = plan_selection(vision, text, metric=metric, executor=executor, ray_address=ray_address,
                                          **settings)
    metric = metric or work.protocol.metrics[0]
    probed = probing_scores(work.results_dir, work.dataset_name, head, loss)
    if score_on is not None and score_on not in probed:  # said before any pair is encoded
        raise ProbeError(f"--score-on {score_on!r}: no probing records of these pairs on it; recorded: "
                         f"{', '.join(probed) or 'none'}")
    log_skipped(skipped)
    with executor_for(executor, ray_address, (work.options.cache_dir, work.results_dir)) as runner_executor:
        # one line per pair as it finishes ([k/N], time so far and left): long selections are not silent
        outcome = PairRunner(skip_existing=not recompute, progress=work.options.progress, echo=log.info,
                             executor=runner_executor).run(work, items)
    key = keys.similarity(metric)
    records = [r for r in (read_record(work.path(item, work.split)) for item in items) if r.ok]
    ranked = sorted(records, key=lambda r: -r.metrics[key])

    def control(r: Any) -> bool:
        return r.vision.control or r.text.control

    # controls are yardsticks, not candidates: they take no slot unless asked, and are listed apart
    candidates = ranked if with_controls else [r for r in ranked if not control(r)]
    references = [] if with_controls else [r for r in ranked if control(r)]
    predicted = {(r.vision.name, r.text.name): r.metrics[key] for r in ranked}
    real = {(r.vision.name, r.text.name) for r in ranked if not control(r)}
    agreements: dict[str, dict[str, Any]] = {}
    for benchmark, scores in probed.items():
        # over real pairs (what a user chooses among), and over every pair with the controls
        for label, pool in ((benchmark, {p: v for p, v in predicted.items() if p in real}),
                            (f"{benchmark} (with controls)", predicted)):
            agreement = rank_agreement(pool, scores, top)
            if agreement is not None:
                agreements[label] = agreement
    k = work.k
    protocol = "" if work.protocol.name == "probe" else f"-{work.protocol.name}"
    path = write_record(record_path(work.results_dir, "selection", work.dataset_name,
                                    f"{metric}-{work.split}-k{k}{protocol}"),
                        SelectionRecord.new(dataset=work.dataset_name, split=work.split, seed=0,
                                            config={"metric": metric, "top": top, "k": k, "max_pairs": work.max_pairs,
                                                    "head": head, "loss": loss, "with_controls": with_controls,
                                                    "protocol": work.protocol.name},
                                            ranking=[{"vision": v, "text": t, "value": val} for (v, t), val in
                                                     sorted(predicted.items(), key=lambda kv: -kv[1])],
                                            agreements=agreements))
    return SelectionResult(metric, top, work.dataset_name, work.split, candidates, references, probed, agreements,
                           path, outcome.failed, outcome.stale, score_on)
