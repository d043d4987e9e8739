"""Alignment probing command: ``probe run``."""

from __future__ import annotations

import click

from probe.cli.common import (
    CONTEXT,
    cache_option,
    decode_option,
    device_option,
    dtype_option,
    echo_skipped,
    executor_options,
    results_option,
    workers_option,
    workspace,
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
@click.option("--recipe", default=None, metavar="NAME",
              help="A published recipe's settings (sail, sail-probing, freeze-align); options given here win.")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False), metavar="FILE.toml",
              help="Head settings from a file ([values] table, as the recipes); options given here win.")
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
def run(ctx, vision, text, dataset, train, evals, heads, losses, lrs, epochs, batch_size, out_dim, seed, recipe,
        config_file, tasks, skip_existing, dry_run, save_models,
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
    """
    from click.core import ParameterSource

    from probe.align.heads import check_head
    from probe.align.losses import check_loss
    from probe.align.sweep import AlignmentSweep
    from probe.data import get_dataset
    from probe.errors import ProbeError
    from probe.evaluation.benchmarks import benchmark_names, get_benchmark
    from probe.features.options import ExtractOptions
    from probe.pipeline.ray_executor import check_executor, executor_for, for_workers
    from probe.pipeline.runner import PairRunner, pairs
    from probe.pipeline.splits import TASKS, in_domain_plan, transfer_plan

    obj = ctx.obj
    if evals and not train:
        raise ProbeError("--eval needs --train CORPUS to fit on (the in-domain form is --dataset NAME)")
    if train and not evals:
        raise ProbeError("--train needs at least one --eval BENCHMARK to score zero-shot (e.g. --eval shapes-ood)")
    if train and ctx.get_parameter_source("dataset") is not ParameterSource.DEFAULT:
        raise ProbeError("give either --dataset (in-domain) or --train with --eval (zero-shot transfer), not both")

    for head in heads:
        check_head(head)
    for loss in losses:
        check_loss(loss)
    for task in tasks:
        if task not in TASKS:
            raise ProbeError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    check_executor(executor, ray_address)
    # every input is checked before any model is resolved or loaded: a typo costs no work
    ds = get_dataset(train or dataset)
    benchmarks = [get_benchmark(name) for name in benchmark_names(evals)] if train else []
    configs = head_configs(ctx, recipe, config_file, heads=heads, losses=losses, lrs=lrs, epochs=epochs,
                           batch_size=batch_size, out_dim=out_dim, seed=seed)
    v_specs, v_skipped = obj.resolve(vision, modality="vision")
    t_specs, t_skipped = obj.resolve(text, modality="text")
    echo_skipped(v_skipped + t_skipped)
    if not v_specs or not t_specs:
        raise ProbeError(f"no {'vision' if not v_specs else 'text'} model is available here to run")
    results, cache = for_workers(executor, *workspace(results_dir, cache_dir, dry_run))
    chosen = set(tasks or TASKS)
    if train:
        plan = transfer_plan(ds, benchmarks, chosen, explicit_tasks=bool(tasks), seed=seed)
        where = f"fitted on {ds.info.name}, scored on {', '.join(b.info.name for b in benchmarks)}"
    else:
        plan = in_domain_plan(ds, chosen, explicit_tasks=bool(tasks))
        where = f"on {ds.info.name}"
    options = ExtractOptions(cache_dir=cache, workers=workers, batch_size=extract_batch_size, dtype=dtype,
                             device=device, allow_download=obj.allow_download, decode=decode)
    sweep = AlignmentSweep(ds.info.name, plan, configs, chosen, results, options, save_models=save_models)
    n = len(v_specs) * len(t_specs) * len(configs) * len(plan.targets)
    click.echo(f"{len(v_specs)} vision x {len(t_specs)} text models x {len(configs)} head config(s)"
               + (f" x {len(plan.targets)} benchmarks" if train else "") + f" = {n} result(s) {where}", err=True)
    if dry_run:
        from probe.cli.preview import echo_preview

        echo_preview(sweep, pairs(v_specs, t_specs), options, skip_existing)
        return
    with executor_for(executor, ray_address, (cache, results)) as runner_executor:
        outcome = PairRunner(skip_existing=skip_existing, echo=click.echo,
                             executor=runner_executor).run(sweep, pairs(v_specs, t_specs))
    click.echo(f"done: {len(outcome.written)} written, {len(outcome.failed)} failed, "
               f"{len(outcome.existing)} already there; records in {results / 'records'}, features cached in {cache}",
               err=True)
    if outcome.failed:
        raise click.exceptions.Exit(1)


def head_configs(ctx, recipe, config_file, **given) -> list:
    """The grid of head configurations: a recipe's values, then a config file's, then the options the
    user typed (defaults of options not typed give way to the recipe and the file)."""
    from click.core import ParameterSource

    from probe.align.config import ProbeConfig
    from probe.align.recipes import read_recipe, recipe_values

    base = recipe_values(recipe) if recipe else {}
    if config_file:
        base |= read_recipe(str(config_file))["values"]
    typed = {name for name in given if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT}
    grid = {"head": "heads", "loss": "losses", "lr": "lrs"}
    for field in ("epochs", "batch_size", "out_dim", "seed"):
        if field in typed or field not in base:
            base[field] = given[field]
    axes = {field: (given[option] if option in typed or field not in base else (base[field],))
            for field, option in grid.items()}
    settings = {k: v for k, v in base.items() if k not in grid}
    return [ProbeConfig(head=h, loss=lo, lr=lr, recipe=recipe or "", **settings)
            for h in dict.fromkeys(axes["head"]) for lo in dict.fromkeys(axes["loss"])
            for lr in dict.fromkeys(axes["lr"])]


COMMANDS = [run]
