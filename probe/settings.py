"""Every environment variable probe reads, and the default folders they move.

One module so that a user finds all of them in one place (``probe --help`` lists them too) and so
that lower layers read a setting without importing the module that happens to use it most.
An environment variable that is set but empty counts as unset, never as the current folder.
"""

from __future__ import annotations

import os
from pathlib import Path

#: where probe keeps files it assembles itself: reassembled weights, built datasets (``datasets/NAME``)
ENV_HOME = "PROBE_HOME"
#: the root under which benchmarks' data folders are found (default ``~/data``)
ENV_DATA = "PROBE_DATA"
#: result records and saved models (default ``results``)
ENV_RESULTS = "PROBE_RESULTS_DIR"
#: the feature cache (default ``<results>/features``)
ENV_CACHE = "PROBE_CACHE_DIR"
#: extra encoder registry files or folders, os.pathsep-separated
ENV_REGISTRY = "PROBE_REGISTRY"
#: extra benchmark catalogue files, os.pathsep-separated
ENV_BENCHMARKS = "PROBE_BENCHMARKS"
#: 1 lets encoders download weights from their hub (off by default: only local files are used)
ENV_ALLOW_DOWNLOAD = "PROBE_ALLOW_DOWNLOAD"
#: 1 runs code that a user registry file's ``trust_remote_code`` entry asks for
ENV_TRUST_CODE = "PROBE_TRUST_REMOTE_CODE"
#: megabytes of float32 features one side may hold in memory before it is streamed (default 1024)
ENV_RESIDENT_LIMIT = "PROBE_RESIDENT_LIMIT_MB"
#: prefix of ``PROBE_RECIPE_SOURCE_<NAME>``: where a dataset recipe's source is, if not its default
ENV_RECIPE_SOURCE = "PROBE_RECIPE_SOURCE_"

#: every variable above, with what it sets (for ``--help`` and the docs)
ALL = {
    ENV_HOME: "weights and datasets probe assembles (default ~/.cache/probe)",
    ENV_DATA: "root of the benchmarks' data folders (default ~/data)",
    ENV_RESULTS: "result records and saved models (default results)",
    ENV_CACHE: "the feature cache (default <results>/features)",
    ENV_REGISTRY: "extra registry files or folders (os.pathsep-separated)",
    ENV_BENCHMARKS: "extra benchmark catalogue files (os.pathsep-separated)",
    ENV_ALLOW_DOWNLOAD: "1: encoders may download weights (default off)",
    ENV_TRUST_CODE: "1: your registry entries may run code (default off)",
    ENV_RESIDENT_LIMIT: "MB of features kept in memory per side (default 1024)",
    ENV_RECIPE_SOURCE + "<NAME>": "where recipe NAME's source is, if not its default",
}


def text(name: str) -> str:
    """The variable's value with surrounding blanks removed; unset and empty are both ``""``."""
    return os.environ.get(name, "").strip()


def flag(name: str) -> bool:
    """An on/off variable: 1, true, yes or on (any case) mean on."""
    return text(name).lower() in ("1", "true", "yes", "on")


def paths(name: str) -> list[Path]:
    """An os.pathsep-separated list of paths; empty parts are skipped."""
    return [Path(p) for p in os.environ.get(name, "").split(os.pathsep) if p.strip()]


def probe_home() -> Path:
    """Where probe keeps files it assembles itself (e.g. the reassembled all-mpnet-base-v2)."""
    return Path(text(ENV_HOME) or Path.home() / ".cache" / "probe").expanduser()


def data_root() -> Path:
    """The root that benchmarks' relative data folders are found under."""
    return Path(text(ENV_DATA) or Path.home() / "data").expanduser()


def default_results_dir() -> Path:
    return Path(text(ENV_RESULTS) or "results")


def results_dir(given: str | Path | None = None) -> Path:
    """The results folder a caller named (``~`` expanded), else ``$PROBE_RESULTS_DIR`` or ``results``."""
    return Path(given).expanduser() if given else default_results_dir()


def default_cache_dir(results_dir: Path | None = None) -> Path:
    """``$PROBE_CACHE_DIR``, else ``<results>/features`` (``results/features`` by default)."""
    if text(ENV_CACHE):
        return Path(text(ENV_CACHE))
    return (results_dir if results_dir is not None else Path("results")) / "features"


def downloads_allowed(allow_download: bool | None = None) -> bool:
    """An explicit choice wins; otherwise ``$PROBE_ALLOW_DOWNLOAD`` decides (off by default)."""
    return allow_download if allow_download is not None else flag(ENV_ALLOW_DOWNLOAD)


def recipe_source(recipe_name: str) -> str:
    """``$PROBE_RECIPE_SOURCE_<NAME>`` for a dataset recipe (NAME in upper case, - as _), or ``""``."""
    return text(ENV_RECIPE_SOURCE + recipe_name.upper().replace("-", "_"))


def builtin_registry_dir() -> Path:
    """The shipped catalogue: inside the wheel, or ``registry/`` beside the package in a checkout."""
    here = Path(__file__).resolve().parent
    bundled = here / "_registry"
    return bundled if bundled.is_dir() else here.parent / "registry"
