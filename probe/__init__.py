"""probe: measure how well frozen vision encoders line up with frozen text encoders.

Importing the package is cheap on purpose: torch, timm and transformers are imported only by the
functions that need them.
"""

from __future__ import annotations

from probe.version import __version__

#: the Python API, loaded on first use (``import probe`` alone imports no torch)
_API = {"run": "probe.api.alignment", "RunResult": "probe.api.alignment", "select": "probe.api.selection",
        "SelectionResult": "probe.api.selection", "write_report": "probe.api.reporting",
        "evaluate": "probe.api.evaluation", "models": "probe.api.catalogues", "benchmarks": "probe.api.catalogues", "presets": "probe.api.catalogues",
        "correlate": "probe.api.correlation", "forecast": "probe.api.forecasting", "extract": "probe.api.extraction",
        "tune": "probe.api.tuning", "migrate": "probe.api.migration", "get_data": "probe.api.data",
        "AlignedModel": "probe.aligned",
        "ProbeError": "probe.errors", "load_records": "probe.records.table"}


def __getattr__(name: str):
    """``probe.run``, ``probe.AlignedModel`` ... imported when first asked for."""
    import importlib

    if name not in _API:
        raise AttributeError(f"module 'probe' has no attribute {name!r}")
    module = importlib.import_module(_API[name])
    return getattr(module, "load" if name == "load_records" else name)


__all__ = ["__version__", *_API]
