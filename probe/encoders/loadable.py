"""Whether an encoder can load on this machine, asked before any work starts: the user's trust in
code a registry file asks to run, the entry's own ``requires``, then its loader family.

Apart from :mod:`probe.encoders.availability` (the answers' type and the hub-cache lookups the
families use), because this question goes through the families, which use those lookups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from probe.encoder_spec import EncoderSpec
from probe.encoders.availability import Availability, unmet_requirements
from probe.encoders.families import family_of
from probe.settings import ENV_TRUST_CODE, downloads_allowed, flag


def check(spec: EncoderSpec, allow_download: bool | None = None) -> Availability:
    """Whether ``spec`` can be loaded here, with a one-line reason either way (its family answers,
    after the entry's own ``requires``)."""
    code = spec.runs_code
    if code and spec.from_user_file and not flag(ENV_TRUST_CODE):
        return Availability(False, f"it comes from {spec.source} and {code}: pass --trust-remote-code "
                                   f"(or set {ENV_TRUST_CODE}=1) if you trust that file")
    unmet = unmet_requirements(spec.requires)
    if unmet:
        quoted = " ".join(f"'{r}'" for r in spec.requires)
        return Availability(False, f"its code needs {', '.join(unmet)}: `pip install {quoted}` "
                                   "(in an environment of its own if it conflicts)")
    return family_of(spec).availability(spec, downloads_allowed(allow_download))


def resolve_models(registry: Any, patterns: Sequence[str], modality: str | None = None,
                   allow_download: bool | None = None) -> tuple[list[EncoderSpec], list[EncoderSpec]]:
    """``(to_use, skipped)``: specs matching ``patterns``, checked before any work starts.

    An entry named exactly that cannot load here is an :class:`UnavailableError` with the reason (the
    user asked for it; finding out after an hour of other pairs helps nobody). Entries reached through
    ``all`` or a shell pattern whose weights are not here are skipped and returned, for the caller to
    name once, never silently dropped.
    """
    from probe.errors import UnavailableError

    specs = registry.list(patterns, modality=modality, strict=True)
    skipped = []
    for spec in specs:
        status = check(spec, allow_download)
        if status.ok:
            continue
        if spec.name in patterns:
            raise UnavailableError(f"model {spec.name!r} cannot be loaded here: {status.reason}")
        skipped.append(spec)
    return [s for s in specs if s not in skipped], skipped
