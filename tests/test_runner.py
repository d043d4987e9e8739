"""The pair runner on a scripted piece of work: planning, skipping, failures, what stays in memory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from probe.encoder_spec import EncoderSpec
from probe.errors import ProbeError
from probe.pipeline.runner import PairRunner, pairs, singles


def spec(name: str, modality: str) -> EncoderSpec:
    return EncoderSpec(name=name, modality=modality, loader="baseline", weights="pixels", embed_dim=4, params_m=0.0,
                       objective="none", license="n/a", reference="test")


@dataclass
class Result:
    """Stands in for a typed record: what the runner needs is ``ok`` and ``dump()``."""

    item: tuple[str, ...]
    unit: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def dump(self) -> dict:
        return {"item": list(self.item), "unit": self.unit, "status": "ok" if self.ok else "failed",
                "error": self.error}


@dataclass
class Script:
    """Work that records what the runner asked of it."""

    root: Path
    units_per_item: tuple[str, ...] = ("a", "b")
    broken_features: frozenset[str] = frozenset()
    broken_items: frozenset[tuple[str, ...]] = frozenset()
    label: str = "script"
    loads: list[str] = field(default_factory=list)
    live: set[str] = field(default_factory=set)
    most_live: int = 0
    ran: list[tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)

    def units(self, item):
        return self.units_per_item

    def path(self, item, unit):
        return self.root / ("__".join(s.name for s in item) + f"__{unit}.json")

    def features(self, s):
        self.loads.append(s.name)
        if s.name in self.broken_features:
            raise OSError(f"cannot read {s.name}")
        return Features(s.name, self)

    def run(self, item, features, units):
        names = tuple(s.name for s in item)
        self.most_live = max(self.most_live, len(self.live))
        assert [f.name for f in features] == list(names)
        self.ran.append((names, tuple(units)))
        for i, unit in enumerate(units):
            if names in self.broken_items and i == 1:
                raise ProbeError("second unit blew up")
            yield unit, Result(names, unit)

    def failure(self, item, unit, reason):
        return Result(tuple(s.name for s in item), unit, reason)

    def describe(self, item, unit, record):
        return f"{'/'.join(record.item)} {unit}: {'ok' if record.ok else record.error}"


class Features:
    """Counts live instances: the runner must drop features it no longer needs."""

    def __init__(self, name: str, script: Script):
        self.name, self.script = name, script
        script.live.add(name)

    def __del__(self):
        self.script.live.discard(self.name)


V = [spec("v1", "vision"), spec("v2", "vision")]
T = [spec("t1", "text"), spec("t2", "text"), spec("t3", "text")]


def test_every_unit_of_every_pair_gets_one_record(tmp_path):
    script = Script(tmp_path)
    lines: list[str] = []
    outcome = PairRunner(echo=lines.append, progress=False).run(script, pairs(V, T))
    assert len(outcome.written) == 12 and not outcome.failed and not outcome.existing
    assert [names for names, _ in script.ran] == [("v1", "t1"), ("v1", "t2"), ("v1", "t3"),
                                                   ("v2", "t1"), ("v2", "t2"), ("v2", "t3")]
    assert json.loads((tmp_path / "v2__t3__b.json").read_text())["status"] == "ok"
    assert lines[0].startswith("[1/12] v1/t1 a: ok (") and len(lines) == 12  # with how far the run is
    assert lines[-1].startswith("[12/12] ") and lines[-1].endswith(" in)")


def test_only_the_current_pairs_features_stay_in_memory(tmp_path):
    script = Script(tmp_path)
    PairRunner(progress=False).run(script, pairs(V, T))
    assert script.most_live == 2  # one vision and one text encoder, never the whole sweep
    assert script.loads.count("v1") == 1 and script.loads.count("v2") == 1  # a row keeps its vision features
    assert script.loads.count("t1") == 2  # text features are read again (from the cache) for the next row


def test_skip_existing_runs_only_missing_units(tmp_path):
    from test_records import alignment

    done = json.dumps(alignment("shapes", "v1", "t1", 0.5))  # a valid, successful record
    for name in ("v1__t1__b.json", "v1__t2__a.json"):
        (tmp_path / name).write_text(done)
    (tmp_path / "v1__t1__a.json").write_text(json.dumps(alignment("shapes", "v1", "t1", 0.5, status="failed",
                                                                  error="earlier failure", metrics=None)))
    again = Script(tmp_path)
    outcome = PairRunner(skip_existing=True, progress=False).run(again, pairs(V[:1], T[:2]))
    assert again.ran == [(("v1", "t1"), ("a",)), (("v1", "t2"), ("b",))]
    assert len(outcome.existing) == 2 and len(outcome.written) == 2


def test_skip_existing_reads_real_records(tmp_path):
    """``--skip-existing`` trusts a file only when it is a valid, successful record."""
    script = Script(tmp_path, units_per_item=("a",))
    good = tmp_path / "v1__t1__a.json"
    good.write_text("{}")  # not a probe record: recomputed
    outcome = PairRunner(skip_existing=True, progress=False).run(script, pairs(V[:1], T[:1]))
    assert outcome.written == [good] and not outcome.existing


def test_failures_become_records_and_the_run_goes_on(tmp_path):
    script = Script(tmp_path, broken_features=frozenset({"t2"}), broken_items=frozenset({("v2", "t1")}))
    outcome = PairRunner(progress=False).run(script, pairs(V, T))
    failed = {p.name: json.loads(p.read_text())["error"] for p in outcome.failed}
    assert failed == {"v1__t2__a.json": "features of t2 failed: OSError: cannot read t2",
                      "v1__t2__b.json": "features of t2 failed: OSError: cannot read t2",
                      "v2__t2__a.json": "features of t2 failed: OSError: cannot read t2",
                      "v2__t2__b.json": "features of t2 failed: OSError: cannot read t2",
                      "v2__t1__b.json": "ProbeError: second unit blew up"}
    assert script.loads.count("t2") == 1  # a broken encoder is not retried for every partner
    assert len(outcome.written) == 12 - 5 and json.loads((tmp_path / "v2__t1__a.json").read_text())["status"] == "ok"


def test_a_bug_is_not_swallowed(tmp_path):
    class Buggy(Script):
        def run(self, item, features, units):
            raise KeyError("a bug")
            yield  # pragma: no cover

    with pytest.raises(KeyError):
        PairRunner(progress=False).run(Buggy(tmp_path), pairs(V[:1], T[:1]))


def test_single_encoder_items(tmp_path):
    script = Script(tmp_path, units_per_item=("only",))
    outcome = PairRunner(progress=False).run(script, singles(V + T))
    assert [names for names, _ in script.ran] == [("v1",), ("v2",), ("t1",), ("t2",), ("t3",)]
    assert script.most_live == 1 and len(outcome.written) == 5


def test_every_result_line_says_how_far_the_run_is(run_cli, tmp_path, shared_cache):
    """In a log (no terminal), each result line carries [k/N], the time so far and, before the last,
    an estimate of the time left."""
    import re

    ran = run_cli("run", "--vision", "test/tiny-vit", "--vision", "test/tiny-vit-wide", "--text", "test/tiny-bert",
                  "--epochs", "1", "--results", str(tmp_path / "r"), env={"PROBE_CACHE_DIR": str(shared_cache)})
    assert ran.returncode == 0, ran.stderr
    lines = [line for line in ran.stdout.splitlines() if re.match(r"\[\d+/\d+\] ", line)]
    assert [line.split("]")[0] for line in lines] == ["[1/2", "[2/2"]
    assert re.search(r" \(\d+ s in, about \d+ s left\)$", lines[0]) and re.search(r" \(\d+ s in\)$", lines[1])
    assert "test/tiny-vit x test/tiny-bert" in ran.stdout


def test_durations_read_as_a_person_would_say_them():
    from probe.pipeline.runner import _duration, progress_note

    assert [_duration(s) for s in (4.2, 75, 3725)] == ["4 s", "1 min 15 s", "1 h 2 min"]
    assert progress_note(0.0, 0, 3).startswith(" (") and "left" in progress_note(0.0, 1, 3)
