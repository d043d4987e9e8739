"""What produced a record, as one digest: records are known by their content, like the feature cache.

A record's file name says which pair, configuration and benchmark it holds, but not whether the
encoder entries, the corpus or the benchmark's data are still the ones it was computed from. Every
record therefore stores :func:`identity_digest` of everything that determines its numbers (both
encoder entries in full, the configuration, the fingerprints of the data fitted on and scored, the
protocol, the record format), and ``--skip-existing`` keeps a record only while the digest the run
would give it is the same: a changed pooling, a rebuilt corpus or a benchmark whose files changed
make it recompute exactly the records they touch, and say why.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

#: The record format as identities see it: raised when what a record's numbers mean changes (every
#: record of the old format is then recomputed), not when a schema version only adds optional fields
#: (schema 5 did: the records of schema 4 still stand). It enters the digest under the key
#: ``schema_version``, the name it had while it equalled the schema version, so digests stay stable.
IDENTITY_FORMAT = 4


def identity_digest(kind: str, **inputs: Any) -> str:
    """A 20-hex-digit digest of ``inputs`` (JSON-able: encoder entries as ``to_dict()``, configs as
    dicts, fingerprints as text) together with the record kind and the record format
    (:data:`IDENTITY_FORMAT`)."""
    payload = json.dumps({"kind": kind, "schema_version": IDENTITY_FORMAT, **inputs}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def pair_identity(kind: str, vision: Any, text: Any, config: Any, corpus: dict[str, Any], target: Any,
                  protocol: str, tasks: Any, tune: Any = None) -> str:
    """The identity of a pair's record on one benchmark (a head fit's, or with ``tune`` a tune run's):
    what ``probe run`` / ``probe tune`` and ``probe eval`` of their saved models all compute. The
    scored benchmark (a :class:`~probe.data.splits.Target`) enters by what it holds and, where it is
    scored zero-shot, by its prompts as encoded."""
    extra: dict[str, Any] = {"tune": tune.identity_dict()} if tune is not None else {}
    prompts = target.prompts_fingerprint()
    if prompts is not None:
        extra["prompts"] = prompts
    return identity_digest(kind, vision=vision.to_dict(), text=text.to_dict(), config=config.identity_dict(), corpus=corpus,
                           benchmark=target.reference(), protocol=protocol, tasks=sorted(tasks), **extra)


def why_stale(record: Any, expected: str) -> str | None:
    """Why an existing successful record cannot stand for the result a run would compute now, or None."""
    stored = getattr(record, "identity", None)
    if stored is None:
        return "written before records held what produced them"
    if stored != expected:
        return "its inputs changed (an encoder entry, the configuration, or the data fitted on or scored)"
    return None
