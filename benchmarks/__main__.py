"""Run every benchmark case: ``python -m benchmarks [CASE...]``; writes reports/bench.json."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

from benchmarks import cases


def main(argv: list[str]) -> int:
    chosen = argv or list(cases.CASES)
    unknown = [c for c in chosen if c not in cases.CASES]
    if unknown:
        print(f"error: unknown case {unknown[0]!r}; valid: {', '.join(cases.CASES)}", file=sys.stderr)
        return 2
    results = []
    for name in chosen:
        outcome = cases.CASES[name]()
        for result in outcome if isinstance(outcome, list) else [outcome]:
            results.append(result)
            print(f"{result['case']:<36} ours {result['ours_s']:.4f}s  baseline {result['baseline_s']:.4f}s  "
                  f"ratio {result['ratio']:.2f}x  agree={result['agree']}  ({result['note']})")
    out = Path("reports") / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "cases": results}, indent=2))
    print(f"wrote {out}")
    return 0 if all(r["agree"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
