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

from probe.encoder_spec import EncoderSpec
from probe.settings import ENV_ALLOW_DOWNLOAD

_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str


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
