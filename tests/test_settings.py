"""Every environment variable probe reads is declared in probe.settings, and probe --help lists them."""

from __future__ import annotations

import ast

from conftest import ROOT

from probe import settings


def _environment_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, name)`` of each ``os.environ[...]``, ``os.environ.get(...)`` or ``os.getenv(...)`` whose
    name is a string literal starting with PROBE_."""
    found = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            key = node.slice
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.get", "os.getenv") and node.args:
            key = node.args[0]
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.startswith("PROBE_"):
            found.append((node.lineno, key.value))
    return found


def test_no_module_but_settings_reads_a_probe_variable():
    reads = [f"{path.relative_to(ROOT)}:{line} reads {name}"
             for path in sorted((ROOT / "probe").rglob("*.py")) if path.name != "settings.py"
             for line, name in _environment_reads(ast.parse(path.read_text()))]
    assert not reads, "read it through probe.settings instead:\n" + "\n".join(reads)
    # the scan itself sees such a read
    assert _environment_reads(ast.parse('import os\nos.environ.get("PROBE_X", "")')) == [(2, "PROBE_X")]


def test_every_declared_variable_is_listed_in_help(run_cli):
    declared = {getattr(settings, n) for n in dir(settings) if n.startswith("ENV_")}
    listed = {name.replace("<NAME>", "") for name in settings.ALL}
    assert declared == listed
    shown = run_cli("--help").stdout
    for name in settings.ALL:
        assert name in shown, name
    assert max(len(line) for line in shown.splitlines()) <= 100
