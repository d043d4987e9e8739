"""What every command shares: click settings, the run context, shared options and messages.

Imports only click and probe's light modules, so every command module can import it without
pulling torch into ``probe --help``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@dataclass
class RunContext:
    """Options of the ``probe`` group that every command sees: extra registry files, downloads."""

    registry_paths: tuple[str, ...] = ()
    allow_download: bool = False
    _registry: Any = field(default=None, repr=False)

    @property
    def registry(self) -> Any:
        if self._registry is None:
            from probe.registry import Registry

            self._registry = Registry.load(self.registry_paths)
        return self._registry

    def resolve(self, patterns: tuple[str, ...], modality: str | None = None) -> tuple[list, list]:
        """``(to_use, skipped)`` specs for ``patterns`` (see :func:`probe.encoders.availability.resolve_models`)."""
        from probe.encoders.loadable import resolve_models

        return resolve_models(self.registry, patterns, modality=modality, allow_download=self.allow_download)


def checked_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--device`` callback: an unknown or absent device fails before any work starts."""
    if value is None:
        return None
    from probe.encoders.base import pick_device

    return pick_device(value)


def echo_skipped(skipped: list) -> None:
    """Name, on one stderr line, the entries that `all` reached but whose weights are not here."""
    from probe.api.common import skipped_line

    line = skipped_line(skipped)
    if line:
        click.echo(line, err=True)


def results_option(fn: Callable) -> Callable:
    return click.option("--results", "results_dir", type=click.Path(file_okay=False), default=None,
                        help="Records folder [default: results or $PROBE_RESULTS_DIR].")(fn)


def executor_options(fn: Callable) -> Callable:
    """``--executor local|ray`` and ``--ray-address``: where the pair work runs."""
    fn = click.option("--ray-address", default=None, metavar="HOST:PORT",
                      help="A running Ray cluster (ray://HEAD:10001 or HEAD:6379, or 'auto'); without it "
                           "--executor ray starts Ray on this machine.")(fn)
    return click.option("--executor", default="local", show_default=True, metavar="NAME",
                        help="local (this process) or ray (one Ray task per pair; needs the ray extra and a "
                             "cache and results folder that every node sees).")(fn)


def dtype_option(fn: Callable) -> Callable:
    return click.option("--dtype", type=click.Choice(["auto", "float16", "float32"]), default="auto",
                        show_default=True,
                        help="Storage dtype of cached features: auto = float16 where the encoder runs in half "
                             "precision (on a GPU), else float32. A float32 entry serves a float16 request "
                             "(rounded on read); a float16 one never serves float32.")(fn)


def decode_option(fn: Callable) -> Callable:
    return click.option("--decode", type=click.Choice(["workers", "device"]), default="workers", show_default=True,
                         help="Where JPEGs are decoded: in the data-loader workers (torchvision on the CPU), or on "
                              "the encoder's device, a batch at a time (nvjpeg on a GPU: workers only read bytes). "
                              "GPU-decoded features are cached apart.")(fn)


def workers_option(what: str) -> Callable[[Callable], Callable]:
    return click.option("--workers", default=None, type=click.IntRange(min=0),
                        help=f"DataLoader workers {what} [default: 2 on a CPU; on a GPU its share of the "
                             "machine's cores less two, at most 16].")


def cache_option(fn: Callable) -> Callable:
    return click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                        help="Feature cache [default: <results>/features or $PROBE_CACHE_DIR].")(fn)


def device_option(help_text: str) -> Callable[[Callable], Callable]:
    return click.option("--device", default=None, callback=checked_device, help=help_text)


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
