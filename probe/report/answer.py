"""The sentence each leaderboard tab opens with: which real pair to align, how sure that is, how far
it is above the controls, and how well the training-free ranking agreed, in words one can quote.

Only real pairs are ranked; a pair is *tied* with the best when their 95% intervals overlap (this
data does not tell them apart). The agreement is Spearman's r between a similarity metric recorded by
``probe select`` and the tab's score (each pair at its best result), over the real pairs that have both.
"""

from __future__ import annotations

from typing import Any

from probe.records import keys


def _real(row: dict[str, Any]) -> bool:
    return not (row["vision_control"] or row["text_control"])


def _value(row: dict[str, Any]) -> str:
    metric, value, low, high = row["score"]
    return f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else "")


def chance_of(row: dict[str, Any], metric: str) -> float | None:
    """What ``metric`` scores by chance in ``row``'s record (its ``chance`` field: zero-shot 1 / options,
    Winoground's 1/6 group score); the mean zero-shot top-1's is the mean of its tasks'. None where the
    metric has none (retrieval) or the record predates the field."""
    chance = row.get("chance") or {}
    if metric == keys.ZEROSHOT_MEAN_TOP1:
        tasks = [value for key, value in chance.items() if keys.is_zeroshot_top1(key)]
        return sum(tasks) / len(tasks) if tasks else None
    return chance.get(metric)


def tied(best: dict[str, Any], row: dict[str, Any]) -> bool:
    """Whether ``row``'s interval overlaps ``best``'s (False where either has none)."""
    low_best, high = best["score"][2], row["score"][3]
    return low_best is not None and high is not None and high >= low_best


def answer(rows: list[dict[str, Any]], selection_metric: str = keys.DEFAULT_SELECTION) -> dict[str, Any] | None:
    """``{"best", "ties", "control", "margin", "agreement", "sentence"}`` for one tab's rows (already
    given their ``score``); None when no real pair was scored."""
    from probe.metrics.rank import spearman

    real = [r for r in rows if _real(r) and r["score"]]
    if not real:
        return None
    best = max(real, key=lambda r: r["score"][1])
    ties = [r for r in real if r is not best and tied(best, r)]
    controls = [r for r in rows if not _real(r) and r["score"]]
    control = max(controls, key=lambda r: r["score"][1]) if controls else None
    margin = best["score"][1] - control["score"][1] if control else None
    best_per_pair: dict[tuple[str, str], dict[str, Any]] = {}  # a pair's best result: one point per pair
    for r in real:
        kept = best_per_pair.setdefault((r["vision"], r["text"]), r)
        if r["score"][1] > kept["score"][1]:
            best_per_pair[(r["vision"], r["text"])] = r
    pairs = [(r[selection_metric], r["score"][1]) for r in best_per_pair.values() if r.get(selection_metric) is not None]
    agreement = None
    if len(pairs) >= 3:
        rho, p = spearman([x for x, _ in pairs], [y for _, y in pairs])
        agreement = {"n": len(pairs), "spearman": rho, "p": p, "metric": selection_metric.split("/", 1)[1]}
    config = f" ({best['config']})" if best.get("config") else ""
    sentence = f"Best real pair: {best['vision']} × {best['text']}{config}, {_value(best)}"
    sentence += (f"; {len(ties)} other real result(s) tied with it (95% intervals overlap)" if ties
                 else "; no other real result's interval reaches it" if best["score"][2] is not None else "")
    chance = chance_of(best, best["score"][0])
    if chance is not None:
        sentence += f"; chance is {chance:.3f}"
    if control is not None:
        apart = "" if tied(best, control) else ", intervals apart"
        sentence += (f". Best control: {control['vision']} × {control['text']}, {_value(control)}: "
                     f"{margin:+.3f}{apart or ' (intervals overlap: not told apart from a control)'}")
    if agreement is not None:
        sentence += (f". Training-free ranking ({agreement['metric']}) against this score over "
                     f"{agreement['n']} real pairs: Spearman {agreement['spearman']:.2f} (p={agreement['p']:.2g})")
    return {"best": best, "ties": ties, "control": control, "margin": margin, "agreement": agreement,
            "chance": chance, "sentence": sentence + "."}
