"""The leaderboard table: one row per successful alignment record, joined with the correlates and
similarity records of the same encoders and dataset; failures listed apart with their reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: (column key, header, number format) in display order; keys ending in a record's metric name hold
#: exactly the record's value.
COLUMNS: list[tuple[str, str, str]] = [
    ("vision", "vision", ""), ("text", "text", ""), ("head", "head", ""), ("loss", "loss", ""),
    ("dataset", "dataset", ""),
    ("alignment/probing_score", "probing score", ".3f"),
    ("alignment/probing_score_lo", "CI low", ".3f"), ("alignment/probing_score_hi", "CI high", ".3f"),
    ("zeroshot/top1", "zero-shot top-1", ".3f"),
    ("retrieval/i2t_R@1", "I→T R@1", ".3f"), ("retrieval/i2t_R@5", "I→T R@5", ".3f"),
    ("retrieval/i2t_R@10", "I→T R@10", ".3f"),
    ("retrieval/t2i_R@1", "T→I R@1", ".3f"), ("retrieval/t2i_R@5", "T→I R@5", ".3f"),
    ("retrieval/t2i_R@10", "T→I R@10", ".3f"),
    ("compositional/group", "Winoground group", ".3f"),
    ("vision/knn20", "vision kNN@20", ".3f"), ("text/score", "text score", ".3f"),
    ("similarity/mutual_knn", "mutual kNN", ".3f"), ("similarity/cka", "CKA", ".3f"),
    ("similarity/cknna", "CKNNA", ".3f"), ("similarity/svcca", "SVCCA", ".3f"),
    ("params_m", "params (M)", ".1f"),
]


def build_table(results_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(rows, failures)``. Raises ProbeError when there is no alignment record at all."""
    from probe.errors import ProbeError
    from probe.results import iter_records

    alignment = iter_records(results_dir, "alignment")
    if not alignment:
        raise ProbeError(f"no results under {results_dir / 'records'}; run `probe run` first")
    correlates = {(r["dataset"], r["model"]["name"]): r["metrics"] for r in iter_records(results_dir, "correlates")
                  if r["status"] == "ok"}
    similarity: dict[tuple[str, str, str], dict[str, float]] = {}
    for r in sorted(iter_records(results_dir, "similarity"), key=lambda r: r["split"] != "train"):
        similarity.setdefault((r["dataset"], r["vision"]["name"], r["text"]["name"]), r["metrics"])  # train first
    rows, failures = [], []
    for r in alignment:
        v, t, ds = r["vision"], r["text"], r["dataset"]
        base = {"vision": v["name"], "text": t["name"], "head": r["config"]["head"], "loss": r["config"]["loss"],
                "dataset": ds, "vision_control": v["control"], "text_control": t["control"]}
        if r["status"] != "ok":
            failures.append(base | {"error": r["error"], "created": r["created"], "path": r["_path"]})
            continue
        row = dict(base)
        row |= r["metrics"]
        lo, hi = r["intervals"]["alignment/probing_score"]
        row["alignment/probing_score_lo"], row["alignment/probing_score_hi"] = lo, hi
        top1 = [value for key, value in r["metrics"].items() if key.startswith("zeroshot/") and key.endswith("_top1")]
        row["zeroshot/top1"] = sum(top1) / len(top1) if top1 else None
        row["vision/knn20"] = correlates.get((ds, v["name"]), {}).get("vision/knn20")
        row["text/score"] = correlates.get((ds, t["name"]), {}).get("text/score")
        row |= similarity.get((ds, v["name"], t["name"]), {})
        row["params_m"] = (v.get("params_m") or 0) + (t.get("params_m") or 0)
        row["provenance"] = {"versions": r["versions"], "created": r["created"], "seed": r["seed"],
                             "config": r["config"], "vision": {k: v[k] for k in ("weights", "revision", "loader")},
                             "text": {k: t[k] for k in ("weights", "revision", "loader")},
                             "splits": r["splits"], "protocol": r["protocol"], "record": r["_path"]}
        rows.append(row)
    rows.sort(key=lambda row: -row["alignment/probing_score"])
    return rows, failures


def flat_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for CSV / JSON: the table's columns (every metric of the records) plus control flags."""
    keys = [k for k, _, _ in COLUMNS]
    extra = sorted({k for row in rows for k in row if "/" in k and k not in keys})
    return [{k: row.get(k) for k in [*keys, *extra, "vision_control", "text_control"]} for row in rows]
