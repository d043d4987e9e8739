"""Run every benchmark case: ``python -m benchmarks [CASE...]``; writes reports/bench.json.

Each case runs in a process of its own, so no case inherits another's heap, thread pools or
forked-worker costs (extraction forks data-loader workers, and forking a process that has just held
gigabytes of kNN distances made it measurably slower).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks import cases
from benchmarks.stamp import stamp
from probe.report.bench import stamp_line

ONE_CASE = "--json-case"


def run_isolated(name: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "benchmarks", ONE_CASE, name], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark case {name!r} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    if argv[:1] == [ONE_CASE]:
        outcome = cases.CASES[argv[1]]()
        print(json.dumps(outcome if isinstance(outcome, list) else [outcome]))
        return 0
    chosen = argv or list(cases.CASES)
    unknown = [c for c in chosen if c not in cases.CASES]
    if unknown:
        print(f"error: unknown case {unknown[0]!r}; valid: {', '.join(cases.CASES)}", file=sys.stderr)
        return 2
    stamped = stamp(argv)
    print(f"measuring {stamp_line(stamped)}", flush=True)
    results = []
    for name in chosen:
        for result in run_isolated(name):
            results.append(result)
            print(f"{result['case']:<36} ours {result['ours_s']:.4f}s  baseline {result['baseline_s']:.4f}s  "
                  f"ratio {result['ratio']:.2f}x  agree={result['agree']}  ({result['note']})", flush=True)
    out = Path("reports") / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": stamped["platform"], "stamp": stamped, "cases": results}, indent=2))
    print(f"wrote {out}")
    return 0 if all(r["agree"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
