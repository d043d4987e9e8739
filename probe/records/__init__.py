"""Result records: typed kinds (:mod:`.schema`), metric keys (:mod:`.keys`), files (:mod:`.store`)
and tables (:mod:`.table`). ``probe.records.load("results")`` gives every record as a DataFrame."""

from __future__ import annotations

from probe.records.store import (
           Stored,
           default_results_dir,
           is_complete,
           iter_records,
           read_record,
           record_path,
           write_record,
)
from probe.records.table import PairKey, best_by_pair, flatten, load

__all__ = ["PairKey", "Stored", "best_by_pair", "default_results_dir", "flatten", "is_complete", "iter_records",
           "load", "read_record", "record_path", "write_record"]
