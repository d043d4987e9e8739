"""The documentation: the README stays short and its links resolve, the site's link checking fails a
broken link, and the API reference lists every public function."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT


def test_the_readme_is_short_and_every_link_in_it_resolves():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert links and all((ROOT / link).exists() for link in links if "://" not in link), \
        [link for link in links if "://" not in link and not (ROOT / link).exists()]


def test_the_api_reference_documents_every_public_function():
    import probe

    page = (ROOT / "docs" / "reference" / "api.md").read_text()
    documented = {line.split()[-1].rpartition(".")[2] for line in page.splitlines() if line.startswith("::: ")}
    public = {name for name in probe.__all__ if name != "__version__"}
    assert public - {"load_records"} <= documented and "load" in documented  # load_records is records.table.load


@pytest.mark.parametrize("broken", [False, True])
def test_the_sites_strict_build_fails_on_a_broken_link(tmp_path, broken):
    """The site's own link validation (mkdocs.yml) under --strict, on a two-page site: a link to a page
    that does not exist fails the build, naming it."""
    pytest.importorskip("mkdocs")
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [the other page](other.md)" +
                                   (" and [a missing one](missing.md)" if broken else "") + ".\n")
    (docs / "other.md").write_text("# Other\n\nBack [home](index.md#home).\n")
    site = {key: config[key] for key in ("site_name", "strict", "validation", "markdown_extensions") if key in config}
    site |= {"docs_dir": str(docs), "site_dir": str(tmp_path / "site"), "theme": {"name": "mkdocs"},
             "nav": ["index.md", "other.md"], "markdown_extensions": ["toc"]}
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(site))
    mkdocs = shutil.which("mkdocs") or f"{sys.executable} -m mkdocs"
    built = subprocess.run([*mkdocs.split(), "build", "--strict", "-f", str(tmp_path / "mkdocs.yml")],
                           capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert (built.returncode != 0) == broken, built.stderr
    if broken:
        assert "missing.md" in built.stderr


def test_every_commands_help_ends_with_examples_and_its_documentation_page(run_cli):
    from probe.cli import DOC_PAGES, full_cli

    commands = [(name, []) for name in full_cli.commands]
    commands += [(name, [sub]) for name, group in full_cli.commands.items() for sub in getattr(group, "commands", {})]
    for name, sub in commands:
        shown = run_cli(name, *sub, "--help", env={"COLUMNS": "100"})
        assert shown.returncode == 0 and "Example" in shown.stdout, (name, sub)
        assert f"More: docs/{DOC_PAGES[name]}" in shown.stdout or sub, (name, shown.stdout[-300:])
        assert (ROOT / "docs" / DOC_PAGES[name]).is_file()
