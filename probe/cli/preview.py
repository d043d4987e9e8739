"""``--dry-run`` of ``probe run``, ``extract``, ``select`` and ``tune``: what they would encode, fit,
compare or train, printed (see :mod:`probe.pipeline.preview`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click


def echo_preview(sweep: Any, items: Sequence[Any], options: Any, skip_existing: bool) -> None:
    """``probe run --dry-run``: the features its pending pairs need, then the results to fit."""
    from probe.encoders.base import pick_device
    from probe.pipeline.preview import needed_encoders, plan_previews, preview_fits

    stale: list[Any] = []
    jobs, existing = _pending(sweep, items, skip_existing, stale)
    specs = [sweep.feature_spec(spec) for spec in needed_encoders(jobs)]  # token heads read token entries
    echo_features(plan_previews(specs, sweep.plan, options), options)
    if jobs:
        echo_fits(preview_fits(jobs, len(sweep.plan.fit.captions), sweep.results_dir, pick_device(options.device)),
                  _kind(options), early_stopping=any(c.early_stopping for c in sweep.configs))
    pending = sum(len(job.units) for job in jobs)
    fits = f"{len(jobs)} pair(s) to fit, {pending} result(s) to score"
    if skip_existing:
        redo = f"; {len(stale)} there but computed again (their inputs changed)" if stale else ""
        click.echo(f"{fits}; {len(existing)} result(s) already there (skipped){redo}")
    else:
        click.echo(fits + (f"; {len(existing)} of them are already there and would be written again "
                           "(--skip-existing keeps them)" if existing else ""))


def echo_selection_preview(work: Any, items: Sequence[Any], recompute: bool) -> None:
    """``probe select --dry-run``: the features of the pairs still to compare (each image of the split,
    or of its sample, with its first caption), then the pairs to compare."""
    from probe.pipeline.preview import needed_encoders, plan_previews

    jobs, existing = _pending(work, items, skip_existing=not recompute)
    echo_features(plan_previews(needed_encoders(jobs), work.plan, work.options, roles=("eval",), with_prompts=False),
                  work.options)
    data = work.plan.scored
    drawn = f"a seeded sample of {data.n_images:,} images" if data.parent is not None else f"{data.n_images:,} images"
    there = ("" if not existing else f"; {len(existing)} of them are already there and would be computed again"
             if recompute else f"; {len(existing)} already there (skipped; --recompute computes them again)")
    click.echo(f"{len(jobs)} pair(s) to compare on {drawn} of {work.dataset_name}/{work.split}, each image with its "
               "first caption" + there)


def _pending(work: Any, items: Sequence[Any], skip_existing: bool,
             stale: list[Any] | None = None) -> tuple[list[Any], list[Any]]:
    """``(jobs, existing)``: what the run would compute, and the records already there (computed again
    without ``skip_existing``, so then every encoder's features are needed). Records there whose
    inputs changed are pending, and listed in ``stale``."""
    from probe.pipeline.runner import PairRunner

    jobs, existing = PairRunner(skip_existing=True, progress=False).plan(work, items, stale)
    if not skip_existing:
        jobs, _ = PairRunner(progress=False).plan(work, items)
    return jobs, existing


def echo_features(previews: Sequence[Any], options: Any) -> None:
    """Per encoder the feature sets cached and the inputs still to encode, their disk and a time
    estimate where a rate is known, then the totals; loads no model and changes no file."""
    from probe.cli.tables import print_table
    from probe.io import human_bytes
    from probe.pipeline.preview import duration

    rows = []
    for p in previews:
        unit = "images" if p.spec.modality == "vision" else "texts"
        held = f"{p.count('cached')} of {len(p.needs)}" + (f", {p.count('partial')} partial" if p.count("partial") else "")
        if not p.to_encode:
            estimate = ""
        elif p.rate is None:
            estimate = f"unknown: no rate on {_kind(options)} yet"
        else:
            rate = p.rate.per_second
            estimate = f"~{duration(p.to_encode / rate)} ({_number(rate)} {unit}/s on {p.rate.device})"
        rows.append((p.spec.name, p.spec.modality, held, f"{p.to_encode:,} {unit}" if p.to_encode else "nothing",
                     human_bytes(p.bytes_to_write) if p.bytes_to_write else "", estimate))
    click.echo("dry run: no model loaded, nothing computed")
    if rows:
        print_table(["encoder", "modality", "cached", "to encode", "disk", "estimate"], rows,
                    title=f"features (cache {options.cache})", prose=("estimate",), optional=("modality", "disk"))
    images = sum(p.to_encode for p in previews if p.spec.modality == "vision")
    texts = sum(p.to_encode for p in previews if p.spec.modality == "text")
    timed = [p.seconds for p in previews if p.to_encode and p.seconds is not None]
    untimed = sum(p.seconds is None for p in previews)
    line = f"to encode: {images:,} images and {texts:,} texts ({human_bytes(sum(p.bytes_to_write for p in previews))} of features)"
    if timed:
        line += f"; about {duration(sum(timed))} for the {len(timed)} encoder(s) with a measured rate"
    if untimed:
        line += f"; {untimed} encoder(s) without one"
    click.echo(line)


def echo_fits(fits: Any, kind: str, early_stopping: bool = True) -> None:
    """The head fits: how many, their steps at most (all of them without early stopping), and their
    time where earlier fits of the same head kind on this kind of device measured a FLOP rate."""
    from probe.flops import describe
    from probe.pipeline.preview import duration

    low, high = fits.steps[0], fits.steps[-1]
    steps = f"{high:,}" if low == high else f"{low:,}-{high:,}"
    ending = "early stopping may end them sooner" if early_stopping else "no early stopping: every step runs"
    line = (f"head fits: {fits.fits} ({fits.pairs} pair(s) x their configurations), at most {steps} optimiser "
            f"steps each (epochs x training pairs // batch; {ending})")
    if fits.untimed < fits.fits:
        rates = ", ".join(f"{head} {describe(rate)}/s" for head, rate in sorted(fits.rates.items()))
        line += f"; at most {duration(fits.seconds)} at the rates earlier fits on {kind} reached ({rates})"
    if fits.untimed:
        line += f"; {fits.untimed} fit(s) of a head kind no earlier fit on {kind} timed"
    click.echo(line)


def echo_tune_preview(jobs: Sequence[Any], runner: Any, plan: Any, skip_existing: bool, options: Any) -> None:
    """``probe tune --dry-run``: each run's state, its optimiser steps (at most: early stopping may end
    it sooner) and a time estimate from an earlier run of the same pair and setting on this kind of
    device (its record's seconds per step). A run counts as there only when every record it would
    write is complete and still holds the identity the run would give it, as ``--skip-existing`` decides."""
    from probe.align.train import steps_per_epoch
    from probe.cli.tables import print_table
    from probe.pipeline.preview import duration, tune_step_seconds
    from probe.records.identity import why_stale
    from probe.records.store import read_complete
    from probe.unfreezing.train import CHECKPOINT

    def standing(job: Any, target: Any) -> bool | None:
        """True: there and current; None: there but its inputs changed; False: not there."""
        record = read_complete(runner.record_path(job, target))
        if record is None:
            return False
        return True if why_stale(record, runner.identity(job, target)) is None else None

    per_step = tune_step_seconds(runner.results_dir, _kind(options))
    pairs = len(plan.fit.captions)
    rows, left, timed, untimed, skipped, again, changed = [], 0, 0.0, 0, 0, 0, 0
    for job in jobs:
        states = [standing(job, t) for t in plan.targets]
        done = all(state is True for state in states)
        outdated = not done and any(state is None for state in states)
        again += done
        changed += outdated
        cells = (job.vision.name, job.text.name, job.tune.setting, job.config.tag)
        if done and skip_existing:
            skipped += 1
            rows.append((*cells, "there (skipped)", "", ""))
            continue
        state = ("resumes from its checkpoint" if (runner.run_dir(job) / CHECKPOINT).is_file()
                 else "there: would run again" if done
                 else "there, inputs changed: runs again" if outdated else "to run")
        batch = min(job.config.batch_size, pairs)
        steps = job.tune.total_steps(steps_per_epoch(pairs, batch), job.config.epochs, batch)
        seconds = per_step.get((job.vision.name, job.text.name, job.tune.setting))
        left += 1
        if seconds is None:
            untimed += 1
            estimate = f"unknown: no earlier run on {_kind(options)}"
        else:
            timed += steps * seconds
            estimate = f"<= {duration(steps * seconds)} ({seconds:.2f} s/step)"
        rows.append((*cells, state, f"<= {steps:,}", estimate))
    click.echo("dry run: no model loaded, nothing computed")
    print_table(["vision", "text", "setting", "head", "state", "steps", "estimate"], rows,
                title=f"tune runs ({pairs:,} training pairs)", prose=("state", "estimate"), optional=("head", "steps"))
    line = f"{left} run(s) to train" + (f", {skipped} already there (skipped)" if skip_existing else
                                        f", {again} of them already there (--skip-existing keeps them)" if again else "")
    if changed:
        line += f"; {changed} there but run again (their inputs changed)"
    if timed:
        line += f"; at most {duration(timed)} for those with an earlier run's rate"
    if untimed:
        line += f"; {untimed} without an earlier run's rate"
    click.echo(line)


def _kind(options: Any) -> str:
    from probe.encoders.base import pick_device

    return pick_device(options.device).split(":")[0]


def _number(rate: float) -> str:
    """``37.3``, ``310``, ``7,450``: three figures at most where they matter."""
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"
