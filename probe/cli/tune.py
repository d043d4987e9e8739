"""Partial unfreezing: ``probe tune``."""

from __future__ import annotations

from typing import Any

import click

from probe.cli.common import (
    CONTEXT,
    cache_option,
    device_option,
    echo_skipped,
    executor_options,
    results_option,
    workers_option,
)


@click.command(context_settings=CONTEXT)
@click.option("--vision", "vision", multiple=True, required=True, metavar="PATTERN",
              help="Vision model name or shell pattern (repeatable).")
@click.option("--text", "text", multiple=True, required=True, metavar="PATTERN",
              help="Text model name or shell pattern (repeatable).")
@click.option("--dataset", "-d", default="shapes", show_default=True,
              help="In-domain: train on its train split, stop early on val, score test.")
@click.option("--train", "train", default=None, metavar="CORPUS",
              help="Zero-shot transfer: train on this corpus and score every --eval benchmark.")
@click.option("--eval", "evals", multiple=True, metavar="BENCHMARK", help="Benchmark scored after --train (repeatable).")
@click.option("--freeze", "freeze", default=None, metavar="NOTATION",
              help="The paper's notation: V_e^b,T_e^b with e (input embeddings) and b (blocks) each u (trained) "
                   "or f (frozen), e.g. V_u^f,T_u^u.")
@click.option("--vision-parts", default=None, metavar="PARTS",
              help="Vision parts to train: patch_embed, cls_token, pos_embed, blocks[:K], norm, head (CNNs), "
                   "all or none (comma-separated).")
@click.option("--text-parts", default=None, metavar="PARTS",
              help="Text parts to train: token_embeddings, position_embeddings, cls, blocks[:K], norm, all or none.")
@click.option("--grid", default=None, type=click.Choice(["to-freeze", "to-freeze-16"]),
              help="to-freeze: the paper's Table 2 (V_u^f,T_u^u and its four one-change variants); "
                   "to-freeze-16: every combination.")
@click.option("--freeze-cls", is_flag=True,
              help="Hold the image and text CLS tokens frozen in each setting (the paper's abstract: 37.5% to 19.4% "
                   "mean over DataComp's 38 tasks); e.g. --freeze V_u^f,T_u^u --freeze-cls.")
@click.option("--seed", "seeds", multiple=True, type=click.IntRange(min=0), default=(0,), show_default=True,
              help="Seed (repeatable: one run per seed).")
@click.option("--pooling", default="cls", show_default=True, type=click.Choice(["cls", "entry"]),
              help="cls: the CLS token's output (the paper's; encoders without one keep their own pooling); "
                   "entry: the registry entry's pooling, as `probe run` caches.")
@click.option("--head", default="linear", show_default=True, metavar="HEAD", help="linear, mlp or star.")
@click.option("--loss", default="infonce", show_default=True, metavar="LOSS",
              help="infonce (CLIP's, the paper's) or siglip.")
@click.option("--norm/--no-norm", default=False, show_default=True, help="LayerNorm in front of each head.")
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Learning rate of the heads (AdamW).")
@click.option("--encoder-lr", default=1e-5, show_default=True, type=float, help="Learning rate of the encoder parts.")
@click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1),
              help="Most epochs; early stopping on the val split may end sooner.")
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(min=2))
@click.option("--out-dim", default=512, show_default=True, type=click.IntRange(min=1), help="Shared space width.")
@click.option("--checkpoint-every", default=50, show_default=True, type=click.IntRange(min=0),
              help="Optimiser steps between checkpoints (0: at each epoch's end only); a rerun resumes from the last.")
@click.option("--precision", default="auto", show_default=True, type=click.Choice(["auto", "bf16", "fp32"]),
              help="What the encoders compute in while training (weights stay float32); auto: bf16 on a GPU "
                   "that has it, else fp32.")
@click.option("--grad-checkpointing/--no-grad-checkpointing", default=None,
              help="Recompute block activations in the backward pass (less memory, ~1/3 more compute) "
                   "[default: on a GPU].")
@click.option("--samples-seen", default=None, type=click.IntRange(min=2), metavar="N",
              help="Train for N pairs (N / batch optimiser steps, the corpus drawn again as it runs out) instead of "
                   "--epochs: DataComp's budget.")
@click.option("--preset", default=None, metavar="NAME",
              help="A published regime with encoder settings (to-freeze: the paper's, DataComp small through open_clip); "
                   "options given here win and the records hold what ran. `probe presets` lists them.")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False), metavar="FILE.toml",
              help="Settings from a file: [values] for the heads, [tune] for the encoders; options given here win.")
@click.option("--list-parts", is_flag=True, help="List each encoder's parts and their sizes, then stop.")
@click.option("--skip-existing", is_flag=True, help="Keep tune records that exist; a run trains only for those missing.")
@click.option("--dry-run", is_flag=True,
              help="List the runs with their state, optimiser steps and a time estimate from an earlier run of "
                   "the same pair and setting, and stop: no model is loaded (the parts are not checked).")
@click.option("--save-models/--no-save-models", default=True, show_default=True,
              help="Keep each tuned pair as a loadable aligned model under <results>/models/.")
