"""Training-free selection and correlates: ``probe select``, ``probe correlate``."""

from __future__ import annotations

from collections.abc import Callable

import click

from probe.cli.common import (
    CONTEXT,
    RunContext,
    cache_option,
    device_option,
    executor_options,
    fmt,
    results_option,
    workers_option,
)

_COMMON: list[Callable[[Callable], Callable]] = [
    click.option("--dataset", "-d", default="shapes", show_default=True, help="Dataset (as for `probe run`)."),
    results_option,
    cache_option,
    click.option("--head", default=None, callback=lambda ctx, param, value: _checked(value, "head"),
                 help="Compare with probing records of this head only [default: best of any]."),
    click.option("--loss", default=None, callback=lambda ctx, param, value: _checked(value, "loss"),
                 help="Compare with probing records of this loss only [default: best of any]."),
    workers_option("decoding images"),
    device_option("Device for feature extraction on a cache miss."),
]


def _checked(value: str | None, kind: str) -> str | None:
    """A --head / --loss filter must name a real head or loss: a typo would match no record."""
    if value is None:
        return None
    if kind == "head":
        from probe.align.config import check_head

        return check_head(value)
    from probe.align.config import check_loss

    return check_loss(value)


def common(fn):
    for option in reversed(_COMMON):
        fn = option(fn)
    return fn


def _report_failures(outcome) -> None:
    from probe.records.store import read_record

    for path in outcome.failed:
        record = read_record(path)
        names = " x ".join(getattr(record, side).name for side in ("vision", "text", "model") if hasattr(record, side))
        click.echo(f"{names}: FAILED: {record.error}", err=True)


def _print_ranking(chosen, top: int, split: str, with_controls: bool, show_controls: bool = False) -> None:
    """The verdict first, then the ranked pairs (ties with the best marked; the controls apart), then
    how well the ranking agreed with probing on every benchmark."""
    from probe.cli.tables import print_table
    from probe.records import keys

    label = chosen.default_benchmark
    click.echo(chosen.verdict(label))
    metric = chosen.metric
    key = keys.similarity(metric)
    shown: dict = chosen.probed.get(label, {}) if label else {}
    tied = {id(r) for r in chosen.tied_with_best}

    def named(ref) -> str:
        return ref.name + (" (control)" if ref.control else "")

    def row(rank: str, r) -> list[str]:
        bounds = r.interval(key)  # none without a bootstrap (--n-boot 0)
        value = f"{r.metrics[key]:.3f}" + (f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else "")
        return [rank, named(r.vision), named(r.text), value,
                fmt(r.null[key].mean), fmt(shown.get((r.vision.name, r.text.name)))]

    candidates = chosen.candidates
    rows = [row(f"{rank}=" if id(r) in tied else str(rank), r) for rank, r in enumerate(candidates[:top], 1)]
    column = f"probing score ({label})" if label else "probing score"
    headers = ["rank", "vision", "text", f"{metric} [95% CI]", "null", column]
    print_table(headers, rows, title=f"top {min(top, len(candidates))} of {len(candidates)} "
                                     f"{'pairs' if with_controls else 'real pairs'} by {metric} on "
                                     f"{chosen.dataset}/{split}", optional=("null", column))
    if any(row[0].endswith("=") for row in rows):
        click.echo("n= : tied with the best (95% intervals overlap): this data does not tell them apart")
    if chosen.references and show_controls:
        print_table(headers, [row("-", r) for r in chosen.references],
                    title=f"{len(chosen.references)} control pair(s), for reference (--with-controls ranks them too)",
                    optional=("null", column))
    elif chosen.references:  # the yardstick in one line; the table on request
        best = chosen.references[0]
        click.echo(f"{len(chosen.references)} control pair(s), not ranked; the best: {best.vision.name} x "
                   f"{best.text.name}, {metric} {best.metrics[key]:.3f} (--show-controls lists them)")
    for benchmark, agreement in chosen.agreements.items():
        real = "" if benchmark.endswith("(with controls)") else "real "
        click.echo(f"ranking vs probing score over {agreement['n']} probed {real}"
                   f"pairs of {benchmark}: Spearman {agreement['spearman']:.3f} (p={agreement['spearman_p']:.2g}), "
                   f"Kendall {agreement['kendall']:.3f} (p={agreement['kendall_p']:.2g}); {agreement['top_hits']} "
                   f"of the top {agreement['top']} selected are among the top {agreement['top']} probed; best "
                   f"selected {agreement['best_selected']:.3f} vs best probed {agreement['best_probed']:.3f}")


@click.command(context_settings=CONTEXT)
@click.option("--top", default=3, show_default=True, type=click.IntRange(min=1), help="How many pairs to select.")
@click.option("--with-controls", is_flag=True,
              help="Let control pairs (pixels, random weights, TF-IDF) take ranking slots; by default they are "
                   "listed below the ranking for reference.")
@click.option("--metric", default=None,
              help="mutual_knn, cka, unbiased_cka, cknna or svcca (one the protocol computes) [default: mutual_knn; "
                   "cka under --protocol freeze-align].")
