"""What the API's functions share: argument forms, model resolution, the protocol rule, messages."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probe.errors import ProbeError

log = logging.getLogger("probe")


def names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """A pattern or several, as a tuple (a lone string is one pattern, not its characters)."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def load_registry(registry: Sequence[str | Path] = ()) -> Any:
    """probe's catalogue with the extra registry files (and ``$PROBE_REGISTRY``)."""
    from probe.registry import Registry

    return Registry.load(tuple(str(p) for p in registry))


def resolve_sides(vision: str | Sequence[str], text: str | Sequence[str], registry: Sequence[str | Path],
                  allow_download: bool) -> tuple[list[Any], list[Any], list[Any]]:
    """``(vision specs, text specs, entries a pattern reached whose weights are not here)``."""
    from probe.encoders.loadable import resolve_models

    catalogue = load_registry(registry)
    v_specs, v_skipped = resolve_models(catalogue, names(vision), modality="vision", allow_download=allow_download)
    t_specs, t_skipped = resolve_models(catalogue, names(text), modality="text", allow_download=allow_download)
    return v_specs, t_specs, v_skipped + t_skipped


def require_both(v_specs: Sequence[Any], t_specs: Sequence[Any], doing: str) -> None:
    """A pair needs a model of each side that loads here."""
    if not v_specs or not t_specs:
        raise ProbeError(f"no {'vision' if not v_specs else 'text'} model is available here to {doing}")


def check_protocol(dataset: str | None, train: str | None, evals: Sequence[str], verb: str) -> None:
    """In-domain (``dataset``) or zero-shot transfer (``train`` with ``evals``), never a mix:
    ``verb`` says what the heads do on the corpus (fit, train)."""
    if train and dataset is not None:
        raise ProbeError("give either --dataset (in-domain) or --train with --eval (zero-shot transfer), not both")
    if evals and not train:
        raise ProbeError(f"--eval needs --train CORPUS to {verb} on (the in-domain form is --dataset NAME)")
    if train and not evals:
        raise ProbeError("--train needs at least one --eval BENCHMARK to score zero-shot (e.g. --eval shapes-ood)")


def skipped_line(skipped: Sequence[Any]) -> str | None:
    """One line naming the entries that a pattern (``all``) reached but whose weights are not here
    (the first five, then a count), or None when there are none."""
    if not skipped:
        return None
    listed = [s.name for s in skipped]
    shown = ", ".join(listed[:5]) + (f" and {len(listed) - 5} more" if len(listed) > 5 else "")
    return f"skipping {len(listed)} model(s) whose weights are not on this machine: {shown} (`probe models` says why " \
           "for each)"


def log_skipped(skipped: Sequence[Any]) -> None:
    """:func:`skipped_line` through the ``probe`` logger."""
    line = skipped_line(skipped)
    if line:
        log.info("%s", line)
