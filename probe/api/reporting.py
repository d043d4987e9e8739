"""``probe.write_report``: the leaderboard (HTML, CSV, JSON) and plots of a results folder, from Python.

(The name is not ``probe.report``, which is the package that builds the page.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def write_report(results_dir: str | Path | None = None, out_dir: str | Path = "reports",
                 metric: str = "mutual_knn", registry: Sequence[str | Path] = ()) -> dict[str, Path]:
    """Write ``leaderboard.html`` (self-contained), ``.csv``, ``.json`` and ``plots/*.png`` under
    ``out_dir`` from every record under ``results_dir``; ``metric`` is the selection metric plotted
    against the probing score. Results whose record holds no identity, or whose encoder entry in the
    registry (built-in, ``$PROBE_REGISTRY`` and the ``registry`` files) changed since, are marked not
    current (:mod:`probe.report.trust`). Returns the written paths by kind (``html``, ``csv``,
    ``json``, ``plot:<name>``)."""
    from probe.ranking import check_metric
    from probe.records import keys
    from probe.report import build_report
    from probe.report.trust import registry_entries
    from probe.settings import results_dir as chosen_results_dir
    from probe.workspace import ensure_writable

    key = keys.similarity(check_metric(metric))
    out = Path(out_dir).expanduser()
    ensure_writable(out, "--out")
    return build_report(chosen_results_dir(results_dir), out, key, registry_entries(registry))
