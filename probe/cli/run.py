"""Alignment probing command: ``probe run``."""

from __future__ import annotations

from typing import Any

import click

from probe.cli.common import (
    CONTEXT,
    cache_option,
    decode_option,
    device_option,
    dtype_option,
    executor_options,
    results_option,
    workers_option,
)


@click.command(context_settings=CONTEXT)
@click.option("--vision", "vision", multiple=True, required=True, metavar="PATTERN",
              help="Vision model name or shell pattern (repeatable); 'all' = every available non-test entry.")
@click.option("--text", "text", multiple=True, required=True, metavar="PATTERN",
              help="Text model name or shell pattern (repeatable); 'all' as for --vision.")
@click.option("--dataset", "-d", default="shapes", show_default=True,
              help="In-domain protocol: fit on its train split, score its test split (shapes, digits, karpathy:FILE, "
                   "csv:FILE, ...).")
@click.option("--train", "train", default=None, metavar="CORPUS",
              help="Zero-shot transfer protocol: fit on this corpus (early stopping on its val split or a seeded "
                   "5% carve-out) and score every --eval benchmark.")
@click.option("--eval", "evals", multiple=True, metavar="BENCHMARK",
              help="Benchmark scored zero-shot after fitting on --train (repeatable), e.g. shapes-ood.")
@click.option("--head", "heads", multiple=True, default=("linear",), show_default=True, metavar="HEAD",
              help="linear, mlp or star (repeatable: a grid fitted in one pass).")
@click.option("--loss", "losses", multiple=True, default=("siglip",), show_default=True, metavar="LOSS",
              help="siglip or infonce (repeatable).")
@click.option("--lr", "lrs", multiple=True, type=float, default=(1e-3,), show_default=True,
              help="AdamW learning rate (repeatable).")
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(min=1),
              help="Most epochs; early stopping on the val split usually ends sooner.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=2), help="Head training batch.")
@click.option("--out-dim", default=512, show_default=True, type=click.IntRange(min=1), help="Shared space width.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--preset", default=None, metavar="NAME",
              help="A published training setup (sail, sail-probing, freeze-align); options given here win.")
@click.option("--recipe", default=None, metavar="NAME", hidden=True,
              deprecated="Use --preset (same names): dataset recipes are `probe data get`'s.")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False), metavar="FILE.toml",
              help="Head settings from a file ([values] table, as the presets); options given here win.")
@click.option("--layer", "layer", default=None, metavar="K|last|best",
              help="Align both sides at a hidden layer: block K, the last block, or the pair a recorded "
                   "`probe select --layers` search of the pair on the corpus found most similar.")
@click.option("--vision-layer", default=None, metavar="K|last|best", help="The vision side's layer (overrides --layer).")
@click.option("--text-layer", default=None, metavar="K|last|best", help="The text side's layer (overrides --layer).")
@click.option("--task", "tasks", multiple=True, metavar="TASK",
              help="retrieval, zeroshot, compositional (repeatable) [default: all the dataset supports].")
@click.option("--skip-existing", is_flag=True, help="Skip pairs whose successful record exists (resume a sweep).")
@click.option("--dry-run", is_flag=True,
              help="Say what the run would do (features cached or still to encode per encoder, with a time "
                   "estimate where an earlier extraction left its rate; results to fit) and stop: no model is "
                   "loaded, nothing is computed.")
@click.option("--save-models/--no-save-models", default=True, show_default=True,
              help="Keep each fitted pair as a loadable aligned model under <results>/models/.")
@results_option
@cache_option
@workers_option("decoding images for feature extraction")
@click.option("--extract-batch-size", default=None, type=click.IntRange(min=1),
              help="Batch size of feature extraction on a cache miss [default: 64 on a GPU; on a CPU 16, or 64 "
                   "for ONNX models].")
@dtype_option
@decode_option
@device_option("Device for feature extraction and head training (cpu, cuda, cuda:1) [default: cuda if present].")
@executor_options
@click.pass_context
def run(ctx, vision, text, dataset, train, evals, heads, losses, lrs, epochs, batch_size, out_dim, seed, preset,
        recipe, config_file, layer, vision_layer, text_layer, tasks, skip_existing, dry_run, save_models,
        results_dir, cache_dir, workers, extract_batch_size, dtype, decode, device, executor, ray_address) -> None:
    """Fit alignment heads on every (vision, text) pair and score them; one JSON record per result.

    Features come from the cache (extracted on a miss, each encoder once). In-domain (--dataset),
    heads are fitted on the train split, stopped early on val, and scored on test; zero-shot
    transfer (--train with --eval), they are fitted on the corpus and scored on benchmarks they never
    saw, one record per benchmark. Scores: retrieval R@1/5/10 both ways and the probing score (mean
    of the two R@10, SAIL) with a bootstrap interval, zero-shot top-1/top-5, and Winoground-style
    scores where the data has swap pairs. A failing pair is recorded with its reason and the sweep
    goes on; the exit code is 1 if any pair failed.

    \b
    Examples:
      probe run --vision all --text all
      probe run --vision efficientnet/lite0-in1k --text 'sentence-transformers/*' --head linear --head star
      probe run --vision 'dinov2/*' --text all --loss siglip --loss infonce --lr 1e-3 --lr 3e-4
      probe run --vision all --text all --skip-existing      # resume an interrupted sweep
      probe run --vision all --text all --train wds:~/cc3m --eval coco-karpathy --dry-run   # what it would cost
      probe run --train shapes --eval shapes-ood --vision all --text all   # zero-shot transfer
      probe run --vision V --text T --layer best   # at the layer pair `probe select --layers all` found
    """
    from click.core import ParameterSource

    from probe.api.alignment import plan_run
    from probe.api.alignment import run as run_pairs

    def given(name: str) -> Any:  # an option left at its default gives way to the preset and the file
        return ctx.params[name] if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT else None

    obj = ctx.obj
    settings: dict[str, Any] = dict(
        dataset=given("dataset") if train else dataset, train=train, evals=evals, heads=given("heads"),
        losses=given("losses"), lrs=given("lrs"), epochs=given("epochs"), batch_size=given("batch_size"),
        out_dim=given("out_dim"), seed=given("seed"), preset=preset, recipe=recipe, config_file=config_file, tasks=tasks,
        save_models=save_models, results_dir=results_dir, cache_dir=cache_dir, workers=workers,
        extract_batch_size=extract_batch_size, dtype=dtype, decode=decode, device=device,
        registry=obj.registry_paths, allow_download=obj.allow_download,
        vision_layer=vision_layer or layer, text_layer=text_layer or layer)
    if dry_run:
        from probe.api.alignment import _log_plan
        from probe.cli.preview import echo_preview

        planned = plan_run(vision, text, executor=executor, ray_address=ray_address, dry_run=True, **settings)
        _log_plan(planned)
        echo_preview(planned.sweep, planned.items, planned.options, skip_existing)
        return
    result = run_pairs(vision, text, skip_existing=skip_existing, executor=executor, ray_address=ray_address,
                       echo=click.echo, **settings)
    click.echo(f"done: {len(result.written)} written, {len(result.failed)} failed, "
               f"{len(result.existing)} already there; records in {result.results_dir / 'records'}, features "
               f"cached in {result.cache_dir}", err=True)
    if result.failed:
        raise click.exceptions.Exit(1)


COMMANDS = [run]
