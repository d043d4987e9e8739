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
    from probe.api.evaluation import evaluate
    from probe.records import keys

    said = {"written": "written to {path}", "replaced": "written to {path}, replacing a record whose inputs differ",
            "equal": "equal to the record of the run that fitted it: {path}",
            "differs": "DIFFERS from the record of the run that fitted it: {path}"}
    for scored in evaluate(model_path, evals, results_dir=results_dir, cache_dir=cache_dir, workers=workers,
                           device=device, allow_download=obj.allow_download):
        record = scored.record
        line = f"{record.benchmark.label}: {keys.headline(record.metrics, record.intervals)}"
        click.echo(f"{line}  ({said[scored.outcome].format(path=scored.path)})")


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
    from probe.aligned import AlignedModel

    model = AlignedModel.load(model_path)
    out = model.export(out_dir, model_path)
    AlignedModel.load(out)  # what was written loads and matches its checksum
    click.echo(f"exported {model.vision_spec.name} x {model.text_spec.name} [{model.config.tag}] to {out}")


COMMANDS = [eval_cmd, export_cmd]