@results_option
@cache_option
@workers_option("decoding training images")
@device_option("Device (cpu, cuda, cuda:1) [default: cuda if present].")
@executor_options
@click.pass_context
def tune(ctx, vision, text, dataset, train, evals, freeze, vision_parts, text_parts, grid, freeze_cls, seeds, pooling,
         head, loss, norm, lr, encoder_lr, epochs, batch_size, out_dim, checkpoint_every, precision, grad_checkpointing,
         samples_seen, preset, config_file, list_parts, skip_existing, dry_run, save_models, results_dir, cache_dir, workers, device, executor, ray_address) -> None:
    """Align a pair with chosen parts of each encoder trained end to end (To Freeze or Not to Freeze).

    Heads and the chosen parts train together with CLIP's loss on the CLS tokens by default; a side
    with nothing to train reads its cached features. One record per (setting, seed, benchmark) under
    <results>/records/tune/, the tuned pair saved like any aligned model. Runs checkpoint as they
    go; running the same command again resumes a killed run.

    \b
    Examples:
      probe tune --vision baseline/random-vit-s16 --text sentence-transformers/all-minilm-l6-v2.pypi --list-parts
      probe tune --vision efficientnet/lite0-in1k --text sentence-transformers/all-minilm-l6-v2.pypi \\
          --freeze V_u^f,T_u^u
      probe tune --vision V --text T --text-parts token_embeddings --vision-parts none --seed 0 --seed 1
      probe tune --vision V --text T --grid to-freeze --seed 0 --seed 1 --seed 2 --train tuxpaint --eval ulcc
      probe tune --vision V --text T --grid to-freeze --dry-run     # the runs, their steps and time
      probe tune --vision V --text T --preset to-freeze --train cc3m --eval datacomp-38   # the paper's regime
    """
    from click.core import ParameterSource

    from probe.api.tuning import plan_tune
    from probe.api.tuning import tune as tune_pairs

    obj = ctx.obj
    if list_parts:
        from probe.features.options import ExtractOptions

        v_specs, v_skipped = obj.resolve(vision, modality="vision")
        t_specs, t_skipped = obj.resolve(text, modality="text")
        echo_skipped(v_skipped + t_skipped)
        _list_parts([*v_specs, *t_specs], ExtractOptions(device=device, allow_download=obj.allow_download))
        return
    def given(name: str) -> Any:  # an option left at its default gives way to the preset and the file
        return ctx.params[name] if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT else None

    in_domain = train is None or ctx.get_parameter_source("dataset") is not ParameterSource.DEFAULT
    settings = dict(dataset=dataset if in_domain else None, train=train, evals=evals, freeze=freeze,
                    vision_parts=vision_parts, text_parts=text_parts, grid=grid, freeze_cls=freeze_cls, seeds=seeds,
                    pooling=given("pooling"), head=given("head"), loss=given("loss"), norm=given("norm"), lr=given("lr"),
                    encoder_lr=given("encoder_lr"), epochs=given("epochs"), batch_size=given("batch_size"),
                    out_dim=given("out_dim"), checkpoint_every=given("checkpoint_every"), precision=given("precision"),
                    samples_seen=samples_seen, preset=preset, config_file=config_file,
                    grad_checkpointing=grad_checkpointing, save_models=save_models, results_dir=results_dir,
                    cache_dir=cache_dir, workers=workers, device=device, registry=obj.registry_paths,
                    allow_download=obj.allow_download)
    if dry_run:
        import logging

        from probe.api.common import log_skipped
        from probe.cli.preview import echo_tune_preview

        planned = plan_tune(vision, text, executor=executor, ray_address=ray_address, dry_run=True, **settings)
        log_skipped(planned.skipped)
        logging.getLogger("probe").info("%s", planned.summary)
        runner = planned.work.runner
        echo_tune_preview(planned.jobs, runner, runner.plan, skip_existing, planned.options)
        return
    result = tune_pairs(vision, text, skip_existing=skip_existing, executor=executor, ray_address=ray_address,
                        echo=click.echo, **settings)
    click.echo(f"done: {len(result.written)} written, {len(result.failed)} failed, {len(result.existing)} already "
               f"there; records in {result.results_dir / 'records' / 'tune'}", err=True)
    if result.failed:
        raise click.exceptions.Exit(1)


def _list_parts(specs, options) -> None:
    """Each encoder's parts: name, the paper's stage, parameter count (loads every encoder)."""
    from probe.encoders import load_encoder
    from probe.unfreezing.modules import module_parts, not_trainable, tunable

    for spec in specs:
        refusal = not_trainable(spec)
        if refusal:
            click.echo(f"{spec.name}: {refusal}")
            continue
        module = tunable(load_encoder(spec, device=options.device or "cpu", allow_download=options.allow_download),
                         "cls")
        parts, unnamed = module_parts(module)
        sizes = {n: p.numel() for n, p in module.backbone.named_parameters()}
        click.echo(f"{spec.name} ({sum(sizes.values()):,} parameters; pooled output: {module.pooling})")
        for name, part in parts.items():
            count = (len(part.rows) * sizes[part.params[0]] // module.backbone.get_parameter(part.params[0]).shape[0]
                     if part.rows else sum(sizes[p] for p in part.params))
            blocks = sorted({i for i in part.block_of.values() if i is not None})
            extra = f", blocks {blocks[0]}..{blocks[-1]} (blocks:K trains the last K)" if blocks else ""
            click.echo(f"  {name:<20} {part.stage:<11} {count:>12,}{extra}")
        if unnamed:
            click.echo(f"  (always frozen, in no part: {len(unnamed)} tensors, e.g. {unnamed[0]})")


COMMANDS = [tune]
