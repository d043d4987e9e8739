"""Saved aligned models: ``probe eval`` (score on benchmarks without refitting), ``probe export``."""

from __future__ import annotations

import click

from probe.cli.common import (
    CONTEXT,
    RunContext,
    cache_option,
    device_option,
    results_option,
    workers_option,
    workspace,
)


@click.command("eval", context_settings=CONTEXT)
@click.option("--model", "model_path", required=True, metavar="PATH",
              help="A saved aligned model folder (<results>/models/... or a `probe export` folder).")
@click.option("--eval", "evals", multiple=True, required=True, metavar="BENCHMARK",
              help="Benchmark to score (repeatable), e.g. shapes-ood.")
@results_option
@cache_option
@workers_option("decoding images")
@device_option("Device for the encoders on a cache miss.")
@click.pass_obj
def eval_cmd(obj: RunContext, model_path, evals, results_dir, cache_dir, workers, device) -> None:
    """Score a saved aligned model on benchmarks, zero-shot, without refitting; one record each.

    A benchmark that the run which fitted the model already scored is not written again: its
    record is compared with the new numbers instead (they agree unless features or code changed).

    \b
    Examples:
      probe eval --model results/models/shapes/efficientnet_lite0-in1k__...-seed0 --eval shapes-ood
      probe eval --model ~/aligned/lite0-minilm --eval shapes-ood --eval digits
    """
    from probe.align.model import AlignedModel
    from probe.evaluation.benchmarks import benchmark_names, get_benchmark
    from probe.evaluation.saved import score_saved
    from probe.features.options import ExtractOptions
    from probe.records import keys
    from probe.records.store import model_ref, write_record

    benchmarks = [get_benchmark(name) for name in benchmark_names(evals)]
    model = AlignedModel.load(model_path, device=device, allow_download=obj.allow_download)
    results, cache = workspace(results_dir, cache_dir)
    options = ExtractOptions(cache_dir=cache, workers=workers, device=device, allow_download=obj.allow_download)
    for score in score_saved(model, model_ref(results, model_path), benchmarks, results, options):
        metrics = score.record.metrics
        line = f"{score.record.benchmark.label}: {keys.headline(metrics, score.record.intervals)}"
        existing = score.existing
        if existing is not None and existing.identity is not None and existing.identity != score.record.identity:
            write_record(score.path, score.record)  # that record's inputs changed: it no longer stands for this
            click.echo(f"{line}  (written to {score.path}, replacing a record whose inputs differ)")
        elif existing is None:
            write_record(score.path, score.record)
            click.echo(f"{line}  (written to {score.path})")
        else:
            same = existing.metrics == metrics
            click.echo(f"{line}  ({'equal to' if same else 'DIFFERS from'} the record of the run that fitted it: "
                       f"{score.path})")


@click.command("export", context_settings=CONTEXT)
@click.argument("model_path", metavar="PATH")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="New folder to write.")
def export_cmd(model_path, out_dir) -> None:
    """Copy a saved aligned model into a folder that loads on its own (no results tree, no registry).

    \b
    Examples:
      probe export results/models/shapes/efficientnet_lite0-in1k__...-seed0 --out ~/aligned/lite0-minilm
      python -c "import probe; m = probe.AlignedModel.load('~/aligned/lite0-minilm'); print(m.encode_text(['a cat']))"
    """
    from probe.align.model import AlignedModel

    model = AlignedModel.load(model_path)
    out = model.export(out_dir, model_path)
    AlignedModel.load(out)  # what was written loads and matches its checksum
    click.echo(f"exported {model.vision_spec.name} x {model.text_spec.name} [{model.config.tag}] to {out}")


COMMANDS = [eval_cmd, export_cmd]
