"""Shared fixtures. Every test runs with an empty Hugging Face cache and downloads disabled, so
nothing can reach a hub and availability answers are the same on every machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory, monkeypatch):
    hub = tmp_path_factory.mktemp("hf-hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("PROBE_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.delenv("PROBE_REGISTRY", raising=False)


@pytest.fixture
def run_cli():
    """Run ``python -m probe ...`` in a subprocess; returns CompletedProcess with text output."""

    def run(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600):
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "probe", *args],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd or ROOT,
            timeout=timeout,
        )

    return run


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit 2, one line on stderr that mentions every fragment, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One feature cache for the whole session: the tiny encoders run once per split of `shapes`.
    Sharing is safe because entries are content-addressed, locked and verified."""
    return tmp_path_factory.mktemp("shared-features")
