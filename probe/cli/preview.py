"""``--dry-run`` of ``probe run`` and ``probe extract``: what they would encode (and fit), printed
(see :mod:`probe.pipeline.preview`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click


def echo_preview(sweep: Any, items: Sequence[Any], options: Any, skip_existing: bool) -> None:
    """``probe run --dry-run``: the features its pending pairs need, then the results to fit."""
    from probe.pipeline.preview import needed_encoders, plan_previews
    from probe.pipeline.runner import PairRunner

    jobs, existing = PairRunner(skip_existing=True, progress=False).plan(sweep, items)
    if not skip_existing:  # every result is fitted again, so every encoder's features are needed
        jobs, _ = PairRunner(progress=False).plan(sweep, items)
    echo_features(plan_previews(needed_encoders(jobs), sweep.plan, options), options)
    pending = sum(len(job.units) for job in jobs)
    fits = f"{len(jobs)} pair(s) to fit, {pending} result(s) to score"
    if skip_existing:
        click.echo(f"{fits}; {len(existing)} result(s) already there (skipped)")
    else:
        click.echo(fits + (f"; {len(existing)} of them are already there and would be written again "
                           "(--skip-existing keeps them)" if existing else ""))


def echo_features(previews: Sequence[Any], options: Any) -> None:
    """Per encoder the feature sets cached and the inputs still to encode, their disk and a time
    estimate where a rate is known, then the totals; loads no model and changes no file."""
    from probe.cli.cache import human_bytes
    from probe.cli.tables import print_table
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
                    title=f"features (cache {options.cache})", no_wrap=("encoder",))
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


def _kind(options: Any) -> str:
    from probe.encoders.base import pick_device

    return pick_device(options.device).split(":")[0]


def _number(rate: float) -> str:
    """``37.3``, ``310``, ``7,450``: three figures at most where they matter."""
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"
