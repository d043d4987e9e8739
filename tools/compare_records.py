"""Are two results folders' records the same, metric for metric?

    python tools/compare_records.py BEFORE_RESULTS AFTER_RESULTS

Pairs records by their path under ``records/`` and compares what they measured: ``status``,
``metrics``, ``intervals``, ``saturated``, ``dropped`` and, for selection and correlation tables,
every number they hold. When a run was made, by which version, how long it took and what produced it
(``created``, ``versions``, ``timing``, ``identity``, ``saved_model``) are expected to differ between
two runs of the same work and are left out. Exit status 0 when every record is in both folders and
equal, 1 otherwise (each difference is printed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: what differs between two runs of the same work by design
IGNORED = {"created", "versions", "timing", "identity", "saved_model", "schema_version", "cost", "curve"}


def measured(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in IGNORED}


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Every place ``a`` and ``b`` differ; numbers must be exactly equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                out.append(f"{where}.{key}: only in {'after' if key not in a else 'before'}")
            else:
                out += differences(a[key], b[key], f"{where}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def main(before: str, after: str) -> int:
    roots = Path(before) / "records", Path(after) / "records"
    files = [{p.relative_to(root) for p in root.rglob("*.json")} for root in roots]
    problems = [f"{name}: only in {side}" for side, mine, other in (("before", *files), ("after", *reversed(files)))
                for name in sorted(mine - other)]
    compared = numbers = 0
    for name in sorted(files[0] & files[1]):
        a, b = (measured(json.loads((root / name).read_text())) for root in roots)
        problems += [f"{name}{d}" for d in differences(a, b)]
        compared += 1
        numbers += len(a.get("metrics") or {}) + 2 * len(a.get("intervals") or {})
    for line in problems:
        print(line)
    print(f"{compared} record(s) in both folders, {numbers} metric values and interval bounds; "
          f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
