"""Data and feature commands: ``probe datasets``, ``probe extract``."""

from __future__ import annotations

from typing import Any

import click

from probe.cli.common import (
    CONTEXT,
    RunContext,
    cache_option,
    decode_option,
    device_option,
    dtype_option,
    executor_options,
    results_option,
    workers_option,
)


@click.command(context_settings=CONTEXT)
@click.argument("names", nargs=-1)
def datasets(names: tuple[str, ...]) -> None:
    """List datasets with their splits and sizes (bundled ones and the recipes by default).

    \b
    Examples:
      probe datasets
      probe datasets tuxpaint imagefolder:~/data/pets karpathy:~/coco/dataset_coco.json
    """
    from probe.cli.tables import print_table
    from probe.data import BUNDLED, LOCAL_KINDS, get_dataset
    from probe.recipes import RECIPES, is_built

    rows = []
    for name in names or BUNDLED:
        ds = get_dataset(name)
        loaded = {split: ds.load(split) for split in ds.info.splits}
        sizes = [f"{split}: {d.n_images} images, {len(d.captions)} captions" for split, d in loaded.items()]
        last = loaded[ds.info.splits[-1]]
        labels = ", ".join(f"{k} ({len(v)} classes)" for k, v in last.classes.items())
        rows.append([ds.info.name, "; ".join(sizes), labels or "-", ds.info.protocol])
    print_table(["dataset", "splits", "labels", "protocol"], rows, prose=("splits", "labels", "protocol"))
    if not names:
        _print_recipes(RECIPES, is_built)
        click.echo("Your own data: " + ", ".join(f"{k}:PATH" for k in LOCAL_KINDS) + " (see `probe extract --help`).")


def _print_recipes(recipes: dict, is_built: Any) -> None:
    from probe.cli.tables import print_table
    from probe.recipes import recipe_dir, source_root

    rows = []
    for name, recipe in recipes.items():
        if is_built(name):
            import json

            counts = json.loads((recipe_dir(name) / "manifest.json").read_text(encoding="utf-8"))["counts"]
            state = "built: " + ", ".join(f"{s} {counts[s]}" for s in ("train", "val", "test") if s in counts)
        elif recipe.source_present(source_root(recipe)):
            state = f"not built; `probe data get {name}`"
        else:
            state = f"source missing; `{recipe.install}`"
        rows.append([name, recipe.kind, state, recipe.licence.split(" (")[0], recipe.title])
    print_table(["recipe", "kind", "here", "licence", "what"], rows, title="Recipes (real data, built locally)",
                prose=("here", "licence", "what"), optional=("licence", "kind"))


@click.group(context_settings=CONTEXT)
def data() -> None:
    """Build real datasets from local sources, and prepare published benchmarks from their authors' files.

    \b
    Examples:
      probe data get tuxpaint openclipart emoji fashion-mnist
      probe --allow-download data get winoground
    """


@data.command("get", context_settings=CONTEXT)
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option("--source", type=click.Path(file_okay=False), default=None,
              help="Where the source is, if not where its package installs it (one NAME only).")
@click.option("--force", is_flag=True, help="Rebuild even if a matching build is there.")
@click.pass_obj
def data_get(obj: RunContext, names: tuple[str, ...], source: str | None, force: bool) -> None:
    """Build dataset recipes into $PROBE_HOME/datasets/NAME: standard formats (Karpathy JSON or
    clip_benchmark webdataset shards), deterministic splits, a manifest with checksums and every dropped
    item with its reason. Resumable; a second run on the same recipe waits for the first.

    The published benchmarks imagenet1k, coco-karpathy, flickr30k-karpathy, winoground and the
    clip_benchmark webdataset sets (cifar10, pets ...) are unpacked from their authors' files (in
    --source, default: their data folder under $PROBE_DATA) into the layout `probe benchmarks`
    expects, unchanged; hub-hosted ones download with --allow-download.

    \b
    Examples:
      probe data get tuxpaint fashion-mnist
      probe data get tuxpaint --source ~/mirror/tuxpaint/stamps
      probe data get imagenet1k --source ~/Downloads          # ILSVRC2012 val tar + devkit
      probe --allow-download data get winoground flickr30k-karpathy
      probe datasets                      # which recipes are built here
    """
    from probe.api.data import get_data

    get_data(names, source=source, force=force, allow_download=obj.allow_download,
             on_done=lambda done: click.echo(done.summary()))


@click.command(context_settings=CONTEXT)
@click.option("--model", "-m", "patterns", multiple=True, required=True, metavar="PATTERN",
              help="Registry name or shell pattern (repeatable); 'all' = every available non-test entry.")
@click.option("--dataset", "-d", default="shapes", show_default=True,
              help="shapes, digits, imagefolder:PATH, karpathy:FILE, csv:FILE, jsonl:FILE or wds:PATH.")
@click.option("--split", "-s", "splits", multiple=True, metavar="SPLIT", help="Split(s) to extract (default: all).")
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="Encoder batch [default: 64 on a GPU; on a CPU 16, or 64 for ONNX models].")
@workers_option("decoding images")
@dtype_option
@decode_option
@click.option("--on-bad-image", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
              help="Skip (and list in meta.json) or fail on a missing or corrupt image.")
