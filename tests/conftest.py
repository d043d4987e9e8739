"""Shared fixtures. Every test runs with an empty Hugging Face cache and downloads disabled, so
nothing can reach a hub and availability answers are the same on every machine."""

from __future__ import annotations

import os
import subprocess
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


def run_in_process(*args: str, env: dict | None = None, cwd: Path | None = None,
                   timeout: float = 600) -> subprocess.CompletedProcess:
    """``probe ARGS`` through :func:`probe.cli.main` in this process, as the console script runs it:
    stdout and stderr captured, ``env`` added to the environment and ``cwd`` entered for the call
    only, and the environment restored after (the command line sets Hugging Face variables). Saves the
    seconds a fresh interpreter spends importing torch; ``timeout`` is not enforced here."""
    import contextlib
    import io

    from probe.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.update(env or {})
    os.chdir(cwd or ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["probe", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def run_cli():
    """Run ``probe ...`` in this process; returns a CompletedProcess with text output. (The tests that
    need a fresh interpreter, for what a process imports, signals and the real entry point, run
    ``python -m probe`` themselves.)"""
    return run_in_process


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


def load_script(relative: str):
    """A repository script outside the package (``tools/...``, ``benchmarks/...``) as a module, so a
    test can call its functions."""
    import importlib.util

    path = Path(__file__).parents[1] / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
