"""Schema migrations: ``MIGRATIONS[n]`` turns a version-n record (a dict) into a version n+1 record.

Records are append-only and gathered from many machines, so an old file is never rewritten in
place; it is migrated each time it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _v1_to_v2(record: dict[str, Any]) -> dict[str, Any]:
    """v2 names the protocol, the training corpus and the benchmark of every alignment record, keys
    selection agreements by benchmark, and says which benchmark a correlation table predicts.

    Version 1 knew only the in-domain protocol; its ``protocol`` field held the dataset's
    description. Corpus fingerprints and sizes were not recorded, so they stay unknown (null).
    """
    kind, dataset = record.get("kind"), record.get("dataset")
    out = dict(record)
    if kind == "alignment":
        splits = record.get("splits") or {}
        description = str(record.get("protocol") or "")
        out["protocol"] = "in-domain"
        out["corpus"] = {"name": dataset, "split": splits.get("fit") or "train", "fingerprint": None,
                         "n_images": None, "n_captions": None,
                         "held_out": f"its {splits['val']!r} split" if splits.get("val") else None,
                         "description": description}
        out["benchmark"] = {"name": dataset, "split": splits.get("eval") or "test",
                            "compositional_split": splits.get("compositional"), "description": description}
    elif kind == "selection":
        agreement = out.pop("agreement", None)
        out["agreements"] = {f"{dataset}/in-domain": agreement} if agreement else {}
    elif kind == "correlation":
        out["benchmark"] = f"{dataset}/in-domain"
    return out


def _v2_to_v3(record: dict[str, Any]) -> dict[str, Any]:
    """v3 adds ``dropped`` (what each split lost, by reason) and ``saturated`` (metrics that cannot
    miss) to alignment records. A v2 record did not say, so both stay absent (unknown)."""
    return dict(record)


def _v3_to_v4(record: dict[str, Any]) -> dict[str, Any]:
    """v4 adds the scored data's ``fingerprint`` to an alignment record's benchmark, and holds every
    metric as a finite JSON number. A v3 record did not fingerprint its data, so that stays absent
    (unknown); a v3 file with a NaN score is damaged as a v4 one would be."""
    return dict(record)


def _v4_to_v5(record: dict[str, Any]) -> dict[str, Any]:
    """v5 adds optional fields: a scored record's ``chance`` (what each metric scores by chance), an
    encoder reference's ``layer`` (``<entry>@<layer>``), a similarity record's ``timing``. A v4 record
    did not say, so they stay absent (unknown); its numbers mean what they meant, and its identity is
    unchanged (:data:`probe.records.identity.IDENTITY_FORMAT`), so runs keep reusing it. Raising the
    version makes a probe that reads only v4 refuse these records in one line instead of taking a
    field it does not know for damage."""
    return dict(record)


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4,
                                                                      4: _v4_to_v5}
