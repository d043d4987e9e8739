"""Partial unfreezing: ``probe tune``."""

from __future__ import annotations

import click

from probe.cli.common import (
    CONTEXT,
    cache_option,
    device_option,
    echo_skipped,
    results_option,
    workers_option,
    workspace,
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
@click.option("--list-parts", is_flag=True, help="List each encoder's parts and their sizes, then stop.")
@click.option("--skip-existing", is_flag=True, help="Skip runs whose every record exists.")
@click.option("--dry-run", is_flag=True,
              help="List the runs with their state, optimiser steps and a time estimate from an earlier run of "
                   "the same pair and setting, and stop: no model is loaded (the parts are not checked).")
@click.option("--save-models/--no-save-models", default=True, show_default=True,
              help="Keep each tuned pair as a loadable aligned model under <results>/models/.")
@results_option
@cache_option
@workers_option("decoding training images")
@device_option("Device (cpu, cuda, cuda:1) [default: cuda if present].")
@click.pass_context
def tune(ctx, vision, text, dataset, train, evals, freeze, vision_parts, text_parts, grid, seeds, pooling, head, loss,
         norm, lr, encoder_lr, epochs, batch_size, out_dim, checkpoint_every, precision, grad_checkpointing, list_parts,
         skip_existing, dry_run, save_models, results_dir, cache_dir, workers, device) -> None:
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
    """
    from probe.align.config import ProbeConfig
    from probe.align.heads import check_head
    from probe.align.losses import check_loss
    from probe.data import get_dataset
    from probe.errors import ProbeError
    from probe.evaluation.benchmarks import benchmark_names, get_benchmark
    from probe.features.options import ExtractOptions
    from probe.pipeline.splits import TASKS, in_domain_plan, transfer_plan
    from probe.tune.config import GRIDS, TuneConfig, from_notation

    obj = ctx.obj
    if evals and not train:
        raise ProbeError("--eval needs --train CORPUS to train on (the in-domain form is --dataset NAME)")
    if train and not evals:
        raise ProbeError("--train needs at least one --eval BENCHMARK to score")
    given = [name for name, value in (("--freeze", freeze), ("--grid", grid),
                                      ("--vision-parts/--text-parts", vision_parts or text_parts)) if value]
    if len(given) > 1:
        raise ProbeError(f"give one of --freeze, --grid or --vision-parts/--text-parts, not {' and '.join(given)}")
    check_head(head)
    check_loss(loss)
    if grid:
        settings = [from_notation(s) for s in GRIDS[grid]]
    elif vision_parts or text_parts:
        settings = [(vision_parts or "none", text_parts or "none")]
    else:
        settings = [from_notation(freeze or GRIDS["to-freeze"][0])]  # the paper's best setting by default
    tune_configs = [TuneConfig(vision_parts=v, text_parts=t, encoder_lr=encoder_lr, pooling=pooling,
                               checkpoint_every=checkpoint_every, precision=precision,
                               grad_checkpointing=grad_checkpointing) for v, t in settings]
    head_configs = [ProbeConfig(head=head, loss=loss, lr=lr, epochs=epochs, batch_size=batch_size, out_dim=out_dim,
                                norm=norm, seed=seed) for seed in dict.fromkeys(seeds)]
    v_specs, v_skipped = obj.resolve(vision, modality="vision")
    t_specs, t_skipped = obj.resolve(text, modality="text")
    echo_skipped(v_skipped + t_skipped)
    if not v_specs or not t_specs:
        raise ProbeError(f"no {'vision' if not v_specs else 'text'} model is available here to tune")
    results, cache = workspace(results_dir, cache_dir, dry_run)
    options = ExtractOptions(cache_dir=cache, workers=workers, device=device, allow_download=obj.allow_download)
    if list_parts:
        _list_parts([*v_specs, *t_specs], options)
        return
    untrainable = _untrainable(v_specs + t_specs, vision + text, tune_configs)
    if not dry_run:
        _check_parts(v_specs, t_specs, tune_configs, options, untrainable)
    ds = get_dataset(train or dataset)
    chosen = set(TASKS)
    if train:
        plan = transfer_plan(ds, [get_benchmark(n) for n in benchmark_names(evals)], chosen, explicit_tasks=False,
                             seed=head_configs[0].seed)
    else:
        plan = in_domain_plan(ds, chosen, explicit_tasks=False)
    _run_all(plan, ds.info.name, v_specs, t_specs, tune_configs, head_configs, chosen, results, options,
             save_models, workers, skip_existing, untrainable, dry_run)


def _untrainable(specs, patterns, tune_configs) -> dict[str, str]:
    """Entries that cannot train what a setting asks of them, with the reason. An entry named exactly
    is an error (said before any work); one that a pattern (``all``, ``efficientnet/*``) reached has
    its runs that would train it skipped, and counted."""
    from probe.errors import ProbeError
    from probe.tune.modules import not_trainable

    exact = {p for p in patterns if p != "all" and not any(c in p for c in "*?[")}
    out = {}
    for spec in specs:
        refusal = not_trainable(spec)
        trains = any(not tcfg.selections()[spec.modality == "text"].frozen for tcfg in tune_configs)
        if refusal and trains:
            if spec.name in exact:
                raise ProbeError(refusal)
            out[spec.name] = refusal
    return out


def _run_all(plan, name, v_specs, t_specs, tune_configs, head_configs, tasks, results, options, save_models,
             workers, skip_existing, untrainable, dry_run=False) -> None:
    from probe.errors import ProbeError
    from probe.records import keys
    from probe.records.store import is_complete, write_record
    from probe.tune.pair import TuneJob, TuneRun

    def feasible(job: TuneJob) -> bool:
        return not any(spec.name in untrainable and not selection.frozen
                       for spec, selection in zip((job.vision, job.text), job.tune.selections(), strict=True))

    runner = TuneRun(name, plan, tasks, results, options, save_models=save_models, workers=workers)
    every = [TuneJob(v, t, cfg, tcfg) for v in v_specs for t in t_specs for tcfg in tune_configs for cfg in head_configs]
    jobs = [job for job in every if feasible(job)]
    if len(jobs) < len(every):
        click.echo(f"skipping {len(every) - len(jobs)} tune run(s) that would train an entry that cannot train: "
                   f"{', '.join(sorted(untrainable))} (e.g. {next(iter(untrainable.values()))})", err=True)
    if not jobs:
        raise ProbeError("no tune run is left: every one would train an entry that cannot train")
    click.echo(f"{len(jobs)} tune run(s) x {len(plan.targets)} benchmark(s) on {name}", err=True)
    if dry_run:
        from probe.cli.preview import echo_tune_preview

        echo_tune_preview(jobs, runner, plan, skip_existing, options)
        return
    written, failed, existing = 0, 0, 0
    for job in jobs:
        paths = {t.key: runner.record_path(job, t) for t in plan.targets}
        if skip_existing and all(is_complete(p) for p in paths.values()):
            existing += len(paths)
            continue
        outcome = runner.run(job)
        for target, record in outcome:
            write_record(paths[target.key], record)
            head = f"{job.vision.name} x {job.text.name} [{job.tune.setting} | {job.config.tag}] on {target.benchmark}"
            if record.ok:
                written += 1
                click.echo(f"{head}: {keys.headline(record.metrics, record.intervals)}")
            else:
                failed += 1
                click.echo(f"{head}: FAILED: {record.error}")
        if all(record.ok for _, record in outcome):
            runner.finish(job)
    click.echo(f"done: {written} written, {failed} failed, {existing} already there; records in "
               f"{results / 'records' / 'tune'}", err=True)
    if failed:
        raise click.exceptions.Exit(1)


def _check_parts(v_specs, t_specs, tune_configs, options, untrainable) -> None:
    """Every part asked for exists in its encoder, checked before any work (each encoder loaded once,
    on the CPU, and let go): a CNN asked for its cls_token is a one-line error, not a failed run."""
    from probe.encoders import load_encoder
    from probe.tune.modules import module_parts, tunable
    from probe.tune.parts import resolve

    wanted: dict[str, tuple] = {}
    for tcfg in tune_configs:
        for specs, selection in zip((v_specs, t_specs), tcfg.selections(), strict=True):
            for spec in specs:
                if not selection.frozen and spec.name not in untrainable:
                    wanted.setdefault(spec.name, (spec, []))[1].append(selection)
    for spec, selections in wanted.values():
        if all(name.startswith("stage:") or name == "all" for s in selections for name in s.parts):
            continue  # stages and "all" name whatever parts the encoder has
        module = tunable(load_encoder(spec, device="cpu", allow_download=options.allow_download), "cls")
        parts, _ = module_parts(module)
        for selection in selections:
            resolve(selection, parts, spec.name, spec.modality)
        del module


def _list_parts(specs, options) -> None:
    """Each encoder's parts: name, the paper's stage, parameter count (loads every encoder)."""
    from probe.encoders import load_encoder
    from probe.tune.modules import module_parts, not_trainable, tunable

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
