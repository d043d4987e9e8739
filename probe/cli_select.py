"""Training-free selection and correlates: ``probe select``, ``probe correlate``."""

from __future__ import annotations

import click

from probe.cli import CONTEXT, checked_device, echo_skipped

_COMMON = [
    click.option("--dataset", "-d", default="shapes", show_default=True, help="Dataset (as for `probe run`)."),
    click.option("--results", "results_dir", type=click.Path(file_okay=False), default=None,
                 help="Records folder [default: results or $PROBE_RESULTS_DIR]."),
    click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                 help="Feature cache [default: results/features or $PROBE_CACHE_DIR]."),
    click.option("--head", default=None, help="Compare with probing records of this head only [default: best of any]."),
    click.option("--loss", default=None, help="Compare with probing records of this loss only [default: best of any]."),
    click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0)),
    click.option("--device", default=None, callback=checked_device, help="Device for feature extraction on a cache miss."),
]


def common(fn):
    for option in reversed(_COMMON):
        fn = option(fn)
    return fn


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@click.command(context_settings=CONTEXT)
@click.option("--top", default=3, show_default=True, type=click.IntRange(min=1), help="How many pairs to select.")
@click.option("--metric", default="mutual_knn", show_default=True, help="mutual_knn, cka, cknna or svcca.")
@click.option("--vision", multiple=True, default=("all",), show_default=True, metavar="PATTERN")
@click.option("--text", multiple=True, default=("all",), show_default=True, metavar="PATTERN")
@click.option("--split", default="train", show_default=True, help="Split whose image-caption pairs are compared.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(min=1), help="Neighbours (mutual kNN, CKNNA).")
@click.option("--max-pairs", default=5000, show_default=True, type=click.IntRange(min=3),
              help="Seeded subsample of pairs for large splits.")
@click.option("--n-boot", default=50, show_default=True, type=click.IntRange(min=0),
              help="Bootstrap resamples for the intervals (and shuffles for the null).")
@click.option("--recompute", is_flag=True, help="Recompute similarity records that exist.")
@common
@click.pass_obj
def select(obj, top, metric, vision, text, split, k, max_pairs, n_boot, recompute, dataset, results_dir, cache_dir, head,
           loss, workers, device) -> None:
    """Rank (vision, text) pairs by embedding similarity on paired data, with no training.

    Each pair's image features and first-caption features are compared (mutual kNN, CKA, CKNNA,
    SVCCA; 95% bootstrap interval and a shuffled-pairing null); pairs are ranked by --metric. Where
    `probe run` records exist, it also says how well the ranking predicted the probing scores
    (Spearman and Kendall across pairs; whether the selected pairs are the best probed ones).

    \b
    Examples:
      probe select --top 3
      probe select --top 5 --metric cka --vision 'dinov2/*' --text 'sentence-transformers/*'
      probe select --dataset karpathy:~/coco/dataset_coco.json --split train --max-pairs 10000
    """
    from pathlib import Path

    from probe.availability import resolve_models
    from probe.data import get_dataset
    from probe.errors import ProbeError
    from probe.results import default_results_dir, new_record, record_path, write_record
    from probe.select import SIMILARITY_METRICS, SelectionRun, probing_scores, rank_agreement
    from probe.tables import print_table

    if metric not in SIMILARITY_METRICS:
        raise ProbeError(f"unknown metric {metric!r}; valid: {', '.join(SIMILARITY_METRICS)}")
    v_specs, v_skipped = resolve_models(obj.registry, vision, modality="vision")
    t_specs, t_skipped = resolve_models(obj.registry, text, modality="text")
    echo_skipped(v_skipped + t_skipped)
    results = Path(results_dir) if results_dir else default_results_dir()
    ds = get_dataset(dataset)
    run = SelectionRun(ds, split, results, k=k, max_pairs=max_pairs, n_boot=n_boot, n_perm=n_boot,
                       extract_kwargs={"cache_dir": Path(cache_dir) if cache_dir else None, "workers": workers,
                                       "device": device})
    records = run.run(v_specs, t_specs, recompute=recompute)
    key = f"similarity/{metric}"
    ranked = sorted(records, key=lambda r: -r["metrics"][key])
    probed = probing_scores(results, ds.info.name, head, loss)
    def named(side: dict) -> str:
        return side["name"] + (" (control)" if side["control"] else "")

    rows = []
    for rank, r in enumerate(ranked[:top], 1):
        pair = (r["vision"]["name"], r["text"]["name"])
        lo, hi = r["intervals"][key]
        rows.append([str(rank), named(r["vision"]), named(r["text"]),
                     f"{r['metrics'][key]:.3f} [{lo:.3f}, {hi:.3f}]", _fmt(r["null"][key]["mean"]),
                     _fmt(probed.get(pair))])
    print_table(["rank", "vision", "text", f"{metric} [95% CI]", "null", "probing score"], rows,
                title=f"top {min(top, len(ranked))} of {len(ranked)} pairs by {metric} on {ds.info.name}/{split}")
    predicted = {(r["vision"]["name"], r["text"]["name"]): r["metrics"][key] for r in ranked}
    agreement = rank_agreement(predicted, probed, top)
    if agreement is None:
        click.echo("no probing records for 3 or more of these pairs yet: run `probe run` to check the ranking")
    else:
        click.echo(f"ranking vs probing score over {agreement['n']} probed pairs: Spearman "
                   f"{agreement['spearman']:.3f} (p={agreement['spearman_p']:.2g}), Kendall {agreement['kendall']:.3f} "
                   f"(p={agreement['kendall_p']:.2g}); {agreement['top_hits']} of the top {agreement['top']} selected "
                   f"are among the top {agreement['top']} probed; best selected {agreement['best_selected']:.3f} vs "
                   f"best probed {agreement['best_probed']:.3f}")
    write_record(record_path(results, "selection", ds.info.name, f"{metric}-{split}-k{k}"),
                 new_record("selection", dataset=ds.info.name, split=split, seed=0,
                            config={"metric": metric, "top": top, "k": k, "max_pairs": max_pairs, "head": head,
                                    "loss": loss},
                            ranking=[{"vision": v, "text": t, "value": val} for (v, t), val in
                                     sorted(predicted.items(), key=lambda kv: -kv[1])],
                            agreement=agreement))


@click.command(context_settings=CONTEXT)
@click.option("--recompute", is_flag=True, help="Recompute correlates records that exist.")
@common
@click.pass_obj
def correlate(obj, recompute, dataset, results_dir, cache_dir, head, loss, workers, device) -> None:
    """How well each unimodal score and similarity metric predicts the probing score.

    For every encoder in the dataset's probing records: vision kNN accuracy (weighted, k = 10 and
    20, T = 0.07), linear-probe accuracy, k-means NMI; for text encoders an MTEB-style score on the
    captions (STS, clustering, classification); published ImageNet kNN / MTEB averages from the
    registry. Similarity metrics come from `probe select` records. Prints Spearman's r and its
    p-value per correlate across pairs and writes the table as a record.

    \b
    Examples:
      probe run --vision all --text all && probe select && probe correlate
      probe correlate --head star --loss siglip
    """
    from pathlib import Path

    from probe.correlate import correlation_table, encoder_correlates
    from probe.data import get_dataset
    from probe.errors import ProbeError
    from probe.results import default_results_dir, iter_records, new_record, record_path, write_record
    from probe.select import probing_scores
    from probe.tables import print_table

    results = Path(results_dir) if results_dir else default_results_dir()
    ds = get_dataset(dataset)
    probed = probing_scores(results, ds.info.name, head, loss)
    if not probed:
        raise ProbeError(f"no successful probing records for dataset {ds.info.name!r} under {results}; "
                         f"run `probe run` first")
    extract_kwargs = {"cache_dir": Path(cache_dir) if cache_dir else None, "workers": workers, "device": device}
    models: dict[str, dict] = {}
    names = sorted({name for pair in probed for name in pair})
    known = {s.name for s in obj.registry.list()}
    for name in names:
        if name not in known:
            click.echo(f"skipping {name}: no longer in the registry", err=True)
            continue
        spec = obj.registry.get(name)
        record = encoder_correlates(spec, ds, results, extract_kwargs, recompute=recompute)
        values = dict(record["metrics"]) if record else {}
        for field in ("imagenet_knn", "mteb_avg"):
            if getattr(spec, field) is not None:
                values[f"published:{field}"] = getattr(spec, field)
        models[name] = values
    print_table(["encoder", "kNN@20", "linear probe", "k-means NMI", "text score", "STS", "published"],
                [[name, _fmt(v.get("vision/knn20")), _fmt(v.get("vision/linear")), _fmt(v.get("vision/kmeans_nmi")),
                  _fmt(v.get("text/score")), _fmt(v.get("text/sts")),
                  _fmt(v.get("published:imagenet_knn", v.get("published:mteb_avg")), 1)] for name, v in models.items()],
                title=f"unimodal correlates on {ds.info.name}")
    similarity = {(r["vision"]["name"], r["text"]["name"]): r["metrics"] for r in iter_records(results, "similarity")
                  if r["dataset"] == ds.info.name and r["status"] == "ok"}
    rows = correlation_table(probed, models, similarity)
    print_table(["correlate", "n pairs", "Spearman r", "p-value"],
                [[r["correlate"], str(r["n"]), _fmt(r["spearman"]),
                  "-" if r["p_value"] is None else f"{r['p_value']:.2g}"] for r in rows],
                title=f"what predicts the probing score on {ds.info.name} ({len(probed)} probed pairs)")
    write_record(record_path(results, "correlation", ds.info.name, f"{head or 'any'}-{loss or 'any'}"),
                 new_record("correlation", dataset=ds.info.name, seed=0, config={"head": head, "loss": loss},
                            table=rows, n_pairs=len(probed)))


COMMANDS = [select, correlate]
