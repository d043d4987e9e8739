"""probe's modules form layers: each imports only from its own layer or below, and no import circles.

Every import counts, the ones inside functions included (grimp reads them all); imports under
``if TYPE_CHECKING:`` do not run and are left out. The layer order is the architecture described in
docs/explanation/architecture.md: a module is in the layer of the longest prefix listed below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")

#: bottom first; a module may import from its own layer and the layers before it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ground: values, settings, files", (
        "probe.version", "probe.errors", "probe.settings", "probe.io", "probe.filenames", "probe.tomlfiles", "probe.flops",
        "probe.records.keys", "probe.encoder_spec")),
    ("numbers", ("probe.metrics",)),
    ("configurations", (
        "probe.align.config", "probe.align.presets", "probe.unfreezing.config", "probe.unfreezing.parts")),
    ("records", ("probe.records",)),
    ("data", ("probe.data", "probe.recipes")),
    ("encoders", ("probe.encoders",)),
    ("catalogues", ("probe.registry", "probe.evaluation.catalogue")),
    ("features", ("probe.features", "probe.pipeline.runner")),
    ("scoring", ("probe.evaluation",)),
    ("alignment", ("probe.align",)),
    ("unfreezing", ("probe.unfreezing",)),
    ("jobs", ("probe.pipeline", "probe.correlates", "probe.mteb_scores", "probe.ranking", "probe.report",
              "probe.workspace", "probe.aligned")),
    ("API", ("probe.api",)),
    ("command line", ("probe.cli", "probe.__main__")),
]
#: packages holding a module placed below the package's own layer: their __init__ must import nothing
#: of probe's at module level, or importing that module would run the package's imports first
SPLIT_PACKAGES = ("probe.records", "probe.align", "probe.unfreezing", "probe.pipeline", "probe.evaluation")


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("probe", exclude_type_checking_imports=True)


def layer_of(module: str) -> int:
    best, length = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > length:
                best, length = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer; add it to LAYERS")
    return best


def test_every_module_is_in_a_layer(graph):
    for module in graph.modules:
        if module != "probe":  # the package itself is the lazy API facade (probe.__getattr__)
            layer_of(module)


def test_no_module_imports_from_a_layer_above_its_own(graph):
    upward = []
    for module in sorted(graph.modules - {"probe"}):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported == "probe":
                upward.append(f"{module} imports the package facade `probe` (import the module itself)")
            elif layer_of(imported) > layer_of(module):
                lines = [d["line_number"] for d in graph.get_import_details(importer=module, imported=imported)]
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {imported} "
                              f"({LAYERS[layer_of(imported)][0]}) at line {lines}")
    assert not upward, "\n".join(upward)


def test_no_import_circles(graph):
    """Every circle at once: the strongly connected components of the import graph (scipy's)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    modules = sorted(graph.modules)
    index = {m: i for i, m in enumerate(modules)}
    edges = [(index[a], index[b]) for a in modules for b in graph.find_modules_directly_imported_by(a)]
    rows, cols = zip(*edges, strict=True)
    adjacency = coo_matrix(([1] * len(edges), (rows, cols)), shape=(len(modules), len(modules)))
    _, labels = connected_components(adjacency, directed=True, connection="strong")
    groups: dict[int, list[str]] = {}
    for module, label in zip(modules, labels, strict=True):
        groups.setdefault(int(label), []).append(module)
    circles = [group for group in groups.values() if len(group) > 1]
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(group) for group in circles)


def test_split_packages_import_nothing_of_probes_when_imported():
    root = Path(__file__).resolve().parents[1]
    for package in SPLIT_PACKAGES:
        init = root / package.replace(".", "/") / "__init__.py"
        tree = ast.parse(init.read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("probe"):
                pytest.fail(f"{init}: `from {node.module} import ...` runs whenever a module of {package} "
                            "is imported, whatever its layer")
            if isinstance(node, ast.Import) and any(a.name.startswith("probe") for a in node.names):
                pytest.fail(f"{init}: imports {node.names[0].name} at module level")


def test_the_check_sees_imports_inside_functions(graph):
    """The circles this test exists for hid behind function-level imports; grimp must see those."""
    details = graph.get_import_details(importer="probe.api.alignment", imported="probe.data")
    assert details, "probe.api.alignment imports probe.data inside run(); grimp did not see it"
