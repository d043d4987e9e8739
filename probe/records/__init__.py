"""Result records: typed kinds (:mod:`.schema`), metric keys (:mod:`.keys`), files (:mod:`.store`)
and tables (:mod:`.table`). ``probe.records.load("results")`` gives every record as a DataFrame.

The names below load on first use, so that importing :mod:`probe.records.keys` (a ground-floor
module that metrics and reports read) does not import the record schema and everything it needs.
"""

from __future__ import annotations

from typing import Any

_LAZY = {"Stored": "store", "is_complete": "store", "iter_records": "store", "read_record": "store",
         "record_path": "store", "write_record": "store",
         "PairKey": "table", "best_by_pair": "table", "flatten": "table", "load": "table"}


def __getattr__(name: str) -> Any:
    import importlib

    if name not in _LAZY:
        raise AttributeError(f"module 'probe.records' has no attribute {name!r}")
    return getattr(importlib.import_module(f"probe.records.{_LAZY[name]}"), name)


__all__ = sorted(_LAZY)