@click.option("--show-controls", is_flag=True,
              help="List the control pairs (pixels, random weights, TF-IDF) under the ranking; by default one "
                   "line gives their number and the best.")
@click.option("--layers", default=None, metavar="WHICH",
              help="Compare every layer pair (all, last:K, or a list such as 2,4) by --metric; each pair is ranked "
                   "by its best layer pair, with a p-value against the best a search finds by chance.")
@click.option("--score-on", default=None, metavar="BENCHMARK",
              help="Benchmark whose probing scores the table and the verdict quote (e.g. shapes-ood/test) "
                   "[default: a transfer benchmark where there is one].")
@click.option("--protocol", default="probe", show_default=True,
              help="How pairs are compared: probe (every metric, L2-normalised rows, first caption), platonic "
                   "(platonic-rep's outlier clipping and SVCCA), freeze-align (biased CKA on raw rows, all-token "
                   "means, caption means); records name the protocol and each setting's source is cited in "
                   "probe/metrics/protocols.py.")
@click.option("--vision", multiple=True, default=("all",), show_default=True, metavar="PATTERN")
@click.option("--text", multiple=True, default=("all",), show_default=True, metavar="PATTERN")
@click.option("--split", default="train", show_default=True, help="Split whose image-caption pairs are compared.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(min=1), help="Neighbours (mutual kNN, CKNNA).")
@click.option("--max-pairs", default=5000, show_default=True, type=click.IntRange(min=3),
              help="Compare a seeded sample of this many images (each with its first caption) of a larger split; "
                   "only the sample is encoded, unless the whole split is cached.")
@click.option("--n-boot", default=50, show_default=True, type=click.IntRange(min=0),
              help="Bootstrap resamples for the intervals (and shuffles for the null).")
@click.option("--recompute", is_flag=True, help="Recompute similarity records that exist.")
@click.option("--dry-run", is_flag=True,
              help="Say what the selection would encode (cached, to encode, disk, time) and compare; load no model.")
@common
@executor_options
@click.pass_obj
def select(obj: RunContext, top, with_controls, metric, show_controls, layers, score_on, protocol, vision, text, split, k, max_pairs, n_boot, recompute,
           dry_run, dataset, results_dir, cache_dir, head, loss, workers, device, executor, ray_address) -> None:
    """Rank (vision, text) pairs by embedding similarity on paired data, with no training.

    Each pair's image features and first-caption features are compared (mutual kNN, CKA, unbiased
    CKA, CKNNA, SVCCA; 95% bootstrap interval and a shuffled-pairing null); pairs are ranked by
    --metric. --protocol platonic or freeze-align compares them as those papers' code did. Where
    `probe run` records exist, it also says how well the ranking predicted the probing scores
    (Spearman and Kendall across pairs; whether the selected pairs are the best probed ones).
    A pair that fails is recorded with its reason; the exit code is then 1.

    \b
    Examples:
      probe select --top 3
      probe select --top 5 --metric cka --vision 'dinov2/*' --text 'sentence-transformers/*'
      probe select --protocol freeze-align --dataset coco:~/coco --split val2017
      probe select --dataset karpathy:~/coco/dataset_coco.json --split train --max-pairs 10000
      probe select --vision all --text all -d wds:~/cc3m --dry-run    # what the 5,000 pairs cost to encode
    """
    from probe.api.common import log_skipped
    from probe.api.selection import plan_selection
    from probe.api.selection import select as select_pairs

    settings = dict(vision=vision, text=text, protocol=protocol, layers=layers, dataset=dataset, split=split, k=k, max_pairs=max_pairs, n_boot=n_boot,
                    results_dir=results_dir, cache_dir=cache_dir, workers=workers, device=device,
                    registry=obj.registry_paths, allow_download=obj.allow_download)
    if dry_run:
        from probe.cli.preview import echo_selection_preview

        work, items, skipped = plan_selection(metric=metric, executor=executor, ray_address=ray_address, dry_run=True,
                                              **settings)
        log_skipped(skipped)
        echo_selection_preview(work, items, recompute)
        return
    chosen = select_pairs(top=top, metric=metric, with_controls=with_controls, recompute=recompute, head=head,
                          loss=loss, executor=executor, ray_address=ray_address, score_on=score_on, **settings)
    _report_failures(chosen)
    _print_ranking(chosen, top, split, with_controls, show_controls)
    if chosen.failed:
        raise click.exceptions.Exit(1)


@click.command(context_settings=CONTEXT)
@click.option("--recompute", is_flag=True, help="Recompute correlates records that exist.")
@click.option("--mteb-task", "mteb_tasks", multiple=True, metavar="TASK",
              help="Run this MTEB task for every probed text encoder (repeatable; needs the mteb extra, and a "
                   "network for the task's data): its main score's mean is a correlate beside the published averages.")
@click.option("--corpus", default=None, metavar="DATASET",
              help="Compare with the probing records of heads fitted on this corpus [default: --dataset]; the "
                   "unimodal scores need class labels, which a captioned corpus lacks.")
@common
@click.pass_obj
def correlate(obj: RunContext, recompute, mteb_tasks, corpus, dataset, results_dir, cache_dir, head, loss, workers,
              device) -> None:
    """How well each unimodal score and similarity metric predicts the probing score.

    For every encoder in the dataset's probing records: vision kNN accuracy (weighted, k = 10 and
    20, T = 0.07), linear-probe accuracy, k-means NMI; for text encoders an MTEB-style score on the
    captions (STS, clustering, classification); published ImageNet kNN / MTEB averages from the
    registry. Similarity metrics come from `probe select` records. An encoder's own score is compared
    over distinct encoders (each at its mean probing score over its pairs), a pair's similarity over
    pairs. Prints Spearman's r and its p-value per correlate and writes the table as a record.

    \b
    Examples:
      probe run --vision all --text all && probe select && probe correlate
      probe correlate --head star --loss siglip
      probe correlate --mteb-task STSBenchmark --mteb-task Banking77Classification
      probe correlate --dataset fashion-mnist --corpus tuxpaint+openclipart+emoji
    """
    from probe.api.correlation import correlate as correlate_scores
    from probe.cli.tables import print_table
    from probe.records import keys

    found = correlate_scores(dataset=dataset, corpus=corpus, head=head, loss=loss, recompute=recompute,
                             mteb_tasks=mteb_tasks,
                             results_dir=results_dir, cache_dir=cache_dir, workers=workers, device=device,
                             registry=obj.registry_paths, allow_download=obj.allow_download)
    _report_failures(found)
    print_table(["encoder", "kNN@20", "linear probe", "k-means NMI", "text score", "STS", "MTEB run", "published"],
                [[name, fmt(v.get(keys.VISION_KNN20)), fmt(v.get(keys.VISION_LINEAR)),
                  fmt(v.get(keys.VISION_KMEANS_NMI)), fmt(v.get(keys.TEXT_SCORE)), fmt(v.get(keys.TEXT_STS)),
                  fmt(v.get(keys.TEXT_MTEB)), fmt(v.get("published:imagenet_knn", v.get("published:mteb_avg")), 1)]
                 for name, v in found.models.items()],
                title=f"unimodal correlates on {found.dataset}",
                optional=("published", "MTEB run", "STS", "k-means NMI", "linear probe"))
    for benchmark, rows in found.tables.items():
        print_table(["correlate", "over", "n", "Spearman r", "p-value"],
                    [[r["correlate"], r["over"], str(r["n"]), fmt(r["spearman"]),
                      "-" if r["p_value"] is None else f"{r['p_value']:.2g}"] for r in rows],
                    title=f"what predicts the score on {benchmark} ({found.n_pairs[benchmark]} probed pairs, heads "
                          f"fitted on {found.fitted_on}; unimodal scores on {found.dataset})")
    if found.failed:
        raise click.exceptions.Exit(1)


@click.command("forecast", context_settings=CONTEXT)
@click.option("--dataset", "-d", default="shapes", show_default=True,
              help="The corpus heads were fitted on, whose similarity and probing records are used.")
@click.option("--head", default=None, help="Only probing records of this head (linear, mlp, star).")
@click.option("--loss", default=None, help="Only probing records of this loss (infonce, siglip).")
@click.option("--level", default=0.9, show_default=True, type=float, help="Coverage the intervals aim for.")
@results_option
@click.pass_obj
def forecast_command(obj: RunContext, dataset, head, loss, level, results_dir) -> None:
    """Forecast each pair's probing score, with an interval, from training-free signals.

    A ridge regression on the recorded signals (similarities from `probe select`, unimodal scores
    from `probe correlate`, sizes) is fitted to the probing scores recorded. Each probed pair's
    held-out forecast comes from a model that saw no pair sharing its vision or its text encoder;
    Spearman's r and the intervals' coverage say how good that is. Pairs not probed yet are forecast
    by the model fitted on every probed pair.

    \b
    Examples:
      probe run --vision all --text all && probe select && probe forecast
      probe forecast --head linear --loss siglip --level 0.8
    """
    from probe.api.forecasting import forecast
    from probe.cli.tables import print_table

    found = forecast(dataset=dataset, head=head, loss=loss, level=level, results_dir=results_dir,
                     registry=obj.registry_paths)
    for benchmark, result in found.forecasts.items():
        rows = [[v, t, fmt(m), f"{f:.3f} [{lo:.3f}, {hi:.3f}]"] for (v, t), (m, f, lo, hi) in result.held_out.items()]
        rows += [[v, t, "-", f"{f:.3f} [{lo:.3f}, {hi:.3f}]"] for (v, t), (f, lo, hi) in result.predicted.items()]
        rows.sort(key=lambda row: -float(row[3].split()[0]))
        print_table(["vision", "text", "measured", f"forecast [{level:.0%} interval]"], rows,
                    title=f"{benchmark}: held-out Spearman {result.spearman:.3f} (p={result.spearman_p:.2g}), "
                          f"coverage {result.coverage:.0%} of {len(result.held_out)} probed pair(s); "
                          f"{len(result.predicted)} forecast")


COMMANDS = [select, correlate, forecast_command]
