"""Data and feature commands: ``probe datasets``, ``probe extract``."""

from __future__ import annotations

import click

from probe.cli import CONTEXT, checked_device, echo_skipped


@click.command(context_settings=CONTEXT)
@click.argument("names", nargs=-1)
def datasets(names: tuple[str, ...]) -> None:
    """List datasets with their splits and sizes (bundled ones by default).

    \b
    Examples:
      probe datasets
      probe datasets imagefolder:~/data/pets karpathy:~/coco/dataset_coco.json
    """
    from probe.data import BUNDLED, LOCAL_KINDS, get_dataset
    from probe.tables import print_table

    rows = []
    for name in names or BUNDLED:
        ds = get_dataset(name)
        loaded = {split: ds.load(split) for split in ds.info.splits}
        sizes = [f"{split}: {d.n_images} images, {len(d.captions)} captions" for split, d in loaded.items()]
        last = loaded[ds.info.splits[-1]]
        labels = ", ".join(f"{k} ({len(v)} classes)" for k, v in last.classes.items())
        rows.append([ds.info.name, "; ".join(sizes), labels or "-", ds.info.protocol])
    print_table(["dataset", "splits", "labels", "protocol"], rows)
    if not names:
        click.echo("Your own data: " + ", ".join(f"{k}:PATH" for k in LOCAL_KINDS) + " (see `probe extract --help`).")


@click.command(context_settings=CONTEXT)
@click.option("--model", "-m", "patterns", multiple=True, required=True, metavar="PATTERN",
              help="Registry name or shell pattern (repeatable); 'all' = every available non-test entry.")
@click.option("--dataset", "-d", default="shapes", show_default=True,
              help="shapes, digits, imagefolder:PATH, karpathy:FILE, csv:FILE, jsonl:FILE or wds:PATH.")
@click.option("--split", "-s", "splits", multiple=True, metavar="SPLIT", help="Split(s) to extract (default: all).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0),
              help="DataLoader workers decoding images.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Storage dtype of cached features.")
@click.option("--on-bad-image", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
              help="Skip (and list in meta.json) or fail on a missing or corrupt image.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Feature cache folder [default: results/features or $PROBE_CACHE_DIR].")
@click.option("--device", default=None, callback=checked_device, help="cpu, cuda, cuda:1 ... [default: cuda if present].")
@click.pass_obj
def extract(obj, patterns, dataset, splits, batch_size, workers, dtype, on_bad_image, cache_dir, device) -> None:
    """Extract features for models on a dataset into the cache (resumable; reused by every pair).

    \b
    Examples:
      probe extract -m efficientnet/lite0-in1k -m 'sentence-transformers/*.pypi' -d shapes
      probe extract -m all -d digits --split test --dtype float16
      probe extract -m dinov2/vit-b14 -d imagefolder:~/data/pets --workers 8
    """
    from pathlib import Path

    from probe.availability import check, resolve_models
    from probe.data import get_dataset
    from probe.errors import UnavailableError
    from probe.features import ExtractionStats, needs_fit_corpus, split_features

    specs, unavailable = resolve_models(obj.registry, patterns)
    echo_skipped(unavailable)
    for spec in specs:
        status = check(spec)
        if not status.ok:
            raise UnavailableError(f"model {spec.name!r} cannot be loaded here: {status.reason}")
    ds = get_dataset(dataset)
    chosen = list(splits) or list(ds.info.splits)
    for split in chosen:
        if split not in ds.info.splits:
            from probe.errors import ProbeError

            raise ProbeError(f"dataset {ds.info.name!r} has no split {split!r}; valid: {', '.join(ds.info.splits)}")
    needs_fit = "train" in ds.info.splits and any(needs_fit_corpus(s) for s in specs)
    fit = ds.load("train") if needs_fit else None
    for split in chosen:
        data = fit if fit is not None and split == "train" else ds.load(split)
        for spec in specs:
            stats = ExtractionStats()
            result = split_features(spec, data, fit_data=fit, cache_dir=Path(cache_dir) if cache_dir else None,
                                    batch_size=batch_size, workers=workers, dtype=dtype,
                                    on_bad_image=on_bad_image, device=device, stats=stats)
            how = "cached" if stats.from_cache else f"computed ({stats.reused_chunks} chunk(s) resumed)"
            skipped = len(result.meta["skipped"])
            click.echo(f"{spec.name:<45} {split:<11} {tuple(result.features.shape)!s:<14} {how}"
                       + (f", {skipped} bad image(s) skipped" if skipped else "") + f"  {result.path}")


COMMANDS = [datasets, extract]