@click.option("--layers", default=None, metavar="WHICH",
              help="Hidden layers instead of the output (all, last:K, or a list such as 2,4): every layer of a split "
                   "from one forward pass, each cached under its own key (what `probe select --layers` reads).")
@results_option
@cache_option
@device_option("cpu, cuda, cuda:1 ... [default: cuda if present].")
@executor_options
@click.option("--dry-run", is_flag=True,
              help="Say per model what is cached and what would be encoded (inputs, disk, a time estimate where "
                   "an earlier extraction left its rate) and stop: no model is loaded, nothing is computed.")
@click.pass_obj
def extract(obj: RunContext, patterns, dataset, splits, batch_size, workers, dtype, decode, on_bad_image, layers,
            results_dir, cache_dir, device, executor, ray_address, dry_run) -> None:
    """Extract features for models on a dataset into the cache (resumable; reused by every pair).

    \b
    Examples:
      probe extract -m efficientnet/lite0-in1k -m 'sentence-transformers/*.pypi' -d shapes
      probe extract -m all -d digits --split test --dtype float16
      probe extract -m dinov2/vit-b14 -d imagefolder:~/data/pets --workers 8
      probe extract -m all -d wds:/shared/cc3m --executor ray --ray-address head:6379
      probe extract -m 'dinov2/*' -d wds:/shared/cc3m --dry-run      # cached, to encode, disk, time
      probe extract -m test/tiny-vit -d shapes --split val --layers all   # every block, one pass
    """
    from probe.api.common import log_skipped
    from probe.api.extraction import extract as extract_features
    from probe.api.extraction import plan_extraction

    settings = dict(dataset=dataset, splits=splits, batch_size=batch_size, workers=workers, dtype=dtype, decode=decode,
                    on_bad_image=on_bad_image, results_dir=results_dir, cache_dir=cache_dir, device=device,
                    registry=obj.registry_paths, allow_download=obj.allow_download, layers=layers)
    if dry_run:
        from probe.cli.preview import echo_features
        from probe.features.roles import FeatureRequest
        from probe.pipeline.preview import preview_encoders

        planned = plan_extraction(patterns, executor=executor, ray_address=ray_address, dry_run=True, **settings)
        log_skipped(planned.skipped)
        requests = [FeatureRequest(split, data) for split, data in planned.splits.items()]
        specs = [s for base in planned.specs for s in planned.layer_specs.get(base.name, [base])]
        echo_features(preview_encoders(specs, lambda spec: requests, planned.fit, planned.options), planned.options)
        return

    def said(entry) -> None:
        how = "cached" if entry.stats.from_cache else _computed(entry.stats, entry.on_ray)
        click.echo(f"{entry.model:<45} {entry.split:<11} {entry.shape!s:<14} {how}"
                   + (f", {entry.skipped} bad image(s) skipped" if entry.skipped else "") + f"  {entry.path}")

    extract_features(patterns, executor=executor, ray_address=ray_address, on_entry=said, **settings)


def _computed(stats, on_ray: bool) -> str:
    """How an entry was made: chunks computed here or on Ray, chunks resumed, and the encoding rate."""
    rate = f", {stats.rows_per_second:,.0f} rows/s" if stats.rows_per_second else ""
    if on_ray:
        return (f"assembled from chunks computed on Ray ({stats.computed_chunks} computed, "
                f"{stats.reused_chunks} resumed{rate})")
    return f"computed ({stats.reused_chunks} chunk(s) resumed{rate})"


@click.command(context_settings=CONTEXT)
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def benchmarks(names: tuple[str, ...], as_json: bool) -> None:
    """List benchmarks and suites: tasks, classes, templates, where their data must be, whether it is here.

    Data folders are relative to $PROBE_DATA (default ~/data). Class names and prompt templates come
    from clip_benchmark's shipped metadata or from the benchmark's own files.

    \b
    Examples:
      probe benchmarks
      probe benchmarks imagenet1k winoground
      probe benchmarks datacomp-38        # which members are here, missing, or not scored, and why
      PROBE_DATA=/datasets probe benchmarks --json
    """
    import json

    from probe.api.catalogues import benchmarks as catalogue_rows
    from probe.cli.tables import print_table

    listed = catalogue_rows(names)
    rows, suites = listed["benchmarks"], listed["suites"]
    if as_json:
        click.echo(json.dumps({"benchmarks": rows, "suites": suites}, indent=2))
        return
    def here(row: dict) -> str:
        return "not scored by probe" if row["unsupported"] else "yes" if row["present"] else "no"

    print_table(["benchmark", "task", "classes", "templates", "data", "here"],
                [[r["name"], r["task"], r["classes"], r["templates"], r["data"], here(r)] for r in rows],
                title=f"{len(rows)} benchmark(s)", prose=("task", "here"), optional=("templates", "classes", "task"))
    if suites:
        print_table(["suite", "here", "missing", "not scored by probe", "what"],
                    [[s["suite"], str(len(s["here"])), str(len(s["missing"])), str(len(s["unsupported"])),
                      s["description"]] for s in suites], prose=("what",))
    for row in rows:
        if row["unsupported"] or (names and not row["present"]):
            click.echo(f"{row['name']}: " + (f"not scored by probe: {row['unsupported']}" if row["unsupported"]
                                             else f"missing; get it: {row['get']}"))


COMMANDS = [datasets, extract, benchmarks, data]
