"""Can an entry's weights be loaded on this machine, and if not, why not and what to do.

Answered without importing torch or contacting any server: each loader family answers for its
entries (:meth:`~probe.encoders.families.LoaderFamily.availability`); hub entries are looked up in
the local Hugging Face cache. Downloads happen only when the user allows them (``--allow-download``
or ``PROBE_ALLOW_DOWNLOAD=1``), so an offline machine never tries the network behind the user's back.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.registry import EncoderSpec

ENV_ALLOW_DOWNLOAD = "PROBE_ALLOW_DOWNLOAD"
ENV_HOME = "PROBE_HOME"
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str


def downloads_allowed(allow_download: bool | None = None) -> bool:
    """An explicit choice wins; otherwise ``$PROBE_ALLOW_DOWNLOAD`` decides (off by default)."""
    if allow_download is not None:
        return allow_download
    return env_flag(ENV_ALLOW_DOWNLOAD)


def env_flag(name: str) -> bool:
    """An on/off environment variable: 1, true, yes or on (any case) mean on."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def probe_home() -> Path:
    """Where probe keeps files it assembles itself (e.g. the reassembled all-mpnet-base-v2)."""
    return Path(os.environ.get(ENV_HOME, Path.home() / ".cache" / "probe")).expanduser()


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def in_hf_cache(repo_id: str, revision: str = "main") -> bool:
    """True when a snapshot of ``repo_id`` at ``revision`` is in the local Hugging Face cache."""
    repo_dir = hf_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return False
    if _SHA_RE.match(revision):
        return (snapshots / revision).is_dir()
    ref = repo_dir / "refs" / revision
    if ref.is_file():
        return (snapshots / ref.read_text().strip()).is_dir()
    return False


def module_present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def hub_availability(spec: EncoderSpec, allow_download: bool) -> Availability:
    """Entries whose weights come from the Hugging Face hub: local cache, or download when allowed."""
    if in_hf_cache(spec.weights, spec.revision):
        return Availability(True, f"in the local Hugging Face cache ({hf_cache_dir()})")
    if allow_download:
        return Availability(True, "will be downloaded from the Hugging Face hub (downloads are allowed)")
    return Availability(
        False,
        f"not in the local Hugging Face cache ({hf_cache_dir()}); needs network: "
        f"pass --allow-download (or set {ENV_ALLOW_DOWNLOAD}=1) or run `huggingface-cli download {spec.weights}`",
    )


def unmet_requirements(requires: Sequence[str]) -> list[str]:
    """Each requirement not met by the installed distributions, with what is installed instead."""
    from importlib import metadata

    from packaging.requirements import Requirement

    unmet = []
    for text in requires:
        requirement = Requirement(text)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            unmet.append(f"{text} (not installed)")
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(f"{text} ({installed} installed)")
    return unmet


def check(spec: EncoderSpec, allow_download: bool | None = None) -> Availability:
    """Whether ``spec`` can be loaded here, with a one-line reason either way (its family answers,
    after the entry's own ``requires``)."""
    from probe.encoders.families import family_of
    from probe.registry import ENV_TRUST_CODE

    code = spec.runs_code
    if code and spec.from_user_file and not env_flag(ENV_TRUST_CODE):
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
